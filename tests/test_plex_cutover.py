"""The Plex cutover (issue 14 item 1) on one twin, through ``falkit run`` and the runbook facade.

Covers, in order (each test builds on the lab the previous one left, as an operator's run would):

- ``falkit run`` of 00..50: the volume migration moves the media apps' Longhorn claims to their
  copies but **not** ``media/plex-config``: no ``plex-config-mayastor`` claim, the Kubernetes Plex
  still mounts ``plex-config`` (and Longhorn's manifests are disabled all the same);
- a Plex that does not answer (the container made from an image that runs no Plex —
  ``plex_image=docker.io/library/debian:12``): step ``plex`` stops with a message naming
  ``GET http://10.10.0.30:32400/identity`` and that the Kubernetes Plex is kept; it is there, scaled
  back up and ready; nothing was deleted;
- the cutover (after the operator destroyed that container): ``falkit run --only 60 70`` pulls
  Plex's OCI image (the twin's ``oci-registry-pull``), creates the container with the GPU ``dev0``
  and the library bind mount, copies the library with equal checksums (re-checked here with fresh
  checksum Jobs on both claims), starts the container, and removes the Kubernetes Plex only once it
  answers on port 32400 (the twin's loopback stand-in, reached through connection.json's
  ``address_map``); the hand-off CSVs of the run name the container (DHCP, DNS, tunnel);
- ``rollback-plex`` is refused unless ``rollback=True``; with it the Kubernetes Plex is back with the
  library (checksums equal), the container stopped, not destroyed.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from helpers import patched, write_yaml  # noqa: E402

from falkit import runbook  # noqa: E402
from falkit.clients.kube import checksum_job, job_name, kget, klist, parse_checksum, run_job  # noqa: E402
from falkit.model.errors import FalkitError  # noqa: E402

NS, CLAIM, LIB = "media", "plex-config", "plex-config-lxc"


def _run(params: Path, outputs: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "falkit.cli", "run", "--params", str(params), "--outputs", str(outputs),
                           *args], cwd=ROOT, env=env, text=True, capture_output=True, timeout=900)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A twin in its "before" state, migrated by ``falkit run`` up to 50-mayastor."""
    from falkit.twin import supervisor

    tmp = tmp_path_factory.mktemp("plexcut")
    params = write_yaml(tmp, patched({}))
    state = tmp / "state"
    saved = {k: os.environ.get(k) for k in ("FALKIT_STATE_DIR", "FALKIT_HEADLESS")}
    os.environ.update(FALKIT_STATE_DIR=str(state), FALKIT_HEADLESS="1")
    supervisor.up(params, state="before", state_dir=state / "twin", time_factor=0.0)
    try:
        run = _run(params, tmp / "outputs", "--only", "00", "10", "20", "30", "40", "45", "50")
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        yield {"params": params, "tmp": tmp}
    finally:
        supervisor.down(state / "twin")
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _open(lab, **opts):
    return runbook.open(lab["params"], "twin", time_factor=0.0, wait_timeout_s=60, **opts)


def _plex(api):
    return kget(api, "apps/v1", "Deployment", "plex", NS)


def _checksum(api, claim):
    return parse_checksum(run_job(api, checksum_job(job_name("checksum", claim, str(int(time.time() * 1000) % 100000)),
                                                    NS, claim), 60))


def test_plex_config_is_not_migrated_to_mayastor(lab):
    api = _open(lab).target.kube()
    claims = {p["metadata"]["name"] for p in klist(api, "v1", "PersistentVolumeClaim", NS)}
    assert "sonarr-config-mayastor" in claims  # the other media apps moved
    assert "plex-config-mayastor" not in claims
    vols = _plex(api)["spec"]["template"]["spec"]["volumes"]
    assert [v["persistentVolumeClaim"]["claimName"] for v in vols] == [CLAIM]


