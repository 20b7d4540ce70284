"""rollback-plex (80-rollback): the Kubernetes Plex back, with the library it has now.

What the cutover (step ``plex``, 60-truenas-plex) left: the Kubernetes Plex removed, its manifest
saved on its old claim (annotation ``falkit.io/plex-kubernetes``), the old claim kept, the library
on ``<claim>-lxc`` (the NFS export Plex's container mounts at ``/config``), the container running.

Plan (pure, from observed state), applied in this order:

1. ``ct`` **stop** — the container is stopped (``status/shutdown``, the library must not change
   while it is copied) unless ``stop_plex_container=False`` (then the copy is of a live library, and
   the two Plexes run side by side: said in the plan);
2. ``library-copy`` — ``<claim>-lxc`` copied back onto ``<claim>`` (what Plex wrote in its container
   since the cutover) with the copy Job, then a checksum Job on each; they must be equal;
3. ``k8s-workload`` **create** — the saved manifest created again (replicas as before the
   cutover), and falkit waits until it is ready;
4. ``ct`` **destroy** — only with ``destroy_plex_container=True`` (destructive: ``allow_destructive``
   too); the library export and ``<claim>-lxc`` are never deleted by falkit.

Like every rollback step it applies only with ``rollback=True`` (:data:`falkit.runbook.REQUIRED_OPTIONS`).
A Plex that Argo CD managed was removed from Git by the cutover: its document is not restored here
(revert that commit in the GitOps repository; the plan says so).

What a before/after comparison should expect after it (:func:`falkit.steps.plex.plex_state`):
``kubernetes`` = the before-state's Plex workload again, ``library`` = the old claim's checksum equal
to the ``-lxc`` claim's; ``container`` = ``{"status": "stopped"}`` (the default: stopped, kept) or
None with ``destroy_plex_container``. The before-state had no container: a comparison that wants
the container gone needs ``destroy_plex_container=True`` (or lists it as a stated leftover).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ...clients.kube import kcreate, kget, klist, wait_until
from ...clients.proxmox import PveCallError, TaskFailedError, TaskTimeoutError, call, wait_task
from ...model.errors import StepError
from ...model.spec import LabSpec
from ...plan.diff import Change, Noop, Plan
from ...plan.payloads import payload
from ..base import Check, Progress, StepOptions, register
from ..executors import Apply, execute, executes
from ..plex import (
    CHECKSUM,
    FROM,
    KINDS,
    SAVED,
    _ann,
    _ct,
    _key,
    _md,
    copy_verified,
    is_plex_workload,
    library_claim,
)

STEP = "rollback-plex"


# ---------------------------------------------------------------------------------------------
# Payloads of this step, carried out in the order of APPLY_ORDER (see the module docstring)


@payload
@dataclass(frozen=True)
class PlexBackStop:
    """Shut Plex's container ``vmid`` down (``status/shutdown``, forced after 60 s) and wait for it."""

    vmid: int


@payload
@dataclass(frozen=True)
class PlexBackCopy:
    """Claim ``namespace/source`` (the container's library) copied back onto ``claim``, checksums compared."""

    namespace: str
    source: str
    claim: str


@payload
@dataclass(frozen=True)
class PlexBackWorkload:
    """The Kubernetes Plex created again from ``object`` (the manifest the cutover saved) unless it
    exists, then waited for until its replicas are ready."""

    object: dict


@payload
@dataclass(frozen=True)
class PlexBackDestroy:
    """Destroy Plex's container ``vmid`` (option ``destroy_plex_container``)."""

    vmid: int


#: the order apply carries the changes out in (stable: the plan's order within a rank): the container
#: stopped, every library copied back, every workload created again, the container destroyed
APPLY_ORDER: dict[type, int] = {PlexBackStop: 0, PlexBackCopy: 1, PlexBackWorkload: 2, PlexBackDestroy: 3}


@dataclass(frozen=True)
class PlexBackFacts:
    workloads: tuple[dict, ...]
    pvcs: dict[tuple[str, str], dict]
    ct: dict | None


