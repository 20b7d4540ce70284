"""rollback-metallb and rollback-cilium-lb: MetalLB restored (release, pool, L2Advertisement,
service annotations, Git changes for services Argo CD manages), Cilium's LB pool and L2 policy
removed once MetalLB holds every old IP, and :func:`service_ip_checks`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...clients.kube import WaitTimeoutError, klist
from ...model.design import design_of
from ...model.errors import StepError
from ...model.spec import LabSpec
from ...plan.diff import Change, Noop, Plan
from ...plan.payloads import HelmRelease, KubeAnnotate, KubeCreate, KubeDelete, WaitServiceIPs
from ...render.gitops import Checkout, ManifestNotFoundError, ObjectRef
from ..base import Check, Progress, StepOptions
from ..executors import execute
from ..ownership import TRACKING_ANNOTATION, managed_by, matches, plan_object_change
from ..probes import lb_ip
from ._common import _ann, _key, _md

METALLB_NS, METALLB_RELEASE, METALLB_CHART = "metallb-system", "metallb", "metallb"  # --repo: backends.helm
METALLB_API = "metallb.io/v1beta1"
POOL_NAME, L2ADV_NAME = "default-pool", "default"
METALLB_IPS = "metallb.universe.tf/loadBalancerIPs"
CILIUM_IPS = ("lbipam.cilium.io/ips", "io.cilium/lb-ipam-ips")


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
                              data=HelmRelease(METALLB_NS, METALLB_RELEASE, METALLB_CHART, v, {}, diff=False)))
    else:
        noops.append(Noop("helm-release", f"{METALLB_NS}/{METALLB_RELEASE}", f"deployed ({f.release.get('version')})"))
    pool, l2 = metallb_objects(spec)
    rng = pool["spec"]["addresses"][0]
    have = next((p for p in f.metallb_pools if rng in ((p.get("spec") or {}).get("addresses") or [])), None)
    if have is None:
        changes.append(Change("create", "k8s-object", f"IPAddressPool {METALLB_NS}/{POOL_NAME}", new=rng, data=KubeCreate(pool)))
        pool_name = POOL_NAME
    else:
        pool_name = _md(have)["name"]
        noops.append(Noop("k8s-object", f"IPAddressPool {METALLB_NS}/{pool_name}", rng))
    adv = next((a for a in f.l2_advertisements if pool_name in ((a.get("spec") or {}).get("ipAddressPools") or [])), None)
    if adv is None:
        l2["spec"]["ipAddressPools"] = [pool_name]
        changes.append(Change("create", "k8s-object", f"L2Advertisement {METALLB_NS}/{L2ADV_NAME}", new=f"pools {pool_name}",
                              data=KubeCreate(l2)))
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
                                  data=KubeAnnotate(ObjectRef("v1", "Service", s.namespace, s.name), patch)))
        else:
            noops.append(Noop("service", key, f"annotated for MetalLB {s.old_ip}"))
    return Plan("rollback-metallb", tuple(changes), tuple(noops), tuple(notes))


def apply_metallb(target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
    for c in plan.changes:
        progress.log(f"rollback-metallb: {c.describe()}")
    try:
        execute(target, plan.changes, progress, options.wait_timeout_s, step="rollback-metallb")
    except WaitTimeoutError as e:
        raise StepError("rollback-metallb", str(e)) from e


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
    labelled = (_md(pool).get("labels") or {}).get("app.kubernetes.io/managed-by") == "falkit"
    return labelled or any((b.get("start"), b.get("stop")) == design_of(spec).lb_pool for b in blocks)


def plan_cilium_lb(spec: LabSpec, f: LbFacts) -> Plan:
    """Pure: delete falkit's Cilium LB pool and every L2 announcement policy — only when there is a
    before-state to return to (``spec.previous``): a new build has no MetalLB to take over."""
    if spec.previous is None:
        return Plan("rollback-cilium-lb", notes=("the spec has no 'previous' section: Cilium stays the load balancer",))
    changes = [Change("delete", "k8s-object", f"CiliumLoadBalancerIPPool {_md(p)['name']}",
                      data=KubeDelete(ObjectRef(p["apiVersion"], p["kind"], "", _md(p)["name"])))
               for p in f.cilium_pools if _cilium_pool_ours(spec, p)]
    changes += [Change("delete", "k8s-object", f"CiliumL2AnnouncementPolicy {_md(p)['name']}",
                       data=KubeDelete(ObjectRef(p["apiVersion"], p["kind"], "", _md(p)["name"])))
                for p in f.l2_policies]
    notes = ("deleted only once MetalLB holds every service's old IP",) if changes else ()
    if changes:  # first: MetalLB holds every old IP (a Service that does not exist is not waited for)
        held = WaitServiceIPs(tuple((f"{s.namespace}/{s.name}", s.old_ip) for s in spec.services if s.old_ip),
                              skip_absent=True)
        changes.insert(0, Change("action", "services", "LoadBalancer", "wait", data=held,
                                 reason="MetalLB holds every service's old IP before Cilium's pool and policy go"))
    return Plan("rollback-cilium-lb", tuple(changes), notes=notes)


def apply_cilium_lb(target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
    try:
        execute(target, plan.changes, progress, options.wait_timeout_s, step="rollback-cilium-lb")
    except WaitTimeoutError as e:
        raise StepError("rollback-cilium-lb", f"{e}; the Cilium pool and L2 policy are kept (run rollback-metallb "
                        "first and check MetalLB's events)") from e
