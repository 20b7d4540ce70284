"""``falkit run``'s speed-ups keep each notebook's run as it was (issue 17), through the CLI.

Covers: the next notebook's kernel is started ahead and has falkit's stack imported
(``falkit.runbook`` and the step modules ``runbook.open`` loads are in ``sys.modules`` before the notebook imports them) while every notebook still
runs in its own kernel (distinct kernel pids), with no name left in the notebook's namespace and the
execution counter untouched (the probe cell is ``In [3]`` with and without the kernel started ahead); ``FALKIT_PREWARM=0`` turns it off (nothing preloaded); the
HTML reports, exported in the background, are all in the archive and in run.json when the run ends;
the run's last line says the twin is still running and how to stop it (``falkit twin down``).
Import costs (issue 17): in every notebook kernel, with falkit's stack imported, the RFC 3987
grammar of ``rfc3987_syntax`` is not compiled (:mod:`falkit`'s deferred import) while
``jsonschema`` still checks the ``iri`` formats with it; the ``falkit run`` process itself (a
runner in its own python, through the CLI) imports none of the step modules, the kubernetes client
or pandas (the options are checked in a forked child), and still refuses an unknown option before
anything runs. The archive, scrubbed incrementally, is still scrubbed of a secret that became
known after a report was archived (the report unchanged since).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import nbformat
from test_runbook_support import FAL

from falkit.cli import main
from falkit.runbook.nbbuild import build_notebook, render

pytest_plugins = ("test_runbook_support",)  # the session twin and state_env fixtures

PROBE = '''# %% tags=["parameters"]
params = "../parameters/fal.yaml"
target = "twin"
apply = False
options = {}

# %%
import os, sys
print("probe", os.getpid(), "falkit.runbook" in sys.modules and "falkit.steps.vms" in sys.modules, "falkit" in globals())
import jsonschema
print("grammar", "rfc3987_syntax.syntax_helpers" in sys.modules, jsonschema.FormatChecker().conforms("a b", "iri"),
      jsonschema.FormatChecker().conforms("https://fal.home.arpa/ä", "iri"))
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
        # with falkit imported, the grammar was not compiled by the imports (without falkit, as
        # upstream does, it was); the iri checks answer as upstream's either way
        compiled = re.search(r"grammar (\w+) False True", text)
        assert compiled and compiled.group(1) == str(preloaded != "True"), text
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


RUNNER = """
import sys
from falkit.cli import main
rc = main(sys.argv[1:])
heavy = sorted(m for m in ("falkit.steps.base", "falkit.runbook.facade", "kubernetes", "pandas", "numpy",
                           "rfc3987_syntax.syntax_helpers") if m in sys.modules)
print("runner-imports", rc, ",".join(heavy) or "none")
"""


def test_the_runner_process_imports_no_step_module(state_env, tmp_path):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    (nbs / "00-a.ipynb").write_text(render(build_notebook(PROBE, "00-a")))
    env = dict(os.environ, FALKIT_NOTEBOOKS_DIR=str(nbs))
    argv = ["run", "--params", str(FAL), "--outputs", str(tmp_path / "outputs")]
    ok = subprocess.run([sys.executable, "-c", RUNNER, *argv], env=env, capture_output=True, text=True, timeout=300)
    assert "runner-imports 0 none" in ok.stdout, ok.stdout + ok.stderr
    assert "probe" in ok.stdout  # the notebook did run (its printed lines are echoed)
    bad = subprocess.run([sys.executable, "-c", RUNNER, *argv, "--set", "t_nonsense=1"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert "runner-imports 2 none" in bad.stdout, bad.stdout + bad.stderr
    assert "unknown option 't_nonsense'" in bad.stderr and "nothing was run" in bad.stderr
    assert len([p for p in (tmp_path / "outputs").iterdir() if p.is_dir()]) == 1  # the refused run archived nothing


SECRET = "falkit-test-secret-4f1c9a7e2b"  # noqa: S105 - a made-up value the test plants
PRINTS = PROBE.replace('import os, sys\n', f'import os, sys\nprint("value", "{SECRET}")\n', 1)
PLANTS = PROBE.replace('import os, sys\n', 'import os, sys\n'
                       'from pathlib import Path\n'
                       'p = Path(os.environ["FALKIT_STATE_DIR"]) / "twin" / "private" / "the-fal" / "speed-test-token"\n'
                       f'p.write_text("{SECRET}")\n', 1)


def test_a_secret_known_later_is_scrubbed_from_earlier_reports(state_env, tmp_path, monkeypatch):
    """The archive is scrubbed incrementally: a report archived before a secret existed (00 prints
    the value, 10 then stores it in the lab's private state, as 30-talos stores the cluster's) is
    scrubbed again with the new secret, though the report itself did not change."""
    base, _conn = state_env
    planted = base / "twin" / "private" / "the-fal" / "speed-test-token"
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    (nbs / "00-a.ipynb").write_text(render(build_notebook(PRINTS, "00-a")))
    (nbs / "10-b.ipynb").write_text(render(build_notebook(PLANTS, "10-b")))
    monkeypatch.setenv("FALKIT_NOTEBOOKS_DIR", str(nbs))
    outputs = tmp_path / "outputs"
    try:
        assert main(["run", "--params", str(FAL), "--outputs", str(outputs)]) == 0
    finally:
        planted.unlink(missing_ok=True)
    run_dir = next(p for p in outputs.iterdir() if p.is_dir())
    for name in ("00-a.ipynb", "00-a.html"):
        text = (run_dir / name).read_text()
        assert SECRET not in text and "***REDACTED***" in text, name
