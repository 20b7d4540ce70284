"""The twin's lab: Talos and Helm stand-ins, the lab API under ``/lab``, controllers, faults.

``falkit.twin.lab.api.install(app, store, args) -> LabContext`` wires it into the lab process's
aiohttp app:

- builds a :class:`~falkit.twin.lab.context.LabContext` from ``args`` (``spec``, ``state``,
  ``time_factor``, ``pve_conn``, ``restore``, ``state_dir``);
- mounts the lab API routes (``falkit.twin.lab.api``) under ``/lab``;
- on app startup: applies the "before" state (``--state before``) or leaves the cluster
  unbootstrapped (``--state empty``: the Kubernetes API answers 503 until ``talos bootstrap``), or
  loads ``--restore FILE``; then starts the controller tasks;
- on app cleanup: cancels them.

Controllers are ``async def run(ctx)`` coroutines: ``nodes.run`` and the registry of
:mod:`falkit.twin.lab.registry` (every controller module of this package that exists, found by name).
This package's ``__init__`` imports the lab's model only (no controller, no aiohttp).
"""

from __future__ import annotations

from .context import CiliumConfig, LabContext, LabFaults, Release, TalosNode, VolumeData
from .registry import CONTROLLERS, Controller, controller_modules, register

__all__ = ["CONTROLLERS", "CiliumConfig", "Controller", "LabContext", "LabFaults", "Release", "TalosNode",
           "VolumeData", "controller_modules", "register"]
