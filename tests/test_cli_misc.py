"""The command line's manners (issue 12, item 11), each through the CLI as a user runs it:

- `falkit plan --json | head` ends quietly when the reader goes away (no BrokenPipe traceback);
- `falkit run --only NAME` takes notebook names without their number; a name that matches no
  notebook is refused with the list of notebooks, before anything runs;
- every option of every command has help text;
- SIGTERM to `falkit lab` stops JupyterLab and its kernels (real processes);
- plain papermill from the repository root on a notebook (params ``../parameters/fal.yaml``) fails
  with a message saying to use ``--cwd notebooks``; with it, a notebook that started a twin says
  so and how to stop it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from falkit.cli import build_parser, resolve_only

ROOT = Path(__file__).resolve().parents[1]


def env_with(tmp_path: Path) -> dict:
    env = {**os.environ, "FALKIT_STATE_DIR": str(tmp_path / "state"), "PYTHONPATH": str(ROOT)}
    env.pop("FALKIT_RUN_DIR", None)
    return env


def test_plan_json_into_a_closed_pipe_ends_without_a_traceback(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "falkit.cli", "plan", "--json"], cwd=ROOT, env=env_with(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the reader is gone before falkit writes (as `| head` after its lines)
    err = proc.stderr.read()
    rc = proc.wait(60)
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err, err
    assert rc == 141
    head = subprocess.run(f"'{sys.executable}' -m falkit.cli plan --json | head -3", shell=True, cwd=ROOT,
                          env=env_with(tmp_path), capture_output=True, text=True, timeout=60)
    assert head.stdout.splitlines()[0] == "{" and "Traceback" not in head.stderr, head.stderr


def test_only_takes_names_and_refuses_unknown_ones_with_the_list(tmp_path):
    assert resolve_only(["truenas-plex", "preflight", "40", "45-argocd.ipynb"]) == [
        "00-preflight", "40-cilium", "45-argocd", "60-truenas-plex"]  # in notebook order
    assert resolve_only(["4"]) == ["40-cilium", "45-argocd"]  # a prefix, as before
    r = subprocess.run([sys.executable, "-m", "falkit.cli", "run", "--only", "preflite", "--outputs",
                        str(tmp_path / "out")], cwd=ROOT, env=env_with(tmp_path), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert "--only 'preflite' names no notebook" in r.stderr and "nothing was run" in r.stderr
    names = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
    assert "the notebooks in" in r.stderr and all(n in r.stderr for n in names)
    assert not (tmp_path / "state").exists() and not (tmp_path / "out").exists()  # no twin, no archive


def test_every_option_has_help():
    def walk(parser: argparse.ArgumentParser, path: str):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, f"{path} {name}")
            elif not isinstance(action, argparse._HelpAction):
                yield path, action

    missing = [f"{path} {'/'.join(a.option_strings) or a.dest}" for path, a in walk(build_parser(), "falkit")
               if not a.help]
    assert missing == []
    text = subprocess.run([sys.executable, "-m", "falkit.cli", "run", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60).stdout
    assert re.search(r"--params PARAMS\s+the lab spec", text) and re.search(r"--outputs OUTPUTS\s+the archive", text)
    lab = subprocess.run([sys.executable, "-m", "falkit.cli", "lab", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60).stdout
    assert re.search(r"--port PORT\s+the port on 127\.0\.0\.1", lab)


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _pids_with(text: str) -> list[int]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            out.append(int(pid))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_sigterm_stops_jupyterlab_and_its_kernels(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "falkit.cli", "lab"], cwd=ROOT, env=env_with(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server = kernel = None
    try:
        line = proc.stdout.readline()
        m = re.search(r"(http://127\.0\.0\.1:\d+/)\S*token=(\w+)", line)
        assert m, line + proc.stderr.read() if proc.poll() is not None else line
        url, token = m.groups()
        # the server falkit lab started (its token is in a 0600 file, never on the command line)
        server = next(p for p in _pids_with("jupyterlab") if _ppid(p) == proc.pid)
        req = urllib.request.Request(url + "api/kernels", data=b"{}", method="POST",
                                     headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=60) as r:
            kid = json.loads(r.read())["id"]
        deadline = time.monotonic() + 60
        while not kernel and time.monotonic() < deadline:
            kernel = next(iter(_pids_with(f"kernel-{kid}.json")), None)
            time.sleep(0.2)
        assert kernel and _alive(kernel) and _alive(server)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 143
        deadline = time.monotonic() + 10
        while (_alive(server) or _alive(kernel)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(server), "JupyterLab still runs after SIGTERM to falkit lab"
        assert not _alive(kernel), "its kernel still runs after SIGTERM to falkit lab"
    finally:
        for pid in (kernel, server):
            if pid and _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def papermill_env(tmp_path):
    env = env_with(tmp_path)
    env["FALKIT_HEADLESS"] = "1"
    try:
        yield env
    finally:
        subprocess.run([sys.executable, "-m", "falkit.cli", "twin", "down"], cwd=ROOT, env=env, capture_output=True,
                       timeout=60)


def test_papermill_from_the_repository_root(tmp_path, papermill_env):
    papermill = [sys.executable, "-m", "papermill", "--kernel", "python3"]
    nb = "notebooks/00-preflight.ipynb"
    wrong = subprocess.run([*papermill, nb, str(tmp_path / "wrong.ipynb"), "-p", "target", "twin"], cwd=ROOT,
                           env=papermill_env, capture_output=True, text=True, timeout=300)
    said = wrong.stdout + wrong.stderr
    assert wrong.returncode != 0 and "ParameterError: params: no such lab file" in said
    assert "`papermill --cwd notebooks notebooks/00-preflight.ipynb out.ipynb`" in said
    assert "-p params parameters/fal.yaml" in said
    assert not (tmp_path / "state" / "twin" / "connection.json").exists()

    right = subprocess.run([*papermill, "--cwd", "notebooks", nb, str(tmp_path / "ok.ipynb"), "-p", "target", "twin"],
                           cwd=ROOT, env=papermill_env, capture_output=True, text=True, timeout=300)
    assert right.returncode == 0, right.stderr[-3000:]
    out = nbformat.read(tmp_path / "ok.ipynb", as_version=4)
    said = "".join(o.get("text", "") for c in out.cells for o in c.get("outputs", []) if o.get("name") == "stderr")
    assert "falkit twin: started a twin in its 'before' state" in said
    assert f"stop it with `FALKIT_STATE_DIR={tmp_path / 'state'} falkit twin down`" in said
    assert (tmp_path / "state" / "twin" / "connection.json").exists()  # it is still up, as it said


def test_no_apply_listing_shows_refusals_from_the_results(tmp_path):
    """`would_change` reads each notebook's result: changes, a refused step's status, notes."""
    from falkit.cli import would_change

    change = {"op": "update", "kind": "vm-config", "name": "talos-cp-01", "field": "net0", "old": "virtio=A",
              "new": "virtio=B", "flags": "disruptive", "reason": "MAC change"}
    (tmp_path / "20-vms.result.json").write_text(json.dumps({"steps": {"vms": {
        "planned": [change], "status": "refused: 1 disruptive change(s) need allow_disruptive=True",
        "notes": ["bridge vmbr1 is missing: run 10-network first"]}}}))
    run = {"notebooks": [{"notebook": "20-vms", "status": "ok"}]}
    text = would_change(run, tmp_path)
    assert "  vms: 1 change(s) — refused: 1 disruptive change(s) need allow_disruptive=True" in text
    assert "    ~ vm-config talos-cp-01 net0: virtio=A -> virtio=B  [disruptive]  (MAC change)" in text
    assert "    note: bridge vmbr1 is missing: run 10-network first" in text
