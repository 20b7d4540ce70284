"""Step volumes (in 50-mayastor): move every Longhorn volume to Mayastor, then disable Longhorn.

A PVC is on Longhorn when its StorageClass's provisioner is ``driver.longhorn.io``, when it names
``spec.previous.longhorn_storage_class``, or when its PV's CSI driver is ``driver.longhorn.io``.
Each such claim ``<ns>/<name>`` is copied to a new claim ``<ns>/<name>-mayastor`` on
``spec.mayastor.storage_class`` (same size and access modes), one volume at a time:

1. the new claim is created (annotation ``falkit.io/migrated-from: <name>``);
2. every Deployment/StatefulSet mounting the old claim is scaled to 0; its replica count is kept
   in the annotation ``falkit.io/original-replicas`` first, so a re-run after a crash (or an
   operator rolling back) knows what to restore;
3. a copy Job (``cp -a``), then a checksum Job on each claim (``falkit.clients.kube.jobs``); the checksums are
   compared. **A mismatch stops the step** (:class:`~falkit.model.errors.StepError`): the workload is
   scaled back up still pointing at the OLD claim, the new claim is left for inspection;
4. the workload's ``spec.template.spec.volumes[].persistentVolumeClaim.claimName`` is patched to
   the new claim and it is scaled back to its original replicas; the old claim gets
   ``falkit.io/migrated-to``; the new one ``falkit.io/checksum``.

**Plex's claim is not migrated** (:func:`falkit.steps.plex.plex_claims`: the Kubernetes Plex's
``/config`` claim): Plex leaves Kubernetes for its container in 60-truenas-plex, which copies the
library there; the claim stays on Longhorn (kept for the rollback) and does not hold Longhorn's
disabling back.

The old claim is kept unless the option ``delete_old_volumes=True`` (a destructive change).
Claims created from a StatefulSet's ``volumeClaimTemplates`` cannot be repointed (the templates are
immutable): they are reported, not migrated, and Longhorn then stays enabled.

Then Longhorn is disabled as the seed does: ``spec.gitops.longhorn_files`` under
``<checkout>/<platform_path>`` are renamed ``*.disabled`` (the seed's rollback renames them back).
This happens only when every Longhorn claim is migrated and verified, and never before. The
checkout is ``spec.gitops.checkout`` (``~`` expanded) or the option ``gitops_checkout``; falkit
does not commit or push (``gitops.push`` is for the operator). A missing checkout refuses apply
with a StepError before anything is touched.

Typed payloads (issue 18): a move is a :class:`VolumeMove` (its executor moves one volume; apply runs
them all inside one pause of Argo CD's automated sync), an old claim's deletion a ``KubeDelete``, a
rename a ``GitChange``, a missing checkout ``Blocked``.

Idempotent: claims already migrated (the new claim carries ``falkit.io/migrated-from``, the old
``falkit.io/migrated-to``, and no workload mounts the old one) plan nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..clients.kube import (
    JobFailedError,
    checksum_job,
    copy_job,
    job_name,
    kcreate,
    kget,
    klist,
    kpatch,
    parse_checksum,
    run_job,
    wait_until,
)
from ..model.errors import StepError
from ..model.spec import LabSpec
from ..plan.diff import Change, Noop, Plan
from ..plan.payloads import Blocked, GitRepo, KubeDelete, payload
from ..render.gitops import DISABLED, Checkout, GitEdit, ObjectRef
from .base import Check, Progress, StepOptions, register
from .executors import Apply, execute, executes
from .ownership import apply_git_changes, plan_object_change, rename_change
from .plex import plex_claims
from .quiesce import (
    ORIGINAL_REPLICAS,
    argocd_apps,
    pause_apps,
    quiet_copy,
    resume_apps,
    scale,
)

STEP = "volumes"
LONGHORN = "driver.longhorn.io"
MIGRATED_FROM = "falkit.io/migrated-from"
MIGRATED_TO = "falkit.io/migrated-to"
CHECKSUM = "falkit.io/checksum"
SUFFIX = "-mayastor"
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
LONGHORN_NS = "longhorn-system"
ARGO_FINALIZER = "resources-finalizer.argocd.argoproj.io"


def longhorn_leftovers(apps: dict[str, bool], pods: int) -> str | None:
    """The note for what disabling Longhorn the seed's way leaves running (pure), or None. Argo CD
    deletes an Application's resources with it only when the Application carries its resources
    finalizer; without it, renaming the manifests stops Argo CD managing Longhorn and orphans it —
    which keeps the old volumes readable for a rollback, and keeps Longhorn's pods on the workers."""
    orphaned = sorted(a for a, fin in apps.items() if not fin)
    if not pods and not orphaned:
        return None
    why = (f"Argo CD Application(s) {', '.join(orphaned)} carry no {ARGO_FINALIZER}, so Argo CD orphans their "
           "resources instead of deleting them") if orphaned else "its resources outlive the Applications"
    return (f"Longhorn keeps running after it is disabled in Git: {why}; {pods} pod(s) run in {LONGHORN_NS} "
            "(memory and CPU on the 4 GB / 2-vCPU workers, the UI Service too). That keeps the old volumes readable "
            "for a rollback. Once past the rollback window, uninstall it as Longhorn documents (set the setting "
            "deleting-confirmation-flag to true, then delete the release) — falkit never deletes it")


