"""Step plex (in 60-truenas-plex, after truenas_plex): the Plex cutover from Kubernetes to its
application container, with its library.

truenas_plex creates the container from Plex's OCI image (Proxmox VE 9.1:
``POST /nodes/{node}/storage/{storage}/oci-registry-pull``, then ``POST /nodes/{node}/lxc`` with the
archive as ``ostemplate``; ``dev0`` = the render node; ``env``; the library's bind mount
``mpN=/mnt/pve/<plex_config_storage>,mp=/config``) and leaves it stopped. This step moves Plex:

1. **the library's new home** — a static NFS PersistentVolume + claim ``<claim>-lxc`` (in Plex's
   namespace) on the *same* NFS export the Proxmox host mounts as storage ``plex_config_storage``
   (option ``plex_config_nfs`` = ``server:/export``; default TrueNAS's storage address and
   ``/mnt/tank/plex-config``). Why NFS: a real lab offers no other path both can write — Proxmox's
   API cannot copy into a container (no ``pct push``/``exec`` over the API) and a Kubernetes Job
   cannot reach a host directory; an NFS export is reachable from both, and PVE bind mounts it
   into the container;
2. **the copy** — the Kubernetes Plex is scaled to 0 (its replica count kept in
   ``falkit.io/original-replicas``), the volume migration's copy Job (``falkit.clients.kube.copy_job``)
   copies ``<claim>`` onto ``<claim>-lxc``, a checksum Job runs on each (``falkit.clients.kube.checksum_job``)
   and they must be equal (a mismatch stops the step and scales Plex back up); both claims get
   ``falkit.io/checksum``. An Argo CD-managed Plex would be scaled back up by self-heal: its
   Application (and the app-of-apps above it) has its automated sync paused first
   (:mod:`falkit.steps.quiesce`) until the Kubernetes Plex is removed — or a later change fails;
3. **the container starts** and falkit waits until Plex answers ``GET http://<container IP>:32400/identity``
   (option ``plex_answer_timeout_s``). On the twin the same code connects to the loopback stand-in
   the twin publishes (connection.json ``address_map``; :meth:`falkit.clients.target.Target.guest_address`).
   If it never answers the step stops, says so, and scales the Kubernetes Plex back up — it is
   kept;
4. **only then the Kubernetes Plex is removed** — deleted directly, or, when Argo CD manages it, its
   document removed from its manifest in the GitOps checkout (committed, delivered, and Argo CD's
   prune awaited; the paused sync is resumed once that commit is delivered). Its manifest is saved first in the old claim's annotation
   ``falkit.io/plex-kubernetes`` (the rollback re-creates it from there).

The old claim is kept (it is also never migrated to Mayastor: :func:`plex_claims` is what the
volumes step skips) until ``delete_plex_volume=True`` (destructive; ``allow_destructive``).

A re-run plans nothing once the Kubernetes Plex is gone, the library's checksums are recorded and
Plex answers. :func:`plex_state` exposes the state the before/after comparison reads.
"""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..clients.kube import (
    checksum_job,
    copy_job,
    job_name,
    kcreate,
    kdelete,
    kget,
    klist,
    kpatch,
    parse_checksum,
    run_job,
    wait_until,
)
from ..clients.proxmox import PveCallError, TaskFailedError, TaskTimeoutError, call, wait_task
from ..model.errors import StepError
from ..model.spec import LabSpec
from ..plan.diff import Change, Noop, Plan
from ..plan.payloads import Blocked, payload
from ..render.gitops import Checkout, GitEdit, ObjectRef, split_documents
from .base import Check, Progress, StepOptions, register
from .executors import Apply, execute, executes
from .ownership import GitChange, apply_git_changes, managed_by, wait_for_sync
from .quiesce import ORIGINAL_REPLICAS, argocd_apps, pause_apps, quiet_copy, resume_apps
from .truenas_plex import config_mount_key, config_nfs, plex_image

STEP = "plex"
PORT = 32400
LIBRARY_SUFFIX = "-lxc"
FROM = "falkit.io/plex-library-from"
CHECKSUM = "falkit.io/checksum"
SAVED = "falkit.io/plex-kubernetes"
PLEX_IMAGE_NAME = "plexinc/pms-docker"
KINDS = ("Deployment", "StatefulSet")


