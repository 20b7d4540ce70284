"""`falkit lab` keeps JupyterLab's token to the operator (issue 16 item 6).

Covers, with `falkit lab` started as the operator starts it (a CLI subprocess) and stopped with
Ctrl-C: the token is not on the server's command line (/proc/<pid>/cmdline, what `ps` shows) nor in
its environment, and never in the state dir's log; it still guards the server (the REST API answers
with the token, 403 without); the state dir and every dir in it are 0700, its files (log, token
file) 0600.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return out


def _get(url: str, token: str | None) -> int:
    headers = {"Authorization": f"token {token}"} if token else {}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_falkit_lab_token_is_private(tmp_path):
    state = tmp_path / "falkit-state"
    env = dict(os.environ, FALKIT_STATE_DIR=str(state))
    proc = subprocess.Popen([sys.executable, "-m", "falkit.cli", "lab"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 150
        while "JupyterLab on" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                pytest.fail(f"falkit lab exited with {proc.returncode}")
        m = re.search(r"(http://127\.0\.0\.1:\d+/)\S*token=([0-9a-f]+)", line)
        assert m, line
        base, token = m.group(1), m.group(2)
        servers = [c for c in _children(proc.pid) if b"jupyterlab" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert servers, "no JupyterLab child process"
        for pid in servers:
            assert token.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
            assert token.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
        assert _get(f"{base}api/status", token) == 200 and _get(f"{base}api/status", None) == 403

        jup = state / "jupyter"
        assert stat.S_IMODE(jup.stat().st_mode) == 0o700
        for dirpath, dirnames, _files in os.walk(jup):
            for d in dirnames:
                assert stat.S_IMODE(os.lstat(os.path.join(dirpath, d)).st_mode) == 0o700, os.path.join(dirpath, d)
        for name in ("jupyterlab.log", "token"):
            assert stat.S_IMODE((jup / name).stat().st_mode) == 0o600, name
        assert (jup / "token").read_text() == token
        assert token not in (jup / "jupyterlab.log").read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    assert token not in (state / "jupyter" / "jupyterlab.log").read_text()
