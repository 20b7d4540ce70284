"""Validation of built-ins (kubernetes-validate schemas + semantic rules) and of custom resources
against real CRD schemas: pruning, fieldValidation=Strict, defaults, unserved versions, DiskPool."""

from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException

from falkit.twin.kube import diskpool_crd, load_crd_file


def test_service_port_string_is_invalid(twin):
    svcs = twin.dynamic().resources.get(api_version="v1", kind="Service")
    with pytest.raises(ApiException) as ei:
        svcs.create(namespace="default", body={"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                                               "spec": {"ports": [{"port": "eighty"}]}})
    assert ei.value.status == 422
    import json
    st = json.loads(ei.value.body)
    assert st["reason"] == "Invalid" and st["details"]["causes"][0]["field"] == "spec.ports[0].port"


def test_pvc_without_spec_is_invalid(twin):
    r = twin.call("POST", "/api/v1/namespaces/default/persistentvolumeclaims",
                  body={"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "v"}})
    assert r.status_code == 422
    fields = {c["field"] for c in r.json()["details"]["causes"]}
    assert "spec.accessModes" in fields


def test_bad_name_is_invalid(twin):
    r = twin.call("POST", "/api/v1/namespaces/default/configmaps", body={"metadata": {"name": "Not_OK"}})
    assert r.status_code == 422 and r.json()["details"]["causes"][0]["field"] == "metadata.name"


def test_unknown_builtin_fields_pruned_or_strict(twin):
    body = {"metadata": {"name": "c"}, "data": {"a": "1"}, "bogus": 1}
    r = twin.call("POST", "/api/v1/namespaces/default/configmaps", body=body)
    assert r.status_code == 201 and "bogus" not in r.json() and "unknown field" in r.headers["Warning"]
    r = twin.call("POST", "/api/v1/namespaces/default/configmaps", body={**body, "metadata": {"name": "d"}},
                  params={"fieldValidation": "Strict"})
    assert r.status_code == 400 and 'unknown field "bogus"' in r.json()["message"]


POOL = {"apiVersion": "cilium.io/v2", "kind": "CiliumLoadBalancerIPPool", "metadata": {"name": "lb"},
        "spec": {"blocks": [{"cidr": "192.168.1.240/28"}], "allowFirstLastIPs": "Yes"}}


def test_cilium_pool_v2_and_v2alpha1(twin, upstream):
    twin.store.create(load_crd_file(upstream / "cilium/v1.19.4/crds/v2/ciliumloadbalancerippools.yaml"))
    co = twin.custom
    made = co.create_cluster_custom_object("cilium.io", "v2", "ciliumloadbalancerippools", POOL)
    assert made["spec"]["blocks"] == [{"cidr": "192.168.1.240/28"}]
    old = co.get_cluster_custom_object("cilium.io", "v2alpha1", "ciliumloadbalancerippools", "lb")
    assert old["apiVersion"] == "cilium.io/v2alpha1"
    bad = {**POOL, "metadata": {"name": "bad"}, "spec": {"blocks": [{"cidr": "192.168.1.240/28"}],
                                                         "allowFirstLastIPs": "Maybe"}}
    with pytest.raises(ApiException) as ei:
        co.create_cluster_custom_object("cilium.io", "v2", "ciliumloadbalancerippools", bad)
    assert ei.value.status == 422 and "spec.allowFirstLastIPs" in ei.value.body


def test_cilium_1_17_serves_only_v2alpha1(twin, upstream):
    twin.store.create(load_crd_file(upstream / "cilium/v1.17.14/crds/v2alpha1/ciliumloadbalancerippools.yaml"))
    with pytest.raises(ApiException) as ei:
        twin.custom.create_cluster_custom_object("cilium.io", "v2", "ciliumloadbalancerippools", POOL)
    assert ei.value.status == 404
    ok = {**POOL, "apiVersion": "cilium.io/v2alpha1"}
    assert twin.custom.create_cluster_custom_object("cilium.io", "v2alpha1", "ciliumloadbalancerippools", ok)


def test_unserved_version_is_404(twin, upstream):
    crd = load_crd_file(upstream / "cilium/v1.19.4/crds/v2/ciliumloadbalancerippools.yaml")
    for v in crd["spec"]["versions"]:
        if v["name"] == "v2alpha1":
            v["served"] = False
    twin.store.create(crd)
    r = twin.call("GET", "/apis/cilium.io/v2alpha1/ciliumloadbalancerippools")
    assert r.status_code == 404
    assert twin.call("GET", "/apis/cilium.io/v2/ciliumloadbalancerippools").status_code == 200


def test_l2_policy_pruning_and_strict(twin, upstream):
    twin.store.create(load_crd_file(upstream / "cilium/v1.19.4/crds/v2alpha1/ciliuml2announcementpolicies.yaml"))
    path = "/apis/cilium.io/v2alpha1/ciliuml2announcementpolicies"
    body = {"apiVersion": "cilium.io/v2alpha1", "kind": "CiliumL2AnnouncementPolicy", "metadata": {"name": "p"},
            "spec": {"loadBalancerIPs": True, "interfaces": ["^eth0$"], "loadBalancerIps": True}}
    r = twin.call("POST", path, body=body)
    assert r.status_code == 201 and "loadBalancerIps" not in r.json()["spec"]
    assert 'unknown field "spec.loadBalancerIps"' in r.headers["Warning"]
    r = twin.call("POST", path, body={**body, "metadata": {"name": "q"}}, params={"fieldValidation": "Strict"})
    assert r.status_code == 400 and "spec.loadBalancerIps" in r.json()["message"]


def test_metallb_pool_validation(twin, upstream):
    twin.store.create(load_crd_file(upstream / "metallb/metallb.io_ipaddresspools.yaml"))
    r = twin.call("POST", "/apis/metallb.io/v1beta1/namespaces/default/ipaddresspools",
                  body={"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": "p"},
                        "spec": {"autoAssign": "yes"}})
    assert r.status_code == 422
    fields = {c["field"] for c in r.json()["details"]["causes"]}
    assert {"spec.addresses", "spec.autoAssign"} <= fields


def test_argocd_application_crd(twin, upstream):
    twin.store.create(load_crd_file(upstream / "argocd/application-crd.yaml"))
    body = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "a"},
            "spec": {"project": "default", "destination": {"server": "https://kubernetes.default.svc"},
                     "source": {"repoURL": "https://example.invalid/repo.git", "path": "x"}}}
    assert twin.custom.create_namespaced_custom_object("argoproj.io", "v1alpha1", "default", "applications", body)
    bad = {**body, "metadata": {"name": "b"}, "spec": {"project": "default"}}
    with pytest.raises(ApiException) as ei:
        twin.custom.create_namespaced_custom_object("argoproj.io", "v1alpha1", "default", "applications", bad)
    assert ei.value.status == 422 and "spec.destination" in ei.value.body


def test_diskpool_crd_from_derived_schemas(twin):
    crd = diskpool_crd(("v1beta2", "v1beta3"))
    assert [v["name"] for v in crd["spec"]["versions"] if v["storage"]] == ["v1beta3"]
    twin.store.create(crd)
    twin.core.create_namespace({"metadata": {"name": "openebs"}})
    co = twin.custom
    pool = {"apiVersion": "openebs.io/v1beta2", "kind": "DiskPool", "metadata": {"name": "pool-w1"},
            "spec": {"node": "w1", "disks": ["/dev/disk/by-id/ata-x"]}}
    made = co.create_namespaced_custom_object("openebs.io", "v1beta2", "openebs", "diskpools", pool)
    assert made["spec"]["node"] == "w1"
    made = co.patch_namespaced_custom_object_status("openebs.io", "v1beta2", "openebs", "diskpools", "pool-w1", {
        "status": {"capacity": 10, "used": 0, "available": 10, "pool_status": "Online"}})
    assert made["status"]["cr_state"] == "Creating"  # schema default
    with pytest.raises(ApiException) as ei:
        co.create_namespaced_custom_object("openebs.io", "v1beta2", "openebs", "diskpools",
                                           {**pool, "metadata": {"name": "x"}, "spec": {"node": "w1"}})
    assert ei.value.status == 422 and "spec.disks" in ei.value.body
    with pytest.raises(ApiException) as ei:
        co.patch_namespaced_custom_object_status("openebs.io", "v1beta2", "openebs", "diskpools", "pool-w1",
                                                 {"status": {"pool_status": "Sad"}})
    assert ei.value.status == 422