# ---------------------------------------------------------------------------------------------
# Pure helpers (also used by the volumes step and rollback-plex)


def _md(obj: dict) -> dict:
    return obj.get("metadata") or {}


def _ann(obj: dict | None) -> dict[str, str]:
    return _md(obj or {}).get("annotations") or {}


def _pod(w: dict) -> dict:
    return (((w.get("spec") or {}).get("template") or {}).get("spec")) or {}


def is_plex_workload(spec: LabSpec, w: dict) -> bool:
    """The Kubernetes Plex: named as the spec's Plex host, or running Plex's image."""
    if spec.plex is None:
        return False
    images = [str(c.get("image", "")) for c in _pod(w).get("containers") or []]
    return _md(w).get("name") == spec.plex.hostname or any(PLEX_IMAGE_NAME in i for i in images)


def config_claim(w: dict) -> str | None:
    """The claim mounted at ``/config`` (Plex's library), else the workload's first claim."""
    vols = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in _pod(w).get("volumes") or []
            if isinstance(v.get("persistentVolumeClaim"), dict)}
    for c in _pod(w).get("containers") or []:
        for m in c.get("volumeMounts") or []:
            if m.get("mountPath") == "/config" and m.get("name") in vols:
                return vols[m["name"]]
    return next(iter(vols.values()), None)


def plex_claims(spec: LabSpec, workloads: tuple[dict, ...] | list[dict], pvcs: tuple[dict, ...] | list[dict]) -> set[tuple[str, str]]:
    """(namespace, claim) of Plex's library: the Kubernetes Plex's config claim, the claim the
    cutover saved its manifest on, and the container's library claim. The volumes step never moves
    these to Mayastor: Plex leaves Kubernetes (issue 14)."""
    out: set[tuple[str, str]] = set()
    if spec.plex is None or not spec.plex.enabled:
        return out
    for w in workloads:
        if is_plex_workload(spec, w) and (claim := config_claim(w)):
            out.add((_md(w).get("namespace") or "", claim))
    for p in pvcs:
        if SAVED in _ann(p) or FROM in _ann(p):
            out.add((_md(p).get("namespace") or "", _md(p)["name"]))
    return out


def library_claim(claim: str) -> str:
    return (claim[: 253 - len(LIBRARY_SUFFIX)] + LIBRARY_SUFFIX) if not claim.endswith(LIBRARY_SUFFIX) else claim


def library_pv_name(spec: LabSpec, ns: str, claim: str) -> str:
    return f"falkit-plex-library-{spec.plex.vmid}-{ns}-{claim}"[:253]


def library_objects(spec: LabSpec, options: StepOptions, ns: str, claim: str, size: str) -> tuple[dict, dict]:
    """The static NFS PersistentVolume on the library export and its claim (pre-bound by
    ``volumeName``/``claimRef``, storageClassName "" so no provisioner takes it)."""
    server, export = config_nfs(spec, options)
    pv_name, new = library_pv_name(spec, ns, claim), library_claim(claim)
    labels = {"app.kubernetes.io/managed-by": "falkit", "app.kubernetes.io/part-of": "plex"}
    pv = {"apiVersion": "v1", "kind": "PersistentVolume",
          "metadata": {"name": pv_name, "labels": labels},
          "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteMany"],
                   "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                   "nfs": {"server": server, "path": export},
                   "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns, "name": new}}}
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": new, "namespace": ns, "labels": labels, "annotations": {FROM: claim}},
           "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "", "volumeName": pv_name,
                    "resources": {"requests": {"storage": size}}}}
    return pv, pvc


def saved_manifest(w: dict) -> str:
    """The workload as it can be created again (JSON): no status, uid, resourceVersion, managedFields."""
    md = {k: v for k, v in _md(w).items() if k in ("name", "namespace", "labels", "annotations")}
    md["annotations"] = {k: v for k, v in (md.get("annotations") or {}).items()
                         if k not in ("kubectl.kubernetes.io/last-applied-configuration", ORIGINAL_REPLICAS)}
    return json.dumps({"apiVersion": w.get("apiVersion", "apps/v1"), "kind": w.get("kind", "Deployment"),
                       "metadata": md, "spec": w.get("spec") or {}}, sort_keys=True)


