"""The whole runbook rehearsed on the twin, end to end, as CI runs it.

Covers (issue 7, "Rehearsal in CI"): the twin starts in its "before" state; the before-state is
recorded (every LoadBalancer service's IP, the claim each workload mounts, a checksum Job per
claim); ``falkit run`` migrates (00 … 60), validates (70: every check passes, or the run fails) and
only shows the rollback plans (80 without ``rollback=true``); a second ``falkit run`` applies
nothing and writes only 70-validation's test objects; then ``falkit run --only 80 --set
rollback=true`` rolls back; the before-state is back: the same service IPs, the same claims, the
same data checksums — compared by falkit's own check and by this test. Real processes throughout:
the twin on loopback, papermill kernels, the official clients. ``time_factor`` 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import patched, write_yaml

from falkit.spec import load_spec
from falkit.steps.rollback import lab_state, record_before_state
from falkit.validation import compare_states

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 900


def falkit_run(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "falkit.cli", "run", *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=RUN_TIMEOUT_S)


@pytest.fixture
def lab(tmp_path):
    """The Fal's spec, a twin in its "before" state under a private FALKIT_STATE_DIR (with its own
    GitOps repository, which its Argo CD syncs from), and a connected target; torn down after."""
    from falkit.target import connect
    from falkit.twin import supervisor

    params = write_yaml(tmp_path, patched({}))
    state = tmp_path / "state"
    # the twin's own GitOps repository (the seed's layout), which its Argo CD syncs from
    platform = state / "twin" / "gitops" / "kubernetes" / "platform"
    env = {**os.environ, "FALKIT_STATE_DIR": str(state), "FALKIT_HEADLESS": "1", "PYTHONPATH": str(ROOT)}
    old = os.environ.get("FALKIT_STATE_DIR")
    os.environ["FALKIT_STATE_DIR"] = str(state)
    supervisor.up(params, state="before", state_dir=state / "twin", time_factor=0.0)
    try:
        target = connect(params, "twin", state_dir=state)
        yield {"params": params, "spec": load_spec(params), "target": target, "env": env, "out": tmp_path / "outputs",
               "platform": platform}
        target.close()
    finally:
        supervisor.down(state / "twin")
        if old is None:
            os.environ.pop("FALKIT_STATE_DIR", None)
        else:
            os.environ["FALKIT_STATE_DIR"] = old


def _run_json(out: Path) -> dict:
    runs = sorted(out.glob("*/run.json"))
    assert runs, f"no run archived in {out}"
    return json.loads(runs[-1].read_text())


def test_migrate_validate_rollback_and_the_before_state_is_back(lab):
    spec, target, env = lab["spec"], lab["target"], lab["env"]
    before = record_before_state(target, spec)
    assert before.service_ips["traefik/traefik"] == "10.30.0.100"
    assert before.checksums, "the before-state has Longhorn volumes with data"

    migrated = falkit_run(env, "--params", str(lab["params"]), "--outputs", str(lab["out"]))
    assert migrated.returncode == 0, migrated.stdout[-3000:] + migrated.stderr[-3000:]
    run = _run_json(lab["out"])
    by_nb = {n["notebook"]: n for n in run["notebooks"]}
    assert by_nb["70-validation"]["status"] == "ok" and by_nb["70-validation"]["checks"]["failed"] == 0
    assert by_nb["70-validation"]["checks"]["ok"] > 40
    assert by_nb["80-rollback"]["applied"] == 0  # a migration run only shows the rollback plans

    # a re-run changes nothing: no step applies anything, and the only API writes are 70-validation's
    # own test objects (a fresh PVC that must bind and take writes, the storage-network ping Jobs);
    # 50-mayastor's benchmarks reuse the first run's results (same storage fingerprint), no fio Job
    again = falkit_run(env, "--params", str(lab["params"]), "--outputs", str(lab["out"]))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    rerun = _run_json(lab["out"])
    assert rerun["id"] != run["id"] and rerun["totals"]["applied_changes"] == 0
    writes = {n["notebook"]: n["mutating_calls"] for n in rerun["notebooks"] if n["mutating_calls"]}
    assert set(writes) == {"70-validation"}, writes
    assert "measured this storage" in (lab["out"] / rerun["id"] / "50-mayastor.ipynb").read_text()
    target.reset_kube()
    mid = lab_state(target, spec)
    assert mid.service_ips["traefik/traefik"] == "10.10.0.80"
    assert not all(c.ok for c in compare_states(before, mid))
    assert not (lab["platform"] / "longhorn-app.yaml").exists()

    rolled = falkit_run(env, "--params", str(lab["params"]), "--outputs", str(lab["out"] / "rollback"),
                        "--only", "80", "--set", "rollback=true")
    assert rolled.returncode == 0, rolled.stdout[-3000:] + rolled.stderr[-3000:]
    rb = _run_json(lab["out"] / "rollback")["notebooks"][0]
    assert rb["applied"] > 0 and rb["checks"]["failed"] == 0

    target.reset_kube()
    after = lab_state(target, spec)
    bad = [c for c in compare_states(before, after) if not c.ok]
    assert not bad, bad
    assert (lab["platform"] / "longhorn-app.yaml").exists()
    vms = {v["vmid"]: v["status"] for v in target.pve.nodes(target.node).qemu.get()}
    assert vms[201] == "running" and vms[202] == "stopped" and vms[203] == "stopped"  # powered off, not destroyed
