"""70-validation names each failure with the component's own reason and a fix (issue 15 item 3).

Covers, through the runbook facade (``falkit.runbook.open(...).checks("validation")``) on one twin
migrated by a whole ``falkit run``, each condition made as an operator's mistake would make it:

- a second CiliumLoadBalancerIPPool overlapping the migrated one: Cilium LB-IPAM sets
  ``cilium.io/PoolConflict`` True on the newer pool -> a failed "cilium pool conflict" row naming
  both pools and Cilium's message;
- a Service pinned (``lbipam.cilium.io/ips``) to an address outside every pool: its "LoadBalancer IP"
  row says Cilium's ``no_pool`` reason ("No pool exists with a CIDR containing ...") and how to fix
  it, not a bare "pending";
- a worker's Talos config without ``nvme_tcp``: its csi-node pod waits in ``nvme-tcp-probe`` -> an
  "nvme_tcp module" row naming the module and the Talos ``machine.kernel.modules`` fix;
- a worker lost (``POST /lab/faults`` ``node_not_ready``): its DiskPool is no longer Online, so every
  repl-3 Mayastor volume is Degraded -> "Mayastor volumes" rows, and the test PVC does not bind ->
  the row carries the provisioner's ProvisioningFailed words ("not enough suitable pools").

Each condition is undone after its test (the node fault last). ``time_factor`` 0.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from helpers import patched, write_yaml  # noqa: E402

from falkit import runbook  # noqa: E402
from falkit.clients.kube import kcreate, kdelete, kget  # noqa: E402
from falkit.twin.lab.client import LabClient  # noqa: E402


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A twin in its "before" state, migrated by one whole ``falkit run``, and a facade lab on it."""
    from falkit.twin import supervisor

    tmp = tmp_path_factory.mktemp("validreasons")
    params = write_yaml(tmp, patched({}))
    state = tmp / "state"
    saved = {k: os.environ.get(k) for k in ("FALKIT_STATE_DIR", "FALKIT_HEADLESS")}
    os.environ.update(FALKIT_STATE_DIR=str(state), FALKIT_HEADLESS="1")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    conn = supervisor.up(params, state="before", state_dir=state / "twin", time_factor=0.0)
    try:
        run = subprocess.run([sys.executable, "-m", "falkit.cli", "run", "--params", str(params), "--outputs",
                              str(tmp / "outputs")], cwd=ROOT, env=env, text=True, capture_output=True, timeout=900)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        lab = runbook.open(params, "twin", apply=False, time_factor=0.0, wait_timeout_s=10)
        yield {"lab": lab, "params": params, "conn": conn, "api": lab.target.kube()}
    finally:
        supervisor.down(state / "twin")
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _rows(checks, name):
    return [c for c in checks if c.check == name]


def _wait(fn, timeout=30.0):
    end = time.monotonic() + timeout
    while True:
        got = fn()
        if got or time.monotonic() > end:
            return got
        time.sleep(0.2)


def test_conflicting_cilium_pools_fail_with_both_names_and_ciliums_message(lab):
    api = lab["api"]
    spec = lab["lab"].spec
    body = {"apiVersion": "cilium.io/v2", "kind": "CiliumLoadBalancerIPPool",
            "metadata": {"name": "operator-extra-pool"},
            "spec": {"blocks": [{"start": spec.cilium.lb_pool.start, "stop": spec.cilium.lb_pool.start}]}}
    kcreate(api, body)
    try:
        assert _wait(lambda: any(c.get("type") == "cilium.io/PoolConflict" and c.get("status") == "True"
                                 for c in ((kget(api, "cilium.io/v2", "CiliumLoadBalancerIPPool", "operator-extra-pool")
                                            or {}).get("status") or {}).get("conditions") or []))
        rows = [c for c in _rows(lab["lab"].checks("validation"), "cilium pool conflict") if not c.ok]
        assert len(rows) == 1, rows
        row = rows[0]
        assert "operator-extra-pool" in row.subject and "vs" in row.subject
        other = row.subject.split(" vs ")[1]
        assert other != "another pool" and kget(api, "cilium.io/v2", "CiliumLoadBalancerIPPool", other)
        assert "cidr_overlap" in row.observed and "Pool conflicts since range" in row.observed
        assert "operator-extra-pool" in row.fix and other in row.fix
    finally:
        kdelete(api, "cilium.io/v2", "CiliumLoadBalancerIPPool", "operator-extra-pool")


