"""Step 45-argocd: Argo CD installed or upgraded, exposed through the Cilium pool, the operator's
GitOps repository registered, the platform Applications created and waited for (Synced/Healthy).

- **observe** (read-only): the Helm release ``argocd/argocd``, the ``argocd-server`` Service, the
  repository Secret, every Application in ``argocd`` and the Application files of the GitOps
  checkout (:meth:`falkit.render.gitops.Checkout.for_target`; on the twin its own fixture repository).
- **plan** (pure, :func:`plan_argocd`):

  * the ``argo-cd`` chart (from https://argoproj.github.io/argo-helm, version option ``argocd_chart_version``) with
    ``global.image.tag: v<spec.versions.argocd>`` and ``server.service.type: LoadBalancer``; the
    seed gives Argo CD an "Auto" address from the Cilium pool, so no IP annotation unless the spec
    pins one (then ``lbipam.cilium.io/ips`` — docs/FACTS.md, Cilium);
  * the repository Secret ``repo-gitops`` (label ``argocd.argoproj.io/secret-type: repository``,
    ``url`` = ``spec.gitops.repo_url``). Credentials are a reference (``spec.gitops.credentials``):
    the plan shows where they come from, never the value; apply reads it then;
  * the app-of-apps ``platform`` (:func:`falkit.render.gitops.platform_application`) over
    ``spec.gitops.platform_path``; its children come from Git, so falkit creates no other
    Application (they are the repository's).
- **apply**: ``helm upgrade --install``, the Secret and the Application (server-side apply, field
  manager ``falkit``), then waits until ``argocd-server`` has its LoadBalancer IP and every
  Application (``platform`` and the children its files declare) is Synced and Healthy — one live
  progress line per Application.
- **checks**: release deployed, ``argocd-server`` IP (the planned one when pinned, else in the pool),
  repository registered, each Application Synced/Healthy.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any

from ..clients.kube import WaitReporter, WaitTimeoutError, kget, klist, wait_for
from ..model.design import design_of
from ..model.errors import StepError
from ..model.spec import LabSpec
from ..plan.diff import Change, Noop, Plan
from ..plan.payloads import ArgoRepository, HelmRelease, KubeApply, SecretSource, WaitArgoCD
from ..render.gitops import Checkout, GitOpsError, platform_application
from .base import Check, Progress, StepOptions, register
from .executors import Apply, execute, executes
from .ownership import APPLICATION, _app_name, app_status

STEP = "argocd"
NS = "argocd"
RELEASE = "argocd"
CHART = "argo-cd"  # from https://argoproj.github.io/argo-helm (falkit.clients.backends.helm.CHART_REPOSITORIES)
CHART_VERSION = "9.1.0"  # DEFAULT (not in the seed): an argo-cd chart of the 3.x line; the image tag is the spec's
REPO_SECRET = "repo-gitops"
REPO_LABEL = ("argocd.argoproj.io/secret-type", "repository")
CILIUM_IPS = "lbipam.cilium.io/ips"


@dataclass(frozen=True)
class ArgoFacts:
    release: dict | None
    server: dict | None
    repo_secret: dict | None
    applications: dict[str, dict] = field(default_factory=dict)
    git_apps: tuple[str, ...] = ()  # children declared by the checkout's *-app.yaml files
    checkout_error: str = ""
    retiring: tuple[str, ...] = ()  # Applications the migration disables later (not waited for Healthy)


def helm_values(spec: LabSpec) -> dict[str, Any]:
    svc = next((s for s in spec.services if s.name == "argocd-server"), None)
    service: dict[str, Any] = {"type": "LoadBalancer"}
    if svc is not None and svc.new_ip not in ("auto", "disabled"):
        service["annotations"] = {CILIUM_IPS: svc.new_ip}
    return {"global": {"image": {"tag": f"v{spec.versions.argocd}"}}, "server": {"service": service}}


def repo_secret(spec: LabSpec, password: str | None = None) -> dict[str, Any]:
    """The repository Secret; ``password`` only at apply time (never in a plan)."""
    g = spec.gitops
    data = {"type": "git", "url": g.repo_url, "name": "gitops"}
    if password is not None:
        data["password"] = password
        data["username"] = "git"
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": REPO_SECRET, "namespace": NS, "labels": {REPO_LABEL[0]: REPO_LABEL[1]},
                         "annotations": {"managed-by": "falkit"}},
            "stringData": data}


def plan_argocd(spec: LabSpec, facts: ArgoFacts, options: StepOptions) -> Plan:
    """Pure: the changes that bring Argo CD to the spec (see the module docstring)."""
    changes: list[Change] = []
    noops: list[Noop] = []
    notes: list[str] = []
    version = options.extra.get("argocd_chart_version") or CHART_VERSION
    values = helm_values(spec)
    rel = facts.release
    if rel is None:
        changes.append(Change("create", "helm-release", f"{NS}/{RELEASE}", new=f"{CHART} {version}",
                              data=HelmRelease(NS, RELEASE, CHART, version, values, diff=False)))
    elif rel.get("version") != version or rel.get("values") != values or rel.get("status") != "deployed":
        changes.append(Change("update", "helm-release", f"{NS}/{RELEASE}", "values/version",
                              f"{rel.get('version')} {rel.get('values')}", f"{version} {values}",
                              data=HelmRelease(NS, RELEASE, CHART, version, values, rel.get("values"))))
    else:
        noops.append(Noop("helm-release", f"{NS}/{RELEASE}", f"{CHART} {version} deployed"))
    wait = Change("action", "argocd", f"{NS}/argocd-server", "wait",
                  reason="argocd-server gets its LoadBalancer IP" + ("" if spec.gitops is None else
                                                                      "; the Applications are Synced/Healthy"),
                  data=WaitArgoCD(f"{NS}/argocd-server", () if spec.gitops is None else ("platform", *facts.git_apps),
                                  facts.retiring))
    if spec.gitops is None:
        notes.append("no gitops section in the spec: no repository registered, no platform Application")
        return Plan(STEP, (*changes, wait) if changes else (), tuple(noops), tuple(notes))
    cred = spec.gitops.credentials
    sec = facts.repo_secret
    if sec is None or _secret_url(sec) != spec.gitops.repo_url:
        changes.append(Change("create" if sec is None else "update", "k8s-object", f"{NS}/{REPO_SECRET}", "url",
                              _secret_url(sec) if sec else None, spec.gitops.repo_url,
                              reason=f"credentials from {cred.describe()}" if cred else "no credentials (public repo)",
                              data=ArgoRepository(repo_secret(spec), SecretSource(cred.env, cred.file) if cred else None)))
    else:
        noops.append(Noop("k8s-object", f"{NS}/{REPO_SECRET}", f"repository {spec.gitops.repo_url} registered"))
    want = platform_application(spec.gitops)
    have = facts.applications.get("platform")
    if have is None or have.get("spec", {}).get("source") != want["spec"]["source"]:
        changes.append(Change("create" if have is None else "update", "argocd-application", f"{NS}/platform",
                              "spec.source", (have or {}).get("spec", {}).get("source"), want["spec"]["source"],
                              data=KubeApply(want)))
    else:
        noops.append(Noop("argocd-application", f"{NS}/platform", "app-of-apps present"))
    if facts.checkout_error:
        notes.append(f"GitOps checkout: {facts.checkout_error}")
    if facts.git_apps:
        notes.append(f"platform Applications from Git: {', '.join(facts.git_apps)}")
    return Plan(STEP, (*changes, wait) if changes else (), tuple(noops), tuple(notes))


def _secret_url(sec: dict) -> str | None:
    data = sec.get("data") or {}
    if "url" in data:
        return base64.b64decode(data["url"]).decode()
    return (sec.get("stringData") or {}).get("url")


def observe_argocd(target: Any, spec: LabSpec, options: StepOptions) -> ArgoFacts:
    api = target.kube()
    apps = {a["metadata"]["name"]: a for a in klist(api, *APPLICATION, NS)}
    git_apps: tuple[str, ...] = ()
    err = ""
    if spec.gitops is not None:
        try:
            co = Checkout.for_target(target)
            if not co.root.is_dir():
                err = f"{co.root} does not exist (clone {spec.gitops.repo_url} there)"
            else:
                git_apps = tuple(d.obj["metadata"]["name"] for d in co.applications())
        except GitOpsError as e:
            err = str(e)
    return ArgoFacts(release=target.helm.get(NS, RELEASE), server=kget(api, "v1", "Service", "argocd-server", NS),
                     repo_secret=kget(api, "v1", "Secret", REPO_SECRET, NS), applications=apps, git_apps=git_apps,
                     checkout_error=err, retiring=tuple(sorted(_retiring(target, spec))))


def _lb_ip(svc: dict | None) -> str | None:
    ing = (((svc or {}).get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return ing[0].get("ip") if ing else None


def app_rows(api: Any) -> list[dict[str, Any]]:
    """One row per Application: name, sync, health, revision, resources (the live table)."""
    rows = []
    for a in klist(api, *APPLICATION, NS):
        sync, health, rev = app_status(a)
        res = (a.get("status") or {}).get("resources") or []
        cond = "; ".join(c.get("message", "") for c in (a.get("status") or {}).get("conditions") or [])
        rows.append({"application": a["metadata"]["name"], "sync": sync, "health": health, "revision": rev[:10],
                     "resources": len(res), "message": cond})
    return rows


@executes(ArgoRepository)
def _register_repository(c: Change, ctx: Apply) -> None:
    d: ArgoRepository = c.data
    obj = d.object
    if d.credentials is not None:
        password = d.credentials.resolve()
        if not password:
            raise StepError(STEP, f"the GitOps credentials are not set: {d.credentials.describe()} (spec.gitops.credentials)")
        obj = {**obj, "stringData": {**obj.get("stringData", {}), "password": password, "username": "git"}}
    ctx.progress.log(f"register repository {obj.get('stringData', {}).get('url')}")
    ctx.changer.apply(obj)


@executes(WaitArgoCD)
def _wait_argocd(c: Change, ctx: Apply) -> None:
    """argocd-server's LoadBalancer IP, then every Application Synced and Healthy (one live line each)."""

    d: WaitArgoCD = c.data
    api = ctx.target.kube()
    ns, name = d.server.split("/", 1)
    what = f"{name} LoadBalancer IP"
    try:
        wait_for(lambda: _lb_ip(kget(api, "v1", "Service", name, ns)), bool, ctx.timeout, what, ctx.progress.task(what))
    except WaitTimeoutError as e:
        raise StepError(STEP, str(e)) from None
    for n in sorted(set(d.retiring) & set(d.applications)):
        ctx.progress.log(f"application {n}: not waited for Healthy — Longhorn is disabled by 50-mayastor once its "
                         "volumes are moved (its UI LoadBalancer lost its MetalLB address in 40-cilium)")
    names = [n for n in d.applications if n not in d.retiring]
    if not names:
        return
    bars = {n: ctx.progress.task(f"application {n}") for n in names}
    deadline = time.monotonic() + ctx.timeout
    start = time.monotonic()
    report = WaitReporter("Argo CD Applications to be Synced/Healthy", ctx.timeout)
    while True:
        rows = {r["application"]: r for r in app_rows(api)}
        pending = []
        for n in names:
            r = rows.get(n)
            ok = r is not None and r["sync"] == "Synced" and r["health"] == "Healthy"
            msg = "missing" if r is None else f"{r['sync']}/{r['health']}" + (f" {r['message']}" if r["message"] else "")
            bars[n](1.0 if ok else min(0.99, (time.monotonic() - start) / ctx.timeout), msg)
            if not ok:
                pending.append(f"{n} ({msg})")
        if not pending:
            return
        report(", ".join(pending))
        if time.monotonic() > deadline:
            raise StepError(STEP, f"Applications not Synced/Healthy after {ctx.timeout:g} s: " + ", ".join(pending))
        time.sleep(0.2)


