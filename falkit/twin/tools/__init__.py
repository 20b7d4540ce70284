"""The twin's stand-ins for the command-line tools falkit runs (``helm``; ``talosctl``).

Each is a module runnable as ``python -m falkit.twin.tools.NAME`` that accepts the flags falkit
uses and answers with the real tool's output formats, exit codes and error texts (each cited to
the upstream source file it comes from), working on the twin's lab over loopback.

:func:`write_wrappers` writes ``ROOT/bin/NAME`` for each of them: a ``/bin/sh`` script that sets
``FALKIT_TWIN_DIR=ROOT`` and execs the module with the interpreter the twin runs on. The twin
supervisor calls it on ``up`` and records the directory as ``connection.json``'s ``"bin"``;
:class:`falkit.target.Target` puts that directory first on the PATH of the tools it runs, so
falkit runs ``helm`` exactly as on the live lab.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

TOOLS = ("helm", "talosctl")


def write_wrappers(root: Path, python: str | None = None) -> Path:
    """Write ``root/bin/<tool>`` for every stand-in module that exists; returns the bin dir."""
    import importlib.util

    bindir = Path(root) / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    pkg_parent = str(Path(__file__).resolve().parents[3])
    for tool in TOOLS:
        if importlib.util.find_spec(f"falkit.twin.tools.{tool}") is None:
            continue
        script = ("#!/bin/sh\n"
                  f"# falkit twin stand-in for `{tool}` (loopback only): falkit.twin.tools.{tool}\n"
                  f"FALKIT_TWIN_DIR={shlex.quote(str(Path(root).resolve()))}\n"
                  f"PYTHONPATH={shlex.quote(pkg_parent)}${{PYTHONPATH:+:$PYTHONPATH}}\n"
                  "export FALKIT_TWIN_DIR PYTHONPATH\n"
                  f"exec {shlex.quote(python or sys.executable)} -m falkit.twin.tools.{tool} \"$@\"\n")
        path = bindir / tool
        tmp = path.with_name(f".{tool}.tmp.{os.getpid()}")
        tmp.write_text(script)
        tmp.chmod(0o755)
        os.replace(tmp, path)
    return bindir
