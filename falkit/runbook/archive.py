"""The result archive: what a notebook records (a typed value) and how a run directory sums it up.

- :class:`NotebookResult` (with a :class:`StepRecord` per step) is what a notebook's lab records:
  planned/applied changes, noops, notes, status and timings per step, findings, checks, the
  number of mutating API calls (journal). :meth:`NotebookResult.save` writes it as
  ``<run dir>/<notebook>.result.json`` (after every phase, so a failed notebook leaves its partial
  result); :meth:`NotebookResult.to_json` is that file's content, :meth:`NotebookResult.from_json`
  reads one back.
- :func:`summarize` (one notebook's counts in ``run.json``) and :func:`totals` (the run's) are
  ``falkit run``'s format; :func:`record_session` enters a JupyterLab notebook's result in a run
  directory's ``run.json`` in that format, so ``falkit runs`` lists the session like a headless run.
- :func:`new_run_dir`: ``outputs/<UTC time>-<suffix>`` (``$FALKIT_OUTPUTS``, else the source tree's).
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..clients.journal import read_journal


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


@dataclass
class StepRecord:
    """One step of a notebook: what was planned and applied, and how it ended. ``status`` is None for
    a step whose checks ran without a plan; ``checks`` is ``"skipped"`` when its plan was not applied."""

    planned: list[dict[str, Any]] = field(default_factory=list)
    applied: list[dict[str, Any]] = field(default_factory=list)
    noops: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    converged: bool | None = None
    status: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    checks: str | None = None
    plan: dict[str, Any] | None = None  # the plan with its payloads, secrets redacted (`falkit show-plan`)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"planned": self.planned, "applied": self.applied, "noops": self.noops,
                               "notes": self.notes, "converged": self.converged, "status": self.status,
                               "timings": self.timings}
        if self.checks is not None:
            out["checks"] = self.checks
        if self.plan is not None:
            out["plan"] = self.plan
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepRecord:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class NotebookResult:
    """A notebook's record (``<notebook>.result.json``); see the module docstring."""

    notebook: str
    lab: str
    target: str
    apply: bool
    params: str | None
    options: dict[str, Any]
    status: str = "running"  # running | ok | pending | failed
    started: str = field(default_factory=now)
    finished: str | None = None
    steps: dict[str, StepRecord] = field(default_factory=dict)
    findings: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    journal: dict[str, Any] = field(default_factory=lambda: {"mutating_calls": 0, "by_api": {}})
    error: str | None = None

    def step(self, name: str) -> StepRecord:
        """The record of step ``name`` (made when missing)."""
        return self.steps.setdefault(name, StepRecord())

    def fail(self, exc: BaseException) -> None:
        self.status = "failed"
        self.error = f"{type(exc).__name__}: {exc}"

    def to_json(self) -> dict[str, Any]:
        return {"notebook": self.notebook, "lab": self.lab, "target": self.target, "apply": self.apply,
                "params": self.params, "options": self.options, "status": self.status, "started": self.started,
                "finished": self.finished, "steps": {n: s.to_json() for n, s in self.steps.items()},
                "findings": self.findings, "checks": self.checks, "timings": self.timings,
                "journal": self.journal, "error": self.error}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NotebookResult:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        fields["steps"] = {n: StepRecord.from_json(s) for n, s in (data.get("steps") or {}).items()}
        return cls(**fields)

    def save(self, path: Path) -> None:
        """Write ``path`` atomically (a reader never sees half a file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2, default=str) + "\n")
        os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------- run.json


def summarize(result: dict | None) -> dict[str, Any]:
    """One notebook's entry in ``run.json`` from its ``result.json``: counts of planned/applied changes,
    findings by severity, checks ok/failed, mutating calls (and the changes and failed checks)."""
    if not result:
        return {"planned": 0, "applied": 0, "findings": {}, "checks": {"ok": 0, "failed": 0}, "mutating_calls": 0}
    steps = result.get("steps") or {}
    sev: dict[str, int] = {}
    for f in result.get("findings") or []:
        sev[f["severity"]] = sev.get(f["severity"], 0) + 1
    checks = result.get("checks") or []
    return {"planned": sum(len(s.get("planned") or []) for s in steps.values()),
            "applied": sum(len(s.get("applied") or []) for s in steps.values()),
            "planned_changes": {n: s.get("planned") for n, s in steps.items()},
            "applied_changes": {n: s.get("applied") for n, s in steps.items()},
            "findings": sev, "checks": {"ok": sum(1 for c in checks if c["ok"]), "failed": sum(1 for c in checks if not c["ok"])},
            "failed_checks": [c for c in checks if not c["ok"]],
            "mutating_calls": (result.get("journal") or {}).get("mutating_calls", 0)}


def partly_applied(nbs: list[dict], run_dir: Path, journal: list[dict]) -> list[dict[str, Any]]:
    """The failed notebooks that changed the lab without a complete step to show for it: the steps
    cut off while applying (result ``status`` failed/applying, nothing recorded as applied) and
    the mutating API calls the notebook made (journal.jsonl entries since it started). A step's
    changes count as applied only once its apply finished; these are the rest."""
    out = []
    for n in nbs:
        if n.get("status") != "failed":
            continue
        calls = [j for j in journal if str(j.get("t", "")) >= str(n.get("started", ""))]
        try:
            result = json.loads((run_dir / f"{n['notebook']}.result.json").read_text())
        except (OSError, ValueError):
            result = {}
        steps = [name for name, st in (result.get("steps") or {}).items()
                 if st.get("status") in ("failed", "applying") and st.get("planned") and not st.get("applied")]
        if calls and (steps or not n.get("applied")):
            out.append({"notebook": n["notebook"], "steps": steps, "mutating_calls": len(calls)})
    return out


def totals(run: dict, run_dir: Path) -> dict[str, Any]:
    """``run.json``'s totals over its notebooks (mutating calls from the run's journal.jsonl)."""
    nbs = run["notebooks"]
    journal = read_journal(run_dir / "journal.jsonl")
    return {"notebooks_ok": sum(1 for n in nbs if n["status"] == "ok"),
            "notebooks_failed": sum(1 for n in nbs if n["status"] == "failed"),
            "planned_changes": sum(n.get("planned", 0) for n in nbs),
            "applied_changes": sum(n.get("applied", 0) for n in nbs),
            "partly_applied": partly_applied(nbs, run_dir, journal),
            "checks_ok": sum(n.get("checks", {}).get("ok", 0) for n in nbs),
            "checks_failed": sum(n.get("checks", {}).get("failed", 0) for n in nbs),
            "mutating_calls": len(journal),
            "duration_s": round(sum(n.get("duration_s", 0) for n in nbs), 3)}


def record_session(run_dir: Path, result: dict[str, Any]) -> None:
    """Enter a notebook's result in ``run_dir/run.json`` in ``falkit run``'s format (one entry per
    notebook with status, duration and the :func:`summarize` counts; :func:`totals` from
    journal.jsonl), so ``falkit runs`` lists a JupyterLab session like a headless run. Safe for
    concurrent kernels."""
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
                 "duration_s": (result.get("timings") or {}).get("total_s", 0), **summarize(result)}
        if result.get("error"):
            entry["error"] = {"ename": "", "evalue": result["error"]}
        run["notebooks"] = [n for n in run.get("notebooks", []) if n.get("notebook") != entry["notebook"]] + [entry]
        states = [n["status"] for n in run["notebooks"]]
        run["status"] = "failed" if "failed" in states else ("running" if "running" in states else "ok")
        run["finished"] = now() if run["status"] != "running" else None
        failed = next((n for n in run["notebooks"] if n["status"] == "failed"), None)
        if failed:
            run["failed"] = {"notebook": failed["notebook"], **(failed.get("error") or {})}
        else:
            run.pop("failed", None)
        run["totals"] = totals(run, run_dir)
        tmp = run_dir / f".run.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(run, indent=2, default=str) + "\n")
        os.replace(tmp, path)


def outputs_root() -> Path:
    """Where run directories go: ``$FALKIT_OUTPUTS``, else the source tree's ``outputs/``."""
    env = os.environ.get("FALKIT_OUTPUTS")
    return Path(env).resolve() if env else Path(__file__).resolve().parents[2] / "outputs"


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
