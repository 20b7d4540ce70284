"""40-cilium: Helm values validate against the chart schema and carry the Talos/L2 settings; the pool
and policy validate against the shipped CRD schemas in the API version for the Cilium version; the
pure plan from the "before" state (upgrade, pool, policy, Traefik/Argo CD annotations flagged
disruptive, wait, then MetalLB's objects and release) and the converged plan (empty)."""

from __future__ import annotations

import jsonschema
import pytest
import yaml

from falkit.model.schemas import cilium_crd_dir, validate_cilium_values
from falkit.render import ciliumvalues as cv
from falkit.steps.base import StepOptions
from falkit.steps.cilium import CiliumFacts, ServiceFacts, plan_cilium


def test_values_validate_and_carry_settings(fal):
    v = cv.check_values(fal)
    assert v["kubeProxyReplacement"] is True and v["k8sServiceHost"] == "localhost" and v["k8sServicePort"] == 7445
    assert v["l2announcements"]["enabled"] is True and v["externalIPs"]["enabled"] is True
    assert v["k8sClientRateLimit"] == {"qps": 7, "burst": 14} and "eth0" in v["devices"]
    assert "SYS_MODULE" not in v["securityContext"]["capabilities"]["ciliumAgent"]
    assert v["cgroup"] == {"autoMount": {"enabled": False}, "hostRoot": "/sys/fs/cgroup"}
    assert validate_cilium_values(dict(v, kubeProxyReplacement={"on": 1}), fal.versions.cilium)  # a wrong type is caught


@pytest.mark.parametrize("version,pool_api", [("1.17.14", "cilium.io/v2alpha1"), ("1.18.10", "cilium.io/v2"), ("1.19.4", "cilium.io/v2")])
def test_pool_and_policy_validate_against_crds(fal, version, pool_api):
    spec = fal.model_copy(update={"versions": fal.versions.model_copy(update={"cilium": version})})
    for obj in (*cv.lb_pools(spec), cv.l2_policy(spec)):
        group_version = obj["apiVersion"].split("/")[1]
        path = next(p for p in cilium_crd_dir(version).rglob("*.yaml") if obj["kind"].lower() in p.name.replace("ies", "y"))
        crd = yaml.safe_load(path.read_text())
        schema = next(v for v in crd["spec"]["versions"] if v["name"] == group_version)["schema"]["openAPIV3Schema"]
        assert list(jsonschema.Draft7Validator(schema).iter_errors(obj)) == [], obj["kind"]
    pool, traefik = cv.lb_pools(spec)
    assert pool["apiVersion"] == pool_api
    # Traefik's pinned 10.10.0.80 is kept out of the pool every service draws from ...
    assert pool["spec"] == {"blocks": [{"start": "10.10.0.50", "stop": "10.10.0.79"},
                                       {"start": "10.10.0.81", "stop": "10.10.0.99"}], "allowFirstLastIPs": "Yes"}
    # ... in a pool only Traefik's Service matches (Cilium adds these labels for selection)
    assert traefik["spec"]["blocks"] == [{"start": "10.10.0.80", "stop": "10.10.0.80"}]
    assert traefik["spec"]["serviceSelector"] == {"matchLabels": {"io.kubernetes.service.namespace": "traefik",
                                                                  "io.kubernetes.service.name": "traefik"}}
    assert cv.pool_addresses([pool, traefik]) == {f"10.10.0.{i}" for i in range(50, 100)}
    assert cv.l2_policy(spec)["spec"]["loadBalancerIPs"] is True


MLB = "metallb.universe.tf/loadBalancerIPs"


def before(fal):
    return CiliumFacts(
        {"name": "cilium", "namespace": "kube-system", "version": fal.versions.cilium, "status": "deployed",
         "values": {"ipam": {"mode": "kubernetes"}, "kubeProxyReplacement": False}},
        {}, None,
        {"traefik/traefik": ServiceFacts("traefik", "traefik", True, {MLB: "10.30.0.100"}, ("10.30.0.100",)),
         "argocd/argocd-server": ServiceFacts("argocd", "argocd-server", True, {MLB: "10.30.0.80"}, ("10.30.0.80",))},
        {"name": "metallb"}, (("metallb.io/v1beta1", "L2Advertisement", "metallb-system", "default"),
                              ("metallb.io/v1beta1", "IPAddressPool", "metallb-system", "default-pool")))


