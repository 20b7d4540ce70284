"""The step contract every runbook step implements (one module per step in falkit.steps).

    observed = step.observe(target, spec, options)        # read-only
    plan     = step.plan(spec, observed, options)         # pure -> falkit.diff.Plan
    step.apply(target, plan, options, progress)           # executes exactly plan.changes
    checks   = step.checks(target, spec, options)         # list[Check]; converged when a fresh plan is empty

A module registers itself with ``@register("vms")`` on a class implementing :class:`Step`.
``falkit.runbook`` drives the cycle (observe -> plan -> show -> apply -> re-observe until
converged), enforces the refusal rules (disruptive/destructive changes need an option) and
records everything for the run archive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from ..diff import Plan
from ..spec import LabSpec


@dataclass(frozen=True)
class Check:
    """One verification: what was expected, what was observed, and how to fix it."""

    check: str  # e.g. "node ready"
    subject: str  # e.g. "talos-worker-02"
    expected: str
    observed: str
    ok: bool
    fix: str = ""

    def row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StepOptions:
    """Per-notebook options (validated by falkit.runbook from the notebook parameters)."""

    apply: bool = False
    allow_disruptive: bool = False  # MAC/bridge changes, reboots
    allow_destructive: bool = False  # deleting VMs/disks/volumes, shrinking
    wait_timeout_s: float = 600.0
    extra: dict[str, Any] = field(default_factory=dict)


class Progress(Protocol):
    """Live progress: a widget in JupyterLab, log lines when headless."""

    def task(self, name: str, total: float | None = None) -> Callable[[float, str], None]: ...

    def log(self, message: str) -> None: ...


class Target(Protocol):  # see falkit.target.Target for the real one
    kind: str


class Step(Protocol):
    name: str
    title: str

    def observe(self, target: Any, spec: LabSpec, options: StepOptions) -> Any: ...

    def plan(self, spec: LabSpec, observed: Any, options: StepOptions) -> Plan: ...

    def apply(self, target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None: ...

    def checks(self, target: Any, spec: LabSpec, options: StepOptions) -> list[Check]: ...


REGISTRY: dict[str, type] = {}


def register(name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return deco


def get_step(name: str) -> Step:
    from importlib import import_module

    if name not in REGISTRY:
        import_module(f"falkit.steps.{name.replace('-', '_')}")
    return REGISTRY[name]()
