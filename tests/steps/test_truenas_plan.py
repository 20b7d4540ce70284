"""60-truenas-plex, pure parts: with the seed's spec (TrueNAS disabled) only the Plex container is
planned — unprivileged, ``dev0=/dev/dri/renderD128,gid=104``, both NICs with the planned MACs, the
NFS media as a bind mount of the host's NFS storage; enabling TrueNAS with the seed's RAM
allocation is refused (the host budget error, apply raises before touching the lab); an export
outside the storage network is refused; shares/service planned from the NAS's state; NFS mounts
of workloads moved to TrueNAS's storage address (disruptive); PVs reported, not rewritten.
These plans use ``plex_image: ""`` (the system container from an LXC template); the default, Plex's
application container from its OCI image, is covered in test_truenas_twin.py and test_plex_cutover.py."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers import patched

from falkit.model.errors import StepError
from falkit.model.spec import spec_from_data
from falkit.model.yamlsrc import parse_yaml
from falkit.plan.diff import Plan
from falkit.plan.payloads import Blocked
from falkit.runbook.converge import refuse
from falkit.steps import executors
from falkit.steps.base import StepOptions
from falkit.steps.truenas_plex import (
    TnPlexFacts,
    TrueNasPlexStep,
    TrueNasShare,
    checks_from,
    in_apply_order,
    plan_config,
    plan_truenas_plex,
)

SYSTEM_CT = {"plex_image": ""}


def spec_with(patch):
    d, pos = parse_yaml(yaml.safe_dump(patched(patch)), "lab.yaml")
    return spec_from_data(d, pos)


def empty(**kw):
    return TnPlexFacts(vms={}, cts={}, storages=("local", "local-lvm", "helford"), **kw)


def test_seed_plans_plex_only(fal):
    plan = plan_truenas_plex(fal, empty(), StepOptions(extra=dict(SYSTEM_CT)))
    assert [(c.op, c.kind, c.name) for c in plan.changes] == [("create", "ct", "plex"), ("action", "ct", "plex")]
    p = plan.changes[0].data.params
    assert p["vmid"] == 400 and p["unprivileged"] == "1" and p["cores"] == "2" and p["memory"] == "2048"
    assert p["rootfs"] == "local-lvm:8"
    assert "dev0" not in p and "mp0" not in p  # root@pam only: PVE refuses them to API tokens
    assert p["net0"] == "name=eth0,bridge=vmbr0,hwaddr=52:54:00:10:10:30,ip=10.10.0.30/24,gw=10.10.0.1"
    assert p["net1"] == "name=eth1,bridge=vmbr1,hwaddr=52:54:00:10:11:30,ip=10.11.0.30/24"
    # no root@pam session: the root-only GPU passthrough is left to the operator, with the command;
    # TrueNAS disabled: no NFS media mount yet
    cmd = "pct set 400 -dev0 /dev/dri/renderD128,gid=104 && pct reboot 400"
    assert any(cmd in n for n in plan.notes)
    root = plan_truenas_plex(fal, empty(extra={"root_session": True}), StepOptions(extra=dict(SYSTEM_CT)))
    assert [(c.op, c.kind) for c in root.changes] == [("create", "ct"), ("update", "ct-config-root"), ("action", "ct")]
    assert root.changes[1].data.values == {"dev0": "/dev/dri/renderD128,gid=104"}
    assert p["ostemplate"].startswith("local:vztmpl/debian-12")
    assert any("TrueNAS is disabled" in n for n in plan.notes)
    assert not any("truenas-media" in n for n in plan.notes)  # nothing to mount: no storage asked for
    assert not [c for c in plan.changes if c.kind == "pve-storage"]


def test_enabling_truenas_with_seed_ram_is_refused():
    spec = spec_with({"truenas.enabled": True})
    plan = plan_truenas_plex(spec, empty(), StepOptions(extra=dict(SYSTEM_CT)))
    blocked = [c for c in plan.changes if isinstance(c.data, Blocked)]
    assert [c.field for c in blocked] == ["budget.memory"]
    assert "GB over" in blocked[0].reason
    with pytest.raises(StepError, match="refused: VMs 39 GB"):
        TrueNasPlexStep().apply(None, plan, StepOptions(apply=True), None)  # before any API call


def test_enabled_truenas_within_budget_plans_vm_shares_service():
    spec = spec_with({"truenas.enabled": True, "truenas.memory_gb": 4, "host.memory_gb": 64})
    plan = plan_truenas_plex(spec, empty(), StepOptions(extra=dict(SYSTEM_CT)))
    kinds = [(c.op, c.kind, c.name) for c in plan.changes if c.kind not in ("ct",)]
    assert kinds == [("create", "vm", "truenas"), ("action", "vm", "truenas"),
                     ("create", "nfs-share", "/mnt/tank/media"), ("update", "service", "nfs"),
                     ("create", "pve-storage", "truenas-media")]
    nfs = next(c for c in plan.changes if c.kind == "pve-storage").data.params
    assert nfs == {"storage": "truenas-media", "type": "nfs", "server": "10.11.0.20", "export": "/mnt/tank/media",
                   "content": "iso", "create-subdirs": "0", "nodes": ""}
    ct = [c.kind for c in plan.changes]
    assert ct.index("pve-storage") < ct.index("ct")  # mounted before Plex is created and started
    vm = plan.changes[0].data.params
    assert vm["net0"] == "virtio=52:54:00:10:10:20,bridge=vmbr0" and vm["net1"] == "virtio=52:54:00:10:11:20,bridge=vmbr1"
    share = plan.changes[2].data
    assert share == TrueNasShare("/mnt/tank/media", ("10.11.0.0/24",), wait_api=True)  # the first NAS change
    done = empty(shares=({"id": 1, "path": "/mnt/tank/media", "networks": ["10.11.0.0/24"]},),
                 nfs_service={"enable": True, "state": "RUNNING"})
    done = TnPlexFacts({300: {"status": "running", "config": {"net0": "x", "net1": "y"}}}, {}, done.storages, "",
                       done.shares, done.nfs_service)
    again = plan_truenas_plex(spec, done, StepOptions(extra=dict(SYSTEM_CT)))
    assert not [c for c in again.changes if c.kind in ("vm", "nfs-share", "service")]


def test_export_outside_storage_network_is_refused():
    spec = spec_with({"truenas.enabled": True, "truenas.memory_gb": 4, "host.memory_gb": 64,
                      "truenas.nfs_shares": [{"path": "/mnt/tank/media", "networks": ["10.10.0.0/24"]}]})
    plan = plan_truenas_plex(spec, empty(), StepOptions(extra=dict(SYSTEM_CT)))
    assert [c.name for c in plan.changes if isinstance(c.data, Blocked)] == ["/mnt/tank/media"]


def test_nfs_mounts_move_to_storage_address(fal):
    dep = {"kind": "Deployment", "metadata": {"namespace": "media", "name": "sonarr"},
           "spec": {"template": {"spec": {"volumes": [{"name": "media", "nfs": {"server": "10.30.0.20", "path": "/mnt/tank/media"}},
                                                       {"name": "ok", "nfs": {"server": "10.11.0.20", "path": "/x"}}]}}}}
    pv = {"metadata": {"name": "media-pv"}, "spec": {"nfs": {"server": "10.30.0.20", "path": "/mnt/tank/media"}}}
    plan = plan_truenas_plex(fal, TnPlexFacts({}, {}, (), workloads=(dep,), pvs=(pv,)), StepOptions(extra=dict(SYSTEM_CT)))
    moves = [c for c in plan.changes if c.kind == "nfs-mount"]
    assert [(c.name, c.old, c.new, c.disruptive) for c in moves] == [
        ("Deployment/media/sonarr", "10.30.0.20", "10.11.0.20", True)]
    assert any("PV media-pv" in n for n in plan.notes)
    check = [c for c in checks_from(fal, TnPlexFacts({}, {}, (), workloads=(dep,), pvs=(pv,)), StepOptions(extra=dict(SYSTEM_CT)))
             if c.check.startswith("NFS mounts")][0]
    assert not check.ok and "media/sonarr" in check.observed and "PV media-pv" in check.observed


def test_plex_checks_read_the_container_config(fal):
    cfg = plan_config(fal)
    facts = TnPlexFacts({}, {400: {"status": "running", "config": cfg}}, ("truenas-media",))
    checks = {c.check: c for c in checks_from(fal, facts, StepOptions(extra=dict(SYSTEM_CT)))}
    assert checks["Plex container"].ok
    gpu = checks["transcoding device passed to the container"]
    assert gpu.ok and "pct exec 400 -- ls -l /dev/dri/renderD128" in gpu.observed
    assert "NFS media bind mount" not in checks  # TrueNAS disabled (the seed): no NFS media yet
    assert plan_truenas_plex(fal, facts, StepOptions(extra=dict(SYSTEM_CT))).changes == ()
    on = spec_with({"truenas.enabled": True, "host.memory_gb": 64})
    on_checks = {c.check: c for c in checks_from(on, facts, StepOptions(extra=dict(SYSTEM_CT)))}
    assert on_checks["NFS media bind mount"].ok and on_checks["host NFS storage for Plex media"].ok


def test_existing_storage_elsewhere_is_reported_not_changed():
    spec = spec_with({"truenas.enabled": True, "truenas.memory_gb": 4, "host.memory_gb": 64})
    facts = TnPlexFacts({}, {}, ("local", "truenas-media"), extra={"node": "fal"},
                        storage_config={"truenas-media": {"type": "nfs", "server": "10.30.0.5", "export": "/old"}})
    plan = plan_truenas_plex(spec, facts, StepOptions(extra=dict(SYSTEM_CT)))
    assert not [c for c in plan.changes if c.kind == "pve-storage"]
    assert any("'truenas-media' exists as nfs 10.30.0.5:/old" in n for n in plan.notes)
    same = TnPlexFacts({}, {}, ("local", "truenas-media"), extra={"node": "fal"},
                       storage_config={"truenas-media": {"type": "nfs", "server": "10.11.0.20", "export": "/mnt/tank/media"}})
    again = plan_truenas_plex(spec, same, StepOptions(extra=dict(SYSTEM_CT)))
    assert not [c for c in again.changes if c.kind == "pve-storage"]
    assert not any("exists as" in n for n in again.notes)


def test_plans_round_trip_through_json_with_typed_payloads(fal):
    """Every change carries a registered payload with an executor (no dict), the plan survives JSON,
    and a blocked change is what the runbook's refusal reads; apply's order: TrueNAS, the host's
    storages, the template or image, the container, its start, the apps' NFS mounts."""
    dep = {"kind": "Deployment", "metadata": {"namespace": "media", "name": "sonarr"},
           "spec": {"template": {"spec": {"volumes": [{"name": "media", "nfs": {"server": "10.30.0.20", "path": "/x"}}]}}}}
    on = spec_with({"truenas.enabled": True, "truenas.memory_gb": 4, "host.memory_gb": 64})
    plans = [plan_truenas_plex(fal, empty(extra={"root_session": True}), StepOptions(extra=dict(SYSTEM_CT))),
             plan_truenas_plex(fal, empty(extra={"root_session": True, "oci_present": False, "node": "fal"}), StepOptions()),
             plan_truenas_plex(fal, empty(extra={"template_present": False, "template_appliance": True}),
                               StepOptions(extra=dict(SYSTEM_CT))),
             plan_truenas_plex(on, TnPlexFacts({}, {}, ("local",), workloads=(dep,), extra={"root_session": True}),
                               StepOptions(extra=dict(SYSTEM_CT))),
             plan_truenas_plex(spec_with({"truenas.enabled": True}), empty(), StepOptions(extra=dict(SYSTEM_CT)))]
    kinds = set()
    for plan in plans:
        assert plan.changes
        for c in plan.changes:
            assert not isinstance(c.data, dict) and executors.executable(c), c.describe()
            kinds.add(c.kind)
        back = Plan.from_json(json.loads(json.dumps(plan.to_json())))
        assert back == plan and [type(c.data) for c in back.changes] == [type(c.data) for c in plan.changes]
    assert {"vm", "nfs-share", "service", "pve-storage", "oci-image", "lxc-template", "ct", "ct-config-root",
            "nfs-mount", "preflight"} <= kinds
    order = [c.kind for c in in_apply_order(plans[3].changes)]
    assert order == ["vm", "vm", "nfs-share", "service", "pve-storage", "ct", "ct-config-root", "ct", "nfs-mount"]
    assert refuse(plans[4], StepOptions(apply=True, allow_disruptive=True, allow_destructive=True)).blocked
