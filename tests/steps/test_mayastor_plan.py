"""50-mayastor, pure parts: the Helm values (core list that fits a 2-vCPU worker, hugepages, Talos
kubelet dir, no chart StorageClass), the DiskPool in the apiVersion of the Mayastor version
(validated against the derived schema), the StorageClass's string parameters, the preflight
checks, and the plan as data tables: a fresh cluster, a failing preflight (apply refuses), a
converged cluster (empty plan), drift (StorageClass re-created, a pool's disk change destructive);
the Argo CD path: mayastor-app.yaml's Git edit made in plan from the observed text, every change a
typed payload with an executor, the plan equal after a JSON round trip."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml
from helpers import patched

from falkit.model.errors import StepError
from falkit.model.schemas import diskpool_schema
from falkit.model.spec import spec_from_data
from falkit.model.yamlsrc import parse_yaml
from falkit.plan.diff import Plan
from falkit.plan.payloads import GitChange, GitRepo
from falkit.render import mayastorvalues as mv
from falkit.render.gitops import mayastor_application
from falkit.runbook.converge import refuse
from falkit.steps import executors
from falkit.steps.base import StepOptions
from falkit.steps.mayastor import (
    QEMU_BY_ID,
    TEST_PVC,
    WRITTEN_ANNOTATION,
    MayastorFacts,
    MayastorStep,
    NodeFacts,
    has_module,
    parse_meminfo,
    plan_mayastor,
    preflight,
)

GIB = 1024 ** 3


def spec_with(patch: dict | None = None):
    data = patched(patch or {})
    d, pos = parse_yaml(yaml.safe_dump(data), "lab.yaml")
    return spec_from_data(d, pos)


def healthy_nodes(spec, labels=None, **kw):
    return tuple(NodeFacts(w.name, w.ip, hugepages_total=1024, nvme_tcp=True, vcpus=2, disk="/dev/sdb",
                           disk_bytes=300 * GIB, labels={} if labels is None else dict(labels), **kw)
                 for w in spec.cluster.workers)


def converged_facts(spec):
    values = mv.helm_values(spec)
    pools = {}
    for w in spec.cluster.workers:
        p = mv.diskpool(spec, w.name, "/dev/sdb")
        p["status"] = {"cr_state": "Created", "pool_status": "Online", "capacity": 300 * GIB}
        pools[p["metadata"]["name"]] = p
    return MayastorFacts(
        nodes=healthy_nodes(spec, {"openebs.io/engine": "mayastor"}),
        namespace_labels={"pod-security.kubernetes.io/enforce": "privileged"},
        release={"version": spec.versions.mayastor, "values": values, "status": "deployed"},
        pools=pools, storage_class=mv.storage_class(spec),
        test_pvc={"metadata": {"annotations": {WRITTEN_ANNOTATION: "ab" * 32}}, "status": {"phase": "Bound"}},
        io_engine={w.name: "Running" for w in spec.cluster.workers})


def test_values_fit_a_two_vcpu_worker(fal):
    v = mv.helm_values(fal)
    assert v["io_engine"]["coreList"] == [1]  # core 0 for the kubelet; 1,2 does not exist on 2 vCPUs
    assert v["io_engine"]["cpuCount"] == "1"
    assert v["io_engine"]["resources"]["requests"]["hugepages2Mi"] == "2Gi"
    assert v["io_engine"]["resources"]["limits"]["hugepages2Mi"] == "2Gi"
    assert v["csi"]["node"]["kubeletDir"] == "/var/lib/kubelet"
    assert v["storageClass"]["enabled"] is False
    assert v["etcd"]["replicaCount"] == 3 and v["etcd"]["persistence"]["enabled"] is True
    assert mv.chart_ref(fal) == ("mayastor", "2.8.0")
    assert mv.umbrella_values(fal)["mayastor"] == v
    assert mv.umbrella_values(fal)["engines"]["replicated"]["mayastor"]["enabled"] is True


@pytest.mark.parametrize(("version", "api"), [("2.8.0", "openebs.io/v1beta2"), ("2.9.1", "openebs.io/v1beta3")])
def test_diskpool_api_version_and_schema(version, api):
    spec = spec_with({"versions.mayastor": version})
    pool = mv.diskpool(spec, "talos-worker-02", "/dev/sdb")
    assert pool["apiVersion"] == api
    assert pool["metadata"]["name"] == "pool-talos-worker-02"
    assert pool["spec"] == {"node": "talos-worker-02", "disks": ["/dev/sdb"]}
    jsonschema.validate(pool, diskpool_schema(api.split("/")[1]))


def test_storage_class_parameters_are_strings(fal):
    sc = mv.storage_class(fal)
    assert sc["provisioner"] == "io.openebs.csi-mayastor"
    assert sc["parameters"] == {"repl": "3", "protocol": "nvmf", "thin": "true", "fsType": "ext4"}
    assert all(isinstance(v, str) for v in sc["parameters"].values())
    drifted = dict(sc, parameters={"repl": 1, "protocol": "nvmf", "thin": "true", "fsType": "ext4"})
    assert mv.storage_class_drift(sc, drifted) == [("parameters.repl", "1", "3")]
    assert mv.namespace_object(fal)["metadata"]["labels"] == {"pod-security.kubernetes.io/enforce": "privileged"}


def test_proc_parsers():
    mem = parse_meminfo("MemTotal:  9437184 kB\nHugePages_Total:    1024\nHugepagesize:       2048 kB\n")
    assert mem["HugePages_Total"] == 1024 and mem["MemTotal"] == 9437184
    assert has_module("nvme_tcp 65536 0 - Live 0x0\nnvme_core 1 0 - Live 0x0\n", "nvme-tcp")
    assert not has_module("nvme_core 1 0 - Live 0x0\n", "nvme_tcp")


PREFLIGHT_CASES = [
    # (NodeFacts overrides, failing check names)
    ({}, []),
    ({"hugepages_total": 0}, ["hugepages"]),
    ({"nvme_tcp": False}, ["kernel module"]),
    ({"disk_bytes": None}, ["data disk"]),
    ({"vcpus": 1}, ["io-engine cores"]),
    ({"error": "connection refused"}, ["talos reachable"]),
]


@pytest.mark.parametrize(("over", "failing"), PREFLIGHT_CASES)
def test_preflight_table(fal, over, failing):
    base = dict(hugepages_total=1024, nvme_tcp=True, vcpus=2, disk="/dev/sdb", disk_bytes=300 * GIB)
    base.update(over)
    checks = preflight(fal, NodeFacts("talos-worker-01", "10.10.0.11", **base))
    assert [c.check for c in checks if not c.ok] == failing
    assert all(c.fix for c in checks if not c.ok)


def test_plan_fresh_cluster(fal):
    facts = MayastorFacts(nodes=healthy_nodes(fal), namespace_labels=None, release=None)
    plan = plan_mayastor(fal, facts, StepOptions())
    kinds = [(c.op, c.kind, c.name) for c in plan.changes]
    assert kinds == [
        ("update", "node-label", "talos-worker-01"), ("update", "node-label", "talos-worker-02"),
        ("update", "node-label", "talos-worker-03"), ("create", "namespace", "mayastor"),
        ("create", "helm-release", "mayastor/mayastor"), ("action", "mayastor", "mayastor"),
        ("create", "diskpool", "pool-talos-worker-01"), ("create", "diskpool", "pool-talos-worker-02"),
        ("create", "diskpool", "pool-talos-worker-03"), ("action", "diskpool", "DiskPools"),
        ("create", "storage-class", "mayastor-3"),
        ("create", "pvc", f"mayastor/{TEST_PVC}"), ("action", "pvc", f"mayastor/{TEST_PVC}"),
        ("action", "job", f"mayastor/falkit-write-{TEST_PVC}"),
    ]
    helm = next(c for c in plan.changes if c.kind == "helm-release")
    assert helm.data.values["io_engine"]["coreList"] == [1]
    assert not plan.destructive and not plan.disruptive


def test_plan_converged_is_empty(fal):
    plan = plan_mayastor(fal, converged_facts(fal), StepOptions())
    assert plan.empty, str(plan)
    assert len(plan.noops) >= 8


def test_plan_drift(fal):
    facts = converged_facts(fal)
    pools = dict(facts.pools)
    p = dict(pools["pool-talos-worker-02"], spec={"node": "talos-worker-02", "disks": ["/dev/sdc"]})
    pools["pool-talos-worker-02"] = p
    sc = dict(facts.storage_class, parameters={"repl": "1", "protocol": "nvmf", "thin": "true", "fsType": "ext4"})
    rel = dict(facts.release, version="2.7.1")
    plan = plan_mayastor(fal, MayastorFacts(facts.nodes, facts.namespace_labels, rel, pools, sc, facts.test_pvc,
                                            facts.io_engine), StepOptions())
    assert [(c.kind, c.field) for c in plan.destructive] == [("diskpool", "spec.disks")]
    assert [(c.kind, c.field, c.old, c.new) for c in plan.disruptive] == [("storage-class", "parameters.repl", "1", "3")]
    assert any(c.kind == "helm-release" and c.field == "version" and c.new == "2.8.0" for c in plan.changes)


def test_disk_by_id_option(fal):
    facts = MayastorFacts(nodes=healthy_nodes(fal), namespace_labels=None, release=None)
    plan = plan_mayastor(fal, facts, StepOptions(extra={"disk_by_id": True}))
    pool = next(c for c in plan.changes if c.kind == "diskpool")
    assert pool.data.object["spec"]["disks"] == [QEMU_BY_ID.format(slot="scsi1")]


def test_failed_preflight_refuses_apply(fal):
    nodes = healthy_nodes(fal)
    nodes = (NodeFacts(**{**nodes[0].__dict__, "hugepages_total": 0}),) + nodes[1:]
    plan = plan_mayastor(fal, MayastorFacts(nodes=nodes, namespace_labels=None, release=None), StepOptions())
    blocked = [c for c in plan.changes if c.kind == "preflight"]
    assert [(c.name, c.field) for c in blocked] == [("talos-worker-01", "hugepages")]
    with pytest.raises(StepError, match="preflight failed: talos-worker-01: blocked: hugepages"):
        MayastorStep().apply(None, plan, StepOptions(apply=True), None)  # refuses before touching the lab


def test_failed_preflight_is_refused_by_the_gate_whatever_the_options(fal):
    """The refusal ``falkit run`` and a JupyterLab gate share (``refuse``) sees a failed preflight
    as blocked — no allow_* option allows it — also in a plan loaded back from its archived JSON.
    (Regression: the typed payload had dropped ``data["blocked"]``, so a dry run no longer said why
    the plan would be refused.)"""
    nodes = healthy_nodes(fal)
    nodes = (NodeFacts(**{**nodes[0].__dict__, "hugepages_total": 0}),) + nodes[1:]
    plan = plan_mayastor(fal, MayastorFacts(nodes=nodes, namespace_labels=None, release=None), StepOptions())
    every = StepOptions(apply=True, allow_disruptive=True, allow_destructive=True)
    for p in (plan, Plan.from_json(json.loads(json.dumps(plan.to_json())))):
        refusal = refuse(p, every)
        assert refusal and [c.name for c in refusal.blocked] == ["talos-worker-01"]
        assert refusal.text().startswith("blocked: hugepages — ")
        assert "do not allow a blocked change" in refusal.how()


def test_argocd_path_plans_the_git_edit_and_round_trips(fal):
    """Argo CD deploys Mayastor: plan (not observe) makes ``mayastor-app.yaml``'s edit from the text
    observe read; every change carries a typed payload with an executor, and the plan survives JSON."""
    repo = GitRepo("/tmp/gitops", "kubernetes/platform")
    facts = MayastorFacts(nodes=healthy_nodes(fal), namespace_labels=None, release=None, via_argocd=True,
                          gitops_repo=repo, gitops_file="")
    plan = plan_mayastor(fal, facts, StepOptions())
    git = [c for c in plan.changes if c.kind == "git-file"]
    assert [(c.op, c.name) for c in git] == [("create", "kubernetes/platform/mayastor-app.yaml")]
    assert isinstance(git[0].data, GitChange) and git[0].data.repo == repo and git[0].data.app == "platform"
    assert yaml.safe_load(git[0].data.edit.after) == mayastor_application(fal)
    assert not any(c.kind == "helm-release" for c in plan.changes)
    assert all(executors.executable(c) for c in plan.changes), [c.describe() for c in plan.changes]
    assert Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
    same = MayastorFacts(nodes=facts.nodes, namespace_labels=None, release=None, via_argocd=True,
                         gitops_repo=repo, gitops_file=git[0].data.edit.after)
    assert not any(c.kind == "git-file" for c in plan_mayastor(fal, same, StepOptions()).changes)
