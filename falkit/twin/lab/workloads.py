"""The twin's scheduler, kubelet and workload controllers: Deployments, StatefulSets, DaemonSets and
Jobs become Pods; Jobs run and leave a pod log.

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
* Workloads annotated ``falkit.twin/controller: <other>`` are someone else's (e.g. Mayastor's
  io-engine/csi-node DaemonSets, owned by :mod:`falkit.twin.lab.mayastor`).

Job contract (the live lab runs the *same* Job specs with real containers; the twin writes the
log those commands print). ``job_manifest(kind, ...)`` builds them:

=============  ============================================  ===========================================
kind (label    annotations                                   pod log
falkit.io/job)
=============  ============================================  ===========================================
fio            label ``app.kubernetes.io/name: falkit-fio``,  fio JSON (``falkit.bench.fio.k8s_job_manifest``);
               ``falkit.io/fio-jobs``, ``falkit.io/bench-``   the twin's is ``falkit.bench.model.
               ``target``                                     fio_json_from_model`` (``falkit_modelled``)
copy           ``falkit.io/source-pvc``, ``falkit.io/target``  ``copied N bytes``
               ``-pvc`` (same namespace)
checksum       ``falkit.io/pvc``                              ``sha256  <hex>`` (sha256 over the sorted
                                                              per-file sha256sum lines)
write          ``falkit.io/pvc``, ``falkit.io/bytes``         ``wrote N bytes`` (fresh random data)
ping           ``falkit.io/targets`` (comma-separated IPs);    one JSON line ``{"node", "results":
               ``spec.nodeName``, hostNetwork                  [{"target", "reachable"}]}``
=============  ============================================  ===========================================

The twin's data model is ``ctx.volumes`` (one checksum per PV); the fault ``corrupt_copy`` (a set of
target PVC names ``ns/name``, or ``*``) makes a copy's checksum differ from its source. Ping
reachability: the source node's Talos addresses and the target share a subnet whose Proxmox bridge
both VMs have a NIC on, and the target address is configured on a Talos node or a running VM of
the spec (TrueNAS, Plex). A modelled log is never a measurement.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
from typing import Any

from falkit.twin.kube.objects import now_iso

log = logging.getLogger(__name__)
MANAGER = "falkit-twin-workloads"
_CHARS = "bcdfghjklmnpqrstvwxz2456789"
MAYASTOR_DRIVER = "io.openebs.csi-mayastor"
LONGHORN_DRIVER = "driver.longhorn.io"
IMAGES = {"copy": "busybox:1.37", "checksum": "busybox:1.37", "write": "busybox:1.37", "ping": "alpine:3.21"}
COMMANDS = {
    "copy": 'cp -a /src/. /dst/ && sync && echo "copied $(du -sb /dst | cut -f1) bytes"',
    "checksum": "printf 'sha256  %s\\n' \"$(cd /data && find . -type f -print0 | sort -z | xargs -0 sha256sum"
                " | sha256sum | cut -d' ' -f1)\"",
    "write": 'head -c "$FALKIT_BYTES" /dev/urandom > /data/falkit-data.bin && sync && echo "wrote $FALKIT_BYTES bytes"',
    "ping": 'printf \'{"node":"%s","results":[\' "$NODE_NAME"; sep=""; for t in $(echo "$FALKIT_TARGETS" | tr , " ");'
            ' do if ping -c 1 -W 1 "$t" >/dev/null 2>&1; then r=true; else r=false; fi;'
            ' printf \'%s{"target":"%s","reachable":%s}\' "$sep" "$t" "$r"; sep=","; done; echo "]}"',
}


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


# --- jobs ------------------------------------------------------------------------------------------

class JobError(RuntimeError):
    """The job's container would fail; the message is its log."""


