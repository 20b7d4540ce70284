"""Fault messages that name the cause (issue 16 item 8), through `falkit run` on the twin with the
twin's own fault API (as tests/test_faults_rehearsal.py does), after one run of 00 … 45.

Covers, in order on one twin:
- a Kubernetes API 503 burst during 50-mayastor: the failure names the HTTP method and the API path
  that failed, and prints exactly one "to resume" line (with the run's directory, never a literal
  ``RUN``);
- the kernel killed while 50-mayastor's Mayastor step is applying (io-engine crash-looping keeps it
  waiting): the runner names the notebook, the cell that was running (not "before any cell ran")
  and what had been applied (the step cut off, the journal's mutating calls);
- an io-engine crash (CrashLoopBackOff on talos-worker-02): the failure names the node and
  CrashLoopBackOff;
- the runner itself killed (SIGKILL): `falkit runs` and run.json say "interrupted", not "running".
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_rehearsal import ROOT, falkit_run, lab  # noqa: F401 - the twin fixture

from falkit.twin.lab.client import LabClient

FIRST = ("--only", "00", "10", "20", "30", "40", "45")


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


def _kernels(pid: int) -> list[int]:
    return [c for c in _children(pid) if b"ipykernel" in Path(f"/proc/{c}/cmdline").read_bytes()]


def _popen(env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "falkit.cli", "run", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _result(out: Path) -> dict:
    for f in out.glob("*/50-mayastor.result.json"):
        try:
            return json.loads(f.read_text())
        except ValueError:
            return {}
    return {}


def test_fault_messages_name_the_cause(lab):  # noqa: F811
    env, out = lab["env"], lab["out"]
    faults = LabClient(lab["target"].connection)
    params = ("--params", str(lab["params"]))
    pre = falkit_run(env, *params, "--outputs", str(out / "pre"), *FIRST, "--set", "wait_timeout_s=20")
    assert pre.returncode == 0, pre.stdout[-2000:] + pre.stderr[-2000:]

    # 1. a 503 burst: method and API path, one resume line
    faults.fault("kube_http_error", status=503, count=500)
    burst = falkit_run(env, *params, "--outputs", str(out / "burst"), "--only", "50", "--set", "wait_timeout_s=20")
    faults.clear_faults()
    assert burst.returncode == 1, burst.stdout[-2000:]
    assert re.search(r"Service Unavailable on (GET|POST|PATCH|PUT|DELETE) /\S+", burst.stderr), burst.stderr
    assert burst.stderr.count("to resume") == 1 and "--resume RUN" not in burst.stderr, burst.stderr
    assert "falkit run --resume " + str(next((out / "burst").glob("*/run.json")).parent) in burst.stderr

    # 2. the kernel killed while the Mayastor step applies (io-engine crash-looping keeps it waiting)
    faults.fault("io_engine_crash", node="talos-worker-02")
    proc = _popen(env, *params, "--outputs", str(out / "killed"), "--only", "50", "--set", "wait_timeout_s=600")
    try:
        _wait_for(lambda: ((_result(out / "killed").get("steps") or {}).get("mayastor") or {}).get("status") == "applying",
                  300, "the Mayastor step applying")
        time.sleep(2)  # let it make some changes before it waits
        kernels = _wait_for(lambda: _kernels(proc.pid), 30, "the notebook kernel")
        for k in kernels:
            os.kill(k, signal.SIGKILL)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == 1, err
    assert "before any cell ran" not in err, err
    assert re.search(r"falkit: 50-mayastor failed at cell \d+ \(In \[[\d?]+\]: lab\.step\(\"mayastor\"\)\.apply\(\)\)", err), err
    assert "applied before it stopped" in err and "mayastor: was applying" in err and "mutating API call(s)" in err, err
    assert err.count("to resume") == 1, err

    # 3. io-engine crash-looping: the node and CrashLoopBackOff are named
    crash = falkit_run(env, *params, "--outputs", str(out / "crash"), "--only", "50", "--set", "wait_timeout_s=20")
    assert crash.returncode == 1, crash.stdout[-2000:]
    assert "talos-worker-02" in crash.stderr and "CrashLoopBackOff" in crash.stderr, crash.stderr
    faults.clear_faults()

    # 4. the runner killed: "interrupted", not "running" forever
    proc = _popen(env, *params, "--outputs", str(out / "dead"), "--only", "50", "--set", "wait_timeout_s=20")
    try:
        run_json = _wait_for(lambda: next((out / "dead").glob("*/run.json"), None), 120, "run.json")
        _wait_for(lambda: _kernels(proc.pid), 60, "the notebook kernel")
        kernels = _kernels(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        for k in kernels:
            os.kill(k, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert json.loads(run_json.read_text())["status"] == "running"  # as the killed runner left it
    runs = subprocess.run([sys.executable, "-m", "falkit.cli", "runs", "--outputs", str(out / "dead")], cwd=ROOT, env=env,
                          text=True, capture_output=True, timeout=60)
    assert runs.returncode == 0, runs.stderr
    row = next(x for x in runs.stdout.splitlines() if run_json.parent.name in x)
    assert "interrupted" in row and "running" not in row, runs.stdout
    stored = json.loads(run_json.read_text())
    assert stored["status"] == "interrupted" and stored["failed"]["notebook"] == "50-mayastor"
