"""volumes (50-mayastor), pure parts as data tables: which claims are on Longhorn (by StorageClass
provisioner, by the previous class name, by the PV's CSI driver; never falkit's own copies), one
migration per claim with the workloads to repoint, already-migrated claims planning nothing, old
claims deleted only with ``delete_old_volumes`` (destructive), claims from volumeClaimTemplates
reported and keeping Longhorn enabled, a missing GitOps checkout refusing apply before anything,
and the seed's ``*.disabled`` rename in a checkout laid out as the seed's repository."""

from __future__ import annotations

import json

import pytest

from falkit.model.errors import StepError
from falkit.plan.diff import Plan
from falkit.plan.payloads import PAYLOADS, Blocked, KubeDelete
from falkit.render.gitops import ObjectRef
from falkit.runbook.converge import refuse
from falkit.steps import executors
from falkit.steps.base import StepOptions
from falkit.steps.executors import execute
from falkit.steps.volumes import (
    MIGRATED_FROM,
    MIGRATED_TO,
    GitopsFacts,
    VolumeFacts,
    VolumeMove,
    VolumesStep,
    is_longhorn,
    new_claim_name,
    observe_gitops,
    plan_volumes,
)

LH_SC = {"metadata": {"name": "longhorn"}, "provisioner": "driver.longhorn.io"}
MS_SC = {"metadata": {"name": "mayastor-3"}, "provisioner": "io.openebs.csi-mayastor"}


def pvc(ns, name, sc="longhorn", pv=None, ann=None, size="5Gi"):
    return {"metadata": {"namespace": ns, "name": name, "annotations": ann or {}},
            "spec": {"storageClassName": sc, "volumeName": pv, "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": size}}}, "status": {"phase": "Bound"}}


def deploy(ns, name, claim, kind="Deployment", replicas=1):
    return {"kind": kind, "metadata": {"namespace": ns, "name": name},
            "spec": {"replicas": replicas, "template": {"spec": {"volumes": [
                {"name": "config", "persistentVolumeClaim": {"claimName": claim}}]}}}}


def gitops(files=None, exists=True):
    return GitopsFacts("/gitops", exists, files if files is not None else {
        "longhorn-app.yaml": "enabled", "longhorn-ingress-app.yaml": "enabled", "longhorn-rbac-app.yaml": "enabled"})


def facts(pvcs, workloads=(), g=None, pvs=None, classes=(LH_SC, MS_SC)):
    return VolumeFacts(tuple(pvcs), {c["metadata"]["name"]: c for c in classes}, pvs or {}, tuple(workloads),
                       g if g is not None else gitops())


LONGHORN_CASES = [
    (pvc("m", "a", sc="longhorn"), {}, True),  # by provisioner
    (pvc("m", "a", sc="old-class", pv="pv-1"), {"pv-1": {"spec": {"csi": {"driver": "driver.longhorn.io"}}}}, True),
    (pvc("m", "a", sc="mayastor-3"), {}, False),
    (pvc("m", "a-mayastor", sc="longhorn", ann={MIGRATED_FROM: "a"}), {}, False),  # falkit's own copy
]


@pytest.mark.parametrize(("claim", "pvs", "want"), LONGHORN_CASES)
def test_is_longhorn(fal, claim, pvs, want):
    assert is_longhorn(fal, claim, {"longhorn": LH_SC, "mayastor-3": MS_SC}, pvs) is want


def test_longhorn_by_previous_class_name(fal):
    assert is_longhorn(fal, pvc("m", "a", sc="longhorn"), {}, {})  # spec.previous.longhorn_storage_class


