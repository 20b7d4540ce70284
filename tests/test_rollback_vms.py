"""The rollback's VM part through the runbook facade on a twin: VMs 200/201 and the extra workers.

Covers (issue 14 item 2): from the "before" twin (before-state recorded), 10-network and 20-vms
give VMs 200/201 the new MAC prefix, ``balloon=0`` and (201) a storage NIC, and create workers
202/203. ``rollback-workers`` without ``destroy_extra_workers`` powers 202/203 off and keeps them:
the before/after table lists them (and vmbr1, which their NICs use) as ``kept
(destroy_extra_workers=False)``, never as a silent leftover; ``rollback-vms`` returns 200/201 to
their old MACs, no balloon key, no net1 (a re-run plans nothing). With ``destroy_extra_workers``
(and ``allow_destructive``; refused without it, nothing destroyed) 202/203 are destroyed; then
``rollback-network`` removes vmbr1, and every VM and bridge row of the table is equal.
"""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
from helpers import patched, write_yaml
from test_runbook_support import FAL

from falkit import runbook
from falkit.model.errors import RefusedError
from falkit.model.spec import load_spec
from falkit.plan.diff import Plan
from falkit.plan.payloads import PAYLOADS
from falkit.steps import executors
from falkit.steps.base import StepOptions
from falkit.steps.rollback import comparison, lab_state, record_before_state
from falkit.steps.rollback.pve import (
    DestroyNewContainer,
    PveFacts,
    RebootVmBack,
    RestoreVmConfig,
    StopNewContainer,
    plan_containers_back,
    plan_vms_back,
)


def _typed_round_trip(plan):
    assert all(dataclasses.is_dataclass(c.data) and PAYLOADS.get(type(c.data).__name__) is type(c.data)
               and executors.executable(c) for c in plan.changes), [c.describe() for c in plan.changes]
    assert Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan


def test_vms_and_containers_plans_carry_typed_payloads_and_round_trip():
    """rollback-vms and rollback-containers: every change carries a registered payload with an
    executor — each changed key of a VM the VM's whole restore (one PUT), the reboot, the
    container's VMID — and the plan is equal after a JSON round trip (pure)."""
    spec = load_spec(FAL)
    before = {"vm|VM 200|name": "talos-cp-01", "vm|VM 200|net0": "virtio=52:54:00:10:30:10,bridge=vmbr0",
              "vm|VM 201|name": "talos-worker-01", "vm|VM 201|net0": "virtio=52:54:00:10:30:11,bridge=vmbr0",
              "container|CT 100|name": "pihole"}
    vms = {200: {"status": "running", "config": {"name": "talos-cp-01", "balloon": "0",
                                                 "net0": "virtio=52:54:00:10:10:10,bridge=vmbr0"}},
           201: {"status": "stopped", "config": {"name": "talos-worker-01", "net0": "virtio=52:54:00:10:30:11,bridge=vmbr0",
                                                 "net1": "virtio=52:54:00:10:11:11,bridge=vmbr1"}}}
    cts = {100: {"name": "pihole", "status": "running", "config": {}}, 300: {"name": "plex", "status": "running", "config": {}}}
    f = PveFacts(before, vms, cts, {})
    plan = plan_vms_back(spec, f, StepOptions())
    restore200 = RestoreVmConfig(200, {"net0": "virtio=52:54:00:10:30:10,bridge=vmbr0"}, ("balloon",))
    assert [(c.field, c.data) for c in plan.changes] == [
        ("balloon", restore200), ("net0", restore200), ("reboot", RebootVmBack(200)),
        ("net1", RestoreVmConfig(201, {}, ("net1",)))]
    _typed_round_trip(plan)
    cts_plan = plan_containers_back(spec, f, StepOptions(extra={"destroy_new_containers": True}))
    assert [c.data for c in cts_plan.changes] == [StopNewContainer(300), DestroyNewContainer(300)]
    _typed_round_trip(cts_plan)


