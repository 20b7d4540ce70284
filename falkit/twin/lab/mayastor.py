"""OpenEBS Mayastor in the twin: io-engine and csi-node pods, DiskPools, volume provisioning.

Facts behind it (docs/UPSTREAM.md, "OpenEBS Mayastor", each with its source; the chart stand-in in
:mod:`falkit.twin.lab.charts` records the io-engine values in ``release.notes["io_engine"]``):

* **io-engine** pods exist only on nodes matching the DaemonSet's nodeSelector
  (``openebs.io/engine=mayastor``) while the mayastor/openebs release exists. Each requests
  ``hugepages-2Mi: 2Gi``: a node whose Talos config gives fewer than 1024 pages
  (``vm.nr_hugepages``) cannot take it -- Pending, FailedScheduling "0/N nodes are available: 1
  Insufficient hugepages-2Mi, ...". The core list (``io_engine.coreList``, else ``cpuCount``
  (chart default "2") => cores 1..cpuCount) must exist on the VM: otherwise DPDK's EAL refuses it
  and the pod is in CrashLoopBackOff with DPDK's words (lib/eal/common/eal_common_options.c):
  "EAL: lcore 2 unavailable" / "EAL: invalid core list, please check specified cores are part of
  0-1". The fault ``io_engine_crash`` crashes it too.
* **csi-node** pods run on every node; the chart's ``nvme-tcp-probe`` init container waits while
  ``nvme_tcp`` is not loaded, printing "nvme_tcp module not loaded..." (openebs chart values,
  ``csi.node.initContainers``): the pod stays ``Init:0/1`` and pods mounting a Mayastor volume on
  that node fail with kubelet's FailedMount (see :mod:`falkit.twin.lab.pods`).
* **DiskPools** (``openebs.io/v1beta2`` for 2.5-2.8, ``v1beta3`` from 2.9; one collection):
  ``cr_state: Created`` + ``pool_status: Online`` only when the node's io-engine runs AND the
  node's VM in the twin's Proxmox has the disk (``/dev/sdb`` = ``scsi1``; also
  ``/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_drive-scsi1``; ``aio://``/``uring://`` prefixes);
  ``capacity`` = the disk's size in bytes, ``used``/``available`` from the replicas on it.
  Otherwise ``Creating``/``Unknown`` (never created) or ``Created``/``Unknown`` (node lost), with a
  Warning Event. Fault ``diskpool_degraded`` => ``Degraded``.
* **Volumes**: a PVC of a StorageClass with provisioner ``io.openebs.csi-mayastor`` binds only when
  ``repl`` Online pools on distinct nodes have room (thick: available >= request; thin:
  capacity >= request, pool usage counts written bytes only). A PV ``pvc-<uid>`` is created (CSI
  driver, ``volumeHandle`` = the PVC's uid, claimRef) with annotation ``falkit.twin/replicas`` =
  ``pool-a,pool-b,pool-c`` (and ``falkit.twin/replica-nodes``); ``ctx.volumes[pv].replicas`` holds
  the pools. Else the PVC stays Pending with ProvisioningFailed "... not enough suitable pools
  available, 2/3". A PV whose replica pools are no longer Online is annotated
  ``falkit.twin/volume-state: degraded`` (``faulted`` when none is left) and its VolumeData state
  follows. Longhorn (``driver.longhorn.io``) binds when a longhorn-manager pod runs.
"""

from __future__ import annotations

import logging
import re

from falkit.twin.kube.objects import now_iso

from .argocd import chart_release
from .context import POD_CONTROLLER, VolumeData
from .pods import (
    LONGHORN_DRIVER,
    MAYASTOR_DRIVER,
    eligible_nodes,
    items,
    node_ready,
    owned_by,
    owner_ref,
    pve_vms,
    quantity_bytes,
    record_event,
    set_condition,
    suffix,
    write_status,
)

log = logging.getLogger(__name__)
MANAGER = "falkit-twin-mayastor"
HUGEPAGES_NEEDED = 1024  # 2 GiB of 2 MiB pages (the chart's hugepages2Mi request "2Gi": exactly that, zero slack; docs/UPSTREAM.md)
DISKPOOL_VERSIONS = ("openebs.io/v1beta2", "openebs.io/v1beta3")


