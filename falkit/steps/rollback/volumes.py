"""rollback-volumes: workloads moved back from their Mayastor copies onto the original claims
(checksummed, copied back when written since), and the step's checks.

Typed payloads (issue 18): a move back is a :class:`VolumeMoveBack` (its executor moves one volume;
apply runs them all inside one pause of Argo CD's automated sync), a copy's deletion a ``KubeDelete``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...clients.kube import JobFailedError, copy_job, job_name, kcreate, kget, klist, kpatch, run_job
from ...model.errors import StepError
from ...model.spec import LabSpec
from ...plan.diff import Change, Noop, Plan
from ...plan.payloads import KubeDelete, ObjectRef, payload
from ..base import Check, Progress, StepOptions
from ..executors import Apply, execute, executes
from ..quiesce import ORIGINAL_REPLICAS, quiet_copy, scale
from ..volumes import (
    MIGRATED_FROM,
    MIGRATED_TO,
    WORKLOAD_KINDS,
    _repoint,
    _scaled_up,
    consumers,
    gitops_checkout,
    with_argocd_paused,
)
from ._common import _ann, _checksum, _key, _md, _wait

ROLLED_BACK = "falkit.io/rolled-back-to"


@payload
@dataclass(frozen=True)
class VolumeMoveBack:
    """A ``volume`` change of rollback-volumes: the ``workloads`` (kind, name) in ``namespace`` moved
    from the Mayastor copy ``new`` back to the original claim ``old`` — re-created first when
    ``recreate`` (on ``storage_class``, ``size``, ``access`` modes), copied back when written since,
    checksummed, repointed."""

    namespace: str
    new: str
    old: str
    recreate: bool
    storage_class: str
    size: str
    access: tuple[str, ...]
    workloads: tuple[tuple[str, str], ...] = ()


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
            sc = spec.previous.longhorn_storage_class if spec.previous else "longhorn"
            changes.append(Change("update", "volume", key, "claim", new_name, old,
                                  reason=(f"re-create the original claim on {sc}, " if recreate
                                          else "") + f"copy back if written since, checksums; repoint {wl}",
                                  data=VolumeMoveBack(
                                      ns, new_name, old, recreate, sc,
                                      (((new.get("spec") or {}).get("resources") or {}).get("requests") or {})
                                      .get("storage", "1Gi"),
                                      tuple((new.get("spec") or {}).get("accessModes") or ["ReadWriteOnce"]),
                                      tuple((w["kind"], _md(w)["name"]) for w in users))))
        elif delete:
            changes.append(Change("delete", "pvc", key, old=old, destructive=True,
                                  reason="option delete_migrated_volumes: the Mayastor copy of "
                                         f"{ns}/{old} (no workload mounts it)",
                                  data=KubeDelete(ObjectRef("v1", "PersistentVolumeClaim", ns, new_name))))
        else:
            noops.append(Noop("volume", f"{ns}/{old}", f"back on {old}; the Mayastor copy {new_name} is kept"))
    if not changes and not noops:
        notes.append("no migrated volumes (no claim carries falkit.io/migrated-from)")
    return Plan("rollback-volumes", tuple(changes), tuple(noops), tuple(notes))


def move_back(api: Any, c: Change, timeout: float, progress: Progress) -> str:
    """Execute one ``volume`` change; returns the verified checksum of the original claim."""
    d: VolumeMoveBack = c.data
    ns, new, old = d.namespace, d.new, d.old
    bar = progress.task(f"move {ns}/{new} back to {old}", 4)
    if d.recreate and kget(api, "v1", "PersistentVolumeClaim", old, ns) is None:
        sc = d.storage_class  # planned from the spec's previous.longhorn_storage_class
        kcreate(api, {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": old, "namespace": ns},
                      "spec": {"accessModes": list(d.access), "resources": {"requests": {"storage": d.size}},
                               "storageClassName": sc}})
    _wait("rollback-volumes", f"{ns}/{old} Bound", timeout,
          lambda: ((kget(api, "v1", "PersistentVolumeClaim", old, ns) or {}).get("status") or {}).get("phase") == "Bound")
    originals: dict[tuple[str, str], int] = {}

    def restore(repoint: bool) -> None:
        for (kind, name), replicas in originals.items():
            if repoint:
                _repoint(api, kind, ns, name, new, old)
            scale(api, kind, ns, name, replicas, {"metadata": {"annotations": {ORIGINAL_REPLICAS: None}}})

    def copy_back() -> tuple[str, str]:
        bar(1, "workloads scaled down")
        src, dst = _checksum(api, ns, new, timeout), _checksum(api, ns, old, timeout)
        if src != dst:
            progress.log(f"{ns}/{new} differs from {old} (written since the migration): copying it back")
            run_job(api, copy_job(job_name("copy", new), ns, new, old), timeout)
            dst = _checksum(api, ns, old, timeout)
        return src, dst

    try:
        src, dst = quiet_copy(api, ns, d.workloads, timeout, progress, "rollback-volumes", f"{ns}/{new}", copy_back,
                              originals)
    except (JobFailedError, ValueError) as e:
        restore(repoint=False)
        raise StepError("rollback-volumes", f"{ns}/{new}: {e}; the workload still uses the Mayastor copy") from e
    except StepError:
        restore(repoint=False)
        raise
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


@executes(VolumeMoveBack)
def _volume_move_back(c: Change, ctx: Apply) -> None:
    """One volume moved back (apply pauses Argo CD's automated sync around all of them)."""
    move_back(ctx.target.kube(), c, ctx.timeout, ctx.progress)


def apply_volumes_back(target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
    api = target.kube()
    checkout = gitops_checkout(target, options)
    moves = [c for c in plan.changes if isinstance(c.data, VolumeMoveBack)]
    refs = [(c.data.namespace, kind, name) for c in moves for kind, name in c.data.workloads]
    with_argocd_paused(api, f"{len(moves)} volume(s)", refs, checkout, progress, options.wait_timeout_s,
                       lambda: execute(target, moves, progress, options.wait_timeout_s, step="rollback-volumes"))
    for c in plan.changes:
        if isinstance(c.data, KubeDelete):
            progress.log(f"delete the Mayastor copy {c.name} (delete_migrated_volumes)")
            execute(target, [c], progress, options.wait_timeout_s, step="rollback-volumes")


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
