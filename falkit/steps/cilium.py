"""Step 40-cilium: Cilium with kube-proxy replacement and L2 announcements replaces MetalLB.

The seed: "Load Balancer Migration: MetalLB -> Cilium" — Cilium L2 announcements, a
``CiliumLoadBalancerIPPool`` 10.10.0.50-99, an L2 announcement policy, external IPs; Traefik pinned
to 10.10.0.80, Argo CD from the pool; MetalLB's release, pool, L2 advertisements and annotations
removed.

- **observe**: the Cilium and MetalLB Helm releases (``target.helm``), the pool and policy, each
  spec service (annotations, ``status.loadBalancer.ingress``), MetalLB's ``IPAddressPool`` /
  ``L2Advertisement`` objects.
- **plan** (pure): ``helm upgrade --install`` when chart version or values differ
  (:mod:`falkit.render.ciliumvalues`, validated against the chart schema); pools/policy applied when absent
  or different (``lb-pool`` without the pinned addresses, one pool per pinned address that only its
  service can draw from: :func:`falkit.render.ciliumvalues.lb_pools`), a falkit pool the spec no longer
  has deleted (disruptive); per service the annotation changes (Cilium's ``lbipam.cilium.io/ips`` for pinned
  ones, MetalLB's removed) — **disruptive**, the service's address changes for its clients; then a
  wait until every LoadBalancer service has its planned IP, and only after it MetalLB's
  L2Advertisements, IPAddressPools and release deleted, each a change of its own.
- **apply** runs them in that order; a wait that times out raises StepError before anything of
  MetalLB is removed. Kubernetes objects are changed only through :class:`falkit.clients.kube.KubeChanger`.
- **checks**: a row per service — old IP -> new IP and the node announcing it (the holder of Lease
  ``cilium-l2announce-<ns>-<svc>`` in kube-system).

Services the spec marks ``disabled`` (Longhorn UI) are left alone here: they go with Longhorn.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..clients.backends import BackendError
from ..clients.kube import WaitTimeoutError, kget, klist
from ..model.design import design_of
from ..model.errors import StepError
from ..model.spec import LabSpec
from ..plan.diff import Change, Noop, Plan
from ..plan.payloads import HelmRelease, HelmUninstall, KubeAnnotate, KubeApply, KubeDelete, WaitServiceIPs
from ..render import ciliumvalues as cv
from ..render.gitops import Checkout, ObjectRef
from . import executors, ownership
from .base import Check, Progress, StepOptions, register
from .executors import execute

METALLB = ("metallb-system", "metallb")


@dataclass(frozen=True)
class ServiceFacts:
    namespace: str
    name: str
    exists: bool
    annotations: dict[str, str]
    ips: tuple[str, ...]


@dataclass(frozen=True)
class CiliumFacts:
    release: dict[str, Any] | None
    pools: dict[str, dict[str, Any]]  # name -> falkit's CiliumLoadBalancerIPPools (labelled, or named lb-pool)
    policy: dict[str, Any] | None
    services: dict[str, ServiceFacts]  # "ns/name" ->
    metallb_release: dict[str, Any] | None
    metallb_objects: tuple[tuple[str, str, str, str], ...]  # (apiVersion, kind, ns, name)
    # Services Argo CD manages: the change made in the GitOps checkout instead (issue 9), planned
    # while observing because it reads the checkout; None when Git and the cluster already agree.
    git_changes: dict[str, Change | None] = field(default_factory=dict)


def _service(api: Any, ns: str, name: str) -> ServiceFacts:
    obj = kget(api, "v1", "Service", name, ns)
    if obj is None:
        return ServiceFacts(ns, name, False, {}, ())
    ann = dict((obj.get("metadata") or {}).get("annotations") or {})
    ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return ServiceFacts(ns, name, True, ann, tuple(i["ip"] for i in ingress if i.get("ip")))


def _git_changes(target: Any, spec: LabSpec, services: dict[str, ServiceFacts]) -> dict[str, Change | None]:
    """For each Service an Argo CD Application manages, the change in Git that sets its annotations
    (a direct patch would be reverted by self-heal)."""
    apps = {a["metadata"]["name"] for a in klist(target.kube(), "argoproj.io/v1alpha1", "Application", "argocd")}
    managed = {k: s for k, s in services.items() if s.exists and ownership.managed_by(
        {"metadata": {"annotations": s.annotations}}, apps) is not None}
    if not managed:
        return {}
    checkout = Checkout.for_target(target)
    out: dict[str, Change | None] = {}
    for key, svc in managed.items():
        ref = ObjectRef("v1", "Service", svc.namespace, svc.name)
        obj = {"metadata": {"name": svc.name, "namespace": svc.namespace, "annotations": svc.annotations}}
        out[key] = ownership.plan_object_change(ref, obj, {"metadata": {"annotations": cv.service_annotations(spec, svc.namespace, svc.name)}},
                                                checkout, applications=apps, reason="Cilium LB-IPAM instead of MetalLB")
    return out


def observe_cilium(target: Any, spec: LabSpec) -> CiliumFacts:
    api = target.kube()
    pool_api, policy = cv.cilium_api(spec.versions.cilium)["pool"], cv.l2_policy(spec)
    services = {f"{s.namespace}/{s.name}": _service(api, s.namespace, s.name) for s in spec.services if s.new_ip != "disabled"}
    mlb = []
    for kind in ("L2Advertisement", "IPAddressPool"):
        for o in klist(api, "metallb.io/v1beta1", kind, METALLB[0]):
            mlb.append(("metallb.io/v1beta1", kind, o["metadata"].get("namespace", METALLB[0]), o["metadata"]["name"]))
    return CiliumFacts(
        target.helm.get(*cv.RELEASE),
        {p["metadata"]["name"]: p for p in klist(api, pool_api, "CiliumLoadBalancerIPPool")
         if p["metadata"]["name"] == cv.POOL_NAME or ((p["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by")
                                                     == cv.MANAGED_BY["app.kubernetes.io/managed-by"])},
        kget(api, policy["apiVersion"], policy["kind"], policy["metadata"]["name"]),
        services, target.helm.get(*METALLB), tuple(mlb), _git_changes(target, spec, services))


def _differs(have: dict | None, want: dict) -> bool:
    """True unless ``have`` holds every field of ``want``'s spec (the API server adds defaults,
    e.g. a pool's ``disabled: false``, which are not a difference)."""
    return have is None or not ownership.matches(have, {"spec": want["spec"]})