def job_manifest(kind: str, name: str, namespace: str, *, pvc: str | None = None, source_pvc: str | None = None,
                 target_pvc: str | None = None, nbytes: int = 64 * 1024 * 1024, node: str | None = None,
                 targets: list[str] | None = None) -> dict:
    """A ``batch/v1`` Job of the contract above (copy | checksum | write | ping) for the live lab and
    the twin alike: the container's command prints exactly the log format the twin writes."""
    ann: dict[str, str] = {}
    env = [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    mounts, vols = [], []
    if kind == "copy":
        ann = {"falkit.io/source-pvc": source_pvc or "", "falkit.io/target-pvc": target_pvc or ""}
        for vname, claim, path in (("src", source_pvc, "/src"), ("dst", target_pvc, "/dst")):
            mounts.append({"name": vname, "mountPath": path})
            vols.append({"name": vname, "persistentVolumeClaim": {"claimName": claim}})
    elif kind in ("checksum", "write"):
        ann = {"falkit.io/pvc": pvc or ""}
        mounts.append({"name": "data", "mountPath": "/data"})
        vols.append({"name": "data", "persistentVolumeClaim": {"claimName": pvc}})
        if kind == "write":
            ann["falkit.io/bytes"] = str(nbytes)
            env.append({"name": "FALKIT_BYTES", "value": str(nbytes)})
    elif kind == "ping":
        ann = {"falkit.io/targets": ",".join(targets or [])}
        env.append({"name": "FALKIT_TARGETS", "value": ann["falkit.io/targets"]})
    else:
        raise ValueError(f"unknown job kind {kind!r}")
    labels = {"falkit.io/job": kind, "app.kubernetes.io/managed-by": "falkit"}
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [
        {"name": kind, "image": IMAGES[kind], "command": ["/bin/sh", "-c", COMMANDS[kind]], "env": env,
         "volumeMounts": mounts}], "volumes": vols}
    if node:
        pod_spec["nodeName"] = node
    if kind == "ping":
        pod_spec["hostNetwork"] = True
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": ann},
            "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": dict(labels), "annotations": dict(ann)},
                                                      "spec": pod_spec}}}


def _meta(job: dict, key: str) -> dict:
    tpl = ((job["spec"].get("template") or {}).get("metadata") or {}).get(key) or {}
    return {**tpl, **(job["metadata"].get(key) or {})}


def volume_of(ctx, namespace: str, claim: str):  # noqa: ANN201 - VolumeData | None
    """The twin's data of the PV bound to ``namespace/claim`` (created empty on first use)."""
    from .context import VolumeData

    pvc = ctx.store.try_get("v1", "PersistentVolumeClaim", claim, namespace)
    pv_name = ((pvc or {}).get("spec") or {}).get("volumeName")
    if not pv_name:
        return None
    vol = ctx.volumes.get(pv_name)
    if vol is None:
        pv = ctx.store.try_get("v1", "PersistentVolume", pv_name) or {"spec": {}}
        vol = VolumeData(pv_name, namespace, claim, (pv["spec"].get("csi") or {}).get("driver", ""),
                         quantity_bytes(((pv["spec"].get("capacity") or {}).get("storage")) or "0"))
        ctx.volumes[pv_name] = vol
    return vol


