"""The twin's Argo CD application controller: Applications in namespace ``argocd`` synced from local
Git repositories into the emulator's store, with sync status, health, prune and self-heal.

Active once Argo CD is installed (a deployed ``argo-cd`` Helm release, or the Deployment
``argocd/argocd-application-controller``). Per ``argoproj.io/v1alpha1`` Application:

- **Sources.** A Git directory source (``spec.source.path``) is read with the ``git`` CLI at the
  commit ``targetRevision`` resolves to (``HEAD``/empty: the repository's HEAD; a branch, tag or
  sha) — committed content only, never the working tree, as Argo CD reads a remote. Only the files
  directly in ``path`` (``directory.recurse`` for sub-directories) named ``*.yaml``/``*.yml``/
  ``*.json``: a file renamed ``*.disabled`` is no longer part of the app. ``repoURL`` resolves to a
  local repository: ``file://`` URLs and absolute paths as they are; ``ctx.extra["argocd"]["repos"]
  [url]`` (registered by the twin's set-up); the lab spec's ``gitops.repo_url`` -> the twin's Git
  server, the bare repository ``<state_dir>/gitops-remote.git`` (what falkit pushed: Argo CD
  syncs the remote's revision, never a local checkout — argo-cd docs "Tracking and Deployment
  Strategies": a branch/tag/HEAD ``targetRevision`` is resolved on the repository server), else
  (older state dirs) the checkout ``<state_dir>/gitops``, else ``gitops.checkout``. A Helm chart source
  (``chart``) is rendered by the twin's chart stand-ins (:mod:`falkit.twin.lab.charts`) with
  ``helm.valuesObject``/``helm.values``; the rendered release (with the chart's ``notes``) is kept in
  ``ctx.extra["argocd"]["helm"][app]`` (:func:`chart_release`) — Argo CD runs ``helm template``, it
  makes no Helm release.
- **Tracking.** Every applied object gets ``argocd.argoproj.io/tracking-id:
  <app>:<group>/<kind>:<namespace>/<name>`` and no label (annotation tracking, the 3.x default —
  PROVENANCE.md "Facts for a simulator"). Namespaced objects without a namespace go to
  ``destination.namespace``; ``CreateNamespace=true`` creates it.
- **Comparison.** A resource is Synced when every field of its manifest holds on the live object
  and no field an earlier sync applied and the manifest dropped is still there (Argo CD's
  three-way diff: fields others add are not drift). Live objects tracked to the app but no longer
  in Git ``requiresPruning``.
- **Sync.** Automated (``syncPolicy.automated``): when Git's revision differs from the last synced
  one; with ``selfHeal: true`` also when live objects drifted, after ``SELF_HEAL_S`` lab seconds
  (scaled by the time factor); ``prune: true`` deletes resources gone from Git (a child Application
  pruned by its app-of-apps is deleted; only with the finalizer
  ``resources-finalizer.argocd.argoproj.io`` are its resources deleted too). A manual
  ``operation.sync`` (``argocd app sync``) syncs once and is cleared. Objects are server-side
  applied with field manager ``argocd-controller``; a kind the API does not serve fails the sync
  (``operationState.phase: Failed``, condition ``SyncError``).
- **Auto-sync races a pause.** Argo CD's application controller decides auto-sync on its
  informer's copy of the Application (argo-cd controller/appcontroller.go ``autoSync``: it tests
  ``app.Spec.SyncPolicy.IsAutomatedSyncEnabled()`` on the object it is processing), and
  ``SetAppOperation`` (util/argo/argo.go) re-reads the Application but checks only that no other
  ``operation`` is set — both at argoproj/argo-cd 37ee0097cf851bc2dd7665fc081bbce61a7e836e. So a
  self-heal decided on a copy from before someone turned the automated policy off still runs
  once after it. The twin's controller passes run on a snapshot of the Applications (a pass that
  began before a pause finishes with the old policy); the lab fault ``argocd_sync_race``
  (:mod:`.faults`) makes that one late sync deterministic for tests.
- **Health** (gitops-engine's checks): Deployment/StatefulSet ready replicas, DaemonSet pods ready
  (Degraded on ``ProgressDeadlineExceeded``), LoadBalancer Services with an ingress IP, PVCs Bound
  (Lost: Degraded), Pods; a missing resource is ``Missing``; the app takes the worst
  (Healthy < Suspended < Progressing < Missing < Degraded < Unknown). Child Applications count as
  Healthy (Argo CD >= 1.8 has no health check for the Application kind).
- **Status** (``status`` is not a subresource of this CRD): ``sync`` {status, revision,
  comparedTo}, ``health``, ``resources``, ``operationState``, ``conditions``, ``sourceType``,
  ``summary``, ``reconciledAt``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from falkit.twin.kube import ApiError
from falkit.twin.kube.objects import now_iso

from .charts import CHARTS, chart_key, repository
from .context import LabContext, Release
from .tracking import TRACKING_ANNOTATION, ObjectRef, tracking_id
from .watch import WATCHED, repo_stamp, watch_git

log = logging.getLogger(__name__)
MANAGER = "argocd-controller"
NS = "argocd"
APP = ("argoproj.io/v1alpha1", "Application")
FINALIZER = "resources-finalizer.argocd.argoproj.io"
SELF_HEAL_S = 5.0  # lab seconds between a drift and self-heal (Argo CD's self-heal timeout default)
SUFFIXES = (".yaml", ".yml", ".json")
HEALTH_ORDER = ("Healthy", "Suspended", "Progressing", "Missing", "Degraded", "Unknown")


class SourceError(Exception):
    """An Application's source cannot be read or rendered (a ComparisonError condition)."""