# ---------------------------------------------------------------------------------------------
# Plex answers: GET http://<ip>:32400/identity (through the target's address map on the twin)


def identity(target: Any, ip: str, timeout: float = 5.0) -> dict[str, str]:
    """Plex's ``GET /identity`` at ``ip:32400`` -> ``{"machineIdentifier", "version"}``;
    ``ConnectionError``/``OSError`` when nothing answers, ``ValueError`` for another answer. The
    connection goes where :meth:`Target.guest_address` says (the lab address itself on the live lab,
    the twin's loopback stand-in there); ``Host`` always names the lab address."""
    host, port = target.guest_address(ip, PORT)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/identity", headers={"Host": f"{ip}:{PORT}", "Accept": "application/xml"})
        resp = conn.getresponse()
        body = resp.read().decode("utf-8", "replace")
    finally:
        conn.close()
    if resp.status != 200 or "<MediaContainer" not in body:
        raise ValueError(f"HTTP {resp.status} from {ip}:{PORT}/identity, not Plex's MediaContainer")
    attrs = dict(re.findall(r'(\w+)="([^"]*)"', body.split("<MediaContainer", 1)[1].split(">", 1)[0]))
    return {"machineIdentifier": attrs.get("machineIdentifier", ""), "version": attrs.get("version", "")}


def probe(target: Any, ip: str) -> tuple[dict[str, str] | None, str]:
    try:
        return identity(target, ip), ""
    except (OSError, ValueError, http.client.HTTPException) as e:
        return None, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


# ---------------------------------------------------------------------------------------------
# Payloads of this step (the shared one: falkit.plan.payloads.Blocked), carried out in the plan's
# order by the executors below


@payload
@dataclass(frozen=True)
class PlexLibraryClaim:
    """The static NFS PersistentVolume ``pv`` on the library export (unless it exists) and its claim
    ``pvc``, waited for until Bound."""

    pv: dict
    pvc: dict


@payload
@dataclass(frozen=True)
class PlexLibraryCopy:
    """Claim ``namespace/claim`` copied onto ``target`` with checksums: each of ``workloads`` (kind,
    name) saved on the claim and scaled to 0 first; they are scaled back when the copy, the
    container's start or the answer wait fails."""

    namespace: str
    claim: str
    target: str
    workloads: tuple[tuple[str, str], ...]


@payload
@dataclass(frozen=True)
class PlexStart:
    """Start Plex's container ``vmid`` (``status/start``) and wait for its task."""

    vmid: int


@payload
@dataclass(frozen=True)
class PlexAnswers:
    """Wait (at most ``wait_s``, option ``plex_answer_timeout_s``) until Plex in container ``vmid``
    answers ``GET http://<ip>:32400/identity``; ``image``: the container's image (named when it
    does not answer)."""

    ip: str
    vmid: int
    wait_s: float
    image: str


@payload
@dataclass(frozen=True)
class PlexRemoveWorkload:
    """The Kubernetes Plex ``kind`` ``namespace/name`` removed: deleted, or (``app``: the Argo CD
    Application managing it) its document removed from its manifest in the GitOps checkout."""

    kind: str
    namespace: str
    name: str
    app: str | None


@payload
@dataclass(frozen=True)
class PlexDeleteClaim:
    """The old library claim ``namespace/name`` deleted (option ``delete_plex_volume``)."""

    namespace: str
    name: str


# ---------------------------------------------------------------------------------------------
# Facts and plan


@dataclass(frozen=True)
class PlexFacts:
    workloads: tuple[dict, ...]  # the Kubernetes Plex (Deployment/StatefulSet)
    pvcs: dict[tuple[str, str], dict]
    ct: dict | None  # {"status", "config"} of spec.plex.vmid
    answer: dict | None  # Plex's identity, None when it does not answer
    answer_error: str = ""
    applications: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


def _key(obj: dict) -> tuple[str, str]:
    return _md(obj).get("namespace") or "", _md(obj)["name"]


def _source(spec: LabSpec, facts: PlexFacts) -> tuple[str, str] | None:
    """(namespace, claim) of the library in Kubernetes: the Plex workload's, else the claim the
    cutover saved the manifest on."""
    for w in facts.workloads:
        if (claim := config_claim(w)) is not None:
            return _md(w).get("namespace") or "", claim
    return next((k for k, p in sorted(facts.pvcs.items()) if SAVED in _ann(p)), None)