@dataclass(frozen=True)
class GitopsFacts:
    """``files``: name -> ``enabled`` | ``disabled`` | ``absent`` (under checkout/platform_path)."""

    checkout: str
    exists: bool
    files: dict[str, str] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)  # name -> the file's text (enabled or disabled), for the renames


def longhorn_renames(spec: LabSpec, g: GitopsFacts, disable: bool) -> list[Change]:
    """The ``gitops-file`` changes that rename Longhorn's Application files ``*.disabled``
    (``disable``) or back, planned from the observed files: apply commits exactly these edits."""
    repo = GitRepo.of(Checkout.from_spec(spec.gitops, g.checkout))
    base = spec.gitops.platform_path.strip("/")
    out = []
    for f in (x for x in spec.gitops.longhorn_files if g.files.get(x) == ("enabled" if disable else "disabled")):
        src, dst = (f, f + DISABLED) if disable else (f + DISABLED, f)
        verb = "disable" if disable else "re-enable"
        edit = GitEdit(f"{base}/{src}", g.texts.get(f, ""), g.texts.get(f, ""), rename_to=f"{base}/{dst}",
                       message=f"falkit: {verb} {f}")
        out.append(Change("update", "gitops-file", f, "name", src, dst,
                          reason="disable Longhorn as the seed does (after every volume is verified)" if disable
                          else "re-enable Longhorn (seed)", data=rename_change(edit, repo, disable)))
    return out


@payload
@dataclass(frozen=True)
class VolumeMove:
    """A ``volume`` change: claim ``namespace/name`` copied to the claim ``new`` (the whole object to
    create), checksummed, and the ``workloads`` (kind, name) mounting it repointed to the copy. Its
    executor moves one volume; the step's apply runs every move of a plan inside one pause of Argo CD's
    automated sync (:func:`with_argocd_paused`)."""

    namespace: str
    name: str
    new: dict
    workloads: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class VolumeFacts:
    pvcs: tuple[dict, ...]
    storage_classes: dict[str, dict]
    pvs: dict[str, dict]
    workloads: tuple[dict, ...]
    gitops: GitopsFacts | None
    longhorn_apps: dict[str, bool] = field(default_factory=dict)  # Argo CD Application -> has the resources finalizer
    longhorn_pods: int = 0  # pods running in LONGHORN_NS


def new_claim_name(name: str) -> str:
    """``data`` -> ``data-mayastor`` (cut to the 253-character object name limit)."""
    return (name[: 253 - len(SUFFIX)] + SUFFIX) if not name.endswith(SUFFIX) else name


def _ann(obj: dict) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def _key(obj: dict) -> tuple[str, str]:
    md = obj["metadata"]
    return md.get("namespace") or "", md["name"]


