"""PATCH: JSON patch, merge patch, strategic merge patch, server-side apply."""

from __future__ import annotations

import json

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

DEP = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
       "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [
                                 {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}],
                                  "ports": [{"containerPort": 80}], "volumeMounts": [{"name": "v", "mountPath": "/a"}]},
                                 {"name": "side", "image": "side:1"}],
                                 "tolerations": [{"key": "a", "operator": "Exists"}],
                                 "volumes": [{"name": "v", "emptyDir": {}}]}}}}


@pytest.fixture
def dep(twin):
    twin.apps.create_namespaced_deployment("default", DEP)
    return twin


def _containers(twin):
    return twin.apps.read_namespaced_deployment("web", "default").spec.template.spec.containers


def test_json_patch(dep):
    ops = [{"op": "replace", "path": "/spec/replicas", "value": 3},
           {"op": "add", "path": "/metadata/labels", "value": {"x": "y"}},
           {"op": "test", "path": "/spec/template/spec/containers/1/name", "value": "side"},
           {"op": "remove", "path": "/spec/template/spec/containers/1"}]
    d = dep.apps.patch_namespaced_deployment("web", "default", ops)
    assert d.spec.replicas == 3 and d.metadata.labels == {"x": "y"} and len(d.spec.template.spec.containers) == 1
    r = dep.call("PATCH", "/apis/apps/v1/namespaces/default/deployments/web",
                 body=[{"op": "test", "path": "/spec/replicas", "value": 9}], content_type="application/json-patch+json")
    assert r.status_code == 422


def test_merge_patch_replaces_lists(dep):
    r = dep.call("PATCH", "/apis/apps/v1/namespaces/default/deployments/web",
                 body={"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}},
                 content_type="application/merge-patch+json")
    assert r.status_code == 200
    cs = _containers(dep)
    assert [(c.name, c.image, c.env) for c in cs] == [("app", "app:2", None)]


def test_strategic_merge_patch_merges_by_key(dep):
    patch = {"spec": {"template": {"spec": {
        "containers": [{"name": "app", "image": "app:2", "env": [{"name": "B", "value": "2"}],
                        "ports": [{"containerPort": 81}], "volumeMounts": [{"name": "w", "mountPath": "/b"}]},
                       {"name": "side", "$patch": "delete"}],
        "tolerations": [{"key": "b", "operator": "Exists"}],
        "volumes": [{"name": "w", "emptyDir": {}}]}}}}
    d = dep.apps.patch_namespaced_deployment("web", "default", patch)  # client default: strategic
    spec = d.spec.template.spec
    (c,) = spec.containers
    assert c.image == "app:2" and [e.name for e in c.env] == ["A", "B"]
    assert [p.container_port for p in c.ports] == [80, 81]
    assert [m.mount_path for m in c.volume_mounts] == ["/a", "/b"]
    assert [t.key for t in spec.tolerations] == ["b"]  # no merge key: replaced
    assert [v.name for v in spec.volumes] == ["v", "w"]
    svc = dep.core.create_namespaced_service("default", {"metadata": {"name": "s"},
                                                         "spec": {"ports": [{"port": 80, "name": "http"}]}})
    assert svc
    s2 = dep.core.patch_namespaced_service("s", "default", {"spec": {"ports": [{"port": 443, "name": "https"}]}})
    assert [p.port for p in s2.spec.ports] == [80, 443]
    assert d.metadata.generation == 2


def test_strategic_merge_unsupported_for_custom_resources(twin, upstream):
    from falkit.twin.kube import load_crd_file

    twin.store.create(load_crd_file(upstream / "metallb/metallb.io_ipaddresspools.yaml"))
    twin.custom.create_namespaced_custom_object("metallb.io", "v1beta1", "default", "ipaddresspools", {
        "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": "p"},
        "spec": {"addresses": ["10.0.0.0/30"]}})
    r = twin.call("PATCH", "/apis/metallb.io/v1beta1/namespaces/default/ipaddresspools/p", body={"spec": {}},
                  content_type="application/strategic-merge-patch+json")
    assert r.status_code == 415
    got = twin.custom.patch_namespaced_custom_object("metallb.io", "v1beta1", "default", "ipaddresspools", "p",
                                                     {"spec": {"autoAssign": False}})  # merge patch
    assert got["spec"]["autoAssign"] is False


def _apply(twin, obj, manager, force=False, fmt="yaml"):
    body = yaml.safe_dump(obj) if fmt == "yaml" else json.dumps(obj)
    params = {"fieldManager": manager} if manager else {}
    if force:
        params["force"] = "true"
    ns = obj["metadata"].get("namespace", "default")
    return twin.call("PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/{obj['metadata']['name']}", body=body,
                     content_type="application/apply-patch+yaml", params=params)


def test_server_side_apply_create_conflict_force(twin):
    r = _apply(twin, DEP, "alice")
    assert r.status_code == 201
    mf = {m["manager"]: m for m in r.json()["metadata"]["managedFields"]}
    assert mf["alice"]["operation"] == "Apply" and "f:replicas" in mf["alice"]["fieldsV1"]["f:spec"]
    assert _apply(twin, DEP, None).status_code == 400  # fieldManager required
    # same value from another manager: shared ownership, no conflict
    assert _apply(twin, {**DEP, "spec": {**DEP["spec"], "replicas": 1}}, "bob", fmt="json").status_code == 200
    other = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 5}}
    r = _apply(twin, other, "carol")
    assert r.status_code == 409 and r.json()["reason"] == "Conflict" and ".spec.replicas" in r.json()["message"]
    r = _apply(twin, other, "carol", force=True)
    assert r.status_code == 200 and r.json()["spec"]["replicas"] == 5
    mf = {m["manager"]: m for m in r.json()["metadata"]["managedFields"]}
    assert "f:replicas" not in mf["alice"]["fieldsV1"]["f:spec"]
    assert "f:replicas" in mf["carol"]["fieldsV1"]["f:spec"]


def test_apply_conflicts_with_update_manager_and_removes_dropped_fields(dep):
    # "dep" was created by the python client (manager from its User-Agent), so applying a different
    # image conflicts with it
    change = json.loads(json.dumps(DEP))
    change["spec"]["template"]["spec"]["containers"][0]["image"] = "app:9"
    r = _apply(dep, change, "ci")
    assert r.status_code == 409 and "image" in r.json()["message"]
    labelled = {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "labels": {"a": "1", "b": "2"}}}
    assert _apply(dep, labelled, "ci").json()["metadata"]["labels"] == {"a": "1", "b": "2"}
    labelled["metadata"]["labels"] = {"a": "1"}
    assert _apply(dep, labelled, "ci").json()["metadata"]["labels"] == {"a": "1"}


def test_apply_status_subresource(dep):
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "status": {"readyReplicas": 1}}
    r = dep.call("PATCH", "/apis/apps/v1/namespaces/default/deployments/web/status", body=json.dumps(body),
                 content_type="application/apply-patch+yaml", params={"fieldManager": "ctl"})
    assert r.status_code == 200 and r.json()["status"]["readyReplicas"] == 1
    assert dep.apps.read_namespaced_deployment("web", "default").metadata.generation == 1


def test_patch_stale_resource_version_conflicts(dep):
    with pytest.raises(ApiException) as ei:
        dep.apps.patch_namespaced_deployment("web", "default", {"metadata": {"resourceVersion": "1"}})
    assert ei.value.status == 409
