"""The twin's scheduler, kubelet and workload controllers: Deployments, StatefulSets, DaemonSets and
Jobs become Pods (the Job controller itself -- Jobs that run and leave a pod log -- is
:mod:`falkit.twin.lab.jobs`; :func:`reconcile` drives it too).

Pods (as kube-controller-manager + kube-scheduler + kubelet would make them):

* Deployment -> ReplicaSet ``<deploy>-<template hash>`` -> Pods ``<rs>-<5 chars>``; StatefulSet ->
  Pods ``<sts>-<ordinal>`` (and PVCs ``<template>-<sts>-<ordinal>`` from volumeClaimTemplates);
  DaemonSet -> one Pod per node matching its nodeSelector; Job -> one Pod ``<job>-<5 chars>``.
  Labels, ``ownerReferences`` (controller: true) and ``pod-template-hash`` /
  ``controller-revision-hash`` / ``job-name`` labels as upstream sets them.
* Scheduling: a Ready node matching ``nodeSelector`` whose ``NoSchedule`` taints the pod tolerates,
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

import hashlib
import json
import logging
from typing import Any

from falkit.twin.kube.objects import now_iso

log = logging.getLogger(__name__)
MANAGER = "falkit-twin-workloads"
_CHARS = "bcdfghjklmnpqrstvwxz2456789"
MAYASTOR_DRIVER = "io.openebs.csi-mayastor"
LONGHORN_DRIVER = "driver.longhorn.io"


# --- helpers shared by the lab's controllers -----------------------------------------------------------

def suffix(seed: str, n: int = 5) -> str:
    """A stable name suffix in the apiserver's alphabet (stable so reconciles are idempotent)."""
    h = hashlib.sha256(seed.encode()).digest()
    return "".join(_CHARS[b % len(_CHARS)] for b in h[:n])


def items(ctx, api_version: str, kind: str, namespace: str | None = None, **kw) -> list[dict]:
    """Objects of a kind; ``[]`` when the kind is not served (CRD not installed)."""
    try:
        return ctx.store.list(api_version, kind, namespace, **kw)["items"]
    except Exception as e:  # noqa: BLE001 - ApiError 404: kind not served
        if getattr(e, "code", None) == 404:
            return []
        raise


def node_ready(node: dict) -> bool:
    conds = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def nodes(ctx) -> list[dict]:
    return items(ctx, "v1", "Node")


def set_condition(conds: list[dict], ctype: str, status: str, reason: str, message: str = "",
                  generation: int | None = None) -> list[dict]:
    """``meta.SetStatusCondition``: keep lastTransitionTime unless the status flips."""
    out = [dict(c) for c in conds or []]
    old = next((c for c in out if c.get("type") == ctype), None)
    new = {"type": ctype, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": old["lastTransitionTime"] if old and old.get("status") == status else now_iso()}
    if generation is not None:
        new["observedGeneration"] = generation
    if old is None:
        out.append(new)
    else:
        out[out.index(old)] = new
    return out


def write_status(ctx, obj: dict, status: dict, manager: str = MANAGER) -> dict | None:
    """Replace ``obj``'s status if it differs (no-op writes keep the resourceVersion quiet)."""
    if (obj.get("status") or {}) == status:
        return None
    md = obj["metadata"]
    try:
        return ctx.store.patch(obj["apiVersion"], obj["kind"], md["name"],
                               [{"op": "add", "path": "/status", "value": status}], namespace=md.get("namespace"),
                               patch_type="json", subresource="status", field_manager=manager)
    except Exception as e:  # noqa: BLE001 - deleted meanwhile / kind without status subresource
        if getattr(e, "code", None) == 404:
            return None
        if getattr(e, "code", None) in (405, 400):
            return ctx.store.patch(obj["apiVersion"], obj["kind"], md["name"], {"status": status},
                                   namespace=md.get("namespace"), patch_type="merge", field_manager=manager)
        raise


def record_event(ctx, obj: dict, reason: str, message: str, etype: str = "Normal",
                 component: str = "falkit-twin") -> None:
    """A core/v1 Event about ``obj`` (one per (object, reason, message); count bumps on repeats)."""
    md = obj["metadata"]
    ns = md.get("namespace") or "default"
    name = f"{md['name']}.{suffix(md.get('uid', '') + reason + message, 10)}"
    old = ctx.store.try_get("v1", "Event", name, ns)
    if old is not None:
        return
    ctx.store.create({"apiVersion": "v1", "kind": "Event",
                      "metadata": {"name": name, "namespace": ns},
                      "involvedObject": {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
                                         "name": md["name"], "namespace": md.get("namespace"),
                                         "uid": md.get("uid")},
                      "reason": reason, "message": message, "type": etype, "count": 1,
                      "source": {"component": component}, "firstTimestamp": now_iso(),
                      "lastTimestamp": now_iso(), "reportingComponent": component},
                     field_manager=MANAGER)


def events_for(ctx, obj: dict) -> list[dict]:
    md = obj["metadata"]
    return [e for e in items(ctx, "v1", "Event", md.get("namespace") or "default")
            if (e.get("involvedObject") or {}).get("name") == md["name"]
            and (e.get("involvedObject") or {}).get("kind") == obj.get("kind")]


def owner_ref(obj: dict) -> dict:
    md = obj["metadata"]
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": md["name"], "uid": md["uid"],
            "controller": True, "blockOwnerDeletion": True}


