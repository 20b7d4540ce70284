"""TrueNAS SCALE REST API v2.0 client: the same client for the live NAS and the twin.

    nas = TrueNasClient("https://10.10.0.20", api_key, verify="/path/ca.pem")   # live
    nas = TrueNasClient("http://127.0.0.1:PORT/lab/truenas", key)                 # the twin
    nas.set_aliases("ens19", [{"type": "INET", "address": "10.11.0.20", "netmask": 24}])
    nas.commit(); nas.checkin()
    nas.ensure_nfs_share("/mnt/tank/media", ["10.11.0.0/24"])
    nas.enable_service("nfs")

``url`` may end in ``/api/v2.0`` or not. Every non-2xx answer raises :class:`TrueNasError` carrying
TrueNAS's own message (validation errors: ``{"<method>.<field>": [{"message"}]}`` flattened to
``field: message``). Network changes follow TrueNAS's commit/checkin protocol: ``commit()`` applies
the staged interface changes with rollback armed, ``checkin()`` keeps them.
"""

from __future__ import annotations

from typing import Any

import requests

from falkit.model.errors import FalkitError


class TrueNasError(FalkitError):
    """A TrueNAS API call failed; ``status`` is the HTTP status, the message TrueNAS's words."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def _message(body: Any, fallback: str) -> str:
    if isinstance(body, dict):
        if isinstance(body.get("message"), str):
            return body["message"]
        parts = [f"{k}: {e.get('message')}" for k, v in body.items() if isinstance(v, list)
                 for e in v if isinstance(e, dict)]
        if parts:
            return "; ".join(parts)
    return fallback


class TrueNasClient:
    """A thin requests wrapper with typed helpers (see the module docstring)."""

    def __init__(self, url: str, api_key: str, verify: bool | str = True, timeout: float = 30.0) -> None:
        base = url.rstrip("/")
        self.base = base if base.endswith("/api/v2.0") else base + "/api/v2.0"
        self.verify = verify
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"

    def call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            r = self.session.request(method, self.base + path, json=body, verify=self.verify, timeout=self.timeout)
        except requests.RequestException as e:
            raise TrueNasError(f"TrueNAS at {self.base} unreachable: {e}") from e
        try:
            data = r.json() if r.content else None
        except ValueError:
            data = r.text
        if not r.ok:
            raise TrueNasError(f"{method} {path}: {r.status_code} {_message(data, r.reason or '')}", r.status_code, data)
        return data

    # --- network ---------------------------------------------------------------------------------
    def interfaces(self) -> list[dict]:
        return self.call("GET", "/interface")

    def set_aliases(self, name: str, aliases: list[dict]) -> dict:
        """Stage ``aliases`` (``[{type: INET, address, netmask}]``) on interface ``name``."""
        return self.call("PUT", f"/interface/id/{name}", {"aliases": aliases})

    def has_pending_changes(self) -> bool:
        return bool(self.call("GET", "/interface/has_pending_changes"))

    def commit(self, rollback: bool = True, checkin_timeout: int = 60) -> None:
        self.call("POST", "/interface/commit", {"rollback": rollback, "checkin_timeout": checkin_timeout})

    def checkin(self) -> None:
        self.call("POST", "/interface/checkin")

    # --- NFS -------------------------------------------------------------------------------------
    def nfs_shares(self) -> list[dict]:
        return self.call("GET", "/sharing/nfs")

    def ensure_nfs_share(self, path: str, networks: list[str], **fields: Any) -> dict:
        """Create the share for ``path`` or update its ``networks`` (and ``fields``) if they differ."""
        want = {"path": path, "networks": list(networks), **fields}
        share = next((s for s in self.nfs_shares() if s.get("path") == path), None)
        if share is None:
            return self.call("POST", "/sharing/nfs", want)
        if any(share.get(k) != v for k, v in want.items()):
            return self.call("PUT", f"/sharing/nfs/id/{share['id']}", want)
        return share

    def delete_nfs_share(self, share_id: int) -> None:
        self.call("DELETE", f"/sharing/nfs/id/{share_id}")

    # --- services --------------------------------------------------------------------------------
    def service(self, name: str) -> dict:
        svc = next((s for s in self.call("GET", "/service") if s.get("service") == name), None)
        if svc is None:
            raise TrueNasError(f"no TrueNAS service named {name!r}")
        return svc

    def enable_service(self, name: str, start: bool = True) -> dict:
        """Enable at boot (and start) service ``name``; returns its record."""
        svc = self.service(name)
        if not svc.get("enable"):
            self.call("PUT", f"/service/id/{svc['id']}", {"enable": True})
        if start and svc.get("state") != "RUNNING":
            self.call("POST", "/service/start", {"service": name})
        return self.service(name)
