"""10-network: the pure plan as a data table (observed interfaces -> expected changes), vmbr0
changes flagged disruptive, idempotence, and the step against a real twin pve process: from the
"before" lab it stages and reloads, then a fresh plan is empty and the checks pass."""

from __future__ import annotations

import dataclasses
import json

import pytest
from steps_support import PveTarget

from falkit.plan.diff import Plan
from falkit.plan.payloads import PAYLOADS
from falkit.steps import executors
from falkit.steps.base import StepOptions
from falkit.steps.network import NetworkFacts, ReloadNetwork, StageBridge, plan_network
from falkit.steps.registry import get_step

ETH = {"type": "eth", "active": 1, "exists": 1}
VMBR0_OLD = {"type": "bridge", "bridge_ports": "enp1s0", "cidr": "10.30.0.2/24", "gateway": "10.30.0.1",
             "autostart": 1, "active": 1, "exists": 1}
VMBR0_NEW = dict(VMBR0_OLD, cidr="10.10.0.2/24", gateway="10.10.0.1")
VMBR1 = {"type": "bridge", "bridge_ports": "", "cidr": "10.11.0.1/24", "autostart": 1, "active": 1, "exists": 1}


def rows(plan):
    return [(c.op, c.name, c.field, c.new, c.disruptive) for c in plan.changes]


CASES = {
    "before: vmbr0 moves subnet, vmbr1 created": (
        {"enp1s0": ETH, "vmbr0": VMBR0_OLD},
        [("update", "vmbr0", "cidr", "10.10.0.2/24", True),
         ("update", "vmbr0", "gateway", "10.10.0.1", True),
         ("create", "vmbr1", "", "ports none, 10.11.0.1/24", False),
         ("action", "fal", "reload", None, True)]),
    "vmbr0 already right: vmbr1 only, not disruptive": (
        {"enp1s0": ETH, "vmbr0": VMBR0_NEW},
        [("create", "vmbr1", "", "ports none, 10.11.0.1/24", False), ("action", "fal", "reload", None, False)]),
    "converged: nothing": ({"enp1s0": ETH, "vmbr0": VMBR0_NEW, "vmbr1": VMBR1}, []),
    "staged but not applied: reload only": (
        {"enp1s0": ETH, "vmbr0": VMBR0_NEW, "vmbr1": {k: v for k, v in VMBR1.items() if k not in ("active", "exists")}},
        [("action", "fal", "reload", None, False)]),
    "vmbr1 with a stray gateway and a port": (
        {"enp1s0": ETH, "vmbr0": VMBR0_NEW, "vmbr1": dict(VMBR1, gateway="10.11.0.254", bridge_ports="enp2s0")},
        [("update", "vmbr1", "bridge_ports", "(none)", False), ("update", "vmbr1", "gateway", "(none)", False),
         ("action", "fal", "reload", None, False)]),
    "vmbr0 on the wrong port": (
        {"enp1s0": ETH, "vmbr0": dict(VMBR0_NEW, bridge_ports="eno1"), "vmbr1": VMBR1},
        [("update", "vmbr0", "bridge_ports", "enp1s0", True), ("action", "fal", "reload", None, True)]),
    "address/netmask instead of cidr reads the same": (
        {"enp1s0": ETH, "vmbr0": {k: v for k, v in VMBR0_NEW.items() if k != "cidr"} | {"address": "10.10.0.2", "netmask": "255.255.255.0"},
         "vmbr1": VMBR1}, []),
}


@pytest.mark.parametrize("name", list(CASES))
def test_plan_table(fal, name):
    facts, expected = CASES[name]
    assert rows(plan_network(fal, NetworkFacts("fal", facts), StepOptions())) == expected


def test_plan_carries_typed_payloads_and_round_trips(fal):
    """Every change carries a registered payload with an executor (the bridge's planned parameters,
    the reload), and the plan is equal after a JSON round trip."""
    for name in CASES:
        plan = plan_network(fal, NetworkFacts("fal", CASES[name][0]), StepOptions())
        assert all(dataclasses.is_dataclass(c.data) and PAYLOADS.get(type(c.data).__name__) is type(c.data)
                   and executors.executable(c) for c in plan.changes), name
        assert Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan, name
    plan = plan_network(fal, NetworkFacts("fal", CASES["vmbr1 with a stray gateway and a port"][0]), StepOptions())
    assert [c.data for c in plan.changes] == [
        StageBridge("vmbr1", {"cidr": "10.11.0.1/24", "autostart": 1}, delete=("bridge_ports", "gateway"))] * 2 \
        + [ReloadNetwork()]


def test_host_ip_option_and_physical_storage_port(fal):
    spec = fal.model_copy(update={"networks": fal.networks.model_copy(update={
        "storage": fal.networks.storage.model_copy(update={"bridge_ports": "enp2s0"})})})
    plan = plan_network(spec, NetworkFacts("fal", {"vmbr0": VMBR0_OLD}), StepOptions(extra={"host_ip": "10.10.0.5"}))
    assert [(c.name, c.field, c.new) for c in plan.changes][:3] == [
        ("vmbr0", "cidr", "10.10.0.5/24"), ("vmbr0", "gateway", "10.10.0.1"), ("vmbr1", "", "ports enp2s0, 10.11.0.5/24")]


def test_step_converges_on_twin(fal, pve_before, progress):  # noqa: F811
    target = PveTarget(pve_before.api(), pve_before.node)
    step = get_step("network")
    opts = StepOptions(apply=True, allow_disruptive=True)
    plan = step.plan(fal, step.observe(target, fal, opts), opts)
    assert [c.name for c in plan.changes] == ["vmbr0", "vmbr0", "vmbr1", "fal"]
    assert not all(c.ok for c in step.checks(target, fal, opts))
    step.apply(target, plan, opts, progress)
    assert progress.bars["network reload"] == [(1, "applied")]
    again = step.plan(fal, step.observe(target, fal, opts), opts)
    assert again.empty, str(again)
    live = {i["iface"]: i for i in target.pve.nodes("fal").network.get()}
    assert live["vmbr1"]["active"] == 1 and live["vmbr1"]["cidr"] == "10.11.0.1/24" and "gateway" not in live["vmbr1"]
    assert live["vmbr0"]["cidr"] == "10.10.0.2/24" and live["vmbr0"]["gateway"] == "10.10.0.1"
    assert all(c.ok for c in step.checks(target, fal, opts))
