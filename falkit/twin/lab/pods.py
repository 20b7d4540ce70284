"""The scheduler's and the kubelet's part of the twin's cluster, and the object helpers every lab
controller shares (:mod:`.workloads`, :mod:`.jobs`, :mod:`.mayastor`, :mod:`.lbipam`, :mod:`.talos`).

- Object helpers: :func:`items` (``[]`` for a kind not served), :func:`write_status` (no-op writes
  keep the resourceVersion quiet), :func:`set_condition` (``meta.SetStatusCondition``),
  :func:`record_event` (a core/v1 Event per object, reason and message), owner references, label
  selectors, Kubernetes quantities (:func:`quantity_bytes`).
- Scheduling (kube-scheduler): a Ready node matching ``nodeSelector`` whose ``NoSchedule`` taints
  the pod tolerates, fewest pods first (:func:`eligible_nodes`); a pod is placed once.
- Pods (kubelet): :func:`ensure_pods` makes an owner's pods from its template and removes the ones
  it no longer wants; :func:`pod_state` / :func:`reconcile_pods` say Running + Ready when the pod is
  scheduled and every PVC it mounts is Bound (and, for a Mayastor volume, the node's ``csi-node``
  pod runs — else kubelet's FailedMount), otherwise Pending with the scheduler's or kubelet's words.
  The rules and their upstream sources are in :mod:`.workloads`' docstring and beside the code.
- The twin's Proxmox as the controllers see it: :func:`pve_vms`, :func:`pve_bridges` (None when it
  does not answer).

The controllers that use these are above this module; it imports none of them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from falkit.twin.kube.objects import now_iso

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


def pvc_names(pod_spec: dict) -> list[str]:
    return [v["persistentVolumeClaim"]["claimName"] for v in pod_spec.get("volumes") or []
            if isinstance(v.get("persistentVolumeClaim"), dict)]


def csi_node_running(ctx, node: str) -> bool:
    """True when a Running Mayastor csi-node pod is on ``node`` (its kubelet plugin is registered)."""
    return any(p["spec"].get("nodeName") == node and (p.get("status") or {}).get("phase") == "Running"
               for p in items(ctx, "v1", "Pod", label_selector="app=csi-node"))


def pod_state(ctx, pod: dict, nnodes: int) -> tuple[dict, list[tuple[str, str, str]]]:
    """(status, events) of a pod: scheduled + volumes bound -> Running, else Pending."""
    spec, ns = pod["spec"], pod["metadata"]["namespace"]
    events = []
    node = spec.get("nodeName")
    unbound = [c for c in pvc_names(spec)
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
    for c in pvc_names(spec):
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


# --- pods ----------------------------------------------------------------------------------------

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


def foreign(obj: dict) -> bool:
    ctl = ((obj["metadata"].get("annotations") or {}).get("falkit.twin/controller"))
    return bool(ctl) and ctl != "workloads"


def ensure_pods(ctx, owner: dict, want: list[tuple[str, dict, str | None]], counts: dict[str, int]) -> list[dict]:
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
        st, evs = pod_state(ctx, pod, nnodes)
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



def quantity_bytes(q: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for u, f in units.items():
        if str(q).endswith(u):
            return int(float(str(q)[: -len(u)]) * f)
    return int(float(q or 0))


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

