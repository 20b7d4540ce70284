"""Small helpers on JSON-like Kubernetes objects: copying, timestamps, metadata access.

Stored objects are never modified in place: writers build a new dict (``clone``) and the store
replaces the reference, so readers (watch history, list) can share them without locking.
"""

from __future__ import annotations

import datetime as _dt


def clone(v):
    """Deep copy of JSON-like data (dict/list/scalars); much faster than ``copy.deepcopy``."""
    if isinstance(v, dict):
        return {k: clone(x) for k, x in v.items()}
    if isinstance(v, list):
        return [clone(x) for x in v]
    return v


def now_iso() -> str:
    """RFC 3339 timestamp with second precision, UTC (``metav1.Time`` serialisation)."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(obj: dict) -> dict:
    return obj.setdefault("metadata", {})


def spec_part(obj: dict) -> dict:
    """Everything that counts towards ``metadata.generation``: not metadata, not status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}
