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


def step_modules() -> list[str]:
    """The step modules (and packages) in falkit.steps, all but ``base`` and private ones."""
    import pkgutil

    import falkit.steps as pkg

    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name != "base" and not m.name.startswith("_"))


def load_steps() -> dict[str, type]:
    """Import every step module, so each registers its steps (whatever imported what before)."""
    from importlib import import_module

    for mod in step_modules():
        import_module(f"falkit.steps.{mod}")
    return REGISTRY


def get_step(name: str) -> Step:
    """A new instance of the step registered as ``name`` (e.g. ``vms``, ``rollback-metallb``)."""
    if name not in REGISTRY:
        load_steps()
    if name not in REGISTRY:
        raise KeyError(f"no step {name!r}; the steps are: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]()
