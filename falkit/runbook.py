"""The notebook facade: notebooks stay thin (a parameters cell, then one call per step).

    from falkit import runbook
    lab = runbook.open(params, target=target, apply=apply, notebook="20-vms", **options)
    lab.preflight()          # 00 only: plan, findings, host-budget chart
    s = lab.step("vms")      # observe + plan; shows the plan
    s.apply()                # headless: applies iff apply=True; JupyterLab: an Apply button
    lab.checks("vms")        # the step's checks as a table
    lab.finish()             # writes the result; raises if a check failed

Behaviour covered here:

- **Options** are validated before anything connects: the known ones (:data:`BASE_OPTIONS`) plus
  those steps declare as a class attribute ``options = {"name": (type, default)}``; unknown or
  ill-typed -> :class:`~falkit.errors.ParameterError` (papermill itself only warns).
- **Refusal**: a plan with disruptive changes is refused (:class:`~falkit.errors.RefusedError` naming
  the changes and the option) unless ``allow_disruptive``; destructive ones unless
  ``allow_destructive`` — checked before anything is applied.
- **Apply**: headless runs apply iff ``apply=True``; in JupyterLab an Apply button (a second
  confirmation for destructive changes) applies on click. After applying, the step is re-observed
  until a fresh plan is empty (converged) or ``wait_timeout_s`` passes ->
  :class:`~falkit.errors.StepError` with how to resume.
- **Results**: ``$FALKIT_RUN_DIR/<notebook>.result.json`` (written after every phase, so a failed
  notebook leaves its partial result): planned/applied changes, noops, findings, checks, timings and
  the number of mutating API calls (journal).
- ``params`` is resolved against the current directory (papermill runs notebooks with
  cwd = notebooks/, so ``../parameters/fal.yaml`` works there); absolute paths work anywhere.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import os
import pkgutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import widgets
from .diff import Plan
from .errors import FalkitError, ParameterError, RefusedError, StepError
from .journal import Journal
from .steps.base import Check, StepOptions, get_step

BASE_OPTIONS: dict[str, tuple[type, Any]] = {
    "allow_disruptive": (bool, False),  # MAC/bridge changes, reboots
    "allow_destructive": (bool, False),  # deleting VMs/disks/volumes, shrinking
    "wait_timeout_s": (float, 600.0),  # how long a step may take to converge after apply
    "time_factor": (float, 0.0),  # the twin's clock when connect() starts it (0: tasks finish at once)
}
TARGETS = ("twin", "live")
POLL_S = (0.05, 2.0)  # convergence polling: first and longest interval


# ---------------------------------------------------------------------------------------------- options


def step_modules() -> list[str]:
    """The step modules that exist in falkit.steps (all but ``base``)."""
    import falkit.steps as pkg

    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name != "base" and not m.name.startswith("_"))


def step_option_decls() -> dict[str, tuple[type, Any, str]]:
    """Options steps declare: ``{name: (type, default, step)}`` from each step class's ``options``."""
    from .steps.base import REGISTRY

    for mod in step_modules():
        importlib.import_module(f"falkit.steps.{mod}")
    out: dict[str, tuple[type, Any, str]] = {}
    for name, cls in sorted(REGISTRY.items()):
        for opt, decl in (getattr(cls, "options", None) or {}).items():
            typ, default = decl[0], decl[1]
            if opt in BASE_OPTIONS or (opt in out and out[opt][0] is not typ):
                raise ParameterError(f"step {name!r} declares option {opt!r} that clashes with another declaration")
            out.setdefault(opt, (typ, default, name))
    return out


def known_options() -> dict[str, tuple[type, Any]]:
    """Every option a notebook accepts, with its type and default."""
    out = dict(BASE_OPTIONS)
    out.update({k: (t, d) for k, (t, d, _s) in step_option_decls().items()})
    return out


