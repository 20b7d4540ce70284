"""The twin's lab controllers in one list, and the TrueNAS twin's routes.

``CONTROLLERS``: ``async def run(ctx)`` coroutines -- LB-IPAM/L2 (:mod:`.lbipam`), Mayastor
(:mod:`.mayastor`), workloads and jobs (:mod:`.workloads`, whose pass runs the Job controller of
:mod:`.jobs`); the lab also runs :mod:`.nodes`, :mod:`.argocd` and :mod:`.watch` (which turns
changes outside the store -- the twin's Proxmox, Git -- into ``ctx.notify()``). Each reacts to changes (``ctx.wait_change``) and to its own scheduled
deadlines (``ctx.due`` / ``ctx.wake_at``) -- no fixed tick, so an idle twin idles (issue 17);
each pass is idempotent.
``truenas_routes(ctx)``: the aiohttp routes under ``/lab/truenas/api/v2.0`` (:mod:`.truenas`).
``falkit.twin.lab.api.install`` also finds these modules by name (``run`` / ``setup``).
"""

from __future__ import annotations

from . import lbipam, mayastor, workloads
from .truenas import truenas_routes

CONTROLLERS = [lbipam.run, mayastor.run, workloads.run]

__all__ = ["CONTROLLERS", "truenas_routes"]
