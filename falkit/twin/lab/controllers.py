"""The twin's lab controllers in one list, and the TrueNAS twin's routes.

``CONTROLLERS``: ``async def run(ctx)`` coroutines -- LB-IPAM/L2 (:mod:`.lbipam`), Mayastor
(:mod:`.mayastor`), workloads and jobs (:mod:`.workloads`, whose pass runs the Job controller of
:mod:`.jobs`). Each reacts to store changes
(``ctx.wait_change``) and reconciles at least every ``ctx.tick``; each pass is idempotent.
``truenas_routes(ctx)``: the aiohttp routes under ``/lab/truenas/api/v2.0`` (:mod:`.truenas`).
``falkit.twin.lab.install`` also finds these modules by name (``run`` / ``setup``).
"""

from __future__ import annotations

from . import lbipam, mayastor, workloads
from .truenas import truenas_routes

CONTROLLERS = [lbipam.run, mayastor.run, workloads.run]

__all__ = ["CONTROLLERS", "truenas_routes"]
