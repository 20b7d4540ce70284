"""CRUD semantics through the official client: create/get/list/replace/delete, metadata,
defaults, finalizers, namespaces, dryRun, status subresource, Status errors."""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException


def _status(e: ApiException) -> dict:
    return json.loads(e.body)


def _cm(name, **data):
    return {"metadata": {"name": name}, "data": data}


def test_create_get_list_metadata(twin):
    c = twin.core
    made = c.create_namespaced_config_map("default", _cm("a", x="1"))
    assert made is not None and made.metadata.uid and made.metadata.creation_timestamp
    assert made.metadata.namespace == "default" and made.metadata.generation == 1
    assert made.metadata.managed_fields[0].manager
    b = c.create_namespaced_config_map("default", _cm("b"))
    assert int(b.metadata.resource_version) > int(made.metadata.resource_version)
    assert c.read_namespaced_config_map("a", "default").data == {"x": "1"}
    lst = c.list_namespaced_config_map("default")
    assert lst.kind == "ConfigMapList" and int(lst.metadata.resource_version) >= int(b.metadata.resource_version)
    assert [i.metadata.name for i in lst.items] == ["a", "b"]
    with pytest.raises(ApiException) as ei:
        c.create_namespaced_config_map("default", _cm("a"))
    st = _status(ei.value)
    assert (ei.value.status, st["kind"], st["reason"], st["status"]) == (409, "Status", "AlreadyExists", "Failure")


def test_default_namespaces_and_missing_namespace(twin):
    names = {n.metadata.name for n in twin.core.list_namespace().items}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
    assert twin.core.read_namespace("default").status.phase == "Active"
    with pytest.raises(ApiException) as ei:
        twin.core.create_namespaced_config_map("nope", _cm("a"))
    assert ei.value.status == 404 and _status(ei.value)["details"]["name"] == "nope"


def test_generate_name(twin):
    made = twin.core.create_namespaced_config_map("default", {"metadata": {"generateName": "gen-"}})
    assert made.metadata.name.startswith("gen-") and len(made.metadata.name) == 9


