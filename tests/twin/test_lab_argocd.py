"""The twin's Argo CD (falkit.twin.lab.argocd) and falkit's ownership-aware changes against it.

Covered: the app-of-apps syncs the platform Applications from the fixture repository (committed
content only), tracking annotations, Synced/Healthy once workloads are ready and LoadBalancer
Services have IPs; a direct patch of an Argo CD-managed Service through the official client is
reverted by self-heal (after the scaled self-heal delay), while the same change made through falkit
(plan_object_change -> a git-file change -> apply_git_changes) lands in a commit on the branch,
syncs and stays; Longhorn's *.disabled renames make the parent prune the Longhorn Applications;
an unreadable repository is a ComparisonError. Argo CD follows the *remote* (issue 13 fault 6):
the twin's Argo CD reads the bare repository falkit pushes to, at each Application's
targetRevision (HEAD: the remote's default branch); a commit falkit was not allowed to push and
merge is not synced, and falkit stops at a gate (GitOpsGateError) that names the branch, the
commit and the tracked branch; with push and merge it fast-forwards main and waits for the sync."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from falkit.clients.kube import kget
from falkit.model.spec import load_spec
from falkit.render.gitops import Checkout, GitOpsGateError, ObjectRef, git, platform_application
from falkit.steps.ownership import apply_git_changes, managed_by, plan_object_change, plan_renames
from falkit.twin.gitops_fixture import make_fixture_repo, make_remote
from falkit.twin.lab import argocd, helm, lbipam, workloads
from falkit.twin.lab.context import LabContext

ROOT = Path(__file__).resolve().parents[2]
APP = ("argoproj.io/v1alpha1", "Application")
SVC = ObjectRef("v1", "Service", "traefik", "traefik")
CILIUM = {"metadata": {"annotations": {"metallb.universe.tf/loadBalancerIPs": None, "lbipam.cilium.io/ips": "10.10.0.80"}}}


def lab(store, tmp_path: Path, time_factor: float = 0.0) -> tuple[LabContext, Path]:
    spec = load_spec(ROOT / "parameters" / "fal.yaml")
    repo = tmp_path / "gitops"
    spec = spec.model_copy(update={"gitops": spec.gitops.model_copy(update={"checkout": str(repo)})})
    make_fixture_repo(repo, spec)
    make_remote(repo, tmp_path / "state" / "gitops-remote.git")  # the twin's Git server, what Argo CD reads
    ctx = LabContext(store, spec, tmp_path / "state", time_factor=time_factor)
    for i in (1, 2, 3):
        store.create({"apiVersion": "v1", "kind": "Node",
                      "metadata": {"name": f"talos-worker-0{i}", "labels": {"kubernetes.io/hostname": f"talos-worker-0{i}"}},
                      "status": {"conditions": [{"type": "Ready", "status": "True"}],
                                 "addresses": [{"type": "InternalIP", "address": f"10.10.0.1{i}"}]}},
                     keep_status=True)
    helm.upsert(ctx, "kube-system", "cilium", "cilium", spec.versions.cilium,
                {"kubeProxyReplacement": True, "l2announcements": {"enabled": True}})
    store.create({"apiVersion": "cilium.io/v2", "kind": "CiliumLoadBalancerIPPool", "metadata": {"name": "pool"},
                  "spec": {"blocks": [{"start": "10.10.0.50", "stop": "10.10.0.99"}]}})
    helm.upsert(ctx, "argocd", "argocd", "argo/argo-cd", "9.1.0", {"server": {"service": {"type": "LoadBalancer"}}})
    store.create(platform_application(spec.gitops))
    return ctx, repo


def settle(ctx: LabContext, passes: int = 6) -> None:
    for _ in range(passes):
        argocd.reconcile(ctx)
        asyncio.run(workloads.reconcile(ctx))
        lbipam.reconcile(ctx)


def app(store, name: str) -> dict:
    return store.get(*APP, name, "argocd")


def state(store, name: str) -> tuple[str, str]:
    st = app(store, name).get("status") or {}
    return st["sync"]["status"], st["health"]["status"]


def test_platform_applications_sync_from_git(twin, tmp_path):
    ctx, repo = lab(twin.store, tmp_path)
    settle(ctx)
    names = {a["metadata"]["name"] for a in twin.store.list(*APP, "argocd")["items"]}
    assert {"platform", "traefik", "cert-manager", "external-secrets", "media", "longhorn", "longhorn-rbac"} <= names
    head = git(repo, "rev-parse", "HEAD").strip()
    assert app(twin.store, "platform")["status"]["sync"]["revision"] == head
    svc = twin.store.get("v1", "Service", "traefik", "traefik")
    assert svc["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"] == "traefik:/Service:traefik/traefik"
    assert managed_by(svc) == "traefik"
    assert "app.kubernetes.io/instance" not in (svc["metadata"].get("labels") or {})  # annotation tracking only
    for name in ("cert-manager", "external-secrets", "longhorn-rbac"):
        assert state(twin.store, name) == ("Synced", "Healthy"), name
    # the media apps mount their Longhorn config claims, which this bare lab does not have: their
    # pods stay Pending, so Argo CD says Progressing (in the full twin, 45-argocd sees Healthy)
    assert state(twin.store, "media") == ("Synced", "Progressing")
    # Traefik still asks MetalLB (not installed here) for its IP: Synced but its Service has no IP yet.
    assert state(twin.store, "traefik") == ("Synced", "Progressing")


def test_uncommitted_or_unpushed_edits_are_not_synced(twin, tmp_path):
    ctx, repo = lab(twin.store, tmp_path)
    settle(ctx, 2)
    f = repo / "kubernetes/platform/media/deployments.yaml"
    f.write_text(f.read_text().replace("replicas: 1", "replicas: 3"))
    settle(ctx, 2)
    assert twin.store.get("apps/v1", "Deployment", "sonarr", "media")["spec"]["replicas"] == 1
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "scale")
    settle(ctx, 2)
    assert twin.store.get("apps/v1", "Deployment", "sonarr", "media")["spec"]["replicas"] == 1  # local only
    git(repo, "push", "-q", "origin", "main")
    settle(ctx, 2)
    assert twin.store.get("apps/v1", "Deployment", "sonarr", "media")["spec"]["replicas"] == 3


def test_direct_patch_is_reverted_by_self_heal(twin, tmp_path):
    from kubernetes import client

    ctx, _ = lab(twin.store, tmp_path, time_factor=0.1)  # self-heal after 5 lab s = 0.5 s
    settle(ctx)
    core = client.CoreV1Api(twin.api)
    core.patch_namespaced_service("traefik", "traefik", {"metadata": {"annotations": {
        "metallb.universe.tf/loadBalancerIPs": "10.10.0.80"}}})
    argocd.reconcile(ctx)
    assert state(twin.store, "traefik")[0] == "OutOfSync"
    assert core.read_namespaced_service("traefik", "traefik").metadata.annotations[
        "metallb.universe.tf/loadBalancerIPs"] == "10.10.0.80"  # not yet: the self-heal delay
    time.sleep(0.6)
    argocd.reconcile(ctx)
    assert core.read_namespaced_service("traefik", "traefik").metadata.annotations[
        "metallb.universe.tf/loadBalancerIPs"] == "10.30.0.100"
    assert state(twin.store, "traefik")[0] == "Synced"


def test_change_through_falkit_lands_in_git_and_stays(twin, tmp_path):
    ctx, repo = lab(twin.store, tmp_path)
    settle(ctx)

    async def controllers():
        ctx.attach()
        await asyncio.gather(argocd.run(ctx), workloads.run(ctx), lbipam.run(ctx))

    task = asyncio.run_coroutine_threadsafe(controllers(), twin.loop)
    try:
        co = Checkout.from_spec(ctx.spec.gitops)
        observed = kget(twin.api, "v1", "Service", "traefik", "traefik")
        change = plan_object_change(SVC, observed, CILIUM, co)
        assert change.kind == "git-file" and change.name == "kubernetes/platform/traefik/service.yaml"
        assert "+    lbipam.cilium.io/ips: 10.10.0.80" in change.data.edit.diff
        commit = apply_git_changes([change], co, twin.api, timeout=20)  # spec: push and merge
        assert commit.branch == "falkit/migration" and commit.pushed and commit.merged and commit.tracked == "main"
        assert git(repo, "rev-parse", "falkit/migration").strip() == commit.sha
        remote = tmp_path / "state" / "gitops-remote.git"
        assert git(remote, "rev-parse", "main").strip() == git(remote, "rev-parse", "falkit/migration").strip() == commit.sha
        live = kget(twin.api, "v1", "Service", "traefik", "traefik")
        ann = live["metadata"]["annotations"]
        assert ann["lbipam.cilium.io/ips"] == "10.10.0.80" and "metallb.universe.tf/loadBalancerIPs" not in ann
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and state(twin.store, "traefik") != ("Synced", "Healthy"):
            time.sleep(0.1)
        assert state(twin.store, "traefik") == ("Synced", "Healthy")  # Cilium gave it 10.10.0.80
        svc = kget(twin.api, "v1", "Service", "traefik", "traefik")
        assert svc["status"]["loadBalancer"]["ingress"][0]["ip"] == "10.10.0.80"
        time.sleep(0.5)  # self-heal has nothing to revert: Git says so
        assert kget(twin.api, "v1", "Service", "traefik", "traefik")["metadata"]["annotations"]["lbipam.cilium.io/ips"] == "10.10.0.80"
        assert plan_object_change(SVC, kget(twin.api, "v1", "Service", "traefik", "traefik"), CILIUM, co) is None
    finally:
        task.cancel()


def test_argocd_follows_the_remote_not_the_checkout(twin, tmp_path):
    """A commit that is only local (push: false) or only pushed (merge: false) is not synced; the
    gate says exactly what to merge; once main has it, Argo CD syncs that revision."""
    ctx, repo = lab(twin.store, tmp_path)
    settle(ctx)
    remote = tmp_path / "state" / "gitops-remote.git"
    main = git(remote, "rev-parse", "main").strip()
    assert state(twin.store, "traefik")[0] == "Synced"
    synced = twin.store.get(*APP, "traefik", "argocd")["status"]["sync"]["revision"]
    assert synced == main
    local = Checkout.from_spec(ctx.spec.gitops.model_copy(update={"push": False, "merge": False}))
    change = plan_object_change(SVC, kget(twin.api, "v1", "Service", "traefik", "traefik"), CILIUM, local)
    with pytest.raises(GitOpsGateError) as exc:
        apply_git_changes([change], local, twin.api, timeout=5)
    sha = git(repo, "rev-parse", "falkit/migration").strip()
    msg = str(exc.value)
    assert f"commit {sha[:10]} on branch falkit/migration" in msg and "Argo CD syncs main of origin" in msg
    assert "push origin falkit/migration" in msg and "merge falkit/migration into main" in msg
    settle(ctx, 3)
    assert twin.store.get(*APP, "traefik", "argocd")["status"]["sync"]["revision"] == main  # not the local commit
    assert "lbipam.cilium.io/ips" not in kget(twin.api, "v1", "Service", "traefik", "traefik")["metadata"]["annotations"]
    pushed = Checkout.from_spec(ctx.spec.gitops.model_copy(update={"push": True, "merge": False}))
    with pytest.raises(GitOpsGateError, match="merge falkit/migration into main"):
        pushed.deliver(pushed.commit([]) or _commit_of(pushed, sha))
    assert git(remote, "rev-parse", "falkit/migration").strip() == sha and git(remote, "rev-parse", "main").strip() == main
    settle(ctx, 3)
    assert twin.store.get(*APP, "traefik", "argocd")["status"]["sync"]["revision"] == main
    merging = Checkout.from_spec(ctx.spec.gitops.model_copy(update={"push": True, "merge": True}))
    done = merging.deliver(_commit_of(merging, sha))
    assert done.merged and git(remote, "rev-parse", "main").strip() == sha
    settle(ctx, 3)
    assert twin.store.get(*APP, "traefik", "argocd")["status"]["sync"]["revision"] == sha
    ann = kget(twin.api, "v1", "Service", "traefik", "traefik")["metadata"]["annotations"]
    assert ann["lbipam.cilium.io/ips"] == "10.10.0.80"


def _commit_of(co: Checkout, sha: str):
    from falkit.render.gitops import Commit

    return Commit(sha, co.branch, (), False, "")


def test_longhorn_renames_prune_the_child_applications(twin, tmp_path):
    ctx, repo = lab(twin.store, tmp_path)
    settle(ctx)
    assert twin.store.try_get(*APP, "longhorn", "argocd") is not None
    co = Checkout.from_spec(ctx.spec.gitops)
    changes = plan_renames(co, disable=True)
    assert [c.new.rsplit("/", 1)[1] for c in changes] == [f + ".disabled" for f in ctx.spec.gitops.longhorn_files]
    apply_git_changes(changes, co, wait=False)
    settle(ctx, 3)
    for name in ("longhorn", "longhorn-ingress", "longhorn-rbac"):
        assert twin.store.try_get(*APP, name, "argocd") is None, name
    # no resources finalizer on the Longhorn apps: their objects stay (orphaned), volumes untouched
    assert twin.store.try_get("storage.k8s.io/v1", "StorageClass", "longhorn") is not None
    assert state(twin.store, "platform")[0] == "Synced"
    apply_git_changes(plan_renames(co, disable=False), co, wait=False)  # rollback
    settle(ctx, 3)
    assert twin.store.try_get(*APP, "longhorn", "argocd") is not None


def test_unknown_repository_is_a_comparison_error(twin, tmp_path):
    ctx, _ = lab(twin.store, tmp_path)
    bad = platform_application(ctx.spec.gitops, name="elsewhere")
    bad["spec"]["source"]["repoURL"] = "https://git.example.invalid/other.git"
    twin.store.create(bad)
    argocd.reconcile(ctx)
    st = app(twin.store, "elsewhere")["status"]
    assert st["sync"]["status"] == "Unknown"
    assert st["conditions"][0]["type"] == "ComparisonError" and "repository not accessible" in st["conditions"][0]["message"]


def test_inactive_without_argocd(twin, tmp_path):
    ctx, _ = lab(twin.store, tmp_path)
    helm.uninstall(ctx, "argocd", "argocd")
    argocd.reconcile(ctx)
    assert "status" not in app(twin.store, "platform")


@pytest.mark.parametrize("obj,expected", [
    (None, "Missing"),
    ({"kind": "PersistentVolumeClaim", "metadata": {}, "status": {"phase": "Lost"}}, "Degraded"),
    ({"kind": "Deployment", "metadata": {"generation": 1}, "spec": {"replicas": 2},
      "status": {"readyReplicas": 2, "observedGeneration": 1}}, "Healthy"),
    ({"kind": "Deployment", "metadata": {}, "spec": {},
      "status": {"conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}}, "Degraded"),
    ({"kind": "Service", "metadata": {}, "spec": {"type": "LoadBalancer"}, "status": {}}, "Progressing"),
])
def test_health(obj, expected):
    assert argocd.health(obj) == expected


def test_helm_source_must_be_served_by_its_repository(twin, tmp_path):
    """A chart source names a repository that publishes the chart (the same table as the twin's
    helm stand-in): Mayastor from Cilium's repository is a comparison error, from its own renders."""
    ctx, _ = lab(twin.store, tmp_path)
    app = {"metadata": {"name": "mayastor"}, "spec": {"destination": {"namespace": "mayastor"}}}
    with pytest.raises(argocd.SourceError, match="not found in https://helm.cilium.io/"):
        argocd.render_helm(ctx, app, {"repoURL": "https://helm.cilium.io/", "chart": "mayastor",
                                      "targetRevision": "2.8.0"})
    objs, version = argocd.render_helm(ctx, app, {"repoURL": "https://openebs.github.io/mayastor-extensions/",
                                                  "chart": "mayastor", "targetRevision": "2.8.0"})
    assert objs and version == "2.8.0"