def planned_ips(spec: LabSpec) -> dict[str, tuple[str | None, str]]:
    """``ns/name`` -> (old IP, what it should get: an IP, or "pool" for auto)."""
    return {f"{s.namespace}/{s.name}": (s.old_ip, s.requested if s.requested not in ("auto",) else "pool")
            for s in design_of(spec).services if s.requested != "disabled"}


def ip_ok(spec: LabSpec, want: str, ips: tuple[str, ...]) -> bool:
    return executors.ip_ok(design_of(spec).lb_pool, want, ips)


def plan_cilium(spec: LabSpec, facts: CiliumFacts, options: StepOptions) -> Plan:
    values = cv.check_values(spec)
    changes: list[Change] = []
    noops: list[Noop] = []
    notes: list[str] = []
    rel = facts.release
    version = spec.versions.cilium
    if rel is None or rel.get("version") != version or rel.get("values") != values or rel.get("status") != "deployed":
        what = "install" if rel is None else ", ".join(
            x for x, bad in (("version", rel.get("version") != version), ("values", rel.get("values") != values),
                             ("status", rel.get("status") != "deployed")) if bad)
        changes.append(Change("update" if rel else "create", "helm-release", "kube-system/cilium", what,
                              rel.get("version") if rel else None, version,
                              reason="kubeProxyReplacement, L2 announcements, external IPs, rate limit "
                                     f"{values['k8sClientRateLimit']['qps']}/{values['k8sClientRateLimit']['burst']}",
                              data=HelmRelease(*cv.RELEASE, cv.CHART, version, values, rel.get("values") if rel else None)))
    else:
        noops.append(Noop("helm-release", "kube-system/cilium", f"{version} with the planned values"))
    pools = cv.lb_pools(spec)
    for obj in (*pools, cv.l2_policy(spec)):
        name = obj["metadata"]["name"]
        have = facts.pools.get(name) if obj["kind"] == "CiliumLoadBalancerIPPool" else facts.policy
        if _differs(have, obj):
            why = "only for " + "/".join(obj["spec"]["serviceSelector"]["matchLabels"].values()) \
                if obj["spec"].get("serviceSelector") else obj["apiVersion"]
            changes.append(Change("update" if have else "create", "k8s-object", f"{obj['kind']}/{name}", "spec",
                                  (have or {}).get("spec"), obj["spec"], reason=why, data=KubeApply(obj)))
        else:
            noops.append(Noop("k8s-object", f"{obj['kind']}/{name}", "as planned"))
    wanted = {p["metadata"]["name"] for p in pools}
    for name in sorted(facts.pools):
        if name not in wanted:  # e.g. a service no longer pinned: its address returns to lb-pool
            changes.append(Change("delete", "k8s-object", f"CiliumLoadBalancerIPPool/{name}", disruptive=True,
                                  reason="falkit's pool the spec no longer has: services holding its addresses lose them",
                                  data=KubeDelete(ObjectRef(cv.cilium_api(spec.versions.cilium)["pool"], "CiliumLoadBalancerIPPool", "", name))))
    plan_ips = planned_ips(spec)
    waits = False
    for key, svc in facts.services.items():
        if not svc.exists:
            notes.append(f"service {key} does not exist yet: it gets its address when it is deployed")
            continue
        want = cv.service_annotations(spec, svc.namespace, svc.name)
        delta = {k: v for k, v in want.items() if svc.annotations.get(k) != v}
        old, target_ip = plan_ips[key]
        if key in facts.git_changes:
            git = facts.git_changes[key]
            if git is not None:
                changes.append(replace(git, disruptive=True))
            delta = {} if git is None else delta
        elif delta:
            changes.append(Change("update", "service", key, "annotations", ", ".join(f"{k}={svc.annotations[k]}" for k in delta
                                                                                    if k in svc.annotations) or None,
                                  ", ".join(f"{k}={v}" for k, v in delta.items() if v is not None) or "(MetalLB's removed)",
                                  disruptive=True, reason=f"{', '.join(svc.ips) or old or '-'} -> {target_ip}: clients and DNS must follow",
                                  data=KubeAnnotate(ObjectRef("v1", "Service", svc.namespace, svc.name), delta)))
        if delta or not ip_ok(spec, target_ip, svc.ips):
            waits = True
    if waits or any(c.kind in ("helm-release", "k8s-object") for c in changes):
        changes.append(Change("action", "services", "LoadBalancer", "wait",
                              reason="every LoadBalancer service has its new IP before MetalLB goes",
                              data=WaitServiceIPs(tuple((k, v[1]) for k, v in plan_ips.items()
                                                        if k in facts.services and facts.services[k].exists),
                                                  (spec.cilium.lb_pool.start, spec.cilium.lb_pool.stop))))
    for api, kind, ns, name in facts.metallb_objects:
        changes.append(Change("delete", "k8s-object", f"{ns}/{kind}/{name}", reason="MetalLB, replaced by Cilium LB-IPAM",
                              data=KubeDelete(ObjectRef(api, kind, ns or "", name))))
    if facts.metallb_release is not None:
        changes.append(Change("delete", "helm-release", "/".join(METALLB), reason="MetalLB, replaced by Cilium LB-IPAM",
                              data=HelmUninstall(*METALLB)))
    return Plan("cilium", tuple(changes), tuple(noops), tuple(notes))


