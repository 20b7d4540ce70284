"""The twin's lab: Talos and Helm stand-ins, the lab API under ``/lab``, controllers, faults.

``install(app, store, args) -> LabContext`` wires it into the lab process's aiohttp app:

- builds a :class:`~falkit.twin.lab.context.LabContext` from ``args`` (``spec``, ``state``,
  ``time_factor``, ``pve_conn``, ``restore``, ``state_dir``);
- mounts the lab API routes (``falkit.twin.lab.api``) under ``/lab``;
- on app startup: applies the "before" state (``--state before``) or leaves the cluster
  unbootstrapped (``--state empty``: the Kubernetes API answers 503 until ``talos bootstrap``), or
  loads ``--restore FILE``; then starts the controller tasks;
- on app cleanup: cancels them.

Controllers are ``async def run(ctx)`` coroutines: this package's own (``nodes.run``) and
``CONTROLLERS``, which holds the ``run`` of every controller module of this package that exists
(``lbipam``, ``mayastor``, ``workloads``, ``truenas``, ``argocd``, ``watch``); a module may also define
``setup(app, ctx)`` to add its own routes (e.g. ``/lab/truenas/...``) — it is called before the app
starts. ``register(fn)`` adds further controllers (tests).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import Any

from .context import CiliumConfig, LabContext, LabFaults, Release, TalosNode, VolumeData

Controller = Callable[[LabContext], Awaitable[None]]

CONTROLLER_MODULES = ("lbipam", "mayastor", "workloads", "truenas", "argocd", "watch")
CONTROLLERS: list[Controller] = []


def register(fn: Controller) -> Controller:
    """Add a controller coroutine function (usable as a decorator)."""
    if fn not in CONTROLLERS:
        CONTROLLERS.append(fn)
    return fn


def controller_modules() -> list[Any]:
    """The controller modules of this package that exist (imported)."""
    out = []
    for name in CONTROLLER_MODULES:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            continue
        out.append(mod)
        if callable(getattr(mod, "run", None)):
            register(mod.run)
    return out


def install(app, store, args) -> LabContext:  # noqa: ANN001 - aiohttp app, kube Store, argparse.Namespace
    """Mount the lab on ``app`` (see the module docstring). Import here keeps ``context`` light."""
    from .api import install as _install  # noqa: PLC0415 - the controller registry is filled on first use (the package imports no controller)

    return _install(app, store, args)


__all__ = ["CONTROLLERS", "CiliumConfig", "Controller", "LabContext", "LabFaults", "Release", "TalosNode",
           "VolumeData", "controller_modules", "install", "register"]
