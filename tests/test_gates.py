"""JupyterLab gates are the same migration as ``falkit run`` (issue 12 items 1, 3, 6, 7), through
the runbook facade on a private twin in its "before" state, in JupyterLab mode and headless.

Covers, in file order (the first tests need the before state: only vmbr0, old addresses):

- item 1: with the notebook's default options a gate refuses exactly what ``falkit run`` refuses
  (10-network's vmbr0 re-addressing): the same refusal text (``runbook.refuse``, a pure function of
  plan and options), the way to allow it (parameters cell / ``--set``), no Apply button, clicking
  applies nothing, the lab unchanged; later cells wait instead of planning.
- item 7: with 10-network skipped, 20-vms' plan is refused as blocked on bridge vmbr1 ("run
  10-network first") — headless and at the gate — and nothing is applied (no ISO download, no VM);
  with ISOs taken off the ``local`` storage the plan is blocked on it; 60-truenas-plex without
  10-network is refused naming it and creates no container;
  a failed progress bar is red and does not say "100%"; a step's error names the real run directory
  to resume (never a literal ``--resume RUN``).
- item 3: a gate re-plans at click time: when the lab changed since the plan was shown, nothing is
  applied, the difference is shown and the gate waits for a new click; a convergence wait names the
  changes it waits for.
- item 6: an interactive lab opened with apply takes ``falkit run``'s lock and is refused while
  another process holds it (nothing applied); a gate's apply takes the lock too; work applied from a
  gate is archived like a run (run.json, result.json, journal.jsonl; ``falkit runs`` lists it), the
  status line follows the gate, and the summary — which waits for the gate — counts its calls;
  ``falkit lab``'s session copy keeps the tracked notebooks clean while JupyterLab saves.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from gates_support import click, headless, interactive, kernel, rows
from test_runbook_support import FAL, ROOT, set_value, value_of

from falkit import runbook
from falkit.model.errors import LockError, RefusedError, StepError
from falkit.runbook.converge import blocked_by
from falkit.steps.base import register
from falkit.steps.registry import add
from falkit.ui import widgets

pytest_plugins = ("gates_support",)  # the module's twin (gate_twin)


def status(gate) -> str:
    from html import unescape

    return unescape(gate.status.value)


def bridges(lab) -> dict:
    return {i["iface"]: i for i in lab.target.pve.nodes(lab.target.node).network.get() if i.get("type") == "bridge"}


# ---------------------------------------------------------------------------------------------- item 1


def test_gate_refuses_what_falkit_run_refuses(gate_twin):
    lab = interactive("10-network", allow_disruptive=False)  # the notebook's parameters cell
    before = bridges(lab)
    mark = lab.target.journal.mark()
    s = lab.step("network").apply()
    gate = s.gate
    assert gate is not None and gate.state == "refused"
    assert gate.apply_button.layout.display == "none" and gate.buttons.layout.display == "none"
    refusal = runbook.refuse(s.plan, lab.step_options)
    assert refusal and refusal.needs == ["allow_disruptive"]
    assert "vmbr0" in refusal.text() and refusal.text() in status(gate)
    assert '"allow_disruptive": True in the parameters cell' in status(gate)
    assert "--set allow_disruptive=true" in status(gate)
    with kernel(lab):
        gate.apply_button.click()  # hidden and refused: a click (or a script) applies nothing
        gate._on_apply()
        gate._on_confirm()
    assert gate.state == "refused" and lab.target.journal.count(mark) == 0
    assert bridges(lab) == before and "vmbr1" not in before
    assert lab.result["steps"]["network"]["status"] == "refused" and lab.result["status"] == "failed"
    with kernel(lab):
        assert lab.checks("network") == []  # waits for the refused step: nothing planned on a stale lab
        lab.finish()
    assert lab.result["finished"] is None

    h = headless("10-network", allow_disruptive=False)
    with pytest.raises(RefusedError) as exc:
        h.step("network").apply()
    assert refusal.text() in str(exc.value) and "--set allow_disruptive=true" in str(exc.value)
    assert runbook.refuse(h.step("network").plan, h.step_options) == refusal
    assert bridges(h) == before


# ---------------------------------------------------------------------------------------------- item 7


def test_vms_without_network_is_refused_naming_the_notebook(gate_twin):
    h = headless("20-vms", allow_disruptive=True)
    assert "vmbr1" not in bridges(h)
    node = h.target.pve.nodes(h.target.node)
    vms_before = sorted(v["vmid"] for v in node.qemu.get())
    isos_before = node.storage("local").content.get(content="iso")
    mark = h.target.journal.mark()
    s = h.step("vms")
    blocked = [c for c in s.plan.changes if blocked_by(c) is not None]
    assert [(c.kind, c.name) for c in blocked] == [("prerequisite", "vmbr1")]
    with pytest.raises(RefusedError) as exc:
        s.apply()
    msg = str(exc.value)
    assert "bridge vmbr1" in msg and "run 10-network first" in msg and "do not allow a blocked change" in msg
    assert "QEMU" not in msg and "does not exist" in msg

    lab = interactive("20-vms", allow_disruptive=True)
    g = lab.step("vms").apply()
    assert g.gate.state == "refused" and "run 10-network first" in status(g.gate)
    assert h.target.journal.count(mark) == 0 and lab.target.journal.count(lab._mark) == 0
    assert sorted(v["vmid"] for v in node.qemu.get()) == vms_before
    assert node.storage("local").content.get(content="iso") == isos_before  # no ISO download


def test_vms_without_iso_storage_is_refused(gate_twin):
    h = headless("20-vms", allow_disruptive=True)
    local = h.target.pve.storage("local")
    content = local.get()["content"]
    local.put(content="vztmpl,backup,snippets")  # an operator took ISOs off `local`
    try:
        blocked = {c.name: c for c in h.step("vms").plan.changes if blocked_by(c) is not None}
        assert "local" in blocked and "does not allow content 'iso'" in blocked["local"].reason
        assert "add 'iso' to the content of storage 'local'" in runbook.refuse(h._runs["vms"].plan, h.step_options).text()
    finally:
        local.put(content=content)


def test_truenas_plex_without_network_is_refused_naming_the_notebook(gate_twin):
    h = headless("60-truenas-plex")
    node = h.target.pve.nodes(h.target.node)
    cts = node.lxc.get()
    s = h.step("truenas_plex")
    blocked = [c for c in s.plan.changes if blocked_by(c) is not None]
    assert [(c.kind, c.name) for c in blocked] == [("prerequisite", "vmbr1")]
    with pytest.raises(RefusedError, match="run 10-network first"):
        s.apply()
    assert node.lxc.get() == cts and h.target.journal.count(h._mark) == 0


def test_failed_progress_bar_is_red_and_not_100_percent(capsys):
    p = widgets.Progress("20-vms", interactive_mode=True)
    update = p.task("start talos-worker-02", 1)
    update(1, "failed: bridge 'vmbr1' does not exist")
    bar, label = p._box.children[0].children[1:]
    assert bar.bar_style == "danger" and "100%" not in label.value and label.value.startswith("failed")
    capsys.readouterr()
    h = widgets.Progress("20-vms", interactive_mode=False)
    h.task("start talos-worker-02", 1)(1, "failed: bridge 'vmbr1' does not exist")
    assert capsys.readouterr().out == "[20-vms] start talos-worker-02: failed: bridge 'vmbr1' does not exist\n"


@add
@register("t-steperror")
class StepErrorStep:
    """A step whose apply fails the way falkit's steps do (StepError without a resume hint)."""

    title = "test: fails in apply"

    def observe(self, target, spec, options):
        return value_of(target, 200)

    def plan(self, spec, observed, options):
        from falkit.plan.diff import Change, Plan

        return Plan("t-steperror", (Change("update", "vm-config", "200", "description", observed, "never"),))

    def apply(self, target, plan, options, progress):
        raise StepError("t-steperror", "start VM talos-worker-02: TASK ERROR: bridge 'vmbr1' does not exist")

    def checks(self, target, spec, options):
        return []