def observe_plex_back(target: Any, spec: LabSpec) -> PlexBackFacts:
    api = target.kube()
    workloads = tuple(w for k in KINDS for w in klist(api, "apps/v1", k) if is_plex_workload(spec, w))
    pvcs = {_key(p): p for p in klist(api, "v1", "PersistentVolumeClaim")}
    return PlexBackFacts(workloads, pvcs, _ct(target, spec))


def plan_plex_back(spec: LabSpec, facts: PlexBackFacts, options: StepOptions) -> Plan:
    changes: list[Change] = []
    noops: list[Noop] = []
    notes: list[str] = []
    p = spec.plex
    if p is None or not p.enabled:
        return Plan(STEP, (), (Noop("plex", "-", "Plex is disabled in the spec"),), ())
    saved = [(k, pvc) for k, pvc in sorted(facts.pvcs.items()) if SAVED in _ann(pvc)]
    stop = bool(options.extra.get("stop_plex_container", True))
    destroy = bool(options.extra.get("destroy_plex_container", False))
    ct = facts.ct
    if facts.workloads:
        noops.append(Noop("plex", ", ".join(f"{w['kind']}/{_key(w)[0]}/{_key(w)[1]}" for w in facts.workloads),
                          "the Kubernetes Plex runs"))
    elif not saved:
        notes.append("no Kubernetes Plex and no saved manifest (annotation falkit.io/plex-kubernetes): the cutover "
                     "did not run here; nothing to bring back")
    if ct is not None and ct["status"] == "running" and (stop or destroy):
        changes.append(Change("action", "ct", p.hostname, "status", "running", "stopped",
                              reason="the library must not change while it is copied back",
                              data=PlexBackStop(p.vmid)))
    elif ct is not None and ct["status"] == "running":
        notes.append(f"stop_plex_container=False: container {p.vmid} keeps running beside the Kubernetes Plex")
    if not facts.workloads:
        for (ns, claim), pvc in saved:
            new = facts.pvcs.get((ns, library_claim(claim)))
            if new is not None and _ann(new).get(FROM) == claim:
                changes.append(Change("action", "library-copy", f"{ns}/{library_claim(claim)}", "copy", None,
                                      f"{ns}/{claim}", reason="what Plex wrote in its container since the cutover; "
                                      "checksums compared", data=PlexBackCopy(ns, library_claim(claim), claim)))
            obj = json.loads(_ann(pvc)[SAVED])
            app = _ann(obj).get("argocd.argoproj.io/tracking-id")
            changes.append(Change("create", "k8s-workload", f"{obj['kind']}/{ns}/{_md(obj)['name']}",
                                  new=f"replicas {(obj.get('spec') or {}).get('replicas', 1)}, claim {claim}",
                                  reason="the manifest saved by the cutover",
                                  data=PlexBackWorkload(obj)))
            if app:
                notes.append(f"{obj['kind']} {ns}/{_md(obj)['name']} was managed by Argo CD: revert the cutover's "
                             "commit in the GitOps repository too, or Argo CD prunes it again")
    if ct is not None and destroy:
        changes.append(Change("delete", "ct", p.hostname, old=f"CT {p.vmid} ({ct['status']})", destructive=True,
                              reason="option destroy_plex_container (its library export is kept)",
                              data=PlexBackDestroy(p.vmid)))
    elif ct is not None:
        notes.append(f"container {p.vmid} is kept (destroy_plex_container=False)")
    return Plan(STEP, tuple(changes), tuple(noops), tuple(notes))


def _task(target: Any, what: str, fn: Any, timeout: float) -> None:
    pve, node = target.pve, target.node
    try:
        upid = call(what, fn)
        if isinstance(upid, str) and upid.startswith("UPID:"):
            wait_task(pve, node, upid, timeout=timeout)
    except (PveCallError, TaskFailedError, TaskTimeoutError) as e:
        raise StepError(STEP, str(e)) from e


@executes(PlexBackStop)
def _stop(c: Change, ctx: Apply) -> None:
    pve, node, vmid = ctx.target.pve, ctx.target.node, c.data.vmid
    ctx.progress.log(f"stop CT {c.name} ({vmid})")
    _task(ctx.target, f"shut down CT {vmid}", lambda: pve.nodes(node).lxc(vmid).status.shutdown.post(
        timeout=60, forceStop=1), ctx.timeout)


