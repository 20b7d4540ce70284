"""What ``falkit run`` imports in a notebook kernel it starts ahead of time (issue 17).

``falkit run`` starts the next notebook's kernel while the current notebook runs, with
``--IPKernelApp.exec_lines`` calling :func:`imports`: the kernel imports falkit's stack during its
own start-up, in the background, so the notebook's first cell finds it imported. Start-up lines run
without history (the execution counter is untouched) and before any client listens (nothing reaches
the notebook's outputs); :func:`imports` binds no name in the notebook's namespace and never raises
(a module that fails to import here fails, with its real error, where the notebook imports it).
"""

from __future__ import annotations

import importlib

#: falkit's own entry point and the heavy libraries its steps use, then every step module:
#: ``runbook.open`` imports them all when it validates the options (the explicit registry,
#: ``falkit.steps.registry``), so importing only ``falkit.runbook`` left ~1 s of imports (the steps,
#: the kubernetes client) to the notebook's first cell (issue 17, profiled).
MODULES = ("falkit.runbook", "falkit.clients.kube", "proxmoxer", "plotly.graph_objects", "falkit.runbook.charts",
           "falkit.steps.registry")

#: The start-up line handed to the kernel (an expression whose value is None: nothing is displayed).
EXEC_LINE = "__import__('falkit.runbook.prewarm').runbook.prewarm.imports()"


def imports() -> None:
    for name in MODULES:
        module, _, call = name.partition(":")
        try:
            loaded = importlib.import_module(module)
            if call:
                getattr(loaded, call)()
        except Exception:  # noqa: BLE001, S112 - see the module docstring
            continue
