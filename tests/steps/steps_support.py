"""Support classes for the step tests (imported by name: a module called conftest is ambiguous
when several test folders have one)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class PveTarget:
    """The part of falkit.clients.target.Target the Proxmox steps use: a real proxmoxer client and the node."""

    pve: Any
    node: str
    kind: str = "twin"