def test_plan_migrates_each_claim_then_disables_longhorn(fal):
    f = facts([pvc("media", "sonarr-config"), pvc("media", "radarr-config"), pvc("media", "cache", sc="mayastor-3")],
              [deploy("media", "sonarr", "sonarr-config"), deploy("media", "radarr", "radarr-config", replicas=2)])
    plan = plan_volumes(fal, f, StepOptions())
    vols = [c for c in plan.changes if c.kind == "volume"]
    assert [c.name for c in vols] == ["media/radarr-config", "media/sonarr-config"]
    radarr = vols[0].data
    assert radarr.workloads == (("Deployment", "radarr"),)
    assert radarr.new["metadata"] == {"name": "radarr-config-mayastor", "namespace": "media",
                                         "labels": {"app.kubernetes.io/managed-by": "falkit"},
                                         "annotations": {MIGRATED_FROM: "radarr-config"}}
    assert radarr.new["spec"]["storageClassName"] == "mayastor-3"
    assert radarr.new["spec"]["resources"]["requests"]["storage"] == "5Gi"
    files = [c for c in plan.changes if c.kind == "gitops-file"]
    assert [c.new for c in files] == ["longhorn-app.yaml.disabled", "longhorn-ingress-app.yaml.disabled",
                                      "longhorn-rbac-app.yaml.disabled"]
    assert plan.changes.index(files[0]) > plan.changes.index(vols[-1])  # never before the volumes
    assert not plan.destructive


def migrated_facts(g=None):
    return facts([pvc("media", "sonarr-config", ann={MIGRATED_TO: "sonarr-config-mayastor"}),
                  pvc("media", "sonarr-config-mayastor", sc="mayastor-3", ann={MIGRATED_FROM: "sonarr-config"})],
                 [deploy("media", "sonarr", "sonarr-config-mayastor")],
                 g or gitops({"longhorn-app.yaml": "disabled", "longhorn-ingress-app.yaml": "disabled",
                              "longhorn-rbac-app.yaml": "disabled"}))


def test_rerun_plans_nothing(fal):
    plan = plan_volumes(fal, migrated_facts(), StepOptions())
    assert plan.empty, str(plan)
    assert {n.kind for n in plan.noops} == {"volume", "gitops"}


def test_delete_old_volumes_is_destructive(fal):
    plan = plan_volumes(fal, migrated_facts(), StepOptions(extra={"delete_old_volumes": True}))
    assert [(c.op, c.kind, c.name, c.destructive) for c in plan.changes] == [("delete", "pvc", "media/sonarr-config", True)]


def test_volume_claim_templates_keep_longhorn(fal):
    sts = deploy("db", "pg", "other", kind="StatefulSet")
    sts["spec"]["volumeClaimTemplates"] = [{"metadata": {"name": "data"}}]
    plan = plan_volumes(fal, facts([pvc("db", "data-pg-0")], [sts]), StepOptions())
    assert not [c for c in plan.changes if c.kind in ("volume", "gitops-file")]
    assert any("volumeClaimTemplates" in n for n in plan.notes)


def test_missing_checkout_refuses_before_anything(fal):
    plan = plan_volumes(fal, facts([pvc("media", "a")], g=gitops(exists=False)), StepOptions())
    assert [c.kind for c in plan.changes] == ["volume", "gitops"]
    with pytest.raises(StepError, match="GitOps checkout /gitops does not exist"):
        VolumesStep().apply(_NoLab(fal), plan, StepOptions(apply=True), None)


def test_plans_carry_typed_payloads_and_round_trip(fal):
    """Issue 18: every change carries a registered payload with an executor (a move, a deletion of
    an old claim, a rename, a missing checkout), and the plan survives JSON equal to itself."""
    moves = plan_volumes(fal, facts([pvc("media", "sonarr-config"), pvc("media", "radarr-config")],
                                    [deploy("media", "sonarr", "sonarr-config")]), StepOptions())
    delete = plan_volumes(fal, migrated_facts(), StepOptions(extra={"delete_old_volumes": True}))
    missing = plan_volumes(fal, facts([pvc("media", "a")], g=gitops(exists=False)), StepOptions())
    assert {type(c.data) for p in (moves, delete, missing) for c in p.changes} >= {VolumeMove, KubeDelete, Blocked}
    for plan in (moves, delete, missing):
        assert plan.changes
        for c in plan.changes:
            assert not isinstance(c.data, dict) and PAYLOADS.get(type(c.data).__name__) is type(c.data), c.describe()
            assert executors.executable(c), c.describe()
        back = Plan.from_json(json.loads(json.dumps(plan.to_json())))
        assert back == plan and [type(c.data) for c in back.changes] == [type(c.data) for c in plan.changes]
    assert delete.changes[0].data == KubeDelete(ObjectRef("v1", "PersistentVolumeClaim", "media", "sonarr-config"))
    # the refusal of a missing checkout reads as before (falkit.runbook.converge.refuse)
    assert refuse(missing, StepOptions(apply=True)).text() == "blocked: checkout missing"


