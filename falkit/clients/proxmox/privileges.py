"""The Proxmox role falkit's API token needs, and the read-only check that the token holds it.

The role is ``falkit/data/pve-role.json`` (``role``, ``path``, ``privileges``, ``why``: privilege ->
what needs it, and the ``pveum`` line). A new PVE token is privilege-separated (only its own ACLs
count), so a token made without the ACL gets 403 on every call: :func:`check_privileges` names what
is missing before anything is applied.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

from ...model.errors import TargetError
from .api import PveCallError, call

ROLE_FILE = Path(__file__).resolve().parents[2] / "data" / "pve-role.json"


def pve_role() -> dict[str, Any]:
    """The minimal Proxmox role falkit's API token needs (falkit/data/pve-role.json): ``role``,
    ``path``, ``privileges``, ``why`` (privilege -> what needs it) and the ``pveum`` line."""
    return json.loads(ROLE_FILE.read_text())


def pveum_line(token_id: str) -> str:
    """The one shell line that creates the role and grants it to the token (on /)."""
    role = pve_role()
    return role["pveum"].format(privs=",".join(role["privileges"]), token=token_id)


def check_privileges(pve: Any, token_id: str) -> None:
    """Read-only: the token's privileges on ``/`` (``GET /access/permissions``) against the role.
    A new PVE token is privilege-separated (only its own ACLs count), so a token made without the
    ACL gets 403 on every call; this names what is missing before anything is applied."""
    role = pve_role()
    try:
        held = call("read the API token's permissions", pve.access.permissions.get, path=role["path"]) or {}
    except PveCallError as e:
        raise TargetError(f"cannot read the Proxmox API token's permissions (GET /access/permissions): {e}") from e
    except requests.exceptions.SSLError as e:
        raise TargetError(f"Proxmox's TLS certificate is not trusted ({e.__class__.__name__}: certificate verify "
                          f"failed): put the host's CA (/etc/pve/pve-root-ca.pem) in the private dir as pve-ca.pem") from e
    except requests.exceptions.RequestException as e:
        raise TargetError(f"Proxmox did not answer: {e}") from e
    have = set((held.get(role["path"]) or {}).keys())
    missing = [p for p in role["privileges"] if p not in have]
    if missing:
        need = "; ".join(f"{p} ({role['why'].get(p, '')})" for p in missing)
        raise TargetError(f"the Proxmox API token {token_id} lacks {', '.join(missing)} on {role['path']}: {need}. "
                          f"Nothing was applied. Grant falkit's role (docs/SETUP.md, 'Proxmox API token'): "
                          f"{pveum_line(token_id)}")
