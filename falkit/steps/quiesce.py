"""Quiescing workloads for a consistent copy: their Argo CD sync paused, scaled to 0, and back.

Used by the volume moves (``volumes``, ``rollback-volumes``) and Plex's library copy (``plex``).

- **Argo CD.** Self-heal would scale a workload falkit scaled to 0 back up (and point it back at
  the old claim): :func:`pause_sync` turns the automated policy of its Application — and of the
  app-of-apps above it, whose self-heal would restore the child's policy (:func:`argocd_apps`) —
  off and keeps it in ``falkit.io/paused-automated-sync``; :func:`resume_sync` gives it back.
- **A sync decided before the pause** can still land after it (docs/FACTS.md "Argo CD"):
  :func:`scale_down` re-checks ``spec.replicas`` while it waits and scales down again, and
  :func:`quiet_copy` copies again when a workload was scaled up while its claim was copied.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from ..clients.kube import kget, kpatch, wait_until
from ..model.errors import StepError
from .base import Progress
from .ownership import managed_by

ORIGINAL_REPLICAS = "falkit.io/original-replicas"
T = TypeVar("T")


PAUSED_SYNC = "falkit.io/paused-automated-sync"


def argocd_apps(api: Any, refs: list[tuple[str, str, str]]) -> list[str]:
    """The Argo CD Applications managing these workloads (``(namespace, kind, name)``; annotation
    tracking, issue 9), with the app-of-apps above them first: a parent's self-heal would restore a
    child's paused sync policy."""
    out: list[str] = []
    todo = sorted({a for ns, kind, name in refs if (a := managed_by(kget(api, "apps/v1", kind, name, ns)))})
    while todo:
        app = todo.pop(0)
        if app in out:
            continue
        out.insert(0, app)
        parent = managed_by(kget(api, "argoproj.io/v1alpha1", "Application", app, "argocd"))
        if parent and parent not in out:
            todo.append(parent)
    return out


def pause_sync(api: Any, app: str) -> None:
    """Turn off an Application's automated sync (and so self-heal) while falkit scales and
    repoints its workloads; the policy is kept in an annotation for :func:`resume_sync`."""
    obj = kget(api, "argoproj.io/v1alpha1", "Application", app, "argocd") or {}
    auto = ((obj.get("spec") or {}).get("syncPolicy") or {}).get("automated")
    if auto is None:
        return
    kpatch(api, "argoproj.io/v1alpha1", "Application", app,
           {"metadata": {"annotations": {PAUSED_SYNC: json.dumps(auto)}}, "spec": {"syncPolicy": {"automated": None}}}, "argocd")


def hold_pause(api: Any, app: str, progress: Progress) -> bool:
    """Pause ``app`` again when falkit paused it (its kept policy says so) and its automated sync
    is back: a sync of the app-of-apps above it, decided before that one's pause, re-applied the
    Application from Git (docs/FACTS.md "Argo CD"). True when it paused it again."""
    obj = kget(api, "argoproj.io/v1alpha1", "Application", app, "argocd") or {}
    if PAUSED_SYNC not in _ann(obj) or ((obj.get("spec") or {}).get("syncPolicy") or {}).get("automated") is None:
        return False
    progress.log(f"Argo CD application {app} has its automated sync back (a sync of the application above it, "
                 "decided before its pause, re-applied it from Git): pausing it again")
    kpatch(api, "argoproj.io/v1alpha1", "Application", app, {"spec": {"syncPolicy": {"automated": None}}}, "argocd")
    return True


def sync_idle(api: Any, app: str) -> bool:
    """No sync operation requested or running (one started before the pause still completes)."""
    obj = kget(api, "argoproj.io/v1alpha1", "Application", app, "argocd") or {}
    return not obj.get("operation") and ((obj.get("status") or {}).get("operationState") or {}).get("phase") != "Running"


def resume_sync(api: Any, app: str) -> None:
    """Give an Application back the automated sync policy :func:`pause_sync` kept (nothing when it
    was not paused by falkit)."""
    obj = kget(api, "argoproj.io/v1alpha1", "Application", app, "argocd") or {}
    saved = _ann(obj).get(PAUSED_SYNC)
    if saved is None:
        return
    kpatch(api, "argoproj.io/v1alpha1", "Application", app,
           {"metadata": {"annotations": {PAUSED_SYNC: None}}, "spec": {"syncPolicy": {"automated": json.loads(saved)}}}, "argocd")


def pause_apps(api: Any, apps: list[str], progress: Progress, timeout: float, step: str, until: str = "") -> None:
    """Pause each of ``apps`` (parents first, as :func:`argocd_apps` orders them), let a sync
    already under way finish, then pause again a child that a parent's late sync re-enabled
    (:func:`hold_pause`). ``until`` ends the log line (what the pause lasts for)."""
    for app in apps:
        progress.log(f"pause automated sync of Argo CD application {app}{until}")
        pause_sync(api, app)
    for app in apps:
        wait_until(step, f"Argo CD application {app} idle", timeout, lambda a=app: sync_idle(api, a))
    for app in apps:
        hold_pause(api, app, progress)


def resume_apps(api: Any, apps: list[str], progress: Progress) -> None:
    """:func:`resume_sync` each of ``apps``, children first."""
    for app in reversed(apps):
        resume_sync(api, app)
        progress.log(f"resumed automated sync of {app}")


RESCALES = 3  # a workload scaled back up more often than this is not a late sync: something keeps doing it


