"""``falkit twin up --restore`` continues the saved lab with its private state (issue 15 item 5).

Covers, through the CLI (``falkit twin up``, ``twin snapshot NAME``, ``twin down``, ``twin up
--restore NAME``, ``twin reset``) and the runbook's connection (``falkit.clients.target.connect``):

- the private state of a lab (its Talos secrets, talosconfig and the cluster's admin kubeconfig)
  survives ``down`` + ``up --restore`` and the connection that follows (before, connecting to the
  restored twin emptied it as if it were a new lab);
- the restored kubeconfig points at the restored twin's Kubernetes API (a new port and serving CA)
  and its credential still works: the official client and the real ``kubectl`` list the nodes;
- after ``twin reset`` (a fresh twin: the private state is removed), ``up --restore`` writes the
  snapshot's private state back (0600 files, 0700 directory);
- a fresh ``up`` is still a new lab: its first connection empties the private state.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import yaml
from kubernetes import client, config

from falkit.clients.target import connect
from falkit.twin import supervisor
from falkit.twin.lab.client import LabClient

ROOT = Path(__file__).resolve().parents[1]
FAL = ROOT / "parameters" / "fal.yaml"
KUBECTL = shutil.which("kubectl")


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "falkit.cli", *args], env=env, capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    assert r.returncode == 0, f"falkit {' '.join(args)}: {r.stdout}\n{r.stderr}"
    return r


def _server(kubeconfig: Path) -> str:
    return yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]


def _nodes(kubeconfig: Path) -> set[str]:
    with config.new_client_from_config(config_file=str(kubeconfig)) as api:
        return {n.metadata.name for n in client.CoreV1Api(api).list_node().items}


def test_restore_keeps_the_private_state_and_repoints_the_kubeconfig(tmp_path):
    state = tmp_path / "state"
    env = {**os.environ, "FALKIT_STATE_DIR": str(state), "FALKIT_HEADLESS": "1", "PYTHONPATH": str(ROOT)}
    twin = state / "twin"
    try:
        _cli(env, "twin", "up", "--params", str(FAL))
        conn = supervisor.status(twin)["connection"]
        t = connect(FAL, "twin", state_dir=state, start_twin=False)
        private = t.private_dir
        # what 30-talos keeps there: the Talos secrets (the operator's copy), a talosconfig, and the
        # cluster's admin kubeconfig (`talosctl kubeconfig`: the lab's Talos model)
        t.write_private("talosconfig", "context: the-fal\ncontexts: {the-fal: {endpoints: [10.10.0.10]}}\n")
        t.write_private("kubeconfig", yaml.safe_dump(LabClient(conn).kubeconfig()))
        t.close()
        saved = {p.name: p.read_text() for p in private.iterdir() if p.name not in ("run.lock", "twin-started")}
        assert {"secrets.yaml", "talosconfig", "kubeconfig"} <= set(saved)
        old_server = _server(private / "kubeconfig")
        assert old_server == conn["kubernetes"]["server"] and _nodes(private / "kubeconfig")

        assert _cli(env, "twin", "snapshot", "before-30").stdout.strip() == str(twin / "snapshots" / "before-30")
        _cli(env, "twin", "down")
        _cli(env, "twin", "up", "--params", str(FAL), "--restore", "before-30")
        conn2 = supervisor.status(twin)["connection"]
        assert conn2["kubernetes"]["server"] != old_server  # a new port

        t = connect(FAL, "twin", state_dir=state, start_twin=False)
        assert t.private_dir == private
        kept = {p.name: p.read_text() for p in private.iterdir() if p.name not in ("run.lock", "twin-started")}
        assert set(kept) == set(saved)
        for name in ("secrets.yaml", "talosconfig"):
            assert kept[name] == saved[name], name
        assert _server(private / "kubeconfig") == conn2["kubernetes"]["server"]
        old_kc, new_kc = yaml.safe_load(saved["kubeconfig"]), yaml.safe_load(kept["kubeconfig"])
        assert new_kc["users"] == old_kc["users"]  # the restored cluster's credential, unchanged
        assert _nodes(private / "kubeconfig") == {"talos-cp-01", "talos-worker-01"}
        assert t.kubeconfig_path() == private / "kubeconfig"
        t.close()
        if KUBECTL:
            out = subprocess.run([KUBECTL, "--kubeconfig", str(private / "kubeconfig"), "get", "nodes"],
                                 capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                                 env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
                                      "KUBECACHEDIR": str(tmp_path / "kube-cache")})
            assert out.returncode == 0 and "talos-worker-01" in out.stdout, out.stderr

        # A fresh twin (reset) is a new lab: its private state goes; a restore brings the snapshot's back.
        _cli(env, "twin", "reset", "--params", str(FAL))
        t = connect(FAL, "twin", state_dir=state, start_twin=False)
        assert not {p.name for p in private.iterdir()} & {"talosconfig", "kubeconfig"}
        t.close()
        _cli(env, "twin", "down")
        _cli(env, "twin", "up", "--params", str(FAL), "--restore", str(twin / "snapshots" / "before-30"))
        conn3 = supervisor.status(twin)["connection"]
        t = connect(FAL, "twin", state_dir=state, start_twin=False)
        for name in ("secrets.yaml", "talosconfig"):
            assert (private / name).read_text() == saved[name], name
        assert _server(private / "kubeconfig") == conn3["kubernetes"]["server"]
        assert _nodes(private / "kubeconfig") == {"talos-cp-01", "talos-worker-01"}
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
        for p in private.iterdir():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        t.close()
    finally:
        subprocess.run([sys.executable, "-m", "falkit.cli", "twin", "down"], env=env, capture_output=True, timeout=120,
                       cwd=ROOT)