def test_replace_conflict_and_generation(twin):
    apps = twin.apps
    dep = {"metadata": {"name": "d", "labels": {"app": "d"}},
           "spec": {"selector": {"matchLabels": {"app": "d"}},
                    "template": {"metadata": {"labels": {"app": "d"}},
                                 "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}}}
    d1 = apps.create_namespaced_deployment("default", dep)
    assert d1.spec.replicas == 1 and d1.metadata.generation == 1
    d1.spec.replicas = 3
    d2 = apps.replace_namespaced_deployment("d", "default", d1)
    assert d2.metadata.generation == 2
    d1.spec.replicas = 4  # stale resourceVersion
    with pytest.raises(ApiException) as ei:
        apps.replace_namespaced_deployment("d", "default", d1)
    assert ei.value.status == 409 and _status(ei.value)["reason"] == "Conflict"
    # status writes do not bump generation, main writes ignore status
    d2.status.replicas = 7
    d3 = apps.replace_namespaced_deployment_status("d", "default", d2)
    assert d3.status.replicas == 7 and d3.metadata.generation == 2
    d3.status.replicas = 1
    d3.spec.replicas = 5
    d4 = apps.replace_namespaced_deployment("d", "default", d3)
    assert d4.status.replicas == 7 and d4.spec.replicas == 5 and d4.metadata.generation == 3


def test_noop_update_keeps_resource_version(twin):
    made = twin.core.create_namespaced_config_map("default", _cm("same", a="1"))
    again = twin.core.replace_namespaced_config_map("same", "default", made)
    assert again.metadata.resource_version == made.metadata.resource_version


def test_finalizers_and_delete(twin):
    c = twin.core
    c.create_namespaced_config_map("default", {"metadata": {"name": "f", "finalizers": ["x.io/keep"]}})
    c.delete_namespaced_config_map("f", "default")
    held = c.read_namespaced_config_map("f", "default")
    assert held.metadata.deletion_timestamp is not None
    c.patch_namespaced_config_map("f", "default", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as ei:
        c.read_namespaced_config_map("f", "default")
    assert ei.value.status == 404 and _status(ei.value)["reason"] == "NotFound"
    c.create_namespaced_config_map("default", _cm("g"))
    gone = c.delete_namespaced_config_map("g", "default")
    assert gone is not None
    assert c.list_namespaced_config_map("default", field_selector="metadata.name=g").items == []


def test_namespace_deletion_removes_objects(twin):
    c = twin.core
    c.create_namespace({"metadata": {"name": "tmp"}})
    c.create_namespaced_config_map("tmp", _cm("a"))
    c.create_namespaced_secret("tmp", {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
    assert c.read_namespaced_secret("s", "tmp").data == {"k": "dg=="}
    c.delete_namespace("tmp")
    assert c.list_namespaced_config_map("tmp").items == []
    with pytest.raises(ApiException) as ei:
        c.read_namespace("tmp")
    assert ei.value.status == 404


def test_server_defaults_deserialize(twin):
    c = twin.core
    c.create_node({"metadata": {"name": "n1"}})
    node = c.read_node("n1")  # raises ValueError if required nodeInfo fields were missing
    assert node.status.node_info.kubelet_version.startswith("v1.")
    pod = c.create_namespaced_pod("default", {"metadata": {"name": "p"},
                                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    assert pod.status.phase == "Pending" and pod.spec.containers[0].image_pull_policy == "Always"
    svc = c.create_namespaced_service("default", {"metadata": {"name": "s"},
                                                  "spec": {"ports": [{"port": 80}], "type": "LoadBalancer"}})
    assert svc.spec.cluster_ip.startswith("10.9") and svc.spec.ports[0].target_port == 80
    assert 30000 <= svc.spec.ports[0].node_port <= 32767
    pvc = c.create_namespaced_persistent_volume_claim("default", {
        "metadata": {"name": "v"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                            "resources": {"requests": {"storage": "1Gi"}}}})
    assert pvc.status.phase == "Pending"


def test_cluster_ip_allocation_conflict(twin):
    with pytest.raises(ApiException) as ei:
        twin.core.create_namespaced_service("default", {"metadata": {"name": "dup"},
                                                        "spec": {"clusterIP": "10.96.0.1", "ports": [{"port": 1}]}})
    st = _status(ei.value)
    assert ei.value.status == 422 and st["details"]["causes"][0]["field"] == "spec.clusterIPs"


def test_dry_run(twin):
    c = twin.core
    made = c.create_namespaced_config_map("default", _cm("dry"), dry_run="All")
    assert made.metadata.name == "dry"
    assert c.list_namespaced_config_map("default", field_selector="metadata.name=dry").items == []
    c.create_namespaced_config_map("default", _cm("real", a="1"))
    out = c.patch_namespaced_config_map("real", "default", {"data": {"a": "2"}}, dry_run="All")
    assert out.data["a"] == "2" and c.read_namespaced_config_map("real", "default").data["a"] == "1"
    c.delete_namespaced_config_map("real", "default", dry_run="All")
    assert c.read_namespaced_config_map("real", "default")
    rv = twin.store.resource_version
    body = c.read_namespaced_config_map("real", "default")
    body.data = {"a": "3"}
    c.replace_namespaced_config_map("real", "default", body, dry_run="All")
    assert twin.store.resource_version == rv


def test_status_subresource_on_pods(twin):
    c = twin.core
    c.create_namespaced_pod("default", {"metadata": {"name": "p"}, "status": {"phase": "Running"},
                                        "spec": {"containers": [{"name": "c", "image": "x:1"}]}})
    assert c.read_namespaced_pod("p", "default").status.phase == "Pending"  # status dropped on create
    c.patch_namespaced_pod_status("p", "default", {"status": {"phase": "Running"}, "metadata": {"labels": {"x": "y"}}})
    p = c.read_namespaced_pod("p", "default")
    assert p.status.phase == "Running" and not p.metadata.labels
    c.patch_namespaced_pod("p", "default", {"status": {"phase": "Failed"}})
    assert c.read_namespaced_pod_status("p", "default").status.phase == "Running"


def test_pod_log(twin):
    c = twin.core
    c.create_namespaced_pod("default", {"metadata": {"name": "p"},
                                        "spec": {"containers": [{"name": "c", "image": "x:1"}]}})
    twin.store.set_pod_log("default", "p", "one\ntwo\nthree\n")
    assert c.read_namespaced_pod_log("p", "default") == "one\ntwo\nthree\n"
    assert c.read_namespaced_pod_log("p", "default", tail_lines=1) == "three\n"
    with pytest.raises(ApiException) as ei:
        c.read_namespaced_pod_log("nope", "default")
    assert ei.value.status == 404


def test_scale_subresource(twin):
    twin.apps.create_namespaced_deployment("default", {
        "metadata": {"name": "d"}, "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}},
                                            "template": {"metadata": {"labels": {"a": "b"}},
                                                         "spec": {"containers": [{"name": "c", "image": "i:1"}]}}}})
    sc = twin.apps.read_namespaced_deployment_scale("d", "default")
    assert sc.spec.replicas == 2 and sc.status.selector == "a=b"
    twin.apps.patch_namespaced_deployment_scale("d", "default", {"spec": {"replicas": 5}})
    assert twin.apps.read_namespaced_deployment("d", "default").spec.replicas == 5


def test_errors_are_status_objects(twin):
    r = twin.call("POST", "/api/v1/namespaces/default/configmaps", body={"kind": "Secret", "metadata": {"name": "x"}})
    assert (r.status_code, r.json()["reason"]) == (400, "BadRequest")
    r = twin.call("PUT", "/api/v1/namespaces/default/configmaps", body={})
    st = r.json()
    assert (r.status_code, st["kind"], st["apiVersion"], st["reason"], st["code"]) == (
        405, "Status", "v1", "MethodNotAllowed", 405)
    r = twin.call("GET", "/api/v1/namespaces/default/configmaps/none")
    assert r.json()["message"] == 'configmaps "none" not found' and r.json()["details"]["kind"] == "configmaps"


def test_custom_resource_crud(twin, upstream):
    from falkit.twin.kube import load_crd_file

    twin.store.create(load_crd_file(upstream / "metallb/metallb.io_ipaddresspools.yaml"))
    co = client.CustomObjectsApi(twin.api)
    body = {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": "pool"},
            "spec": {"addresses": ["192.168.1.240-192.168.1.250"]}}
    made = co.create_namespaced_custom_object("metallb.io", "v1beta1", "default", "ipaddresspools", body)
    assert made["metadata"]["uid"] and made["spec"]["autoAssign"] is True  # schema default applied
    got = co.list_namespaced_custom_object("metallb.io", "v1beta1", "default", "ipaddresspools")
    assert got["kind"] == "IPAddressPoolList" and len(got["items"]) == 1
    co.delete_namespaced_custom_object("metallb.io", "v1beta1", "default", "ipaddresspools", "pool")
    assert co.list_namespaced_custom_object("metallb.io", "v1beta1", "default", "ipaddresspools")["items"] == []


def test_ingress_is_served(twin):
    """Argo CD's Longhorn ingress app applies a networking.k8s.io/v1 Ingress."""
    from kubernetes import client

    net = client.NetworkingV1Api(twin.api)
    body = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "ui"},
            "spec": {"rules": [{"host": "longhorn.fal.home.arpa", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "longhorn-frontend", "port": {"number": 80}}}}]}}]}}
    created = net.create_namespaced_ingress("default", body)
    assert created.metadata.uid
    assert [i.metadata.name for i in net.list_namespaced_ingress("default").items] == ["ui"]


def test_deleting_an_owner_collects_its_dependents(twin):
    """Background garbage collection: a Job's pods go with the Job (a re-created Job of the same
    name must not see the old pods)."""
    job = twin.store.create({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "default"},
                             "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}})
    twin.store.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "j-abc", "namespace": "default", "labels": {"job-name": "j"},
                       "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": job["metadata"]["uid"]}]},
                       "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    twin.store.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "other", "namespace": "default"},
                       "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    from kubernetes import client

    client.BatchV1Api(twin.api).delete_namespaced_job("j", "default", propagation_policy="Background")
    assert [p.metadata.name for p in twin.core.list_namespaced_pod("default").items] == ["other"]