def owned_by(obj: dict, owner: dict) -> bool:
    return any(r.get("uid") == owner["metadata"]["uid"] for r in obj["metadata"].get("ownerReferences") or [])


def match_labels(labels: dict, selector: dict | None) -> bool:
    """A LabelSelector (matchLabels + matchExpressions); None/{} selects everything."""
    if not selector:
        return True
    labels = labels or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        k, op, vals = e.get("key"), e.get("operator"), e.get("values") or []
        if (op == "In" and labels.get(k) not in vals) or (op == "NotIn" and labels.get(k) in vals) \
                or (op == "Exists" and k not in labels) or (op == "DoesNotExist" and k in labels):
            return False
    return True


# --- scheduling ----------------------------------------------------------------------------------

def _tolerates(pod_spec: dict, taint: dict) -> bool:
    for t in pod_spec.get("tolerations") or []:
        if t.get("operator") == "Exists" and not t.get("key"):
            return True
        if t.get("key") == taint.get("key") and (t.get("operator") == "Exists" or t.get("value") == taint.get("value")):
            return True
    return False


def eligible_nodes(ctx, pod_spec: dict, *, ready_only: bool = True) -> list[dict]:
    """Nodes a pod may be placed on: ``nodeSelector`` matches and every NoSchedule/NoExecute taint
    is tolerated. ``ready_only=False`` is the DaemonSet controller's view: it also places pods on
    NotReady nodes and tolerates the node-condition taints (``node.kubernetes.io/*``) itself, but
    not e.g. Talos' ``node-role.kubernetes.io/control-plane:NoSchedule``."""
    out = []
    for n in nodes(ctx):
        if ready_only and not node_ready(n):
            continue
        if any((n["metadata"].get("labels") or {}).get(k) != v for k, v in (pod_spec.get("nodeSelector") or {}).items()):
            continue
        taints = [t for t in (n.get("spec") or {}).get("taints") or [] if t.get("effect") in ("NoSchedule", "NoExecute")
                  and (ready_only or not str(t.get("key", "")).startswith("node.kubernetes.io/"))]
        if all(_tolerates(pod_spec, t) for t in taints):
            out.append(n)
    return out


def _pvc_names(pod_spec: dict) -> list[str]:
    return [v["persistentVolumeClaim"]["claimName"] for v in pod_spec.get("volumes") or []
            if isinstance(v.get("persistentVolumeClaim"), dict)]


def csi_node_running(ctx, node: str) -> bool:
    """True when a Running Mayastor csi-node pod is on ``node`` (its kubelet plugin is registered)."""
    return any(p["spec"].get("nodeName") == node and (p.get("status") or {}).get("phase") == "Running"
               for p in items(ctx, "v1", "Pod", label_selector="app=csi-node"))