# ---------------------------------------------------------------------------------------------- sources


def _state(ctx: LabContext) -> dict:
    st = ctx.extra.setdefault("argocd", {})
    for k in ("repos", "synced", "applied", "helm"):
        st.setdefault(k, {})
    return st


def repo_path(ctx: LabContext, url: str) -> Path:
    """The local repository behind ``url`` (see the module docstring)."""
    if url.startswith("file://"):
        return Path(url[len("file://"):])
    if url.startswith("/"):
        return Path(url)
    repos = _state(ctx)["repos"]
    if url in repos:
        return Path(repos[url])
    g = getattr(ctx.spec, "gitops", None)
    if g is not None and url.rstrip("/") == g.repo_url.rstrip("/"):
        remote = ctx.state_dir / "gitops-remote.git"
        if (remote / "HEAD").exists():
            return remote  # the twin's Git server: what was pushed, never the checkout's working state
        own = ctx.state_dir / "gitops"
        return own if (own / ".git").exists() else Path(os.path.expanduser(g.checkout))
    raise SourceError(f"repository not accessible: {url}: the twin knows no local repository for this URL")


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SourceError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


_REVS: dict[tuple, str] = {}


def resolve_revision(repo: Path, revision: str | None) -> str:
    """The commit ``revision`` names; cached until the repository's refs change (a controller pass
    runs several times a second; a ``git rev-parse`` per Application per pass kept the idle twin
    busy)."""
    if not (repo / ".git").exists() and not (repo / "HEAD").exists():
        raise SourceError(f"repository not found: {repo}")
    rev = revision or "HEAD"
    WATCHED.add(repo)  # watch_git wakes the controllers when its refs change
    key = (str(repo), rev, repo_stamp(repo))
    if key in _REVS:
        return _REVS[key]
    try:
        sha = _git(repo, "rev-parse", f"{rev}^{{commit}}").strip()
    except SourceError:
        raise SourceError(f"unable to resolve '{rev}' to a commit SHA in {repo}") from None
    if len(_REVS) > 1000:
        _REVS.clear()
    _REVS[key] = sha
    return sha