def _check_type(name: str, value: Any, typ: type) -> Any:
    if typ is bool:
        if not isinstance(value, bool):
            raise ParameterError(f"option {name!r} must be true or false, got {type(value).__name__} {value!r}")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParameterError(f"option {name!r} must be a number, got {type(value).__name__} {value!r}")
        return float(value)
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParameterError(f"option {name!r} must be an integer, got {type(value).__name__} {value!r}")
        return value
    if not isinstance(value, typ):
        raise ParameterError(f"option {name!r} must be {typ.__name__}, got {type(value).__name__} {value!r}")
    return value


def validate_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """All options with defaults filled in; ``ParameterError`` lists every unknown/ill-typed one."""
    known = known_options()
    unknown = sorted(set(options) - set(known))
    problems = [f"unknown option {k!r}" for k in unknown]
    out = {k: d for k, (_t, d) in known.items()}
    for k, v in options.items():
        if k in known:
            try:
                out[k] = _check_type(k, v, known[k][0])
            except ParameterError as exc:
                problems.append(str(exc))
    if problems:
        raise ParameterError("invalid notebook parameters:\n  " + "\n  ".join(problems)
                             + f"\n  known options: {', '.join(sorted(known))}")
    if out["wait_timeout_s"] <= 0:
        raise ParameterError("option 'wait_timeout_s' must be positive")
    return out


