"""The twin's scheduler, kubelet and workload controllers: Deployments, StatefulSets, DaemonSets and
Jobs become Pods (the Job controller itself -- Jobs that run and leave a pod log -- is
:mod:`falkit.twin.lab.jobs`; :func:`reconcile` drives it too).

Pods (as kube-controller-manager + kube-scheduler + kubelet would make them):

* Deployment -> ReplicaSet ``<deploy>-<template hash>`` -> Pods ``<rs>-<5 chars>``; StatefulSet ->
  Pods ``<sts>-<ordinal>`` (and PVCs ``<template>-<sts>-<ordinal>`` from volumeClaimTemplates);
  DaemonSet -> one Pod per node matching its nodeSelector; Job -> one Pod ``<job>-<5 chars>``.
  Labels, ``ownerReferences`` (controller: true) and ``pod-template-hash`` /
  ``controller-revision-hash`` / ``job-name`` labels as upstream sets them.
* Scheduling and pod state (:mod:`falkit.twin.lab.pods`, which the other controllers share):
  a Ready node matching ``nodeSelector`` whose ``NoSchedule`` taints the pod tolerates,
  fewest pods first. A pod is Running + Ready when it is scheduled and every PVC it mounts is Bound
  (and, for a Mayastor volume, the node's ``csi-node`` pod runs — else kubelet's FailedMount "driver
  name io.openebs.csi-mayastor not found in the list of registered CSI drivers"). Otherwise Pending
  with the scheduler's ``Unschedulable`` message.
* Workload ``status`` (replicas/readyReplicas/availableReplicas/updatedReplicas/observedGeneration;
  DaemonSet ``desiredNumberScheduled``/``numberReady``...). Scaling to 0 deletes the pods.
* A pod that has a node never goes back to Pending/FailedScheduling: Running stays Running when
  its claim goes; a bound pod whose claim is not Bound waits with kubelet's FailedMount.
* PV controller: a Bound PV whose claim is gone goes Released; reclaimPolicy Delete then deletes
  the PV and its volume data (freeing the Mayastor pool space), Retain leaves it Released
  (:func:`reconcile_released_volumes`).
* Workloads annotated ``falkit.twin/controller: <other>`` are someone else's (e.g. Mayastor's
  io-engine/csi-node DaemonSets, owned by :mod:`falkit.twin.lab.mayastor`).
"""

from __future__ import annotations

import json
import logging

from .jobs import reconcile_job
from .pods import (
    eligible_nodes,
    ensure_pods,
    foreign,
    items,
    nodes,
    owned_by,
    owner_ref,
    pve_bridges,
    pve_vms,
    reconcile_pods,
    set_condition,
    suffix,
    write_status,
)

log = logging.getLogger(__name__)


def _template_hash(obj: dict) -> str:
    return suffix(json.dumps(obj["spec"].get("template") or {}, sort_keys=True), 10)


def _reconcile_deployment(ctx, d: dict, counts: dict, nnodes: int) -> None:
    ns, name = d["metadata"]["namespace"], d["metadata"]["name"]
    h = _template_hash(d)
    rs_name = f"{name}-{h}"
    replicas = int(d["spec"].get("replicas", 1))
    rs = ctx.store.try_get("apps/v1", "ReplicaSet", rs_name, ns)
    tpl = json.loads(json.dumps(d["spec"].get("template") or {}))
    tpl.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = h
    for old in items(ctx, "apps/v1", "ReplicaSet", ns):
        if owned_by(old, d) and old["metadata"]["name"] != rs_name:
            for p in items(ctx, "v1", "Pod", ns):
                if owned_by(p, old):
                    ctx.store.delete("v1", "Pod", p["metadata"]["name"], ns)
            ctx.store.delete("apps/v1", "ReplicaSet", old["metadata"]["name"], ns)
    body = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": rs_name, "namespace": ns, "labels": dict(tpl["metadata"]["labels"]),
                         "ownerReferences": [owner_ref(d)]},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {**((d["spec"].get("selector") or {})
                                                                            .get("matchLabels") or {}),
                                                                         "pod-template-hash": h}},
                     "template": tpl}}
    if rs is None:
        rs = ctx.store.create(body, field_manager="deployment-controller")
    elif rs["spec"].get("replicas") != replicas:
        rs["spec"]["replicas"] = replicas
        rs = ctx.store.update(rs, field_manager="deployment-controller")
    want = [(f"{rs_name}-{suffix(rs_name + str(i))}", {"pod-template-hash": h}, None) for i in range(replicas)]
    ready = reconcile_pods(ctx, ensure_pods(ctx, rs, want, counts), nnodes)
    st = {"replicas": replicas, "readyReplicas": ready, "availableReplicas": ready, "fullyLabeledReplicas": replicas,
          "observedGeneration": rs["metadata"].get("generation", 1)}
    write_status(ctx, rs, {k: v for k, v in st.items() if v or k == "replicas"})
    dst = {"replicas": replicas, "updatedReplicas": replicas, "readyReplicas": ready, "availableReplicas": ready,
           "unavailableReplicas": replicas - ready, "observedGeneration": d["metadata"].get("generation", 1)}
    dst = {k: v for k, v in dst.items() if v or k in ("replicas", "observedGeneration")}
    avail = "True" if ready >= replicas else "False"
    dst["conditions"] = set_condition((d.get("status") or {}).get("conditions"), "Available", avail,
                                      "MinimumReplicasAvailable" if avail == "True" else "MinimumReplicasUnavailable",
                                      "Deployment has minimum availability." if avail == "True"
                                      else "Deployment does not have minimum availability.")
    write_status(ctx, d, dst, "deployment-controller")