@register("cilium")
class CiliumStep:
    title = "Cilium LB-IPAM and L2 announcements instead of MetalLB"

    def observe(self, target: Any, spec: LabSpec, options: StepOptions) -> CiliumFacts:
        return observe_cilium(target, spec)

    def plan(self, spec: LabSpec, observed: CiliumFacts, options: StepOptions) -> Plan:
        return plan_cilium(spec, observed, options)

    def apply(self, target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
        try:
            execute(target, plan.changes, progress, options.wait_timeout_s)
        except (BackendError, WaitTimeoutError) as e:
            raise StepError("cilium", str(e) + (f" (last: {e.last})" if getattr(e, "last", None) else "")) from e

    def checks(self, target: Any, spec: LabSpec, options: StepOptions) -> list[Check]:
        api = target.kube()
        out = []
        for key, (old, want) in planned_ips(spec).items():
            ns, name = key.split("/", 1)
            svc = _service(api, ns, name)
            if not svc.exists:  # a new lab: its app deploys it later (Argo CD); 70-validation checks its address
                out.append(Check("LoadBalancer IP announced", key, f"{old or '-'} -> {want}",
                                 "Service not deployed yet: it gets its address when its app deploys it", True))
                continue
            lease = kget(api, "coordination.k8s.io/v1", "Lease", f"cilium-l2announce-{ns}-{name}", "kube-system")
            holder = ((lease or {}).get("spec") or {}).get("holderIdentity") or "nobody"
            ok = svc.exists and ip_ok(spec, want, svc.ips) and holder != "nobody"
            out.append(Check("LoadBalancer IP announced", key, f"{old or '-'} -> {want}",
                             f"{', '.join(svc.ips) or 'no IP'} announced by {holder}", ok,
                             "" if ok else "check the pool, the L2 policy and `kubectl -n kube-system get leases`"))
        rel = target.helm.get(*METALLB)
        out.append(Check("MetalLB removed", "/".join(METALLB), "absent", "absent" if rel is None else f"release {rel.get('status')}",
                         rel is None, "re-run 40-cilium with apply"))
        return out
