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
- **Refusal**: :func:`refuse` (pure: plan + options) refuses disruptive changes unless
  ``allow_disruptive``, destructive ones unless ``allow_destructive``, and *blocked* changes (a
  prerequisite an earlier notebook provides, ``data["blocked"]``, naming it: "run 10-network first")
  always — checked before anything is applied, the same way headless and at a JupyterLab gate.
  Headless: :class:`~falkit.errors.RefusedError` naming the changes and how to allow them. Plans
  never depend on ``allow_*``: the options refuse, they do not change what is planned.
- **Apply**: headless runs apply iff ``apply=True``. In JupyterLab a gate (docs/INTERACTIVE.md):
  no Apply button for a refused plan; otherwise Apply (a second confirmation for destructive or
  disruptive changes) re-plans from the lab as it is (:func:`plan_key`; a changed plan is shown with
  its difference and waits for a new click), takes the run lock (:mod:`falkit.lock`) and applies.
  While a gate waits, later ``step``/``checks``/``finish`` calls wait too (:meth:`Lab.defer`) and run
  in order once it converged — Run All stops at the first gate. After applying, the step is
  re-observed until a fresh plan is empty (converged) or ``wait_timeout_s`` passes ->
  :class:`~falkit.errors.StepError` with how to resume; the waits name the changes they wait for.
- **Results**: ``$FALKIT_RUN_DIR/<notebook>.result.json`` (written after every phase, so a failed
  notebook leaves its partial result): planned/applied changes, noops, findings, checks, timings and
  the number of mutating API calls (journal). A JupyterLab lab also enters it in the run directory's
  ``run.json`` (:func:`record_session`, ``falkit run``'s format) — its own ``outputs/<time>-<target>-lab``
  when ``$FALKIT_RUN_DIR`` is unset — so ``falkit runs`` lists the session.
- ``params`` is resolved against the current directory (papermill runs notebooks with
  cwd = notebooks/, so ``../parameters/fal.yaml`` works there); absolute paths work anywhere.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import widgets
from .diff import Change, Plan
from .errors import DEFAULT_RESUME, FalkitError, ParameterError, RefusedError, StepError
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


def step_option_decls() -> dict[str, tuple[type, Any, str]]:
    """Options steps declare: ``{name: (type, default, step)}`` from each step class's ``options``."""
    from .steps.base import load_steps

    registry = load_steps()
    out: dict[str, tuple[type, Any, str]] = {}
    for name, cls in sorted(registry.items()):
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


# ---------------------------------------------------------------------------------------------- refusal


@dataclass(frozen=True)
class Refusal:
    """Why a plan may not be applied with the given options (falsy when it may).

    ``blocked``: changes a step marks ``data={"blocked": True, "message", "fix", "run_first"}`` — a
    prerequisite from an earlier notebook is missing (bridge, storage, ISO storage, ...); no option
    allows them. ``disruptive``/``destructive``: changes the options do not allow.
    """

    blocked: tuple[Change, ...] = ()
    disruptive: tuple[Change, ...] = ()
    destructive: tuple[Change, ...] = ()
    #: options the step itself needs on before it applies anything (80-rollback's ``rollback``)
    requires: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.blocked or self.disruptive or self.destructive or self.requires)

    @property
    def needs(self) -> list[str]:
        """The options that would allow the plan (none allows a blocked change)."""
        return list(self.requires) + [o for o, cs in (("allow_disruptive", self.disruptive),
                                                      ("allow_destructive", self.destructive)) if cs]

    @property
    def run_first(self) -> list[str]:
        out: list[str] = []
        for c in self.blocked:
            nb = (c.data or {}).get("run_first")
            if nb and nb not in out:
                out.append(nb)
        return out

    def text(self) -> str:
        parts = []
        for c in self.blocked:
            d = c.data or {}
            first = f" — run {d['run_first']} first" if d.get("run_first") else ""
            fix = f" (fix: {d['fix']})" if d.get("fix") else ""
            parts.append(f"blocked: {d.get('message') or c.reason or c.describe()}{first}{fix}")
        for opt in self.requires:
            parts.append(f"this step applies only with {opt}=True (it is off: a dry run that shows the plan)")
        for what, cs, opt in (("disruptive", self.disruptive, "allow_disruptive"),
                              ("destructive", self.destructive, "allow_destructive")):
            if cs:
                parts.append(f"{len(cs)} {what} change(s) (" + "; ".join(c.describe() for c in cs) + f") need {opt}=True")
        return "; ".join(parts)

    def how(self) -> str:
        """How to allow it: the notebook's parameters cell, or ``falkit run --set``."""
        out = []
        if self.blocked:
            first = self.run_first
            out.append(("run " + ", then ".join(first) + " first" if first else "fix what blocks it, as each blocked "
                        "change's fix says") + " (allow_disruptive/allow_destructive do not allow a blocked change)")
        if self.needs:
            cell = ", ".join(f'"{o}": True' for o in self.needs)
            sets = " ".join(f"--set {o}=true" for o in self.needs)
            out.append(f"to allow it, put {cell} in the parameters cell's options and run the notebook again "
                       f"(falkit run: {sets})")
        return "; ".join(out)