_CACHE: dict[tuple, list[dict]] = {}


def read_directory(repo: Path, sha: str, path: str, recurse: bool = False) -> list[dict]:
    """The manifests of a directory source at commit ``sha`` (cached per commit)."""
    key = (str(repo), sha, path, recurse)
    if key not in _CACHE:
        prefix = path.strip("/")
        args = ["ls-tree", *(["-r"] if recurse else []), sha, "--", f"{prefix}/" if prefix else "."]
        out = []
        for line in _git(repo, *args).splitlines():
            meta, name = line.split("\t", 1)
            if meta.split()[1] != "blob" or not name.endswith(SUFFIXES):
                continue
            text = _git(repo, "show", f"{sha}:{name}")
            try:
                docs = list(json.loads(text) for _ in [0]) if name.endswith(".json") else list(yaml.safe_load_all(text))
            except (yaml.YAMLError, ValueError) as e:
                raise SourceError(f"{name}: {e}") from None
            out += [d for d in docs if isinstance(d, dict)]
        _CACHE[key] = out
    return copy.deepcopy(_CACHE[key])


def render_helm(ctx: LabContext, app: dict, source: dict) -> tuple[list[dict], str]:
    """``helm template`` of a chart source by the twin's chart stand-ins; ``(objects, version)``."""
    key = chart_key(source["chart"])
    # The chart must be served by the repository the Application names (the twin's table of
    # published chart repositories, falkit/twin/tools/chartrepos.py — the same the helm stand-in uses).
    served = repository(str(source.get("repoURL") or ""))
    if served is not None and source["chart"] not in served:
        raise SourceError(f"chart {source['chart']!r} not found in {source.get('repoURL')} (it serves "
                          f"{', '.join(sorted(served))})")
    if key not in CHARTS:
        raise SourceError(f"chart {source['chart']!r} not found in {source.get('repoURL')} (the twin knows "
                          f"{', '.join(sorted(CHARTS))})")
    helm = source.get("helm") or {}
    values = copy.deepcopy(helm.get("valuesObject") or yaml.safe_load(helm.get("values") or "") or {})
    dest = (app.get("spec") or {}).get("destination") or {}
    rel = Release(dest.get("namespace") or NS, helm.get("releaseName") or app["metadata"]["name"], source["chart"],
                  str(source.get("targetRevision") or "").lstrip("v"), values)
    issues = CHARTS[key].validate(rel)
    if issues:
        raise SourceError("helm template: " + "; ".join(f"{i['path'] or '(root)'}: {i['message']}" for i in issues))
    objs = CHARTS[key].render(ctx, rel)
    _state(ctx)["helm"][app["metadata"]["name"]] = asdict(rel)
    return objs, rel.version


def chart_release(ctx: LabContext, chart: str) -> Release | None:
    """The release an Application rendered for ``chart`` (its ``notes``), or None."""
    for data in _state(ctx)["helm"].values():
        if chart_key(data["chart"]) == chart_key(chart):
            return Release(**data)
    return None


def desired_objects(ctx: LabContext, app: dict) -> tuple[list[dict], str, str]:
    """``(objects, revision, source type)`` of an Application; :class:`SourceError` if unreadable."""
    spec = app.get("spec") or {}
    src = spec.get("source") or next(iter(spec.get("sources") or []), None)
    if not src:
        raise SourceError("application has no source")
    if src.get("chart"):
        objs, rev = render_helm(ctx, app, src)
        stype = "Helm"
    else:
        repo = repo_path(ctx, src.get("repoURL") or "")
        rev = resolve_revision(repo, src.get("targetRevision"))
        objs = read_directory(repo, rev, src.get("path") or "", bool((src.get("directory") or {}).get("recurse")))
        stype = "Directory"
    name = app["metadata"]["name"]
    dest_ns = (spec.get("destination") or {}).get("namespace") or ""
    out = []
    for o in objs:
        if not o.get("kind") or not (o.get("metadata") or {}).get("name"):
            continue
        md = o.setdefault("metadata", {})
        try:
            namespaced = ctx.store.resolve(o.get("apiVersion", ""), o["kind"]).namespaced
        except ApiError:
            namespaced = bool(md.get("namespace") or dest_ns)
        if namespaced and not md.get("namespace"):
            md["namespace"] = dest_ns
        if not namespaced:
            md.pop("namespace", None)
        md.setdefault("annotations", {})[TRACKING_ANNOTATION] = tracking_id(name, ObjectRef.of(o))
        out.append(o)
    return out, rev, stype


