"""``falkit run``'s speed-ups keep each notebook's run as it was (issue 17), through the CLI.

Covers: the next notebook's kernel is started ahead and has falkit's stack imported
(``falkit.runbook`` is in ``sys.modules`` before the notebook imports it) while every notebook still
runs in its own kernel (distinct kernel pids), with no name left in the notebook's namespace and the
execution counter untouched (the probe cell is ``In [3]`` with and without the kernel started ahead); ``FALKIT_PREWARM=0`` turns it off (nothing preloaded); the
HTML reports, exported in the background, are all in the archive and in run.json when the run ends;
the run's last line says the twin is still running and how to stop it (``falkit twin down``).
"""

from __future__ import annotations

import json
import re

import nbformat
from test_runbook_support import FAL

from falkit.cli import main
from falkit.nbbuild import build_notebook, render

pytest_plugins = ("test_runbook_support",)  # the session twin and state_env fixtures

PROBE = '''# %% tags=["parameters"]
params = "../parameters/fal.yaml"
target = "twin"
apply = False
options = {}

# %%
import os, sys
print("probe", os.getpid(), "falkit.runbook" in sys.modules, "falkit" in globals())
'''

#: The probe cell's execution count as papermill numbers it: parameters (1), injected parameters (2).
PROBE_IN = 3


def _probe_run(tmp_path, monkeypatch, capsys):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    names = ["00-a", "10-b", "20-c"]
    for name in names:
        (nbs / f"{name}.ipynb").write_text(render(build_notebook(PROBE, name)))
    monkeypatch.setenv("FALKIT_NOTEBOOKS_DIR", str(nbs))
    outputs = tmp_path / "outputs"
    assert main(["run", "--params", str(FAL), "--outputs", str(outputs)]) == 0
    run_dir = next(p for p in outputs.iterdir() if p.is_dir())
    probes = []
    for name in names:
        nb = nbformat.read(run_dir / f"{name}.ipynb", as_version=4)
        cell = next(c for c in nb.cells if c.cell_type == "code" and "probe" in c.source)
        text = "".join(o.get("text", "") for o in cell.outputs)
        pid, preloaded, name_bound = re.search(r"probe (\d+) (\w+) (\w+)", text).groups()
        probes.append((int(pid), preloaded == "True", name_bound == "True", cell.execution_count))
    return run_dir, names, probes, capsys.readouterr().out


def test_kernels_started_ahead_one_per_notebook(state_env, tmp_path, monkeypatch, capsys):
    run_dir, names, probes, out = _probe_run(tmp_path, monkeypatch, capsys)
    assert len({p[0] for p in probes}) == len(names)  # each notebook in its own kernel
    assert all(p[1] for p in probes)  # falkit's stack was imported before the notebook ran
    assert not any(p[2] for p in probes)  # ... without binding a name in its namespace
    assert {p[3] for p in probes} == {PROBE_IN}  # the start-up import took no execution count
    run = json.loads((run_dir / "run.json").read_text())
    assert [n.get("report") for n in run["notebooks"]] == [f"{n}.html" for n in names]
    assert all((run_dir / f"{n}.html").read_text().startswith("<!DOCTYPE html>") for n in names)
    assert not list(run_dir.glob("*.part"))
    assert out.rstrip().splitlines()[-1].endswith("stop it with `falkit twin down`")


def test_prewarm_off(state_env, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FALKIT_PREWARM", "0")
    _run_dir, names, probes, _out = _probe_run(tmp_path, monkeypatch, capsys)
    assert len({p[0] for p in probes}) == len(names)
    assert not any(p[1] for p in probes)  # papermill's own fresh kernels: nothing preloaded
    assert {p[3] for p in probes} == {PROBE_IN}