#: steps that apply only when an option of their own is on, whatever ``apply`` says: the rollback
#: (80-rollback's parameters cell has ``"rollback": False``; ``falkit run --set rollback=true``)
REQUIRED_OPTIONS: dict[str, str] = {"rollback-": "rollback"}


def refuse(plan: Plan, options: StepOptions) -> Refusal:
    """The refusal of ``plan`` under ``options`` — pure, and the same for ``falkit run`` and a gate."""
    requires = tuple(opt for prefix, opt in REQUIRED_OPTIONS.items()
                     if plan.step.startswith(prefix) and plan.changes and not (options.extra or {}).get(opt))
    return Refusal(blocked=tuple(c for c in plan.changes if isinstance(c.data, dict) and c.data.get("blocked")),
                   disruptive=() if options.allow_disruptive else plan.disruptive,
                   destructive=() if options.allow_destructive else plan.destructive,
                   requires=requires)

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


def outputs_root() -> Path:
    """Where run directories go: ``$FALKIT_OUTPUTS``, else the source tree's ``outputs/``."""
    env = os.environ.get("FALKIT_OUTPUTS")
    return Path(env).resolve() if env else Path(__file__).resolve().parents[1] / "outputs"


def new_run_dir(suffix: str) -> Path:
    """A fresh ``outputs/<UTC time>-<suffix>`` (``falkit run``'s naming)."""
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    base = outputs_root()
    run_dir = base / f"{stamp}-{suffix}"
    n = 1
    while True:
        try:
            run_dir.mkdir(parents=True)
            return run_dir
        except FileExistsError:
            n += 1
            run_dir = base / f"{stamp}-{suffix}-{n}"


def open(params: str | os.PathLike, target: str = "twin", apply: bool = False, notebook: str | None = None,
         **options: Any) -> Lab:  # noqa: A001 - the facade's verb
    """Validate the parameters, load the spec, connect to the target and show a header.

    In JupyterLab (:func:`falkit.widgets.interactive`) with ``apply=True`` the lab's run lock is taken
    here, before connecting (:class:`~falkit.errors.LockError` while ``falkit run`` or another session
    holds it); without ``apply`` it is taken when a gate's Apply is pressed. An interactive lab without
    ``$FALKIT_RUN_DIR`` gets a run directory ``outputs/<time>-<target>-lab`` for its result and journal.
    """
    from .spec import load_spec
    from .target import connect

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