def test_a_pinned_ip_outside_every_pool_says_ciliums_no_pool_reason(lab):
    api = lab["api"]
    body = {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "operator-pinned", "namespace": "default",
                         "annotations": {"lbipam.cilium.io/ips": "10.99.99.99"}},
            "spec": {"type": "LoadBalancer", "selector": {"app": "operator-pinned"},
                     "ports": [{"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}]}}
    kcreate(api, body)
    try:
        assert _wait(lambda: any(c.get("reason") == "no_pool" for c in
                                 ((kget(api, "v1", "Service", "operator-pinned", "default") or {}).get("status") or {})
                                 .get("conditions") or []))
        rows = [c for c in _rows(lab["lab"].checks("validation"), "LoadBalancer IP") if c.subject == "default/operator-pinned"]
        assert len(rows) == 1 and not rows[0].ok, rows
        assert rows[0].observed.startswith("pending (cilium.io/IPAMRequestSatisfied=False, no_pool: "), rows[0]
        assert "No pool exists with a CIDR containing '10.99.99.99'" in rows[0].observed
        assert "CiliumLoadBalancerIPPool" in rows[0].fix and "40-cilium" in rows[0].fix
    finally:
        kdelete(api, "v1", "Service", "operator-pinned", "default")


def test_missing_nvme_tcp_names_the_module_and_the_talos_fix(lab):
    target = lab["lab"].target
    w = lab["lab"].spec.cluster.workers[0]
    original = target.talos.get_config(w.ip)
    docs = [d for d in yaml.safe_load_all(original) if d]
    for d in docs:
        kernel = (d.get("machine") or {}).get("kernel") or {}
        if kernel.get("modules"):
            kernel["modules"] = [m for m in kernel["modules"] if m.get("name") not in ("nvme_tcp", "nvme-tcp")]
    target.talos.apply_config(w.ip, yaml.safe_dump_all(docs), False)
    try:
        def stuck():
            rows = _rows(lab["lab"].checks("validation"), "nvme_tcp module")
            return [c for c in rows if c.subject == w.name and not c.ok]
        rows = _wait(stuck, 60)
        assert rows, "no nvme_tcp row"
        assert "nvme_tcp" in rows[0].observed and "nvme-tcp-probe" in rows[0].observed
        assert "machine.kernel.modules" in rows[0].fix and "30-talos" in rows[0].fix
    finally:
        target.talos.apply_config(w.ip, original, False)


def test_a_lost_pool_degrades_the_volumes_and_the_test_pvc_says_why(lab):
    spec = lab["lab"].spec
    w = spec.cluster.workers[-1]
    client = LabClient(lab["conn"])
    client.fault("node_not_ready", node=w.name)
    try:
        ns = spec.mayastor.namespace
        from falkit.model.schemas import diskpool_api_version
        pool = f"pool-{w.name}"
        assert _wait(lambda: ((kget(lab["api"], diskpool_api_version(spec.versions.mayastor), "DiskPool", pool, ns)
                               or {}).get("status") or {}).get("pool_status") not in (None, "Online"))
        active = runbook.open(lab["params"], "twin", apply=True, time_factor=0.0, wait_timeout_s=5)
        checks = active.checks("validation")
        vols = [c for c in _rows(checks, "Mayastor volumes") if not c.ok]
        assert vols and all("Degraded" in c.observed and pool in c.observed for c in vols), vols
        assert "kubectl mayastor get volumes" in vols[0].fix
        (pvc,) = _rows(checks, "fresh PVC binds and takes writes")
        assert not pvc.ok and "not Bound" in pvc.observed
        assert "ProvisioningFailed" in pvc.observed and "not enough suitable pools available, 2/3" in pvc.observed
        assert "DiskPools back Online" in pvc.fix
    finally:
        client.clear_faults()
