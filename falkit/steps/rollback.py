"""Step 80-rollback: the seed's rollback plan, made executable — five steps, each planned and shown
before it is applied, then a check that the lab is back in its before-state.

=======================  =====================================================================
step                     plan (pure, from observed state)
=======================  =====================================================================
``rollback-metallb``     the ``metallb`` Helm release (``metallb-system``, ``spec.versions.metallb``),
                         ``IPAddressPool default-pool`` = ``spec.previous.metallb_pool``
                         (10.30.0.65-10.30.0.100), ``L2Advertisement default``, and per service
                         of ``spec.services`` with an ``old_ip``: annotation
                         ``metallb.universe.tf/loadBalancerIPs: <old_ip>``, Cilium's LB annotations
                         (``lbipam.cilium.io/ips``, ``io.cilium/lb-ipam-ips``) removed
``rollback-cilium-lb``   delete the ``CiliumLoadBalancerIPPool`` of ``spec.cilium.lb_pool`` (or any
                         labelled managed-by falkit) and every ``CiliumL2AnnouncementPolicy`` (the
                         before-state had none). Apply first waits until MetalLB holds every old
                         IP; otherwise nothing is deleted (StepError)
``rollback-longhorn``    rename ``spec.gitops.longhorn_files`` ``*.disabled`` back in the GitOps
                         checkout (the seed: ``mv longhorn-app.yaml.disabled longhorn-app.yaml``);
                         falkit does not commit or push (ArgoCD syncs what the operator pushes)
``rollback-volumes``     each Mayastor copy (``falkit.io/migrated-from: <old>``, written by the
                         volumes step) still mounted by a workload: scale it to 0, checksum both
                         claims, copy the Mayastor copy back onto the original claim when they
                         differ (data written since the migration) and compare again, point the
                         workload back at the original claim, scale it up. The original claim is
                         kept by the volumes step by default; when it is gone it is re-created on
                         ``previous.longhorn_storage_class``. **The Mayastor copy is never deleted**
                         unless ``delete_migrated_volumes=True`` (a destructive change: it also
                         needs ``allow_destructive``)
``rollback-workers``     workers the before-state did not have (not in ``spec.previous.nodes``):
                         cordon and drain their Nodes (DaemonSet pods stay), power the VMs off
                         (``status/shutdown``, then ``status/stop`` after the timeout), delete the
                         Node objects; destroy the VMs (and their disks) only with
                         ``destroy_extra_workers=True`` (destructive: also ``allow_destructive``)
``rollback``             no changes; its checks compare the lab with its before-state
=======================  =====================================================================

**What is not automated — the remaining VMs' network identity.** The migration moved the control
plane and worker-01 from ``52:54:00:10:30:XX`` / 10.30.0.x to ``52:54:00:10:10:XX`` / 10.10.0.x and
gave worker-01 a storage NIC. Returning them means new MACs (DHCP reservations), new static
addresses in their Talos configs and a new API endpoint in every kubeconfig — a re-IP of the whole
cluster. ``rollback-workers`` shows it as notes (the exact MACs and IPs per VM) and does not change
it; the before-state this module checks (service IPs, volume data) does not depend on it.

**The before-state check** (step ``rollback``): with a recorded before-state
(:func:`record_before_state`, kept in the target's private dir as ``before-state.json``) every
recorded service IP, workload claim and volume checksum is compared
(:func:`falkit.validation.compare_states`). Without one, the spec is the reference: every service
with an ``old_ip`` has it again, every migrated workload mounts its original claim, and that claim's
checksum equals the one the volumes step recorded on the copy (``falkit.io/checksum``) when the
copy was not written since.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..diff import Change, Noop, Plan
from ..errors import StepError
from ..jobs import (
    JobFailedError,
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
)
from ..kube import wait_until
from ..spec import LabSpec
from ..validation import LabState, compare_states, lb_ip
from .base import Check, Progress, StepOptions, register
from .volumes import (
    CHECKSUM,
    MIGRATED_FROM,
    MIGRATED_TO,
    ORIGINAL_REPLICAS,
    WORKLOAD_KINDS,
    _repoint,
    _scale,
    _scaled_down,
    _scaled_up,
    checkout_path,
    claims_in,
    consumers,
    observe_gitops,
)

METALLB_NS, METALLB_RELEASE, METALLB_CHART = "metallb-system", "metallb", "metallb/metallb"
METALLB_API = "metallb.io/v1beta1"
POOL_NAME, L2ADV_NAME = "default-pool", "default"
METALLB_IPS = "metallb.universe.tf/loadBalancerIPs"
CILIUM_IPS = ("lbipam.cilium.io/ips", "io.cilium/lb-ipam-ips")
ROLLED_BACK = "falkit.io/rolled-back-to"
BEFORE_FILE = "before-state.json"
SHUTDOWN_TIMEOUT_S = 120


def _md(o: dict) -> dict:
    return o.get("metadata") or {}


def _ann(o: dict) -> dict:
    return _md(o).get("annotations") or {}


def _key(o: dict) -> str:
    return f"{_md(o).get('namespace')}/{_md(o).get('name')}"


_wait = wait_until  # (step, what, timeout, fn, poll)


# =============================================================================================
# rollback-metallb


@dataclass(frozen=True)
class LbFacts:
    release: dict | None
    metallb_pools: tuple[dict, ...]
    l2_advertisements: tuple[dict, ...]
    services: dict[str, dict]
    cilium_pools: tuple[dict, ...]
    l2_policies: tuple[dict, ...]
    # Services Argo CD manages (Traefik): the reversal is a change in the GitOps checkout (issue 9),
    # planned while observing because it reads the checkout; None when Git already says so
    git_changes: dict[str, Any] = field(default_factory=dict)


def observe_lb(target: Any, spec: LabSpec) -> LbFacts:
    api = target.kube()
    pools = tuple(klist(api, "cilium.io/v2", "CiliumLoadBalancerIPPool")) or \
        tuple(klist(api, "cilium.io/v2alpha1", "CiliumLoadBalancerIPPool"))
    services = {_key(s): s for s in klist(api, "v1", "Service")}
    return LbFacts(target.helm.get(METALLB_NS, METALLB_RELEASE),
                   tuple(klist(api, METALLB_API, "IPAddressPool", METALLB_NS)),
                   tuple(klist(api, METALLB_API, "L2Advertisement", METALLB_NS)),
                   services, pools, tuple(klist(api, "cilium.io/v2alpha1", "CiliumL2AnnouncementPolicy")),
                   _git_reversals(target, spec, services))


def _metallb_patch(ann: dict, old_ip: str) -> dict[str, Any]:
    patch: dict[str, Any] = {k: None for k in CILIUM_IPS if k in ann}
    if ann.get(METALLB_IPS) != old_ip:
        patch[METALLB_IPS] = old_ip
    return patch


def _git_reversals(target: Any, spec: LabSpec, services: dict[str, dict]) -> dict[str, Any]:
    """For each Service Argo CD manages, the Git change that gives it back to MetalLB."""
    from ..gitops import Checkout, ManifestNotFoundError, ObjectRef
    from ..ownership import TRACKING_ANNOTATION, managed_by, matches, plan_object_change

    out: dict[str, Any] = {}
    apps = {_md(a)["name"] for a in klist(target.kube(), "argoproj.io/v1alpha1", "Application", "argocd")}
    for s in spec.services:
        svc = services.get(f"{s.namespace}/{s.name}")
        if not s.old_ip or svc is None or TRACKING_ANNOTATION not in _ann(svc) or managed_by(svc, apps) is None:
            continue  # not managed, or orphaned by a deleted Application (Longhorn's, disabled)
        want = {k: None for k in CILIUM_IPS} | {METALLB_IPS: s.old_ip}
        if matches(svc, {"metadata": {"annotations": want}}):
            out[f"{s.namespace}/{s.name}"] = None
            continue
        try:
            out[f"{s.namespace}/{s.name}"] = plan_object_change(
                ObjectRef("v1", "Service", s.namespace, s.name), svc, {"metadata": {"annotations": want}},
                Checkout.for_target(target), applications=apps, reason="MetalLB takes the service back with its old IP")
        except ManifestNotFoundError:
            pass  # rendered by a Helm-chart Application: no manifest to edit; patched directly (plan_metallb)
    return out


def metallb_objects(spec: LabSpec) -> tuple[dict, dict]:
    """The before-state's ``IPAddressPool`` and ``L2Advertisement`` (as the seed's main.tf had them)."""
    p = spec.previous.metallb_pool
    pool = {"apiVersion": METALLB_API, "kind": "IPAddressPool", "metadata": {"name": POOL_NAME, "namespace": METALLB_NS},
            "spec": {"addresses": [f"{p.start}-{p.stop}"], "autoAssign": True}}
    l2 = {"apiVersion": METALLB_API, "kind": "L2Advertisement", "metadata": {"name": L2ADV_NAME, "namespace": METALLB_NS},
          "spec": {"ipAddressPools": [POOL_NAME]}}
    return pool, l2


def plan_metallb(spec: LabSpec, f: LbFacts) -> Plan:
    """Pure: the MetalLB release, pool, L2Advertisement and service annotations of the before-state."""
    if spec.previous is None:
        return Plan("rollback-metallb", notes=("the spec has no 'previous' section: nothing to roll back to",))
    changes, noops, notes = [], [], []
    v = spec.versions.metallb
    if f.release is None or f.release.get("status") not in (None, "deployed"):
        changes.append(Change("create", "helm-release", f"{METALLB_NS}/{METALLB_RELEASE}", new=f"{METALLB_CHART} {v}",
                              data={"namespace": METALLB_NS, "name": METALLB_RELEASE, "chart": METALLB_CHART, "version": v}))
    else:
        noops.append(Noop("helm-release", f"{METALLB_NS}/{METALLB_RELEASE}", f"deployed ({f.release.get('version')})"))
    pool, l2 = metallb_objects(spec)
    rng = pool["spec"]["addresses"][0]
    have = next((p for p in f.metallb_pools if rng in ((p.get("spec") or {}).get("addresses") or [])), None)
    if have is None:
        changes.append(Change("create", "k8s-object", f"IPAddressPool {METALLB_NS}/{POOL_NAME}", new=rng, data={"body": pool}))
        pool_name = POOL_NAME
    else:
        pool_name = _md(have)["name"]
        noops.append(Noop("k8s-object", f"IPAddressPool {METALLB_NS}/{pool_name}", rng))
    adv = next((a for a in f.l2_advertisements if pool_name in ((a.get("spec") or {}).get("ipAddressPools") or [])), None)
    if adv is None:
        l2["spec"]["ipAddressPools"] = [pool_name]
        changes.append(Change("create", "k8s-object", f"L2Advertisement {METALLB_NS}/{L2ADV_NAME}", new=f"pools {pool_name}",
                              data={"body": l2}))
    else:
        noops.append(Noop("k8s-object", f"L2Advertisement {METALLB_NS}/{_md(adv)['name']}", f"advertises {pool_name}"))
    for s in spec.services:
        if not s.old_ip:
            continue
        key = f"{s.namespace}/{s.name}"
        svc = f.services.get(key)
        if svc is None:
            notes.append(f"service {key} does not exist (re-enabling its app through GitOps re-creates it)")
            continue
        ann = _ann(svc)
        patch = _metallb_patch(ann, s.old_ip)
        if key in f.git_changes:
            if f.git_changes[key] is not None:
                changes.append(f.git_changes[key])
            else:
                noops.append(Noop("service", key, f"Git and the cluster give it MetalLB's {s.old_ip}"))
            continue
        if patch:
            old = ", ".join(f"{k}={ann[k]}" for k in (*CILIUM_IPS, METALLB_IPS) if k in ann) or "none"
            changes.append(Change("update", "service", key, "annotations", old, f"{METALLB_IPS}={s.old_ip}",
                                  reason="MetalLB takes the service back with its old IP",
                                  data={"namespace": s.namespace, "name": s.name, "patch": patch}))
        else:
            noops.append(Noop("service", key, f"annotated for MetalLB {s.old_ip}"))
    return Plan("rollback-metallb", tuple(changes), tuple(noops), tuple(notes))


def apply_metallb(target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
    api = target.kube()
    for c in plan.changes:
        progress.log(f"rollback-metallb: {c.describe()}")
        if c.kind == "helm-release":
            d = c.data
            target.helm.upgrade_install(d["namespace"], d["name"], d["chart"], d["version"], {})
        elif c.kind == "k8s-object":
            body = c.data["body"]
            _wait("rollback-metallb", f"{body['kind']} served", options.wait_timeout_s,
                  lambda b=body: _kind_served(api, b["apiVersion"], b["kind"]))
            if kget(api, body["apiVersion"], body["kind"], body["metadata"]["name"], METALLB_NS) is None:
                kcreate(api, body)
        elif c.kind == "service":
            kpatch(api, "v1", "Service", c.data["name"], {"metadata": {"annotations": c.data["patch"]}}, c.data["namespace"])
        elif c.kind in ("git-file", "argocd-sync"):
            from ..gitops import Checkout
            from ..ownership import apply_git_changes

            apply_git_changes([c], Checkout.for_target(target), api, timeout=options.wait_timeout_s)


def _kind_served(api: Any, api_version: str, kind: str) -> bool:
    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    from ..jobs import _resource

    try:
        _resource(api, api_version, kind)
        return True
    except ResourceNotFoundError:
        return False


def service_ip_checks(spec: LabSpec, services: dict[str, dict]) -> list[Check]:
    out = []
    for s in spec.services:
        if s.old_ip:
            svc = services.get(f"{s.namespace}/{s.name}")
            ip = lb_ip(svc) if svc else ""
            out.append(Check("service IP as before", f"{s.namespace}/{s.name}", s.old_ip,
                             ip or ("pending" if svc else "no Service"), ip == s.old_ip,
                             "kubectl describe svc (MetalLB events AllocationFailed); re-run 80-rollback"))
    return out


# =============================================================================================
# rollback-cilium-lb


def _cilium_pool_ours(spec: LabSpec, pool: dict) -> bool:
    blocks = (pool.get("spec") or {}).get("blocks") or []
    lb = spec.cilium.lb_pool
    labelled = (_md(pool).get("labels") or {}).get("app.kubernetes.io/managed-by") == "falkit"
    return labelled or any(b.get("start") == lb.start and b.get("stop") == lb.stop for b in blocks)


def plan_cilium_lb(spec: LabSpec, f: LbFacts) -> Plan:
    """Pure: delete falkit's Cilium LB pool and every L2 announcement policy."""
    changes = [Change("delete", "k8s-object", f"CiliumLoadBalancerIPPool {_md(p)['name']}",
                      data={"apiVersion": p["apiVersion"], "kind": p["kind"], "name": _md(p)["name"]})
               for p in f.cilium_pools if _cilium_pool_ours(spec, p)]
    changes += [Change("delete", "k8s-object", f"CiliumL2AnnouncementPolicy {_md(p)['name']}",
                       data={"apiVersion": p["apiVersion"], "kind": p["kind"], "name": _md(p)["name"]})
                for p in f.l2_policies]
    notes = ("deleted only once MetalLB holds every service's old IP",) if changes else ()
    return Plan("rollback-cilium-lb", tuple(changes), notes=notes)


