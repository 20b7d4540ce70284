"""Client-side backends for what is not a Proxmox or Kubernetes API call: Talos and Helm.

Talos and Helm each have one backend, used on both targets: :class:`falkit.clients.backends.talos.Talos`
runs ``talosctl`` and :class:`falkit.clients.backends.helm.Helm` runs ``helm`` (on the twin, the twin's
stand-ins are first on PATH). Every mutating call is recorded in the run journal (``journal.record``) without its
body: configs, values and kubeconfigs hold secrets.
"""

from __future__ import annotations

from typing import Any

import requests

from ...model.errors import FalkitError


class BackendError(FalkitError, RuntimeError):
    """A backend call failed. ``status`` is the HTTP status (twin) or exit code (live); ``message``
    the tool's own words; ``issues`` schema issues when the target rejected a document."""

    def __init__(self, what: str, message: str, status: int | None = None, issues: list | None = None):
        self.what = what
        self.message = message
        self.status = status
        self.issues = list(issues or [])
        extra = "".join(f"\n  {i}" for i in self.issues)
        super().__init__(f"{what}: {message}{extra}")


class UnreachableError(BackendError):
    """The node or service did not answer (connection refused, rebooting)."""


def lab_base(lab_api: str) -> str:
    """The lab API's ``/lab`` prefix URL (connection.json's ``lab_api`` may or may not end with it)."""
    if not lab_api or not lab_api.startswith(("http://127.", "http://localhost")):
        raise BackendError("lab API", f"the twin's lab API must be a loopback http URL, got {lab_api!r}")
    base = lab_api.rstrip("/")
    return base if base.endswith("/lab") else base + "/lab"


class LabApi:
    """A thin JSON client of the lab API that journals mutating calls as ``api``."""

    def __init__(self, lab_api: str, journal: Any, api: str, timeout: float = 30.0):
        self.base = lab_base(lab_api)
        self.journal = journal
        self.api = api
        self.timeout = timeout
        self.session = requests.Session()

    def call(self, method: str, path: str, what: str, summary: str = "", **kwargs: Any) -> Any:
        url = self.base + path
        try:
            r = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as e:
            raise UnreachableError(what, f"lab API unreachable: {e}") from e
        if self.journal is not None:
            self.journal.record(self.api, method, "/lab" + path.split("?")[0], r.status_code, summary=summary)
        try:
            body = r.json()
        except ValueError:
            body = {"error": r.text}
        if not r.ok:
            msg = body.get("error") if isinstance(body, dict) else str(body)
            issues = body.get("issues") if isinstance(body, dict) else None
            cls = UnreachableError if r.status_code == 502 else BackendError
            raise cls(what, str(msg), r.status_code, issues)
        return body
