"""20-vms: the pure plan as data tables — the "before" lab -> the migration plan (net0 MAC changes
flagged disruptive, net1 added, workers 202/203 created, worker-01's drift), memory/disk drift,
shrink refused as destructive, extra VMs only deleted when allowed, idempotence — and the step
against a real twin pve process: VMs created in parallel with one progress bar per task, a second
plan empty; a PVE task failure becomes a StepError naming the VM and PVE's words."""

from __future__ import annotations

import dataclasses
import json

import pytest
from steps_support import PveTarget

from falkit.clients.proxmox import VmState
from falkit.model.errors import StepError
from falkit.plan.diff import Plan
from falkit.plan.payloads import PAYLOADS, Blocked
from falkit.steps import executors
from falkit.steps.base import StepOptions
from falkit.steps.registry import get_step
from falkit.steps.vms import (
    ClusterVmPower,
    CreateClusterVm,
    DestroyClusterVm,
    DownloadTalosIso,
    RefusedClusterDisk,
    ResizeClusterDisk,
    SetClusterVmConfig,
    VmFacts,
    apply_order,
    cluster_vms,
    desired_config,
    iso_name,
    plan_vms,
)

COMMON = {"ostype": "l26", "scsihw": "virtio-scsi-single", "agent": "1", "cpu": "host", "sockets": 1}


def before_vms() -> dict[int, VmState]:
    """VMs 200/201 as the twin's "before" lab reads back (supervisor.pve_config_from_spec)."""
    return {
        200: VmState(200, "talos-cp-01", "running", dict(COMMON, name="talos-cp-01", cores=2, memory="4096",
                     net0="virtio=52:54:00:10:30:10,bridge=vmbr0",
                     scsi0="local-lvm:vm-200-disk-0,discard=on,size=30G,ssd=1"), {}),
        201: VmState(201, "talos-worker-01", "running", dict(COMMON, name="talos-worker-01", cores=2, memory="9216",
                     net0="virtio=52:54:00:10:30:11,bridge=vmbr0",
                     scsi0="local-lvm:vm-201-disk-0,discard=on,size=30G,ssd=1",
                     scsi1="helford:vm-201-disk-1,discard=on,size=300G,ssd=1"), {}),
    }


def converged(spec) -> dict[int, VmState]:
    out = {}
    for vm in cluster_vms(spec):
        cfg = desired_config(spec, vm)
        for d in vm.disks:
            cfg[d.slot] = f"{d.storage}:vm-{vm.vmid}-disk-{d.slot[-1]},discard=on,iothread=1,size={d.size_gb}G,ssd=1"
        out[vm.vmid] = VmState(vm.vmid, vm.name, "running", cfg, {})
    return out


def rows(plan):
    return [(c.op, c.kind, c.name, c.field, c.disruptive, c.destructive) for c in plan.changes]


def test_before_state_migration_plan(fal):
    facts = VmFacts("fal", before_vms(), isos=(), cluster_names=("talos-cp-01", "talos-worker-01"))
    plan = plan_vms(fal, facts, StepOptions(allow_disruptive=True))
    assert rows(plan) == [
        ("action", "iso", f"local:iso/{iso_name(fal)}", "download", False, False),
        ("create", "vm", "talos-worker-02", "", False, False),
        ("action", "vm", "talos-worker-02", "start", False, False),
        ("create", "vm", "talos-worker-03", "", False, False),
        ("action", "vm", "talos-worker-03", "start", False, False),
        ("update", "vm-config", "talos-cp-01", "balloon", False, False),
        ("update", "vm-config", "talos-cp-01", "onboot", False, False),
        ("update", "vm-config", "talos-cp-01", "net0", True, False),
        ("action", "vm", "talos-cp-01", "reboot", True, False),
        ("update", "vm-config", "talos-worker-01", "balloon", False, False),
        ("update", "vm-config", "talos-worker-01", "onboot", False, False),
        ("update", "vm-config", "talos-worker-01", "net0", True, False),
        ("update", "vm-config", "talos-worker-01", "net1", False, False),
        ("action", "vm", "talos-worker-01", "reboot", True, False),
    ]
    net0 = next(c for c in plan.changes if c.name == "talos-cp-01" and c.field == "net0")
    assert (net0.old, net0.new) == ("virtio=52:54:00:10:30:10,bridge=vmbr0", "virtio=52:54:00:10:10:10,bridge=vmbr0")
    assert "MAC change" in net0.reason
    net1 = next(c for c in plan.changes if c.field == "net1")
    assert net1.new == "virtio=52:54:00:10:11:11,bridge=vmbr1"
    create = next(c for c in plan.changes if c.op == "create" and c.name == "talos-worker-02")
    p = create.data.params
    assert p["vmid"] == 202 and p["memory"] == "9216" and p["scsi1"].startswith("helford:300,")
    assert p["ide2"] == f"local:iso/talos-{fal.versions.talos}-metal-amd64.iso,media=cdrom"
    assert p["net0"] == "virtio=52:54:00:10:10:12,bridge=vmbr0" and p["balloon"] == "0" and p["onboot"] == "1"
    assert "talos-worker-01" in str(plan) and "52:54:00:10:10:11" in str(plan)


