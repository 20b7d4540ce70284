"""Discovery, DynamicClient without OpenAPI, kubectl table output."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import requests
from kubernetes import client

from falkit.twin.kube import load_crd_file


def test_version_and_core_discovery(twin):
    v = client.VersionApi(twin.api).get_code()
    assert v.major == "1" and v.git_version.startswith("v1.32")
    assert client.CoreApi(twin.api).get_api_versions().versions == ["v1"]
    res = {r.name: r for r in client.CoreV1Api(twin.api).get_api_resources().resources}
    for name in ("namespaces", "nodes", "pods", "services", "endpoints", "configmaps", "secrets",
                 "persistentvolumeclaims", "persistentvolumes", "events", "serviceaccounts"):
        assert name in res, name
    assert res["pods"].namespaced and res["pods"].kind == "Pod" and "po" in res["pods"].short_names
    assert "watch" in res["pods"].verbs and not res["nodes"].namespaced
    assert res["pods/log"].verbs == ["get"]
    assert "services/status" in res and "persistentvolumeclaims/status" in res


def test_group_discovery(twin):
    groups = {g.name: g for g in client.ApisApi(twin.api).get_api_versions().groups}
    for g in ("apps", "batch", "storage.k8s.io", "coordination.k8s.io", "apiextensions.k8s.io"):
        assert g in groups
    assert groups["apps"].preferred_version.group_version == "apps/v1"
    apps = {r.name: r for r in client.AppsV1Api(twin.api).get_api_resources().resources}
    assert {"deployments", "daemonsets", "statefulsets", "replicasets", "deployments/status",
            "deployments/scale"} <= set(apps)
    assert apps["deployments"].short_names == ["deploy"]
    r = requests.get(twin.url + "/apis/nope.example.com/v1", timeout=5)
    assert r.status_code == 404 and r.json()["reason"] == "NotFound"


def test_crd_becomes_served(twin, upstream):
    crd = load_crd_file(upstream / "cilium/v1.19.4/crds/v2/ciliumloadbalancerippools.yaml")
    client.ApiextensionsV1Api(twin.api).create_custom_resource_definition(crd)
    groups = {g.name: g for g in client.ApisApi(twin.api).get_api_versions().groups}
    assert groups["cilium.io"].preferred_version.version == "v2"
    assert {v.version for v in groups["cilium.io"].versions} == {"v2", "v2alpha1"}
    doc = requests.get(twin.url + "/apis/cilium.io/v2", timeout=5).json()
    names = {r["name"]: r for r in doc["resources"]}
    assert names["ciliumloadbalancerippools"]["namespaced"] is False
    assert "ciliumloadbalancerippools/status" in names
    got = client.ApiextensionsV1Api(twin.api).read_custom_resource_definition(crd["metadata"]["name"])
    assert {c.type: c.status for c in got.status.conditions}["Established"] == "True"


def test_dynamic_client_without_openapi(twin):
    assert requests.get(twin.url + "/openapi/v2", timeout=5).status_code == 404
    dyn = twin.dynamic()
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    created = cms.create(body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1"},
                               "data": {"a": "1"}}, namespace="default")
    assert created.metadata.uid
    assert cms.get(name="c1", namespace="default").data.a == "1"
    dyn.resources.get(api_version="apps/v1", kind="Deployment")  # discovery through /apis
    assert [i.metadata.name for i in cms.get(namespace="default").items] == ["c1"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kubectl_get_table(twin, tmp_path):
    twin.core.create_node({"metadata": {"name": "worker-1", "labels": {"node-role.kubernetes.io/worker": ""}}})
    twin.core.create_namespaced_pod("kube-system", {"metadata": {"name": "p1"},
                                                    "spec": {"containers": [{"name": "c", "image": "x:1"}]}})
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "KUBECACHEDIR": str(tmp_path / "cache")}
    out = subprocess.run(["kubectl", "--kubeconfig", str(twin.kubeconfig), "get", "nodes,pods", "-A"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert "worker-1" in out.stdout and "kube-system" in out.stdout and "p1" in out.stdout
    # a node without a Ready condition prints "Unknown" (printers.go printNode)
    assert "Pending" in out.stdout and "Unknown" in out.stdout
    out = subprocess.run(["kubectl", "--kubeconfig", str(twin.kubeconfig), "get", "svc", "-o", "json"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["items"][0]["spec"]["clusterIP"] == "10.96.0.1"


def test_table_for_custom_resources(twin, upstream):
    crd = load_crd_file(upstream / "argocd/application-crd.yaml")
    twin.store.create(crd)
    twin.custom.create_namespaced_custom_object("argoproj.io", "v1alpha1", "default", "applications", {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "a"},
        "spec": {"destination": {}, "project": "default", "source": {"repoURL": "x"}}})
    r = requests.get(twin.url + "/apis/argoproj.io/v1alpha1/namespaces/default/applications",
                     headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}, timeout=5).json()
    assert r["kind"] == "Table"
    cols = [c["name"] for c in r["columnDefinitions"]]
    # the apiextensions apiserver prints Name + exactly the CRD's columns (Argo CD's have no Age)
    assert cols == ["Name", "Sync Status", "Health Status", "Revision", "Project"]
    assert r["rows"][0]["cells"] == ["a", None, None, None, "default"]
    assert r["rows"][0]["object"]["metadata"]["namespace"] == "default"