def _reconcile_statefulset(ctx, s: dict, counts: dict, nnodes: int) -> None:
    ns, name = s["metadata"]["namespace"], s["metadata"]["name"]
    replicas = int(s["spec"].get("replicas", 1))
    rev = f"{name}-{_template_hash(s)}"
    for i in range(replicas):
        for vct in s["spec"].get("volumeClaimTemplates") or []:
            pvc = f"{vct['metadata']['name']}-{name}-{i}"
            if ctx.store.try_get("v1", "PersistentVolumeClaim", pvc, ns) is None:
                ctx.store.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                  "metadata": {"name": pvc, "namespace": ns,
                                               "labels": dict((s["spec"].get("selector") or {}).get("matchLabels") or {})},
                                  "spec": json.loads(json.dumps(vct.get("spec") or {}))},
                                 field_manager="statefulset-controller")
    want = [(f"{name}-{i}", {"statefulset.kubernetes.io/pod-name": f"{name}-{i}", "apps.kubernetes.io/pod-index": str(i),
                             "controller-revision-hash": rev}, None) for i in range(replicas)]
    pods = ensure_pods(ctx, s, want, counts)
    for p in pods:  # volumeClaimTemplates become the pod's volumes
        vols = {v["name"] for v in p["spec"].get("volumes") or []}
        add = [{"name": t["metadata"]["name"], "persistentVolumeClaim":
                {"claimName": f"{t['metadata']['name']}-{p['metadata']['name']}"}}
               for t in s["spec"].get("volumeClaimTemplates") or [] if t["metadata"]["name"] not in vols]
        if add:
            p["spec"]["volumes"] = (p["spec"].get("volumes") or []) + add
            pods[pods.index(p)] = ctx.store.update(p, field_manager="statefulset-controller")
    ready = reconcile_pods(ctx, pods, nnodes)
    st = {"replicas": replicas, "readyReplicas": ready, "availableReplicas": ready, "currentReplicas": replicas,
          "updatedReplicas": replicas, "currentRevision": rev, "updateRevision": rev,
          "observedGeneration": s["metadata"].get("generation", 1)}
    write_status(ctx, s, st, "statefulset-controller")


def _reconcile_daemonset(ctx, d: dict, counts: dict, nnodes: int) -> None:
    name = d["metadata"]["name"]
    spec = (d["spec"].get("template") or {}).get("spec") or {}
    targets = [n["metadata"]["name"] for n in eligible_nodes(ctx, spec, ready_only=False)]
    want = [(f"{name}-{suffix(name + n)}", {"controller-revision-hash": _template_hash(d)}, n) for n in targets]
    ready = reconcile_pods(ctx, ensure_pods(ctx, d, want, counts), nnodes)
    st = {"desiredNumberScheduled": len(targets), "currentNumberScheduled": len(targets), "numberMisscheduled": 0,
          "numberReady": ready, "numberAvailable": ready, "updatedNumberScheduled": len(targets),
          "observedGeneration": d["metadata"].get("generation", 1)}
    if len(targets) - ready:
        st["numberUnavailable"] = len(targets) - ready
    write_status(ctx, d, st, "daemonset-controller")