def _typed_round_trip(plan):
    assert all(dataclasses.is_dataclass(c.data) and PAYLOADS.get(type(c.data).__name__) is type(c.data)
               for c in plan.changes), [c.describe() for c in plan.changes if not dataclasses.is_dataclass(c.data)]
    assert all(executors.executable(c) for c in plan.changes), [c.describe() for c in plan.changes]
    assert Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan


def test_plans_carry_typed_payloads_and_round_trip(fal):
    """Every change of 20-vms carries a registered payload (no dict) with an executor, and the plan
    is equal after a JSON round trip: the create parameters, the config keys, whether the plan
    restarts the VM — apply reads nothing else."""
    facts = VmFacts("fal", before_vms(), isos=(), cluster_names=("talos-cp-01", "talos-worker-01"),
                    bridges={"vmbr0": True}, storages={"local": "iso", "local-lvm": "images", "helford": "images"})
    migration = plan_vms(fal, facts, StepOptions(allow_disruptive=True))
    types = [type(c.data) for c in migration.changes]
    assert Blocked in types and DownloadTalosIso in types and CreateClusterVm in types and SetClusterVmConfig in types and ClusterVmPower in types
    [bridge] = [c for c in migration.changes if isinstance(c.data, Blocked)]
    assert bridge.data.run_first == "10-network" and "vmbr1" in bridge.data.message
    net1 = next(c for c in migration.changes if c.name == "talos-worker-01" and c.field == "net1")
    assert net1.data == SetClusterVmConfig(201, {"net1": net1.new}, pending=True, restarted=True)
    _typed_round_trip(migration)
    # apply's phases: downloads, creates, config updates, resizes, reboots, starts (plan order within each)
    ordered = [(type(c.data).__name__, getattr(c.data, "action", "")) for c in apply_order(migration.changes)]
    assert ordered == sorted(ordered, key=lambda t: ["Blocked", "DownloadTalosIso", "CreateClusterVm", "SetClusterVmConfig",
                                                      "ClusterVmPower"].index(t[0]) * 2 + (t[1] == "start"))
    resize = plan_vms(fal, VmFacts("fal", _with(fal, 203, scsi1="helford:vm-203-disk-1,size=200G"), isos=(iso_name(fal),)),
                      StepOptions())
    assert [c.data for c in resize.changes] == [ResizeClusterDisk(203, "scsi1", "300G")]
    shrink = plan_vms(fal, VmFacts("fal", _with(fal, 203, scsi1="helford:vm-203-disk-1,size=400G"), isos=(iso_name(fal),)),
                      StepOptions())
    assert [c.data for c in shrink.changes] == [RefusedClusterDisk(203, "shrink")]
    vms = converged(fal)
    vms[204] = VmState(204, "talos-worker-04", "running", {"name": "talos-worker-04"}, {})
    gone = plan_vms(fal, VmFacts("fal", vms, isos=(iso_name(fal),)), StepOptions(allow_destructive=True))
    assert [c.data for c in gone.changes] == [DestroyClusterVm(204, True)]
    for plan in (resize, shrink, gone):
        _typed_round_trip(plan)


def test_the_plan_does_not_depend_on_allow_disruptive(fal):
    """The reboots that make new NICs take effect are planned either way (issue 12 item 2: 12 changes
    in JupyterLab, 14 headless); without the option the runbook refuses the plan as a whole."""
    facts = VmFacts("fal", before_vms(), isos=(iso_name(fal),))
    plan = plan_vms(fal, facts, StepOptions())
    assert plan == plan_vms(fal, facts, StepOptions(allow_disruptive=True))
    assert [c.field for c in plan.disruptive] == ["net0", "reboot", "net0", "reboot"]


def test_converged_plans_nothing(fal):
    plan = plan_vms(fal, VmFacts("fal", converged(fal), isos=(iso_name(fal),)), StepOptions(allow_disruptive=True))
    assert plan.empty and len(plan.noops) == 4, str(plan)


def _with(spec, vmid, status="running", pending=None, **config):
    vms = converged(spec)
    st = vms[vmid]
    vms[vmid] = VmState(vmid, st.name, status, {**st.config, **config}, pending or {})
    return vms


DRIFT = {
    "memory lower -> pending update + reboot": (
        dict(vmid=201, memory="8192"),
        [("update", "vm-config", "talos-worker-01", "memory", False, False), ("action", "vm", "talos-worker-01", "reboot", True, False)]),
    "bridge swapped -> disruptive": (
        dict(vmid=202, net1="virtio=52:54:00:10:11:12,bridge=vmbr0"),
        [("update", "vm-config", "talos-worker-02", "net1", True, False), ("action", "vm", "talos-worker-02", "reboot", True, False)]),
    "disk smaller -> online resize": (
        dict(vmid=203, scsi1="helford:vm-203-disk-1,size=200G"),
        [("action", "vm-disk", "talos-worker-03", "scsi1 resize", False, False)]),
    "disk larger -> shrink refused, destructive": (
        dict(vmid=203, scsi1="helford:vm-203-disk-1,size=400G"),
        [("update", "vm-disk", "talos-worker-03", "scsi1", False, True)]),
    "stopped -> start": (dict(vmid=200, status="stopped"), [("action", "vm", "talos-cp-01", "start", False, False)]),
    "already pending -> reboot only": (
        dict(vmid=200, pending={"memory": "4096"}), [("action", "vm", "talos-cp-01", "reboot", True, False)]),
    "onboot off -> applied at once, no reboot": (
        dict(vmid=200, onboot="0"), [("update", "vm-config", "talos-cp-01", "onboot", False, False)]),
}


