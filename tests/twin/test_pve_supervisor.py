"""The twin supervisor with the Proxmox half alone: up / status / down / snapshot.

Covers: up starts a detached pve_process and writes connection.json (0600, secrets only as paths)
in the shape of docs/ARCHITECTURE.md; a second up returns the live twin instead of starting another;
status reports the processes; snapshot writes a file; down stops exactly the pid it started and
removes connection.json; down leaves a recycled pid (another command) alone; up with the lab half
fails clearly while falkit.twin.lab_process does not exist.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import pytest
from proxmoxer import ProxmoxAPI
from pve_fixtures import fal_spec

from falkit.twin import supervisor


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FALKIT_STATE_DIR", str(tmp_path / "state"))
    yield tmp_path / "state" / "twin"
    supervisor.down()


def test_up_status_down(state_dir):
    conn = supervisor.up(fal_spec(), state="before", with_lab=False)
    path = state_dir / "connection.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text()) == conn
    assert conn["target"] == "twin"
    px = conn["proxmox"]
    assert set(px) >= {"host", "port", "node", "ca_file", "user", "token_name", "token_file"}
    assert (px["host"], px["node"], px["user"], px["token_name"]) == ("127.0.0.2", "fal", "root@pam", "falkit")
    assert conn["pve_control"].startswith("http://127.0.0.1:")
    for secret in (px["token_file"], px["password_file"]):
        assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
        assert open(secret).read().strip() not in json.dumps(conn)
    pid = conn["pids"]["pve"]
    assert _alive(pid)

    api = ProxmoxAPI(px["host"], port=px["port"], user=px["user"], token_name=px["token_name"],
                     token_value=open(px["token_file"]).read().strip(), verify_ssl=px["ca_file"])
    assert [v["vmid"] for v in api.nodes("fal").qemu.get()] == [200, 201]

    again = supervisor.up(fal_spec(), state="empty", with_lab=False)
    assert again["already_up"] is True and again["pids"] == conn["pids"]

    st = supervisor.status()
    assert st["up"] is True and st["processes"]["pve"] == {"pid": pid, "alive": True}

    snap = supervisor.snapshot("snap.json")  # a name: DIR/snapshots/snap.json
    assert json.load(open(snap))["state"]["vms"][0]["vmid"] == 200

    result = supervisor.down()
    assert result["stopped"] == [pid]
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)
    assert not path.exists()
    assert supervisor.status()["up"] is False


def test_up_with_restore_and_time_factor(state_dir, tmp_path):
    conn = supervisor.up(fal_spec(), state="before", with_lab=False)
    snap = supervisor.snapshot(state_dir / "snap.json")
    supervisor.down()
    conn = supervisor.up(fal_spec(), state="empty", with_lab=False, restore=snap, time_factor=0.5)
    pve_json = json.loads((state_dir / "pve.json").read_text())
    assert pve_json["time_scale"] == 0.5
    px = conn["proxmox"]
    api = ProxmoxAPI(px["host"], port=px["port"], user="root@pam", token_name="falkit",
                     token_value=open(px["token_file"]).read().strip(), verify_ssl=px["ca_file"])
    assert [v["vmid"] for v in api.nodes("fal").qemu.get()] == [200, 201]  # from the snapshot, not "empty"


def test_down_leaves_a_foreign_process_alone(state_dir):
    conn = supervisor.up(fal_spec(), state="empty", with_lab=False)
    # Pretend the recorded pid was recycled by another program: down must not signal it.
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        pids = json.loads((state_dir / "pids.json").read_text())
        real = pids["processes"]["pve"]
        pids["processes"]["pve"] = {"pid": other.pid, "argv": real["argv"]}
        (state_dir / "pids.json").write_text(json.dumps(pids))
        result = supervisor.down()
        assert result == {"stopped": [], "gone": [other.pid]}
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
        os.kill(conn["pids"]["pve"], 15)


def test_pve_config_from_spec_before_and_empty():
    before = supervisor.pve_config_from_spec(fal_spec(), "before")
    assert (before["node"], before["cpu"]["threads"], before["memory_gb"]) == ("fal", 16, 32)
    assert {s["name"]: s["total"] for s in before["storages"]} == {
        "local": 100 * 10 ** 9, "local-lvm": 140 * 10 ** 9, "helford": 1000 * 10 ** 9}
    assert [b["iface"] for b in before["bridges"]] == ["vmbr0"]
    assert before["bridges"][0]["gateway"] == "10.30.0.1"
    vms = {v["vmid"]: v for v in before["vms"]}
    assert vms[200]["config"]["net0"] == "virtio=52:54:00:10:30:10,bridge=vmbr0"
    assert vms[201]["config"]["memory"] == "9216"
    assert vms[201]["config"]["scsi1"].startswith("helford:")
    empty = supervisor.pve_config_from_spec({"node": "fal", "cpu_threads": 16, "memory_gb": 32,
                                              "storages": [{"name": "local-lvm", "type": "lvmthin", "size_gb": 140}]},
                                             "empty")
    assert empty["vms"] == [] and empty["cpu"]["threads"] == 16
    with pytest.raises(ValueError):
        supervisor.pve_config_from_spec(fal_spec(), "after")