def release(ctx):  # noqa: ANN201 - Release | None
    """The Mayastor release: installed by Helm, or rendered by Argo CD from an Application."""
    return (ctx.release_of("mayastor") or ctx.release_of("openebs")
            or chart_release(ctx, "mayastor") or chart_release(ctx, "openebs"))


def core_list(rel) -> list[int]:  # noqa: ANN001
    """The io-engine's cores: ``io_engine.coreList``, else 1..cpuCount (chart default "2" => 1,2)."""
    io = (rel.notes or {}).get("io_engine") or {}
    if io.get("coreList"):
        return [int(c) for c in io["coreList"]]
    return list(range(1, int(str(io.get("cpuCount", "2"))) + 1))


def io_engine_verdict(tn, vm, cores: list[int], crash: bool) -> tuple[str, str]:  # noqa: ANN001
    """("running" | "pending" | "crash", detail) for the io-engine on one node."""
    if tn is None or tn.hugepages < HUGEPAGES_NEEDED:
        return "pending", "Insufficient hugepages-2Mi"
    vcpus = vm.vcpus if vm is not None else None
    if vcpus is not None and any(c >= vcpus for c in cores):
        bad = next(c for c in cores if c >= vcpus)
        avail = "0" if vcpus == 1 else f"0-{vcpus - 1}"
        return "crash", (f"EAL: lcore {bad} unavailable\n"
                         f"EAL: invalid core list, please check specified cores are part of {avail}\n"
                         "EAL: Error parsing command line arguments.\n"
                         "thread 'main' panicked at 'Failed to init EAL'\n")
    if crash:
        return "crash", "io-engine: fatal error in the reactor (fault io_engine_crash injected by the twin)\n"
    return "running", ""


def _ds(ctx, rel, app: str) -> dict | None:
    for d in items(ctx, "apps/v1", "DaemonSet", rel.namespace):
        if (d["metadata"].get("annotations") or {}).get(POD_CONTROLLER) == "mayastor" and \
                ((d["spec"].get("template") or {}).get("metadata") or {}).get("labels", {}).get("app") == app:
            return d
    return None


def _pod(ctx, ds: dict, node: str) -> dict:
    name = f"{ds['metadata']['name']}-{suffix(ds['metadata']['name'] + node)}"
    ns = ds["metadata"]["namespace"]
    pod = ctx.store.try_get("v1", "Pod", name, ns)
    if pod is None:
        tpl = ds["spec"].get("template") or {}
        spec = dict(tpl.get("spec") or {})
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}}
        pod = ctx.store.create({"apiVersion": "v1", "kind": "Pod",
                                "metadata": {"name": name, "namespace": ns, "ownerReferences": [owner_ref(ds)],
                                             "labels": dict((tpl.get("metadata") or {}).get("labels") or {})},
                                "spec": spec}, field_manager="daemonset-controller")
    return pod


def _bind(ctx, pod: dict, node: str) -> dict:
    if pod["spec"].get("nodeName") != node:
        pod["spec"]["nodeName"] = node
        pod = ctx.store.update(pod, field_manager="default-scheduler")
    return pod


def _container(pod: dict, **kw) -> list[dict]:
    c = (pod["spec"].get("containers") or [{}])[0]
    return [{"name": c.get("name", "main"), "image": c.get("image", ""), "imageID": "", **kw}]