def validate_parameters(params: Any, target: Any, apply: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    """The notebook parameters (``params``, ``target``, ``apply`` and options), checked together."""
    problems = []
    if not isinstance(params, str | os.PathLike):
        problems.append(f"params must be a path to a lab YAML file, got {type(params).__name__} {params!r}")
    if target not in TARGETS:
        problems.append(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    if not isinstance(apply, bool):
        problems.append(f"apply must be true or false, got {type(apply).__name__} {apply!r}")
    if problems:
        raise ParameterError("invalid notebook parameters:\n  " + "\n  ".join(problems))
    return {"params": params, "target": target, "apply": apply, "options": validate_options(options)}


def resolve_params(params: str | os.PathLike) -> Path:
    """``params`` as an absolute path (relative ones against the current directory)."""
    path = Path(params).expanduser()
    return path if path.is_absolute() else (Path.cwd() / path).resolve()


def missing_params_message(params: str | os.PathLike, path: Path) -> str:
    """Why ``params`` names no file, and — when it is the notebooks' ``../parameters/…`` default run
    from the repository root (``papermill notebooks/NN.ipynb …`` without ``--cwd``) — what to run."""
    text = f"params: no such lab file {path} (relative paths are resolved against {Path.cwd()})"
    rel = Path(params).expanduser()
    nb_dir = Path.cwd() / "notebooks"
    if not rel.is_absolute() and nb_dir.is_dir() and (nb_dir / rel).resolve().is_file():
        text += (f". The notebooks' {params!r} is relative to the notebooks/ directory: run papermill there, "
                 f"e.g. `papermill --cwd notebooks notebooks/00-preflight.ipynb out.ipynb`, or pass "
                 f"`-p params {os.path.relpath(nb_dir / rel)}` — or use `falkit run`")
    return text


# ---------------------------------------------------------------------------------------------- the lab


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def open(params: str | os.PathLike, target: str = "twin", apply: bool = False, notebook: str | None = None,
         **options: Any) -> Lab:  # noqa: A001 - the facade's verb
    """Validate the parameters, load the spec, connect to the target and show a header."""
    from .spec import load_spec
    from .target import connect

    checked = validate_parameters(params, target, apply, options)
    path = resolve_params(params)
    if not path.is_file():
        raise ParameterError(missing_params_message(params, path))
    spec = load_spec(path)
    journal = Journal()
    tgt = connect(spec, target, journal=journal, spec_path=path, time_factor=checked["options"]["time_factor"])
    lab = Lab(spec, tgt, apply=apply, notebook=notebook or "notebook", options=checked["options"], spec_path=path)
    lab.show_header()
    return lab


class Lab:
    """A notebook's handle on the lab: spec, target, options and the notebook's result."""

    def __init__(self, spec: Any, target: Any, *, apply: bool, notebook: str, options: dict[str, Any],
                 spec_path: Path | None = None):
        from .plan import derive_plan

        self.spec = spec
        self.plan = derive_plan(spec)
        self.target = target
        self.apply = apply
        self.notebook = notebook
        self.options = options
        self.step_options = StepOptions(
            apply=apply, allow_disruptive=options["allow_disruptive"], allow_destructive=options["allow_destructive"],
            wait_timeout_s=options["wait_timeout_s"],
            extra={k: v for k, v in options.items() if k not in BASE_OPTIONS})
        self.interactive = widgets.interactive()
        self._mark = target.journal.mark()
        self._t0 = time.monotonic()
        self._runs: dict[str, StepRun] = {}
        self._dashboard: widgets.Dashboard | None = None
        self.result: dict[str, Any] = {
            "notebook": notebook, "lab": spec.lab, "target": target.kind, "apply": apply,
            "params": str(spec_path) if spec_path else None, "options": options, "status": "running",
            "started": _now(), "finished": None, "steps": {}, "findings": [], "checks": [],
            "timings": {}, "journal": {"mutating_calls": 0, "by_api": {}}, "error": None,
        }
        self.save()

    # -- archive ---------------------------------------------------------------------------------
    @property
    def result_path(self) -> Path | None:
        run_dir = os.environ.get("FALKIT_RUN_DIR")
        return Path(run_dir) / f"{self.notebook}.result.json" if run_dir else None

    def save(self) -> None:
        j = self.target.journal
        self.result["journal"] = {"mutating_calls": j.count(self._mark), "by_api": j.by_api(self._mark)}
        self.result["timings"]["total_s"] = round(time.monotonic() - self._t0, 3)
        path = self.result_path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.result, indent=2, default=str) + "\n")
            os.replace(tmp, path)

    def resume_hint(self) -> str:
        run_dir = os.environ.get("FALKIT_RUN_DIR")
        if run_dir:
            return f"fix the cause, then `falkit run --resume {run_dir}` (steps are idempotent)"
        return "fix the cause, then re-run this notebook (steps are idempotent: plan -> apply -> verify)"

    def _fail(self, exc: BaseException) -> None:
        self.result["status"] = "failed"
        self.result["error"] = f"{type(exc).__name__}: {exc}"
        self.save()

    # -- display ---------------------------------------------------------------------------------
    def show_header(self) -> None:
        try:
            version = self.target.pve.version.get().get("version", "?")
        except Exception as exc:  # the header says so; the first step will fail with the details
            version = f"unreachable ({type(exc).__name__})"
        opts = ", ".join(f"{k}={v}" for k, v in self.options.items() if known_options()[k][1] != v) or "defaults"
        rows = [{"lab": self.spec.lab, "target": self.target.kind, "node": self.target.node,
                 "proxmox": version, "notebook": self.notebook,
                 "apply": "yes" if self.apply else "no (dry run)", "options": opts}]
        widgets.show(widgets.Table(rows, title=f"falkit {self.notebook}: {self.spec.lab} on the {self.target.kind}"))

    def dashboard(self) -> widgets.Dashboard:
        """Show the lab dashboard (refreshed while steps wait)."""
        self._dashboard = widgets.Dashboard(self.target)
        return self._dashboard.show()

    # -- preflight -------------------------------------------------------------------------------
    def preflight(self) -> list:
        """The plan, the findings and the host-budget chart (the 00 notebook)."""
        from .charts import budget_rows, host_budget_chart
        from .findings import preflight

        t0 = time.monotonic()
        findings = preflight(self.spec, self.plan)
        widgets.show(widgets.Table(self.plan.rows(), title="Plan: machines",
                                   columns=["name", "vmid", "kind", "role", "cores", "memory_gb", "disks", "mgmt", "storage"]))
        svc = [{"service": f"{s.namespace}/{s.name}", "old": s.old_ip or "", "requested": s.requested, "new": s.ip or "-"}
               for s in self.plan.services]
        widgets.show(widgets.Table(svc, title=f"LoadBalancer pool {self.plan.lb_pool[0]}-{self.plan.lb_pool[1]}"))
        widgets.show(widgets.Table([f.row() for f in findings], title="Findings", status_column="severity"))
        if widgets.in_ipython():
            widgets.show(host_budget_chart(self.spec, self.plan))
        else:
            widgets.show(widgets.Table(budget_rows(self.spec, self.plan), title="Host budget"))
        self.result["findings"] = [f.to_json() for f in findings]
        self.result["timings"]["preflight_s"] = round(time.monotonic() - t0, 3)
        self.save()
        return findings

    # -- steps -----------------------------------------------------------------------------------
    def step(self, name: str) -> StepRun:
        """Observe and plan step ``name``; shows the plan (and what the options refuse)."""
        step = get_step(name)
        rec = self.result["steps"].setdefault(name, {"planned": [], "applied": [], "noops": [], "notes": [],
                                                      "converged": None, "status": "planned", "timings": {}})
        t0 = time.monotonic()
        try:
            observed = step.observe(self.target, self.spec, self.step_options)
            plan = step.plan(self.spec, observed, self.step_options)
        except FalkitError as exc:
            self._fail(exc)
            raise
        except Exception as exc:
            self._fail(exc)
            raise StepError(name, f"observing the lab failed: {type(exc).__name__}: {exc}", self.resume_hint()) from exc
        rec["timings"]["plan_s"] = round(time.monotonic() - t0, 3)
        rec["planned"] = plan.rows()
        rec["noops"] = [{"kind": n.kind, "name": n.name, "reason": n.reason} for n in plan.noops]
        rec["notes"] = list(plan.notes)
        if plan.empty:
            rec["converged"] = True
            rec["status"] = "noop"
        self.save()
        run = StepRun(self, step, plan)
        self._runs[name] = run
        widgets.show(plan)
        refusal = run.refusal()
        if refusal:
            widgets.show(f"refused unless allowed: {refusal}")
        return run

    def checks(self, name: str) -> list[Check]:
        """Run step ``name``'s checks, show them as a table and record them."""
        run = self._runs.get(name)
        if run is not None and run.pending:
            if self.interactive and run.gate is not None:
                import ipywidgets as w

                out = w.Output()
                widgets.show(out)
                widgets.show(f"checks of {name} run once the plan above is applied")

                def later() -> None:
                    with out:
                        self._checks(name)

                run.on_converged.append(later)
                return []
            rec = self.result["steps"][name]
            rec["checks"] = "skipped"
            widgets.show(f"checks of {name} skipped: {len(run.plan.changes)} planned change(s) not applied "
                         f"(apply={self.apply})")
            self.save()
            return []
        return self._checks(name)

    def _checks(self, name: str) -> list[Check]:
        step = get_step(name)
        t0 = time.monotonic()
        try:
            checks = list(step.checks(self.target, self.spec, self.step_options))
        except FalkitError as exc:
            self._fail(exc)
            raise
        except Exception as exc:
            self._fail(exc)
            raise StepError(name, f"running the checks failed: {type(exc).__name__}: {exc}", self.resume_hint()) from exc
        self.result["checks"] = [c for c in self.result["checks"] if c.get("step") != name]
        self.result["checks"] += [dict(c.row(), step=name) for c in checks]
        self.result["steps"].setdefault(name, {"timings": {}}).setdefault("timings", {})["checks_s"] = round(time.monotonic() - t0, 3)
        self.save()
        failed = sum(1 for c in checks if not c.ok)
        widgets.show(widgets.Table([c.row() for c in checks], title=f"Checks of {name}: {len(checks) - failed} ok, {failed} failed",
                                   columns=["check", "subject", "expected", "observed", "ok", "fix"], status_column="ok"))
        return checks

    # -- the end ---------------------------------------------------------------------------------
    def finish(self) -> None:
        """Write the notebook's result (also in ``lab.result``); raise ``StepError`` if a check (or an
        error finding) failed — after showing every check."""
        failed = [c for c in self.result["checks"] if not c["ok"]]
        errors = [f for f in self.result["findings"] if f["severity"] == "error"]
        pending = [n for n, r in self._runs.items() if r.pending and r.gate is not None]
        self.result["finished"] = _now()
        self.result["status"] = "failed" if failed or errors else ("pending" if pending else "ok")
        if self._dashboard is not None:
            self._dashboard.stop()
        self.save()
        steps = self.result["steps"]
        summary = [{"step": n, "status": r.get("status"), "planned": len(r.get("planned", [])),
                    "applied": len(r.get("applied", [])), "converged": r.get("converged")} for n, r in steps.items()]
        if summary:
            widgets.show(widgets.Table(summary, title=f"{self.notebook}: summary"))
        j = self.result["journal"]
        widgets.show(f"{self.notebook}: {self.result['status']} — {len(self.result['checks']) - len(failed)} check(s) ok, "
                     f"{len(failed)} failed, {len(errors)} error finding(s), {j['mutating_calls']} mutating API call(s)"
                     + (f"; waiting for Apply: {', '.join(pending)}" if pending else ""))
        if failed or errors:
            what = [f"{c['step']}: {c['check']} {c['subject']} (expected {c['expected']}, observed {c['observed']})"
                    for c in failed] + [f"finding {f['id']}: {f['message']}" for f in errors]
            raise StepError(self.notebook, f"{len(failed)} check(s) failed, {len(errors)} error finding(s):\n    "
                            + "\n    ".join(what), self.resume_hint())