def _lab_lock(lab: str, target: str, notebook: str) -> Any:
    from .lock import RunLock
    from .target import private_dir_for

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
        self._lock: Any = None
        self._run_dir = os.environ.get("FALKIT_RUN_DIR")
        self._mark = target.journal.mark()
        self._t0 = time.monotonic()
        self._runs: dict[str, StepRun] = {}
        self._queue: list[tuple[str, Callable[[], Any], Any]] = []
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
    def run_dir(self) -> Path | None:
        """``$FALKIT_RUN_DIR`` as it was when the lab opened (the run or session it belongs to)."""
        return Path(self._run_dir) if self._run_dir else None

    @property
    def result_path(self) -> Path | None:
        return self.run_dir / f"{self.notebook}.result.json" if self.run_dir else None

    def save(self) -> None:
        j = self.target.journal
        self.result["journal"] = {"mutating_calls": j.count(self._mark), "by_api": j.by_api(self._mark)}
        self.result["timings"]["total_s"] = round(time.monotonic() - self._t0, 3)
        path = self.result_path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.result, indent=2, default=str) + "\n")
            os.replace(tmp, path)
            if self.interactive:
                record_session(path.parent, self.result)

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
        self.result["status"] = "failed"
        self.result["error"] = f"{type(exc).__name__}: {exc}"
        self.save()

    def lock_for_apply(self) -> Any:
        """The run lock around one gate's apply: the lab's own when it was opened with ``apply=True``
        (held until :meth:`finish`/:meth:`close`), else taken for the apply and released after it.
        ``LockError`` while ``falkit run`` or another session holds it."""
        import contextlib

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
        opts = ", ".join(f"{k}={v}" for k, v in self.options.items() if known_options()[k][1] != v) or "defaults"
        apply = "Apply buttons (JupyterLab)" if self.interactive else ("yes" if self.apply else "no (dry run)")
        rows = [{"lab": self.spec.lab, "target": self.target.kind, "node": self.target.node,
                 "proxmox": version, "notebook": self.notebook, "apply": apply, "options": opts}]
        widgets.show(widgets.Table(rows, title=f"falkit {self.notebook}: {self.spec.lab} on the {self.target.kind}"))

    def dashboard(self) -> widgets.Dashboard:
        """Show the lab dashboard (refreshed while steps wait)."""
        self._dashboard = widgets.Dashboard(self.target)
        return self._dashboard.show()

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
            if isinstance(run, StepRun) and run.record.get("status") == "refused":
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
    def step(self, name: str) -> StepRun | DeferredStep:
        """Observe and plan step ``name``; shows the plan (and what the options refuse). In JupyterLab,
        while an earlier gate waits, the plan is made only after that step converged."""
        if self._blocked():
            pending = DeferredStep(self, name)
            self.defer(f"the plan of {name}", pending._run)
            return pending
        return self._step_now(name)

    def apply_plan(self, plan: Plan) -> StepRun:
        """Apply a plan made earlier (e.g. an archived one, :func:`falkit.diff.load_plans`) as
        ``lab.step(name).apply()`` applies a fresh one: shown, recorded, refused by the options,
        applied from its payloads alone (the lab is not observed first), then converged."""
        step = get_step(plan.step)
        self.result["steps"].setdefault(plan.step, {"planned": [], "applied": [], "noops": [], "notes": [],
                                                     "converged": None, "status": "planned", "timings": {}})
        run = StepRun(self, step, plan)
        run._record_plan(plan)
        self._runs[plan.step] = run
        widgets.show(plan)
        return run.apply()

    def plan_step(self, name: str) -> Plan:
        """A fresh plan of step ``name`` from the lab as it is now (nothing shown or recorded)."""
        step = get_step(name)
        observed = step.observe(self.target, self.spec, self.step_options)
        return step.plan(self.spec, observed, self.step_options)

    def _step_now(self, name: str) -> StepRun:
        step = get_step(name)
        rec = self.result["steps"].setdefault(name, {"planned": [], "applied": [], "noops": [], "notes": [],
                                                      "converged": None, "status": "planned", "timings": {}})
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
        rec["timings"]["plan_s"] = round(time.monotonic() - t0, 3)
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
            rec = self.result["steps"][name]
            rec["checks"] = "skipped"
            why = rec.get("status") if rec.get("status") == "refused" else f"apply={self.apply}"
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
        self.result["checks"] = [c for c in self.result["checks"] if c.get("step") != name]
        self.result["checks"] += [dict(c.row(), step=name) for c in checks]
        self.result["steps"].setdefault(name, {"timings": {}}).setdefault("timings", {})["checks_s"] = round(time.monotonic() - t0, 3)
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
        failed = [c for c in self.result["checks"] if not c["ok"]]
        errors = [f for f in self.result["findings"] if f["severity"] == "error"]
        pending = [n for n, r in self._runs.items() if r.pending and r.gate is not None]
        refused = [n for n, r in self.result["steps"].items() if r.get("status") == "refused"]
        self.result["finished"] = _now()
        self.result["status"] = "failed" if failed or errors or refused else ("pending" if pending else "ok")
        if self._dashboard is not None:
            self._dashboard.stop()
        self.save()
        self.close()
        steps = self.result["steps"]
        summary = [{"step": n, "status": r.get("status"), "planned": len(r.get("planned", [])),
                    "applied": len(r.get("applied", [])), "converged": r.get("converged")} for n, r in steps.items()]
        if summary:
            widgets.show(widgets.Table(summary, title=f"{self.notebook}: summary"))
        j = self.result["journal"]
        widgets.show(f"{self.notebook}: {self.result['status']} — {len(self.result['checks']) - len(failed)} check(s) ok, "
                     f"{len(failed)} failed, {len(errors)} error finding(s), {j['mutating_calls']} mutating API call(s)"
                     + (f"; refused: {', '.join(refused)}" if refused else "")
                     + (f"; waiting for Apply: {', '.join(pending)}" if pending else "")
                     + (f"; archived in {self.run_dir}" if self.run_dir and self.interactive else ""))
        if failed or errors:
            what = [f"{c['step']}: {c['check']} {c['subject']} (expected {c['expected']}, observed {c['observed']})"
                    for c in failed] + [f"finding {f['id']}: {f['message']}" for f in errors]
            raise StepError(self.notebook, f"{len(failed)} check(s) failed, {len(errors)} error finding(s):\n    "
                            + "\n    ".join(what), self.resume_hint())


