"""`falkit bench --local` through the CLI (issue 12, item 5): it checks free space before writing
(a refusal naming the bytes needed and available, nothing written), shows progress on stderr while
fio lays out and uses its file (stdout stays JSON with --json), and removes its file when it is
stopped with SIGTERM or SIGINT (and stops fio) or when an exception ends the run. Real fio."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from falkit.bench.fio import FioError
from falkit.bench.local import HEADROOM_BYTES, run_local

ROOT = Path(__file__).resolve().parents[2]
needs_fio = pytest.mark.skipif(shutil.which("fio") is None, reason="fio not installed (apt-get install fio)")
MIB = 1024 ** 2


def bench(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "falkit.cli", "bench", "--local", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=120, **kw)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def fio_children(pid: int) -> list[int]:
    """pids of the fio processes below ``pid`` (its children and theirs: fio forks one per job)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*/children") if Path(f"/proc/{p}").exists() else []:
            try:
                kids = [int(k) for k in task.read_text().split()]
            except OSError:
                continue
            todo += kids
            found += [k for k in kids if _comm(k) == "fio"]
    return found


def holders(path_prefix: str) -> list[int]:
    """pids with a file descriptor open on a path starting with ``path_prefix``."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(path_prefix):
                    out.append(int(pid))
                    break
            except OSError:
                continue
    return out


@needs_fio
def test_refuses_when_the_file_does_not_fit_and_writes_nothing(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    size_mib = free // MIB + 1024
    r = bench("--dir", str(tmp_path), "--size-mib", str(size_mib))
    assert r.returncode == 1, r.stdout + r.stderr
    needed = size_mib * MIB + HEADROOM_BYTES
    assert f"not enough free space in {tmp_path}" in r.stderr
    assert f"needs {needed:,} bytes" in r.stderr and " bytes (" in r.stderr.split("available")[0]
    assert "available" in r.stderr and "--size-mib" in r.stderr
    assert list(tmp_path.iterdir()) == []


@needs_fio
def test_progress_on_stderr_json_on_stdout(tmp_path):
    r = bench("--dir", str(tmp_path), "--json", "--progress-every", "0.3")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["meta"]["size_mib"] == 64 and len(doc["results"]) >= 5
    lines = [x for x in r.stderr.splitlines() if x.startswith("fio: ")]
    assert len(lines) >= 5, r.stderr
    assert lines[0].startswith(f"fio: laying out its data file {tmp_path}/falkit-fio-") and "of 64 MiB" in lines[0]
    assert any(x.startswith("fio: running ") and "job(s) on" in x and "of about" in x for x in lines)
    assert list(tmp_path.iterdir()) == []


def _sigint_default() -> None:
    """The CLI as a terminal starts it: SIGINT at its default. A shell without job control starts
    background commands with SIGINT ignored (POSIX, "Signals" in bash(1)), and Python then installs
    no KeyboardInterrupt handler — a test run in such a background job would send Ctrl-C into the void."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@needs_fio
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_removes_the_file_and_stops_fio(tmp_path, sig, code):
    proc = subprocess.Popen([sys.executable, "-m", "falkit.cli", "bench", "--local", "--dir", str(tmp_path),
                             "--progress-every", "0.2"], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=_sigint_default)
    try:
        deadline = time.monotonic() + 60
        line = ""
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if line.startswith("fio: running ") or not line:
                break
        assert line.startswith("fio: running "), line
        data = [p for p in tmp_path.iterdir() if p.name.startswith("falkit-fio-")]
        assert len(data) == 1 and data[0].stat().st_size == 64 * MIB
        # fio runs as a child of the CLI; it opens the file per job (between two jobs it may hold
        # none for a moment), so wait for the child itself, on a deadline of its own (CI was slow
        # enough once that a shared 60 s deadline ran out during the layout)
        until = time.monotonic() + 30
        fio = []
        while not fio and proc.poll() is None and time.monotonic() < until:
            fio = fio_children(proc.pid)
            time.sleep(0.02)
        assert fio, f"fio was not running (exit {proc.poll()}): " + (proc.stderr.read() if proc.poll() is not None else "")
        proc.send_signal(sig)
        assert proc.wait(30) == code, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert list(tmp_path.iterdir()) == []
    assert holders(str(data[0])) == [], "fio must be stopped, not left writing a deleted file"
    assert not [p for p in fio if _comm(p) == "fio" and _state(p) not in ("Z", "X")], "fio must be stopped"


@needs_fio
def test_an_exception_removes_the_file(tmp_path):
    with pytest.raises(FioError, match="did not finish within"):
        run_local(tmp_path, profile="quick", timeout_s=0.5)
    assert list(tmp_path.iterdir()) == []
