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

import os

import pytest
from helpers import patched, write_yaml

from falkit import runbook
from falkit.model.errors import RefusedError
from falkit.model.spec import load_spec
from falkit.steps.base import StepOptions
from falkit.steps.rollback import comparison, lab_state, record_before_state


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
