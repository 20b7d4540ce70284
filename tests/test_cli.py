"""`falkit plan`: table and JSON output, exit codes 0/1/2, and that bad parameters say file:line."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import FAL, ROOT, patched, write_yaml


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "falkit.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_plan_the_fal() -> None:
    r = run("plan", str(FAL))
    assert r.returncode == 0, r.stderr
    assert "talos-worker-03" in r.stdout and "52:54:00:10:11:13" in r.stdout
    assert "0 error(s)" in r.stdout and "WARNING  mayastor.hugepages" in r.stdout


def test_plan_json() -> None:
    r = run("plan", str(FAL), "--json")
    data = json.loads(r.stdout)
    assert {f["id"] for f in data["findings"]} >= {"budget.memory", "mayastor.failure-domain-disk"}
    assert data["plan"]["vms"][1]["nics"][1]["mac"] == "52:54:00:10:11:11"


def test_plan_errors_exit_1(tmp_path) -> None:
    r = run("plan", str(write_yaml(tmp_path, patched({"truenas.enabled": True}))))
    assert r.returncode == 1 and "ERROR    budget.memory" in r.stdout and "8 GB over" in r.stdout


def test_plan_invalid_exit_2(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(FAL.read_text().replace("storage_ip: 10.11.0.12", "storage_ip: 10.12.0.12"))
    r = run("plan", str(bad))
    assert r.returncode == 2
    assert f"{bad}:" in r.stderr and "cluster.workers[1].storage_ip" in r.stderr and "nothing was changed" in r.stderr