def _pod_state(ctx, pod: dict, nnodes: int) -> tuple[dict, list[tuple[str, str, str]]]:
    """(status, events) of a pod: scheduled + volumes bound -> Running, else Pending."""
    spec, ns = pod["spec"], pod["metadata"]["namespace"]
    events = []
    node = spec.get("nodeName")
    unbound = [c for c in _pvc_names(spec)
               if ((ctx.store.try_get("v1", "PersistentVolumeClaim", c, ns) or {}).get("status") or {}).get("phase") != "Bound"]
    st: dict[str, Any] = {"phase": "Pending", "qosClass": (pod.get("status") or {}).get("qosClass", "BestEffort")}
    if node and (pod.get("status") or {}).get("phase") == "Running":
        # Scheduling is once: a pod bound to a node is never unscheduled (the scheduler only takes
        # pods without spec.nodeName, pkg/scheduler/eventhandlers.go assignedPod/unassignedPod), and
        # the kubelet keeps a started pod's mounted volumes (a PVC in use by a pod is held by the
        # kubernetes.io/pvc-protection finalizer, pkg/controller/volume/pvcprotection). It stays Running.
        unbound = []
    elif node and unbound:
        # bound to a node but a claim is not (e.g. deleted): the kubelet's volume manager waits and
        # reports FailedMount (pkg/kubelet/volumemanager/volume_manager.go WaitForAttachAndMount:
        # "unmounted volumes=%v, unattached volumes=%v, failed to process volumes=%v: %s"); the pod
        # keeps PodScheduled=True -- no FailedScheduling for a pod that has a node.
        vols = sorted(v["name"] for v in spec.get("volumes") or []
                      if (v.get("persistentVolumeClaim") or {}).get("claimName") in unbound)
        msg = (f"Unable to attach or mount volumes: unmounted volumes=[{' '.join(vols)}], unattached volumes=[], "
               f"failed to process volumes=[{' '.join(vols)}]: context deadline exceeded")
        st["conditions"] = set_condition((pod.get("status") or {}).get("conditions"), "PodScheduled", "True", "", "")
        st["containerStatuses"] = [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False,
                                    "restartCount": 0, "started": False,
                                    "state": {"waiting": {"reason": "ContainerCreating"}}}
                                   for c in spec.get("containers") or []]
        events.append(("FailedMount", msg, "Warning"))
        return st, events
    if unbound or not node:
        why = "pod has unbound immediate PersistentVolumeClaims" if unbound else \
            "0 nodes matched the pod's node selector and tolerations"
        msg = f"0/{nnodes} nodes are available: {why}. preemption: 0/{nnodes} nodes are available: " \
              f"{nnodes} Preemption is not helpful for scheduling."
        st["conditions"] = set_condition((pod.get("status") or {}).get("conditions"), "PodScheduled", "False",
                                         "Unschedulable", msg)
        events.append(("FailedScheduling", msg, "Warning"))
        return st, events
    st["conditions"] = set_condition((pod.get("status") or {}).get("conditions"), "PodScheduled", "True", "", "")
    for c in _pvc_names(spec):
        pv = ((ctx.store.try_get("v1", "PersistentVolumeClaim", c, ns) or {}).get("spec") or {}).get("volumeName")
        pvo = ctx.store.try_get("v1", "PersistentVolume", pv) if pv else None
        if pvo and ((pvo["spec"].get("csi") or {}).get("driver") == MAYASTOR_DRIVER) and not csi_node_running(ctx, node):
            msg = (f'MountVolume.MountDevice failed for volume "{pv}" : kubernetes.io/csi: attacher.MountDevice failed '
                   f"to create newCsiDriverClient: driver name {MAYASTOR_DRIVER} not found in the list of registered "
                   "CSI drivers")
            events.append(("FailedMount", msg, "Warning"))
            st["containerStatuses"] = [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False,
                                        "restartCount": 0, "started": False,
                                        "state": {"waiting": {"reason": "ContainerCreating"}}}
                                       for c in spec.get("containers") or []]
            return st, events
    st["hostIP"] = st["podIP"] = _node_ip(ctx, node)
    return st, events


def _node_ip(ctx, name: str) -> str:
    n = ctx.store.try_get("v1", "Node", name) or {}
    return next((a["address"] for a in (n.get("status") or {}).get("addresses") or [] if a.get("type") == "InternalIP"),
                "")


def _running(pod: dict, st: dict, node_is_ready: bool) -> dict:
    old = pod.get("status") or {}
    started = old.get("startTime") or now_iso()
    st.update(phase="Running", startTime=started)
    ready = "True" if node_is_ready else "False"
    for t in ("Initialized", "ContainersReady", "Ready"):
        st["conditions"] = set_condition(st["conditions"], t, "True" if t == "Initialized" else ready, "", "")
    st["containerStatuses"] = [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": ready == "True",
                                "restartCount": 0, "started": True, "state": {"running": {"startedAt": started}}}
                               for c in pod["spec"].get("containers") or []]
    return st


def _choose_node(ctx, pod_spec: dict, counts: dict[str, int]) -> str | None:
    cands = eligible_nodes(ctx, pod_spec)
    if not cands:
        return None
    best = min(cands, key=lambda n: (counts.get(n["metadata"]["name"], 0), n["metadata"]["name"]))
    return best["metadata"]["name"]


# --- workload controllers ------------------------------------------------------------------------

