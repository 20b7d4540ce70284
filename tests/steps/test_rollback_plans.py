"""The rollback's plans as data: observed state after the migration -> expected changes (pure).

Covers: MetalLB restored (release, pool 10.30.0.65-10.30.0.100, L2Advertisement, each service's old
IP annotation with Cilium's removed) and converged when all is in place; Cilium's pool and L2 policy
deleted (only falkit's pool); Longhorn's ``*.disabled`` manifests renamed back, a missing checkout
blocks; volumes moved back for every Mayastor copy a workload mounts, the original claim re-created
when gone, the copy kept unless ``delete_migrated_volumes`` (then a destructive delete); extra
workers cordoned, drained, powered off, their Nodes deleted, destroyed only with
``destroy_extra_workers`` (destructive), worker-01 and the control plane never touched (their re-IP
is rollback-talos'); the notebook options are declared (and typed) for the runbook.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from falkit.model.errors import StepError
from falkit.plan.diff import Plan
from falkit.plan.payloads import PAYLOADS, Blocked, GitChange, KubeDelete, ObjectRef
from falkit.render.mayastorvalues import PROVISIONER
from falkit.runbook.converge import refuse
from falkit.steps import executors
from falkit.steps.base import StepOptions
from falkit.steps.rollback import (
    LbFacts,
    VolFacts,
    WorkerFacts,
    apply_longhorn,
    plan_cilium_lb,
    plan_longhorn,
    plan_metallb,
    plan_volumes_back,
    plan_workers,
)
from falkit.steps.rollback.mayastor import MayastorFacts as MayastorBackFacts
from falkit.steps.rollback.mayastor import plan_mayastor_back
from falkit.steps.rollback.volumes import VolumeMoveBack
from falkit.steps.rollback.workers import (
    CordonWorker,
    DeleteWorkerNode,
    DestroyWorker,
    DrainWorker,
    ShutdownWorker,
)
from falkit.steps.volumes import GitopsFacts


def svc(ns, name, ann, ip=""):
    return {"metadata": {"name": name, "namespace": ns, "annotations": ann}, "spec": {"type": "LoadBalancer"},
            "status": {"loadBalancer": {"ingress": [{"ip": ip}] if ip else []}}}


def migrated_lb() -> LbFacts:
    return LbFacts(
        release=None, metallb_pools=(), l2_advertisements=(),
        services={"traefik/traefik": svc("traefik", "traefik", {"lbipam.cilium.io/ips": "10.10.0.80"}, "10.10.0.80"),
                  "argocd/argocd-server": svc("argocd", "argocd-server", {}, "10.10.0.50")},
        cilium_pools=({"apiVersion": "cilium.io/v2", "kind": "CiliumLoadBalancerIPPool", "metadata": {"name": "fal-pool"},
                       "spec": {"blocks": [{"start": "10.10.0.50", "stop": "10.10.0.99"}]}},
                      {"apiVersion": "cilium.io/v2", "kind": "CiliumLoadBalancerIPPool", "metadata": {"name": "someone-else"},
                       "spec": {"blocks": [{"cidr": "192.168.5.0/28"}]}}),
        l2_policies=({"apiVersion": "cilium.io/v2alpha1", "kind": "CiliumL2AnnouncementPolicy",
                      "metadata": {"name": "fal-l2"}, "spec": {"loadBalancerIPs": True}},),
    )


def test_metallb_plan_restores_release_pool_advertisement_and_annotations(fal):
    plan = plan_metallb(fal, migrated_lb())
    rows = [(c.op, c.kind, c.name) for c in plan.changes]
    assert rows == [("create", "helm-release", "metallb-system/metallb"),
                    ("create", "k8s-object", "IPAddressPool metallb-system/default-pool"),
                    ("create", "k8s-object", "L2Advertisement metallb-system/default"),
                    ("update", "service", "traefik/traefik"),
                    ("update", "service", "argocd/argocd-server")]
    pool = plan.changes[1].data.object
    assert pool["spec"]["addresses"] == ["10.30.0.65-10.30.0.100"]
    assert plan.changes[2].data.object["spec"]["ipAddressPools"] == ["default-pool"]
    assert plan.changes[3].data.annotations == {"lbipam.cilium.io/ips": None, "metallb.universe.tf/loadBalancerIPs": "10.30.0.100"}
    assert plan.changes[4].data.annotations == {"metallb.universe.tf/loadBalancerIPs": "10.30.0.80"}
    assert plan.changes[0].data.version == fal.versions.metallb
    assert any("longhorn-system/longhorn-frontend does not exist" in n for n in plan.notes)
    assert not plan.destructive and not plan.disruptive


def test_metallb_plan_is_empty_once_restored(fal):
    f = migrated_lb()
    done = LbFacts(
        release={"name": "metallb", "status": "deployed", "version": "0.14.9"},
        metallb_pools=({"metadata": {"name": "old-pool"}, "spec": {"addresses": ["10.30.0.65-10.30.0.100"]}},),
        l2_advertisements=({"metadata": {"name": "adv"}, "spec": {"ipAddressPools": ["old-pool"]}},),
        services={k: svc(*k.split("/"), {"metallb.universe.tf/loadBalancerIPs": ip}) for k, ip in
                  (("traefik/traefik", "10.30.0.100"), ("argocd/argocd-server", "10.30.0.80"),
                   ("longhorn-system/longhorn-frontend", "10.30.0.70"))},
        cilium_pools=f.cilium_pools, l2_policies=f.l2_policies)
    plan = plan_metallb(fal, done)
    assert plan.empty, str(plan)
    assert len(plan.noops) == 6


def test_cilium_plan_deletes_only_falkits_pool_and_the_l2_policies(fal):
    plan = plan_cilium_lb(fal, migrated_lb())
    assert [(c.op, c.name) for c in plan.changes] == [("action", "LoadBalancer"),  # MetalLB holds every old IP first
                                                       ("delete", "CiliumLoadBalancerIPPool fal-pool"),
                                                       ("delete", "CiliumL2AnnouncementPolicy fal-l2")]
    assert ("traefik/traefik", "10.30.0.100") in plan.changes[0].data.services and plan.changes[0].data.skip_absent
    assert plan.notes and "MetalLB holds" in plan.notes[0]
    gone = LbFacts(None, (), (), {}, migrated_lb().cilium_pools[1:], ())
    assert plan_cilium_lb(fal, gone).empty


def test_longhorn_plan_renames_back_and_a_missing_checkout_blocks(fal):
    g = GitopsFacts("/x", True, {"longhorn-app.yaml": "disabled", "longhorn-ingress-app.yaml": "disabled",
                                 "longhorn-rbac-app.yaml": "enabled"})
    plan = plan_longhorn(fal, g)
    assert [(c.name, c.old, c.new) for c in plan.changes] == [
        ("longhorn-app.yaml", "longhorn-app.yaml.disabled", "longhorn-app.yaml"),
        ("longhorn-ingress-app.yaml", "longhorn-ingress-app.yaml.disabled", "longhorn-ingress-app.yaml")]
    assert plan_longhorn(fal, GitopsFacts("/x", True, {"longhorn-app.yaml": "enabled"})).empty
    blocked = plan_longhorn(fal, GitopsFacts("/nope", False, {}))
    assert blocked.changes[0].data == Blocked("checkout missing")
    # the refusal reads as before (falkit.runbook.converge.refuse), and apply refuses before anything
    assert refuse(blocked, StepOptions(apply=True, extra={"rollback": True})).text() == "blocked: checkout missing"
    with pytest.raises(StepError, match="the GitOps checkout /nope does not exist"):
        apply_longhorn(None, blocked, StepOptions(apply=True), None)


def test_longhorn_plan_carries_typed_payloads_and_round_trips(fal, tmp_path):
    g = GitopsFacts(str(tmp_path), True, {"longhorn-app.yaml": "disabled", "longhorn-rbac-app.yaml": "disabled"},
                    {f: f"kind: Application\nmetadata:\n  name: {f[:-9]}\n" for f in ("longhorn-app.yaml", "longhorn-rbac-app.yaml")})
    renames = plan_longhorn(fal, g)
    assert {type(c.data) for c in renames.changes} == {GitChange}
    round_trips(renames)
    round_trips(plan_longhorn(fal, GitopsFacts("/nope", False, {})))


def pvc(ns, name, ann=None, sc="mayastor-3", size="5Gi"):
    return {"metadata": {"name": name, "namespace": ns, "annotations": ann or {}},
            "spec": {"storageClassName": sc, "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}}


def deploy(ns, name, claim):
    return {"kind": "Deployment", "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": 1, "template": {"spec": {"volumes": [{"name": "c", "persistentVolumeClaim": {"claimName": claim}}]}}}}


def migrated_volumes() -> VolFacts:
    return VolFacts(
        pvcs={"media/plex-config": pvc("media", "plex-config", {"falkit.io/migrated-to": "plex-config-mayastor"}, "longhorn"),
              "media/plex-config-mayastor": pvc("media", "plex-config-mayastor", {"falkit.io/migrated-from": "plex-config"}),
              "media/sonarr-config-mayastor": pvc("media", "sonarr-config-mayastor",
                                                  {"falkit.io/migrated-from": "sonarr-config"}, size="7Gi"),
              "media/radarr-config": pvc("media", "radarr-config", sc="longhorn"),
              "media/radarr-config-mayastor": pvc("media", "radarr-config-mayastor", {"falkit.io/migrated-from": "radarr-config"})},
        workloads=(deploy("media", "plex", "plex-config-mayastor"), deploy("media", "sonarr", "sonarr-config-mayastor"),
                   deploy("media", "radarr", "radarr-config")))


def test_volumes_plan_moves_back_what_a_workload_mounts_and_keeps_the_copies(fal):
    plan = plan_volumes_back(fal, migrated_volumes(), StepOptions())
    assert [(c.name, c.old, c.new) for c in plan.changes] == [
        ("media/plex-config-mayastor", "plex-config-mayastor", "plex-config"),
        ("media/sonarr-config-mayastor", "sonarr-config-mayastor", "sonarr-config")]
    plex, sonarr = plan.changes
    assert plex.data.recreate is False and plex.data.workloads == (("Deployment", "plex"),)
    assert sonarr.data.recreate is True and sonarr.data.size == "7Gi"  # the original claim was deleted
    assert "re-create the original claim on longhorn" in sonarr.reason
    assert not plan.destructive
    assert [n.name for n in plan.noops] == ["media/radarr-config"]  # already back; copy kept


def test_volumes_plan_deletes_copies_only_with_the_option(fal):
    f = migrated_volumes()
    back = VolFacts(f.pvcs, (deploy("media", "plex", "plex-config"), deploy("media", "sonarr", "sonarr-config"),
                             deploy("media", "radarr", "radarr-config")))
    assert plan_volumes_back(fal, back, StepOptions()).empty
    plan = plan_volumes_back(fal, back, StepOptions(extra={"delete_migrated_volumes": True}))
    assert [(c.op, c.name, c.destructive) for c in plan.changes] == [
        ("delete", "media/plex-config-mayastor", True), ("delete", "media/radarr-config-mayastor", True),
        ("delete", "media/sonarr-config-mayastor", True)]


def round_trips(plan: Plan) -> None:
    """Issue 18: every change carries a registered payload (not a dict) with an executor, and the
    plan survives JSON equal to itself."""
    assert plan.changes
    for c in plan.changes:
        assert not isinstance(c.data, dict) and PAYLOADS.get(type(c.data).__name__) is type(c.data), c.describe()
        assert executors.executable(c), c.describe()
    back = Plan.from_json(json.loads(json.dumps(plan.to_json())))
    assert back == plan and [type(c.data) for c in back.changes] == [type(c.data) for c in plan.changes]


def test_volumes_plan_carries_typed_payloads_and_round_trips(fal):
    f = migrated_volumes()
    moves = plan_volumes_back(fal, f, StepOptions(extra={"delete_migrated_volumes": True}))
    assert [type(c.data) for c in moves.changes] == [VolumeMoveBack, KubeDelete, VolumeMoveBack]
    assert moves.changes[1].data == KubeDelete(ObjectRef("v1", "PersistentVolumeClaim", "media", "radarr-config-mayastor"))
    assert moves.changes[2].data == VolumeMoveBack("media", "sonarr-config-mayastor", "sonarr-config", True, "longhorn",
                                                   "7Gi", ("ReadWriteOnce",), (("Deployment", "sonarr"),))
    round_trips(moves)


def test_mayastor_plan_deletes_falkits_leftovers_as_typed_payloads_and_round_trips(fal):
    """rollback-mayastor without a recorded before-state: falkit's test claim, then (the copies
    deleted too) the Mayastor class and the pools — each a KubeDelete; the plan survives JSON."""
    mine = {"metadata": {"name": "fio-mayastor", "namespace": "falkit-bench",
                         "labels": {"app.kubernetes.io/managed-by": "falkit"}}, "spec": {"storageClassName": "mayastor-3"}}
    copy = pvc("media", "plex-config-mayastor", {"falkit.io/migrated-from": "plex-config"})
    classes = ({"metadata": {"name": "mayastor-3"}, "provisioner": PROVISIONER},
               {"metadata": {"name": "longhorn"}, "provisioner": "driver.longhorn.io"})
    pools = ({"metadata": {"name": "pool-talos-worker-02", "namespace": "mayastor"}, "spec": {"node": "talos-worker-02"}},)
    f = MayastorBackFacts(None, (mine, copy), classes, pools)
    kept = plan_mayastor_back(fal, f, StepOptions())
    assert [(c.op, c.kind, c.name) for c in kept.changes] == [("delete", "claim", "falkit-bench/fio-mayastor")]
    assert {n.kind for n in kept.noops} == {"storageclass", "diskpool"}  # the copies keep the class and the pools
    plan = plan_mayastor_back(fal, f, StepOptions(extra={"delete_migrated_volumes": True}))
    assert [c.data for c in plan.changes] == [
        KubeDelete(ObjectRef("v1", "PersistentVolumeClaim", "falkit-bench", "fio-mayastor")),
        KubeDelete(ObjectRef("storage.k8s.io/v1", "StorageClass", "", "mayastor-3")),
        KubeDelete(ObjectRef("openebs.io/v1beta2", "DiskPool", "mayastor", "pool-talos-worker-02"))]
    round_trips(plan)


def node(name, unschedulable=False):
    return {"metadata": {"name": name}, "spec": {"unschedulable": unschedulable} if unschedulable else {}}


def pod(name, node_name, owner="ReplicaSet"):
    return {"metadata": {"name": name, "namespace": "media", "ownerReferences": [{"kind": owner}]},
            "spec": {"nodeName": node_name}, "status": {"phase": "Running"}}


def migrated_workers() -> WorkerFacts:
    vms = {vmid: {"name": n, "status": "running", "config": {}} for vmid, n in
           ((200, "talos-cp-01"), (201, "talos-worker-01"), (202, "talos-worker-02"), (203, "talos-worker-03"))}
    nodes = {n: node(n) for n in ("talos-cp-01", "talos-worker-01", "talos-worker-02", "talos-worker-03")}
    pods = (pod("plex-1", "talos-worker-02"), pod("io-engine-x", "talos-worker-02", "DaemonSet"),
            pod("io-engine-y", "talos-worker-03", "DaemonSet"))
    return WorkerFacts(vms, nodes, pods)


def test_workers_plan_powers_off_extra_workers_and_never_touches_the_kept_ones(fal):
    plan = plan_workers(fal, migrated_workers(), StepOptions())
    rows = [(c.name, c.op, c.field or c.kind) for c in plan.changes]
    assert rows == [("talos-worker-02", "action", "cordon"), ("talos-worker-02", "action", "drain"),
                    ("talos-worker-02", "action", "shutdown"), ("talos-worker-02", "delete", "node"),
                    ("talos-worker-03", "action", "cordon"), ("talos-worker-03", "action", "shutdown"),
                    ("talos-worker-03", "delete", "node")]
    assert not plan.destructive
    assert all(c.name not in ("talos-worker-01", "talos-cp-01") for c in plan.changes)
    # the re-IP of the nodes that stay is rollback-talos' now, not a note here
    assert not any("re-IP" in n for n in plan.notes)


def test_workers_plan_destroys_only_with_the_option_and_converges(fal):
    f = migrated_workers()
    plan = plan_workers(fal, f, StepOptions(extra={"destroy_extra_workers": True}))
    destroy = [c for c in plan.changes if c.kind == "vm" and c.op == "delete"]
    assert [(c.name, c.destructive) for c in destroy] == [("talos-worker-02", True), ("talos-worker-03", True)]
    off = WorkerFacts({**f.vms, 202: {**f.vms[202], "status": "stopped"}, 203: {**f.vms[203], "status": "stopped"}},
                      {k: v for k, v in f.nodes.items() if k in ("talos-cp-01", "talos-worker-01")}, ())
    converged = plan_workers(fal, off, StepOptions())
    assert converged.empty and len(converged.noops) == 2


def test_workers_plan_carries_typed_payloads_and_round_trips(fal):
    """Every change of rollback-workers carries a registered payload with an executor (the Node, the
    VMID), and the plan is equal after a JSON round trip."""
    plan = plan_workers(fal, migrated_workers(), StepOptions(extra={"destroy_extra_workers": True}))
    assert [c.data for c in plan.changes[:5]] == [CordonWorker("talos-worker-02"), DrainWorker("talos-worker-02"),
                                                  ShutdownWorker(202), DeleteWorkerNode("talos-worker-02"),
                                                  DestroyWorker(202)]
    assert all(dataclasses.is_dataclass(c.data) and PAYLOADS.get(type(c.data).__name__) is type(c.data)
               and executors.executable(c) for c in plan.changes), [c.describe() for c in plan.changes]
    assert Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan


def test_rollback_options_are_declared_for_the_runbook():
    from falkit.runbook import known_options

    opts = known_options()
    assert opts["destroy_extra_workers"] == (bool, False)
    assert opts["delete_migrated_volumes"] == (bool, False)
    assert opts["rollback"] == (bool, False)


def test_a_new_build_has_nothing_to_roll_back(fal):
    """Without ``previous`` (a lab built new, not migrated) no rollback step plans a change: the
    Cilium pool stays (no MetalLB would take over) and no worker counts as extra."""
    from falkit.steps.rollback import LbFacts, RollbackWorkers, plan_cilium_lb, plan_metallb

    new = fal.model_copy(update={"previous": None})
    pool = {"apiVersion": "cilium.io/v2", "kind": "CiliumLoadBalancerIPPool",
            "metadata": {"name": "falkit-lb", "labels": {"app.kubernetes.io/managed-by": "falkit"}}}
    l2 = {"apiVersion": "cilium.io/v2alpha1", "kind": "CiliumL2AnnouncementPolicy", "metadata": {"name": "l2"}}
    facts = LbFacts(None, (), (), {}, (pool,), (l2,))
    assert plan_cilium_lb(new, facts).empty and plan_metallb(new, facts).empty
    assert not plan_cilium_lb(fal, facts).empty  # with a before-state: deleted once MetalLB holds the IPs
    assert RollbackWorkers().checks(None, new, None) == []


def test_plex_back_plan_round_trips_through_json_with_typed_payloads(fal):
    """rollback-plex: stop, copy back, the saved manifest created again, destroy (with the option);
    every change a registered payload with an executor (no dict), the plan equal after JSON; apply
    stops the container, copies every library back, then creates the workloads."""
    import json

    from falkit.plan.diff import Plan
    from falkit.steps import executors
    from falkit.steps.plex import FROM, SAVED
    from falkit.steps.rollback.plex import PlexBackFacts, PlexBackWorkload, in_apply_order, plan_plex_back

    def saved(ns, claim):
        obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"plex-{claim}", "namespace": ns},
               "spec": {"replicas": 1}}
        return ({"metadata": {"name": claim, "namespace": ns, "annotations": {SAVED: json.dumps(obj)}}},
                {"metadata": {"name": f"{claim}-lxc", "namespace": ns, "annotations": {FROM: claim}}})

    pvcs = {}
    for claim in ("a", "b"):
        old, new = saved("media", claim)
        pvcs[("media", claim)], pvcs[("media", f"{claim}-lxc")] = old, new
    facts = PlexBackFacts((), pvcs, {"status": "running", "config": {}})
    plan = plan_plex_back(fal, facts, StepOptions(extra={"destroy_plex_container": True}))
    assert [(c.op, c.kind) for c in plan.changes] == [
        ("action", "ct"), ("action", "library-copy"), ("create", "k8s-workload"), ("action", "library-copy"),
        ("create", "k8s-workload"), ("delete", "ct")]
    assert all(not isinstance(c.data, dict) and executors.executable(c) for c in plan.changes)
    assert Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
    assert isinstance(plan.changes[2].data, PlexBackWorkload) and plan.changes[2].data.object["metadata"]["name"] == "plex-a"
    assert [(c.kind, c.name) for c in in_apply_order(plan.changes)] == [
        ("ct", "plex"), ("library-copy", "media/a-lxc"), ("library-copy", "media/b-lxc"),
        ("k8s-workload", "Deployment/media/plex-a"), ("k8s-workload", "Deployment/media/plex-b"), ("ct", "plex")]