def test_resume_hint_names_the_run_directory(gate_twin, tmp_path):
    lab = headless("t-resume", run_dir=tmp_path)
    with pytest.raises(StepError) as exc:
        lab.step("t-steperror").apply()
    assert "--resume RUN" not in str(exc.value) and f"falkit run --resume {tmp_path}" in str(exc.value)
    lab = headless("t-resume")
    with pytest.raises(StepError) as exc:
        lab.step("t-steperror").apply()
    assert "--resume RUN" not in str(exc.value) and "re-run this notebook" in str(exc.value)


# ---------------------------------------------------------------------------------------------- item 3


def test_gate_replans_at_click_when_the_lab_changed(gate_twin):
    lab = interactive("t-replan", t_value=2)
    set_value(lab.target, 1)
    s = lab.step("t-desc").apply()
    assert s.gate.state == "waiting" and rows(s.plan)[0]["old"] == "1"
    set_value(lab.target, 5)  # someone else changed the lab after the plan was shown
    mark = lab.target.journal.mark()
    with kernel(lab):
        s.gate.apply_button.click()
    assert lab.target.journal.count(mark) == 0 and value_of(lab.target, 200) == 5  # nothing applied
    assert s.gate.state == "waiting" and "the lab changed" in s.gate.status.value
    assert rows(s.plan)[0]["old"] == "5" and lab.result["steps"]["t-desc"]["planned"][0]["old"] == "5"
    click(s)
    assert s.gate.done and value_of(lab.target, 200) == 2
    set_value(lab.target, 1)


def test_convergence_wait_names_the_changes(gate_twin, capsys):
    lab = headless("t-wait", t_value=7, t_skip_apply=True, wait_timeout_s=3)
    set_value(lab.target, 1)
    with pytest.raises(StepError, match="not converged"):
        lab.step("t-desc").apply()
    out = capsys.readouterr().out
    assert "waiting (" in out and "for ~ vm-config 200 description: 1 -> 7" in out
    assert "change(s) to settle" not in out


# ---------------------------------------------------------------------------------------------- item 6


