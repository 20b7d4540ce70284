"""`falkit twin up|status|down|reset` and a second rehearsal through the CLI (issue 12, items 4, 5, 11).

Covers, with real processes (the twin on loopback, papermill kernels, the official clients):

- `twin up` / `twin status` print a table of the twin's components; `-o json` / `--json` print
  JSON; `twin status` exits 3 when the twin is down;
- a second rehearsal starts clean: after a run dirtied the twin's GitOps repository (commits on
  `falkit/migration`) and its private state (talosconfig, kubeconfig, Talos secrets), `twin down` +
  `twin up` (fresh by default) and `twin reset` restore both to the start state, and `falkit run`
  migrates again without a hang;
- the old behaviour, still available as `twin up --no-fresh`, no longer hangs 600 s: 40-cilium's
  Argo CD wait fails fast, naming the Application, the object, the fields Git wants and
  `falkit twin reset`, and says what it waits for while it waits (lines every
  `$FALKIT_WAIT_REPORT_S` seconds);
- `falkit runs --json`, `falkit runs RUN` (one run) and `falkit run --only preflight network
  --no-apply` (names without numbers; the planned changes listed per notebook).
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAL = ROOT / "parameters" / "fal.yaml"
TO_40 = ["--only", "network", "vms", "talos", "cilium"]  # 10 … 40: far enough to commit to the GitOps repo
SLOW = pytest.mark.timeout(1200)  # a partial rehearsal takes minutes on a loaded machine


def falkit(env: dict, *args: str, timeout: float = 1100) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "falkit.cli", *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=timeout)


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A private FALKIT_STATE_DIR and outputs dir; the twin is stopped at the end."""
    base = tmp_path_factory.mktemp("cli-twin")
    env = {**os.environ, "FALKIT_STATE_DIR": str(base / "state"), "FALKIT_HEADLESS": "1", "PYTHONPATH": str(ROOT),
           "FALKIT_WAIT_REPORT_S": "2"}
    env.pop("FALKIT_RUN_DIR", None)
    try:
        yield {"env": env, "state": base / "state" / "twin", "out": base / "outputs"}
    finally:
        falkit(env, "twin", "down", timeout=60)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def commits(state: Path) -> list[str]:
    return git(state / "gitops", "log", "--format=%s", "--all").splitlines()


def private(state: Path) -> set[str]:
    d = state / "private" / "the-fal"
    return {p.name for p in d.iterdir()} if d.is_dir() else set()