@pytest.fixture
def lab(tmp_path):
    from falkit.clients.target import connect
    from falkit.twin import supervisor

    params = write_yaml(tmp_path, patched({}))
    state = tmp_path / "state"
    old = os.environ.get("FALKIT_STATE_DIR")
    os.environ["FALKIT_STATE_DIR"] = str(state)
    os.environ["FALKIT_HEADLESS"] = "1"
    supervisor.up(params, state="before", state_dir=state / "twin", time_factor=0.0)
    try:
        target = connect(params, "twin", state_dir=state)
        spec = load_spec(params)
        yield {"params": str(params), "target": target, "spec": spec, "before": record_before_state(target, spec)}
        target.close()
    finally:
        supervisor.down(state / "twin")
        if old is None:
            os.environ.pop("FALKIT_STATE_DIR", None)
        else:
            os.environ["FALKIT_STATE_DIR"] = old


def open_lab(lab, nb, **options):
    return runbook.open(lab["params"], target="twin", apply=True, notebook=nb, **options)


def rows(lab, **extra):
    lab["target"].reset_kube()
    table = comparison(lab["before"], lab_state(lab["target"], lab["spec"]), StepOptions(extra=extra))
    return {(r["area"], r["subject"], r["field"]): r["result"] for r in table if r["area"] in ("vm", "bridge")}


def test_vms_back_and_extra_workers_kept_or_destroyed_by_option(lab):
    target = lab["target"]
    qemu = target.pve.nodes(target.node).qemu
    open_lab(lab, "10-network", allow_disruptive=True).step("network").apply()
    open_lab(lab, "20-vms", allow_disruptive=True).step("vms").apply()
    assert qemu(201).config.get()["net0"].startswith("virtio=52:54:00:10:10:11") and "net1" in qemu(201).config.get()
    assert {v["vmid"] for v in qemu.get()} >= {202, 203}

    back = {"rollback": True, "allow_disruptive": True}
    open_lab(lab, "80-rollback", **back).step("rollback-workers").apply()
    open_lab(lab, "80-rollback", **back).step("rollback-vms").apply()
    for vmid, mac in ((200, "52:54:00:10:30:10"), (201, "52:54:00:10:30:11")):
        cfg = qemu(vmid).config.get()
        assert cfg["net0"].lower().startswith(f"virtio={mac},") and "balloon" not in cfg and "net1" not in cfg
    assert not open_lab(lab, "80-rollback", **back).step("rollback-vms").plan.changes  # a re-run is a no-op
    status = {v["vmid"]: v["status"] for v in qemu.get()}
    assert status[202] == "stopped" and status[203] == "stopped"
    kept = rows(lab)
    assert kept[("vm", "VM 202", "net0")] == "kept (destroy_extra_workers=False)"
    assert kept[("vm", "VM 203", "status")] == "kept (destroy_extra_workers=False)"
    assert kept[("bridge", "vmbr1", "cidr")].startswith("kept (used by VM 202, VM 203")
    assert all(r == "equal" for (a, s, _f), r in kept.items() if s in ("VM 200", "VM 201"))

    with pytest.raises(RefusedError):  # destroying needs allow_destructive as well
        open_lab(lab, "80-rollback", destroy_extra_workers=True, **back).step("rollback-workers").apply()
    assert {202, 203} <= {v["vmid"] for v in qemu.get()}
    open_lab(lab, "80-rollback", destroy_extra_workers=True, allow_destructive=True, **back).step("rollback-workers").apply()
    open_lab(lab, "80-rollback", **back).step("rollback-network").apply()
    assert {v["vmid"] for v in qemu.get()} == {200, 201}
    assert "vmbr1" not in {i["iface"] for i in target.pve.nodes(target.node).network.get()}
    final = rows(lab, destroy_extra_workers=True)
    assert final and all(r == "equal" for r in final.values()), {k: r for k, r in final.items() if r != "equal"}