def test_plan_from_before_state(fal):
    plan = plan_cilium(fal, before(fal), StepOptions())
    rows = [(c.op, c.kind, c.name, c.disruptive) for c in plan.changes]
    assert rows == [
        ("update", "helm-release", "kube-system/cilium", False),
        ("create", "k8s-object", "CiliumLoadBalancerIPPool/lb-pool", False),
        ("create", "k8s-object", "CiliumLoadBalancerIPPool/lb-pinned-traefik-traefik", False),
        ("create", "k8s-object", "CiliumL2AnnouncementPolicy/l2-announcements", False),
        ("update", "service", "traefik/traefik", True),
        ("update", "service", "argocd/argocd-server", True),
        ("action", "services", "LoadBalancer", False),
        ("delete", "k8s-object", "metallb-system/L2Advertisement/default", False),
        ("delete", "k8s-object", "metallb-system/IPAddressPool/default-pool", False),
        ("delete", "helm-release", "metallb-system/metallb", False),
    ]
    traefik = plan.changes[4]
    assert traefik.data.annotations["lbipam.cilium.io/ips"] == "10.10.0.80"
    assert traefik.data.annotations[MLB] is None and "10.30.0.100 -> 10.10.0.80" in traefik.reason
    argo = plan.changes[5]
    assert "lbipam.cilium.io/ips" not in argo.data.annotations and "-> pool" in argo.reason
    assert dict(plan.changes[6].data.services) == {"traefik/traefik": "10.10.0.80", "argocd/argocd-server": "pool"}


def test_converged_plan_is_empty(fal):
    done = CiliumFacts(
        {"version": fal.versions.cilium, "status": "deployed", "values": cv.values(fal)},
        {p["metadata"]["name"]: p for p in cv.lb_pools(fal)}, cv.l2_policy(fal),
        {"traefik/traefik": ServiceFacts("traefik", "traefik", True, {"lbipam.cilium.io/ips": "10.10.0.80"}, ("10.10.0.80",)),
         "argocd/argocd-server": ServiceFacts("argocd", "argocd-server", True, {}, ("10.10.0.50",))},
        None, ())
    plan = plan_cilium(fal, done, StepOptions())
    assert plan.empty, str(plan)


def test_service_without_its_ip_keeps_metallb_until_waited(fal):
    f = before(fal)
    facts = CiliumFacts({"version": fal.versions.cilium, "status": "deployed", "values": cv.values(fal)},
                        {p["metadata"]["name"]: p for p in cv.lb_pools(fal)},
                        cv.l2_policy(fal), {"argocd/argocd-server": ServiceFacts("argocd", "argocd-server", True, {}, ())},
                        f.metallb_release, f.metallb_objects)
    kinds = [c.kind for c in plan_cilium(fal, facts, StepOptions()).changes]
    assert kinds.index("services") < kinds.index("helm-release")


def test_klist_against_the_emulator(tmp_path):
    """klist returns plain dicts from a real apiserver (the emulator) through the journaled client."""
    import asyncio
    import threading

    import yaml

    from falkit.clients.kube import journaled_api_client, klist
    from falkit.twin.kube import Store, build_app, kubeconfig
    from falkit.twin.lab_process import LabProcess

    store = Store()
    lab = LabProcess(store, build_app(store))
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    url = asyncio.run_coroutine_threadsafe(lab.start("127.0.0.1", 0), loop).result(10)
    try:
        kc = tmp_path / "kc"
        kc.write_text(yaml.safe_dump(kubeconfig(url)))
        api = journaled_api_client(kc, None)
        store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "default"}})
        items = klist(api, "v1", "ConfigMap", "default")
        assert [i["metadata"]["name"] for i in items] == ["a"] and isinstance(items[0], dict)
        assert klist(api, "example.com/v1", "Nope") == []
    finally:
        asyncio.run_coroutine_threadsafe(lab.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)


def test_a_pool_the_spec_no_longer_has_is_deleted_as_disruptive(fal):
    pools = {p["metadata"]["name"]: p for p in cv.lb_pools(fal)}
    old = {"apiVersion": "cilium.io/v2", "kind": "CiliumLoadBalancerIPPool",
           "metadata": {"name": "lb-pinned-media-sonarr", "labels": dict(cv.MANAGED_BY)},
           "spec": {"blocks": [{"start": "10.10.0.60", "stop": "10.10.0.60"}]}}
    done = CiliumFacts({"version": fal.versions.cilium, "status": "deployed", "values": cv.values(fal)},
                       {**pools, "lb-pinned-media-sonarr": old}, cv.l2_policy(fal),
                       {"traefik/traefik": ServiceFacts("traefik", "traefik", True, {"lbipam.cilium.io/ips": "10.10.0.80"},
                                                        ("10.10.0.80",))}, None, ())
    plan = plan_cilium(fal, done, StepOptions())
    assert [(c.op, c.name, c.disruptive) for c in plan.changes] == [
        ("delete", "CiliumLoadBalancerIPPool/lb-pinned-media-sonarr", True),
        ("action", "LoadBalancer", False)]  # then every service is waited for its address again