@register(STEP)
class ArgoCdStep:
    title = "Argo CD: install, expose, register the GitOps repository, platform Applications"
    options = {"argocd_chart_version": (str, CHART_VERSION)}

    def observe(self, target: Any, spec: LabSpec, options: StepOptions) -> ArgoFacts:
        return observe_argocd(target, spec, options)

    def plan(self, spec: LabSpec, observed: ArgoFacts, options: StepOptions) -> Plan:
        return plan_argocd(spec, observed, options)

    def apply(self, target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
        execute(target, plan.changes, progress, options.wait_timeout_s, step=STEP)

    def checks(self, target: Any, spec: LabSpec, options: StepOptions) -> list[Check]:
        facts = observe_argocd(target, spec, options)
        api = target.kube()
        out = []
        rel = facts.release
        out.append(Check("Argo CD release", f"{NS}/{RELEASE}", "deployed", (rel or {}).get("status", "absent"),
                         bool(rel and rel.get("status") == "deployed"), "run 45-argocd with apply=True"))
        design = design_of(spec)
        planned = next((s.ip for s in design.services if s.name == "argocd-server"), None)
        ip = _lb_ip(facts.server)
        svc = next((s for s in spec.services if s.name == "argocd-server"), None)
        pinned = svc is not None and svc.new_ip not in ("auto", "disabled")
        ok = ip is not None and (ip == planned if pinned else design.in_lb_pool(ip))
        out.append(Check("argocd-server IP", f"{NS}/argocd-server", planned if pinned else f"auto from {design.lb_pool_text}",
                         ip or "none", ok, "check the Cilium pool and L2 policy (40-cilium)"))
        if spec.gitops is None:
            return out
        out.append(Check("GitOps repository registered", spec.gitops.repo_url, "repository Secret",
                         "present" if facts.repo_secret else "absent", facts.repo_secret is not None))
        retiring = _retiring(target, spec)
        for r in app_rows(api):
            if r["application"] in retiring:
                out.append(Check("Application (retiring)", r["application"], "Synced (disabled by 50-mayastor)",
                                 f"{r['sync']}/{r['health']}", r["sync"] == "Synced", r["message"]))
                continue
            out.append(Check("Application", r["application"], "Synced/Healthy", f"{r['sync']}/{r['health']}",
                             r["sync"] == "Synced" and r["health"] == "Healthy", r["message"]))
        return out


def _retiring(target: Any, spec: LabSpec) -> set[str]:
    """Applications the migration disables (Longhorn's, from ``spec.gitops.longhorn_files``)."""
    if spec.gitops is None:
        return set()
    try:
        co = Checkout.for_target(target)
    except (GitOpsError, OSError):
        return set()
    out = set()
    for f in spec.gitops.longhorn_files:
        rel = f"{spec.gitops.platform_path}/{f}"
        if co.exists(rel):
            name = _app_name(co.read(rel))
            if name:
                out.add(name)
    return out

