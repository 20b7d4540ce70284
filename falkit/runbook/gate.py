"""One step's plan in a notebook and its application: :class:`StepRun` (what ``lab.step(name)``
returns) and :class:`DeferredStep` (the same while an earlier gate waits).

- **Headless**: ``apply()`` applies iff the lab's ``apply`` is on and :func:`~.converge.refuse`
  allows the plan; a refused plan raises :class:`~falkit.model.errors.RefusedError` naming the changes and
  how to allow them (a dry run only says what applying would need).
- **JupyterLab**: an approval gate (:class:`falkit.ui.widgets.ApprovalGate`, docs/INTERACTIVE.md): no
  Apply button for a refused plan; otherwise Apply (a second confirmation for destructive or
  disruptive changes) takes the run lock, re-plans from the lab as it is (:func:`~.converge.plan_key`;
  a changed plan is shown with its difference and waits for a new click), then applies.
- After applying, the step is re-observed until a fresh plan is empty (:func:`~.converge.converge`)
  or ``wait_timeout_s`` passes -> :class:`~falkit.model.errors.StepError` with how to resume.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from html import escape
from typing import Any

from ..model.errors import FalkitError, RefusedError, StepError
from ..plan.diff import Plan
from ..ui import widgets
from .archive import StepRecord
from .converge import Refusal, converge, plan_key, refuse


class DeferredStep:
    """``lab.step(name)`` while an earlier gate waits: planned (and applied, if ``apply()`` was
    called) once that step converged. ``run`` is the :class:`StepRun` then."""

    def __init__(self, lab: Any, name: str):
        self.lab = lab
        self.name = name
        self.run: StepRun | None = None
        self.apply_requested = False

    def _run(self) -> None:
        self.run = self.lab._step_now(self.name)
        if self.apply_requested:
            self.run.apply()

    def apply(self) -> DeferredStep | StepRun:
        if self.run is not None:
            return self.run.apply()
        self.apply_requested = True
        return self

    @property
    def converged(self) -> bool:
        return self.run is not None and self.run.converged

    def __repr__(self) -> str:
        return f"{self.name}: " + (repr(self.run) if self.run else "waiting for the step above to be applied")

    def _ipython_display_(self) -> None:  # the deferred output area above says it already
        pass


class StepRun:
    """One step's plan in a notebook, and its application. ``lab`` is the :class:`~.facade.Lab` that
    planned it (its target, options, archive and gates)."""

    def __init__(self, lab: Any, step: Any, plan: Plan):
        self.lab = lab
        self.step = step
        self.name = step.name
        self.plan = plan
        self.gate: widgets.ApprovalGate | None = None
        self.converged = plan.empty
        self.on_converged: list[Callable[[], None]] = []
        self._status_widget: Any = None

    @property
    def pending(self) -> bool:
        return not self.converged

    def _status_text(self) -> str:
        return f"{self.name}: {len(self.plan.changes)} change(s) — {self.record.status}"

    def _repr_html_(self) -> str:
        # the plan itself was displayed when the step was planned; the cell value is a status line
        return (f"<p><b>{escape(self.name)}</b>: {len(self.plan.changes)} change(s) — "
                f"{escape(str(self.record.status))}</p>")

    def __repr__(self) -> str:
        return self._status_text()

    def _display_live(self) -> None:
        """With a gate (JupyterLab): the cell's value is a live status line that follows the gate
        (waiting, applying, applied); set as the instance's ``_ipython_display_`` then only."""
        if self._status_widget is None:
            self._status_widget = widgets.html_widget(self._repr_html_())
        widgets.show(self._status_widget)

    def _set_status(self, status: str) -> None:
        self.record.status = status
        if self._status_widget is not None:
            self._status_widget.value = self._repr_html_()
        self.lab.save()

    def refusal(self) -> str:
        """Why the options refuse this plan ('' when they allow it)."""
        return refuse(self.plan, self.lab.step_options).text()

    @property
    def record(self) -> StepRecord:
        return self.lab.archive.step(self.name)

    def _record_plan(self, plan: Plan) -> None:
        rec = self.record
        rec.planned = plan.rows()
        rec.plan = plan.to_json(redact=True)  # with the payloads, secrets redacted: `falkit show-plan`
        rec.noops = [{"kind": n.kind, "name": n.name, "reason": n.reason} for n in plan.noops]
        rec.notes = list(plan.notes)
        if plan.empty:
            rec.converged = True
            rec.status = "noop"
        self.lab.save()

    def apply(self) -> StepRun:
        """Apply the plan (see the module docstring for when), then wait until it converged."""
        if self.plan.empty:
            widgets.show(f"{self.name}: nothing to change")
            return self
        refusal = refuse(self.plan, self.lab.step_options)
        if self.lab.interactive:
            return self._show_gate(refusal)
        if refusal and not self.lab.apply:
            # a dry run applies nothing: say what an apply would need, without failing
            self._set_status("not applied (dry run)")
            widgets.show(f"{self.name}: {len(self.plan.changes)} change(s) not applied: apply=False (dry run). "
                         f"Applying would need: {refusal.text()}")
            return self
        if refusal:
            self.record.status = "refused"
            exc = RefusedError(self.name, f"the plan is refused: {refusal.text()}; {refusal.how()}",
                               "allow the changes explicitly, or change the lab spec, then re-run")
            self.lab._fail(exc)
            raise exc
        if not self.lab.apply:
            self._set_status("not applied (dry run)")
            widgets.show(f"{self.name}: {len(self.plan.changes)} change(s) not applied: apply=False (dry run)")
            return self
        self._apply_now()
        return self

    # -- JupyterLab --------------------------------------------------------------------------------
    def _show_gate(self, refusal: Refusal) -> StepRun:
        title = f"apply {len(self.plan.changes)} change(s) of {self.name}"
        self.gate = widgets.ApprovalGate(title, self._on_gate, [c.describe() for c in self.plan.destructive],
                                         disruptive=[c.describe() for c in self.plan.disruptive],
                                         dashboard=self.lab._dashboard,
                                         refused=self._refused_html(refusal) if refusal else None)
        widgets.show(self.gate)
        self._ipython_display_ = self._display_live
        if refusal:
            self._refuse(refusal)
        else:
            self._set_status("waiting for approval")
        return self

    @staticmethod
    def _refused_html(refusal: Refusal) -> str:
        return f"{refusal.text()}. {refusal.how()}."

    def _refuse(self, refusal: Refusal) -> None:
        exc = RefusedError(self.name, f"the plan is refused: {refusal.text()}; {refusal.how()}",
                           "allow the changes explicitly, or change the lab spec, then run the notebook again")
        self.lab._fail(exc)
        self._set_status("refused")

    def _on_gate(self) -> bool | None:
        """The gate's Apply: take the lock, re-plan from the lab as it is now; apply only the plan the
        operator saw (if the lab changed, show the new plan and the difference, and wait again)."""
        with self.lab.lock_for_apply():
            return self._replan_or_apply()

    def _replan_or_apply(self) -> bool | None:
        lab = self.lab
        fresh = lab.plan_step(self.name)
        if plan_key(fresh) != plan_key(self.plan):
            old = [c.describe() for c in self.plan.changes]
            new = [c.describe() for c in fresh.changes]
            diff = [f"+ now planned: {d}" for d in new if d not in old] + [f"- no longer planned: {d}" for d in old if d not in new]
            widgets.show(f"{self.name}: the lab changed since this plan was shown — nothing applied. "
                         "The difference:\n  " + "\n  ".join(diff or ["(same changes, other values)"]))
            widgets.show(fresh)
            self.plan = fresh
            self._record_plan(fresh)
            if fresh.empty:
                self._converged_now(None)
                return True
            refusal = refuse(fresh, lab.step_options)
            assert self.gate is not None
            self.gate.replan(f"apply {len(fresh.changes)} change(s) of {self.name}",
                             [c.describe() for c in fresh.destructive], [c.describe() for c in fresh.disruptive],
                             refused=self._refused_html(refusal) if refusal else None)
            if refusal:
                self._refuse(refusal)
            return None
        return self._apply_now()

    # -- applying --------------------------------------------------------------------------------
    def _apply_now(self) -> bool:
        lab, rec = self.lab, self.record
        progress = widgets.Progress(lab.notebook)
        self._set_status("applying")
        t0 = time.monotonic()
        try:
            self.step.apply(lab.target, self.plan, lab.step_options, progress)
        except FalkitError as exc:
            exc = lab._resumable(exc)
            rec.status = "failed"
            lab._fail(exc)
            self._set_status("failed")
            raise exc from exc.__cause__
        except Exception as exc:
            rec.status = "failed"
            err = StepError(self.name, f"applying the plan failed: {type(exc).__name__}: {exc}", lab.resume_hint())
            lab._fail(err)
            self._set_status("failed")
            raise err from exc
        rec.applied = self.plan.rows()
        rec.timings["apply_s"] = round(time.monotonic() - t0, 3)
        lab.save()
        self._converge(progress)
        return True

    def _converged_now(self, t0: float | None) -> None:
        rec = self.record
        self.converged = True
        rec.converged = True
        if t0 is not None:
            rec.timings["converge_s"] = round(time.monotonic() - t0, 3)
        archive = self.lab.archive
        if rec.status in ("failed", "refused") and archive.status == "failed":
            archive.status, archive.error = "running", None  # retried from the gate, and it worked
        self._set_status("applied" if rec.applied else "noop")
        for fn in self.on_converged:
            fn()
        if self.gate is not None:
            self.lab._gate_done(self)

    def _converge(self, progress: widgets.Progress) -> None:
        lab = self.lab
        timeout = lab.step_options.wait_timeout_s
        t0 = time.monotonic()
        left = converge(self.name, lambda: lab.plan_step(self.name), timeout, progress.log,
                        on_poll=lab._dashboard.refresh if lab._dashboard is not None else None)
        if left is not None:
            self.record.converged = False
            remaining = "; ".join(c.describe() for c in left.changes[:10])
            err = StepError(self.name, f"not converged after {timeout:g} s: {len(left.changes)} change(s) remain: "
                            f"{remaining}", lab.resume_hint())
            lab._fail(err)
            self._set_status("not converged")
            raise err
        widgets.show(f"{self.name}: applied {len(self.plan.changes)} change(s); converged (a fresh plan is empty)")
        self._converged_now(t0)
