"""The real ``kubectl`` against the twin after a whole ``falkit run``, as against a cluster (issue 15
item 6).

Covers: the seed's validation commands (``get nodes -o wide``, ``get pods -A``, ``get svc -A``,
``get sc``, ``get pvc -A``, ``get pv``, ``get ds -A``, ``get deploy -A``, ``get diskpool -n
mayastor``, ``get ciliumloadbalancerippool``) print the columns the apiserver's printers give (the
emulator's server-side Table output: ``falkit/twin/kube/table.py``), with real values (node
addresses and OS image, pod STATUS reasons, LoadBalancer IPs, the Mayastor StorageClass, Cilium
pools' CONFLICTING / IPS AVAILABLE, ages instead of raw timestamps, one AGE column);
``kubectl apply -f`` of the seed's StorageClass and test PVC with validation on (the emulator's
OpenAPI v3 documents tell kubectl the server validates fields, so a misspelt field is refused with
the server's "strict decoding error"); ``kubectl explain`` of built-in kinds and CRDs.

kubectl is the binary on this machine (``/usr/bin/kubectl``); if it is missing the module is skipped
saying so (install Debian's ``kubernetes-client``). One ``falkit run`` (~1-2 min) serves every test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from helpers import patched, write_yaml  # noqa: E402

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed on this machine (Debian: "
                                                        "apt-get install kubernetes-client)")

SEED_PVC = """apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: test-pvc
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 1Gi
  storageClassName: mayastor-3
"""


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """A twin in its "before" state, migrated by one whole ``falkit run``; yields a kubectl runner."""
    from falkit.model.spec import load_spec
    from falkit.twin import supervisor

    tmp = tmp_path_factory.mktemp("kubectl")
    params = write_yaml(tmp, patched({}))
    state = tmp / "state"
    env = {**os.environ, "FALKIT_STATE_DIR": str(state), "FALKIT_HEADLESS": "1", "PYTHONPATH": str(ROOT)}
    old = os.environ.get("FALKIT_STATE_DIR")
    os.environ["FALKIT_STATE_DIR"] = str(state)
    conn = supervisor.up(params, state="before", state_dir=state / "twin", time_factor=0.0)
    try:
        run = subprocess.run([sys.executable, "-m", "falkit.cli", "run", "--params", str(params), "--outputs",
                              str(tmp / "outputs")], cwd=ROOT, env=env, text=True, capture_output=True, timeout=900)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        kenv = {"HOME": str(tmp), "PATH": "/usr/bin:/bin", "KUBECACHEDIR": str(tmp / "kube-cache"),
                "KUBECONFIG": conn["kubernetes"]["kubeconfig"]}

        def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
            out = subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True, timeout=60,
                                 env=kenv)
            if check:
                assert out.returncode == 0, f"kubectl {' '.join(args)}: {out.stderr}"
            return out
        yield {"kubectl": kubectl, "spec": load_spec(params), "tmp": tmp}
    finally:
        supervisor.down(state / "twin")
        if old is None:
            os.environ.pop("FALKIT_STATE_DIR", None)
        else:
            os.environ["FALKIT_STATE_DIR"] = old


def table(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """kubectl's column output as (headers, rows of header -> cell), cut at the header's column starts
    (cells may be empty, so splitting on blanks would shift them)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"(?:(?<=^)|(?<=\s{2}))\S", header)]
    names = [header[s:e].strip() for s, e in zip(starts, starts[1:] + [len(header) + 1000], strict=True)]
    rows = []
    for ln in lines[1:]:
        cells = [ln[s:e].strip() for s, e in zip(starts, starts[1:] + [len(ln) + 1000], strict=True)]
        rows.append(dict(zip(names, cells, strict=True)))
    return names, rows


AGE = re.compile(r"^\d+[smhdy](\d+[smh])?$")