def _pod_from_template(owner: dict, name: str, extra_labels: dict, node: str | None) -> dict:
    tpl = owner["spec"].get("template") or {}
    md = tpl.get("metadata") or {}
    spec = json.loads(json.dumps(tpl.get("spec") or {}))
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": owner["metadata"]["namespace"],
                         "labels": {**(md.get("labels") or {}), **extra_labels},
                         "annotations": dict(md.get("annotations") or {}),
                         "ownerReferences": [owner_ref(owner)]},
            "spec": spec}


def _foreign(obj: dict) -> bool:
    ctl = ((obj["metadata"].get("annotations") or {}).get("falkit.twin/controller"))
    return bool(ctl) and ctl != "workloads"


def _ensure_pods(ctx, owner: dict, want: list[tuple[str, dict, str | None]], counts: dict[str, int]) -> list[dict]:
    """Create missing pods ``(name, labels, node)``, delete owned pods not wanted; return current."""
    ns = owner["metadata"]["namespace"]
    have = {p["metadata"]["name"]: p for p in items(ctx, "v1", "Pod", ns) if owned_by(p, owner)}
    names = {w[0] for w in want}
    for n in have:
        if n not in names:
            ctx.store.delete("v1", "Pod", n, ns)
    out = []
    for name, labels, node in want:
        pod = have.get(name)
        if pod is None:
            pod = _pod_from_template(owner, name, labels, node)
            node = node or pod["spec"].get("nodeName")
            if not node:
                node = _choose_node(ctx, pod["spec"], counts)
                if node:
                    pod["spec"]["nodeName"] = node
            if node:
                counts[node] = counts.get(node, 0) + 1
            pod = ctx.store.create(pod, field_manager=MANAGER)
        elif not pod["spec"].get("nodeName"):
            node = _choose_node(ctx, pod["spec"], counts)
            if node:  # bind (the scheduler's pods/binding)
                pod["spec"]["nodeName"] = node
                counts[node] = counts.get(node, 0) + 1
                pod = ctx.store.update(pod, field_manager="default-scheduler")
        out.append(pod)
    return out


def reconcile_pods(ctx, pods: list[dict], nnodes: int) -> int:
    """Bring pod statuses up to date; returns how many are Ready."""
    ready = 0
    for pod in pods:
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        st, evs = _pod_state(ctx, pod, nnodes)
        node = pod["spec"].get("nodeName")
        if st.get("hostIP") is not None and "containerStatuses" not in st:
            n = ctx.store.try_get("v1", "Node", node) or {}
            st = _running(pod, st, node_ready(n))
        for reason, msg, etype in evs:
            record_event(ctx, pod, reason, msg, etype, "default-scheduler" if reason == "FailedScheduling" else "kubelet")
        write_status(ctx, pod, st)
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or []):
            ready += 1
    return ready


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
    ready = reconcile_pods(ctx, _ensure_pods(ctx, rs, want, counts), nnodes)
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
    pods = _ensure_pods(ctx, s, want, counts)
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
    ready = reconcile_pods(ctx, _ensure_pods(ctx, d, want, counts), nnodes)
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


async def pve_vms(ctx):  # noqa: ANN201 - list[Vm] | None
    """The twin Proxmox's VMs, or None when there is no Proxmox to ask (or it does not answer)."""
    if ctx.pve is None:
        return None
    try:
        return await ctx.pve.vms()
    except Exception:  # noqa: BLE001 - PveUnavailableError and transport errors
        return None


async def pve_bridges(ctx):  # noqa: ANN201 - set[str] | None
    """The bridges that exist on the twin Proxmox's node, or None when it does not answer."""
    try:
        return await ctx.pve.bridges()
    except Exception:  # noqa: BLE001 - PveUnavailableError and transport errors
        return None


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
            if not _foreign(obj) and not obj["metadata"].get("deletionTimestamp"):
                fn(ctx, obj, counts, nnodes)
    from .jobs import _reconcile_job  # here: jobs imports this module's helpers

    jobs = [j for j in items(ctx, "batch/v1", "Job") if not _foreign(j)]
    bridges = await pve_bridges(ctx) if vms is not None and any(
        (j["metadata"].get("labels") or {}).get("falkit.io/job") == "ping" for j in jobs) else None
    for job in jobs:
        _reconcile_job(ctx, job, counts, nnodes, vms, bridges)


async def run(ctx) -> None:  # noqa: ANN001 - LabContext
    """Reconcile every workload on every store change (and every ``ctx.tick``)."""
    while True:  # pragma: no cover - loop shell; reconcile() is what tests drive
        try:
            await reconcile(ctx)
        except Exception:  # noqa: BLE001 - a controller never dies; the next pass retries
            log.exception("workloads reconcile failed")
        await ctx.wait_change()