class DeferredStep:
    """``lab.step(name)`` while an earlier gate waits: planned (and applied, if ``apply()`` was
    called) once that step converged. ``run`` is the :class:`StepRun` then."""

    def __init__(self, lab: Lab, name: str):
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
    """One step's plan in a notebook, and its application."""

    def __init__(self, lab: Lab, step: Any, plan: Plan):
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
        return f"{self.name}: {len(self.plan.changes)} change(s) — {self.record.get('status')}"

    def _repr_html_(self) -> str:
        # the plan itself was displayed when the step was planned; the cell value is a status line
        from html import escape

        return (f"<p><b>{escape(self.name)}</b>: {len(self.plan.changes)} change(s) — "
                f"{escape(str(self.record.get('status')))}</p>")

    def __repr__(self) -> str:
        return self._status_text()

    def _display_live(self) -> None:
        """With a gate (JupyterLab): the cell's value is a live status line that follows the gate
        (waiting, applying, applied); set as the instance's ``_ipython_display_`` then only."""
        from IPython.display import display

        if self._status_widget is None:
            import ipywidgets as w

            self._status_widget = w.HTML(self._repr_html_())
        display(self._status_widget)

    def _set_status(self, status: str) -> None:
        self.record["status"] = status
        if self._status_widget is not None:
            self._status_widget.value = self._repr_html_()
        self.lab.save()

    def refusal(self) -> str:
        """Why the options refuse this plan ('' when they allow it)."""
        return refuse(self.plan, self.lab.step_options).text()

    @property
    def record(self) -> dict[str, Any]:
        return self.lab.result["steps"][self.name]

    def _record_plan(self, plan: Plan) -> None:
        rec = self.record
        rec["planned"] = plan.rows()
        rec["plan"] = plan.to_json(redact=True)  # with the payloads, secrets redacted: `falkit plan show`
        rec["noops"] = [{"kind": n.kind, "name": n.name, "reason": n.reason} for n in plan.noops]
        rec["notes"] = list(plan.notes)
        if plan.empty:
            rec["converged"] = True
            rec["status"] = "noop"
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
            self.record["status"] = "refused"
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
            rec["status"] = "failed"
            lab._fail(exc)
            self._set_status("failed")
            raise exc from exc.__cause__
        except Exception as exc:
            rec["status"] = "failed"
            err = StepError(self.name, f"applying the plan failed: {type(exc).__name__}: {exc}", lab.resume_hint())
            lab._fail(err)
            self._set_status("failed")
            raise err from exc
        rec["applied"] = self.plan.rows()
        rec["timings"]["apply_s"] = round(time.monotonic() - t0, 3)
        lab.save()
        self._converge(progress)
        return True

    def _converged_now(self, t0: float | None) -> None:
        rec = self.record
        self.converged = True
        rec["converged"] = True
        if t0 is not None:
            rec["timings"]["converge_s"] = round(time.monotonic() - t0, 3)
        if rec.get("status") in ("failed", "refused") and self.lab.result.get("status") == "failed":
            self.lab.result.update(status="running", error=None)  # retried from the gate, and it worked
        self._set_status("applied" if rec.get("applied") else "noop")
        for fn in self.on_converged:
            fn()
        if self.gate is not None:
            self.lab._gate_done(self)

    def _converge(self, progress: widgets.Progress) -> None:
        lab, rec = self.lab, self.record
        timeout = lab.step_options.wait_timeout_s
        t0 = time.monotonic()
        delay = POLL_S[0]
        next_log = 1.0
        while True:
            fresh = lab.plan_step(self.name)
            if lab._dashboard is not None:
                lab._dashboard.refresh()
            if fresh.empty:
                break
            waited = time.monotonic() - t0
            if waited > timeout:
                rec["converged"] = False
                remaining = "; ".join(c.describe() for c in fresh.changes[:10])
                err = StepError(self.name, f"not converged after {timeout:g} s: {len(fresh.changes)} change(s) remain: "
                                f"{remaining}", lab.resume_hint())
                lab._fail(err)
                self._set_status("not converged")
                raise err
            if waited >= next_log:
                progress.log(f"{self.name}: waiting ({waited:.0f} s of {timeout:g} s) for " + waiting_for_text(fresh))
                next_log = waited + 10.0
            time.sleep(delay)
            delay = min(delay * 2, POLL_S[1])
        widgets.show(f"{self.name}: applied {len(self.plan.changes)} change(s); converged (a fresh plan is empty)")
        self._converged_now(t0)