def reconcile_released_volumes(ctx) -> None:
    """kube-controller-manager's PV controller for claims that are gone
    (pkg/controller/volume/persistentvolume/pv_controller.go, syncVolume: a Bound volume whose
    claimRef names a claim that no longer exists -- or a claim with another uid -- is set to phase
    ``Released`` ("Volume is released and reclaim policy will be executed"); then reclaimVolume:
    ``Retain`` leaves it Released for an admin, ``Delete`` deletes it -- for a CSI volume the
    external-provisioner deletes the backend volume, then the PV object (docs "Persistent Volumes",
    Reclaiming: "deletion removes both the PersistentVolume object from Kubernetes, as well as the
    associated storage asset"). The twin's backend volume is ``ctx.volumes[pv]``; a Mayastor pool's
    usage is counted from the PVs (falkit.twin.lab.mayastor._pv_usage), so the space is free again."""
    for pv in items(ctx, "v1", "PersistentVolume"):
        ref = pv["spec"].get("claimRef") or {}
        phase = (pv.get("status") or {}).get("phase")
        if not ref.get("name") or phase not in ("Bound", "Released") or pv["metadata"].get("deletionTimestamp"):
            continue
        claim = ctx.store.try_get("v1", "PersistentVolumeClaim", ref["name"], ref.get("namespace") or "default")
        if claim is not None and (not ref.get("uid") or claim["metadata"].get("uid") == ref.get("uid")):
            continue
        name = pv["metadata"]["name"]
        if phase == "Bound":
            pv = write_status(ctx, pv, {**(pv.get("status") or {}), "phase": "Released"},
                              "persistentvolume-binder") or pv
        if pv["spec"].get("persistentVolumeReclaimPolicy", "Retain") == "Delete":
            try:
                ctx.store.delete("v1", "PersistentVolume", name)
            except Exception as e:  # noqa: BLE001 - ApiError 404: gone meanwhile
                if getattr(e, "code", None) != 404:
                    raise
            ctx.volumes.pop(name, None)


def reconcile_prebound_volumes(ctx) -> None:
    """kube-controller-manager's PV controller for a claim pre-bound to a static volume
    (pkg/controller/volume/persistentvolume/pv_controller.go, syncUnboundClaim: a claim with
    ``spec.volumeName`` naming an existing, unbound volume — whose ``claimRef`` is empty or names
    this claim — is bound to it: the volume's ``claimRef`` gets the claim's uid and phase Bound,
    the claim phase Bound with the volume's capacity and access modes). Dynamic provisioning is
    not this function's (Longhorn/Mayastor provisioners bind their own volumes)."""
    for pvc in items(ctx, "v1", "PersistentVolumeClaim"):
        name = (pvc.get("spec") or {}).get("volumeName")
        if not name or (pvc.get("status") or {}).get("phase") == "Bound":
            continue
        pv = ctx.store.try_get("v1", "PersistentVolume", name)
        if pv is None or (pv.get("status") or {}).get("phase") == "Bound":
            continue
        md = pvc["metadata"]
        ref = pv["spec"].get("claimRef") or {}
        if ref.get("name") and (ref.get("name"), ref.get("namespace")) != (md["name"], md.get("namespace")):
            continue
        ctx.store.patch("v1", "PersistentVolume", name,
                        {"spec": {"claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": md["name"],
                                               "namespace": md.get("namespace"), "uid": md["uid"]}}},
                        field_manager="persistentvolume-binder")
        ctx.store.patch("v1", "PersistentVolume", name, {"status": {"phase": "Bound"}}, subresource="status",
                        field_manager="persistentvolume-binder")
        ctx.store.patch("v1", "PersistentVolumeClaim", md["name"],
                        {"status": {"phase": "Bound", "accessModes": list(pv["spec"].get("accessModes") or []),
                                    "capacity": dict(pv["spec"].get("capacity") or {})}},
                        namespace=md.get("namespace"), subresource="status", field_manager="persistentvolume-binder")



async def reconcile(ctx) -> None:  # noqa: ANN001 - LabContext
    """One pass over every Deployment, StatefulSet, DaemonSet and Job."""
    nnodes = len(nodes(ctx))
    counts: dict[str, int] = {}
    for p in items(ctx, "v1", "Pod"):
        n = p["spec"].get("nodeName")
        if n:
            counts[n] = counts.get(n, 0) + 1
    vms = await pve_vms(ctx)
    reconcile_released_volumes(ctx)
    reconcile_prebound_volumes(ctx)
    for kind, fn in (("Deployment", _reconcile_deployment), ("StatefulSet", _reconcile_statefulset),
                     ("DaemonSet", _reconcile_daemonset)):
        for obj in items(ctx, "apps/v1", kind):
            if not foreign(obj) and not obj["metadata"].get("deletionTimestamp"):
                fn(ctx, obj, counts, nnodes)
    jobs = [j for j in items(ctx, "batch/v1", "Job") if not foreign(j)]
    bridges = await pve_bridges(ctx) if vms is not None and any(
        (j["metadata"].get("labels") or {}).get("falkit.io/job") == "ping" for j in jobs) else None
    for job in jobs:
        reconcile_job(ctx, job, counts, nnodes, vms, bridges)


async def run(ctx) -> None:  # noqa: ANN001 - LabContext
    """Reconcile every workload on every store change (and every ``ctx.tick``)."""
    while True:  # pragma: no cover - loop shell; reconcile() is what tests drive
        try:
            await reconcile(ctx)
        except Exception:  # noqa: BLE001 - a controller never dies; the next pass retries
            log.exception("workloads reconcile failed")
        await ctx.wait_change()