def scale_down(api: Any, ns: str, workloads: Any, timeout: float, progress: Progress,
               step: str) -> dict[tuple[str, str], int]:
    """Scale each ``(kind, name)`` of ``workloads`` in ``ns`` to 0 and wait until no pod of it runs;
    returns each one's replica count to restore (kept in ``falkit.io/original-replicas`` first —
    or taken from it, when an interrupted run left it).

    One sync Argo CD decided before falkit's pause can still land after it: the application
    controller decides auto-sync on its cached copy of the Application, and ``SetAppOperation``
    re-checks only that no other operation is set (docs/FACTS.md "Argo CD"). So a workload may be
    scaled back up after it was scaled to 0. The wait sees ``spec.replicas`` above 0 again, says so,
    and scales it down again — up to :data:`RESCALES` times; more is something that keeps scaling
    it up, a StepError naming it (nothing was copied yet)."""
    originals: dict[tuple[str, str], int] = {}
    for kind, name in workloads:
        w = kget(api, "apps/v1", kind, name, ns) or {}
        recorded = _ann(w).get(ORIGINAL_REPLICAS)
        originals[(kind, name)] = int(recorded) if recorded is not None else int((w.get("spec") or {}).get("replicas", 1))
        scale(api, kind, ns, name, 0, {"metadata": {"annotations": {ORIGINAL_REPLICAS: str(originals[(kind, name)])}}})
    for kind, name in originals:
        rescaled = [0]

        def down(kind: str = kind, name: str = name, rescaled: list[int] = rescaled) -> bool:
            w = kget(api, "apps/v1", kind, name, ns) or {}
            back = int((w.get("spec") or {}).get("replicas") or 0)
            if back:
                who = _noticed(api, w, progress)
                if rescaled[0] >= RESCALES:
                    raise StepError(step, f"{kind} {ns}/{name} is scaled back up to {back} each time falkit scales it to 0 "
                                          f"({RESCALES + 1} times; {who}); nothing was copied",
                                    resume=f"find what scales {kind} {ns}/{name} (an HPA, an operator, a sync "
                                           "policy falkit did not pause), stop it, then re-run the step")
                rescaled[0] += 1
                progress.log(f"{kind} {ns}/{name} was scaled back up to {back} after falkit scaled it to 0 ({who}: a "
                             "sync that started before the pause): scaling it down again")
                scale(api, kind, ns, name, 0)
                return False
            st = w.get("status") or {}
            return not st.get("readyReplicas") and not st.get("replicas")

        wait_until(step, f"{kind} {ns}/{name} scaled down", timeout, down)
    return originals


def scale(api: Any, kind: str, ns: str, name: str, replicas: int, extra: dict | None = None) -> None:
    body: dict[str, Any] = {"spec": {"replicas": replicas}}
    if extra:
        body.update(extra)
    kpatch(api, "apps/v1", kind, name, body, ns)


def _ann(obj: dict) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def _noticed(api: Any, w: dict, progress: Progress) -> str:
    """Who scaled workload ``w`` back up; its Argo CD application, paused again if a parent's late
    sync re-enabled it (:func:`hold_pause`)."""
    app = managed_by(w)
    if app:
        hold_pause(api, app, progress)
        return f"Argo CD application {app!r} synced it"
    return "something scaled it"


def _not_down(api: Any, ns: str, workloads: Any) -> tuple[str, str, int, dict] | None:
    """The first of ``workloads`` not at 0 replicas with no pod: (kind, name, replicas, workload)."""
    for kind, name in workloads:
        w = kget(api, "apps/v1", kind, name, ns) or {}
        up = int((w.get("spec") or {}).get("replicas") or 0)
        st = w.get("status") or {}
        if up or st.get("replicas") or st.get("readyReplicas"):
            return kind, name, up, w
    return None


def quiet_copy(api: Any, ns: str, workloads: Any, timeout: float, progress: Progress, step: str, what: str,
               copy: Callable[[], T], originals: dict[tuple[str, str], int]) -> T:
    """Copy ``what`` with its ``workloads`` at 0: :func:`scale_down` (their replica counts go into
    ``originals``), ``copy()``, then check they stayed down. One scaled up meanwhile ran during the
    copy, so the copy may lack what it wrote: a sync decided before the pause can land after the
    wait as well as during it, so it is scaled down and ``what`` copied again — :data:`RESCALES`
    times at most; more is a StepError naming it (nothing was switched to the copy; the caller
    keeps the workloads on the claim they had). Returns what the last ``copy()`` returned."""
    attempt = 0
    while True:
        originals.update(scale_down(api, ns, workloads, timeout, progress, step=step))
        out = copy()
        up = _not_down(api, ns, workloads)
        if up is None:
            return out
        kind, name, n, w = up
        who = _noticed(api, w, progress)
        if attempt == RESCALES:
            raise StepError(step, f"{kind} {ns}/{name} was scaled up to {n} while {what} was copied ({who}), "
                                  f"{RESCALES + 1} times: the copy may lack what it wrote; nothing was switched to the copy",
                            resume=f"find what scales {kind} {ns}/{name} (an HPA, an operator, a sync policy falkit "
                                   "did not pause), stop it, then re-run the step (it copies again)")
        attempt += 1
        progress.log(f"{kind} {ns}/{name} was scaled up to {n} while {what} was copied ({who}: a sync that started "
                     "before the pause): scaling it down and copying again")
