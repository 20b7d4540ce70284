"""rollback-workers: the workers the before-state did not have cordoned, drained, powered off,
their Nodes deleted (destroyed only with ``destroy_extra_workers``). The re-IP of the nodes that
stay is rollback-talos' (:mod:`.talos`).

Each change carries a typed payload (:class:`CordonWorker`, :class:`DrainWorker`,
:class:`ShutdownWorker`, :class:`DeleteWorkerNode`, :class:`DestroyWorker`), executed in order by
this module's executors; apply reads no spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...clients.kube import kdelete, klist, kpatch
from ...clients.proxmox import PveCallError, TaskFailedError, TaskTimeoutError, call, list_vms, wait_task
from ...model.errors import StepError
from ...model.spec import LabSpec
from ...plan.diff import Change, Noop, Plan
from ...plan.payloads import payload
from ..base import Progress, StepOptions
from ..executors import Apply, execute, executes
from ._common import _md

STEP = "rollback-workers"
SHUTDOWN_TIMEOUT_S = 120


@payload
@dataclass(frozen=True)
class CordonWorker:
    """Mark Node ``node`` unschedulable."""

    node: str


@payload
@dataclass(frozen=True)
class DrainWorker:
    """Delete the pods on Node ``node`` (DaemonSet pods and finished ones stay)."""

    node: str


@payload
@dataclass(frozen=True)
class ShutdownWorker:
    """Shut VM ``vmid`` down (``status/shutdown``), then stop it when it did not shut down cleanly."""

    vmid: int


@payload
@dataclass(frozen=True)
class DeleteWorkerNode:
    """Delete Node ``node`` (kubectl delete node)."""

    node: str


@payload
@dataclass(frozen=True)
class DestroyWorker:
    """Destroy VM ``vmid`` with its disks (``purge``, ``destroy-unreferenced-disks``)."""

    vmid: int


@dataclass(frozen=True)
class WorkerFacts:
    vms: dict[int, dict]  # vmid -> {name, status, config}
    nodes: dict[str, dict]  # Node name -> Node
    pods: tuple[dict, ...]


def observe_workers(target: Any, spec: LabSpec) -> WorkerFacts:
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
                changes.append(Change("action", "node", w.name, "cordon", reason="no new pods", data=CordonWorker(w.name)))
            pods = [p for p in f.pods if _drainable(p, w.name)]
            if pods:
                changes.append(Change("action", "node", w.name, "drain", reason=f"evict {len(pods)} pod(s) "
                                      "(DaemonSet pods stay)", data=DrainWorker(w.name)))
        vm = f.vms.get(w.vmid)
        if vm is not None and vm["status"] == "running":
            changes.append(Change("action", "vm", w.name, "shutdown", reason="power off (data disk kept)",
                                  disruptive=True, data=ShutdownWorker(w.vmid)))
        if node is not None:
            changes.append(Change("delete", "node", w.name, reason="decommission the Node object (kubectl delete node)",
                                  data=DeleteWorkerNode(w.name)))
        if vm is not None and destroy:
            changes.append(Change("delete", "vm", w.name, old=f"VMID {w.vmid}", destructive=True,
                                  reason="option destroy_extra_workers: the VM and its disks (Mayastor replicas) go",
                                  data=DestroyWorker(w.vmid)))
        elif vm is not None and vm["status"] != "running" and node is None:
            noops.append(Noop("vm", w.name, f"powered off ({vm['status']}); kept (destroy_extra_workers=False)"))
        elif vm is None:
            noops.append(Noop("vm", w.name, "does not exist"))
    if any(c.op == "delete" and c.kind == "vm" for c in changes):
        notes.append("destroying these workers destroys the Mayastor replicas on their data disks: a Mayastor copy "
                     "kept by rollback-volumes (delete_migrated_volumes=False) keeps only its replica on the workers "
                     "that stay")
    return Plan("rollback-workers", tuple(changes), tuple(noops), tuple(notes))


def apply_workers(target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
    try:
        execute(target, plan.changes, progress, options.wait_timeout_s, step=STEP)
    except (PveCallError, TaskFailedError, TaskTimeoutError) as e:
        raise StepError(STEP, str(e)) from e


# ---------------------------------------------------------------------------------------------
# Executors of this step's payloads


def _log(c: Change, ctx: Apply) -> None:
    ctx.progress.log(f"rollback-workers: {c.describe()}")


@executes(CordonWorker)
def _cordon(c: Change, ctx: Apply) -> None:
    _log(c, ctx)
    kpatch(ctx.target.kube(), "v1", "Node", c.data.node, {"spec": {"unschedulable": True}})


@executes(DrainWorker)
def _drain(c: Change, ctx: Apply) -> None:
    _log(c, ctx)
    api = ctx.target.kube()
    for p in klist(api, "v1", "Pod"):
        if _drainable(p, c.data.node):
            kdelete(api, "v1", "Pod", _md(p)["name"], _md(p)["namespace"])


@executes(ShutdownWorker)
def _shutdown(c: Change, ctx: Apply) -> None:
    _log(c, ctx)
    target, vmid = ctx.target, c.data.vmid
    qemu = target.pve.nodes(target.node).qemu
    upid = call(f"shut down VM {vmid}", qemu(vmid).status.shutdown.post, timeout=SHUTDOWN_TIMEOUT_S)
    try:
        wait_task(target.pve, target.node, upid, timeout=SHUTDOWN_TIMEOUT_S + 30)
    except (TaskFailedError, TaskTimeoutError):
        ctx.progress.log(f"VM {vmid} did not shut down cleanly: stopping it")
        wait_task(target.pve, target.node, call(f"stop VM {vmid}", qemu(vmid).status.stop.post), timeout=ctx.timeout)


@executes(DeleteWorkerNode)
def _delete_node(c: Change, ctx: Apply) -> None:
    _log(c, ctx)
    kdelete(ctx.target.kube(), "v1", "Node", c.data.node)


@executes(DestroyWorker)
def _destroy(c: Change, ctx: Apply) -> None:
    _log(c, ctx)
    target, vmid = ctx.target, c.data.vmid
    upid = call(f"destroy VM {vmid}", target.pve.nodes(target.node).qemu(vmid).delete, purge=1,
                **{"destroy-unreferenced-disks": 1})
    wait_task(target.pve, target.node, upid, timeout=ctx.timeout)