class _NoLab:
    """A target whose Kubernetes must not be reached (apply refuses first)."""

    def __init__(self, spec):
        self.gitops = spec.gitops  # what falkit.clients.target.Target keeps of the spec

    def kube(self):  # pragma: no cover - reaching it is the failure
        raise AssertionError("apply touched the lab before refusing")


def test_disable_longhorn_in_seed_layout(fal, tmp_path):
    """The seed's rename, made as a commit in a Git checkout with the seed's layout."""
    import subprocess

    from falkit.twin.gitops_fixture import make_fixture_repo, make_remote

    repo = make_fixture_repo(tmp_path / "gitops", fal)
    make_remote(repo, tmp_path / "remote.git")  # fal.yaml pushes and fast-forwards the tracked branch
    platform = repo / fal.gitops.platform_path
    opts = StepOptions(extra={"gitops_checkout": str(repo)})
    g = observe_gitops(fal, opts)
    assert g.exists and set(g.files.values()) == {"enabled"}
    plan = plan_volumes(fal, facts([], g=g), opts)
    files = [c for c in plan.changes if c.kind == "gitops-file"]
    assert len(files) == 3
    assert all(c.data.edit.rename_to.endswith(".disabled") for c in files)  # the renames are planned, in plan
    execute(None, files, _Log())  # what apply runs (no cluster here: no Argo CD sync to wait for)
    names = {p.name for p in platform.iterdir()}
    assert {f + ".disabled" for f in fal.gitops.longhorn_files} <= names
    assert not set(fal.gitops.longhorn_files) & names and "traefik-app.yaml" in names
    log = subprocess.run(["git", "-C", str(repo), "log", "--name-status", "-1", "--format=%s"], capture_output=True, text=True).stdout
    assert "longhorn-app.yaml.disabled" in log
    assert plan_volumes(fal, facts([], g=observe_gitops(fal, opts)), opts).empty


class _Log:
    def log(self, message):
        pass

    def task(self, name, total=None):
        return lambda done, detail="": None


def test_new_claim_name():
    assert new_claim_name("data") == "data-mayastor"
    assert new_claim_name("data-mayastor") == "data-mayastor"
    assert len(new_claim_name("x" * 253)) == 253


def test_falkit_scratch_claims_are_not_migrated(fal):
    """The benchmarks' Longhorn claim (labelled managed-by falkit) is falkit's, not the operator's data."""
    from falkit.steps.volumes import is_longhorn

    sc = {"longhorn": {"provisioner": "driver.longhorn.io"}}
    data = {"metadata": {"name": "sonarr-config", "namespace": "media"}, "spec": {"storageClassName": "longhorn"}}
    scratch = {"metadata": {"name": "fio-longhorn", "namespace": "falkit-bench", "labels": {"app.kubernetes.io/managed-by": "falkit"}},
               "spec": {"storageClassName": "longhorn"}}
    assert is_longhorn(fal, data, sc, {}) and not is_longhorn(fal, scratch, sc, {})


def test_disabling_longhorn_says_what_keeps_running(fal):
    from dataclasses import replace

    quiet = plan_volumes(fal, migrated_facts(), StepOptions())
    assert not any("Longhorn keeps running" in n for n in quiet.notes)  # nothing left: nothing to say
    left = replace(migrated_facts(), longhorn_apps={"longhorn": False, "longhorn-rbac": True}, longhorn_pods=7)
    plan = plan_volumes(fal, left, StepOptions())
    note = next(n for n in plan.notes if "Longhorn keeps running" in n)
    assert "longhorn carry no resources-finalizer.argocd.argoproj.io" in note and "longhorn-rbac" not in note
    assert "7 pod(s) run in longhorn-system" in note and "falkit never deletes it" in note
    assert plan.empty  # a note, never a deletion
