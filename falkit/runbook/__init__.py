"""The runbook around the steps: the facade the notebooks call, and what it is made of.

    from falkit import runbook
    lab = runbook.open(params, target=target, apply=apply, notebook="20-vms", **options)
    lab.preflight()          # 00 only: plan, findings, host-budget chart
    s = lab.step("vms")      # observe + plan; shows the plan
    s.apply()                # headless: applies iff apply=True; JupyterLab: an Apply button
    lab.checks("vms")        # the step's checks as a table
    lab.dashboard()          # the lab at a glance (refreshes while a step applies)
    lab.benchmark_report()   # 50: fio results, the seed's claims, charts
    lab.validation_chart(checks); lab.handoff()   # 70: checks per area; DHCP/DNS/tunnel tables
    lab.before_after()       # 80: the before/after table
    lab.finish()             # writes the result; raises if a check failed

A notebook calls only ``runbook.open`` and the :class:`Lab` it returns. The parts:

- :mod:`.options` — the notebook parameters and options, checked once before anything connects
  (unknown or ill-typed -> :class:`~falkit.model.errors.ParameterError`), then the frozen
  :class:`~falkit.steps.base.StepOptions` every step receives;
- :mod:`.converge` — :func:`refuse` (pure: plan + options -> :class:`Refusal`), :func:`plan_key`,
  and the convergence loop after apply;
- :mod:`.gate` — one step's plan and its application: headless, or behind an approval gate in
  JupyterLab (:class:`StepRun`, :class:`DeferredStep`);
- :mod:`.archive` — the notebook's result as a typed value (:class:`NotebookResult`, written as
  ``$FALKIT_RUN_DIR/<notebook>.result.json``) and the run directory's ``run.json`` summaries, shared
  with ``falkit run`` (:mod:`falkit.runbook.runner`);
- :mod:`.facade` — :func:`open` and :class:`Lab`.

The steps themselves are :mod:`falkit.steps` (the list: :mod:`falkit.steps.registry`); what the
notebooks show is :mod:`falkit.ui.widgets`, :mod:`falkit.runbook.dashboard` and :mod:`falkit.runbook.display`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: name -> the part it lives in. Loaded on first use (PEP 562), so that ``falkit run``'s own process
#: can read a run's archive (``falkit.runbook.archive``) without importing the facade, every step,
#: the kubernetes client and pandas, which only the notebook kernels need (issue 17, memory).
_PARTS = {
    "NotebookResult": "archive", "StepRecord": "archive", "new_run_dir": "archive", "outputs_root": "archive",
    "record_session": "archive",
    "POLL_S": "converge", "REQUIRED_OPTIONS": "converge", "Refusal": "converge", "converge": "converge",
    "plan_key": "converge", "refuse": "converge", "waiting_for_text": "converge",
    "Lab": "facade", "open": "facade",
    "DeferredStep": "gate", "StepRun": "gate",
    "BASE_OPTIONS": "options", "TARGETS": "options", "known_options": "options", "missing_params_message": "options",
    "resolve_params": "options", "step_option_decls": "options", "step_options": "options",
    "validate_options": "options", "validate_parameters": "options",
}

__all__ = [
    "BASE_OPTIONS", "POLL_S", "REQUIRED_OPTIONS", "TARGETS", "DeferredStep", "Lab", "NotebookResult", "Refusal",
    "StepRecord", "StepRun", "converge", "known_options", "missing_params_message", "new_run_dir", "open",
    "outputs_root", "plan_key", "record_session", "refuse", "resolve_params", "step_option_decls", "step_options",
    "validate_options", "validate_parameters", "waiting_for_text",
]
assert sorted(__all__) == sorted(_PARTS)

if TYPE_CHECKING:
    from .archive import NotebookResult, StepRecord, new_run_dir, outputs_root, record_session
    from .converge import POLL_S, REQUIRED_OPTIONS, Refusal, converge, plan_key, refuse, waiting_for_text
    from .facade import Lab, open
    from .gate import DeferredStep, StepRun
    from .options import (
        BASE_OPTIONS,
        TARGETS,
        known_options,
        missing_params_message,
        resolve_params,
        step_option_decls,
        step_options,
        validate_options,
        validate_parameters,
    )


def __getattr__(name: str) -> Any:
    part = _PARTS.get(name)
    if part is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{part}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PARTS))