def _set_pod(ctx, pod: dict, verdict: str, detail: str, nnodes: int, ready: bool) -> None:
    ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    old = pod.get("status") or {}
    conds = old.get("conditions") or []
    if verdict == "pending":
        msg = (f"0/{nnodes} nodes are available: 1 {detail}, {nnodes - 1} node(s) didn't match Pod's node "
               f"affinity/selector. preemption: 0/{nnodes} nodes are available: 1 No preemption victims found for "
               f"incoming pod, {nnodes - 1} Preemption is not helpful for scheduling.")
        st = {"phase": "Pending", "qosClass": "Guaranteed",
              "conditions": set_condition(conds, "PodScheduled", "False", "Unschedulable", msg)}
        record_event(ctx, pod, "FailedScheduling", msg, "Warning", "default-scheduler")
        write_status(ctx, pod, st, MANAGER)
        return
    started = old.get("startTime") or now_iso()
    conds = set_condition(conds, "PodScheduled", "True", "")
    if verdict == "crash":
        prev = (old.get("containerStatuses") or [{}])[0]
        restarts = max(1, prev.get("restartCount", 0))
        finished = ((prev.get("lastState") or {}).get("terminated") or {}).get("finishedAt") or now_iso()
        cs = _container(pod, ready=False, started=False, restartCount=restarts,
                        state={"waiting": {"reason": "CrashLoopBackOff", "message":
                                           f"back-off 5m0s restarting failed container={pod['spec']['containers'][0]['name']} pod={name}_{ns}"}},
                        lastState={"terminated": {"exitCode": 1, "reason": "Error", "message": detail,
                                                  "startedAt": started, "finishedAt": finished}})
        ctx.store.set_pod_log(ns, name, detail)
        record_event(ctx, pod, "BackOff", "Back-off restarting failed container", "Warning", "kubelet")
        ok = "False"
    elif verdict == "init":
        cs = _container(pod, ready=False, started=False, restartCount=0,
                        state={"waiting": {"reason": "PodInitializing"}})
        st = {"phase": "Pending", "qosClass": "BestEffort", "startTime": started,
              "conditions": set_condition(set_condition(conds, "Initialized", "False", "ContainersNotInitialized",
                                                        "containers with incomplete status: [nvme-tcp-probe]"),
                                          "Ready", "False", "ContainersNotReady", ""),
              "initContainerStatuses": [{"name": "nvme-tcp-probe", "image": "busybox:latest", "imageID": "", "ready": False,
                                         "restartCount": 0, "started": True,
                                         "state": {"running": {"startedAt": started}}}],
              "containerStatuses": cs}
        ctx.store.set_pod_log(ns, name, detail, container="nvme-tcp-probe")  # the init container's log
        write_status(ctx, pod, st, MANAGER)
        return
    else:
        cs = _container(pod, ready=ready, started=True, restartCount=0, state={"running": {"startedAt": started}})
        ok = "True" if ready else "False"
    for t in ("Initialized", "ContainersReady", "Ready"):
        conds = set_condition(conds, t, "True" if t == "Initialized" else ok, "", "")
    write_status(ctx, pod, {"phase": "Running", "qosClass": "Guaranteed", "startTime": started,
                            "conditions": conds, "containerStatuses": cs}, MANAGER)


