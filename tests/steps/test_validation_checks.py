"""falkit.steps.probes as data tables: observed facts of The Fal -> expected Check rows.

Covers: a healthy migrated lab passes every check; each failure mode of the seed's validation
section turns exactly its row(s) red with a fix (node NotReady, wrong/missing IPs, crash-looping
pods, Cilium agents short, no Lease holder, a service outside the pool, a pinned IP taken, io-engine
down, hugepages short, a Degraded pool, StorageClass drift, a fresh PVC that never binds, an
unreachable storage IP, an OutOfSync ArgoCD app, TrueNAS and Plex when enabled); the ArgoCD rows
only when the CRD is served; the twin's ping rows say "modelled"; the table and the summary chart
(falkit.runbook.display, what 70-validation shows through ``lab.validation_chart``);
the before-state comparison.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
from helpers import patched

from falkit.model.spec import LabSpec
from falkit.runbook.display import validation_chart, validation_table
from falkit.steps.probes import (
    FreshPvc,
    LabState,
    Ping,
    ValidationFacts,
    all_checks,
    compare_states,
    parse_quantity,
    summary_counts,
    talos_addresses,
)

WORKERS = {"talos-worker-01": ("10.10.0.11", "10.11.0.11"), "talos-worker-02": ("10.10.0.12", "10.11.0.12"),
           "talos-worker-03": ("10.10.0.13", "10.11.0.13")}


def node(name, ip, ready="True", mayastor=True, hugepages="2Gi"):
    labels = {"openebs.io/engine": "mayastor"} if mayastor else {}
    return {"metadata": {"name": name, "labels": labels},
            "status": {"conditions": [{"type": "Ready", "status": ready}],
                       "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
                       "allocatable": {"hugepages-2Mi": hugepages} if hugepages else {}}}


def pod(ns, name, phase="Running", ready=True, restarts=0, node_name="talos-worker-01", labels=None, waiting=None):
    cs = {"name": "main", "ready": ready, "restartCount": restarts, "state": {"running": {}}}
    if waiting:
        cs["state"] = {"waiting": {"reason": waiting}}
    return {"metadata": {"name": name, "namespace": ns, "labels": labels or {}}, "spec": {"nodeName": node_name},
            "status": {"phase": phase, "containerStatuses": [cs]}}


def svc(ns, name, ip, type_="LoadBalancer"):
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"type": type_},
            "status": {"loadBalancer": {"ingress": [{"ip": ip}] if ip else []}}}


def lease(ns, name, holder="talos-worker-01"):
    return {"metadata": {"name": f"cilium-l2announce-{ns}-{name}", "namespace": "kube-system"},
            "spec": {"holderIdentity": holder}}


def healthy() -> ValidationFacts:
    engine = [pod("mayastor", f"io-engine-{i}", node_name=n, labels={"app": "io-engine"}) for i, n in enumerate(WORKERS)]
    return ValidationFacts(
        target="twin",
        nodes=(node("talos-cp-01", "10.10.0.10", mayastor=False, hugepages=None),
               *(node(n, ip) for n, (ip, _s) in WORKERS.items())),
        talos_ips={n: [ip, s] for n, (ip, s) in WORKERS.items()},
        pods=(pod("traefik", "traefik-abc"), *engine,
              {"metadata": {"name": "job-x", "namespace": "default"}, "status": {"phase": "Succeeded"}}),
        cilium_daemonset={"metadata": {"name": "cilium"}, "status": {"desiredNumberScheduled": 4, "numberReady": 4}},
        cilium_pools=({"metadata": {"name": "falkit-pool"},
                       "spec": {"blocks": [{"start": "10.10.0.50", "stop": "10.10.0.99"}]}},),
        l2_policies=({"metadata": {"name": "falkit-l2"}, "spec": {"loadBalancerIPs": True}},),
        leases=(lease("traefik", "traefik"), lease("argocd", "argocd-server", "talos-worker-02")),
        services=(svc("traefik", "traefik", "10.10.0.80"), svc("argocd", "argocd-server", "10.10.0.50"),
                  svc("default", "kubernetes", None, "ClusterIP")),
        io_engine_pods=tuple(engine),
        diskpools=tuple({"metadata": {"name": f"pool-{n}"}, "spec": {"node": n},
                         "status": {"cr_state": "Created", "pool_status": "Online", "capacity": 322122547200}}
                        for n in WORKERS),
        storage_class={"metadata": {"name": "mayastor-3"}, "provisioner": "io.openebs.csi-mayastor",
                       "parameters": {"repl": "3", "protocol": "nvmf", "thin": "true", "fsType": "ext4"}},
        fresh_pvc=FreshPvc("falkit-validate-abc123", "Bound", "wrote 16777216 bytes", "", True),
        pings=tuple(Ping(n, {s: True for m, (_i, s) in WORKERS.items() if m != n}, modelled=True) for n in WORKERS),
        argocd_apps=None,
    )


def failed(checks):
    return [(c.check, c.subject) for c in checks if not c.ok]


def test_a_healthy_lab_passes_every_check(fal):
    checks = all_checks(fal, healthy())
    assert failed(checks) == []
    names = {c.check for c in checks}
    assert {"node Ready", "node management IP", "node storage IP", "pod healthy", "cilium agents", "cilium LB pool",
            "cilium L2 policy", "L2 announcement", "LoadBalancer IP", "pinned IP", "io-engine Running",
            "hugepages allocatable", "DiskPool Online", "StorageClass", "fresh PVC binds and takes writes",
            "storage network ping"} <= names
    assert sum(c.check == "storage network ping" for c in checks) == 6  # 3 workers x 2 others
    assert all("modelled" in c.observed for c in checks if c.check == "storage network ping")
    fresh = next(c for c in checks if c.check == "fresh PVC binds and takes writes")
    assert "test PVC deleted" in fresh.observed


def _with(f: ValidationFacts, **kw) -> ValidationFacts:
    return replace(copy.deepcopy(f), **kw)


CASES = {
    "node NotReady": (lambda f: _with(f, nodes=tuple(node(n["metadata"]["name"], n["status"]["addresses"][0]["address"],
                                                            ready="Unknown" if n["metadata"]["name"] == "talos-worker-02" else "True",
                                                            mayastor=bool(n["metadata"]["labels"]))
                                                       for n in f.nodes)),
                      [("node Ready", "talos-worker-02")]),
    "node missing": (lambda f: _with(f, nodes=tuple(n for n in f.nodes if n["metadata"]["name"] != "talos-worker-03")),
                     [("node Ready", "talos-worker-03"), ("node management IP", "talos-worker-03"),
                      ("io-engine Running", "talos-worker-03"), ("hugepages allocatable", "talos-worker-03")]),
    "storage IP not in the Talos config": (lambda f: _with(f, talos_ips={**f.talos_ips, "talos-worker-01": ["10.10.0.11"]}),
                                           [("node storage IP", "talos-worker-01")]),
    "Talos unreachable": (lambda f: _with(f, talos_ips={**f.talos_ips, "talos-worker-02": "connection refused"}),
                          [("node storage IP", "talos-worker-02")]),
    "pod crash-looping": (lambda f: _with(f, pods=f.pods + (pod("media", "sonarr-x", ready=False, restarts=7,
                                                                waiting="CrashLoopBackOff"),)),
                          [("pod healthy", "media/sonarr-x")]),
    "pod Pending": (lambda f: _with(f, pods=f.pods + (pod("media", "plex-y", phase="Pending"),)),
                    [("pod healthy", "media/plex-y")]),
    "cilium agents short": (lambda f: _with(f, cilium_daemonset={"metadata": {"name": "cilium"},
                                                                 "status": {"desiredNumberScheduled": 4, "numberReady": 3}}),
                            [("cilium agents", "kube-system/cilium")]),
    "no lease holder": (lambda f: _with(f, leases=(lease("traefik", "traefik", holder=""),)),
                        [("L2 announcement", "argocd/argocd-server"), ("L2 announcement", "traefik/traefik")]),
    "no L2 policy": (lambda f: _with(f, l2_policies=()), [("cilium L2 policy", "CiliumL2AnnouncementPolicy")]),
    "service outside the pool": (lambda f: _with(f, services=(svc("traefik", "traefik", "10.10.0.80"),
                                                              svc("argocd", "argocd-server", "10.30.0.80"))),
                                 [("LoadBalancer IP", "argocd/argocd-server")]),
    "pinned IP not held": (lambda f: _with(f, services=(svc("traefik", "traefik", "10.10.0.51"),
                                                        svc("argocd", "argocd-server", "10.10.0.50"))),
                           [("pinned IP", "traefik/traefik")]),
    "io-engine down": (lambda f: _with(f, io_engine_pods=tuple(
        {**p, "status": {"phase": "Pending"}} if p["spec"]["nodeName"] == "talos-worker-02" else p for p in f.io_engine_pods)),
        [("io-engine Running", "talos-worker-02")]),
    "hugepages short": (lambda f: _with(f, nodes=tuple(node(n["metadata"]["name"], n["status"]["addresses"][0]["address"],
                                                             mayastor=bool(n["metadata"]["labels"]),
                                                             hugepages="1Gi" if n["metadata"]["name"] == "talos-worker-03"
                                                             else n["status"]["allocatable"].get("hugepages-2Mi"))
                                                        for n in f.nodes)),
                        [("hugepages allocatable", "talos-worker-03")]),
    "pool Degraded": (lambda f: _with(f, diskpools=tuple(
        {**p, "status": {**p["status"], "pool_status": "Degraded"}} if p["spec"]["node"] == "talos-worker-01" else p
        for p in f.diskpools)), [("DiskPool Online", "pool-talos-worker-01")]),
    "StorageClass drift": (lambda f: _with(f, storage_class={**f.storage_class, "parameters": {
        **f.storage_class["parameters"], "repl": "1"}}), [("StorageClass", "mayastor-3")]),
    "fresh PVC never binds": (lambda f: _with(f, fresh_pvc=FreshPvc("falkit-validate-x", "Pending", "",
                                                                     "not Bound after 120 s", True)),
                              [("fresh PVC binds and takes writes", "falkit-validate-x")]),
    "storage IP unreachable": (lambda f: _with(f, pings=tuple(
        Ping(p.node, {**p.results, "10.11.0.13": False}, True) if p.node == "talos-worker-01" else p for p in f.pings)),
        [("storage network ping", "talos-worker-01 -> talos-worker-03")]),
    "ping Job failed": (lambda f: _with(f, pings=tuple(p for p in f.pings if p.node != "talos-worker-02")
                                        + (Ping("talos-worker-02", {}, True, "JobFailedError: job falkit-ping: failed"),)),
                        [("storage network ping", "talos-worker-02 -> talos-worker-01"),
                         ("storage network ping", "talos-worker-02 -> talos-worker-03")]),
    "argocd out of sync": (lambda f: _with(f, argocd_apps=(
        {"metadata": {"name": "traefik", "namespace": "argocd"}, "status": {"sync": {"status": "Synced"},
                                                                           "health": {"status": "Healthy"}}},
        {"metadata": {"name": "mayastor", "namespace": "argocd"}, "status": {"sync": {"status": "OutOfSync"},
                                                                            "health": {"status": "Healthy"}}})),
        [("ArgoCD application", "argocd/mayastor")]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_failure_turns_its_rows_red(fal, case):
    make, want = CASES[case]
    checks = all_checks(fal, make(healthy()))
    assert sorted(failed(checks)) == sorted(want)
    assert all(c.fix for c in checks if not c.ok)


def test_argocd_rows_only_when_the_crd_is_served(fal):
    assert not [c for c in all_checks(fal, healthy()) if c.check == "ArgoCD application"]
    apps = ({"metadata": {"name": "a", "namespace": "argocd"},
             "status": {"sync": {"status": "Synced"}, "health": {"status": "Healthy"}}},)
    rows = [c for c in all_checks(fal, _with(healthy(), argocd_apps=apps)) if c.check == "ArgoCD application"]
    assert [(r.subject, r.ok, r.observed) for r in rows] == [("argocd/a", True, "Synced / Healthy")]


def _spec(**patch) -> LabSpec:
    return LabSpec.model_validate(patched(patch))


def test_truenas_and_plex_rows_when_enabled():
    spec = _spec(**{"truenas.enabled": True})
    ok = _with(healthy(), truenas={"shares": [{"path": "/mnt/tank/media", "networks": ["10.11.0.0/24"], "enabled": True}],
                                   "services": [{"service": "nfs", "state": "RUNNING"}]},
               plex={"status": "running", "config": {"dev0": "/dev/dri/renderD128,gid=104"}})
    checks = all_checks(spec, ok)
    assert {c.check for c in checks} >= {"NFS export", "NFS service", "Plex container", "Plex GPU (dev0)"}
    assert failed(checks) == []
    bad = _with(ok, truenas={"shares": [{"path": "/mnt/tank/media", "networks": [], "enabled": True}],
                             "services": [{"service": "nfs", "state": "STOPPED"}]},
                plex={"status": "stopped", "config": {}})
    assert sorted(failed(all_checks(spec, bad))) == [("NFS export", "/mnt/tank/media"), ("NFS service", "truenas"),
                                                     ("Plex GPU (dev0)", "plex (400)"), ("Plex container", "plex (400)")]


def test_truenas_disabled_in_the_spec_has_no_rows(fal):
    assert fal.truenas is not None and not fal.truenas.enabled
    checks = all_checks(fal, _with(healthy(), truenas={"error": "unreachable"}))
    assert not [c for c in checks if c.check.startswith(("NFS", "TrueNAS"))]


def test_talos_addresses_old_and_new_styles():
    old = [{"machine": {"network": {"interfaces": [{"interface": "eth0", "addresses": ["10.10.0.11/24"]},
                                                   {"interface": "eth1", "addresses": ["10.11.0.11/24"]}]}}}]
    new = [{"version": "v1alpha1", "machine": {}},
           {"apiVersion": "v1alpha1", "kind": "LinkConfig", "name": "eth1", "addresses": [{"address": "10.11.0.11/24"}]}]
    assert talos_addresses(old) == ["10.10.0.11", "10.11.0.11"]
    assert talos_addresses(new) == ["10.11.0.11"]


@pytest.mark.parametrize("q,want", [("2Gi", 2 * 2**30), ("2048Mi", 2 * 2**30), ("2147483648", 2**31), ("1G", 10**9),
                                    ("0", 0), (None, 0)])
def test_parse_quantity(q, want):
    assert parse_quantity(q) == want


def test_table_and_chart(fal):
    f = CASES["pool Degraded"][0](healthy())
    checks = all_checks(fal, f)
    df = validation_table(checks)
    assert list(df.columns) == ["area", "check", "subject", "expected", "observed", "ok", "fix"]
    assert len(df) == len(checks)
    assert df[~df.ok].area.tolist() == ["mayastor"]
    counts = {r["area"]: (r["ok"], r["failed"]) for r in summary_counts(checks)}
    assert counts["mayastor"][1] == 1 and counts["nodes"][1] == 0
    fig = validation_chart(checks)
    assert [t.name for t in fig.data] == ["ok", "failed"]
    assert "1 failed" in fig.layout.title.text


def test_compare_states():
    before = LabState({"traefik/traefik": "10.30.0.100"}, {"media/Deployment/plex": ["plex-config"]},
                      {"media/plex-config": "a" * 64})
    assert all(c.ok for c in compare_states(before, before))
    after = LabState({"traefik/traefik": "10.10.0.80"}, {"media/Deployment/plex": ["plex-config-mayastor"]},
                     {"media/plex-config": "b" * 64})
    assert sorted(c.check for c in compare_states(before, after) if not c.ok) == [
        "service IP as before", "volume data as before", "workload claim as before"]
    assert LabState.from_json(before.to_json()) == before