def test_get_nodes_wide(ran):
    names, rows = table(ran["kubectl"]("get", "nodes", "-o", "wide").stdout)
    assert names == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE",
                     "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    workers = {r["NAME"]: r for r in rows if "worker" in r["NAME"]}
    assert len(workers) == 3, rows
    for r in workers.values():
        assert r["STATUS"] == "Ready" and AGE.match(r["AGE"]) and r["VERSION"].startswith("v1.")
        assert re.fullmatch(r"10\.10\.0\.\d+", r["INTERNAL-IP"]) and r["EXTERNAL-IP"] == "<none>"
        assert r["OS-IMAGE"].startswith("Talos (v") and r["KERNEL-VERSION"].endswith("-talos")
        assert r["CONTAINER-RUNTIME"].startswith("containerd://")
    assert any("control-plane" in r["ROLES"] for r in rows)


def test_get_pods_all_namespaces(ran):
    names, rows = table(ran["kubectl"]("get", "pods", "-A").stdout)
    assert names == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    statuses = {r["STATUS"] for r in rows}
    assert "Running" in statuses, statuses
    for r in rows:
        assert re.fullmatch(r"\d+/\d+", r["READY"]) and re.fullmatch(r"\d+( \(.+ ago\))?", r["RESTARTS"])
        assert AGE.match(r["AGE"]), r
        assert re.fullmatch(r"Running|Completed|Pending|ContainerCreating|Init:\d+/\d+|Init:\w+|CrashLoopBackOff|"
                            r"Error|Terminating|Succeeded", r["STATUS"]), r
    engines = [r for r in rows if r["NAMESPACE"] == "mayastor" and "io-engine" in r["NAME"]]
    assert len(engines) == 3 and all(r["STATUS"] == "Running" and r["READY"].split("/")[0] == r["READY"].split("/")[1]
                                     for r in engines), engines
    wide_names, _ = table(ran["kubectl"]("get", "pods", "-A", "-o", "wide").stdout)
    assert wide_names[-4:] == ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]