# ---------------------------------------------------------------------------------------------- diff


def _leaves(obj: Any, prefix: tuple = ()) -> list[tuple]:
    if isinstance(obj, dict) and obj:
        return [p for k, v in obj.items() for p in _leaves(v, (*prefix, k))]
    return [prefix]


def _lookup(obj: Any, path: tuple) -> tuple[bool, Any]:
    for k in path:
        if not isinstance(obj, dict) or k not in obj:
            return False, None
        obj = obj[k]
    return True, obj


def _subset(want: Any, live: Any) -> bool:
    if isinstance(want, dict):
        return isinstance(live, dict) and all(k in live and _subset(v, live[k]) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(live, list) and len(want) == len(live) and all(_subset(a, b) for a, b in zip(want, live, strict=True))
    if isinstance(want, int | float) and not isinstance(want, bool) and isinstance(live, str):
        return str(want) == live
    return want == live


def _body(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k != "status"}


def _key(obj: dict) -> str:
    md = obj.get("metadata") or {}
    return tracking_id("", ObjectRef.of(obj))[1:] if md else ""


def _removed(prev: list, desired: dict, live: dict) -> list[tuple]:
    """Paths an earlier sync applied that the manifest dropped but the live object still has."""
    now = {tuple(p) for p in _leaves(_body(desired))}
    return [tuple(p) for p in prev if tuple(p) not in now and _lookup(live, tuple(p))[0]]


# ---------------------------------------------------------------------------------------------- health


def health(obj: dict | None) -> str:
    if obj is None:
        return "Missing"
    kind, spec, st = obj.get("kind"), obj.get("spec") or {}, obj.get("status") or {}
    if kind in ("Deployment", "StatefulSet"):
        if any(c.get("reason") == "ProgressDeadlineExceeded" for c in st.get("conditions") or []):
            return "Degraded"
        want = spec.get("replicas", 1)
        ok = (st.get("readyReplicas") or 0) >= want and (st.get("observedGeneration") or 0) >= \
            (obj["metadata"].get("generation") or 0)
        return "Healthy" if ok else "Progressing"
    if kind == "DaemonSet":
        return "Healthy" if (st.get("numberReady") or 0) >= (st.get("desiredNumberScheduled") or 0) else "Progressing"
    if kind == "Service" and spec.get("type") == "LoadBalancer":
        return "Healthy" if (st.get("loadBalancer") or {}).get("ingress") else "Progressing"
    if kind == "PersistentVolumeClaim":
        return {"Bound": "Healthy", "Lost": "Degraded"}.get(st.get("phase"), "Progressing")
    if kind == "Pod":
        phase = st.get("phase")
        if phase == "Failed":
            return "Degraded"
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])
        return "Healthy" if phase == "Succeeded" or (phase == "Running" and ready) else "Progressing"
    return "Healthy"


def worst(states: list[str]) -> str:
    return max(states, key=HEALTH_ORDER.index) if states else "Healthy"


# ---------------------------------------------------------------------------------------------- reconcile


def active(ctx: LabContext) -> bool:
    if any(chart_key(r.chart) == "argo-cd" and r.status == "deployed" for r in ctx.releases.values()):
        return True
    return ctx.store.try_get("apps/v1", "Deployment", "argocd-application-controller", NS) is not None


