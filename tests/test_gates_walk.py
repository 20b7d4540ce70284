"""The plan at every gate is the plan ``falkit run`` applies (issue 12 items 2 and 3), on the twin,
for every step of every notebook, in runbook order from the "before" state.

Each notebook's step cells (``lab.step(...)``, ``lab.checks(...)``, ``lab.finish()`` as in
``notebooks/src``) run as JupyterLab's Run All runs them, on a lab opened in JupyterLab mode with the
parameters ``falkit run`` gives the twin (``apply=True``, ``allow_disruptive`` on; gates still wait
for the click; 70-validation's test objects need ``apply``; 80-rollback with ``rollback=True``, as
``falkit run --set rollback=true`` — without it, its first gate is refused and a click applies
nothing, as headless it is a dry run). Then, gate by gate, as an operator
clicks:

- Run All stops at the first gate: the later steps of the notebook are not planned yet (50-mayastor
  has three gates; volumes and benchmarks wait for mayastor);
- every step planned so far is compared (:func:`falkit.runbook.plan_key`: each change's operation,
  resource, field, observed value and flags) with the plan a headless lab (``falkit run``'s papermill
  kernels) makes for the same lab state and options, and with the plan a JupyterLab lab with the
  notebook's *default* parameters shows at its gate — the same changes (the options refuse, they do
  not change the plan: 20-vms has its two reboots either way);
- Apply (and Confirm) is clicked; the step converges and the next step is planned from the lab as
  it is then.

At the end every notebook's result says ok (70-validation's checks included).
"""

from __future__ import annotations

import ast
import re

from gates_support import click, headless, interactive, kernel
from test_runbook_support import ROOT

from falkit.runbook import plan_key

pytest_plugins = ("gates_support",)  # the module's twin (gate_twin)

RUN_OPTIONS = {"allow_disruptive": True}  # what `falkit run` passes on the twin (falkit.runbook.runner.prepare)
# 80-rollback applies only with its own option on (`falkit run --only 80 --set rollback=true`)
NB_OPTIONS = {"80-rollback": {"rollback": True}}


def run_options(nb: str) -> dict:
    return {**RUN_OPTIONS, **NB_OPTIONS.get(nb, {})}
CELL = re.compile(r"^(?:\w+ = )?lab\.(?:step|checks|finish)\(.*$")


def notebook_cells(src):
    """``(default options, the lab.step/checks/finish lines in order)`` of a notebook source."""
    text = src.read_text()
    options = ast.literal_eval(re.search(r"^options = (\{.*\})$", text, re.M).group(1))
    return options, [line for line in text.splitlines() if CELL.match(line)]


def compare_new(lab, nb, defaults, seen) -> list[str]:
    """Compare every step planned since the last call with the headless plan and the default-options
    gate plan for the lab as it is now (only gate clicks change the lab)."""
    out = []
    for name, run in lab._runs.items():
        if name in seen:
            continue
        seen.add(name)
        want = plan_key(headless(nb, **run_options(nb)).step(name).plan)
        assert plan_key(run.plan) == want, f"{nb}/{name}: the gate's plan is not falkit run's plan"
        nb_defaults = interactive(nb, **defaults)
        shown = nb_defaults.step(name).apply() if not run.plan.empty else nb_defaults.step(name)
        assert plan_key(shown.plan) == want, f"{nb}/{name}: the plan depends on the notebook's options"
        out.append(f"{nb}/{name}: {len(want)} change(s)")
    return out


def test_every_gate_shows_falkit_runs_plan(gate_twin):
    compared = []
    for src in sorted((ROOT / "notebooks" / "src").glob("[0-9][0-9]-*.py")):
        nb = src.stem
        defaults, cells = notebook_cells(src)
        if not cells:
            continue
        steps = [m.group(1) for line in cells for m in [re.search(r'lab\.step\("([\w-]+)"\)', line)] if m]
        if nb in NB_OPTIONS:  # without its own option the gate refuses, and a click applies nothing
            plain = interactive(nb, apply=True, **RUN_OPTIONS)
            with kernel(plain):
                first = plain.step(steps[0]).apply()
            assert first.gate is not None and first.gate.state == "refused", f"{nb}: {first.gate and first.gate.state}"
            mark = plain.target.journal.mark()
            with kernel(plain):
                first.gate._on_apply()
                first.gate._on_confirm()
            assert plain.target.journal.count(mark) == 0 and not first.converged
            assert "rollback=True" in first.gate.status.value
            plain.close()
        lab = interactive(nb, apply=True, **run_options(nb))  # the parameters falkit run gives (the run lock taken)
        with kernel(lab):
            for line in cells:  # Run All
                exec(line, {"lab": lab})
        seen: set[str] = set()
        while True:
            compared += compare_new(lab, nb, defaults, seen)
            run = next((r for r in lab._runs.values() if r.gate is not None and not r.converged), None)  # the gate shown
            if run is None:
                break
            later = steps[steps.index(run.name) + 1:]
            assert not any(s in lab.result["steps"] for s in later), f"{nb}: {later} planned before {run.name} applied"
            assert run.gate.state == "waiting", f"{nb}/{run.name}: {run.gate.state}: {run.gate.status.value}"
            click(run)
            assert run.converged and run.gate.done
        assert set(lab._runs) == set(steps), f"{nb}: not every step was planned: {sorted(lab._runs)}"
        assert lab.result["status"] == "ok", f"{nb}: {lab.result['status']}: {lab.result['error']} {lab.result['checks']}"
    print("\n".join(compared))
    assert any(c.startswith("20-vms/vms:") for c in compared) and any(c.startswith("50-mayastor/benchmarks") for c in compared)