def reconcile_pods(ctx, rel, vms) -> dict[str, bool]:  # noqa: ANN001
    """io-engine and csi-node pods; returns node -> io-engine Running."""
    all_nodes = items(ctx, "v1", "Node")
    nnodes = len(all_nodes)
    by_id = {v.vmid: v for v in vms or []}
    running: dict[str, bool] = {}
    cores = core_list(rel)
    for app in ("io-engine", "csi-node"):
        ds = _ds(ctx, rel, app)
        if ds is None:
            continue
        tpl = (ds["spec"].get("template") or {}).get("spec") or {}
        want = {n["metadata"]["name"]: n for n in eligible_nodes(ctx, tpl, ready_only=False)}
        for p in items(ctx, "v1", "Pod", rel.namespace):
            if owned_by(p, ds) and p["spec"].get("nodeName", _affinity_node(p)) not in want:
                ctx.store.delete("v1", "Pod", p["metadata"]["name"], rel.namespace)
        for name, node in want.items():
            tn = ctx.node_by_hostname(name)
            vm = by_id.get(tn.vmid) if tn and tn.vmid is not None else None
            pod = _pod(ctx, ds, name)
            if app == "io-engine":
                verdict, detail = io_engine_verdict(tn, vm, cores, name in ctx.faults.io_engine_crash)
                if vms is not None and (vm is None or not vm.running):
                    verdict, detail = "pending", "node(s) had untolerated taint {node.kubernetes.io/unreachable: }"
                running[name] = verdict == "running" and node_ready(node)
            else:
                verdict = "running" if tn is None or tn.has_module("nvme_tcp") else "init"
                detail = "nvme_tcp module not loaded...\n"
            if verdict == "pending" and pod["spec"].get("nodeName"):
                # A pod that has a node is never unscheduled (kube-scheduler takes only pods without
                # spec.nodeName, pkg/scheduler/eventhandlers.go). An unreachable node leaves it
                # bound and Running, not Ready (the node lifecycle controller marks it NotReady;
                # DaemonSet pods tolerate the unreachable taints, pkg/controller/daemon/util
                # AddOrUpdateDaemonPodTolerations). A node that rebooted with too few hugepages makes
                # the kubelet reject it at admission (Failed, "OutOfhugepages-2Mi",
                # pkg/kubelet/lifecycle/predicate.go); the DaemonSet controller deletes a failed
                # daemon pod and makes a new one, which the scheduler then cannot place.
                if detail.startswith("Insufficient"):
                    ctx.store.delete("v1", "Pod", pod["metadata"]["name"], rel.namespace)
                    continue
                verdict = "running"
            if verdict != "pending":
                pod = _bind(ctx, pod, name)
            _set_pod(ctx, pod, verdict, detail, nnodes, node_ready(node))
        write_status(ctx, ds, {"desiredNumberScheduled": len(want), "currentNumberScheduled": len(want),
                               "numberMisscheduled": 0, "updatedNumberScheduled": len(want),
                               "numberReady": sum(1 for n in want if running.get(n)) if app == "io-engine" else
                               sum(1 for n in want if (ctx.node_by_hostname(n) is None or
                                                       ctx.node_by_hostname(n).has_module("nvme_tcp"))),
                               "observedGeneration": ds["metadata"].get("generation", 1)}, "daemonset-controller")
    return running


def _affinity_node(pod: dict) -> str | None:
    try:
        return pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"][0]["matchFields"][0]["values"][0]
    except (KeyError, IndexError, TypeError):
        return None


def disk_slot(device: str) -> str | None:
    """``/dev/sdb`` -> ``scsi1``; ``/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_drive-scsi1`` -> ``scsi1``."""
    d = re.sub(r"^(aio|uring)://", "", device)
    m = re.fullmatch(r"/dev/sd([a-z])", d)
    if m:
        return f"scsi{ord(m.group(1)) - ord('a')}"
    m = re.fullmatch(r"/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_drive-(scsi\d+)", d)
    return m.group(1) if m else None


def pools(ctx) -> list[dict]:
    for av in DISKPOOL_VERSIONS:
        got = items(ctx, av, "DiskPool")
        if got:
            return got
    return []


def _pv_usage(ctx) -> dict[str, int]:
    """Pool name -> bytes its replicas take (thick: size; thin: written bytes)."""
    out: dict[str, int] = {}
    for pv in items(ctx, "v1", "PersistentVolume"):
        ann = pv["metadata"].get("annotations") or {}
        if (pv["spec"].get("csi") or {}).get("driver") != MAYASTOR_DRIVER:
            continue
        size = quantity_bytes((pv["spec"].get("capacity") or {}).get("storage", "0"))
        thin = ((pv["spec"].get("csi") or {}).get("volumeAttributes") or {}).get("thin") == "true"
        vol = ctx.volumes.get(pv["metadata"]["name"])
        use = (vol.used_bytes if vol else 0) if thin else size
        for p in filter(None, (ann.get("falkit.twin/replicas") or "").split(",")):
            out[p] = out.get(p, 0) + use
    return out


