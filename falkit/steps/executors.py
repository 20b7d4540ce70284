"""One executor per payload type: how ``apply`` carries out a planned change.

:func:`execute` runs a plan's changes in order, each by the executor registered for its payload's
type (:func:`executes`). An executor reads only its change (the payload holds every value apply
needs: chart and version, the object, the Git edit planned in ``plan`` and the checkout it goes
to) and the target's clients (``target.helm``, ``target.kube()``) — never the
lab spec. A step whose changes all carry typed payloads applies with ``execute(target, plan.changes,
...)``; its own apply only adds what is specific to it (its error wording).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..clients.kube import KubeChanger, kcreate, kdelete, kget, kpatch, served, wait_for
from ..model.errors import FalkitError, StepError
from ..plan.diff import Change
from ..plan.payloads import (
    Blocked,
    DirectChange,
    GitChange,
    HelmRelease,
    HelmUninstall,
    KubeAnnotate,
    KubeApply,
    KubeCreate,
    KubeDelete,
    KubePatch,
    KubeReplace,
    WaitServiceIPs,
)
from .ownership import apply_git_changes


class NoExecutorError(FalkitError, TypeError):
    """A change whose payload has no executor (an untyped ``dict``, or an unknown type)."""


@dataclass
class Apply:
    """What an executor gets besides its change: the target, the wait timeout and the progress."""

    target: Any
    progress: Any
    timeout: float = 600.0
    step: str = ""  # the step applying (for its errors' wording)
    #: what the executors of one apply share, by the step's own key (plex: the workloads scaled down
    #: for the copy, scaled back when a later change of the same apply fails)
    shared: dict[str, Any] = field(default_factory=dict)
    _changer: KubeChanger | None = field(default=None, repr=False)

    @property
    def changer(self) -> KubeChanger:
        if self._changer is None:
            self._changer = KubeChanger(self.target.kube())
        return self._changer


EXECUTORS: dict[type, Callable[[Change, Apply], None]] = {}
#: payload type -> (the key consecutive changes share to be executed together, the executor of the batch)
BATCH_EXECUTORS: dict[type, tuple[Callable[[Change], Any], Callable[[list[Change], Apply], None]]] = {}


def executes(kind: type) -> Callable[[Callable[[Change, Apply], None]], Callable[[Change, Apply], None]]:
    """Register the executor of payload type ``kind``."""
    def deco(fn: Callable[[Change, Apply], None]) -> Callable[[Change, Apply], None]:
        EXECUTORS[kind] = fn
        return fn

    return deco


def executes_together(kind: type, key: Callable[[Change], Any]) -> Callable[[Callable[[list[Change], Apply], None]],
                                                                          Callable[[list[Change], Apply], None]]:
    """Register the executor of payload type ``kind`` that takes consecutive changes with equal ``key``."""
    def deco(fn: Callable[[list[Change], Apply], None]) -> Callable[[list[Change], Apply], None]:
        BATCH_EXECUTORS[kind] = (key, fn)
        return fn

    return deco


def executable(change: Change) -> bool:
    """Whether ``change``'s payload has an executor (a typed payload of a registered type)."""
    return type(change.data) in EXECUTORS or type(change.data) in BATCH_EXECUTORS


def execute(target: Any, changes: Iterable[Change], progress: Any, timeout: float = 600.0, step: str = "") -> None:
    """Carry out ``changes`` in order, each by its payload type's executor; consecutive Git changes
    of one checkout go to their executor together (one commit, then the syncs)."""
    ctx = Apply(target, progress, timeout, step)
    todo = list(changes)
    for c in todo:
        if type(c.data) not in EXECUTORS and type(c.data) not in BATCH_EXECUTORS:
            raise NoExecutorError(f"no executor for {c.describe()}: its payload is a {type(c.data).__name__}")
    i = 0
    while i < len(todo):
        c = todo[i]
        batch = BATCH_EXECUTORS.get(type(c.data))
        if batch is None:
            EXECUTORS[type(c.data)](c, ctx)
            i += 1
            continue
        j = i + 1
        while j < len(todo) and type(todo[j].data) is type(c.data) and batch[0](todo[j]) == batch[0](c):
            j += 1
        batch[1](todo[i:j], ctx)
        i = j


@executes(Blocked)
def _blocked(c: Change, ctx: Apply) -> None:
    d: Blocked = c.data
    first = f" — run {d.run_first} first" if d.run_first else ""
    fix = f" (fix: {d.fix})" if d.fix else ""
    raise StepError(ctx.step, f"blocked: {c.name}: {d.message}{first}{fix}")


# ---------------------------------------------------------------------------------------------- Helm

def _release_key(c: Change) -> tuple:
    d: HelmRelease = c.data
    return d.namespace, d.name, d.chart, d.version, d.values


@executes_together(HelmRelease, key=_release_key)
def _helm_release(changes: list[Change], ctx: Apply) -> None:
    """One ``helm upgrade --install`` for consecutive changes of the same release (a plan may show
    its version and its values as two changes)."""
    d: HelmRelease = changes[0].data
    bar = ctx.progress.task(f"helm upgrade --install {d.name}", 1)
    ctx.target.helm.upgrade_install(d.namespace, d.name, d.chart, d.version, d.values)
    bar(1, "deployed")


@executes(HelmUninstall)
def _helm_uninstall(c: Change, ctx: Apply) -> None:
    ctx.target.helm.uninstall(c.data.namespace, c.data.name)
    ctx.progress.log(f"uninstalled {c.name}")


# ---------------------------------------------------------------------------------------------- Kubernetes