def test_get_services(ran):
    names, rows = table(ran["kubectl"]("get", "svc", "-A").stdout)
    assert names == ["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    by = {(r["NAMESPACE"], r["NAME"]): r for r in rows}
    assert by[("default", "kubernetes")]["TYPE"] == "ClusterIP" and by[("default", "kubernetes")]["PORT(S)"] == "443/TCP"
    lb = [r for r in rows if r["TYPE"] == "LoadBalancer"]
    # an address from Cilium's pools, or <pending> (Longhorn's UI lost MetalLB's pool with the migration)
    assert lb and all(re.fullmatch(r"\d+\.\d+\.\d+\.\d+|<pending>", r["EXTERNAL-IP"]) for r in lb), lb
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", by[("traefik", "traefik")]["EXTERNAL-IP"])
    assert re.fullmatch(r"80:\d+/TCP,443:\d+/TCP", by[("traefik", "traefik")]["PORT(S)"])


def test_get_storageclasses_claims_volumes(ran):
    k = ran["kubectl"]
    names, rows = table(k("get", "sc").stdout)
    assert names == ["NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE", "ALLOWVOLUMEEXPANSION", "AGE"]
    sc = {r["NAME"].removesuffix(" (default)"): r for r in rows}
    assert sc["mayastor-3"]["PROVISIONER"] == "io.openebs.csi-mayastor"
    assert sc["mayastor-3"]["RECLAIMPOLICY"] == "Delete" and sc["mayastor-3"]["VOLUMEBINDINGMODE"] in (
        "Immediate", "WaitForFirstConsumer")
    assert sc["mayastor-3"]["ALLOWVOLUMEEXPANSION"] in ("true", "false")
    names, rows = table(k("get", "pvc", "-A").stdout)
    assert names == ["NAMESPACE", "NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS",
                     "VOLUMEATTRIBUTESCLASS", "AGE"]
    bound = [r for r in rows if r["STATUS"] == "Bound"]
    assert bound and all(r["VOLUME"] and r["ACCESS MODES"] in ("RWO", "RWX", "ROX", "RWOP") and r["CAPACITY"]
                         for r in bound), rows
    names, rows = table(k("get", "pv").stdout)
    assert names == ["NAME", "CAPACITY", "ACCESS MODES", "RECLAIM POLICY", "STATUS", "CLAIM", "STORAGECLASS",
                     "VOLUMEATTRIBUTESCLASS", "REASON", "AGE"]
    assert any(r["STORAGECLASS"] == "mayastor-3" and r["STATUS"] == "Bound" and "/" in r["CLAIM"] for r in rows)


def test_get_daemonsets_deployments(ran):
    k = ran["kubectl"]
    names, rows = table(k("get", "ds", "-A").stdout)
    assert names == ["NAMESPACE", "NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR",
                     "AGE"]
    assert all(r["DESIRED"].isdigit() and AGE.match(r["AGE"]) for r in rows)
    names, rows = table(k("get", "deploy", "-A").stdout)
    assert names == ["NAMESPACE", "NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert all(re.fullmatch(r"\d+/\d+", r["READY"]) for r in rows)


def test_get_diskpools_and_cilium_pools(ran):
    k = ran["kubectl"]
    ns = ran["spec"].mayastor.namespace
    out = k("get", "diskpool", "-n", ns).stdout
    names, rows = table(out)
    # Mayastor's own columns (its CRD has no Age; the apiserver adds none)
    assert names[:3] == ["NAME", "NODE", "STATE"] and "AGE" not in names and "CAPACITY" in names, names
    assert len(rows) == 3 and all(r["NODE"].startswith("talos-worker-") and r["STATE"] == "Created"
                                  and r["CAPACITY"] not in ("", "<none>") for r in rows), out
    assert not re.search(r"\d{4}-\d\d-\d\dT", out)  # no raw timestamps
    out = k("get", "ciliumloadbalancerippool").stdout
    names, rows = table(out)
    assert names == ["NAME", "DISABLED", "CONFLICTING", "IPS AVAILABLE", "AGE"]
    assert rows and not re.search(r"\d{4}-\d\d-\d\dT", out)
    for r in rows:
        assert r["DISABLED"] == "false" and r["CONFLICTING"] == "False" and r["IPS AVAILABLE"].isdigit(), r
        assert AGE.match(r["AGE"])


def test_apply_seed_storageclass_and_test_pvc_with_validation(ran):
    from falkit.render.mayastorvalues import storage_class

    k, tmp = ran["kubectl"], ran["tmp"]
    sc_file = tmp / "storageclass.yaml"
    sc_file.write_text(yaml.safe_dump(storage_class(ran["spec"])))
    out = k("apply", "-f", str(sc_file))  # validation on: kubectl's default --validate=strict
    assert re.search(r"storageclass\.storage\.k8s\.io/mayastor-3 (unchanged|configured|created)", out.stdout)
    out = k("apply", "-f", "-", stdin=SEED_PVC)
    assert "persistentvolumeclaim/test-pvc created" in out.stdout, out.stdout + out.stderr
    assert "validate" not in out.stderr
    got = k("get", "pvc", "test-pvc", "-o", "jsonpath={.spec.storageClassName}").stdout
    assert got == "mayastor-3"
    # validation is on: a misspelt field is refused by the server (kubectl sent fieldValidation=Strict)
    bad = k("create", "-f", "-", stdin=SEED_PVC.replace("name: test-pvc", "name: test-pvc-2").replace(
        "storageClassName:", "storageClasName:"), check=False)
    assert bad.returncode != 0 and 'unknown field "spec.storageClasName"' in bad.stderr, bad.stderr
    k("delete", "pvc", "test-pvc")


def test_explain(ran):
    k = ran["kubectl"]
    out = k("explain", "pod.spec.containers.ports").stdout
    assert "KIND:       Pod" in out and "containerPort" in out
    out = k("explain", "storageclass").stdout
    assert "provisioner" in out and "volumeBindingMode" in out
    out = k("explain", "ciliumloadbalancerippool.spec").stdout
    assert "GROUP:      cilium.io" in out and "blocks" in out and "serviceSelector" in out
    out = k("explain", "diskpool.spec").stdout
    assert "GROUP:      openebs.io" in out and "disks" in out and "node" in out
