"""The summary of a failed ``falkit run`` (issue 15 item 7): a notebook that changed the lab and
then failed is not reported as "0 change(s) applied".

Covers: 20-vms creates VM 202 and fails on VM 203 (a planted TASK ERROR); the run's last line,
run.json's totals and index.html name 20-vms (vms) as partly applied with the mutating API calls
it made (counted from journal.jsonl), next to the changes of the completed steps; the twin holds
VM 202, which that notebook created.
"""

from __future__ import annotations

import json

import pytest
from test_runbook_support import FAL, ROOT

from falkit.cli import main
from falkit.clients.journal import read_journal
from falkit.runbook.nbbuild import build
from falkit.twin import supervisor
from falkit.twin.pvecontrol import PveControl


@pytest.fixture
def fresh_twin(tmp_path, monkeypatch):
    base = tmp_path / "state"
    conn = supervisor.up(str(FAL), state="before", state_dir=base / "twin")
    monkeypatch.setenv("FALKIT_STATE_DIR", str(base))
    monkeypatch.setenv("FALKIT_HEADLESS", "1")
    monkeypatch.delenv("FALKIT_RUN_DIR", raising=False)
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    build(ROOT / "notebooks" / "src", nbs)
    monkeypatch.setenv("FALKIT_NOTEBOOKS_DIR", str(nbs))
    try:
        yield conn, tmp_path / "outputs"
    finally:
        supervisor.down(base / "twin")


def test_failed_run_counts_what_the_failed_notebook_applied(fresh_twin, capsys):
    conn, outputs = fresh_twin
    ctl = PveControl(conn["pve_control"])
    ctl.fault("task_error", match="qmcreate", vmid=203, message="planted: storage hiccup")
    assert main(["run", "--params", str(FAL), "--outputs", str(outputs), "--only", "00", "10", "20",
                 "--set", "allow_disruptive=true"]) == 1
    out = capsys.readouterr().out
    run_dir = next(outputs.iterdir())
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "failed" and run["failed"]["notebook"] == "20-vms"
    assert 202 in [v["vmid"] for v in ctl.state()["vms"]]  # 20-vms did change the lab

    started = next(n["started"] for n in run["notebooks"] if n["notebook"] == "20-vms")
    calls = [j for j in read_journal(run_dir / "journal.jsonl") if j["t"] >= started]
    assert calls and any(j["method"] == "POST" and j["path"].endswith("/qemu") for j in calls)
    t = run["totals"]
    assert t["partly_applied"] == [{"notebook": "20-vms", "steps": ["vms"], "mutating_calls": len(calls)}]
    network = next(n["applied"] for n in run["notebooks"] if n["notebook"] == "10-network")
    last = [line for line in out.splitlines() if line.startswith("falkit run: failed")][-1]
    assert f"changes applied: {network} by completed steps, 20-vms (vms) partly, {len(calls)} mutating API call(s) " \
           "before it failed" in last
    assert "0 change(s) applied" not in last
    assert "20-vms (vms) partly" in (run_dir / "index.html").read_text()
