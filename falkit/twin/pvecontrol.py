"""Client of the twin pve process's control API (plain HTTP on 127.0.0.1): faults, state, snapshots.

    ctl = PveControl(connection)          # connection.json's data (or pve.json's)
    ctl = PveControl(connection["pve_control"])   # a URL: the token is found in the connection files
    ctl.fault("lock", vmid=201, lock="backup")
    ctl.state()["vms"]
    ctl.clear()

The API needs the token of the twin's ``pve-control-token`` file (0600), sent as ``Authorization:
Bearer``; the client reads it from the file the connection data names (``pve_control_token_file``
in connection.json, ``control_token_file`` in pve.json), or, given only a URL, from the connection
file of the twin that serves it (:func:`falkit.twin.credentials.find_token`).

The fault kinds and their fields are documented in ``falkit.twin.pve_process.Control``.
"""

from __future__ import annotations

from typing import Any

import requests

from falkit.model.errors import TwinError
from falkit.twin import credentials


class PveControl:
    """A thin requests wrapper; every call raises TwinError on a non-2xx answer."""

    def __init__(self, url: str | dict, timeout: float = 10.0, *, token: str | None = None):
        if isinstance(url, dict):
            conn = url
            url = str(conn.get("pve_control") or conn.get("control") or "")
            token = token or credentials.read_token(conn.get("pve_control_token_file") or conn.get("control_token_file"))
        if not url.startswith(("http://127.", "http://localhost")):
            raise TwinError(f"the pve control API is loopback only, not {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False
        token = token or credentials.find_token("pve_control", self.url)
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            r = self.session.request(method, self.url + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as e:
            raise TwinError(f"pve control API {self.url} unreachable: {e}") from e
        if not r.ok:
            raise TwinError(f"pve control API {method} {path}: {r.status_code} {r.text.strip()}")
        return r.json()

    def fault(self, kind: str | None = None, /, **fields: Any) -> dict:
        """Inject one fault: ``fault("task_error", match="qmcreate", vmid=201, message="...")`` or
        ``fault({"kind": ...})``. Returns ``{"id", "fault"}``."""
        spec = dict(kind) if isinstance(kind, dict) else dict(fields, kind=kind)
        if isinstance(kind, dict):
            spec.update(fields)
        return self._call("POST", "/faults", json=spec)

    def faults(self) -> list[dict]:
        return self._call("GET", "/faults")["faults"]

    def clear(self) -> int:
        """Undo every fault; returns how many there were."""
        return self._call("DELETE", "/faults")["cleared"]

    def state(self) -> dict:
        """VMs, CTs, network (active, staged, changes), storages (total/used/avail/volumes), tasks."""
        return self._call("GET", "/state")

    def snapshot(self, path: str | None = None) -> str:
        """Write the pve state to path (default DIR/pve-snapshot.json; only inside the twin's state
        directory); returns the absolute path."""
        return self._call("POST", "/snapshot", json={"path": path} if path else {})["path"]

    def health(self) -> dict:
        return self._call("GET", "/health")
