"""``falkit run`` / ``falkit runs`` end to end on the twin with papermill (real kernels).

Covers: a run of 00-preflight plus a test notebook (step ``t-desc``) archives the executed
notebooks, their HTML (plotly.js embedded once, no external scripts), result files, run.json
(statuses, changes, checks, totals) and journal.jsonl; the lab really changed; a second run is a
no-op (zero mutating calls); a failing notebook stops the run with notebook + cell + error, exit 1,
run.json ``failed`` with a resume command, and ``--resume`` continues in the same archive from the
failed notebook only; parameters are validated before anything runs (exit 2, nothing archived);
``--target live`` needs --apply and the token; the lock refuses a concurrent run and takes over a
stale one; ``falkit runs`` lists runs; the HTML export renders its plotly chart offline in Chromium;
the archive's ``index.html`` (time, falkit version and commit, lab, target, each notebook's status
and counts, a link to its report), reports titled ``<notebook> · <lab> · <time>`` with a banner
back to the index, and what the executed notebook shows: the plan with its "to add/to change/to
destroy" line, left-aligned, and the checks table once (no ``[Check(check=…)]`` echo). The runner
reads the parameters file once per run (issue 18: it loaded the spec 3 times), seen by the file
opens Python's audit hook reports, on a whole run and on a run the lock refuses.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_runbook_support import FAL, ROOT, TESTS, value_of

from falkit.cli import main
from falkit.clients.target import connect, private_dir_for
from falkit.runbook.lock import RunLock
from falkit.runbook.nbbuild import build_notebook, render

IMPORT_TEST_STEP = f"import sys\nsys.path.insert(0, {str(TESTS)!r})\nimport test_runbook_support\n"
TEST_NB = '''# %% tags=["parameters"]
params = "../parameters/fal.yaml"
target = "twin"
apply = False
options = {{}}

# %%
import sys
sys.path.insert(0, {tests!r})
import test_runbook_support  # registers the step t-desc
from falkit import runbook

lab = runbook.open(params, target=target, apply=apply, notebook="{name}", **options)

# %%
s = lab.step("t-desc")
s.apply()

# %%
lab.checks("t-desc")

# %%
lab.finish()
'''

pytest_plugins = ("test_runbook_support",)  # the session twin and state_env fixtures

_OPENS: list[list[str]] = []  # the open() calls being recorded (sys.addaudithook cannot be removed)


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _OPENS and isinstance(args[0], (str, os.PathLike)):
        for seen in _OPENS:
            seen.append(os.path.realpath(os.fspath(args[0])))


sys.addaudithook(_audit)


@contextlib.contextmanager
def reads_of(path: Path):
    """The times ``path`` is opened in this process inside the block (papermill's kernels are others)."""
    seen: list[str] = []
    _OPENS.append(seen)
    hits: list[str] = []
    try:
        yield hits
    finally:
        _OPENS.remove(seen)
        hits.extend(p for p in seen if p == os.path.realpath(path))


def make_notebooks(directory: Path, extra: dict[str, str] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    # the real 00-preflight, also importing the test step (its options are part of every notebook's)
    pre = (ROOT / "notebooks" / "src" / "00-preflight.py").read_text()
    pre = pre.replace("from falkit import runbook", IMPORT_TEST_STEP + "from falkit import runbook", 1)
    sources = {"00-preflight": pre, "10-tdesc": TEST_NB.format(tests=str(TESTS), name="10-tdesc")}
    sources.update(extra or {})
    for name, text in sources.items():
        (directory / f"{name}.ipynb").write_text(render(build_notebook(text, name)))
    return directory


@pytest.fixture
def runenv(state_env, tmp_path, monkeypatch):
    base, conn = state_env
    nbs = make_notebooks(tmp_path / "notebooks")
    monkeypatch.setenv("FALKIT_NOTEBOOKS_DIR", str(nbs))
    outputs = tmp_path / "outputs"
    return base, conn, nbs, outputs


def _run(outputs, *extra) -> int:
    return main(["run", "--params", str(FAL), "--outputs", str(outputs), *extra])


def _only_run(outputs) -> Path:
    runs = sorted(p for p in outputs.iterdir() if p.is_dir())
    assert len(runs) == 1, runs
    return runs[0]


def test_run_archives_and_second_run_is_noop(runenv, capfd):
    base, conn, nbs, outputs = runenv
    with reads_of(FAL) as reads:
        assert _run(outputs, "--set", "t_value=7") == 0
    assert len(reads) == 1, reads  # prepare's load; the lock, the archive and the scrub reuse it
    run_dir = _only_run(outputs)
    assert run_dir.name.endswith("-twin")
    names = sorted(p.name for p in run_dir.iterdir())
    assert names == ["00-preflight.html", "00-preflight.ipynb", "00-preflight.result.json", "10-tdesc.html",
                     "10-tdesc.ipynb", "10-tdesc.result.json", "index.html", "journal.jsonl", "run.json"]
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "ok" and run["target"] == "twin" and run["apply"] is True
    assert run["options"]["allow_disruptive"] is True and run["options"]["t_value"] == 7
    by = {n["notebook"]: n for n in run["notebooks"]}
    assert by["00-preflight"]["status"] == "ok" and by["00-preflight"]["findings"]["warning"] > 0
    assert by["10-tdesc"]["applied"] == 1 and by["10-tdesc"]["checks"] == {"ok": 1, "failed": 0}
    assert by["10-tdesc"]["applied_changes"]["t-desc"][0]["new"] == "7"
    assert run["totals"]["notebooks_ok"] == 2 and run["totals"]["mutating_calls"] == 1
    journal = [json.loads(x) for x in (run_dir / "journal.jsonl").read_text().splitlines()]
    assert [(e["api"], e["method"], e["path"]) for e in journal] == [("pve", "POST", "/nodes/fal/qemu/200/config")]
    t = connect(FAL, "twin")
    assert value_of(t, 200) == 7  # the lab changed
    nb = json.loads((run_dir / "10-tdesc.ipynb").read_text())
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert f"params = \"{FAL}\"" in "".join(injected[0]["source"])
    html = (run_dir / "00-preflight.html").read_text()
    assert html.count("plotly.js v") == 1 and "Plotly.newPlot('falkit-plotly-1'" in html
    assert 'src="http' not in html and "src='http" not in html
    out, err = capfd.readouterr()
    assert "without encryption" not in out + err  # kernels on IPC sockets, not plain-text TCP
    assert "allow_disruptive is on" in out and "MAC prefix" in out
    assert "[10-tdesc] description of 200: 100% done" in out  # kernel progress echoed

    assert _run(outputs, "--set", "t_value=7") == 0
    second = sorted(p for p in outputs.iterdir() if p.is_dir())[-1]
    run2 = json.loads((second / "run.json").read_text())
    assert run2["status"] == "ok" and run2["totals"]["mutating_calls"] == 0 and run2["totals"]["applied_changes"] == 0
    assert not (second / "journal.jsonl").exists()

    assert main(["runs", "--outputs", str(outputs)]) == 0
    listing = capfd.readouterr().out
    assert run_dir.name in listing and second.name in listing and "ok" in listing


def test_failure_stops_and_resume_continues(runenv, capsys):
    base, conn, nbs, outputs = runenv
    assert _run(outputs, "--set", "t_value=8", "--set", "t_fail_apply=true") == 1
    err = capsys.readouterr().err
    run_dir = _only_run(outputs)
    assert "10-tdesc failed at cell" in err and "In [4]: s = lab.step(\"t-desc\")" in err and "planted failure" in err
    assert f"falkit run --resume {run_dir}" in err  # in the StepError or the runner's hint
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "failed" and run["failed"]["notebook"] == "10-tdesc"
    assert run["failed"]["ename"] == "StepError" and isinstance(run["failed"]["cell"], int)
    assert run["resume"] == f"falkit run --resume {run_dir}" and run["remaining"] == ["10-tdesc.ipynb"]
    assert (run_dir / "10-tdesc.ipynb").exists() and (run_dir / "10-tdesc.html").exists()  # archived what ran
    assert [n["status"] for n in run["notebooks"]] == ["ok", "failed"]
    preflight_mtime = (run_dir / "00-preflight.ipynb").stat().st_mtime
    assert value_of(connect(FAL, "twin"), 200) != 8

    assert main(["run", "--outputs", str(outputs), "--resume", run_dir.name, "--set", "t_fail_apply=false"]) == 0
    assert _only_run(outputs) == run_dir  # same archive
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "ok" and len(run["resumed"]) == 1 and "failed" not in run
    assert [(n["notebook"], n["status"]) for n in run["notebooks"]] == [("00-preflight", "ok"), ("10-tdesc", "ok")]
    assert (run_dir / "00-preflight.ipynb").stat().st_mtime == preflight_mtime  # not re-run
    assert value_of(connect(FAL, "twin"), 200) == 8


def test_parameters_validated_before_anything_runs(runenv, capsys):
    base, conn, nbs, outputs = runenv
    assert _run(outputs, "--set", "allow_disruptiv=true") == 2
    assert "unknown option 'allow_disruptiv'" in capsys.readouterr().err
    assert _run(outputs, "--set", "wait_timeout_s=soon") == 2
    assert _run(outputs, "--set", "no-equals-sign") == 2
    assert not outputs.exists()


def test_live_needs_apply_and_token(runenv, tmp_path, capsys, monkeypatch):
    base, conn, nbs, outputs = runenv
    assert main(["run", "--target", "live", "--params", str(FAL), "--outputs", str(outputs)]) == 2
    assert "--target live needs --apply" in capsys.readouterr().err
    monkeypatch.delenv("FALKIT_PVE_TOKEN", raising=False)
    assert main(["run", "--target", "live", "--apply", "--params", str(FAL), "--outputs", str(outputs)]) == 1
    assert "$FALKIT_PVE_TOKEN" in capsys.readouterr().err
    assert not outputs.exists()


def test_lock_refuses_second_run_and_takes_over_stale(runenv, capsys):
    base, conn, nbs, outputs = runenv
    with RunLock(private_dir_for("the-fal", "twin", base), what="another run"):
        assert _run(outputs, "--only", "00") == 1
        assert "another falkit run holds the lock" in capsys.readouterr().err
    assert not outputs.exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_file = private_dir_for("the-fal", "twin", base) / "run.lock"
    lock_file.write_text(json.dumps({"pid": dead.pid, "host": __import__("socket").gethostname(), "time": "x"}))
    assert _run(outputs, "--only", "00") == 0
    assert f"took over a stale lock of pid {dead.pid}" in capsys.readouterr().out
    assert not lock_file.exists()


def test_a_run_the_lock_refuses_reads_the_parameters_once(tmp_path, monkeypatch, capsys):
    """No twin needed: the lock is taken before anything starts one."""
    monkeypatch.setenv("FALKIT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("FALKIT_NOTEBOOKS_DIR", str(make_notebooks(tmp_path / "notebooks")))
    outputs = tmp_path / "outputs"
    with RunLock(private_dir_for("the-fal", "twin", tmp_path / "state"), what="another run"), reads_of(FAL) as reads:
        assert _run(outputs, "--only", "00") == 1
    assert "another falkit run holds the lock" in capsys.readouterr().err
    assert len(reads) == 1, reads
    assert not outputs.exists()


def test_html_export_renders_plotly_offline(runenv, tmp_path):
    from playwright.sync_api import sync_playwright

    base, conn, nbs, outputs = runenv
    assert _run(outputs, "--only", "00") == 0
    html = _only_run(outputs) / "00-preflight.html"
    requested = []
    with sync_playwright() as p:
        from falkit.runbook.jupyter import isolated_env

        if not Path("/usr/bin/chromium").exists():
            pytest.fail("needs Debian's chromium: apt-get install chromium (scripts/test installs it)")
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"],
                                    env=isolated_env(tmp_path))
        page = browser.new_page()

        def route(r):
            if r.request.url.startswith("file://"):
                r.continue_()
            else:
                requested.append(r.request.url)
                r.abort()

        page.route("**/*", route)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(html.as_uri())
        page.wait_for_selector(".falkit-plotly .main-svg", timeout=20000)
        bars = page.locator(".falkit-plotly g.point").count()
        tables = page.locator("table.falkit-table").count()
        browser.close()
    assert errors == [] and requested == []
    assert bars >= 10 and tables >= 3


def test_run_index_page_titles_and_readable_outputs(runenv):
    base, conn, nbs, outputs = runenv
    assert _run(outputs, "--only", "10", "--set", "t_value=11") == 0
    run_dir = _only_run(outputs)
    run = json.loads((run_dir / "run.json").read_text())
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    assert run["falkit"]["version"] == "0.1.0" and run["falkit"]["commit"].startswith(commit)
    index = (run_dir / "index.html").read_text()
    assert f"<title>falkit run {run_dir.name}: the-fal on the twin</title>" in index
    assert f"0.1.0 (commit {run['falkit']['commit']})" in index and "UTC" in index
    row = re.search(r"<tr class='ok'>(.*?)</tr>", index).group(1)
    cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
    assert cells[0] == "10-tdesc" and cells[1] == "ok" and cells[3:10] == ["1", "1", "1", "0", "1", "", "10-tdesc.html"]
    assert "<a href='10-tdesc.html'>" in index

    html = (run_dir / "10-tdesc.html").read_text()
    title = re.search(r"<title>(.*?)</title>", html).group(1)
    assert re.fullmatch(r"10-tdesc · the-fal · \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", title), title
    assert "<a href='index.html'>all notebooks of this run</a>" in html and f"run {run_dir.name}" in html

    nb = json.loads((run_dir / "10-tdesc.ipynb").read_text())
    def outputs_of(src):
        cell = next(c for c in nb["cells"] if "".join(c["source"]).strip().startswith(src))
        return cell["outputs"]
    plan = [o for o in outputs_of('s = lab.step("t-desc")') if "text/html" in o.get("data", {})][0]["data"]
    assert "".join(plan["text/plain"]).startswith("plan t-desc: 1 change(s): 0 to add, 1 to change, 0 to destroy")
    assert "text-align: left" in "".join(plan["text/html"])
    checks = outputs_of('lab.checks("t-desc")')
    texts = [json.dumps(o) for o in checks]
    assert len(checks) == 1 and "falkit-table" in texts[0] and "Checks of t-desc: 1 ok, 0 failed" in texts[0]
    assert not any("Check(check=" in t for t in texts)


def test_resume_line_survives_an_earlier_benchmark_index(runenv, capsys, tmp_path):
    """CI failure (stop 19): a benchmark run earlier in the session left ``bench-results.txt`` (one
    result path a line) in the private dir; with one line, the whole file was taken as a secret
    value and every path sharing its first 16 characters (the run's resume command) was redacted."""
    base, conn, nbs, outputs = runenv
    from falkit.model.spec import load_spec
    from falkit.steps.benchmarks import RESULTS_INDEX

    private = private_dir_for(load_spec(FAL).lab, "twin", base)
    connect(FAL, "twin")  # the twin's private dir is (re)set for this twin instance first
    earlier = tmp_path / "outputs-earlier" / "bench" / "fio-twin.json"
    (private / RESULTS_INDEX).write_text(f"{earlier}\n")
    try:
        assert _run(outputs, "--set", "t_value=9", "--set", "t_fail_apply=true") == 1
        run_dir = _only_run(outputs)
        run = json.loads((run_dir / "run.json").read_text())
        assert run["resume"] == f"falkit run --resume {run_dir}"
        assert f"falkit run --resume {run_dir}" in capsys.readouterr().err
    finally:
        (private / RESULTS_INDEX).unlink(missing_ok=True)
