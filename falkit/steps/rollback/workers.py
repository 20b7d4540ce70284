"""rollback-workers: the workers the before-state did not have cordoned, drained, powered off,
their Nodes deleted (destroyed only with ``destroy_extra_workers``). The re-IP of the nodes that
stay is rollback-talos' (:mod:`.talos`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...clients.kube import kdelete, klist, kpatch
from ...clients.proxmox import PveCallError, TaskFailedError, TaskTimeoutError, call, list_vms, wait_task
from ...model.errors import StepError
from ...model.spec import LabSpec
from ...plan.diff import Change, Noop, Plan
from ..base import Progress, StepOptions
from ._common import _md

SHUTDOWN_TIMEOUT_S = 120


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
    if any(c.op == "delete" and c.kind == "vm" for c in changes):
        notes.append("destroying these workers destroys the Mayastor replicas on their data disks: a Mayastor copy "
                     "kept by rollback-volumes (delete_migrated_volumes=False) keeps only its replica on the workers "
                     "that stay")
    return Plan("rollback-workers", tuple(changes), tuple(noops), tuple(notes))


def apply_workers(target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
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
