"""A lab without a ``previous`` section (``parameters/examples/two-nodes-five-workers.yaml``: two
Proxmox nodes, five workers, other addresses and versions) is a new build, not a migration:
``falkit run`` starts the twin as a bare host (state ``auto`` -> ``empty``) and the runbook builds
it — network, VMs, Talos (whose health is reached while the nodes wait for a CNI, as with
``cni: none``), Cilium (nodes Ready; Services not deployed yet are not failures); and its rollback
plans nothing (no earlier cluster; Cilium's pool stays). Real processes:
the twin on loopback, papermill kernels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from falkit.steps.talos import CNI_NOT_READY, cni_pending
from falkit.twin import supervisor

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "parameters" / "examples" / "two-nodes-five-workers.yaml"


def _node(name: str, ready: str, message: str = "") -> dict:
    return {"metadata": {"name": name}, "status": {"conditions": [{"type": "Ready", "status": ready, "message": message}]}}


CNI_MSG = f"container runtime network not ready: NetworkReady=false reason:{CNI_NOT_READY[0]} message:cni plugin not initialized"


def test_cni_pending_only_when_the_cni_is_all_that_is_missing():
    waiting = {"ok": False, "checks": [{"name": "etcd bootstrapped", "ok": True},
                                       {"name": "node cp-1 ready", "ok": False, "message": "NotReady: " + CNI_MSG}]}
    assert cni_pending(waiting, [_node("cp-1", "False", CNI_MSG), _node("w-1", "True")])
    assert not cni_pending(waiting, [])  # no Node registered: not there yet
    assert not cni_pending(waiting, [_node("cp-1", "False", "Kubelet stopped posting node status")])
    etcd = {"ok": False, "checks": [{"name": "etcd bootstrapped", "ok": False, "message": "etcd is not bootstrapped"},
                                    *waiting["checks"][1:]]}
    assert not cni_pending(etcd, [_node("cp-1", "False", CNI_MSG)])
    missing = {"ok": False, "checks": [{"name": "node w-2 ready", "ok": False, "message": "not registered"}]}
    assert not cni_pending(missing, [_node("cp-1", "False", CNI_MSG)])
    assert not cni_pending({"ok": True, "checks": []}, [_node("cp-1", "True")])  # healthy is not "pending"


def test_a_new_lab_is_built_from_a_bare_host(tmp_path):
    state, out = tmp_path / "state", tmp_path / "outputs"
    env = {**os.environ, "FALKIT_STATE_DIR": str(state), "FALKIT_HEADLESS": "1", "PYTHONPATH": str(ROOT)}
    try:
        r = subprocess.run([sys.executable, "-m", "falkit.cli", "run", "--params", str(EXAMPLE), "--outputs", str(out),
                            "--only", "00", "10", "20", "30", "40", "80"], cwd=ROOT, env=env, text=True, capture_output=True,
                           timeout=900)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert "a bare host when it has no 'previous'" in r.stdout
        run = json.loads(next(out.glob("*/run.json")).read_text())
        by = {n["notebook"]: n for n in run["notebooks"]}
        assert by["20-vms"]["applied"] >= 6  # five workers and a control plane created, not adopted
        assert by["30-talos"]["status"] == "ok" and by["40-cilium"]["status"] == "ok"
        assert by["40-cilium"]["checks"]["failed"] == 0
        assert by["80-rollback"]["status"] == "ok" and by["80-rollback"]["planned"] == 0  # nothing to roll back to
        conn = json.loads((state / "twin" / "connection.json").read_text())
        assert conn["proxmox"]["node"] == "peak-a"
    finally:
        supervisor.down(state / "twin")