def apply_cilium_lb(target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
    api, spec = target.kube(), target.spec
    bar = progress.task("MetalLB holds every old IP", 1)

    def held() -> bool:
        services = {_key(s): s for s in klist(api, "v1", "Service")}
        return all(c.ok for c in service_ip_checks(spec, services) if c.observed != "no Service")

    try:
        _wait("rollback-cilium-lb", "MetalLB holds every old IP", options.wait_timeout_s, held)
    except StepError as e:
        raise StepError("rollback-cilium-lb", f"{e.reason}; the Cilium pool and L2 policy are kept (run rollback-metallb "
                        "first and check MetalLB's events)") from e
    bar(1, "held")
    for c in plan.changes:
        progress.log(f"rollback-cilium-lb: {c.describe()}")
        kdelete(api, c.data["apiVersion"], c.data["kind"], c.data["name"])


# =============================================================================================
# rollback-longhorn


def plan_longhorn(spec: LabSpec, gitops: Any) -> Plan:
    """Pure: rename every ``<file>.disabled`` back (``gitops``: ``volumes.GitopsFacts`` or None)."""
    if gitops is None:
        return Plan("rollback-longhorn", notes=("no gitops section in the spec: re-enable Longhorn by hand",))
    if not gitops.exists:
        return Plan("rollback-longhorn", (Change("action", "gitops", gitops.checkout, reason="checkout missing",
                                                 data={"blocked": True}),))
    changes, noops = [], []
    for f, state in sorted(gitops.files.items()):
        if state == "disabled":
            changes.append(Change("update", "gitops-file", f, "name", f + ".disabled", f, reason="re-enable Longhorn (seed)",
                                  data={"checkout": gitops.checkout, "file": f}))
        else:
            noops.append(Noop("gitops-file", f, state))
    notes = ("the renames are committed on the GitOps branch (pushed only with spec.gitops.push); Argo CD's "
             "app-of-apps then re-creates the Longhorn Applications",) if changes else ()
    return Plan("rollback-longhorn", tuple(changes), tuple(noops), notes)


def apply_longhorn(target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
    spec = target.spec
    if any((c.data or {}).get("blocked") for c in plan.changes):
        raise StepError("rollback-longhorn", f"the GitOps checkout {plan.changes[0].name} does not exist: clone it or pass "
                                             "gitops_checkout=<path>; nothing was changed")
    if not plan.changes:
        return
    from ..gitops import Checkout
    from ..ownership import apply_git_changes, plan_renames

    co = Checkout.from_spec(spec.gitops, plan.changes[0].data["checkout"])
    renames = plan_renames(co, disable=False)
    for c in renames:
        progress.log(f"git mv {c.old} {c.new}")
    api = target.kube() if getattr(target, "kind", "") == "twin" or spec.gitops.push else None
    apply_git_changes(renames, co, api, timeout=options.wait_timeout_s)


# =============================================================================================
# rollback-volumes


@dataclass(frozen=True)
class VolFacts:
    pvcs: dict[str, dict]  # ns/name -> PVC
    workloads: tuple[dict, ...]


def observe_volumes(target: Any, spec: LabSpec) -> VolFacts:
    api = target.kube()
    return VolFacts({_key(p): p for p in klist(api, "v1", "PersistentVolumeClaim")},
                    tuple(w for k in WORKLOAD_KINDS for w in klist(api, "apps/v1", k)))


def plan_volumes_back(spec: LabSpec, f: VolFacts, options: StepOptions) -> Plan:
    """Pure: one ``volume`` change per Mayastor copy a workload still mounts; deletions of copies
    only with ``delete_migrated_volumes``."""
    delete = bool(options.extra.get("delete_migrated_volumes", False))
    changes, noops, notes = [], [], []
    for key, new in sorted(f.pvcs.items()):
        old = _ann(new).get(MIGRATED_FROM)
        if not old:
            continue
        ns, new_name = key.split("/", 1)
        users = consumers(f.workloads, ns, new_name)
        original = f.pvcs.get(f"{ns}/{old}")
        if users:
            wl = ", ".join(f"{w['kind']}/{_md(w)['name']}" for w in users)
            recreate = original is None
            changes.append(Change("update", "volume", key, "claim", new_name, old,
                                  reason=("re-create the original claim on "
                                          f"{spec.previous.longhorn_storage_class if spec.previous else 'longhorn'}, " if recreate
                                          else "") + f"copy back if written since, checksums; repoint {wl}",
                                  data={"namespace": ns, "new": new_name, "old": old, "recreate": recreate,
                                        "size": (((new.get("spec") or {}).get("resources") or {}).get("requests") or {})
                                        .get("storage", "1Gi"),
                                        "access": list((new.get("spec") or {}).get("accessModes") or ["ReadWriteOnce"]),
                                        "workloads": [(w["kind"], _md(w)["name"]) for w in users]}))
        elif delete:
            changes.append(Change("delete", "pvc", key, old=old, destructive=True,
                                  reason="option delete_migrated_volumes: the Mayastor copy of "
                                         f"{ns}/{old} (no workload mounts it)", data={"namespace": ns, "name": new_name}))
        else:
            noops.append(Noop("volume", f"{ns}/{old}", f"back on {old}; the Mayastor copy {new_name} is kept"))
    if not changes and not noops:
        notes.append("no migrated volumes (no claim carries falkit.io/migrated-from)")
    return Plan("rollback-volumes", tuple(changes), tuple(noops), tuple(notes))


def _checksum(api: Any, ns: str, claim: str, timeout: float) -> str:
    return parse_checksum(run_job(api, checksum_job(job_name("checksum", claim), ns, claim), timeout))


def move_back(api: Any, spec: LabSpec, c: Change, timeout: float, progress: Progress) -> str:
    """Execute one ``volume`` change; returns the verified checksum of the original claim."""
    d = c.data
    ns, new, old = d["namespace"], d["new"], d["old"]
    bar = progress.task(f"move {ns}/{new} back to {old}", 4)
    if d["recreate"] and kget(api, "v1", "PersistentVolumeClaim", old, ns) is None:
        sc = spec.previous.longhorn_storage_class if spec.previous else "longhorn"
        kcreate(api, {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": old, "namespace": ns},
                      "spec": {"accessModes": d["access"], "resources": {"requests": {"storage": d["size"]}},
                               "storageClassName": sc}})
    _wait("rollback-volumes", f"{ns}/{old} Bound", timeout,
          lambda: ((kget(api, "v1", "PersistentVolumeClaim", old, ns) or {}).get("status") or {}).get("phase") == "Bound")
    originals = {}
    for kind, name in d["workloads"]:
        w = kget(api, "apps/v1", kind, name, ns) or {}
        rec = _ann(w).get(ORIGINAL_REPLICAS)
        originals[(kind, name)] = int(rec) if rec is not None else int((w.get("spec") or {}).get("replicas", 1))
        _scale(api, kind, ns, name, 0, {"metadata": {"annotations": {ORIGINAL_REPLICAS: str(originals[(kind, name)])}}})
    for kind, name in originals:
        _wait("rollback-volumes", f"{kind} {ns}/{name} scaled down", timeout, lambda k=kind, n=name: _scaled_down(api, k, ns, n))
    bar(1, "workloads scaled down")

    def restore(repoint: bool) -> None:
        for (kind, name), replicas in originals.items():
            if repoint:
                _repoint(api, kind, ns, name, new, old)
            _scale(api, kind, ns, name, replicas, {"metadata": {"annotations": {ORIGINAL_REPLICAS: None}}})

    try:
        src, dst = _checksum(api, ns, new, timeout), _checksum(api, ns, old, timeout)
        if src != dst:
            progress.log(f"{ns}/{new} differs from {old} (written since the migration): copying it back")
            run_job(api, copy_job(job_name("copy", new), ns, new, old), timeout)
            dst = _checksum(api, ns, old, timeout)
    except (JobFailedError, ValueError) as e:
        restore(repoint=False)
        raise StepError("rollback-volumes", f"{ns}/{new}: {e}; the workload still uses the Mayastor copy") from e
    if src != dst:
        restore(repoint=False)
        raise StepError("rollback-volumes", f"{ns}/{old}: checksum mismatch after copying back (copy {src[:16]}…, "
                        f"original {dst[:16]}…); the workload still uses {new}, both claims are kept",
                        resume="find why the copy differs, then re-run 80-rollback")
    bar(2, f"checksums match ({src[:12]}…)")
    kpatch(api, "v1", "PersistentVolumeClaim", old, {"metadata": {"annotations": {MIGRATED_TO: None}}}, ns)
    kpatch(api, "v1", "PersistentVolumeClaim", new, {"metadata": {"annotations": {ROLLED_BACK: old}}}, ns)
    restore(repoint=True)
    bar(3, "repointed")
    for (kind, name), replicas in originals.items():
        _wait("rollback-volumes", f"{kind} {ns}/{name} back up", timeout,
              lambda k=kind, n=name, r=replicas: _scaled_up(api, k, ns, n, r))
    bar(4, f"back on {old}")
    return src


def apply_volumes_back(target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
    from .volumes import gitops_checkout, with_argocd_paused

    api = target.kube()
    checkout = gitops_checkout(target, target.spec, options)
    moves = [c for c in plan.changes if c.kind == "volume"]
    refs = [(c.data["namespace"], kind, name) for c in moves for kind, name in c.data["workloads"]]
    with_argocd_paused(api, f"{len(moves)} volume(s)", refs, checkout, progress, options.wait_timeout_s,
                       lambda: [move_back(api, target.spec, c, options.wait_timeout_s, progress) for c in moves])
    for c in plan.changes:
        if c.kind == "pvc" and c.op == "delete":
            progress.log(f"delete the Mayastor copy {c.name} (delete_migrated_volumes)")
            kdelete(api, "v1", "PersistentVolumeClaim", c.data["name"], c.data["namespace"])


# =============================================================================================
# rollback-workers


@dataclass(frozen=True)
class WorkerFacts:
    vms: dict[int, dict]  # vmid -> {name, status, config}
    nodes: dict[str, dict]  # Node name -> Node
    pods: tuple[dict, ...]


def observe_workers(target: Any, spec: LabSpec) -> WorkerFacts:
    from ..pve import list_vms

    vms = {vmid: {"name": v.name, "status": v.status, "config": v.config}
           for vmid, v in list_vms(target.pve, target.node).items()}
    api = target.kube()
    return WorkerFacts(vms, {_md(n)["name"]: n for n in klist(api, "v1", "Node")}, tuple(klist(api, "v1", "Pod")))


def _drainable(pod: dict, node: str) -> bool:
    owners = _md(pod).get("ownerReferences") or []
    phase = (pod.get("status") or {}).get("phase")
    return (pod.get("spec") or {}).get("nodeName") == node and phase not in ("Succeeded", "Failed") \
        and not any(o.get("kind") == "DaemonSet" for o in owners)


def plan_workers(spec: LabSpec, f: WorkerFacts, options: StepOptions) -> Plan:
    """Pure: cordon, drain, power off and (option) destroy the workers the before-state did not have."""
    changes, noops, notes = [], [], []
    if spec.previous is None:
        return Plan("rollback-workers", notes=("the spec has no 'previous' section",))
    keep = {n.vmid for n in spec.previous.nodes}
    destroy = bool(options.extra.get("destroy_extra_workers", False))
    for w in spec.cluster.workers:
        if w.vmid in keep:
            continue
        node = f.nodes.get(w.name)
        if node is not None:
            if not (node.get("spec") or {}).get("unschedulable"):
                changes.append(Change("action", "node", w.name, "cordon", reason="no new pods", data={"node": w.name}))
            pods = [p for p in f.pods if _drainable(p, w.name)]
            if pods:
                changes.append(Change("action", "node", w.name, "drain", reason=f"evict {len(pods)} pod(s) "
                                      "(DaemonSet pods stay)", data={"node": w.name}))
        vm = f.vms.get(w.vmid)
        if vm is not None and vm["status"] == "running":
            changes.append(Change("action", "vm", w.name, "shutdown", reason="power off (data disk kept)",
                                  disruptive=True, data={"vmid": w.vmid}))
        if node is not None:
            changes.append(Change("delete", "node", w.name, reason="decommission the Node object (kubectl delete node)",
                                  data={"node": w.name}))
        if vm is not None and destroy:
            changes.append(Change("delete", "vm", w.name, old=f"VMID {w.vmid}", destructive=True,
                                  reason="option destroy_extra_workers: the VM and its disks (Mayastor replicas) go",
                                  data={"vmid": w.vmid}))
        elif vm is not None and vm["status"] != "running" and node is None:
            noops.append(Noop("vm", w.name, f"powered off ({vm['status']}); kept (destroy_extra_workers=False)"))
        elif vm is None:
            noops.append(Noop("vm", w.name, "does not exist"))
    prev = spec.previous
    for n in prev.nodes:
        now = next((x for x in [*spec.cluster.control_plane, *spec.cluster.workers] if x.vmid == n.vmid), None)
        if now is not None and now.ip != n.ip:
            notes.append(f"{n.name} keeps {now.ip} and the MAC prefix {spec.networks.management.mac_prefix}: returning it to "
                         f"{n.ip} / {prev.network.mac_prefix}:{int(n.ip.rsplit('.', 1)[1]):02d} is a re-IP of the cluster "
                         "(Talos config, DHCP reservation, kubeconfig endpoint) that falkit does not automate")
    return Plan("rollback-workers", tuple(changes), tuple(noops), tuple(notes))


def apply_workers(target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
    from ..pve import PveCallError, TaskFailedError, TaskTimeoutError, call, wait_task

    api = target.kube()
    qemu = target.pve.nodes(target.node).qemu
    try:
        for c in plan.changes:
            progress.log(f"rollback-workers: {c.describe()}")
            if c.kind == "node" and c.field == "cordon":
                kpatch(api, "v1", "Node", c.data["node"], {"spec": {"unschedulable": True}})
            elif c.kind == "node" and c.field == "drain":
                for p in klist(api, "v1", "Pod"):
                    if _drainable(p, c.data["node"]):
                        kdelete(api, "v1", "Pod", _md(p)["name"], _md(p)["namespace"])
            elif c.kind == "vm" and c.field == "shutdown":
                vmid = c.data["vmid"]
                upid = call(f"shut down VM {vmid}", qemu(vmid).status.shutdown.post, timeout=SHUTDOWN_TIMEOUT_S)
                try:
                    wait_task(target.pve, target.node, upid, timeout=SHUTDOWN_TIMEOUT_S + 30)
                except (TaskFailedError, TaskTimeoutError):
                    progress.log(f"VM {vmid} did not shut down cleanly: stopping it")
                    wait_task(target.pve, target.node, call(f"stop VM {vmid}", qemu(vmid).status.stop.post),
                              timeout=options.wait_timeout_s)
            elif c.kind == "node" and c.op == "delete":
                kdelete(api, "v1", "Node", c.data["node"])
            elif c.kind == "vm" and c.op == "delete":
                vmid = c.data["vmid"]
                upid = call(f"destroy VM {vmid}", qemu(vmid).delete, purge=1, **{"destroy-unreferenced-disks": 1})
                wait_task(target.pve, target.node, upid, timeout=options.wait_timeout_s)
    except (PveCallError, TaskFailedError, TaskTimeoutError) as e:
        raise StepError("rollback-workers", str(e)) from e


# =============================================================================================
# The before-state


def lab_state(target: Any, spec: LabSpec, timeout: float = 300.0) -> LabState:
    """Service IPs, the claims each workload mounts and a checksum (checksum Job) per mounted claim."""
    api = target.kube()
    services = {_key(s): lb_ip(s) for s in klist(api, "v1", "Service")
                if (s.get("spec") or {}).get("type") == "LoadBalancer"}
    claims: dict[str, list[str]] = {}
    sums: dict[str, str] = {}
    for kind in WORKLOAD_KINDS:
        for w in klist(api, "apps/v1", kind):
            mounted = claims_in(w)
            if mounted:
                ns = _md(w)["namespace"]
                claims[f"{ns}/{kind}/{_md(w)['name']}"] = mounted
                for c in mounted:
                    sums.setdefault(f"{ns}/{c}", _checksum(api, ns, c, timeout))
    return LabState(services, claims, sums)


def record_before_state(target: Any, spec: LabSpec) -> LabState:
    """Record the before-state (before the migration) in the private dir for the rollback's check."""
    state = lab_state(target, spec)
    target.write_private(BEFORE_FILE, json.dumps(state.to_json(), indent=2, sort_keys=True))
    return state


def before_state_checks(target: Any, spec: LabSpec) -> list[Check]:
    recorded = target.read_private(BEFORE_FILE)
    if recorded:
        before = LabState.from_json(json.loads(recorded))
        now = lab_state(target, spec)
        # only the workloads and services the before-state had; a checksum of a claim now unmounted still counts
        return compare_states(before, now)
    api = target.kube()
    out = service_ip_checks(spec, {_key(s): s for s in klist(api, "v1", "Service")})
    pvcs = {_key(p): p for p in klist(api, "v1", "PersistentVolumeClaim")}
    workloads = tuple(w for k in WORKLOAD_KINDS for w in klist(api, "apps/v1", k))
    for key, new in sorted(pvcs.items()):
        old = _ann(new).get(MIGRATED_FROM)
        if not old:
            continue
        ns, new_name = key.split("/", 1)
        users = consumers(workloads, ns, new_name)
        out.append(Check("workload claim as before", f"{ns}/{old}", "workloads on the original claim",
                         "on the Mayastor copy: " + ", ".join(_md(w)["name"] for w in users) if users else "yes", not users,
                         "re-run 80-rollback (rollback-volumes)"))
        recorded_sum = _ann(new).get(CHECKSUM)
        if recorded_sum and f"{ns}/{old}" in pvcs:
            now = _checksum(api, ns, old, 300.0)
            out.append(Check("volume data as before", f"{ns}/{old}", recorded_sum[:16], now[:16], now == recorded_sum,
                             "the original differs from the data migrated: if the copy was written since, rollback-volumes "
                             "copies it back; compare with the Mayastor copy (kept)"))
    return out


# =============================================================================================
# The steps


class _Base:
    options: dict[str, tuple[type, Any]] = {}

    def apply(self, target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
        self._apply(target, plan, options, progress)


@register("rollback-metallb")
class RollbackMetallb(_Base):
    title = "Rollback 1/5: MetalLB back (release, pool, L2Advertisement, service annotations)"

    def observe(self, target, spec, options):
        return observe_lb(target, spec)

    def plan(self, spec, observed, options):
        return plan_metallb(spec, observed)

    _apply = staticmethod(apply_metallb)

    def checks(self, target, spec, options):
        return service_ip_checks(spec, observe_lb(target, spec).services)


@register("rollback-cilium-lb")
class RollbackCiliumLb(_Base):
    title = "Rollback 2/5: Cilium LB pool and L2 policy removed (after MetalLB holds every IP)"

    def observe(self, target, spec, options):
        return observe_lb(target, spec)

    def plan(self, spec, observed, options):
        return plan_cilium_lb(spec, observed)

    _apply = staticmethod(apply_cilium_lb)

    def checks(self, target, spec, options):
        f = observe_lb(target, spec)
        left = [p for p in f.cilium_pools if _cilium_pool_ours(spec, p)] + list(f.l2_policies)
        return [Check("Cilium LB objects removed", "cluster", "no falkit pool, no L2 policy",
                      ", ".join(_md(p)["name"] for p in left) or "none", not left, "re-run rollback-cilium-lb"),
                *service_ip_checks(spec, f.services)]


@register("rollback-longhorn")
class RollbackLonghorn(_Base):
    title = "Rollback 3/5: Longhorn's manifests re-enabled in the GitOps checkout"
    options = {"gitops_checkout": (str, "")}

    def observe(self, target, spec, options):
        return observe_gitops(spec, options, target)

    def plan(self, spec, observed, options):
        return plan_longhorn(spec, observed)

    _apply = staticmethod(apply_longhorn)

    def checks(self, target, spec, options):
        g = observe_gitops(spec, options, target)
        if g is None:
            return []
        path = checkout_path(spec, options, target)
        return [Check("Longhorn manifest enabled", f, f"{path}/{spec.gitops.platform_path}/{f}", state, state == "enabled",
                      f"mv {f}.disabled {f}") for f, state in sorted(g.files.items()) if state != "absent"]


@register("rollback-volumes")
class RollbackVolumes(_Base):
    title = "Rollback 4/5: workloads back on their original volumes (checksummed)"
    options = {"delete_migrated_volumes": (bool, False)}

    def observe(self, target, spec, options):
        return observe_volumes(target, spec)

    def plan(self, spec, observed, options):
        return plan_volumes_back(spec, observed, options)

    _apply = staticmethod(apply_volumes_back)

    def checks(self, target, spec, options):
        return before_state_checks_volumes(target, spec)


def before_state_checks_volumes(target: Any, spec: LabSpec) -> list[Check]:
    f = observe_volumes(target, spec)
    out = []
    for key, new in sorted(f.pvcs.items()):
        old = _ann(new).get(MIGRATED_FROM)
        if old:
            ns, new_name = key.split("/", 1)
            users = consumers(f.workloads, ns, new_name)
            out.append(Check("workload claim as before", f"{ns}/{old}", "no workload on the Mayastor copy",
                             ", ".join(_md(w)["name"] for w in users) or "none", not users, "re-run rollback-volumes"))
    return out


@register("rollback-workers")
class RollbackWorkers(_Base):
    title = "Rollback 5/5: back to a single worker (extra workers powered off)"
    options = {"destroy_extra_workers": (bool, False)}

    def observe(self, target, spec, options):
        return observe_workers(target, spec)

    def plan(self, spec, observed, options):
        return plan_workers(spec, observed, options)

    _apply = staticmethod(apply_workers)

    def checks(self, target, spec, options):
        f = observe_workers(target, spec)
        keep = {n.vmid for n in spec.previous.nodes} if spec.previous else set()
        out = []
        for w in spec.cluster.workers:
            if w.vmid in keep:
                continue
            vm = f.vms.get(w.vmid)
            state = "destroyed" if vm is None else vm["status"]
            out.append(Check("extra worker off", w.name, "stopped (or destroyed), no Node", state +
                             (", Node present" if w.name in f.nodes else ""), state != "running" and w.name not in f.nodes,
                             "re-run rollback-workers"))
        return out


@register("rollback")
class RollbackVerify(_Base):
    """Checks only. The option ``rollback`` (default False) guards the whole 80 notebook: ``falkit run``
    runs every notebook with the same ``apply``, and a migration run must not roll itself back — the
    notebook applies only when ``apply and rollback``. In a dry run the lab is not expected to be in its
    before-state, so these checks return nothing then."""

    title = "Rollback: the lab matches its before-state"
    options = {"rollback": (bool, False)}

    def observe(self, target, spec, options):
        return None

    def plan(self, spec, observed, options):
        return Plan("rollback", notes=("checks only: service IPs and volume data compared with the before-state",))

    def _apply(self, target, plan, options, progress):
        return None

    def checks(self, target, spec, options):
        return before_state_checks(target, spec) if options.apply else []