def plan_plex(spec: LabSpec, facts: PlexFacts, options: StepOptions) -> Plan:
    changes: list[Change] = []
    noops: list[Noop] = []
    notes: list[str] = []
    p = spec.plex
    if p is None or not p.enabled:
        return Plan(STEP, (), (Noop("plex", "-", "Plex is disabled in the spec"),), ())
    if not plex_image(options):
        return Plan(STEP, (), (), ("plex_image is empty: Plex stays where it is (install it in the container by hand)",))
    src = _source(spec, facts)
    ct = facts.ct
    if ct is None:
        msg = f"the Plex container {p.vmid} does not exist"
        changes.append(Change("action", "prerequisite", p.hostname, "container", reason=f"blocked: {msg} — run "
                              "truenas_plex (60-truenas-plex) first", data=Blocked(msg, run_first="60-truenas-plex")))
        return Plan(STEP, tuple(changes), (), ())
    mount = config_mount_key(spec)
    if "/config" not in str(ct["config"].get(mount, "")):
        msg = f"the container {p.vmid} has no library mount {mount} (…,mp=/config)"
        changes.append(Change("action", "prerequisite", p.hostname, mount, reason=f"blocked: {msg}",
                              data=Blocked(msg, "set secrets.proxmox_root_password (root@pam sets bind mounts) and re-run "
                                                 "truenas_plex, or run its `pct set` note on the host")))
        return Plan(STEP, tuple(changes), (), ())
    if src is None:
        notes.append("no Kubernetes Plex and no saved library claim: nothing to move; Plex's container starts empty")
    else:
        ns, claim = src
        old = facts.pvcs.get((ns, claim))
        new = facts.pvcs.get((ns, library_claim(claim)))
        size = (((old or {}).get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage", "20Gi")
        if new is None:
            pv, pvc = library_objects(spec, options, ns, claim, size)
            server, export = config_nfs(spec, options)
            changes.append(Change("create", "library-claim", f"{ns}/{library_claim(claim)}",
                                  new=f"NFS {server}:{export} (the container's /config)",
                                  reason="the export the Proxmox host bind mounts into the container",
                                  data=PlexLibraryClaim(pv, pvc)))
        if facts.workloads:
            wl = [f"{w['kind']}/{_md(w)['name']}" for w in facts.workloads]
            apps = sorted({a for w in facts.workloads if (a := _argo_app(w, facts.applications))})
            paused = (f"; Argo CD application {', '.join(apps)} paused until the Kubernetes Plex is removed"
                      if apps else "")
            changes.append(Change("action", "library-copy", f"{ns}/{claim}", "copy", None,
                                  f"{ns}/{library_claim(claim)}",
                                  reason=f"{', '.join(wl)} scaled to 0, copy + checksum of both claims{paused}",
                                  data=PlexLibraryCopy(ns, claim, library_claim(claim),
                                                      tuple((w["kind"], _md(w)["name"]) for w in facts.workloads))))
        else:
            noops.append(Noop("library", f"{ns}/{claim}", f"copied to {library_claim(claim)} (checksum "
                              f"{_ann(new).get(CHECKSUM, 'unrecorded')[:12]})"))
    if ct["status"] != "running":
        changes.append(Change("action", "ct", p.hostname, "status", ct["status"], "running",
                              reason="Plex starts once its library is in place", data=PlexStart(p.vmid)))
    if facts.answer is None or any(c.kind == "ct" for c in changes):
        changes.append(Change("action", "plex-answers", f"{p.ip}:{PORT}", "GET /identity",
                              facts.answer_error or "not checked yet", "Plex's MediaContainer",
                              reason="the Kubernetes Plex is removed only after this",
                              data=PlexAnswers(p.ip, p.vmid, float(options.extra.get("plex_answer_timeout_s") or 120.0),
                                               plex_image(options))))
    else:
        noops.append(Noop("plex", f"{p.ip}:{PORT}", f"answers (version {facts.answer.get('version', '?')})"))
    for w in facts.workloads:
        ns_w, name = _key(w)
        app = _argo_app(w, facts.applications)
        changes.append(Change("delete", "k8s-workload", f"{w['kind']}/{ns_w}/{name}", old="running in Kubernetes",
                              reason=("managed by Argo CD application " + repr(app) + ": its document is removed "
                                      "from Git" if app else "Plex runs in its container now") + "; data kept",
                              data=PlexRemoveWorkload(w["kind"], ns_w, name, app)))
    if src is not None and options.extra.get("delete_plex_volume"):
        ns, claim = src
        if (ns, claim) in facts.pvcs:
            changes.append(Change("delete", "pvc", f"{ns}/{claim}", old="Plex's library in Kubernetes", destructive=True,
                                  reason="option delete_plex_volume (the library is in the container)",
                                  data=PlexDeleteClaim(ns, claim)))
    elif src is not None:
        notes.append(f"the old claim {src[0]}/{src[1]} is kept (the rollback needs it); delete it with "
                     "delete_plex_volume=True once Plex's container is trusted")
    return Plan(STEP, tuple(changes), tuple(noops), tuple(notes))


def _argo_app(w: dict, applications: tuple[str, ...]) -> str | None:
    return managed_by(w, set(applications) or None)


# ---------------------------------------------------------------------------------------------
# Observe / apply / checks


def observe(target: Any, spec: LabSpec, options: StepOptions) -> PlexFacts:
    api = target.kube()
    workloads = tuple(w for k in KINDS for w in klist(api, "apps/v1", k) if is_plex_workload(spec, w))
    pvcs = {_key(p): p for p in klist(api, "v1", "PersistentVolumeClaim")}
    try:
        apps = tuple(_md(a)["name"] for a in klist(api, "argoproj.io/v1alpha1", "Application"))
    except Exception:  # noqa: BLE001 - no Argo CD (the CRD is not served): nothing is managed by it
        apps = ()
    ct = _ct(target, spec)
    answer, err = (probe(target, spec.plex.ip) if spec.plex and ct and ct["status"] == "running"
                   else (None, "the container is not running"))
    return PlexFacts(workloads, pvcs, ct, answer, err, apps)


def _ct(target: Any, spec: LabSpec) -> dict | None:
    if spec.plex is None:
        return None
    pve, node = target.pve, target.node
    listed = {int(c["vmid"]): c for c in call(f"list containers on {node}", pve.nodes(node).lxc.get)}
    if spec.plex.vmid not in listed:
        return None
    cfg = call(f"read CT {spec.plex.vmid}", pve.nodes(node).lxc(spec.plex.vmid).config.get)
    return {"status": str(listed[spec.plex.vmid].get("status", "")), "config": {k: str(v) for k, v in cfg.items()}}


def _replicas(w: dict) -> int:
    r = (w.get("spec") or {}).get("replicas")
    return int(_ann(w).get(ORIGINAL_REPLICAS) or (1 if r is None else r) or 1)


def _ready(api: Any, kind: str, ns: str, name: str, want: int) -> bool:
    w = kget(api, "apps/v1", kind, name, ns) or {}
    return int((w.get("status") or {}).get("readyReplicas") or 0) >= want


def checksum(api: Any, ns: str, claim: str, timeout: float) -> str:
    return parse_checksum(run_job(api, checksum_job(job_name("checksum", claim), ns, claim), timeout))


def copy_verified(api: Any, ns: str, src: str, dst: str, timeout: float, progress: Progress, step: str = STEP) -> str:
    """Copy ``src`` onto ``dst`` (the volume migration's copy Job), checksum both; StepError when
    they differ. Returns the checksum; both claims are annotated with it."""
    progress.log(f"copy {ns}/{src} -> {ns}/{dst}")
    run_job(api, copy_job(job_name("copy", src, "plex"), ns, src, dst), timeout)
    a, b = checksum(api, ns, src, timeout), checksum(api, ns, dst, timeout)
    if a != b:
        raise StepError(step, f"checksum mismatch after copying {ns}/{src} to {ns}/{dst}: {a[:12]} != {b[:12]}",
                        resume=f"inspect {ns}/{dst}, then re-run")
    for claim in (src, dst):
        kpatch(api, "v1", "PersistentVolumeClaim", claim, {"metadata": {"annotations": {CHECKSUM: a}}}, ns)
    progress.log(f"checksums equal: {a[:12]}")
    return a


def _start(target: Any, vmid: int, timeout: float, step: str = STEP) -> None:
    pve, node = target.pve, target.node
    try:
        upid = call(f"start CT {vmid}", pve.nodes(node).lxc(vmid).status.start.post)
        if isinstance(upid, str) and upid.startswith("UPID:"):
            wait_task(pve, node, upid, timeout=timeout)
    except (PveCallError, TaskFailedError, TaskTimeoutError) as e:
        raise StepError(step, str(e)) from e


def _remove_via_git(target: Any, api: Any, c: Change, timeout: float, progress: Progress,
                    resume: Any = None) -> None:
    """Remove the workload's document from its manifest in the GitOps checkout, commit, deliver and
    wait until Argo CD has pruned it (falkit.steps.ownership's sync wait, ``gone``). ``resume``
    (the Applications paused for the copy) runs between the delivery and the wait: the sync that
    follows brings the commit that removes the Kubernetes Plex, not a self-heal that starts it again."""
    d: PlexRemoveWorkload = c.data
    ref = ObjectRef("apps/v1", d.kind, d.namespace, d.name)
    checkout = Checkout.for_target(target)
    doc = checkout.find(ref)
    if doc is None:
        raise StepError(STEP, f"{ref} is managed by Argo CD application {d.app!r} but no manifest in the GitOps "
                              "checkout defines it: remove it from Git by hand")
    text = checkout.read(doc.path)
    chunks = split_documents(text)
    real = [i for i, ch in enumerate(chunks) if any(ln.strip() and not ln.lstrip().startswith(("#", "---"))
                                                    for ln in ch.splitlines())]
    after = "".join(ch for i, ch in enumerate(chunks) if i != real[doc.index])
    edit = GitEdit(doc.path, text, after, message=f"Plex moved to its LXC container: remove {ref}")
    change = Change("delete", "git-file", doc.path, data=GitChange(edit, d.app, ref, gone=True))
    progress.log(f"remove {ref} from {doc.path} (Argo CD application {d.app})")
    try:
        commit = apply_git_changes([change], checkout, api, wait=False)
    finally:
        if resume is not None:
            resume()
    wait_for_sync(api, change.data, commit, timeout=timeout)


# ---------------------------------------------------------------------------------------------
# Executors of this step's payloads


def _scaled(ctx: Apply) -> list[tuple[str, str, str, int]]:
    """The workloads this apply scaled to 0 for the copy — (kind, namespace, name, replicas before) —
    kept on the apply's context: a failed copy, start of the container or answer wait scales them back."""
    return ctx.shared.setdefault("plex_scaled", [])


def _paused(ctx: Apply) -> list[str]:
    """The Argo CD Applications this apply paused for the copy (resumed once the Kubernetes Plex is
    removed, or when a later change of the same apply fails)."""
    return ctx.shared.setdefault("plex_paused", [])


def _resume(ctx: Apply, api: Any, apps: list[str]) -> None:
    resume_apps(api, apps, ctx.progress)
    apps.clear()


@contextmanager
def _scaled_back_on_failure(ctx: Apply) -> Iterator[None]:
    """Scale the workloads this apply scaled down back up when the block fails (the Kubernetes
    Plex is kept) and resume the Argo CD sync it paused, then re-raise."""
    try:
        yield
    except Exception:
        api = ctx.target.kube()
        for kind, ns, name, n in _scaled(ctx):
            ctx.progress.log(f"scale {kind} {ns}/{name} back to {n}: the Kubernetes Plex is kept")
            kpatch(api, "apps/v1", kind, name, {"spec": {"replicas": n}}, ns)
        _resume(ctx, api, _paused(ctx))
        raise


@executes(PlexLibraryClaim)
def _library_claim(c: Change, ctx: Apply) -> None:
    d: PlexLibraryClaim = c.data
    api = ctx.target.kube()
    ctx.progress.log(f"create PV {d.pv['metadata']['name']} and claim {c.name}")
    if kget(api, "v1", "PersistentVolume", d.pv["metadata"]["name"]) is None:
        kcreate(api, d.pv)
    kcreate(api, d.pvc)
    ns, name = d.pvc["metadata"]["namespace"], d.pvc["metadata"]["name"]
    wait_until(STEP, f"claim {c.name} bound", ctx.timeout, lambda: (
        ((kget(api, "v1", "PersistentVolumeClaim", name, ns) or {}).get("status") or {}).get("phase") == "Bound"))


@executes(PlexLibraryCopy)
def _library_copy(c: Change, ctx: Apply) -> None:
    d: PlexLibraryCopy = c.data
    api, timeout, scaled = ctx.target.kube(), ctx.timeout, _scaled(ctx)
    with _scaled_back_on_failure(ctx):
        # Argo CD's self-heal would scale an Argo-managed Plex back up during the copy: its
        # Application (and the app-of-apps above it) pause until the Kubernetes Plex is removed
        apps = argocd_apps(api, [(d.namespace, kind, name) for kind, name in d.workloads])
        _paused(ctx).extend(apps)
        pause_apps(api, apps, ctx.progress, timeout, STEP, until=" (until the Kubernetes Plex is removed)")
        for kind, name in d.workloads:
            w = kget(api, "apps/v1", kind, name, d.namespace)
            n = _replicas(w)
            kpatch(api, "v1", "PersistentVolumeClaim", d.claim,
                   {"metadata": {"annotations": {SAVED: saved_manifest(w)}}}, d.namespace)
            kpatch(api, "apps/v1", kind, name, {"metadata": {"annotations": {ORIGINAL_REPLICAS: str(n)}}}, d.namespace)
            scaled.append((kind, d.namespace, name, n))
            ctx.progress.log(f"scale {kind} {d.namespace}/{name} to 0 for a consistent copy")
        quiet_copy(api, d.namespace, d.workloads, timeout, ctx.progress, STEP, f"{d.namespace}/{d.claim}",
                   lambda: copy_verified(api, d.namespace, d.claim, d.target, timeout, ctx.progress), {})
    kpatch(api, "v1", "PersistentVolumeClaim", d.target, {"metadata": {"annotations": {FROM: d.claim}}}, d.namespace)


@executes(PlexStart)
def _plex_start(c: Change, ctx: Apply) -> None:
    with _scaled_back_on_failure(ctx):
        ctx.progress.log(f"start CT {c.name} ({c.data.vmid})")
        _start(ctx.target, c.data.vmid, ctx.timeout)


@executes(PlexAnswers)
def _plex_answers(c: Change, ctx: Apply) -> None:
    d: PlexAnswers = c.data
    last = [""]

    def answers() -> bool:
        got, last[0] = probe(ctx.target, d.ip)
        return got is not None
    with _scaled_back_on_failure(ctx):
        try:
            wait_until(STEP, f"Plex answers on {d.ip}:{PORT}", d.wait_s, answers, poll=0.5)
        except StepError as e:
            raise StepError(STEP, f"Plex in container {d.vmid} does not answer GET http://{d.ip}:{PORT}/identity "
                                  f"after {d.wait_s:g}s ({last[0] or 'no answer'}); the Kubernetes Plex is kept "
                                  "and nothing was removed",
                            resume=f"check the container (pct status {d.vmid}; its console; the image "
                                   f"{d.image}), then re-run 60-truenas-plex") from e
    ctx.progress.log(f"Plex answers on {d.ip}:{PORT}")


@executes(PlexRemoveWorkload)
def _remove_workload(c: Change, ctx: Apply) -> None:
    d: PlexRemoveWorkload = c.data
    api = ctx.target.kube()
    # the Applications paused for the copy — by this apply, or by an earlier one that stopped
    # before this change (their kept policy says so: resume_sync leaves others alone)
    paused = list(dict.fromkeys([*_paused(ctx), *argocd_apps(api, [(d.namespace, d.kind, d.name)])]))
    _paused(ctx).clear()
    if d.app:
        _remove_via_git(ctx.target, api, c, ctx.timeout, ctx.progress, lambda: _resume(ctx, api, paused))
    else:
        ctx.progress.log(f"delete {d.kind} {d.namespace}/{d.name} (its claim is kept)")
        kdelete(api, "apps/v1", d.kind, d.name, d.namespace)
        _resume(ctx, api, paused)


@executes(PlexDeleteClaim)
def _delete_claim(c: Change, ctx: Apply) -> None:
    ctx.progress.log(f"delete the old claim {c.name}")
    kdelete(ctx.target.kube(), "v1", "PersistentVolumeClaim", c.data.name, c.data.namespace)



@register(STEP)
class PlexStep:
    title = "Plex moves to its container (library copied and verified; Kubernetes Plex removed once it answers)"
    options = {"plex_answer_timeout_s": (float, 120.0), "delete_plex_volume": (bool, False)}

    def observe(self, target: Any, spec: LabSpec, options: StepOptions) -> PlexFacts:
        return observe(target, spec, options)

    def plan(self, spec: LabSpec, observed: PlexFacts, options: StepOptions) -> Plan:
        return plan_plex(spec, observed, options)

    def apply(self, target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
        blocked = [c.data for c in plan.changes if isinstance(c.data, Blocked)]
        if blocked:
            raise StepError(STEP, "refused: " + "; ".join(d.message + (f" (fix: {d.fix})" if d.fix
                                                                       else f" — run {d.run_first} first")
                                                       for d in blocked))
        execute(target, plan.changes, progress, options.wait_timeout_s, step=STEP)

    def checks(self, target: Any, spec: LabSpec, options: StepOptions) -> list[Check]:
        return checks_from(spec, observe(target, spec, options), options)


def checks_from(spec: LabSpec, facts: PlexFacts, options: StepOptions) -> list[Check]:
    p = spec.plex
    if p is None or not p.enabled or not plex_image(options):
        return []
    ct = facts.ct or {}
    out = [Check("Plex container answers", f"{p.hostname} ({p.vmid})", f"GET http://{p.ip}:{PORT}/identity",
                 f"version {facts.answer.get('version')}" if facts.answer else (facts.answer_error or "no answer"),
                 facts.answer is not None, "re-run 60-truenas-plex with apply")]
    wl = [f"{w['kind']}/{_key(w)[0]}/{_key(w)[1]}" for w in facts.workloads]
    out.append(Check("Kubernetes Plex removed", "kubernetes", "no Plex Deployment/StatefulSet",
                     ", ".join(wl) or "none", not wl, "re-run 60-truenas-plex with apply"))
    src = _source(spec, facts)
    if src is not None:
        old, new = facts.pvcs.get(src), facts.pvcs.get((src[0], library_claim(src[1])))
        a, b = _ann(old).get(CHECKSUM, ""), _ann(new).get(CHECKSUM, "")
        out.append(Check("Plex library copied", f"{src[0]}/{src[1]} -> {library_claim(src[1])}", "checksums equal",
                         f"{a[:12] or '-'} / {b[:12] or '-'}", bool(a) and a == b, "re-run 60-truenas-plex with apply"))
    mount = str((ct.get("config") or {}).get(config_mount_key(spec), ""))
    out.append(Check("Plex library mounted", f"{p.hostname} ({p.vmid})", "…,mp=/config", mount or "absent",
                     "/config" in mount, "re-run truenas_plex (root@pam sets bind mounts)"))
    return out


def plex_state(target: Any, spec: LabSpec) -> dict[str, Any]:
    """Where Plex is, for a before/after comparison: ``{"kubernetes": ["Deployment/media/plex", ...],
    "container": {"vmid", "status", "ostemplate" absent} | None, "library": {claim: checksum}}``.
    Before the migration: kubernetes = the Plex workload, container None. After the cutover:
    kubernetes [], container running. After rollback-plex: kubernetes back, container stopped (or
    None when destroyed)."""
    api = target.kube()
    workloads = [w for k in KINDS for w in klist(api, "apps/v1", k) if is_plex_workload(spec, w)]
    pvcs = klist(api, "v1", "PersistentVolumeClaim")
    ct = _ct(target, spec)
    claims = plex_claims(spec, workloads, pvcs)
    return {"kubernetes": sorted(f"{w['kind']}/{_key(w)[0]}/{_key(w)[1]}" for w in workloads),
            "container": None if ct is None else {"vmid": spec.plex.vmid, "status": ct["status"]},
            "library": {f"{_key(p)[0]}/{_key(p)[1]}": _ann(p).get(CHECKSUM, "") for p in pvcs if _key(p) in claims}}
