"""The step contract every runbook step implements (one module per step in falkit.steps).

    observed = step.observe(target, spec, options)        # read-only
    plan     = step.plan(spec, observed, options)         # pure -> falkit.plan.diff.Plan
    step.apply(target, plan, options, progress)           # executes exactly plan.changes
    checks   = step.checks(target, spec, options)         # list[Check]; converged when a fresh plan is empty

A step is a class implementing :class:`Step`, named with ``@register("vms")`` and listed in
:mod:`falkit.steps.registry` (the explicit list of steps; ``get_step(name)`` is there).
``options = {"name": (type, default)}`` on the class declares the notebook options the step reads
(validated once by :mod:`falkit.runbook.options`, handed to every method as the frozen
:class:`StepOptions`). ``falkit.runbook`` drives the cycle (observe -> plan -> show -> apply -> re-observe until
converged), enforces the refusal rules (disruptive/destructive changes need an option) and
records everything for the run archive.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from ..model.checks import Check
from ..model.spec import LabSpec
from ..plan.diff import Plan


@dataclass(frozen=True)
class StepOptions:
    """A notebook's options as the steps see them: a frozen value, validated once when the notebook
    opens the lab (:func:`falkit.runbook.options.step_options`). ``extra`` holds the options steps
    declare (read-only)."""

    apply: bool = False
    allow_disruptive: bool = False  # MAC/bridge changes, reboots
    allow_destructive: bool = False  # deleting VMs/disks/volumes, shrinking
    wait_timeout_s: float = 600.0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))


class Progress(Protocol):
    """Live progress: a widget in JupyterLab, log lines when headless."""

    def task(self, name: str, total: float | None = None) -> Callable[[float, str], None]: ...

    def log(self, message: str) -> None: ...


class Target(Protocol):  # see falkit.clients.target.Target for the real one
    kind: str


class Step(Protocol):
    name: str
    title: str

    def observe(self, target: Any, spec: LabSpec, options: StepOptions) -> Any: ...

    def plan(self, spec: LabSpec, observed: Any, options: StepOptions) -> Plan: ...

    def apply(self, target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None: ...

    def checks(self, target: Any, spec: LabSpec, options: StepOptions) -> list[Check]: ...


def register(name: str) -> Callable[[type], type]:
    """Name a step class (``cls.name = name``). Which steps exist is not decided here: falkit's are
    listed in :data:`falkit.steps.registry.STEPS`, others (tests) added with
    :func:`falkit.steps.registry.add`; ``get_step`` is :func:`falkit.steps.registry.get_step`."""

    def deco(cls: type) -> type:
        cls.name = name
        return cls

    return deco