def is_longhorn(spec: LabSpec | None, pvc: dict, storage_classes: dict[str, dict], pvs: dict[str, dict]) -> bool:
    """True for a claim on Longhorn; never for a copy falkit made (``falkit.io/migrated-from``) nor
    for falkit's own scratch claims (the benchmarks' ``fio-longhorn``: labelled managed-by falkit)."""
    if _ann(pvc).get(MIGRATED_FROM):
        return False
    if ((pvc.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/managed-by") == "falkit":
        return False
    sc_name = (pvc.get("spec") or {}).get("storageClassName") or ""
    sc = storage_classes.get(sc_name)
    if sc is not None and sc.get("provisioner") == LONGHORN:
        return True
    if spec is not None and spec.previous and sc_name == spec.previous.longhorn_storage_class:
        return True
    pv = pvs.get((pvc.get("spec") or {}).get("volumeName") or "")
    return bool(pv and ((pv.get("spec") or {}).get("csi") or {}).get("driver") == LONGHORN)


def claims_in(workload: dict) -> list[str]:
    vols = (((workload.get("spec") or {}).get("template") or {}).get("spec") or {}).get("volumes") or []
    return [v["persistentVolumeClaim"]["claimName"] for v in vols if isinstance(v.get("persistentVolumeClaim"), dict)]


def consumers(workloads: tuple[dict, ...], ns: str, claim: str) -> list[dict]:
    return [w for w in workloads if (w["metadata"].get("namespace") or "") == ns and claim in claims_in(w)]


def _from_template(workloads: tuple[dict, ...], ns: str, claim: str) -> str | None:
    """The StatefulSet whose volumeClaimTemplates made ``claim`` (``<tpl>-<sts>-<ordinal>``)."""
    for w in workloads:
        if w["kind"] != "StatefulSet" or (w["metadata"].get("namespace") or "") != ns:
            continue
        for t in (w.get("spec") or {}).get("volumeClaimTemplates") or []:
            if claim.startswith(f"{t['metadata']['name']}-{w['metadata']['name']}-"):
                return w["metadata"]["name"]
    return None


def new_pvc(spec: LabSpec, old: dict) -> dict:
    ns, name = _key(old)
    s = old.get("spec") or {}
    size = ((s.get("resources") or {}).get("requests") or {}).get("storage") \
        or ((old.get("status") or {}).get("capacity") or {}).get("storage") or "1Gi"
    return {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": new_claim_name(name), "namespace": ns,
                     "labels": {**((old["metadata"].get("labels")) or {}), "app.kubernetes.io/managed-by": "falkit"},
                     "annotations": {MIGRATED_FROM: name}},
        "spec": {"accessModes": list(s.get("accessModes") or ["ReadWriteOnce"]),
                 "resources": {"requests": {"storage": size}},
                 "storageClassName": spec.mayastor.storage_class,
                 **({"volumeMode": s["volumeMode"]} if s.get("volumeMode") else {})},
    }


def plan_volumes(spec: LabSpec, facts: VolumeFacts, options: StepOptions) -> Plan:
    """Pure: one ``volume`` change per Longhorn claim to move, deletions of kept old claims when
    ``delete_old_volumes``, and the GitOps change last (only when nothing is left on Longhorn)."""
    changes: list[Change] = []
    noops: list[Noop] = []
    notes: list[str] = []
    delete_old = bool(options.extra.get("delete_old_volumes", False))
    by_key = {_key(p): p for p in facts.pvcs}
    pending = 0
    plex = plex_claims(spec, facts.workloads, facts.pvcs)
    for pvc in sorted(facts.pvcs, key=_key):
        if not is_longhorn(spec, pvc, facts.storage_classes, facts.pvs):
            continue
        ns, name = _key(pvc)
        if (ns, name) in plex:  # issue 14: Plex leaves Kubernetes; its library goes to its container
            noops.append(Noop("volume", f"{ns}/{name}", "Plex's library: not moved to Mayastor (60-truenas-plex "
                              "copies it to Plex's container)"))
            continue
        users = consumers(facts.workloads, ns, name)
        target = by_key.get((ns, new_claim_name(name)))
        done = _ann(pvc).get(MIGRATED_TO) and target is not None and _ann(target).get(MIGRATED_FROM) == name
        if done and not users:
            if delete_old:
                changes.append(Change("delete", "pvc", f"{ns}/{name}", old=_ann(pvc).get(MIGRATED_TO), destructive=True,
                                      reason="migrated and verified; option delete_old_volumes",
                                      data=KubeDelete(ObjectRef("v1", "PersistentVolumeClaim", ns, name))))
            else:
                noops.append(Noop("volume", f"{ns}/{name}", f"migrated to {new_claim_name(name)} (old claim kept)"))
            continue
        sts = _from_template(facts.workloads, ns, name)
        if sts:
            pending += 1
            notes.append(f"{ns}/{name} comes from StatefulSet {sts}'s volumeClaimTemplates, which are immutable: "
                         "migrate it by hand (new StatefulSet on mayastor-3); Longhorn stays enabled")
            continue
        size = ((pvc.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage", "?")
        wl = [f"{w['kind']}/{w['metadata']['name']}" for w in users]
        changes.append(Change(
            "create", "volume", f"{ns}/{name}", "", None, f"{ns}/{new_claim_name(name)} ({size} on {spec.mayastor.storage_class})",
            reason="copy + checksum; " + (f"repoint {', '.join(wl)}" if wl else "no workload mounts it"),
            data=VolumeMove(ns, name, new_pvc(spec, pvc), tuple((w["kind"], w["metadata"]["name"]) for w in users))))
    g = facts.gitops
    files = list(spec.gitops.longhorn_files) if spec.gitops else []
    if g is None:
        notes.append("no gitops section in the spec: Longhorn's manifests are not disabled by falkit")
    elif not g.exists:
        changes.append(Change("action", "gitops", g.checkout, reason="checkout missing", data=Blocked("checkout missing")))
    elif pending:
        notes.append("Longhorn is not disabled: some claims are still on it")
    else:
        enabled = [f for f in files if g.files.get(f) == "enabled"]
        changes += longhorn_renames(spec, g, disable=True)
        if not enabled:
            noops.append(Noop("gitops", g.checkout, "Longhorn manifests already disabled"
                              if any(v == "disabled" for v in g.files.values()) else "no Longhorn manifests found"))
        if (left := longhorn_leftovers(facts.longhorn_apps, facts.longhorn_pods)) is not None:
            notes.append(left)
    return Plan(STEP, tuple(changes), tuple(noops), tuple(notes))


# ---------------------------------------------------------------------------------------------
# Observe / apply / checks


def checkout_path(gitops: Any, options: StepOptions, target: Any = None) -> Path | None:
    """The option ``gitops_checkout``, else the twin's own fixture checkout (a rehearsal never
    touches the operator's), else ``gitops.checkout`` (the spec's ``gitops`` section, or the
    target's copy of it: apply has no spec)."""
    twin = ((getattr(target, "connection", None) or {}).get("gitops") or {}).get("checkout") \
        if getattr(target, "kind", "") == "twin" else None
    raw = options.extra.get("gitops_checkout") or twin or (gitops.checkout if gitops else None)
    return Path(raw).expanduser() if raw else None


def observe_gitops(spec: LabSpec, options: StepOptions, target: Any = None) -> GitopsFacts | None:
    path = checkout_path(spec.gitops, options, target)
    if path is None or spec.gitops is None:
        return None
    platform = path / spec.gitops.platform_path
    files, texts = {}, {}
    for f in spec.gitops.longhorn_files:
        files[f] = "enabled" if (platform / f).is_file() else "disabled" if (platform / f"{f}.disabled").is_file() else "absent"
        if files[f] != "absent":
            texts[f] = (platform / (f if files[f] == "enabled" else f"{f}.disabled")).read_text(encoding="utf-8")
    return GitopsFacts(str(path), path.is_dir(), files, texts)


def observe(target: Any, spec: LabSpec, options: StepOptions) -> VolumeFacts:
    api = target.kube()
    workloads = tuple(w for k in WORKLOAD_KINDS for w in klist(api, "apps/v1", k))
    return VolumeFacts(
        pvcs=tuple(klist(api, "v1", "PersistentVolumeClaim")),
        storage_classes={s["metadata"]["name"]: s for s in klist(api, "storage.k8s.io/v1", "StorageClass")},
        pvs={p["metadata"]["name"]: p for p in klist(api, "v1", "PersistentVolume")},
        workloads=workloads,
        gitops=observe_gitops(spec, options, target),
        longhorn_apps=_longhorn_apps(api),
        longhorn_pods=sum(1 for p in klist(api, "v1", "Pod", LONGHORN_NS)
                          if (p.get("status") or {}).get("phase") in ("Running", "Pending")),
    )


def longhorn_left(api: Any, plan: Plan) -> list[str]:
    """The claims still on Longhorn that the plan's GitOps change may not leave behind: a claim
    the plan moves whose move did not finish, or a Longhorn claim the plan did not know (made after
    it was planned). Claims the plan kept on purpose (its ``volume`` noops: Plex's library, old
    claims already migrated) stay. Reads the cluster and the plan only (apply has no spec)."""
    kept = {n.name for n in plan.noops if n.kind == "volume"}
    moved = {c.name for c in plan.changes if c.kind == "volume"}
    scs = {s["metadata"]["name"]: s for s in klist(api, "storage.k8s.io/v1", "StorageClass")}
    pvs = {p["metadata"]["name"]: p for p in klist(api, "v1", "PersistentVolume")}
    left = []
    for pvc in klist(api, "v1", "PersistentVolumeClaim"):
        key = "/".join(_key(pvc))
        if key in moved and not _ann(pvc).get(MIGRATED_TO):
            left.append(key)
        elif key not in moved and key not in kept and is_longhorn(None, pvc, scs, pvs):
            left.append(key)
    return sorted(left)


def _longhorn_apps(api: Any) -> dict[str, bool]:
    try:
        apps = klist(api, "argoproj.io/v1alpha1", "Application")
    except Exception:  # noqa: BLE001 - no Argo CD: no Applications
        return {}
    return {a["metadata"]["name"]: ARGO_FINALIZER in (a["metadata"].get("finalizers") or [])
            for a in apps if ((a.get("spec") or {}).get("destination") or {}).get("namespace") == LONGHORN_NS}


def _wait(what: str, timeout: float, fn, poll: float = 0.2) -> None:
    wait_until(STEP, what, timeout, fn, poll)


def _scaled_up(api: Any, kind: str, ns: str, name: str, want: int) -> bool:
    w = kget(api, "apps/v1", kind, name, ns) or {}
    return int((w.get("status") or {}).get("readyReplicas") or 0) >= want


def _repoint(api: Any, kind: str, ns: str, name: str, old: str, new: str) -> None:
    w = kget(api, "apps/v1", kind, name, ns)
    vols = w["spec"]["template"]["spec"].get("volumes") or []
    for v in vols:
        if isinstance(v.get("persistentVolumeClaim"), dict) and v["persistentVolumeClaim"]["claimName"] == old:
            v["persistentVolumeClaim"]["claimName"] = new
    # volumes is a list: a merge patch replaces it whole, with every entry as read
    kpatch(api, "apps/v1", kind, name, {"spec": {"template": {"spec": {"volumes": vols}}}}, ns)


def _checksum(api: Any, ns: str, claim: str, timeout: float) -> str:
    return parse_checksum(run_job(api, checksum_job(job_name("checksum", claim), ns, claim), timeout))


def migrate_one(api: Any, c: Change, timeout: float, progress: Progress, checkout: Any = None) -> str:
    """Execute one ``volume`` change (see the module docstring). Returns the verified checksum."""
    refs = [(c.data.namespace, kind, name) for kind, name in c.data.workloads]
    return with_argocd_paused(api, c.name, refs, checkout, progress, timeout, lambda: _migrate_one(api, c, timeout, progress))


def with_argocd_paused(api: Any, what: str, refs: list[tuple[str, str, str]], checkout: Any, progress: Progress,
                       timeout: float, fn: Any) -> Any:
    """Run ``fn`` (which scales and repoints the workloads ``refs``) safely for Argo CD-managed ones.

    Self-heal would scale them back up and point them back at the old claim: their Application's
    automated sync (and its app-of-apps') is paused first and any sync already under way is let
    finish; once ``fn`` succeeded the repointed volumes are committed to the GitOps ``checkout``;
    then the automated sync is resumed (it syncs that commit)."""
    apps = argocd_apps(api, refs)
    if apps and checkout is None:
        raise StepError(STEP, f"{what}: workloads managed by Argo CD ({', '.join(apps)}) and no GitOps checkout "
                              "is configured: the claim change must go into Git")
    try:
        pause_apps(api, apps, progress, timeout, STEP)
        out = fn()
        if apps:
            _commit_claims(api, what, refs, checkout, progress)
    finally:
        resume_apps(api, apps, progress)
    return out


def _commit_claims(api: Any, what: str, refs: list[tuple[str, str, str]], checkout: Any, progress: Progress) -> None:
    """The repointed volumes of Argo CD-managed workloads, committed in Git (so a sync keeps them)."""
    # one commit per workload: several live in one file, and each edit is planned from the file as
    # the previous commit left it (edits planned from the same text would undo each other)
    for ns, kind, name in refs:
        live = kget(api, "apps/v1", kind, name, ns)
        vols = live["spec"]["template"]["spec"].get("volumes") or []
        ch = plan_object_change(ObjectRef("apps/v1", kind, ns, name), live, {"spec": {"template": {"spec": {"volumes": vols}}}},
                                checkout, reason=f"{what}: claim changed")
        if ch is not None and ch.kind == "git-file":
            progress.log(f"git: {ch.name}: {kind} {ns}/{name} volumes")
            apply_git_changes([ch], checkout, None)


def _migrate_one(api: Any, c: Change, timeout: float, progress: Progress) -> str:
    d: VolumeMove = c.data
    ns, old = d.namespace, d.name
    new = d.new["metadata"]["name"]
    bar = progress.task(f"migrate {ns}/{old}", 5)
    if kget(api, "v1", "PersistentVolumeClaim", new, ns) is None:
        kcreate(api, d.new)
    _wait(f"{ns}/{new} Bound", timeout,
          lambda: ((kget(api, "v1", "PersistentVolumeClaim", new, ns) or {}).get("status") or {}).get("phase") == "Bound")
    bar(1, f"{new} bound")
    originals: dict[tuple[str, str], int] = {}

    def restore(repoint: bool) -> None:
        for (kind, name), replicas in originals.items():
            if repoint:
                _repoint(api, kind, ns, name, old, new)
            scale(api, kind, ns, name, replicas, {"metadata": {"annotations": {ORIGINAL_REPLICAS: None}}})

    def copy() -> tuple[str, str]:
        bar(2, "workloads scaled down")
        run_job(api, copy_job(job_name("copy", old), ns, old, new), timeout)
        bar(3, "copied")
        return _checksum(api, ns, old, timeout), _checksum(api, ns, new, timeout)

    try:
        src, dst = quiet_copy(api, ns, d.workloads, timeout, progress, STEP, f"{ns}/{old}", copy, originals)
    except (JobFailedError, ValueError) as e:
        restore(repoint=False)
        raise StepError(STEP, f"{ns}/{old}: {e}; the workload still uses the old claim") from e
    except StepError:
        restore(repoint=False)
        raise
    if src != dst:
        restore(repoint=False)
        raise StepError(STEP, f"{ns}/{old}: checksum mismatch after the copy (old {src[:16]}…, new {dst[:16]}…); "
                              f"the workload still uses {old}; {new} is kept for inspection",
                        resume=f"delete {ns}/{new}, find why the copy differs, then re-run the step")
    bar(4, f"checksums match ({src[:12]}…)")
    kpatch(api, "v1", "PersistentVolumeClaim", new, {"metadata": {"annotations": {CHECKSUM: src, MIGRATED_FROM: old}}}, ns)
    kpatch(api, "v1", "PersistentVolumeClaim", old, {"metadata": {"annotations": {MIGRATED_TO: new}}}, ns)
    restore(repoint=True)
    for (kind, name), replicas in originals.items():
        _wait(f"{kind} {ns}/{name} back up", timeout, lambda k=kind, n=name, r=replicas: _scaled_up(api, k, ns, n, r))
    bar(5, f"{', '.join(f'{k}/{n}' for k, n in originals) or 'no workload'} on {new}")
    return src


@executes(VolumeMove)
def _volume_move(c: Change, ctx: Apply) -> None:
    """One volume moved (the step's apply pauses Argo CD's automated sync around all of them)."""
    _migrate_one(ctx.target.kube(), c, ctx.timeout, ctx.progress)


def gitops_checkout(target: Any, options: StepOptions) -> Any:
    """The GitOps checkout falkit edits on this target (None when there is none): the target
    keeps the spec's ``gitops`` section, so apply needs no spec."""
    gitops = target.gitops
    path = checkout_path(gitops, options, target)
    return Checkout.from_spec(gitops, str(path)) if gitops and path and path.is_dir() else None


@register(STEP)
class VolumesStep:
    title = "Move Longhorn volumes to Mayastor, then disable Longhorn"
    options = {"delete_old_volumes": (bool, False), "gitops_checkout": (str, "")}

    def observe(self, target: Any, spec: LabSpec, options: StepOptions) -> VolumeFacts:
        return observe(target, spec, options)

    def plan(self, spec: LabSpec, observed: VolumeFacts, options: StepOptions) -> Plan:
        return plan_volumes(spec, observed, options)

    def apply(self, target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
        blocked = [c for c in plan.changes if isinstance(c.data, Blocked)]
        if blocked:
            gitops = target.gitops
            raise StepError(STEP, f"the GitOps checkout {blocked[0].name} does not exist: clone "
                                  f"{gitops.repo_url if gitops else 'the GitOps repository'} there, or pass "
                                  "the option gitops_checkout=<path>; nothing was changed")
        api = target.kube()
        checkout = gitops_checkout(target, options)
        moves = [c for c in plan.changes if isinstance(c.data, VolumeMove)]
        refs = [(c.data.namespace, kind, name) for c in moves for kind, name in c.data.workloads]
        # one pause of Argo CD's automated sync for all moves (a resume between two moves would start
        # a sync that races the next scale-down)
        with_argocd_paused(api, f"{len(moves)} volume(s)", refs, checkout, progress, options.wait_timeout_s,
                           lambda: execute(target, moves, progress, options.wait_timeout_s, step=STEP))
        for c in plan.changes:
            if isinstance(c.data, KubeDelete):
                progress.log(f"delete old claim {c.name}")
                execute(target, [c], progress, options.wait_timeout_s, step=STEP)
        files = [c for c in plan.changes if c.kind == "gitops-file"]
        if files:
            # never before every volume is verified: re-read the claims, nothing may be left on Longhorn
            left = longhorn_left(api, plan)
            if left:
                raise StepError(STEP, "Longhorn not disabled: some claims are still on Longhorn: " + ", ".join(left))
            execute(target, files, progress, options.wait_timeout_s, step=STEP)  # the renames planned in plan

    def checks(self, target: Any, spec: LabSpec, options: StepOptions) -> list[Check]:
        facts = observe(target, spec, options)
        out = []
        by_key = {_key(p): p for p in facts.pvcs}
        plex = plex_claims(spec, facts.workloads, facts.pvcs)
        for pvc in sorted(facts.pvcs, key=_key):
            if not is_longhorn(spec, pvc, facts.storage_classes, facts.pvs) or _key(pvc) in plex:
                continue
            ns, name = _key(pvc)
            new = by_key.get((ns, new_claim_name(name)))
            users = [f"{w['kind']}/{w['metadata']['name']}" for w in consumers(facts.workloads, ns, name)]
            ok = new is not None and bool(_ann(new).get(CHECKSUM)) and not users
            observed = ("no copy" if new is None else f"copy {new['metadata']['name']} checksum "
                        f"{(_ann(new).get(CHECKSUM) or 'unverified')[:12]}") + (f"; still mounted by {', '.join(users)}" if users else "")
            out.append(Check("volume migrated", f"{ns}/{name}", f"{new_claim_name(name)} verified, old claim unused",
                             observed, ok, "re-run the volumes step with apply"))
        g = facts.gitops
        if g is not None:
            left = [f for f, s in g.files.items() if s == "enabled"]
            out.append(Check("Longhorn disabled in GitOps", g.checkout, "longhorn manifests renamed *.disabled",
                             "checkout missing" if not g.exists else (f"enabled: {', '.join(left)}" if left else "disabled"),
                             g.exists and not left, "clone the GitOps repository and re-run the volumes step"))
        return out
