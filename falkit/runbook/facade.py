"""The notebook facade: :func:`open` checks the parameters, connects and returns a :class:`Lab`, the
one object a notebook calls (see :mod:`falkit.runbook` for the calls).

- ``params`` is resolved against the current directory (papermill runs notebooks with
  cwd = notebooks/, so ``../parameters/fal.yaml`` works there); absolute paths work anywhere.
- In JupyterLab (:func:`falkit.ui.widgets.interactive`) with ``apply=True`` the lab's run lock is taken
  before connecting (:class:`~falkit.model.errors.LockError` while ``falkit run`` or another session holds
  it); without ``apply`` it is taken when a gate's Apply is pressed. An interactive lab without
  ``$FALKIT_RUN_DIR`` gets a run directory ``outputs/<time>-<target>-lab`` for its result and
  journal, and enters its result in that directory's ``run.json``
  (:func:`~.archive.record_session`) — so ``falkit runs`` lists the session.
- While a gate waits (JupyterLab), later ``step``/``checks``/``finish`` calls and the displays
  (``benchmark_report``, ``before_after``) wait too (:meth:`Lab.defer`) and run in order once it
  converged — Run All stops at the first gate.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from ..clients.journal import Journal
from ..clients.target import connect, private_dir_for
from ..model.design import design_of
from ..model.errors import DEFAULT_RESUME, FalkitError, ParameterError, StepError
from ..model.findings import preflight
from ..model.spec import load_spec
from ..plan.diff import Plan
from ..steps.base import Check
from ..steps.registry import get_step
from ..steps.rollback.state import last_comparison
from ..ui import widgets
from . import display
from .archive import NotebookResult, new_run_dir, now, record_session
from .charts import budget_rows, host_budget_chart
from .converge import refuse
from .dashboard import Dashboard
from .gate import DeferredStep, StepRun
from .lock import RunLock
from .options import (
    changed_options,
    missing_params_message,
    resolve_params,
    step_options,
    validate_parameters,
)


def open(params: str | os.PathLike, target: str = "twin", apply: bool = False, notebook: str | None = None,
         **options: Any) -> Lab:  # noqa: A001 - the facade's verb
    """Validate the parameters, load the spec, connect to the target and show a header (see the
    module docstring for the run lock and run directory in JupyterLab)."""
    checked = validate_parameters(params, target, apply, options)
    path = resolve_params(params)
    if not path.is_file():
        raise ParameterError(missing_params_message(params, path))
    spec = load_spec(path)
    interactive = widgets.interactive()
    lock = None
    if interactive and apply:
        lock = _lab_lock(spec.lab, target, notebook or "notebook").acquire()
    if interactive and not os.environ.get("FALKIT_RUN_DIR"):
        os.environ["FALKIT_RUN_DIR"] = str(new_run_dir(f"{target}-lab"))  # the kernel's later labs share it
    journal = Journal()
    try:
        tgt = connect(spec, target, journal=journal, spec_path=path, time_factor=checked["options"]["time_factor"])
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    lab = Lab(spec, tgt, apply=apply, notebook=notebook or "notebook", options=checked["options"], spec_path=path)
    lab.interactive = interactive
    lab._lock = lock
    lab.show_header()
    return lab


def _lab_lock(lab: str, target: str, notebook: str) -> RunLock:
    return RunLock(private_dir_for(lab, target), what=f"JupyterLab session: {notebook} (pid {os.getpid()})",
                   reentrant=True)


class Lab:
    """A notebook's handle on the lab: spec, target, options and the notebook's result.

    In JupyterLab, a step whose gate waits for Apply holds up everything after it in the notebook:
    a later ``lab.step``, ``lab.checks``, ``lab.finish`` (and :meth:`defer`) show "waiting for <step>
    to be applied" and run, in order, only once that gate's step converged — so every plan is made
    from the lab as it is then, and Run All stops at the first gate.
    """

    def __init__(self, spec: Any, target: Any, *, apply: bool, notebook: str, options: dict[str, Any],
                 spec_path: Path | None = None):
        self.spec = spec
        self.design = design_of(spec)  # the notebook's one design; steps read the same value
        self.target = target
        self.notebook = notebook
        self.options = options
        self.step_options = step_options(apply, options)
        self.interactive = widgets.interactive()
        self._lock: Any = None
        self._run_dir = os.environ.get("FALKIT_RUN_DIR")
        self._mark = target.journal.mark()
        self._t0 = time.monotonic()
        self._runs: dict[str, StepRun] = {}
        self._queue: list[tuple[str, Callable[[], Any], Any]] = []
        self._dashboard: Dashboard | None = None
        self.archive = NotebookResult(notebook=notebook, lab=spec.lab, target=target.kind, apply=apply,
                                      params=str(spec_path) if spec_path else None, options=options)
        self.save()

    @property
    def apply(self) -> bool:
        """The notebook's ``apply`` parameter (held once, in :attr:`step_options`)."""
        return self.step_options.apply

    # -- archive ---------------------------------------------------------------------------------
    @property
    def result(self) -> dict[str, Any]:
        """The notebook's result as archived (``<notebook>.result.json``; a copy: :attr:`archive` is the
        typed value the lab records into)."""
        return self.archive.to_json()

    @property
    def run_dir(self) -> Path | None:
        """``$FALKIT_RUN_DIR`` as it was when the lab opened (the run or session it belongs to)."""
        return Path(self._run_dir) if self._run_dir else None

    @property
    def result_path(self) -> Path | None:
        return self.run_dir / f"{self.notebook}.result.json" if self.run_dir else None

    def save(self) -> None:
        j = self.target.journal
        self.archive.journal = {"mutating_calls": j.count(self._mark), "by_api": j.by_api(self._mark)}
        self.archive.timings["total_s"] = round(time.monotonic() - self._t0, 3)
        path = self.result_path
        if path is not None:
            self.archive.save(path)
            if self.interactive:
                record_session(path.parent, self.archive.to_json())

    def resume_hint(self) -> str:
        if self.interactive:
            return "fix the cause, then press Apply again or run the cell again (steps are idempotent)"
        if self.run_dir:
            return f"fix the cause, then `falkit run --resume {self.run_dir}` (steps are idempotent)"
        return "fix the cause, then re-run this notebook (steps are idempotent: plan -> apply -> verify)"

    def _resumable(self, exc: FalkitError) -> FalkitError:
        """``exc`` with this notebook's resume hint when it carries StepError's generic one."""
        if isinstance(exc, StepError) and exc.resume == DEFAULT_RESUME:
            try:
                new = type(exc)(exc.step, exc.reason, self.resume_hint())
            except TypeError:  # a subclass with another signature keeps its own words
                return exc
            new.__cause__ = exc.__cause__
            return new
        return exc

    def _fail(self, exc: BaseException) -> None:
        self.archive.fail(exc)
        self.save()

    def lock_for_apply(self) -> Any:
        """The run lock around one gate's apply: the lab's own when it was opened with ``apply=True``
        (held until :meth:`finish`/:meth:`close`), else taken for the apply and released after it.
        ``LockError`` while ``falkit run`` or another session holds it."""
        if self._lock is not None:
            return contextlib.nullcontext()
        return _lab_lock(self.spec.lab, self.target.kind, self.notebook)

    def close(self) -> None:
        """Release the run lock (``finish`` does; so does the kernel's exit)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- display ---------------------------------------------------------------------------------
    def show_header(self) -> None:
        try:
            version = self.target.pve.version.get().get("version", "?")
        except Exception as exc:  # the header says so; the first step will fail with the details
            version = f"unreachable ({type(exc).__name__})"
        apply = "Apply buttons (JupyterLab)" if self.interactive else ("yes" if self.apply else "no (dry run)")
        rows = [{"lab": self.spec.lab, "target": self.target.kind, "node": self.target.node,
                 "proxmox": version, "notebook": self.notebook, "apply": apply, "options": changed_options(self.options)}]
        widgets.show(widgets.Table(rows, title=f"falkit {self.notebook}: {self.spec.lab} on the {self.target.kind}"))

    def dashboard(self) -> Dashboard:
        """Show the lab dashboard (refreshed while steps wait)."""
        self._dashboard = Dashboard(self.target)
        return self._dashboard.show()

    def benchmark_report(self, outputs: str | Path | None = None) -> dict[str, Any]:
        """50-mayastor's benchmark results, the seed's claims and the charts
        (:func:`falkit.runbook.display.benchmark_report`); ``{}`` now when a gate above waits (shown then)."""
        if self.defer("the benchmark report", lambda: self.benchmark_report(outputs)):
            return {}
        return display.benchmark_report(self.target, self.spec, self.step_options, outputs)

    def validation_chart(self, checks: list[Check]) -> Any:
        """The validation checks per area as a chart (:func:`falkit.runbook.display.validation_chart`)."""
        return display.validation_chart(checks)

    def handoff(self) -> dict[str, Path]:
        """The operator hand-off tables (DHCP, DNS, tunnel), service IPs observed in the lab; the CSVs
        written into the run directory when there is one (:func:`falkit.runbook.display.show_handoff`)."""
        return display.show_handoff(self.spec, self.design, self.target)

    def before_after(self) -> pd.DataFrame | None:
        """80-rollback's before/after table (:func:`falkit.runbook.display.before_after_table`); in JupyterLab,
        while a gate above waits, shown in place once the checks ran (None now)."""
        if self.defer("the before/after table", lambda: widgets.show(display.before_after_table(last_comparison()))):
            return None
        return display.before_after_table(last_comparison())

    # -- gates: what later cells wait for ----------------------------------------------------------
    def waiting_for(self) -> StepRun | None:
        """The step whose gate (waiting for Apply, or refused) holds up the rest of the notebook."""
        for run in self._runs.values():
            if run.gate is not None and not run.converged:
                return run
        return None

    def _blocked(self) -> bool:
        return self.interactive and (self.waiting_for() is not None or bool(self._queue))

    def defer(self, label: str, fn: Callable[[], Any]) -> bool:
        """In JupyterLab, while a gate above waits: show "<label> waits for <step> to be applied" and run
        ``fn`` (its output in place) once it converged. Returns False (nothing deferred) otherwise."""
        if not self._blocked():
            return False
        out = widgets.output_area()
        run = self.waiting_for() or (getattr(self._queue[0][2], "waiting_on", None) if self._queue else None)
        what = run.name if isinstance(run, StepRun) else "the step above"
        out.waiting_on = run
        with out:
            if isinstance(run, StepRun) and run.record.status == "refused":
                widgets.show(f"⏳ {label} waits for {what}, which is refused above: allow it in the parameters "
                             "cell (or change the lab) and run the notebook again")
            else:
                widgets.show(f"⏳ {label} waits for {what} to be applied (its gate above); "
                             "it runs then, on the lab as it is at that time")
        widgets.show(out)
        self._queue.append((label, fn, out))
        return True

    def _drain(self) -> None:
        """Run what waited, in order, until a new gate waits (or something fails)."""
        while self._queue and self.waiting_for() is None:
            label, fn, out = self._queue.pop(0)
            out.clear_output()
            with out:
                try:
                    fn()
                except Exception as exc:  # shown where the cell's output would have been; the rest stops
                    widgets.show_error(exc)
                    for later, _fn, o in self._queue:
                        o.clear_output()
                        with o:
                            widgets.show(f"{later}: not run — {label} failed above")
                    self._queue.clear()
                    return

    def _gate_done(self, run: StepRun) -> None:
        self._drain()

    # -- preflight -------------------------------------------------------------------------------
    def preflight(self) -> list:
        """The plan, the findings and the host-budget chart (the 00 notebook)."""
        t0 = time.monotonic()
        findings = preflight(self.spec, self.design)
        widgets.show(widgets.Table(self.design.rows(), title="Plan: machines",
                                   columns=["name", "vmid", "kind", "role", "cores", "memory_gb", "disks", "mgmt", "storage"]))
        svc = [{"service": f"{s.namespace}/{s.name}", "old": s.old_ip or "", "requested": s.requested, "new": s.ip or "-"}
               for s in self.design.services]
        widgets.show(widgets.Table(svc, title=f"LoadBalancer pool {self.design.lb_pool_text}"))
        widgets.show(widgets.Table([f.row() for f in findings], title="Findings", status_column="severity"))
        if widgets.in_ipython():
            widgets.show(host_budget_chart(self.spec, self.design))
        else:
            widgets.show(widgets.Table(budget_rows(self.spec, self.design), title="Host budget"))
        self.archive.findings = [f.to_json() for f in findings]
        self.archive.timings["preflight_s"] = round(time.monotonic() - t0, 3)
        self.save()
        return findings

    # -- steps -----------------------------------------------------------------------------------
    def step(self, name: str) -> StepRun | DeferredStep:
        """Observe and plan step ``name``; shows the plan (and what the options refuse). In JupyterLab,
        while an earlier gate waits, the plan is made only after that step converged."""
        if self._blocked():
            pending = DeferredStep(self, name)
            self.defer(f"the plan of {name}", pending._run)
            return pending
        return self._step_now(name)

    def apply_plan(self, plan: Plan) -> StepRun:
        """Apply a plan made earlier (e.g. an archived one, :func:`falkit.plan.diff.load_plans`) as
        ``lab.step(name).apply()`` applies a fresh one: shown, recorded, refused by the options,
        applied from its payloads alone (the lab is not observed first), then converged."""
        return self._show_run(get_step(plan.step), plan.step, plan).apply()

    def plan_step(self, name: str) -> Plan:
        """A fresh plan of step ``name`` from the lab as it is now (nothing shown or recorded)."""
        step = get_step(name)
        observed = step.observe(self.target, self.spec, self.step_options)
        return step.plan(self.spec, observed, self.step_options)

    def _step_now(self, name: str) -> StepRun:
        step = get_step(name)
        rec = self.archive.step(name)
        if rec.status is None:
            rec.status = "planned"
        t0 = time.monotonic()
        try:
            observed = step.observe(self.target, self.spec, self.step_options)
            plan = step.plan(self.spec, observed, self.step_options)
        except FalkitError as exc:
            exc = self._resumable(exc)
            self._fail(exc)
            raise exc from exc.__cause__
        except Exception as exc:
            self._fail(exc)
            raise StepError(name, f"observing the lab failed: {type(exc).__name__}: {exc}", self.resume_hint()) from exc
        rec.timings["plan_s"] = round(time.monotonic() - t0, 3)
        return self._show_run(step, name, plan)

    def _show_run(self, step: Any, name: str, plan: Plan) -> StepRun:
        """Record ``plan`` as step ``name``'s, show it and what the options refuse of it."""
        rec = self.archive.step(name)
        if rec.status is None:
            rec.status = "planned"
        run = StepRun(self, step, plan)
        run._record_plan(plan)
        self._runs[name] = run
        widgets.show(plan)
        refusal = refuse(plan, self.step_options)
        if refusal:
            widgets.show(f"refused unless allowed: {refusal.text()}\n  {refusal.how()}")
        return run

    def checks(self, name: str) -> list[Check]:
        """Run step ``name``'s checks, show them as a table and record them."""
        if self.defer(f"the checks of {name}", lambda: self._checks(name)):
            return widgets.CheckList(shown=True)
        run = self._runs.get(name)
        if run is not None and run.pending:
            rec = self.archive.step(name)
            rec.checks = "skipped"
            why = rec.status if rec.status == "refused" else f"apply={self.apply}"
            widgets.show(f"checks of {name} skipped: {len(run.plan.changes)} planned change(s) not applied ({why})")
            self.save()
            return widgets.CheckList(shown=True)
        return self._checks(name)

    def _checks(self, name: str) -> list[Check]:
        step = get_step(name)
        t0 = time.monotonic()
        try:
            checks = list(step.checks(self.target, self.spec, self.step_options))
        except FalkitError as exc:
            exc = self._resumable(exc)
            self._fail(exc)
            raise exc from exc.__cause__
        except Exception as exc:
            self._fail(exc)
            raise StepError(name, f"running the checks failed: {type(exc).__name__}: {exc}", self.resume_hint()) from exc
        self.archive.checks = [c for c in self.archive.checks if c.get("step") != name]
        self.archive.checks += [dict(c.row(), step=name) for c in checks]
        self.archive.step(name).timings["checks_s"] = round(time.monotonic() - t0, 3)
        self.save()
        failed = sum(1 for c in checks if not c.ok)
        out = widgets.CheckList(checks, f"Checks of {name}: {len(checks) - failed} ok, {failed} failed", shown=True)
        widgets.show(out.table())
        return out

    # -- the end ---------------------------------------------------------------------------------
    def finish(self) -> None:
        """Write the notebook's result (also in ``lab.result``); raise ``StepError`` if a check (or an
        error finding) failed — after showing every check. In JupyterLab it waits for the gates above."""
        if self.defer(f"{self.notebook}'s summary", self._finish):
            return
        self._finish()

    def _finish(self) -> None:
        res = self.archive
        failed = [c for c in res.checks if not c["ok"]]
        errors = [f for f in res.findings if f["severity"] == "error"]
        pending = [n for n, r in self._runs.items() if r.pending and r.gate is not None]
        refused = [n for n, r in res.steps.items() if r.status == "refused"]
        res.finished = now()
        res.status = "failed" if failed or errors or refused else ("pending" if pending else "ok")
        if self._dashboard is not None:
            self._dashboard.stop()
        self.save()
        self.close()
        summary = [{"step": n, "status": r.status, "planned": len(r.planned), "applied": len(r.applied),
                    "converged": r.converged} for n, r in res.steps.items()]
        if summary:
            widgets.show(widgets.Table(summary, title=f"{self.notebook}: summary"))
        widgets.show(f"{self.notebook}: {res.status} — {len(res.checks) - len(failed)} check(s) ok, "
                     f"{len(failed)} failed, {len(errors)} error finding(s), {res.journal['mutating_calls']} mutating API call(s)"
                     + (f"; refused: {', '.join(refused)}" if refused else "")
                     + (f"; waiting for Apply: {', '.join(pending)}" if pending else "")
                     + (f"; archived in {self.run_dir}" if self.run_dir and self.interactive else ""))
        if failed or errors:
            what = [f"{c['step']}: {c['check']} {c['subject']} (expected {c['expected']}, observed {c['observed']})"
                    for c in failed] + [f"finding {f['id']}: {f['message']}" for f in errors]
            raise StepError(self.notebook, f"{len(failed)} check(s) failed, {len(errors)} error finding(s):\n    "
                            + "\n    ".join(what), self.resume_hint())