def reconcile_pools(ctx, running: dict[str, bool], vms) -> dict[str, dict]:
    """Status of every DiskPool; returns name -> status."""
    by_id = {v.vmid: v for v in vms or []}
    usage = _pv_usage(ctx)
    out = {}
    for pool in pools(ctx):
        name, spec = pool["metadata"]["name"], pool.get("spec") or {}
        old = pool.get("status") or {}
        node, disks = spec.get("node", ""), spec.get("disks") or []
        tn = ctx.node_by_hostname(node)
        vm = by_id.get(tn.vmid) if tn and tn.vmid is not None else None
        slot = disk_slot(disks[0]) if disks else None
        disk = next((d for d in vm.disks if d.slot == slot), None) if vm else None
        problem = None
        if not running.get(node):
            problem = f'io-engine is not running on node "{node}"'
        elif vms is None:
            problem = "cannot inspect the node's disks (the twin's Proxmox does not answer)"
        elif disk is None:
            problem = (f"create_pool failed: pool \"{name}\" on node \"{node}\": Failed to create a BDEV "
                       f"'{disks[0] if disks else ''}': No such device (os error 19)")
        created = old.get("cr_state") == "Created"
        if problem:
            st = {"cr_state": "Created" if created else "Creating", "pool_status": "Unknown",
                  "capacity": old.get("capacity", 0), "used": old.get("used", 0), "available": old.get("available", 0)}
            record_event(ctx, pool, "Failed" if disk is None and running.get(node) else "NodeUnavailable", problem,
                         "Warning", "operator-diskpool")
        else:
            cap, used = disk.size_bytes, usage.get(name, 0)
            st = {"cr_state": "Created", "pool_status": "Degraded" if name in ctx.faults.diskpool_degraded else "Online",
                  "capacity": cap, "used": used, "available": max(0, cap - used)}
            if not created:
                record_event(ctx, pool, "Created", f"Created or imported pool {name}", "Normal", "operator-diskpool")
        write_status(ctx, pool, st, MANAGER)
        out[name] = {**st, "node": node}
    return out


