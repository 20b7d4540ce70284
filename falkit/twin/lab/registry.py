"""The lab's controller registry: which ``async def run(ctx)`` coroutines the lab process starts.

``CONTROLLERS`` holds the ``run`` of every controller module of this package that exists
(``CONTROLLER_MODULES``: ``lbipam``, ``mayastor``, ``workloads``, ``truenas``, ``argocd``, ``watch``),
filled by :func:`controller_modules` when :func:`falkit.twin.lab.api.install` mounts the lab; a
module may also define ``setup(app, ctx)`` to add its own routes (e.g. ``/lab/truenas/...``).
``register(fn)`` adds further controllers (tests). Importing this module imports no controller.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import Any

from .context import LabContext

Controller = Callable[[LabContext], Awaitable[None]]

CONTROLLER_MODULES = ("lbipam", "mayastor", "workloads", "truenas", "argocd", "watch")
CONTROLLERS: list[Controller] = []


def register(fn: Controller) -> Controller:
    """Add a controller coroutine function (usable as a decorator)."""
    if fn not in CONTROLLERS:
        CONTROLLERS.append(fn)
    return fn


def controller_modules() -> list[Any]:
    """The controller modules of this package that exist (imported); registers each one's ``run``."""
    out = []
    for name in CONTROLLER_MODULES:
        qual = f"{__package__}.{name}"
        try:
            mod = importlib.import_module(qual)
        except ModuleNotFoundError as e:
            if e.name != qual:
                raise
            continue
        out.append(mod)
        if callable(getattr(mod, "run", None)):
            register(mod.run)
    return out