def test_plex_that_does_not_answer_keeps_the_kubernetes_plex(lab):
    nb = _open(lab, apply=True, plex_image="docker.io/library/debian:12", plex_answer_timeout_s=2.0)
    nb.step("truenas_plex").apply()
    with pytest.raises(FalkitError) as exc:
        nb.step("plex").apply()
    text = str(exc.value)
    assert "does not answer GET http://10.10.0.30:32400/identity" in text and "the Kubernetes Plex is kept" in text
    api = nb.target.kube()
    plex = _plex(api)
    assert plex is not None and plex["spec"]["replicas"] == 1
    deadline = time.monotonic() + 30
    while int(((_plex(api) or {}).get("status") or {}).get("readyReplicas") or 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert int(_plex(api)["status"].get("readyReplicas") or 0) == 1
    # the operator's fix: remove the container made from the wrong image (as `pct destroy 400` would)
    pve, node = nb.target.pve, nb.target.node
    pve.nodes(node).lxc(400).status.stop.post()
    deadline = time.monotonic() + 30
    while pve.nodes(node).lxc(400).status.current.get()["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.2)
    pve.nodes(node).lxc(400).delete()
    deadline = time.monotonic() + 30
    while any(int(c["vmid"]) == 400 for c in pve.nodes(node).lxc.get()) and time.monotonic() < deadline:
        time.sleep(0.2)


def test_cutover_moves_plex_with_its_library(lab):
    run = _run(lab["params"], lab["tmp"] / "outputs", "--only", "60", "70")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    nb = _open(lab)
    api, pve, node = nb.target.kube(), nb.target.pve, nb.target.node
    assert _plex(api) is None  # no Plex Deployment in Kubernetes
    assert not [d for d in klist(api, "apps/v1", "Deployment") if "pms-docker" in str(d["spec"])]
    ct = {int(c["vmid"]): c for c in pve.nodes(node).lxc.get()}[400]
    cfg = pve.nodes(node).lxc(400).config.get()
    assert ct["status"] == "running"
    assert cfg["dev0"].startswith("/dev/dri/renderD128")
    assert "mp=/config" in cfg["mp1"] and cfg["mp1"].startswith("/mnt/pve/plex-config")
    images = [c["volid"] for c in pve.nodes(node).storage("local").content.get(content="vztmpl")]
    assert "local:vztmpl/pms-docker_latest.tar" in images
    storage = pve.storage("plex-config").get()
    lib = kget(api, "v1", "PersistentVolumeClaim", LIB, NS)
    pv = kget(api, "v1", "PersistentVolume", lib["spec"]["volumeName"])
    assert (storage["type"], storage["server"], storage["export"]) == ("nfs", pv["spec"]["nfs"]["server"],
                                                                      pv["spec"]["nfs"]["path"])
    # the library: equal checksums, recomputed now by the twin's Job controller
    assert _checksum(api, CLAIM) == _checksum(api, LIB)
    assert kget(api, "v1", "PersistentVolumeClaim", CLAIM, NS) is not None  # the old volume is kept
    # Plex answers on its port (through the twin's address map)
    from falkit.steps.plex import identity
    assert identity(nb.target, "10.10.0.30")["machineIdentifier"]
    assert all(c.ok for c in nb.checks("plex")), [c for c in nb.checks("plex") if not c.ok]
    # hand-off tables of the run name the container
    handoff = sorted((lab["tmp"] / "outputs").glob("*/handoff"))[-1]
    rows = {n: list(csv.DictReader((handoff / f"{n}.csv").open())) for n in ("dhcp", "dns", "tunnel")}
    assert {(r["hostname"], r["ip"], r["kind"], r["vmid"]) for r in rows["dhcp"] if r["kind"] == "lxc"} == \
        {("plex", "10.10.0.30", "lxc", "400"), ("plex", "10.11.0.30", "lxc", "400")}
    assert [(r["name"], r["value"], r["service"]) for r in rows["dns"] if r["name"].startswith("plex.")] == \
        [("plex.fal.home.arpa", "10.10.0.30", "lxc/400 (plex)")]
    assert [r["new_origin"] for r in rows["tunnel"] if r["hostname"].startswith("plex.")] == ["http://10.10.0.30:32400"]


def test_rollback_brings_the_kubernetes_plex_back_with_its_library(lab):
    with pytest.raises(FalkitError, match="refused"):
        _open(lab, apply=True).step("rollback-plex").apply()
    assert _plex(_open(lab).target.kube()) is None
    nb = _open(lab, apply=True, rollback=True)
    nb.step("rollback-plex").apply()
    api, pve, node = nb.target.kube(), nb.target.pve, nb.target.node
    plex = _plex(api)
    assert plex is not None and int(plex["status"].get("readyReplicas") or 0) == 1
    assert [v["persistentVolumeClaim"]["claimName"] for v in plex["spec"]["template"]["spec"]["volumes"]] == [CLAIM]
    assert _checksum(api, CLAIM) == _checksum(api, LIB)
    assert {int(c["vmid"]): c["status"] for c in pve.nodes(node).lxc.get()}[400] == "stopped"  # kept, stopped
    assert all(c.ok for c in nb.checks("rollback-plex"))


def test_plex_plan_round_trips_through_json_with_typed_payloads():
    """Pure (no lab): every change of the cutover's plan carries a registered payload with an
    executor (no dict), the plan survives JSON, and what apply needs from the options (the answer
    timeout, the image) is in the plan; a missing container is a Blocked change."""
    import json

    from falkit.model.spec import load_spec
    from falkit.plan.diff import Plan
    from falkit.plan.payloads import Blocked
    from falkit.steps import executors
    from falkit.steps.base import StepOptions
    from falkit.steps.plex import PlexAnswers, PlexFacts, plan_plex
    from falkit.steps.truenas_plex import config_mount_key

    spec = load_spec(ROOT / "parameters" / "fal.yaml")
    plex = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "plex", "namespace": NS},
            "spec": {"replicas": 1, "template": {"spec": {
                "containers": [{"image": "plexinc/pms-docker", "volumeMounts": [{"name": "c", "mountPath": "/config"}]}],
                "volumes": [{"name": "c", "persistentVolumeClaim": {"claimName": CLAIM}}]}}}}
    pvc = {"metadata": {"name": CLAIM, "namespace": NS}, "spec": {"resources": {"requests": {"storage": "5Gi"}}}}
    ct = {"status": "stopped", "config": {config_mount_key(spec): "/mnt/pve/plex-config,mp=/config"}}
    opts = StepOptions(extra={"delete_plex_volume": True, "plex_answer_timeout_s": 7.0})
    plan = plan_plex(spec, PlexFacts((plex,), {(NS, CLAIM): pvc}, ct, None, "refused"), opts)
    assert [(c.op, c.kind) for c in plan.changes] == [
        ("create", "library-claim"), ("action", "library-copy"), ("action", "ct"), ("action", "plex-answers"),
        ("delete", "k8s-workload"), ("delete", "pvc")]
    blocked = plan_plex(spec, PlexFacts((plex,), {(NS, CLAIM): pvc}, None, None), opts)
    assert [type(c.data) for c in blocked.changes] == [Blocked]
    for p in (plan, blocked):
        assert all(not isinstance(c.data, dict) and executors.executable(c) for c in p.changes)
        assert Plan.from_json(json.loads(json.dumps(p.to_json()))) == p
    answers = next(c.data for c in plan.changes if c.kind == "plex-answers")
    assert answers == PlexAnswers("10.10.0.30", 400, 7.0, "docker.io/plexinc/pms-docker:latest")