def traefik_ip(state: Path) -> list[str]:
    conn = json.loads((state / "connection.json").read_text())
    url = conn["kubernetes"]["server"] + "/api/v1/namespaces/traefik/services/traefik"
    kc = json.loads(Path(conn["kubernetes"]["kubeconfig"]).read_text())  # the twin's admin token and CA
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {kc['users'][0]['user']['token']}"})
    tls = ssl.create_default_context(cadata=base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"]).decode())
    with urllib.request.urlopen(req, timeout=10, context=tls) as r:  # the twin's Kubernetes API, loopback
        svc = json.loads(r.read())
    return [i.get("ip") for i in (svc.get("status", {}).get("loadBalancer", {}).get("ingress") or [])]


def test_twin_up_and_status_print_tables_and_json(lab):
    env = lab["env"]
    down = falkit(env, "twin", "status")
    assert down.returncode == 3 and "the twin is down" in down.stdout
    up = ok(falkit(env, "twin", "up", "--params", str(FAL), timeout=120))
    head = up.stdout.splitlines()
    assert head[0] == "the twin is up:"
    assert head[1].split() == ["COMPONENT", "ENDPOINT", "PROCESS", "PID", "STATE"]
    assert any(line.startswith("proxmox") and "https://127.0.0.2:" in line and "running" in line for line in head)
    assert any(line.startswith("kubernetes") and "https://127.0.0.1:" in line for line in head)
    assert "`falkit twin down` stops it" in up.stdout and not up.stdout.lstrip().startswith("{")

    st = ok(falkit(env, "twin", "status"))
    assert st.stdout.splitlines()[1].split() == ["COMPONENT", "ENDPOINT", "PROCESS", "PID", "STATE"]
    for flags in (["-o", "json"], ["--json"]):
        data = json.loads(ok(falkit(env, "twin", "status", *flags)).stdout)
        assert data["up"] is True and data["processes"]["pve"]["alive"] is True
    again = json.loads(ok(falkit(env, "twin", "up", "--params", str(FAL), "-o", "json")).stdout)
    assert again["already_up"] is True and again["kubernetes"]["server"].startswith("https://127.0.0.1:")


@SLOW
def test_a_rehearsal_dirties_the_gitops_repository_and_private_state(lab):
    env, state, out = lab["env"], lab["state"], str(lab["out"])
    ok(falkit(env, "twin", "up", "--params", str(FAL), timeout=120))
    assert len(commits(state)) == 1 and "talosconfig" not in private(state)
    ok(falkit(env, "run", *TO_40, "--outputs", out))
    lab["dirty"] = dirty = commits(state)
    assert len(dirty) > 1 and git(state / "gitops", "branch", "--show-current") == "falkit/migration"
    assert {"talosconfig", "talos-secrets.yaml", "kubeconfig"} <= private(state)


@SLOW
def test_a_kept_repository_fails_fast_with_the_reason_instead_of_hanging(lab):
    """The old behaviour, kept only on request: the migrated repository meets a "before" lab."""
    env, state, out = lab["env"], lab["state"], str(lab["out"])
    ok(falkit(env, "twin", "down"))
    kept = ok(falkit(env, "twin", "up", "--params", str(FAL), "--no-fresh", timeout=120))
    assert "removed what the last twin left" not in kept.stdout and commits(state) == lab["dirty"]
    # --no-fresh keeps the private state too (the migrated cluster's Talos secrets), and 30-talos
    # rightly refuses those for the "before" lab's cluster; this test is about the kept repository
    # alone, so the private state goes (as `falkit twin up` without --no-fresh would remove it)
    assert {"talos-secrets.yaml", "talosconfig"} <= private(state)
    for f in (state / "private" / "the-fal").iterdir():
        if f.is_file() and f.name != "run.lock":
            f.unlink()
    t0 = time.monotonic()
    stuck = falkit(env, "run", *TO_40, "--outputs", out, "--set", "wait_timeout_s=600", timeout=1100)
    took = time.monotonic() - t0
    assert stuck.returncode == 1, stuck.stdout[-3000:] + stuck.stderr[-3000:]
    run = json.loads(sorted(lab["out"].glob("*/run.json"))[-1].read_text())
    cilium = next(n for n in run["notebooks"] if n["notebook"] == "40-cilium")
    assert cilium["duration_s"] < 200, f"40-cilium took {cilium['duration_s']} s ({took:.0f} s in all): it must fail fast"
    assert "40-cilium failed" in stuck.stderr and "SyncTimeoutError: Argo CD reports traefik Synced" in stuck.stderr
    assert "metadata.annotations.metallb.universe.tf/loadBalancerIPs: live '10.30.0.100', Git absent" in stuck.stderr
    assert "`falkit twin reset` starts it clean" in stuck.stderr
    # a line at least every FALKIT_WAIT_REPORT_S (2 s) while stuck, naming what it waits for: the
    # executor's progress bar ("Argo CD sync of traefik: …", the time waited in its message) or,
    # without a bar, WaitReporter's own "waiting for Argo CD to sync traefik …" line
    waiting = [line for line in stuck.stdout.splitlines()
               if "waiting for Argo CD to sync traefik" in line
               or ("Argo CD sync of traefik" in line and "(waiting " in line and "Service traefik/traefik" in line)]
    assert len(waiting) >= 3, stuck.stdout[-3000:]


@SLOW
def test_twin_reset_restores_the_start_state_and_the_next_rehearsal_goes_through(lab):
    env, state, out = lab["env"], lab["state"], str(lab["out"])
    reset = ok(falkit(env, "twin", "reset", "--params", str(FAL), timeout=180))
    assert "reset to its start state" in reset.stdout and "removed what the last twin left: gitops" in reset.stdout
    assert commits(state) == ["platform (before the migration)"]
    assert git(state / "gitops", "branch", "--show-current") == "main"
    assert not private(state) & {"talosconfig", "talos-secrets.yaml", "kubeconfig"}
    assert traefik_ip(state) == ["10.30.0.100"]  # not <pending>: the before lab's MetalLB address
    ok(falkit(env, "run", *TO_40, "--outputs", out, timeout=1100))  # the second rehearsal goes through


def test_twin_down_and_up_is_fresh_by_default(lab):
    env, state = lab["env"], lab["state"]
    assert len(commits(state)) > 1  # the rehearsal above committed
    ok(falkit(env, "twin", "down"))
    fresh = ok(falkit(env, "twin", "up", "--params", str(FAL), timeout=120))
    assert "removed what the last twin left: gitops" in fresh.stdout
    assert commits(state) == ["platform (before the migration)"] and traefik_ip(state) == ["10.30.0.100"]
    assert not private(state) & {"talosconfig", "talos-secrets.yaml", "kubeconfig"}


def test_twin_reset_is_refused_while_a_run_holds_the_lock(lab):
    env, state = lab["env"], lab["state"]
    lock = state / "private" / "the-fal" / "run.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(json.dumps({"pid": sleeper.pid, "host": "h", "time": "t", "command": "falkit run"}))
        r = falkit(env, "twin", "reset", "--params", str(FAL), timeout=60)
        assert r.returncode == 1 and "the twin is in use" in r.stderr and str(sleeper.pid) in r.stderr
        assert ok(falkit(env, "twin", "status")).returncode == 0  # still up, untouched
    finally:
        sleeper.kill()
        sleeper.wait()
        lock.unlink(missing_ok=True)


def test_runs_json_and_one_run(lab):
    env, out = lab["env"], lab["out"]
    rows = json.loads(ok(falkit(env, "runs", "--outputs", str(out), "--json")).stdout)
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    failed = rows[1]["run"]
    one = ok(falkit(env, "runs", failed, "--outputs", str(out))).stdout
    assert f"run       {failed}" in one and "status    failed" in one
    assert any(line.split()[:2] == ["40-cilium", "failed"] and "SyncTimeoutError" in line for line in one.splitlines())
    assert "to resume: falkit run --resume" in one
    data = json.loads(ok(falkit(env, "runs", failed, "--outputs", str(out), "-o", "json")).stdout)
    assert data["status"] == "failed" and data["failed"]["notebook"] == "40-cilium"
    missing = falkit(env, "runs", "nope", "--outputs", str(out))
    assert missing.returncode == 2 and "no run 'nope'" in missing.stderr


def test_run_no_apply_lists_what_it_would_change_by_notebook_name(lab):
    env, out = lab["env"], lab["out"]
    r = ok(falkit(env, "run", "--only", "preflight", "network", "--no-apply", "--outputs", str(out)))
    assert "10 notebook(s)" not in r.stdout and "2 notebook(s)" in r.stdout
    listing = r.stdout.split("What --apply would change", 1)[1]
    assert "\n00-preflight\n  nothing to change" in listing
    # 10-network records the before-state first (for 80-rollback), then the bridges
    assert "\n10-network\n  before-state: 1 change(s)" in listing and "\n  network: 4 change(s)" in listing
    assert "+ before-state before-state.json" in listing
    assert "~ bridge vmbr0 cidr: 10.30.0.2/24 -> 10.10.0.2/24" in listing
    assert "5 change(s) planned in 2 notebook(s)" in listing
    # nothing was applied: the bridge is still on the old network
    again = ok(falkit(env, "run", "--only", "10-network", "--no-apply", "--outputs", str(out)))
    assert "~ bridge vmbr0 cidr: 10.30.0.2/24 -> 10.10.0.2/24" in again.stdout