@pytest.mark.parametrize("name", list(DRIFT))
def test_drift_table(fal, name):
    kw, expected = DRIFT[name]
    kw = dict(kw)
    vms = _with(fal, kw.pop("vmid"), kw.pop("status", "running"), kw.pop("pending", None), **kw)
    assert rows(plan_vms(fal, VmFacts("fal", vms, isos=(iso_name(fal),)), StepOptions(allow_disruptive=True))) == expected


def test_extra_vm_deleted_only_when_allowed(fal):
    vms = converged(fal)
    vms[204] = VmState(204, "talos-worker-04", "running", {"name": "talos-worker-04"}, {})
    vms[150] = VmState(150, "homeassistant", "running", {"name": "homeassistant"}, {})
    kept = plan_vms(fal, VmFacts("fal", vms, isos=(iso_name(fal),)), StepOptions())
    assert kept.empty and any("VM 204 (talos-worker-04) is not in the spec" in n for n in kept.notes)
    assert not any("homeassistant" in n for n in kept.notes)
    gone = plan_vms(fal, VmFacts("fal", vms, isos=(iso_name(fal),)), StepOptions(allow_destructive=True))
    assert rows(gone) == [("delete", "vm", "talos-worker-04", "", False, True)]


def _converge_network(fal, target, progress):
    net = get_step("network")
    opts = StepOptions(apply=True, allow_disruptive=True)
    net.apply(target, net.plan(fal, net.observe(target, fal, opts), opts), opts, progress)


def test_step_converges_on_twin(fal, pve_before, progress):  # noqa: F811
    target = PveTarget(pve_before.api(), pve_before.node)
    _converge_network(fal, target, progress)
    step = get_step("vms")
    opts = StepOptions(apply=True, allow_disruptive=True, wait_timeout_s=30)
    plan = step.plan(fal, step.observe(target, fal, opts), opts)
    assert {c.name for c in plan.changes if c.op == "create"} == {"talos-worker-02", "talos-worker-03"}
    step.apply(target, plan, opts, progress)
    assert {"create talos-worker-02", "create talos-worker-03", "start talos-worker-02", "reboot talos-cp-01"} <= set(progress.bars)
    assert all(v[-1] == (1, "done") for k, v in progress.bars.items() if k != "network reload"), progress.bars
    again = step.plan(fal, step.observe(target, fal, opts), opts)
    assert again.empty, str(again)
    cfg = target.pve.nodes("fal").qemu(201).config.get()
    assert cfg["net0"].startswith("virtio=52:54:00:10:10:11,") and "bridge=vmbr1" in cfg["net1"]
    cfg = target.pve.nodes("fal").qemu(203).config.get()
    assert "size=300G" in cfg["scsi1"] and cfg["scsi1"].startswith("helford:")
    checks = step.checks(target, fal, opts)
    assert len(checks) == 4 and all(c.ok for c in checks), [c.row() for c in checks]


def test_task_error_names_vm_and_pve_words(fal, pve_before, progress):  # noqa: F811
    target = PveTarget(pve_before.api(), pve_before.node)
    _converge_network(fal, target, progress)
    pve_before.control.fault("task_error", match="qmcreate", vmid=203, message="unable to create VM 203 - lvcreate failed")
    step = get_step("vms")
    opts = StepOptions(apply=True, allow_disruptive=True, wait_timeout_s=30)
    with pytest.raises(StepError) as e:
        step.apply(target, step.plan(fal, step.observe(target, fal, opts), opts), opts, progress)
    assert "talos-worker-03" in str(e.value) and "lvcreate failed" in str(e.value)
    pve_before.control.clear()
    plan = step.plan(fal, step.observe(target, fal, opts), opts)
    assert [c.name for c in plan.changes if c.op == "create"] == ["talos-worker-03"]  # resume: no duplicate VM


def test_locked_vm_is_reported(fal, pve_before, progress):  # noqa: F811
    target = PveTarget(pve_before.api(), pve_before.node)
    _converge_network(fal, target, progress)
    pve_before.control.fault("lock", vmid=201, lock="backup")
    step = get_step("vms")
    opts = StepOptions(apply=True, allow_disruptive=True, wait_timeout_s=30)
    with pytest.raises(StepError) as e:
        step.apply(target, step.plan(fal, step.observe(target, fal, opts), opts), opts, progress)
    assert "talos-worker-01" in str(e.value) and "VM is locked (backup)" in str(e.value)
