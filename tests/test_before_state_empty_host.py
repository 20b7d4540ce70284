"""The before-state step on a host the spec's ``previous`` cluster is not on (a new build on a bare host).

Covers, through ``falkit run`` (the CLI a user runs) on a twin started ``--state empty`` with the
default parameters (which do have a ``previous`` section):

- 10-network and 20-vms complete: the before-state step records nothing (there is no old cluster
  whose Kubernetes API it could read) and says why in its note, instead of failing with the
  Kubernetes API's ``503 Service Unavailable`` (found by ``benchmarks/bench_run.py``'s VM-scaling
  runs, which start from this state);
- no ``before-state.json`` is written to the private dir.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAL = ROOT / "parameters" / "fal.yaml"


def falkit(env: dict, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "falkit.cli", *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=timeout)


@pytest.mark.timeout(1000)
def test_network_and_vms_on_a_bare_host_record_no_before_state(tmp_path):
    env = {**os.environ, "FALKIT_STATE_DIR": str(tmp_path / "state"), "FALKIT_HEADLESS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("FALKIT_RUN_DIR", None)
    try:
        up = falkit(env, "twin", "up", "--params", str(FAL), "--state", "empty", timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        r = falkit(env, "run", "--params", str(FAL), "--only", "10", "20", "--outputs", str(tmp_path / "out"))
        out = r.stdout + r.stderr
        assert r.returncode == 0, out[-4000:]
        assert "ServiceUnavailableError" not in out and "failed at" not in out
        run_dir = next((tmp_path / "out").iterdir())
        nb = (run_dir / "10-network.ipynb").read_text()
        assert "nothing to record" in nb, "the before-state note should say why nothing was recorded"
        assert not list((tmp_path / "state").rglob("before-state.json"))
    finally:
        falkit(env, "twin", "down", timeout=120)
