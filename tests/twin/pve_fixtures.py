"""Fixtures for tests of the twin's Proxmox half: a real pve_process, reached over HTTPS.

Import the fixtures into a test module (``from pve_fixtures import pve, ...``) or list this module
in the project conftest's ``pytest_plugins``. The test process never imports fakepve (AGPL): the
pve process runs as a child ``python -m falkit.twin.pve_process`` and is stopped with SIGTERM.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml
from proxmoxer import ProxmoxAPI

from falkit.twin.pvecontrol import PveControl
from falkit.twin.supervisor import pve_config_from_spec

ROOT = Path(__file__).resolve().parents[2]
FAL_SPEC = ROOT / "parameters" / "fal.yaml"


def fal_spec() -> dict:
    """parameters/fal.yaml as a plain dict (what pve_config_from_spec accepts besides a LabSpec)."""
    with open(FAL_SPEC) as fh:
        return yaml.safe_load(fh)


@dataclass
class PveTwin:
    """A running pve_process: its ready file's data, a proxmoxer client and the control client."""

    info: dict
    state_dir: Path
    proc: subprocess.Popen

    @property
    def node(self) -> str:
        return self.info["node"]

    @property
    def token(self) -> str:
        return Path(self.info["token_file"]).read_text().strip()

    @property
    def password(self) -> str:
        return Path(self.info["password_file"]).read_text().strip()

    @property
    def url(self) -> str:
        return f"https://{self.info['host']}:{self.info['port']}/api2/json"

    def api(self, verify=None, **kwargs) -> ProxmoxAPI:
        """proxmoxer with the API token, verifying TLS against the twin's CA file."""
        return ProxmoxAPI(self.info["host"], port=self.info["port"], user="root@pam", token_name="falkit",
                          token_value=self.token, verify_ssl=self.info["ca_file"] if verify is None else verify,
                          **kwargs)

    def api_password(self) -> ProxmoxAPI:
        """proxmoxer logged in as root@pam with a ticket (what root-only settings need)."""
        return ProxmoxAPI(self.info["host"], port=self.info["port"], user="root@pam", password=self.password,
                          verify_ssl=self.info["ca_file"])

    def raw(self, method: str, path: str, **kwargs) -> requests.Response:
        """A plain requests call with the token, for what proxmoxer hides (top-level keys, status)."""
        headers = {"Authorization": f"PVEAPIToken=root@pam!falkit={self.token}"}
        return requests.request(method, self.url + path, headers=headers, verify=self.info["ca_file"],
                                timeout=10, **kwargs)

    @property
    def control(self) -> PveControl:
        return PveControl(self.info)


def start_pve(state_dir: Path, cfg: dict, restore: str | None = None, timeout: float = 30.0) -> PveTwin:
    state_dir.mkdir(parents=True, exist_ok=True)
    cfg_file = state_dir / "pve-config.json"
    cfg_file.write_text(json.dumps(cfg))
    argv = [sys.executable, "-m", "falkit.twin.pve_process", "--config", str(cfg_file), "--state-dir", str(state_dir)]
    if restore:
        argv += ["--restore", str(restore)]
    err = open(state_dir / "pve.err", "wb")
    proc = subprocess.Popen(argv, stdout=err, stderr=err, cwd=str(ROOT), start_new_session=True)
    err.close()
    ready = state_dir / "pve.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready.exists():
            info = json.loads(ready.read_text())
            if info.get("pid") == proc.pid:
                return PveTwin(info, state_dir, proc)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    stop_pve(proc)
    raise RuntimeError(f"pve_process not ready: {(state_dir / 'pve.err').read_text()[-3000:]}")


def stop_pve(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_task(api: ProxmoxAPI, node: str, upid: str, timeout: float = 10.0) -> dict:
    """The finished task's status; raises (never returns None) on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        st = api.nodes(node).tasks(upid).status.get()
        if st["status"] == "stopped":
            return st
        if time.monotonic() > deadline:
            raise TimeoutError(f"task {upid} still running after {timeout} s")
        time.sleep(0.05)


def task_log(api: ProxmoxAPI, node: str, upid: str) -> list[str]:
    return [line["t"] for line in api.nodes(node).tasks(upid).log.get()]


@pytest.fixture
def pve_before(tmp_path):
    """The pre-migration lab (VMs 200, 201 running; vmbr0 only), time_scale 0."""
    twin = start_pve(tmp_path / "pve", pve_config_from_spec(fal_spec(), "before"))
    yield twin
    stop_pve(twin.proc)
    assert twin.proc.returncode == 0, (twin.state_dir / "pve.err").read_text()


@pytest.fixture
def pve_empty(tmp_path):
    """The bare host with vmbr0, time_scale 0."""
    twin = start_pve(tmp_path / "pve", pve_config_from_spec(fal_spec(), "empty"))
    yield twin
    stop_pve(twin.proc)
    assert twin.proc.returncode == 0, (twin.state_dir / "pve.err").read_text()