def plan_key(plan: Plan) -> list[tuple]:
    """What makes two plans the same plan for the same lab: each change's operation, resource, field,
    observed (old) value and flags. The desired (new) value is left out: it comes from the spec, and
    some are rendered from material generated per plan until it exists (Talos machine configs before
    ``talos-secrets.yaml`` is written hash differently each time)."""
    return [(c.op, c.kind, c.name, c.field, str(c.old), c.disruptive, c.destructive) for c in plan.changes]


def waiting_for_text(plan: Plan, limit: int = 4) -> str:
    """What a step still waits for, named: ``~ vm-config talos-cp-01 net0: … -> …; > vm talos-cp-01 reboot``."""
    items = [c.describe() for c in plan.changes]
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


# ---------------------------------------------------------------------------------------------- sessions


def record_session(run_dir: Path, result: dict[str, Any]) -> None:
    """Enter a notebook's result in ``run_dir/run.json`` in ``falkit run``'s format (runner.py: one
    entry per notebook with status, duration and the ``_summ`` counts; totals from journal.jsonl),
    so ``falkit runs`` lists a JupyterLab session like a headless run. Safe for concurrent kernels."""
    import fcntl

    from .runner import _summ, _totals

    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / ".run.json.lock").open("w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        path = run_dir / "run.json"
        try:
            run = json.loads(path.read_text())
        except (OSError, ValueError):
            run = {"id": run_dir.name, "lab": result.get("lab"), "target": result.get("target"),
                   "params": result.get("params"), "apply": True, "options": {}, "started": result.get("started"),
                   "finished": None, "status": "running", "notebooks": [], "remaining": [], "resumed": [],
                   "session": "jupyterlab"}
        status = {"ok": "ok", "failed": "failed"}.get(result.get("status"), "running")
        entry = {"notebook": result["notebook"], "status": status, "started": result.get("started"),
                 "duration_s": (result.get("timings") or {}).get("total_s", 0), **_summ(result)}
        if result.get("error"):
            entry["error"] = {"ename": "", "evalue": result["error"]}
        run["notebooks"] = [n for n in run.get("notebooks", []) if n.get("notebook") != entry["notebook"]] + [entry]
        states = [n["status"] for n in run["notebooks"]]
        run["status"] = "failed" if "failed" in states else ("running" if "running" in states else "ok")
        run["finished"] = _now() if run["status"] != "running" else None
        failed = next((n for n in run["notebooks"] if n["status"] == "failed"), None)
        if failed:
            run["failed"] = {"notebook": failed["notebook"], **(failed.get("error") or {})}
        else:
            run.pop("failed", None)
        run["totals"] = _totals(run, run_dir)
        tmp = run_dir / f".run.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(run, indent=2, default=str) + "\n")
        os.replace(tmp, path)
