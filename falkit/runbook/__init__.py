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
  (unknown or ill-typed -> :class:`~falkit.errors.ParameterError`), then the frozen
  :class:`~falkit.steps.base.StepOptions` every step receives;
- :mod:`.converge` — :func:`refuse` (pure: plan + options -> :class:`Refusal`), :func:`plan_key`,
  and the convergence loop after apply;
- :mod:`.gate` — one step's plan and its application: headless, or behind an approval gate in
  JupyterLab (:class:`StepRun`, :class:`DeferredStep`);
- :mod:`.archive` — the notebook's result as a typed value (:class:`NotebookResult`, written as
  ``$FALKIT_RUN_DIR/<notebook>.result.json``) and the run directory's ``run.json`` summaries, shared
  with ``falkit run`` (:mod:`falkit.runner`);
- :mod:`.facade` — :func:`open` and :class:`Lab`.

The steps themselves are :mod:`falkit.steps` (the list: :mod:`falkit.steps.registry`); what the
notebooks show is :mod:`falkit.widgets`, :mod:`falkit.dashboard` and :mod:`falkit.display`.
"""

from __future__ import annotations

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

__all__ = [
    "BASE_OPTIONS", "POLL_S", "REQUIRED_OPTIONS", "TARGETS", "DeferredStep", "Lab", "NotebookResult", "Refusal",
    "StepRecord", "StepRun", "converge", "known_options", "missing_params_message", "new_run_dir", "open",
    "outputs_root", "plan_key", "record_session", "refuse", "resolve_params", "step_option_decls", "step_options",
    "validate_options", "validate_parameters", "waiting_for_text",
]
