"""``falkit run`` with the real notebooks 00-preflight, 10-network and 20-vms on a fresh twin.

Covers the issue's scenario: a fault injected into the VM step (PVE fails the task creating
VMID 203) stops the run at 20-vms; after the fault is cleared, ``--resume`` completes the run in
the same archive and the lab has each planned VM exactly once (no duplicate); a second run changes
nothing (zero mutating calls).
"""

from __future__ import annotations

import json

import pytest
from test_runbook_support import FAL, ROOT

from falkit.cli import main
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


def test_vm_fault_stops_run_and_resume_completes_without_duplicates(fresh_twin, capsys):
    conn, outputs = fresh_twin
    ctl = PveControl(conn)
    ctl.fault("task_error", match="qmcreate", vmid=203, message="planted: storage hiccup")
    args = ["run", "--params", str(FAL), "--outputs", str(outputs), "--only", "00", "10", "20"]
    assert main(args) == 1
    run_dir = next(outputs.iterdir())
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "failed" and run["failed"]["notebook"] == "20-vms"
    assert "20-vms failed at cell" in capsys.readouterr().err
    ctl.clear()

    assert main(["run", "--outputs", str(outputs), "--resume", str(run_dir)]) == 0
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "ok" and [n["notebook"] for n in run["notebooks"]] == ["00-preflight", "10-network", "20-vms"]
    vmids = [v["vmid"] for v in ctl.state()["vms"]]
    assert sorted(vmids) == [200, 201, 202, 203]  # each planned VM once

    assert main(args) == 0
    second = sorted(p for p in outputs.iterdir() if p.is_dir())[-1]
    assert second != run_dir
    assert json.loads((second / "run.json").read_text())["totals"]["mutating_calls"] == 0
