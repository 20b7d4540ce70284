"""The journal: one JSON line per mutating API call falkit makes, for the run archive.

Entries are ``{t, api, method, path, status, summary}`` with ``api`` one of ``pve``, ``kube``,
``talos``, ``helm``, ``truenas``. Only mutating calls (POST/PUT/PATCH/DELETE) are recorded; reads
are not. Entries are kept in memory and, when ``FALKIT_RUN_DIR`` is set (the runner sets it for
every notebook kernel), appended to ``$FALKIT_RUN_DIR/journal.jsonl`` (one ``write`` per line with
``O_APPEND``, so kernels of consecutive notebooks and threads of one step can share the file).

Request bodies are never stored. ``summary`` is a short ``key=value`` digest of the body in which
every key that may hold a secret (token, password, secret, key, kubeconfig, talosconfig, ...) is
redacted, and long values are cut.

How calls reach the journal without monkeypatching a client:

- proxmoxer: :meth:`Journal.pve_hook` is a ``requests`` response hook; ``falkit.clients.target`` hands it
  to the Proxmox gateway (:func:`falkit.clients.proxmox.add_response_hook`), which adds it to the session
  of proxmoxer's https backend;
- kubernetes: ``falkit.clients.kube.JournaledApiClient`` overrides ``ApiClient.call_api`` (every request of
  the generated APIs, the DynamicClient and ``falkit.clients.kube.kraw_get`` goes through it);
- Talos / Helm / TrueNAS backends call :meth:`Journal.record` themselves.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
APIS = frozenset({"pve", "kube", "talos", "helm", "truenas"})
REDACTED = "<redacted>"
_SECRET_KEY = re.compile(r"token|password|passwd|secret|key|kubeconfig|talosconfig|cert|credential|auth", re.I)
_SUMMARY_KEYS = 8
_VALUE_LIMIT = 60


def is_secret_key(name: str) -> bool:
    """True for body keys whose values are never written: token, password, secret, key, ..."""
    return bool(_SECRET_KEY.search(str(name)))


def redact(value: Any) -> Any:
    """A copy of ``value`` (dicts/lists nested) with the values of secret-looking keys replaced."""
    if isinstance(value, Mapping):
        return {k: (REDACTED if is_secret_key(k) else redact(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def summarize(body: Any, kind_hint: str = "object") -> str:
    """A short, redacted ``key=value`` digest of a request body (dict, form string, bytes or JSON).

    A Kubernetes object is summarized as ``Kind namespace/name`` (``kind_hint`` when it has no kind).
    """
    if body is None or body == "" or body == b"":
        return ""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        text = body.strip()
        if text.startswith(("{", "[")):
            try:
                body = json.loads(text)
            except ValueError:
                return f"<{len(text)} bytes>"
        elif "=" in text and "\n" not in text:
            body = dict(parse_qsl(text, keep_blank_values=True))
        else:
            return f"<{len(text)} bytes>"
    if hasattr(body, "to_dict"):  # kubernetes model objects
        body = body.to_dict()
    if isinstance(body, list):
        return f"[{len(body)} item(s)]" + (f" {summarize(body[0])}" if body and isinstance(body[0], Mapping) else "")
    if not isinstance(body, Mapping):
        return f"<{type(body).__name__}>"
    body = redact(body)
    parts = []
    if isinstance(body.get("metadata"), Mapping):  # a Kubernetes object: kind and name say it all
        meta = body["metadata"]
        ident = "/".join(str(x) for x in (meta.get("namespace"), meta.get("name")) if x)
        parts.append(f"{body.get('kind') or kind_hint} {ident}".strip())
        return parts[0]
    for k, v in list(body.items())[:_SUMMARY_KEYS]:
        text = v if isinstance(v, str) else json.dumps(v, default=str)
        parts.append(f"{k}={text if len(text) <= _VALUE_LIMIT else text[: _VALUE_LIMIT - 1] + '…'}")
    if len(body) > _SUMMARY_KEYS:
        parts.append(f"(+{len(body) - _SUMMARY_KEYS} more)")
    return " ".join(parts)


class Journal:
    """Records mutating API calls. ``path=None`` uses ``$FALKIT_RUN_DIR/journal.jsonl`` when set."""

    def __init__(self, path: str | os.PathLike | None = None, *, use_env: bool = True):
        if path is None and use_env and os.environ.get("FALKIT_RUN_DIR"):
            path = Path(os.environ["FALKIT_RUN_DIR"]) / "journal.jsonl"
        self.path = Path(path) if path is not None else None
        self.entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    # -- recording ---------------------------------------------------------------------------
    def record(self, api: str, method: str, path: str, status: int | None, summary: str = "",
               body: Any = None, kind_hint: str = "object") -> dict[str, Any] | None:
        """Record one call; returns the entry, or None for a non-mutating method.

        ``body`` (optional) is summarized with :func:`summarize` (redacted) when ``summary`` is empty;
        the body itself is never stored.
        """
        method = method.upper()
        if method not in MUTATING:
            return None
        if api not in APIS:
            raise ValueError(f"unknown api {api!r} (one of {', '.join(sorted(APIS))})")
        entry = {"t": _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds"), "api": api, "method": method,
                 "path": path, "status": status, "summary": summary or summarize(body, kind_hint)}
        line = json.dumps(entry, default=str) + "\n"
        with self._lock:
            self.entries.append(entry)
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                try:
                    os.write(fd, line.encode())
                finally:
                    os.close(fd)
        return entry

    def pve_hook(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        """A ``requests`` response hook: records the request of ``response`` if it mutates."""
        req = response.request
        if req is not None and (req.method or "").upper() in MUTATING:
            path = urlsplit(req.url).path
            path = path.split("/api2/json", 1)[-1] if "/api2/json" in path else path
            self.record("pve", req.method, path, response.status_code, body=req.body)
        return response

    # -- reading -----------------------------------------------------------------------------
    def mark(self) -> int:
        """A position to pass to :meth:`since` / :meth:`count` later."""
        return len(self.entries)

    def since(self, mark: int = 0) -> list[dict[str, Any]]:
        """The entries recorded after ``mark`` (in this process)."""
        with self._lock:
            return list(self.entries[mark:])

    def count(self, mark: int = 0, api: str | None = None) -> int:
        """How many mutating calls since ``mark`` (optionally of one api)."""
        return sum(1 for e in self.since(mark) if api is None or e["api"] == api)

    def by_api(self, mark: int = 0) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.since(mark):
            out[e["api"]] = out.get(e["api"], 0) + 1
        return out


def read_journal(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The entries of a ``journal.jsonl`` file ([] if it does not exist)."""
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