def _pause(store, name: str) -> None:
    """As falkit does: the app-of-apps first (its self-heal would restore the child's policy), then the app."""
    for a in ("platform", name):
        store.patch(*APP, a, {"spec": {"syncPolicy": {"automated": None}}}, namespace="argocd", patch_type="merge")


def _sonarr(store) -> int:
    return store.get("apps/v1", "Deployment", "sonarr", "media")["spec"]["replicas"]


def test_a_paused_application_is_not_self_healed(twin, tmp_path):
    ctx, _ = lab(twin.store, tmp_path)
    settle(ctx)
    _pause(twin.store, "media")
    twin.store.patch("apps/v1", "Deployment", "sonarr", {"spec": {"replicas": 0}}, namespace="media", patch_type="merge")
    settle(ctx, 3)
    assert _sonarr(twin.store) == 0
    assert state(twin.store, "media")[0] == "OutOfSync"


def test_argocd_sync_race_syncs_a_paused_application_once(twin, tmp_path):
    """The fault argocd_sync_race: the controller's copy of the Application from before the pause
    still auto-syncs its next drift (argo-cd autoSync on the informer copy; SetAppOperation checks
    only .operation) — once; the next drift stays."""
    from falkit.twin.lab import faults

    ctx, _ = lab(twin.store, tmp_path)
    settle(ctx)
    rec = faults.inject(ctx, {"kind": "argocd_sync_race", "app": "media"})
    assert rec["automated"] == {"prune": True, "selfHeal": True}
    _pause(twin.store, "media")
    twin.store.patch("apps/v1", "Deployment", "sonarr", {"spec": {"replicas": 0}}, namespace="media", patch_type="merge")
    settle(ctx, 1)
    assert _sonarr(twin.store) == 1  # synced from Git by the copy from before the pause
    assert faults.state(ctx)["argocd_sync_race"] == {}
    op = app(twin.store, "media")["status"]["operationState"]
    assert op["phase"] == "Succeeded" and op["operation"]["initiatedBy"] == {"automated": True}
    twin.store.patch("apps/v1", "Deployment", "sonarr", {"spec": {"replicas": 0}}, namespace="media", patch_type="merge")
    settle(ctx, 3)
    assert _sonarr(twin.store) == 0  # the copy caught up: paused


def test_argocd_sync_race_needs_an_automated_application(twin, tmp_path):
    from falkit.twin.lab import faults

    ctx, _ = lab(twin.store, tmp_path)
    settle(ctx)
    with pytest.raises(faults.FaultSpecError, match="no Application 'nothing'"):
        faults.inject(ctx, {"kind": "argocd_sync_race", "app": "nothing"})
    _pause(twin.store, "media")
    with pytest.raises(faults.FaultSpecError, match="no automated sync policy"):
        faults.inject(ctx, {"kind": "argocd_sync_race", "app": "media"})
    with pytest.raises(faults.FaultSpecError, match="needs app"):
        faults.inject(ctx, {"kind": "argocd_sync_race"})