@executes(KubeApply)
def _kube_apply(c: Change, ctx: Apply) -> None:
    ctx.changer.apply(c.data.object)
    ctx.progress.log(f"applied {c.name}")


@executes(KubeAnnotate)
def _kube_annotate(c: Change, ctx: Apply) -> None:
    r = c.data.ref
    ctx.changer.annotate(r.api_version, r.kind, r.name, r.namespace or None, c.data.annotations)
    ctx.progress.log(f"annotated {r.kind.lower()} {c.name}")


@executes(KubePatch)
def _kube_patch(c: Change, ctx: Apply) -> None:
    r = c.data.ref
    kpatch(ctx.target.kube(), r.api_version, r.kind, r.name, c.data.patch, r.namespace or None)
    ctx.progress.log(f"patched {r.kind.lower()} {c.name}")


@executes(KubeReplace)
def _kube_replace(c: Change, ctx: Apply) -> None:
    body = c.data.object
    api = ctx.target.kube()
    md = body.get("metadata") or {}
    if kget(api, body["apiVersion"], body["kind"], md["name"], md.get("namespace")) is not None:
        kdelete(api, body["apiVersion"], body["kind"], md["name"], md.get("namespace"))
    kcreate(api, body)
    ctx.progress.log(f"re-created {body['kind']} {c.name}")


@executes(KubeDelete)
def _kube_delete(c: Change, ctx: Apply) -> None:
    r = c.data.ref
    ctx.changer.delete(r.api_version, r.kind, r.name, r.namespace or None)
    ctx.progress.log(f"deleted {c.name}")


@executes(KubeCreate)
def _kube_create(c: Change, ctx: Apply) -> None:
    body = c.data.object
    api = ctx.target.kube()
    md = body.get("metadata") or {}
    wait_for(lambda: served(api, body["apiVersion"], body["kind"]), bool, ctx.timeout, f"{body['kind']} served",
             ctx.progress.task(f"{body['kind']} served", 1))
    if kget(api, body["apiVersion"], body["kind"], md["name"], md.get("namespace")) is None:
        kcreate(api, body)
    ctx.progress.log(f"created {c.name}")


@executes(DirectChange)
def _direct(c: Change, ctx: Apply) -> None:
    d: DirectChange = c.data
    if d.create is not None:
        ctx.changer.apply(d.create)
    else:
        obj = {"apiVersion": d.ref.api_version, "kind": d.ref.kind,
               "metadata": {"name": d.ref.name, **({"namespace": d.ref.namespace} if d.ref.namespace else {})}}
        ctx.changer.apply({**obj, **{k: v for k, v in (d.patch or {}).items() if k != "metadata"},
                           "metadata": {**obj["metadata"], **((d.patch or {}).get("metadata") or {})}})
    ctx.progress.log(f"applied {c.name}")


def service_ips(api: Any, ns: str, name: str) -> tuple[str, ...] | None:
    """A Service's ``status.loadBalancer.ingress`` IPs (None: no such Service); ``api``: ``target.kube()``."""
    obj = kget(api, "v1", "Service", name, ns)
    if obj is None:
        return None
    ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return tuple(i["ip"] for i in ingress if i.get("ip"))


def ip_ok(pool: tuple[str, str], want: str, ips: tuple[str, ...] | None) -> bool:
    """``ips`` hold ``want`` (an address), or (``want == "pool"``) all lie in ``pool`` (first, last)."""
    if not ips:
        return False
    if want != "pool":
        return want in ips
    lo, hi = (ipaddress.IPv4Address(pool[0]), ipaddress.IPv4Address(pool[1]))
    return all(lo <= ipaddress.IPv4Address(ip) <= hi for ip in ips)


@executes(WaitServiceIPs)
def _wait_ips(c: Change, ctx: Apply) -> None:
    d: WaitServiceIPs = c.data
    api = ctx.target.kube()
    for key, want in d.services:
        ns, name = key.split("/", 1)
        if d.skip_absent and service_ips(api, ns, name) is None:
            continue
        bar = ctx.progress.task(f"IP of {key}", 1)
        wait_for(lambda ns=ns, name=name: service_ips(api, ns, name), lambda ips, w=want: ip_ok(d.pool, w, ips),
                 ctx.timeout, f"service {key} gets {want}", bar, describe=lambda ips: ", ".join(ips or ()) or "pending")


# ---------------------------------------------------------------------------------------------- Git

@executes_together(GitChange, key=lambda c: (c.data.repo, c.data.deliver))
def _git(changes: list[Change], ctx: Apply) -> None:
    """Commit the edits in one commit on the checkout's branch, get it where Argo CD reads it, then
    wait for each change's Application to sync (:func:`falkit.steps.ownership.apply_git_changes`)."""
    repo = changes[0].data.repo
    if repo is None:
        raise NoExecutorError(f"{changes[0].describe()}: the Git change names no checkout")
    for c in changes:
        ctx.progress.log(f"git: {c.name}" + (f": {c.field}" if c.field else "")
                         + (f" ({c.old} -> {c.new})" if c.kind == "git-file" and c.field == "name" else ""))
    if not changes[0].data.deliver:  # a commit on the branch only (the Terraform rollback)
        commit = repo.checkout().commit([c.data.edit for c in changes if c.data.edit is not None])
    else:
        # no target (a checkout alone): commit and deliver, no cluster to wait on
        api = ctx.target.kube() if ctx.target is not None and any(c.data.app for c in changes) else None
        commit = apply_git_changes(changes, repo.checkout(), api, timeout=ctx.timeout, progress=ctx.progress.task)
    if commit is not None:
        ctx.progress.log(f"committed {commit.sha[:10]} on {commit.branch}" + (" (pushed)" if commit.pushed else ""))
