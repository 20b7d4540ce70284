"""Step ``before-state`` (10-network's first cell): record the lab as it is before the migration,
once, so 80-rollback can compare every field with it (:mod:`falkit.steps.rollback.state`).

- **observe** (read-only): whether ``before-state.json`` is already in the target's private dir
  (when, and how many fields), whether the spec has a ``previous`` section (a new build has nothing
  to roll back to), and whether the migration has already started on the lab: a VM the plan adds
  (not one of ``previous.nodes``) exists on the node, or the storage bridge exists.
- **plan** (pure): nothing when it is recorded; a note (no change) for a new build, a host without
  the old cluster's VMs, or a lab the
  migration already changed — recording then would make the half-migrated lab the rollback's
  target, so 80-rollback falls back to the spec's ``previous`` section; else one ``create`` of
  ``before-state.json`` (every compared field, and a checksum Job per mounted claim).
- **apply**: :func:`falkit.steps.rollback.state.record_before_state` (the checksum Jobs are the only
  objects it creates in the cluster; each is removed when it finished).
- **checks**: the file is there (or why it is not).

A fresh twin (``falkit twin up``) starts with an empty private dir, so every rehearsal records its
own before-state; on the live lab the first run that applies records it and later runs keep it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..model.design import design_of
from ..model.spec import LabSpec
from ..plan.diff import Change, Noop, Plan
from ..plan.payloads import RecordBeforeState
from .base import Check, Progress, StepOptions, register
from .executors import Apply, execute, executes
from .rollback.state import BEFORE_FILE, record_before_state, recorded_before
from .volumes import checkout_path

STEP = "before-state"


@dataclass(frozen=True)
class BeforeFacts:
    recorded: str | None  # a short description of the recorded file, None when absent
    previous: bool
    started: tuple[str, ...]  # what shows the migration already changed the lab
    absent: tuple[str, ...] = ()  # the spec's previous VMs, when none of them is on the host (nothing to record)
    checkout: str | None = None  # the GitOps checkout whose tree is recorded


def _started(target: Any, spec: LabSpec) -> tuple[str, ...]:
    node = target.pve.nodes(target.node)
    old = {n.vmid for n in spec.previous.nodes} if spec.previous else set()
    have = {int(v["vmid"]) for v in node.qemu.get() or []}
    out = [f"VM {vm.vmid} ({vm.name}) exists" for vm in design_of(spec).vms
           if vm.vmid not in old and vm.vmid in have and vm.role != "truenas"]
    bridge = spec.networks.storage.bridge
    if spec.previous is not None and bridge != spec.previous.network.bridge and any(i.get("iface") == bridge for i in node.network.get() or []):
        out.append(f"bridge {bridge} exists")
    return tuple(out)


def _absent(target: Any, spec: LabSpec) -> tuple[str, ...]:
    """The spec's ``previous`` VMs when the host has none of them (``GET /nodes/{node}/qemu``), else ()."""
    if spec.previous is None or not spec.previous.nodes:
        return ()
    have = {int(v["vmid"]) for v in target.pve.nodes(target.node).qemu.get() or []}
    if any(n.vmid in have for n in spec.previous.nodes):
        return ()
    return tuple(f"VM {n.vmid} ({n.name})" for n in spec.previous.nodes)


def observe_before(target: Any, spec: LabSpec, options: StepOptions) -> BeforeFacts:
    try:
        state = recorded_before(target)
    except ValueError:  # a file that is not JSON: present, but 80-rollback cannot read it either
        return BeforeFacts(f"{BEFORE_FILE} (unreadable)", spec.previous is not None, ())
    recorded = None if state is None else f"{BEFORE_FILE} ({len(state.fields)} fields, {len(state.checksums)} checksums)"
    path = checkout_path(spec.gitops, StepOptions(), target)
    checkout = str(path) if path is not None else None
    if state:
        return BeforeFacts(recorded, spec.previous is not None, (), checkout=checkout)
    return BeforeFacts(recorded, spec.previous is not None, _started(target, spec), _absent(target, spec), checkout)


def plan_before(facts: BeforeFacts) -> Plan:
    if facts.recorded:
        return Plan(STEP, (), (Noop("before-state", BEFORE_FILE, f"recorded: {facts.recorded}"),))
    if not facts.previous:
        return Plan(STEP, notes=("the spec has no `previous` section (a new build): nothing to roll back to, "
                                 "no before-state recorded",))
    if facts.absent:
        return Plan(STEP, notes=("none of the spec's `previous` VMs is on the host (" + ", ".join(facts.absent)
                                 + "): there is no old cluster, nothing to record and nothing to roll back to",))
    if facts.started:
        return Plan(STEP, notes=("no before-state recorded, and the migration already changed the lab ("
                                 + "; ".join(facts.started) + "): recording now would make this lab the "
                                 "rollback's target, so 80-rollback compares with the spec's `previous` section",))
    return Plan(STEP, (Change("create", "before-state", BEFORE_FILE, reason=(
        "record every field 80-rollback compares (bridges, VMs, containers, nodes, service IPs, MetalLB, "
        "StorageClasses, claims, the GitOps tree) and a checksum per mounted claim (checksum Jobs), "
        "in the private dir"), data=RecordBeforeState(facts.checkout)),))


@executes(RecordBeforeState)
def _record(c: Change, ctx: Apply) -> None:
    ctx.progress.log("recording the before-state (checksum Jobs on every mounted claim)")
    state = record_before_state(ctx.target, None, Path(c.data.checkout) if c.data.checkout else None)
    ctx.progress.log(f"recorded {len(state.fields)} fields and {len(state.checksums)} checksums")


@register(STEP)
class BeforeState:
    title = "The lab before the migration (for 80-rollback)"
    options: dict = {}

    def observe(self, target, spec, options):
        return observe_before(target, spec, options)

    def plan(self, spec, observed, options):
        return plan_before(observed)

    def apply(self, target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
        execute(target, plan.changes, progress, options.wait_timeout_s, step=STEP)

    def checks(self, target, spec, options):
        facts = observe_before(target, spec, options)
        if facts.recorded:
            return [Check("before-state recorded", BEFORE_FILE, "in the private dir", facts.recorded, True)]
        why = plan_before(facts).notes
        return [Check("before-state recorded", BEFORE_FILE, "in the private dir", "absent",
                      not facts.previous or bool(facts.started) or bool(facts.absent),
                      why[0] if why else "run 10-network with apply (it records it first)")]
