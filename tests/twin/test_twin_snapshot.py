"""The whole twin saved and restored by the supervisor (issue 3: "state can be saved and restored
(a snapshot file), so a demo can resume"): both halves, the Proxmox process and the lab process."""

from __future__ import annotations

from pathlib import Path

import yaml
from kubernetes import client, config

from falkit.twin import supervisor

FAL = Path(__file__).resolve().parents[2] / "parameters" / "fal.yaml"


def _core(conn: dict) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=conn["kubernetes"]["kubeconfig"]))


def test_snapshot_and_restore_both_halves(tmp_path, monkeypatch):
    monkeypatch.setenv("FALKIT_STATE_DIR", str(tmp_path / "state"))
    root = tmp_path / "state" / "twin"
    conn = supervisor.up(FAL, state="before", state_dir=root)
    try:
        _core(conn).create_namespaced_config_map("default", {"metadata": {"name": "demo-progress"}, "data": {"step": "30"}})
        snap = supervisor.snapshot("demo.snapshot", state_dir=root)
        assert Path(snap).is_file() and Path(snap + ".lab").is_file()
    finally:
        supervisor.down(root)
    conn = supervisor.up(FAL, state="before", state_dir=root, restore=snap)
    try:
        cm = _core(conn).read_namespaced_config_map("demo-progress", "default")
        assert cm.data == {"step": "30"}
        assert yaml.safe_load(Path(conn["kubernetes"]["kubeconfig"]).read_text())["clusters"]
    finally:
        supervisor.down(root)
