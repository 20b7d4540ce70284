"""The rollback's host network and its service-IP check, through the runbook facade on a twin.

Covers (issue 14 item 2): the twin starts in its "before" state (vmbr0 10.30.0.2/24 via 10.30.0.1,
no vmbr1) and the before-state is recorded; 10-network moves vmbr0 to 10.10.0.2/24 and creates
vmbr1. Then the rollback's before-state check (step ``rollback``) fails: the services' restored
10.30.0.x IPs sit on a host network that is now 10.10.0.0/24, and the before/after table shows
vmbr0's address and gateway and vmbr1 as differing (the old check passed in that state).
``rollback-network`` is refused without ``rollback=True`` (the lab unchanged); with it, vmbr0 is back
on 10.30.0.2/24 via 10.30.0.1 and vmbr1 is deleted (nothing uses it); a re-run plans nothing; the
check then passes for the host network and vmbr0/vmbr1 rows are equal. Without a recorded
before-state, ``spec.previous`` is the reference: the same check fails, and rollback-network
returns vmbr0 to 10.30.0.2/24 via 10.30.0.1 and removes the unused storage bridge.
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
from falkit.steps.rollback import record_before_state
from falkit.steps.rollback.pve import PveFacts, ReloadNetworkBack, RestoreBridge, plan_network_back


def test_plan_carries_typed_payloads_and_round_trips():
    """Every change of rollback-network carries a registered payload with an executor (the bridge
    to create, update or delete with its parameters; the reload), and the plan is equal after a JSON
    round trip (pure)."""
    spec = load_spec(FAL)
    before = {"bridge|vmbr0|bridge_ports": "enp1s0", "bridge|vmbr0|cidr": "10.30.0.2/24", "bridge|vmbr0|gateway": "10.30.0.1",
              "bridge|vmbr9|bridge_ports": "(none)", "bridge|vmbr9|cidr": "10.9.0.1/24", "bridge|vmbr9|gateway": "(none)"}
    bridges = {"vmbr0": {"type": "bridge", "bridge_ports": "enp1s0", "cidr": "10.10.0.2/24", "gateway": "10.10.0.1",
                         "active": 1},
               "vmbr1": {"type": "bridge", "bridge_ports": "", "cidr": "10.11.0.1/24", "active": 1}}
    plan = plan_network_back(spec, PveFacts(before, {}, {}, bridges), StepOptions())
    vmbr0 = RestoreBridge("vmbr0", "update", {"type": "bridge", "bridge_ports": "enp1s0", "cidr": "10.30.0.2/24",
                                              "gateway": "10.30.0.1"})
    assert [(c.name, c.field, c.data) for c in plan.changes] == [
        ("vmbr0", "cidr", vmbr0), ("vmbr0", "gateway", vmbr0),
        ("vmbr9", "", RestoreBridge("vmbr9", "create", {"type": "bridge", "cidr": "10.9.0.1/24"})),
        ("vmbr1", "", RestoreBridge("vmbr1", "delete")), (spec.host.node, "reload", ReloadNetworkBack())]
    assert all(dataclasses.is_dataclass(c.data) and PAYLOADS.get(type(c.data).__name__) is type(c.data)
               and executors.executable(c) for c in plan.changes)
    assert Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan


@pytest.fixture(params=[True, False], ids=["recorded", "spec-previous"])
def lab(tmp_path, request):
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
        if request.param:
            record_before_state(target, load_spec(params))
        yield {"params": str(params), "target": target, "recorded": request.param}
        target.close()
    finally:
        supervisor.down(state / "twin")
        if old is None:
            os.environ.pop("FALKIT_STATE_DIR", None)
        else:
            os.environ["FALKIT_STATE_DIR"] = old


def bridges(target) -> dict[str, dict]:
    return {i["iface"]: i for i in target.pve.nodes(target.node).network.get() if i.get("type") == "bridge"}


def test_host_network_back_and_the_service_ip_check_fails_while_it_is_not(lab):
    target = lab["target"]
    migrate = runbook.open(lab["params"], target="twin", apply=True, notebook="10-network", allow_disruptive=True)
    migrate.step("network").apply()
    now = bridges(target)
    assert now["vmbr0"]["cidr"] == "10.10.0.2/24" and "vmbr1" in now

    opts = {"rollback": True, "allow_disruptive": True}
    check = runbook.open(lab["params"], target="twin", apply=True, notebook="80-rollback", **opts)
    failed = {(c.check, c.subject) for c in check.checks("rollback") if not c.ok}
    # 10.30.0.x service IPs on a 10.10.0.0/24 host: the check fails (the old check passed here)
    assert ("service IP on the host network", "traefik/traefik") in failed
    if lab["recorded"]:
        assert ("as before: bridge cidr", "vmbr0") in failed and ("as before: bridge gateway", "vmbr0") in failed
        assert ("as before: bridge cidr", "vmbr1") in failed

    dry = runbook.open(lab["params"], target="twin", apply=True, notebook="80-rollback", allow_disruptive=True)
    with pytest.raises(RefusedError) as exc:
        dry.step("rollback-network").apply()
    assert "rollback=True" in str(exc.value)
    assert bridges(target)["vmbr0"]["cidr"] == "10.10.0.2/24" and "vmbr1" in bridges(target)  # nothing applied

    back = runbook.open(lab["params"], target="twin", apply=True, notebook="80-rollback", **opts)
    run = back.step("rollback-network").apply()
    assert run.record.applied and run.converged
    after = bridges(target)
    assert after["vmbr0"]["cidr"] == "10.30.0.2/24" and after["vmbr0"]["gateway"] == "10.30.0.1"
    assert after["vmbr0"]["bridge_ports"] == "enp1s0" and after["vmbr0"].get("active")
    assert "vmbr1" not in after
    again = runbook.open(lab["params"], target="twin", apply=True, notebook="80-rollback", **opts)
    assert not again.step("rollback-network").plan.changes  # a re-run is a no-op

    ok = {(c.check, c.subject): c.ok for c in again.checks("rollback")}
    assert ok[("service IP on the host network", "traefik/traefik")]
    if lab["recorded"]:
        assert ok[("as before: bridge cidr", "vmbr0")] and ok[("as before: bridge gateway", "vmbr0")]
        assert ("as before: bridge cidr", "vmbr1") not in ok  # absent before and after: no row