@executes(PlexBackCopy)
def _copy_back(c: Change, ctx: Apply) -> None:
    d: PlexBackCopy = c.data
    copy_verified(ctx.target.kube(), d.namespace, d.source, d.claim, ctx.timeout, ctx.progress, step=STEP)


@executes(PlexBackWorkload)
def _workload_back(c: Change, ctx: Apply) -> None:
    api, obj = ctx.target.kube(), c.data.object
    ns, name, kind = _md(obj).get("namespace"), _md(obj)["name"], obj["kind"]
    ctx.progress.log(f"create {kind} {ns}/{name} from the saved manifest")
    if kget(api, "apps/v1", kind, name, ns) is None:
        kcreate(api, obj)
    want = int((obj.get("spec") or {}).get("replicas", 1) or 0)
    wait_until(STEP, f"{kind} {ns}/{name} ready", ctx.timeout, lambda: int(
        ((kget(api, "apps/v1", kind, name, ns) or {}).get("status") or {}).get("readyReplicas") or 0) >= want)


@executes(PlexBackDestroy)
def _destroy(c: Change, ctx: Apply) -> None:
    pve, node, vmid = ctx.target.pve, ctx.target.node, c.data.vmid
    ctx.progress.log(f"destroy CT {c.name} ({vmid})")
    _task(ctx.target, f"destroy CT {vmid}", lambda: pve.nodes(node).lxc(vmid).delete(), ctx.timeout)


def in_apply_order(changes: tuple[Change, ...] | list[Change]) -> list[Change]:
    """``changes`` in the order apply carries them out (:data:`APPLY_ORDER`; another payload last)."""
    return sorted(changes, key=lambda c: APPLY_ORDER.get(type(c.data), len(APPLY_ORDER)))


def apply_plex_back(target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
    execute(target, in_apply_order(plan.changes), progress, options.wait_timeout_s, step=STEP)


def plex_back_checks(target: Any, spec: LabSpec, options: StepOptions) -> list[Check]:
    p = spec.plex
    if p is None or not p.enabled:
        return []
    f = observe_plex_back(target, spec)
    out = [Check("Kubernetes Plex back", "kubernetes", "a Plex Deployment/StatefulSet",
                 ", ".join(f"{w['kind']}/{_key(w)[0]}/{_key(w)[1]}" for w in f.workloads) or "none",
                 bool(f.workloads), "re-run 80-rollback with rollback=True")]
    for (ns, claim), pvc in sorted(f.pvcs.items()):
        if SAVED not in _ann(pvc):
            continue
        new = f.pvcs.get((ns, library_claim(claim)))
        a, b = _ann(pvc).get(CHECKSUM, ""), _ann(new).get(CHECKSUM, "")
        out.append(Check("Plex library back", f"{ns}/{claim}", f"checksum of {library_claim(claim)}",
                         f"{a[:12] or '-'} / {b[:12] or '-'}", bool(a) and a == b, "re-run 80-rollback with rollback=True"))
    ct = f.ct
    want = "absent" if options.extra.get("destroy_plex_container") else (
        "stopped" if options.extra.get("stop_plex_container", True) else "running")
    have = "absent" if ct is None else ct["status"]
    out.append(Check("Plex container", f"{p.hostname} ({p.vmid})", want, have, have == want or (want == "stopped" and
                     have == "absent"), "re-run 80-rollback with rollback=True"))
    return out


@register(STEP)
class RollbackPlex:
    title = "Rollback: the Kubernetes Plex back with its library (the container stopped, or destroyed when asked)"
    options = {"stop_plex_container": (bool, True), "destroy_plex_container": (bool, False)}

    def observe(self, target, spec, options):
        return observe_plex_back(target, spec)

    def plan(self, spec, observed, options):
        return plan_plex_back(spec, observed, options)

    def apply(self, target, plan, options, progress):
        apply_plex_back(target, plan, options, progress)

    def checks(self, target, spec, options):
        return plex_back_checks(target, spec, options)