class StepRun:
    """One step's plan in a notebook, and its application."""

    def __init__(self, lab: Lab, step: Any, plan: Plan):
        self.lab = lab
        self.step = step
        self.name = step.name
        self.plan = plan
        self.gate: widgets.ApprovalGate | None = None
        self.converged = plan.empty
        self.on_converged: list[Callable[[], None]] = []

    @property
    def pending(self) -> bool:
        return not self.converged

    def _repr_html_(self) -> str:
        # the plan itself was displayed when the step was planned; the cell value is a status line
        from html import escape

        return f"<p><b>{escape(self.name)}</b>: {len(self.plan.changes)} change(s) — {escape(str(self.record.get('status')))}</p>"

    def __repr__(self) -> str:
        return f"{self.name}: {len(self.plan.changes)} change(s) — {self.record.get('status')}"

    def refusal(self) -> str:
        """Why the options refuse this plan ('' when they allow it)."""
        o = self.lab.step_options
        parts = []
        if self.plan.disruptive and not o.allow_disruptive:
            parts.append(f"{len(self.plan.disruptive)} disruptive change(s) ("
                         + "; ".join(c.describe() for c in self.plan.disruptive) + ") need allow_disruptive=True")
        if self.plan.destructive and not o.allow_destructive:
            parts.append(f"{len(self.plan.destructive)} destructive change(s) ("
                         + "; ".join(c.describe() for c in self.plan.destructive) + ") need allow_destructive=True")
        return "; ".join(parts)

    @property
    def record(self) -> dict[str, Any]:
        return self.lab.result["steps"][self.name]

    def apply(self) -> StepRun:
        """Apply the plan (see the module docstring for when), then wait until it converged."""
        if self.plan.empty:
            widgets.show(f"{self.name}: nothing to change")
            return self
        refusal = self.refusal()
        if refusal and not self.lab.apply and not self.lab.interactive:
            # a dry run applies nothing: say what an apply would need, without failing
            self.record["status"] = "not applied (dry run)"
            self.lab.save()
            widgets.show(f"{self.name}: {len(self.plan.changes)} change(s) not applied: apply=False (dry run). "
                         f"Applying would need: {refusal}")
            return self
        if refusal and self.lab.interactive and not (self.plan.destructive and not self.lab.step_options.allow_destructive):
            # JupyterLab: the gate's second, explicit confirmation is the operator's allowance for
            # disruptive changes (destructive ones still need allow_destructive)
            refusal = ""
        if refusal:
            self.record["status"] = "refused"
            exc = RefusedError(self.name, f"the plan is refused: {refusal} "
                               f"(as a run option: falkit run --set allow_disruptive=true / --set allow_destructive=true)",
                               "allow the changes explicitly, or change the lab spec, then re-run")
            self.lab._fail(exc)
            raise exc
        if self.lab.interactive:
            self.gate = widgets.ApprovalGate(f"apply {len(self.plan.changes)} change(s) of {self.name}", self._apply_now,
                                             [c.describe() for c in self.plan.destructive],
                                             disruptive=[c.describe() for c in self.plan.disruptive],
                                             dashboard=self.lab._dashboard)
            widgets.show(self.gate)
            self.record["status"] = "waiting for approval"
            self.lab.save()
            return self
        if not self.lab.apply:
            self.record["status"] = "not applied (dry run)"
            self.lab.save()
            widgets.show(f"{self.name}: {len(self.plan.changes)} change(s) not applied: apply=False (dry run)")
            return self
        self._apply_now()
        return self

    def _apply_now(self) -> bool:
        lab, rec = self.lab, self.record
        progress = widgets.Progress(lab.notebook)
        rec["status"] = "applying"
        lab.save()
        t0 = time.monotonic()
        try:
            self.step.apply(lab.target, self.plan, lab.step_options, progress)
        except FalkitError as exc:
            rec["status"] = "failed"
            lab._fail(exc)
            raise
        except Exception as exc:
            rec["status"] = "failed"
            err = StepError(self.name, f"applying the plan failed: {type(exc).__name__}: {exc}", lab.resume_hint())
            lab._fail(err)
            raise err from exc
        rec["applied"] = self.plan.rows()
        rec["timings"]["apply_s"] = round(time.monotonic() - t0, 3)
        lab.save()
        self._converge(progress)
        for fn in self.on_converged:
            fn()
        return True

    def _converge(self, progress: widgets.Progress) -> None:
        lab, rec = self.lab, self.record
        timeout = lab.step_options.wait_timeout_s
        t0 = time.monotonic()
        delay = POLL_S[0]
        next_log = 1.0
        while True:
            observed = self.step.observe(lab.target, lab.spec, lab.step_options)
            fresh = self.step.plan(lab.spec, observed, lab.step_options)
            if lab._dashboard is not None:
                lab._dashboard.refresh()
            if fresh.empty:
                break
            waited = time.monotonic() - t0
            if waited > timeout:
                rec["status"] = "not converged"
                rec["converged"] = False
                remaining = "; ".join(c.describe() for c in fresh.changes[:10])
                err = StepError(self.name, f"not converged after {timeout:g} s: {len(fresh.changes)} change(s) remain: "
                                f"{remaining}", lab.resume_hint())
                lab._fail(err)
                raise err
            if waited >= next_log:
                progress.log(f"{self.name}: waiting for {len(fresh.changes)} change(s) to settle ({waited:.0f} s)")
                next_log = waited + 10.0
            time.sleep(delay)
            delay = min(delay * 2, POLL_S[1])
        self.converged = True
        rec["converged"] = True
        rec["status"] = "applied"
        rec["timings"]["converge_s"] = round(time.monotonic() - t0, 3)
        lab.save()
        widgets.show(f"{self.name}: applied {len(self.plan.changes)} change(s); converged (a fresh plan is empty)")
