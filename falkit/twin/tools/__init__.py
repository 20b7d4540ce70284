"""The twin's stand-ins for the command-line tools falkit runs (``talosctl``, ``helm``).

Each is a module runnable as ``python -m falkit.twin.tools.<name>``; the twin's supervisor writes
executable wrappers ``$FALKIT_STATE_DIR/twin/bin/<name>`` and falkit puts that directory first on
``PATH`` for the twin target, so falkit runs the very same command lines on both targets. A
stand-in accepts the flags falkit uses, prints the real tool's output formats and error texts
(each cited to its upstream source) and exits with its exit codes; it reaches the twin's lab API
on loopback only (``connection.json`` in the twin's state directory), with the token of the file
connection.json names (``lab_token_file``, 0600) — never a secret on its command line or in the
wrapper (which sets only the twin's directory).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from falkit.twin import credentials


def twin_dir() -> Path:
    """The twin's state directory: ``$FALKIT_TWIN_DIR`` (the wrapper sets it), else
    ``$FALKIT_STATE_DIR/twin``, else ``~/.local/state/falkit/twin``."""
    if os.environ.get("FALKIT_TWIN_DIR"):
        return Path(os.environ["FALKIT_TWIN_DIR"])
    base = os.environ.get("FALKIT_STATE_DIR") or os.path.join(os.path.expanduser("~"), ".local", "state", "falkit")
    return Path(base) / "twin"


def lab_headers() -> dict[str, str]:
    """``Authorization: Bearer <token>`` of the running twin's lab API ({} when there is none)."""
    try:
        conn = json.loads((twin_dir() / "connection.json").read_text())
    except (OSError, ValueError):
        return {}
    token = credentials.read_token(conn.get("lab_token_file"))
    return {"Authorization": f"Bearer {token}"} if token else {}


def lab_api() -> str | None:
    """The lab API base URL (``.../lab``) of the running twin, or None when no twin is up."""
    try:
        conn = json.loads((twin_dir() / "connection.json").read_text())
    except (OSError, ValueError):
        return None
    url = str(conn.get("lab_api") or "").rstrip("/")
    if not url.startswith(("http://127.", "http://localhost")):
        return None  # loopback only
    return url if url.endswith("/lab") else url + "/lab"
