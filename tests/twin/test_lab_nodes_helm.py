"""Nodes and the Helm stand-in: after bootstrap the kubelets register Nodes (NotReady with the CNI
message until Cilium is installed, then Ready; labels, capacity with hugepages, complete nodeInfo),
a stopped VM turns its Node Unknown; Cilium values are validated against the chart schema (400,
nothing stored); an identical upgrade is a no-op; uninstall removes what the chart made."""

from __future__ import annotations

import pytest
import requests
from pve_fixtures import wait_task
from test_lab_talos import OLD_CP, OLD_WORKER, cp_config, worker_config

from falkit.twin.lab.client import LabApiError
from falkit.twin.lab.nodes import CNI_MESSAGE


@pytest.fixture
def booted(lab_unbooted):
    lab = lab_unbooted
    lab.lab.talos_apply(OLD_CP, cp_config(), insecure=True)
    lab.lab.talos_apply(OLD_WORKER, worker_config(), insecure=True)
    lab.lab.talos_bootstrap(OLD_CP)
    return lab


def ready(lab, name):
    node = lab.core.read_node(name)
    return next(c for c in node.status.conditions if c.type == "Ready")


def test_nodes_not_ready_until_cilium(booted):
    lab = booted
    lab.wait(lambda: len(lab.core.list_node().items) == 2, what="two nodes registered")
    cond = ready(lab, "talos-worker-01")
    assert (cond.status, cond.reason, cond.message) == ("False", "KubeletNotReady", CNI_MESSAGE)
    node = lab.core.read_node("talos-worker-01")
    assert node.metadata.labels["openebs.io/engine"] == "mayastor"
    assert node.status.capacity["hugepages-2Mi"] == "2048Mi"
    assert node.status.capacity["memory"] == f"{9 * 1024 * 1024 - 1024 * 2048}Ki"
    assert node.status.capacity["cpu"] == "2"
    assert [a.address for a in node.status.addresses if a.type == "InternalIP"] == [OLD_WORKER]
    info = node.status.node_info
    assert info.kubelet_version == "v1.34.1" and info.os_image == "Talos (v1.11.6)"
    assert info.container_runtime_version.startswith("containerd://2.")
    cp = lab.core.read_node("talos-cp-01")
    assert "node-role.kubernetes.io/control-plane" in cp.metadata.labels
    assert {t.key for t in cp.spec.taints} >= {"node-role.kubernetes.io/control-plane", "node.kubernetes.io/not-ready"}

    lab.lab.helm_upsert("kube-system", "cilium", "cilium/cilium", "1.18.10",
                        {"kubeProxyReplacement": True, "l2announcements": {"enabled": True}})
    lab.wait(lambda: ready(lab, "talos-worker-01").status == "True", what="worker Ready after Cilium")
    assert lab.ctx.cilium_config().l2_announcements is True
    # (store, not the typed client: until a controller writes its status, the emulator's DaemonSet has
    # no status counters and the client's model rejects it — reported to the emulator's owner)
    ds = lab.store.get("apps/v1", "DaemonSet", "cilium", "kube-system")
    assert ds["spec"]["template"]["metadata"]["labels"]["k8s-app"] == "cilium"
    crds = {c["metadata"]["name"] for c in lab.store.list("apiextensions.k8s.io/v1", "CustomResourceDefinition")["items"]}
    assert {"ciliumloadbalancerippools.cilium.io", "ciliuml2announcementpolicies.cilium.io"} <= crds

    api = lab.pve.api()
    wait_task(api, lab.pve.node, api.nodes(lab.pve.node).qemu(201).status.stop.post())
    lab.ctx.pve.invalidate()
    lab.wait(lambda: ready(lab, "talos-worker-01").status == "Unknown", what="stopped VM -> Unknown")
    assert ready(lab, "talos-worker-01").reason == "NodeStatusUnknown"


def test_cilium_values_type_error_rejected(booted):
    r = requests.put(f"{booted.url}/lab/helm/releases/kube-system/cilium",
                     json={"chart": "cilium/cilium", "version": "1.18.10", "values": {"kubeProxyReplacement": 5}},
                     timeout=10)
    assert r.status_code == 400
    assert any(i["path"] == "kubeProxyReplacement" for i in r.json()["issues"]), r.json()
    assert requests.get(f"{booted.url}/lab/helm/releases/kube-system/cilium", timeout=10).status_code == 404
    # A misspelt key passes the chart's schema (it checks types only; docs/FACTS.md).
    booted.lab.helm_upsert("kube-system", "cilium", "cilium", "1.18.10", {"l2announcement": {"enabled": True}})


def test_helm_idempotent_upgrade_and_uninstall(booted):
    lab = booted
    values = {"persistence": {"defaultClass": True}}
    first = lab.lab.helm_upsert("longhorn-system", "longhorn", "longhorn/longhorn", "1.7.2", values)
    assert (first["revision"], first["changed"]) == (1, True)
    again = lab.lab.helm_upsert("longhorn-system", "longhorn", "longhorn/longhorn", "1.7.2", values)
    assert (again["revision"], again["changed"]) == (1, False)
    up = lab.lab.helm_upsert("longhorn-system", "longhorn", "longhorn/longhorn", "1.7.2",
                             {"persistence": {"defaultClass": False}})
    assert (up["revision"], up["changed"]) == (2, True)
    sc = lab.store.get("storage.k8s.io/v1", "StorageClass", "longhorn")
    assert sc["provisioner"] == "driver.longhorn.io"
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "false"
    assert len(lab.lab.call("GET", "/helm/releases/longhorn-system/longhorn/history")["history"]) == 2
    lab.lab.helm_uninstall("longhorn-system", "longhorn")
    assert lab.store.try_get("apps/v1", "DaemonSet", "longhorn-manager", "longhorn-system") is None
    with pytest.raises(LabApiError) as exc:
        lab.lab.helm_uninstall("longhorn-system", "longhorn")
    assert exc.value.status == 404


def test_mayastor_chart_records_io_engine_values(booted):
    lab = booted
    lab.lab.helm_upsert("mayastor", "mayastor", "mayastor/mayastor", "2.8.0",
                        {"io_engine": {"coreList": [1]}})
    rel = lab.ctx.release_of("mayastor")
    assert rel.notes["io_engine"]["coreList"] == [1]
    assert rel.notes["diskpool_api_version"] == "openebs.io/v1beta2"
    ds = lab.store.get("apps/v1", "DaemonSet", "mayastor-io-engine", "mayastor")
    assert ds["spec"]["template"]["spec"]["nodeSelector"]["openebs.io/engine"] == "mayastor"
    assert ds["metadata"]["annotations"]["falkit.twin/controller"] == "mayastor"
    assert lab.store.try_get("apiextensions.k8s.io/v1", "CustomResourceDefinition", "diskpools.openebs.io")
