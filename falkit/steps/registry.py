"""Which steps exist: falkit's steps, listed explicitly (issue 18), and how a notebook finds one by name.

:data:`STEPS` is the whole list, in runbook order. Nothing depends on what was imported before:
importing this module imports every step module, and ``get_step("rollback-metallb")`` works in a
fresh interpreter. A step's name is its class's ``name`` (set by :func:`falkit.steps.base.register`).
Steps from outside falkit (the tests' ``t-desc``) are added with :func:`add`; they never replace
one of falkit's.
"""

from __future__ import annotations

from .argocd import ArgoCdStep
from .base import Step
from .before_state import BeforeState
from .benchmarks import BenchmarksStep
from .cilium import CiliumStep
from .mayastor import MayastorStep
from .network import NetworkStep
from .plex import PlexStep
from .rollback import (
    RollbackCiliumLb,
    RollbackContainers,
    RollbackGitops,
    RollbackLonghorn,
    RollbackMayastor,
    RollbackMetallb,
    RollbackNetwork,
    RollbackTalos,
    RollbackVerify,
    RollbackVms,
    RollbackVolumes,
    RollbackWorkers,
)
from .rollback.plex import RollbackPlex
from .rollback.terraform import RollbackTerraform
from .talos import TalosStep
from .terraform import TerraformStep
from .truenas_plex import TrueNasPlexStep
from .validation import ValidationStep
from .vms import VmsStep
from .volumes import VolumesStep

#: falkit's steps, in the order the notebooks run them (10-network ... 80-rollback)
STEPS: tuple[type, ...] = (
    BeforeState, NetworkStep, VmsStep, TerraformStep, TalosStep, CiliumStep, ArgoCdStep, MayastorStep,
    VolumesStep, BenchmarksStep, TrueNasPlexStep, PlexStep, ValidationStep,
    RollbackMetallb, RollbackCiliumLb, RollbackLonghorn, RollbackVolumes, RollbackMayastor, RollbackWorkers,
    RollbackPlex, RollbackTalos, RollbackVms, RollbackContainers, RollbackNetwork, RollbackTerraform,
    RollbackGitops, RollbackVerify,
)

_ADDED: dict[str, type] = {}


def add(cls: type) -> type:
    """Add a step that is not falkit's own (a test step); usable as a class decorator under
    ``@register(name)``. A name of falkit's own steps is refused (``ValueError``)."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__name__} has no step name: decorate it with @register(name) first")
    if any(s.name == name for s in STEPS):
        raise ValueError(f"step {name!r} is one of falkit's own steps")
    _ADDED[name] = cls
    return cls


def steps() -> dict[str, type]:
    """Every step by name: falkit's (:data:`STEPS`) and those :func:`add` added."""
    return {**{s.name: s for s in STEPS}, **_ADDED}


def get_step(name: str) -> Step:
    """A new instance of the step named ``name`` (e.g. ``vms``, ``rollback-metallb``)."""
    known = steps()
    if name not in known:
        raise KeyError(f"no step {name!r}; the steps are: {', '.join(sorted(known))}")
    return known[name]()