def _items(ctx: LabContext, api_version: str, kind: str, namespace: str | None = None) -> list[dict]:
    try:
        return ctx.store.list(api_version, kind, namespace)["items"]
    except ApiError as e:
        if e.code == 404:
            return []
        raise


def _tracked(ctx: LabContext, app: str) -> list[dict]:
    """Live objects whose tracking id names ``app`` (the kinds an earlier sync applied)."""
    kinds = {tuple(k.split("|", 1)) for k in _state(ctx)["applied"].get(app, {}).get("_kinds", [])}
    out = []
    for api_version, kind in sorted(kinds):
        for o in _items(ctx, api_version, kind):
            tid = ((o["metadata"].get("annotations") or {}).get(TRACKING_ANNOTATION) or "")
            if tid.split(":", 1)[0] == app:
                out.append(o)
    return out


def _live(ctx: LabContext, o: dict) -> dict | None:
    md = o["metadata"]
    try:
        return ctx.store.try_get(o["apiVersion"], o["kind"], md["name"], md.get("namespace"))
    except ApiError:
        return None


def sync(ctx: LabContext, app: dict, desired: list[dict], prune_list: list[dict], revision: str) -> dict:
    """Apply ``desired``, delete ``prune_list``; returns ``operationState``."""
    name = app["metadata"]["name"]
    spec = app.get("spec") or {}
    opts = set((spec.get("syncPolicy") or {}).get("syncOptions") or [])
    state = _state(ctx)["applied"].setdefault(name, {})
    started = now_iso()
    results, errors = [], []
    dest_ns = (spec.get("destination") or {}).get("namespace")
    if "CreateNamespace=true" in opts and dest_ns and ctx.store.try_get("v1", "Namespace", dest_ns) is None:
        ctx.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": dest_ns}}, field_manager=MANAGER)
    for o in desired:
        md = o["metadata"]
        ref = ObjectRef.of(o)
        res = {"group": ref.group, "version": o["apiVersion"].rsplit("/", 1)[-1], "kind": o["kind"],
               "namespace": md.get("namespace") or "", "name": md["name"]}
        try:
            if o["kind"] == "CustomResourceDefinition":
                if ctx.store.try_get(o["apiVersion"], o["kind"], md["name"]) is None:
                    ctx.store.create(o, field_manager=MANAGER)
            else:
                live = _live(ctx, o)
                for path in _removed(state.get(_key(o), []), o, live or {}):
                    rm: dict = {}
                    cur = rm
                    for k in path[:-1]:
                        cur = cur.setdefault(k, {})
                    cur[path[-1]] = None
                    ctx.store.patch(o["apiVersion"], o["kind"], md["name"], rm, namespace=md.get("namespace"),
                                    patch_type="merge", field_manager=MANAGER)
                ctx.store.patch(o["apiVersion"], o["kind"], md["name"], _body(o), namespace=md.get("namespace"),
                                patch_type="apply", field_manager=MANAGER, force=True)
            state[_key(o)] = [list(p) for p in _leaves(_body(o))]
            kinds = set(state.get("_kinds", []))
            kinds.add(f"{o['apiVersion']}|{o['kind']}")
            state["_kinds"] = sorted(kinds)
            results.append({**res, "status": "Synced", "message": f"{o['kind'].lower()}/{md['name']} configured"})
        except ApiError as e:
            errors.append(f"{o['kind']} {md['name']}: {e.message if hasattr(e, 'message') else e}")
            results.append({**res, "status": "SyncFailed", "message": str(e)})
    for o in prune_list:
        md = o["metadata"]
        try:
            ctx.store.delete(o["apiVersion"], o["kind"], md["name"], md.get("namespace"))
            state.pop(_key(o), None)
            results.append({"group": ObjectRef.of(o).group, "version": o["apiVersion"].rsplit("/", 1)[-1],
                            "kind": o["kind"], "namespace": md.get("namespace") or "", "name": md["name"],
                            "status": "Pruned", "message": "pruned"})
        except ApiError as e:
            if e.code != 404:
                errors.append(f"prune {o['kind']} {md['name']}: {e}")
    _state(ctx)["synced"][name] = revision
    phase = "Failed" if errors else "Succeeded"
    return {"operation": {"sync": {"revision": revision}, "initiatedBy": {"automated": True}},
            "phase": phase, "message": "; ".join(errors) or "successfully synced (all tasks run)",
            "startedAt": started, "finishedAt": now_iso(),
            "syncResult": {"revision": revision, "resources": results}}


