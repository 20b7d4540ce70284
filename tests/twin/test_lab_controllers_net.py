"""LB-IPAM (Cilium), L2 announcement leases, MetalLB, and the TrueNAS twin with falkit's client.

Behaviours: a LoadBalancer Service gets the lowest free pool IP; the requested-IP annotation (and
its alias) is honoured; an IP outside every pool gives Cilium's ``no_pool`` condition; a duplicate
request gets ``already_allocated``; pool status counts; the L2 lease is held by a Ready node with a
Cilium agent and fails over when it goes NotReady; L2 is refused without kubeProxyReplacement;
MetalLB assigns from its IPAddressPool and honours its annotation. The controllers run their
reconcile passes against the in-process emulator; every assertion reads server state through the
official kubernetes client. TrueNAS: the client round-trips interfaces/commit/checkin, NFS shares
and services through the lab app over loopback HTTP; 401 with a wrong key; 503 without the VM.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from falkit.clients.truenas import TrueNasClient, TrueNasError
from falkit.model.spec import load_spec
from falkit.twin.kube import load_crd_file
from falkit.twin.lab import lbipam
from falkit.twin.lab.context import LabContext, Release, TalosNode
from falkit.twin.lab.controllers import CONTROLLERS, truenas_routes
from falkit.twin.lab.truenas import api_key

REPO = Path(__file__).resolve().parents[2]
UPSTREAM = REPO / "falkit" / "data" / "upstream"
SPEC = load_spec(REPO / "parameters" / "fal.yaml")
NODES = ("talos-worker-01", "talos-worker-02", "talos-worker-03")


def make_ctx(twin, tmp_path, cilium_values=None, pve=None) -> LabContext:
    ctx = LabContext(twin.store, SPEC, tmp_path, pve, 0.0)
    for p in sorted((UPSTREAM / "cilium" / "v1.18.10" / "crds").rglob("*.yaml")):
        twin.store.create(load_crd_file(p))
    if cilium_values is not None:
        ctx.releases[("kube-system", "cilium")] = Release("kube-system", "cilium", "cilium", "1.18.10", cilium_values)
    for i, n in enumerate(NODES):
        ip = f"10.10.0.{11 + i}"
        ctx.talos_nodes[ip] = TalosNode(ip=ip, vmid=201 + i, hostname=n, mode="running",
                                        addresses={"eth0": [f"{ip}/24"], "eth1": [f"10.11.0.{11 + i}/24"]})
        twin.store.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n, "labels": {
            "kubernetes.io/hostname": n}}, "status": {"conditions": [{"type": "Ready", "status": "True"}],
                                                    "addresses": [{"type": "InternalIP", "address": ip}]}},
                          keep_status=True)
        twin.store.create({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": f"cilium-{i}", "namespace": "kube-system", "labels": {"k8s-app": "cilium"}},
            "spec": {"nodeName": n, "containers": [{"name": "cilium-agent", "image": "cilium"}]},
            "status": {"phase": "Running"}}, keep_status=True)
    return ctx


L2_ON = {"kubeProxyReplacement": True, "l2announcements": {"enabled": True}}


def pool(twin, name="lb", **spec):
    twin.custom.create_cluster_custom_object("cilium.io", "v2", "ciliumloadbalancerippools", {
        "apiVersion": "cilium.io/v2", "kind": "CiliumLoadBalancerIPPool", "metadata": {"name": name},
        "spec": spec or {"blocks": [{"start": "10.10.0.50", "stop": "10.10.0.99"}]}})


def lb_service(twin, name, ns="default", annotations=None, labels=None):
    twin.core.create_namespaced_service(ns, {"metadata": {"name": name, "annotations": annotations or {},
                                                          "labels": labels or {}},
                                             "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})


def status(twin, name, ns="default"):
    svc = twin.core.read_namespaced_service_status(name, ns)
    ips = [i.ip for i in (svc.status.load_balancer.ingress or [])]
    cond = next((c for c in svc.status.conditions or [] if c.type == "cilium.io/IPAMRequestSatisfied"), None)
    return ips, cond


def test_controllers_list_and_lowest_free_ip(twin, tmp_path):
    assert {f.__module__.rsplit(".", 1)[1] for f in CONTROLLERS} == {"lbipam", "mayastor", "workloads"}
    ctx = make_ctx(twin, tmp_path, L2_ON)
    lb_service(twin, "before-pool")
    lbipam.reconcile(ctx)
    assert status(twin, "before-pool") == ([], None)  # LB-IPAM is dormant until a pool exists
    pool(twin)
    lb_service(twin, "a")
    lbipam.reconcile(ctx)
    lb_service(twin, "b")
    lbipam.reconcile(ctx)
    rv = twin.store.resource_version
    lbipam.reconcile(ctx)  # idempotent: nothing written
    assert twin.store.resource_version == rv
    ips_a, cond = status(twin, "before-pool")
    assert ips_a == ["10.10.0.50"] and cond.status == "True" and cond.reason == "satisfied"
    assert status(twin, "a")[0] == ["10.10.0.51"] and status(twin, "b")[0] == ["10.10.0.52"]
    p = twin.custom.get_cluster_custom_object("cilium.io", "v2", "ciliumloadbalancerippools", "lb")
    conds = {c["type"]: c for c in p["status"]["conditions"]}
    assert conds["cilium.io/PoolConflict"]["status"] == "False"
    assert conds["cilium.io/IPsAvailable"]["message"] == "47" and conds["cilium.io/IPsUsed"]["message"] == "3"


def test_requested_ip_alias_outside_pool_and_duplicate(twin, tmp_path):
    ctx = make_ctx(twin, tmp_path, L2_ON)
    pool(twin)
    lb_service(twin, "traefik", annotations={"io.cilium/lb-ipam-ips": "10.10.0.80"})
    lbipam.reconcile(ctx)
    lb_service(twin, "argocd", annotations={"lbipam.cilium.io/ips": "10.10.0.80"})
    lb_service(twin, "old", annotations={"lbipam.cilium.io/ips": "10.30.0.100"})
    lb_service(twin, "auto")
    lbipam.reconcile(ctx)
    assert status(twin, "traefik")[0] == ["10.10.0.80"]
    ips, cond = status(twin, "argocd")
    assert ips == [] and cond.status == "False" and cond.reason == "already_allocated"
    assert cond.message == "The IP '10.10.0.80' is already allocated to another service"
    ips, cond = status(twin, "old")
    assert ips == [] and (cond.reason, cond.message) == ("no_pool", "No pool exists with a CIDR containing "
                                                                    "'10.30.0.100'")
    assert status(twin, "auto")[0] == ["10.10.0.50"]


def test_l2_lease_and_failover(twin, tmp_path):
    ctx = make_ctx(twin, tmp_path, L2_ON)
    pool(twin)
    twin.custom.create_cluster_custom_object("cilium.io", "v2alpha1", "ciliuml2announcementpolicies", {
        "apiVersion": "cilium.io/v2alpha1", "kind": "CiliumL2AnnouncementPolicy", "metadata": {"name": "l2"},
        "spec": {"loadBalancerIPs": True, "interfaces": ["^eth0$"]}})
    lb_service(twin, "traefik", "default")
    lbipam.reconcile(ctx)
    coord = __import__("kubernetes").client.CoordinationV1Api(twin.api)
    lease = coord.read_namespaced_lease("cilium-l2announce-default-traefik", "kube-system")
    holder = lease.spec.holder_identity
    assert holder == NODES[0] and lease.spec.lease_duration_seconds == 15
    node = twin.store.get("v1", "Node", holder)
    node["status"]["conditions"] = [{"type": "Ready", "status": "False", "reason": "NodeStatusUnknown"}]
    twin.store.update_status(node)
    lbipam.reconcile(ctx)
    lease = coord.read_namespaced_lease("cilium-l2announce-default-traefik", "kube-system")
    assert lease.spec.holder_identity != holder and lease.spec.lease_transitions == 1
    twin.core.delete_namespaced_service("traefik", "default")
    lbipam.reconcile(ctx)
    assert not [x for x in coord.list_namespaced_lease("kube-system").items
                if x.metadata.name.startswith("cilium-l2announce-")]


def test_l2_refused_without_kube_proxy_replacement(twin, tmp_path):
    ctx = make_ctx(twin, tmp_path, {"l2announcements": {"enabled": True}})
    pool(twin)
    twin.custom.create_cluster_custom_object("cilium.io", "v2alpha1", "ciliuml2announcementpolicies", {
        "apiVersion": "cilium.io/v2alpha1", "kind": "CiliumL2AnnouncementPolicy", "metadata": {"name": "l2"},
        "spec": {"loadBalancerIPs": True}})
    lb_service(twin, "traefik")
    lbipam.reconcile(ctx)
    assert status(twin, "traefik")[0] == ["10.10.0.50"]  # IPAM works, announcement does not
    coord = __import__("kubernetes").client.CoordinationV1Api(twin.api)
    assert not coord.list_namespaced_lease("kube-system").items
    evs = twin.core.list_namespaced_event("default").items
    assert any(e.reason == "L2AnnouncementsDisabled" and "kubeProxyReplacement=true" in e.message for e in evs)


def test_metallb_assigns_and_hands_over_to_cilium(twin, tmp_path):
    ctx = make_ctx(twin, tmp_path, L2_ON)
    ctx.releases[("metallb-system", "metallb")] = Release("metallb-system", "metallb", "metallb", "0.14.9")
    for f in ("metallb.io_ipaddresspools.yaml", "metallb.io_l2advertisements.yaml"):
        twin.store.create(load_crd_file(UPSTREAM / "metallb" / "v0.14.9" / f))
    twin.core.create_namespace({"metadata": {"name": "metallb-system"}})
    twin.custom.create_namespaced_custom_object("metallb.io", "v1beta1", "metallb-system", "ipaddresspools", {
        "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": "pool"},
        "spec": {"addresses": ["10.30.0.65-10.30.0.100"]}})
    twin.custom.create_namespaced_custom_object("metallb.io", "v1beta1", "metallb-system", "l2advertisements", {
        "apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement", "metadata": {"name": "l2"}, "spec": {}})
    lb_service(twin, "traefik", annotations={"metallb.universe.tf/loadBalancerIPs": "10.30.0.100"})
    lb_service(twin, "argocd")
    lbipam.reconcile(ctx)
    assert status(twin, "traefik") == (["10.30.0.100"], None)
    assert status(twin, "argocd") == (["10.30.0.65"], None)
    reasons = {e.reason for e in twin.core.list_namespaced_event("default").items}
    assert {"IPAllocated", "nodeAssigned"} <= reasons
    pool(twin)  # Cilium pool appears: the unannotated service becomes Cilium's
    lbipam.reconcile(ctx)
    assert status(twin, "argocd")[0] == ["10.10.0.50"]
    assert status(twin, "traefik")[0] == ["10.30.0.100"]
    del ctx.releases[("metallb-system", "metallb")]  # MetalLB uninstalled: its IP is freed
    lbipam.reconcile(ctx)
    assert status(twin, "traefik")[0] == []


@pytest.fixture
def nas(twin, tmp_path):
    """The TrueNAS routes on the twin's loop, on their own loopback port; a PveReader is not needed
    when the lab has no Proxmox: then the API answers 503 (checked first)."""
    ctx = LabContext(twin.store, SPEC, tmp_path, None, 0.0)
    app = web.Application()
    app.add_routes(truenas_routes(ctx))

    async def start():
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, site._server.sockets[0].getsockname()[1]  # noqa: SLF001

    runner, port = asyncio.run_coroutine_threadsafe(start(), twin.loop).result(10)
    yield ctx, f"http://127.0.0.1:{port}/lab/truenas"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), twin.loop).result(10)


def test_truenas_unreachable_without_vm(nas):
    ctx, url = nas
    with pytest.raises(TrueNasError) as e:
        TrueNasClient(url, api_key(ctx)).interfaces()
    assert e.value.status == 503 and "connection refused" in str(e.value)



def test_pinned_address_goes_only_to_its_service(twin, tmp_path):
    """falkit's pools (falkit.render.ciliumvalues.lb_pools): 10.10.0.80 sits in a pool of its own whose
    serviceSelector names one Service by the labels Cilium adds for selection; an unpinned service
    never gets it, even when it is the lowest free address and the pinned service is not there yet."""
    from falkit.render import ciliumvalues as cv

    ctx = make_ctx(twin, tmp_path, L2_ON)
    narrow = SPEC.model_copy(update={"cilium": SPEC.cilium.model_copy(update={
        "lb_pool": SPEC.cilium.lb_pool.model_copy(update={"start": "10.10.0.80", "stop": "10.10.0.81"})})})
    for p in cv.lb_pools(narrow):
        twin.custom.create_cluster_custom_object("cilium.io", "v2", "ciliumloadbalancerippools", p)
    lb_service(twin, "argocd-server", "default")
    lb_service(twin, "grafana", "default")
    lbipam.reconcile(ctx)
    assert status(twin, "argocd-server")[0] == ["10.10.0.81"]  # .80 is lower, but not for it
    ips, cond = status(twin, "grafana")
    assert ips == [] and cond.reason == "out_of_ips"
    twin.core.create_namespace({"metadata": {"name": "traefik"}})
    lb_service(twin, "traefik", "traefik", annotations={"lbipam.cilium.io/ips": "10.10.0.80"})
    lbipam.reconcile(ctx)
    assert status(twin, "traefik", "traefik")[0] == ["10.10.0.80"]