def _pvc_request(pvc: dict) -> int:
    return quantity_bytes(((pvc.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage", "0"))


def _provision(ctx, pvc: dict, sc: dict, placement: list[str], nodes_of: list[str], driver: str) -> None:
    md = pvc["metadata"]
    pv_name = f"pvc-{md['uid']}"
    size = pvc["spec"]["resources"]["requests"]["storage"]
    params = sc.get("parameters") or {}
    pv = {"apiVersion": "v1", "kind": "PersistentVolume",
          "metadata": {"name": pv_name, "annotations": {
              "pv.kubernetes.io/provisioned-by": driver, "volume.kubernetes.io/provisioner-deletion-secret-name": "",
              "falkit.twin/replicas": ",".join(placement), "falkit.twin/replica-nodes": ",".join(nodes_of),
              "falkit.twin/volume-state": "healthy"}},
          "spec": {"capacity": {"storage": size}, "accessModes": pvc["spec"].get("accessModes") or ["ReadWriteOnce"],
                   "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy", "Delete"),
                   "storageClassName": sc["metadata"]["name"], "volumeMode": pvc["spec"].get("volumeMode", "Filesystem"),
                   "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": md["namespace"],
                                "name": md["name"], "uid": md["uid"], "resourceVersion": md["resourceVersion"]},
                   "csi": {"driver": driver, "volumeHandle": md["uid"], "fsType": params.get("fsType", "ext4"),
                           "volumeAttributes": {k: str(v) for k, v in params.items()}}}}
    if ctx.store.try_get("v1", "PersistentVolume", pv_name) is None:
        pv = ctx.store.create(pv, field_manager="csi-provisioner")
    else:
        pv = ctx.store.get("v1", "PersistentVolume", pv_name)
    write_status(ctx, pv, {"phase": "Bound"}, "persistentvolume-binder")
    pvc["spec"]["volumeName"] = pv_name
    pvc["metadata"].setdefault("annotations", {}).update({
        "pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes",
        "volume.kubernetes.io/storage-provisioner": driver, "volume.beta.kubernetes.io/storage-provisioner": driver})
    pvc = ctx.store.update(pvc, field_manager="persistentvolume-binder")
    write_status(ctx, pvc, {"phase": "Bound", "accessModes": pv["spec"]["accessModes"],
                            "capacity": {"storage": size}}, "persistentvolume-binder")
    ctx.volumes.setdefault(pv_name, VolumeData(pv_name, md["namespace"], md["name"], driver, quantity_bytes(size)))
    ctx.volumes[pv_name].replicas = list(placement)
    record_event(ctx, pvc, "ProvisioningSucceeded", f'Successfully provisioned volume {pv_name}', "Normal",
                 f"{driver}_csi-controller")


def reconcile_volumes(ctx, pool_status: dict[str, dict]) -> None:
    classes = {sc["metadata"]["name"]: sc for sc in items(ctx, "storage.k8s.io/v1", "StorageClass")}
    for pvc in items(ctx, "v1", "PersistentVolumeClaim"):
        if pvc["spec"].get("volumeName") or (pvc.get("status") or {}).get("phase") == "Bound":
            continue
        sc = classes.get(pvc["spec"].get("storageClassName") or "")
        if sc is None:
            continue
        req = _pvc_request(pvc)
        params = sc.get("parameters") or {}
        if sc.get("provisioner") == MAYASTOR_DRIVER and release(ctx) is not None:
            repl = int(str(params.get("repl", "1")))
            thin = str(params.get("thin", "false")) == "true"
            online = sorted((p for p in pool_status.items() if p[1]["pool_status"] == "Online"
                             and (p[1]["capacity"] >= req if thin else p[1]["available"] >= req)),
                            key=lambda p: (-p[1]["available"], p[0]))
            chosen: dict[str, str] = {}
            for name, st in online:
                chosen.setdefault(st["node"], name)
            if len(chosen) < repl:
                msg = (f'failed to provision volume with StorageClass "{sc["metadata"]["name"]}": rpc error: code = '
                       f'ResourceExhausted desc = Operation failed: ResourceExhausted("not enough suitable pools '
                       f'available, {len(chosen)}/{repl}")')
                record_event(ctx, pvc, "ProvisioningFailed", msg, "Warning", f"{MAYASTOR_DRIVER}_csi-controller")
                continue
            picked = sorted(chosen.items(), key=lambda kv: kv[1])[:repl]
            _provision(ctx, pvc, sc, [p for _, p in picked], [n for n, _ in picked], MAYASTOR_DRIVER)
        elif sc.get("provisioner") == LONGHORN_DRIVER:
            managers = sorted({p["spec"].get("nodeName") for p in items(ctx, "v1", "Pod", label_selector="app=longhorn-manager")
                               if (p.get("status") or {}).get("phase") == "Running" and p["spec"].get("nodeName")})
            if managers:
                n = int(str(params.get("numberOfReplicas", "3")))
                _provision(ctx, pvc, sc, [f"longhorn-replica@{m}" for m in managers[:n]], managers[:n], LONGHORN_DRIVER)


def reconcile_degradation(ctx, pool_status: dict[str, dict]) -> None:
    for pv in items(ctx, "v1", "PersistentVolume"):
        if (pv["spec"].get("csi") or {}).get("driver") != MAYASTOR_DRIVER:
            continue
        ann = pv["metadata"].get("annotations") or {}
        reps = [p for p in (ann.get("falkit.twin/replicas") or "").split(",") if p]
        ok = [p for p in reps if (pool_status.get(p) or {}).get("pool_status") in ("Online", "Degraded")]
        state = "healthy" if len(ok) == len(reps) else ("degraded" if ok else "faulted")
        vol = ctx.volumes.get(pv["metadata"]["name"])
        if vol is not None:
            vol.state = state
        if ann.get("falkit.twin/volume-state") != state:
            ctx.store.patch("v1", "PersistentVolume", pv["metadata"]["name"],
                            {"metadata": {"annotations": {"falkit.twin/volume-state": state}}}, field_manager=MANAGER)


async def reconcile(ctx) -> None:  # noqa: ANN001 - LabContext
    vms = await pve_vms(ctx)
    rel = release(ctx)
    running = reconcile_pods(ctx, rel, vms) if rel is not None else {}
    status = reconcile_pools(ctx, running, vms)
    reconcile_volumes(ctx, status)
    reconcile_degradation(ctx, status)


async def run(ctx) -> None:  # noqa: ANN001 - LabContext
    while True:  # pragma: no cover - loop shell; reconcile() is what tests drive
        try:
            await reconcile(ctx)
        except Exception:  # noqa: BLE001 - a controller never dies; the next pass retries
            log.exception("mayastor reconcile failed")
        await ctx.wait_change()
