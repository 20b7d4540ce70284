"""falkit: a Jupyter runbook and library that migrates The Fal (README.md, docs/ARCHITECTURE.md).

One import is deferred until first use, for every falkit process (issue 17):

``rfc3987_syntax`` (1.1.0; installed through ``jsonschema[format-nongpl]``, which
``jupyter-events`` requires) compiles a Lark Earley grammar for RFC 3987 IRIs when it is
imported, and ``jsonschema._format`` imports it whenever ``jsonschema`` is imported — which
papermill (through nbformat), the kubernetes client (``kubernetes.dynamic`` through
kubernetes-validate) and falkit's schemas all do. On the 2-core workplace machine that one import
costs ~1.6 s of CPU and ~15 MiB of memory in *every* such process: the ``falkit run`` runner,
each notebook kernel, the twin's lab process — for a grammar used only to check the JSON-schema
formats ``iri``/``iri-reference``, which no schema falkit validates uses. Upstream:
python-jsonschema/jsonschema#1428 ("Lazy import `rfc3987_syntax`": papermill's nbformat import
taking seconds) and #1521 (the lazy-loading fork ``rfc3987-syntax2``: 2.2 s -> 0.15 s).

:func:`defer_rfc3987_syntax` puts a stand-in module in ``sys.modules`` before ``jsonschema`` is
imported: ``jsonschema`` still registers its ``iri``/``iri-reference`` format checkers with the
stand-in's ``is_valid_syntax``, which loads the real package (and compiles the grammar) the
first time it is called and then answers exactly as the real function does. Any other attribute
loads the real package too. Nothing changes when the package is absent, already imported, or not
laid out as 1.1.0 is (``__init__`` re-exporting ``syntax_helpers``).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from pathlib import Path
from typing import Any

_RFC3987 = "rfc3987_syntax"


def defer_rfc3987_syntax() -> bool:
    """Install the stand-in (see the module docstring); True when it was installed."""
    if _RFC3987 in sys.modules:
        return False
    try:
        spec = importlib.util.find_spec(_RFC3987)
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations or spec.loader is None:
        return False
    if not any((Path(p) / "syntax_helpers.py").is_file() for p in spec.submodule_search_locations):
        return False
    stub = types.ModuleType(_RFC3987, "rfc3987_syntax, loaded on first use (falkit)")
    stub.__spec__ = spec
    stub.__path__ = list(spec.submodule_search_locations)  # its submodules import as usual
    stub.__file__ = spec.origin
    stub.__loader__ = spec.loader
    stub.__package__ = _RFC3987
    lock = threading.Lock()
    real: list[types.ModuleType] = []

    def load() -> types.ModuleType:
        with lock:
            if not real:
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)  # the package's own __init__ (compiles the grammar)
                real.append(module)
                sys.modules[_RFC3987] = module  # later imports get the real package
            return real[0]

    def is_valid_syntax(term: str, value: str) -> Any:
        return load().is_valid_syntax(term, value)

    def __getattr__(attr: str) -> Any:  # noqa: N807 - a module's attribute hook (PEP 562)
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(load(), attr)

    stub.is_valid_syntax = is_valid_syntax
    stub.__getattr__ = __getattr__
    sys.modules[_RFC3987] = stub
    return True


defer_rfc3987_syntax()