def _delete_app(ctx: LabContext, app: dict) -> None:
    """An Application being deleted: cascade when it carries the resources finalizer."""
    md = app["metadata"]
    fins = md.get("finalizers") or []
    if FINALIZER in fins:
        for o in _tracked(ctx, md["name"]):
            try:
                ctx.store.delete(o["apiVersion"], o["kind"], o["metadata"]["name"], o["metadata"].get("namespace"))
            except ApiError as e:
                if e.code != 404:
                    raise
        ctx.store.patch(*APP, md["name"], {"metadata": {"finalizers": [f for f in fins if f != FINALIZER]}},
                        namespace=NS, patch_type="merge", field_manager=MANAGER)
    _state(ctx)["applied"].pop(md["name"], None)
    _state(ctx)["synced"].pop(md["name"], None)


def reconcile_app(ctx: LabContext, app: dict) -> None:
    md = app["metadata"]
    name = md["name"]
    if md.get("deletionTimestamp"):
        _delete_app(ctx, app)
        return
    spec = app.get("spec") or {}
    policy = spec.get("syncPolicy") or {}
    auto = policy.get("automated")
    auto_on = auto is not None and auto.get("enabled", True) is not False
    raced = None  # the fault argocd_sync_race: auto-sync decided on the controller's copy from before a pause
    if not auto_on and name in ctx.faults.argocd_sync_race:
        auto = raced = ctx.faults.argocd_sync_race[name]
        auto_on = True
    old = app.get("status") or {}
    status: dict[str, Any] = {"sync": {"status": "Unknown", "comparedTo": {
        "source": spec.get("source") or {"repoURL": ""}, "destination": spec.get("destination") or {}}},
        "health": {"status": "Unknown"}, "reconciledAt": old.get("reconciledAt") or now_iso()}
    if old.get("operationState"):
        status["operationState"] = old["operationState"]
    try:
        desired, revision, stype = desired_objects(ctx, app)
    except SourceError as e:
        status["conditions"] = [{"type": "ComparisonError", "message": str(e), "lastTransitionTime": now_iso()}]
        _write(ctx, app, status)
        return
    status["sourceType"] = stype
    status["sync"]["revision"] = revision
    applied = _state(ctx)["applied"].get(name, {})
    keys = {_key(o) for o in desired}
    prune_list = [o for o in _tracked(ctx, name) if _key(o) not in keys]
    drift = []
    for o in desired:
        live = _live(ctx, o)
        if live is None or not _subset(_body(o), live) or _removed(applied.get(_key(o), []), o, live):
            drift.append(o)
    out_of_sync = bool(drift) or bool(prune_list and (not auto_on or auto.get("prune")))
    manual = (app.get("operation") or {}).get("sync") is not None
    do_sync = manual
    heal_key = f"argocd:heal:{name}"
    if auto_on and out_of_sync:
        if _state(ctx)["synced"].get(name) != revision:
            do_sync = True
        elif auto.get("selfHeal") and ctx.due(heal_key, SELF_HEAL_S):
            do_sync = True
    if not out_of_sync:
        ctx.forget(heal_key)
    if do_sync:
        prunes = prune_list if (manual or auto.get("prune")) else []
        status["operationState"] = sync(ctx, app, desired, prunes, revision)
        ctx.forget(heal_key)
        if raced is not None and not manual:
            ctx.faults.argocd_sync_race.pop(name, None)  # the cached copy caught up with the pause
            log.info("argocd: %s synced by automated policy %s of a copy from before its pause (fault argocd_sync_race)",
                     name, raced)
        if manual:
            ctx.store.patch(*APP, name, {"operation": None}, namespace=NS, patch_type="merge", field_manager=MANAGER)
        prune_list = [o for o in prune_list if o not in prunes]
        drift = [o for o in desired if (lv := _live(ctx, o)) is None or not _subset(_body(o), lv)]
    resources, healths = [], []
    failed = {(r["kind"], r["name"]) for r in (status.get("operationState") or {}).get("syncResult", {}).get("resources", [])
              if r.get("status") == "SyncFailed"}
    for o in desired:
        live = _live(ctx, o)
        h = health(live)
        healths.append(h)
        ref = ObjectRef.of(o)
        resources.append({"group": ref.group, "version": o["apiVersion"].rsplit("/", 1)[-1], "kind": o["kind"],
                          "namespace": o["metadata"].get("namespace") or "", "name": o["metadata"]["name"],
                          "status": "OutOfSync" if o in drift else "Synced", "health": {"status": h}})
    for o in prune_list:
        ref = ObjectRef.of(o)
        resources.append({"group": ref.group, "version": o["apiVersion"].rsplit("/", 1)[-1], "kind": o["kind"],
                          "namespace": o["metadata"].get("namespace") or "", "name": o["metadata"]["name"],
                          "status": "OutOfSync", "requiresPruning": True, "health": {"status": health(o)}})
    status["resources"] = resources
    status["sync"]["status"] = "OutOfSync" if (drift or prune_list) else "Synced"
    status["health"] = {"status": worst(healths)}
    if failed:
        status["conditions"] = [{"type": "SyncError", "message": status["operationState"]["message"],
                                 "lastTransitionTime": now_iso()}]
    status["summary"] = {"images": sorted({c.get("image") for o in desired for c in
                                           (((o.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers", [])
                                           if c.get("image")})}
    _write(ctx, app, status)


def _write(ctx: LabContext, app: dict, status: dict) -> None:
    old = dict(app.get("status") or {})
    if {k: v for k, v in old.items() if k != "reconciledAt"} == {k: v for k, v in status.items() if k != "reconciledAt"}:
        return
    status["reconciledAt"] = now_iso()
    try:
        ctx.store.patch(*APP, app["metadata"]["name"], [{"op": "add", "path": "/status", "value": status}],
                        namespace=NS, patch_type="json", field_manager=MANAGER)
    except ApiError as e:
        if e.code != 404:
            raise


def reconcile(ctx: LabContext) -> None:
    """One pass over every Application (when Argo CD is installed)."""
    if not active(ctx):
        return
    for app in _items(ctx, *APP, NS):
        try:
            reconcile_app(ctx, app)
        except Exception:  # noqa: BLE001 - one broken app must not stop the others
            log.exception("argocd: reconcile of %s failed", app["metadata"]["name"])


async def run(ctx: LabContext) -> None:
    """The controller loop: a pass on every store change and deadline (self-heal), and when a
    watched repository's refs change (:mod:`.watch`: a pushed commit is picked up within
    ``watch.GIT_POLL_S``, as a webhook-triggered refresh would)."""
    async def loop() -> None:
        while True:  # pragma: no cover - loop shell; reconcile() is what tests drive
            try:
                await asyncio.to_thread(reconcile, ctx)
            except Exception:  # noqa: BLE001 - a controller never dies
                log.exception("argocd reconcile failed")
            await ctx.wait_change()

    await asyncio.gather(loop(), watch_git(ctx))
