"""The whole runbook rehearsed on the twin, end to end, as CI runs it.

Covers (issue 7, "Rehearsal in CI"): the twin starts in its "before" state; the before-state is
recorded (every LoadBalancer service's IP, the claim each workload mounts, a checksum Job per
claim); ``falkit run`` migrates (00 … 60), validates (70: every check passes, or the run fails) and
only shows the rollback plans (80 without ``rollback=true``); a second ``falkit run`` applies
nothing and writes only 70-validation's test objects; then ``falkit run --only 80 --set
rollback=true --set destroy_extra_workers=true --set allow_destructive=true`` rolls back (issue 14
item 2, "a complete rollback"); the before-state is back in every compared field — the before/after
table archived with the run and recomputed by this test has no row that differs, only rows kept by
a stated option (the Mayastor copies with their pools and class: ``delete_migrated_volumes=False``;
the Plex container and the vmbr1 it uses: ``destroy_new_containers=False``), node IPs included; and
the lab says so directly: vmbr0 on 10.30.0.2/24 via 10.30.0.1 and no vmbr1 change beyond the kept
container's, VMs 200/201 on their old MACs without balloon, 201 without net1, 202/203 destroyed,
talos-cp-01/talos-worker-01 answering talosctl at 10.30.0.10/.11 with those InternalIPs, no
Mayastor label on worker-01, no test or fio claim, traefik's service.yaml and the tree as before.
A re-run of the rollback applies nothing. Real processes throughout: the twin on loopback,
papermill kernels, the official clients. ``time_factor`` 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import patched, write_yaml

from falkit.model.spec import load_spec
from falkit.steps.base import StepOptions
from falkit.steps.probes import compare_states
from falkit.steps.rollback import comparison, lab_state, recorded_before
from falkit.steps.rollback.state import COMPARISON_FILE

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 1500  # one `falkit run`; the whole test may take half an hour on a busy 2-core machine


def falkit_run(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "falkit.cli", "run", *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=RUN_TIMEOUT_S)


@pytest.fixture
def lab(tmp_path):
    """The Fal's spec, a twin in its "before" state under a private FALKIT_STATE_DIR (with its own
    GitOps repository, which its Argo CD syncs from), and a connected target; torn down after."""
    from falkit.clients.target import connect
    from falkit.twin import supervisor

    params = write_yaml(tmp_path, patched({}))
    state = tmp_path / "state"
    # the twin's own GitOps repository (the seed's layout), which its Argo CD syncs from
    platform = state / "twin" / "gitops" / "kubernetes" / "platform"
    env = {**os.environ, "FALKIT_STATE_DIR": str(state), "FALKIT_HEADLESS": "1", "PYTHONPATH": str(ROOT)}
    old = os.environ.get("FALKIT_STATE_DIR")
    os.environ["FALKIT_STATE_DIR"] = str(state)
    supervisor.up(params, state="before", state_dir=state / "twin", time_factor=0.0)
    try:
        target = connect(params, "twin", state_dir=state)
        yield {"params": params, "spec": load_spec(params), "target": target, "env": env, "out": tmp_path / "outputs",
               "platform": platform}
        target.close()
    finally:
        supervisor.down(state / "twin")
        if old is None:
            os.environ.pop("FALKIT_STATE_DIR", None)
        else:
            os.environ["FALKIT_STATE_DIR"] = old


def _run_json(out: Path) -> dict:
    runs = sorted(out.glob("*/run.json"))
    assert runs, f"no run archived in {out}"
    return json.loads(runs[-1].read_text())


@pytest.mark.timeout(3600)
def test_migrate_validate_rollback_and_the_before_state_is_back(lab):
    spec, target, env = lab["spec"], lab["target"], lab["env"]
    assert recorded_before(target) is None  # a fresh twin: 10-network records it, as for an operator
    migrated = falkit_run(env, "--params", str(lab["params"]), "--outputs", str(lab["out"]))
    assert migrated.returncode == 0, migrated.stdout[-3000:] + migrated.stderr[-3000:]
    before = recorded_before(target)
    assert before is not None, "10-network's before-state step recorded nothing"
    assert before.service_ips["traefik/traefik"] == "10.30.0.100"
    assert before.checksums, "the before-state has Longhorn volumes with data"
    run = _run_json(lab["out"])
    by_nb = {n["notebook"]: n for n in run["notebooks"]}
    assert by_nb["70-validation"]["status"] == "ok" and by_nb["70-validation"]["checks"]["failed"] == 0
    assert by_nb["70-validation"]["checks"]["ok"] > 40
    assert by_nb["80-rollback"]["applied"] == 0  # a migration run only shows the rollback plans

    # a re-run changes nothing: no step applies anything, and the only API writes are 70-validation's
    # own test objects (a fresh PVC that must bind and take writes, the storage-network ping Jobs);
    # 50-mayastor's benchmarks reuse the first run's results (same storage fingerprint), no fio Job
    again = falkit_run(env, "--params", str(lab["params"]), "--outputs", str(lab["out"]))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    rerun = _run_json(lab["out"])
    assert rerun["id"] != run["id"] and rerun["totals"]["applied_changes"] == 0
    writes = {n["notebook"]: n["mutating_calls"] for n in rerun["notebooks"] if n["mutating_calls"]}
    assert set(writes) == {"70-validation"}, writes
    assert "measured this storage" in (lab["out"] / rerun["id"] / "50-mayastor.ipynb").read_text()
    target.reset_kube()
    mid = lab_state(target, spec)
    assert mid.service_ips["traefik/traefik"] == "10.10.0.80"
    assert not all(c.ok for c in compare_states(before, mid))
    assert not (lab["platform"] / "longhorn-app.yaml").exists()
    # Plex moved out of Kubernetes into its application container (60-truenas-plex's cutover)
    from falkit.steps.plex import plex_state
    plex = plex_state(target, spec)
    assert plex["kubernetes"] == [] and plex["container"] == {"vmid": 400, "status": "running"}, plex
    assert "dev0" in target.pve.nodes(target.node).lxc(400).config.get()  # the 680M's render node
    dhcp = lab["out"] / run["id"] / "handoff" / "dhcp.csv"
    assert dhcp.is_file() and "plex" in dhcp.read_text() and "10.10.0.30" in dhcp.read_text()

    options = ("--set", "rollback=true", "--set", "destroy_extra_workers=true", "--set", "allow_destructive=true")
    rolled = falkit_run(env, "--params", str(lab["params"]), "--outputs", str(lab["out"] / "rollback"), "--only", "80",
                        *options)
    assert rolled.returncode == 0, rolled.stdout[-3000:] + rolled.stderr[-3000:]
    rb = _run_json(lab["out"] / "rollback")["notebooks"][0]
    assert rb["applied"] > 0 and rb["checks"]["failed"] == 0

    # the table archived with the run: nothing differs; what differs is kept by a stated option
    run_dir = next((lab["out"] / "rollback").glob("*/run.json")).parent
    archived = json.loads((run_dir / COMPARISON_FILE).read_text())
    assert archived and not [r for r in archived if r["result"] == "differs"]
    assert "field(s) compared" in (run_dir / "80-rollback.ipynb").read_text()  # the table is shown in the notebook

    target.reset_kube()
    after = lab_state(target, spec)
    assert not [c for c in compare_states(before, after) if not c.ok]
    table = comparison(before, after, StepOptions(extra={"destroy_extra_workers": True}))
    differs = [r for r in table if r["result"] == "differs"]
    assert not differs, differs
    kept = {(r["area"], r["subject"]): r["result"] for r in table if r["result"].startswith("kept")}
    assert {a for a, _s in kept} <= {"claim", "diskpool", "storageclass", "container", "bridge"}, kept
    assert all("delete_migrated_volumes=False" in why for (a, _s), why in kept.items() if a in ("claim", "diskpool"))
    assert all("destroy_new_containers=False" in why for (a, _s), why in kept.items() if a in ("container", "bridge"))
    rows = {(r["area"], r["subject"], r["field"]): r for r in table}
    for name, ip in (("talos-cp-01", "10.30.0.10"), ("talos-worker-01", "10.30.0.11")):
        assert rows[("node", name, "InternalIP")]["after"] == ip and rows[("node", name, "InternalIP")]["result"] == "equal"
        assert target.talos.version(ip)  # talosctl reaches the node at its old address
    # the lab itself, field by field
    net = {i["iface"]: i for i in target.pve.nodes(target.node).network.get()}
    assert net["vmbr0"].get("cidr") == "10.30.0.2/24" and net["vmbr0"].get("gateway") == "10.30.0.1"
    qemu = target.pve.nodes(target.node).qemu
    assert {v["vmid"] for v in qemu.get()} == {200, 201}  # destroy_extra_workers=True
    cfg200, cfg201 = qemu(200).config.get(), qemu(201).config.get()
    assert cfg200["net0"].startswith("virtio=52:54:00:10:30:10,") and cfg201["net0"].startswith("virtio=52:54:00:10:30:11,")
    assert "balloon" not in cfg200 and "balloon" not in cfg201 and "net1" not in cfg201
    api = target.kube()
    from falkit.clients.kube import klist
    nodes = {n["metadata"]["name"]: n for n in klist(api, "v1", "Node")}
    assert set(nodes) == {"talos-cp-01", "talos-worker-01"}
    assert "openebs.io/engine" not in (nodes["talos-worker-01"]["metadata"].get("labels") or {})
    claims = {f'{c["metadata"]["namespace"]}/{c["metadata"]["name"]}' for c in klist(api, "v1", "PersistentVolumeClaim")}
    assert not {c for c in claims if "fio" in c or "falkit-" in c}, claims
    assert (lab["platform"] / "longhorn-app.yaml").exists()
    assert not (lab["platform"] / "mayastor-app.yaml").exists()
    assert '"10.30.0.100"' in (lab["platform"] / "traefik" / "service.yaml").read_text()

    plex = plex_state(target, spec)  # Plex back in Kubernetes with its library (checksums: the table's data rows)
    assert plex["kubernetes"] == ["Deployment/media/plex"] and plex["container"] == {"vmid": 400, "status": "stopped"}, plex

    # a re-run of the rollback changes nothing
    again = falkit_run(env, "--params", str(lab["params"]), "--outputs", str(lab["out"] / "rollback2"), "--only", "80",
                       *options)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    rb2 = _run_json(lab["out"] / "rollback2")["notebooks"][0]
    assert rb2["applied"] == 0 and rb2["checks"]["failed"] == 0