HOLD = """
import sys, time
from falkit.runbook.lock import RunLock
from falkit.clients.target import private_dir_for
lock = RunLock(private_dir_for("the-fal", "twin"), what="falkit run --target twin (fal.yaml)").acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_interactive_apply_is_refused_while_falkit_run_holds_the_lock(gate_twin, tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        h = headless("t-lock", t_value=3)
        set_value(h.target, 1)
        with pytest.raises(LockError, match="another falkit run holds the lock"):
            interactive("t-lock", run_dir=tmp_path, apply=True, t_value=3)
        lab = interactive("t-lock", run_dir=tmp_path, t_value=3)  # apply=False: the lock is taken at the click
        s = lab.step("t-desc").apply()
        with kernel(lab):
            s.gate.apply_button.click()
        assert s.gate.state == "failed" and isinstance(s.gate.error, LockError)
        assert value_of(h.target, 200) == 1 and lab.target.journal.count(lab._mark) == 0
    finally:
        holder.kill()
        holder.wait()
    lab = interactive("t-lock", run_dir=tmp_path, apply=True, t_value=3)  # the holder is gone
    lock_file = lab._lock.path
    assert json.loads(lock_file.read_text())["command"].startswith("JupyterLab session: t-lock")
    with pytest.raises(LockError):  # and now a falkit run is refused while the session holds it
        from falkit.runbook.lock import RunLock

        RunLock(lock_file.parent).acquire()
    with kernel(lab):
        lab.step("t-desc").apply()
        click(lab._runs["t-desc"])
        lab.finish()
    assert value_of(lab.target, 200) == 3 and not lock_file.exists()  # finish released it
    set_value(lab.target, 1)


def test_gate_work_is_archived_like_a_run(gate_twin, capsys):
    from falkit.cli import main

    base, _conn = gate_twin
    set_value(headless("t-setup").target, 1)
    lab = interactive("t-archive", t_value=4)  # no FALKIT_RUN_DIR: the lab makes outputs/<time>-twin-lab
    run_dir = lab.run_dir
    assert run_dir is not None and run_dir.parent == base / "outputs" and run_dir.name.endswith("-twin-lab")
    with kernel(lab):  # Run All: every cell runs before anyone can click
        s = lab.step("t-desc").apply()
        s._ipython_display_()  # the cell's value: a live status line (IPython calls this)
        assert lab.checks("t-desc") == []
        lab.finish()
    assert "waiting for approval" in s._status_widget.value and lab.result["finished"] is None
    click(s)
    assert value_of(lab.target, 200) == 4
    assert "applied" in s._status_widget.value and "waiting for approval" not in s._status_widget.value
    result = json.loads((run_dir / "t-archive.result.json").read_text())
    assert result["status"] == "ok" and result["journal"]["mutating_calls"] == 1
    assert result["steps"]["t-desc"]["applied"] and [c["ok"] for c in result["checks"]] == [True]
    journal = [json.loads(x) for x in (run_dir / "journal.jsonl").read_text().splitlines()]
    assert [(e["api"], e["method"]) for e in journal] == [("pve", "POST")]
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "ok" and run["session"] == "jupyterlab" and run["totals"]["mutating_calls"] == 1
    assert [(n["notebook"], n["status"], n["applied"]) for n in run["notebooks"]] == [("t-archive", "ok", 1)]
    capsys.readouterr()
    assert main(["runs", "--outputs", str(base / "outputs")]) == 0
    listed = capsys.readouterr().out
    assert run_dir.name in listed and "ok" in listed
    set_value(lab.target, 1)


def test_lab_session_keeps_tracked_notebooks_clean(tmp_path):
    import nbformat

    from falkit.runbook import jupyter

    def status() -> str:
        return subprocess.run(["git", "status", "--porcelain", "notebooks"], cwd=ROOT, text=True,
                              capture_output=True, check=True).stdout

    tracked = {p.name: p.read_bytes() for p in (ROOT / "notebooks").glob("*.ipynb")}
    git_before = status()
    session = jupyter.make_session(ROOT, tmp_path / "outputs")
    assert (session / "parameters" / FAL.name).is_file()  # ../parameters/fal.yaml works from the copy
    copy = nbformat.read(session / "notebooks" / "20-vms.ipynb", as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in copy.cells if c.cell_type == "code")
    with jupyter.start_lab(session, state_dir=tmp_path / "state", env={"FALKIT_RUN_DIR": str(session)}) as server:
        import urllib.request

        model = server.api("api/contents/notebooks/20-vms.ipynb")
        model["content"]["cells"][1]["source"] += "\n# edited in JupyterLab"
        body = json.dumps({"type": "notebook", "format": "json", "content": model["content"]}).encode()
        req = urllib.request.Request(f"{server.url}api/contents/notebooks/20-vms.ipynb", data=body, method="PUT",
                                     headers={"Authorization": f"token {server.token}", "Content-Type": "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=10) as resp:
            assert resp.status == 200
    assert "edited in JupyterLab" in (session / "notebooks" / "20-vms.ipynb").read_text()
    assert {p.name: p.read_bytes() for p in (ROOT / "notebooks").glob("*.ipynb")} == tracked
    assert status() == git_before
    time.sleep(0)