def quantity_bytes(q: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for u, f in units.items():
        if str(q).endswith(u):
            return int(float(str(q)[: -len(u)]) * f)
    return int(float(q or 0))


EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _fio_log(ctx, job: dict, ns: str) -> str:
    from falkit.bench.model import Device, fio_json_from_model, the_fal
    from falkit.plan import derive_io_engine_cores

    ann, labels = _meta(job, "annotations"), _meta(job, "labels")
    spec = ctx.spec
    dev = spec.storage(spec.cluster.vm_defaults.data_storage).device
    claims = _pvc_names((job["spec"].get("template") or {}).get("spec") or {})
    vol = volume_of(ctx, ns, claims[0]) if claims else None
    replicas = len(vol.replicas) if vol and vol.replicas else spec.mayastor.replicas
    hosts = {w.node or spec.host.node for w in spec.cluster.workers}
    env = the_fal(device=Device(dev.physical_disk, dev.seq_read_mb_s, dev.seq_write_mb_s, dev.rand_read_iops,
                                dev.rand_write_iops, dev.latency_ms),
                  replicas=max(1, replicas), replicas_share_disk=len(hosts) == 1, off_host=len(hosts) > 1,
                  io_engine_cores=len(derive_io_engine_cores(spec)))
    jobs = [j for j in (ann.get("falkit.io/fio-jobs") or "").split(",") if j] or None
    text = fio_json_from_model(labels.get("falkit.io/bench-target", "mayastor"), jobs, env,
                               ann.get("falkit.io/fio-profile", "full"))
    if vol is not None:  # fio lays out and writes its test file
        vol.used_bytes = max(vol.used_bytes, int(ann.get("falkit.io/fio-size-mib", "64")) * 2**20)
        vol.checksum = hashlib.sha256(f"{vol.checksum}fio{job['metadata']['uid']}".encode()).hexdigest()
    return text


def _corrupt(ctx, ns: str, claim: str) -> bool:
    sel = set(getattr(ctx.faults, "corrupt_copy", ()) or ()) | set(ctx.extra.get("faults", {}).get("corrupt_copy", ()))
    return "*" in sel or f"{ns}/{claim}" in sel


def _vm_index(ctx, vms) -> dict[str, Any]:
    """IP -> (vm, network cidr) for every address the spec gives a running VM/CT or a Talos node has."""
    out: dict[str, Any] = {}
    by_id = {v.vmid: v for v in vms or []}
    for tn in ctx.talos_nodes.values():
        for ip in tn.ips:
            out[ip] = by_id.get(tn.vmid)
    for extra in (ctx.spec.truenas, ctx.spec.plex):
        if extra is not None and extra.enabled:
            for ip in (extra.ip, getattr(extra, "storage_ip", None)):
                if ip:
                    out.setdefault(ip, by_id.get(extra.vmid))
    return out


def _networks(ctx) -> list[tuple[ipaddress.IPv4Network, str]]:
    nets = [(ipaddress.ip_network(n.cidr), n.bridge) for n in (ctx.spec.networks.management, ctx.spec.networks.storage)]
    if ctx.spec.previous and ctx.spec.previous.network:
        nets.append((ipaddress.ip_network(ctx.spec.previous.network.cidr), ctx.spec.previous.network.bridge))
    return nets


def _ping_log(ctx, job: dict, pod: dict, vms) -> str:
    node = pod["spec"].get("nodeName") or ""
    src = ctx.node_by_hostname(node)
    index = _vm_index(ctx, vms)
    results = []
    for t in [x.strip() for x in (_meta(job, "annotations").get("falkit.io/targets") or "").split(",") if x.strip()]:
        ok = False
        for net, bridge in _networks(ctx):
            if src is None or ipaddress.ip_address(t) not in net:
                continue
            mine = [ip for ip in src.ips if ipaddress.ip_address(ip) in net]
            src_vm, dst_vm = index.get(src.ip), index.get(t)
            ok = bool(mine) and t in index and (
                vms is None or (src_vm is not None and dst_vm is not None and dst_vm.running
                                and bridge in src_vm.bridges.values() and bridge in dst_vm.bridges.values()))
        results.append({"target": t, "reachable": ok})
    return json.dumps({"node": node, "results": results}, separators=(",", ":")) + "\n"


def job_log(ctx, job: dict, pod: dict, vms=None) -> str:
    """What the job's container prints (see the module docstring); JobError if it would fail."""
    ns = job["metadata"]["namespace"]
    labels, ann = _meta(job, "labels"), _meta(job, "annotations")
    if labels.get("app.kubernetes.io/name") == "falkit-fio":
        return _fio_log(ctx, job, ns)
    kind = labels.get("falkit.io/job")
    if kind == "copy":
        src = volume_of(ctx, ns, ann.get("falkit.io/source-pvc", ""))
        dst = volume_of(ctx, ns, ann.get("falkit.io/target-pvc", ""))
        if src is None or dst is None:
            raise JobError("cp: can't stat '/src/.': No such file or directory\n")
        dst.checksum = src.checksum
        if _corrupt(ctx, ns, ann.get("falkit.io/target-pvc", "")):
            dst.checksum = hashlib.sha256(f"corrupt:{src.checksum}".encode()).hexdigest()
        dst.used_bytes = src.used_bytes
        return f"copied {src.used_bytes} bytes\n"
    if kind in ("checksum", "write"):
        vol = volume_of(ctx, ns, ann.get("falkit.io/pvc", ""))
        if vol is None:
            raise JobError("/data: No such file or directory\n")
        if kind == "checksum":
            return f"sha256  {vol.checksum or EMPTY_SHA256}\n"
        n = int(ann.get("falkit.io/bytes") or 64 * 2**20)
        vol.used_bytes = max(vol.used_bytes, n)
        vol.checksum = hashlib.sha256(f"write:{job['metadata']['uid']}:{n}".encode()).hexdigest()
        return f"wrote {n} bytes\n"
    if kind == "ping":
        return _ping_log(ctx, job, pod, vms)
    return ""


def _reconcile_job(ctx, job: dict, counts: dict, nnodes: int, vms) -> None:
    md = job["metadata"]
    jst = job.get("status") or {}
    if any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in jst.get("conditions") or []):
        return
    uid = md["uid"]
    labels = {"batch.kubernetes.io/job-name": md["name"], "job-name": md["name"],
              "batch.kubernetes.io/controller-uid": uid, "controller-uid": uid}
    pod = _ensure_pods(ctx, job, [(f"{md['name']}-{suffix(uid)}", labels, None)], counts)[0]
    st, evs = _pod_state(ctx, pod, nnodes)
    for reason, msg, etype in evs:
        record_event(ctx, pod, reason, msg, etype, "default-scheduler" if reason == "FailedScheduling" else "kubelet")
    start = jst.get("startTime") or now_iso()
    if st.get("hostIP") is None or "containerStatuses" in st:
        write_status(ctx, pod, st)
        write_status(ctx, job, {"active": 1, "ready": 0, "startTime": start, "terminating": 0}, "job-controller")
        return
    ok, code = True, 0
    try:
        text = job_log(ctx, job, pod, vms)
    except JobError as e:
        ok, code, text = False, 1, str(e)
    ctx.store.set_pod_log(md["namespace"], pod["metadata"]["name"], text)
    done = now_iso()
    st.update(phase="Succeeded" if ok else "Failed", startTime=start)
    st["containerStatuses"] = [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False,
                                "restartCount": 0, "started": False,
                                "state": {"terminated": {"exitCode": code, "reason": "Completed" if ok else "Error",
                                                         "startedAt": start, "finishedAt": done}}}
                               for c in pod["spec"].get("containers") or []]
    write_status(ctx, pod, st)
    conds = jst.get("conditions") or []
    if ok:
        conds = set_condition(conds, "SuccessCriteriaMet", "True", "CompletionsReached",
                              "Reached expected number of succeeded pods")
        conds = set_condition(conds, "Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods")
        write_status(ctx, job, {"succeeded": 1, "ready": 0, "terminating": 0, "startTime": start,
                                "completionTime": done, "conditions": conds,
                                "uncountedTerminatedPods": {}}, "job-controller")
    else:
        conds = set_condition(conds, "FailureTarget", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
        conds = set_condition(conds, "Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
        write_status(ctx, job, {"failed": 1, "ready": 0, "terminating": 0, "startTime": start, "conditions": conds,
                                "uncountedTerminatedPods": {}}, "job-controller")


async def pve_vms(ctx):  # noqa: ANN201 - list[Vm] | None
    """The twin Proxmox's VMs, or None when there is no Proxmox to ask (or it does not answer)."""
    if ctx.pve is None:
        return None
    try:
        return await ctx.pve.vms()
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
    for kind, fn in (("Deployment", _reconcile_deployment), ("StatefulSet", _reconcile_statefulset),
                     ("DaemonSet", _reconcile_daemonset)):
        for obj in items(ctx, "apps/v1", kind):
            if not _foreign(obj) and not obj["metadata"].get("deletionTimestamp"):
                fn(ctx, obj, counts, nnodes)
    for job in items(ctx, "batch/v1", "Job"):
        if not _foreign(job):
            _reconcile_job(ctx, job, counts, nnodes, vms)


async def run(ctx) -> None:  # noqa: ANN001 - LabContext
    """Reconcile every workload on every store change (and every ``ctx.tick``)."""
    while True:  # pragma: no cover - loop shell; reconcile() is what tests drive
        try:
            await reconcile(ctx)
        except Exception:  # noqa: BLE001 - a controller never dies; the next pass retries
            log.exception("workloads reconcile failed")
        await ctx.wait_change(timeout=ctx.tick)
