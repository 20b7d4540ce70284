"""Node objects and their readiness: the twin's kubelets and node lifecycle controller.

For every Talos node with an applied config whose VM exists, once the cluster is bootstrapped:

- the kubelet registers a ``Node`` named after the Talos hostname when the install/reboot is over
  and the VM runs: labels ``kubernetes.io/hostname``, ``kubernetes.io/os|arch``, the control-plane
  role (+ its ``NoSchedule`` taint, Talos' default) and the config's ``machine.nodeLabels``, whose
  keys are recorded in ``talos.dev/owned-labels``: a key removed from the config is removed from
  the Node, labels set by others stay;
  ``InternalIP`` = the management IP only (as a real kubelet; the storage IP is visible through
  the Talos config); capacity from the VM (cpu = vCPUs, memory = VM memory minus hugepages,
  ``hugepages-2Mi`` = pages × 2 Mi) and a complete ``nodeInfo``;
- ``Ready=False`` (``KubeletNotReady``, "container runtime network not ready: ... cni plugin not
  initialized") with the ``node.kubernetes.io/not-ready`` taint until a Cilium release is installed,
  then ``Ready=True`` ``NODE_READY_AFTER_CNI_S`` (scaled) later;
- a stopped VM, a rebooting node or the ``node_not_ready`` fault => ``Ready=Unknown``
  (``NodeStatusUnknown`` "Kubelet stopped posting node status.") with the ``unreachable`` taints;
- the API server's ``/version`` = the Kubernetes of the control plane's config
  (:func:`falkit.twin.lab.talos.apiserver_version`);
- a VM that no longer exists => the Node is deleted after ``NODE_GONE_GRACE_S`` (scaled).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import uuid

from falkit.twin.kube import ApiError

from .context import LabContext, TalosNode
from .pvereader import PveUnavailableError, Vm
from .talos import apiserver_version, cilium_api_error, report_cilium_error

log = logging.getLogger(__name__)
MANAGER = "kubelet"
NODE_READY_AFTER_CNI_S = 30.0
NODE_GONE_GRACE_S = 300.0
CNI_MESSAGE = ("container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
               "message:Network plugin returns error: cni plugin not initialized")
KERNEL = {"1.10": "6.12.25-talos", "1.11": "6.12.57-talos", "1.12": "6.18.2-talos", "1.13": "6.18.9-talos"}


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stable_id(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:32]


def node_labels(node: TalosNode) -> dict[str, str]:
    labels = {"beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
              "kubernetes.io/hostname": node.hostname, "kubernetes.io/os": "linux"}
    if node.machine_type in ("controlplane", "init"):
        labels["node-role.kubernetes.io/control-plane"] = ""
        labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
    labels.update(node.labels)
    return labels


def _resources(vm: Vm, node: TalosNode) -> tuple[dict, dict]:
    mem_ki = vm.memory_mib * 1024 - node.hugepages * 2048
    os_disk = next((d.size_bytes for d in vm.disks), 0)
    cap = {"cpu": str(vm.vcpus), "memory": f"{mem_ki}Ki", "hugepages-2Mi": f"{node.hugepages * 2}Mi",
           "hugepages-1Gi": "0", "pods": "110", "ephemeral-storage": f"{os_disk // 1024}Ki"}
    alloc = dict(cap, memory=f"{max(mem_ki - 350 * 1024, 0)}Ki",
                 **{"ephemeral-storage": f"{int(os_disk * 0.9) // 1024}Ki"})
    return cap, alloc


def _node_info(ctx: LabContext, vm: Vm, node: TalosNode) -> dict:
    v = ctx.spec.versions
    minor = ".".join(node.talos_version.split(".")[:2]) or ".".join(v.talos.split(".")[:2])
    return {"architecture": "amd64", "bootID": node.boot_id or str(uuid.uuid4()),
            "containerRuntimeVersion": "containerd://2.1.5", "kernelVersion": KERNEL.get(minor, "6.12.57-talos"),
            "kubeProxyVersion": f"v{v.kubernetes}", "kubeletVersion": f"v{v.kubernetes}",
            "machineID": _stable_id("machine", str(vm.vmid), vm.uuid), "operatingSystem": "linux",
            "osImage": f"Talos (v{node.talos_version or v.talos})", "systemUUID": vm.uuid or _stable_id(str(vm.vmid))}


def _conditions(old: list[dict], ready: tuple[str, str, str], unknown: bool) -> list[dict]:
    now = _now()
    prev = {c["type"]: c for c in old or []}
    out = []
    pressure = [("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available")]
    rows = [(t, "Unknown" if unknown else "False", "NodeStatusUnknown" if unknown else r,
             "Kubelet stopped posting node status." if unknown else m) for t, r, m in pressure]
    rows.append(("Ready", *ready))
    for ctype, status, reason, message in rows:
        p = prev.get(ctype)
        same = p is not None and p.get("status") == status
        out.append({"type": ctype, "status": status, "reason": reason, "message": message,
                    "lastHeartbeatTime": p["lastHeartbeatTime"] if same and unknown else now,
                    "lastTransitionTime": p["lastTransitionTime"] if same else now})
    return out


def _strip_times(conds: list[dict]) -> list[tuple]:
    return [(c.get("type"), c.get("status"), c.get("reason"), c.get("message")) for c in conds or []]


def _taints(node: TalosNode, ready_status: str) -> list[dict]:
    taints = []
    if node.machine_type in ("controlplane", "init"):
        taints.append({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"})
    if ready_status == "False":
        taints.append({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"})
    elif ready_status == "Unknown":
        taints += [{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"},
                   {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]
    return taints


def _ready(ctx: LabContext, vm: Vm, node: TalosNode) -> tuple[tuple[str, str, str], bool]:
    if not vm.running or not node.is_ready() or node.hostname in ctx.faults.node_not_ready:
        ctx.forget(f"cni-ready:{node.hostname}")
        return ("Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status."), True
    if ctx.release_of("cilium") is None:
        ctx.forget(f"cni-ready:{node.hostname}")
        return ("False", "KubeletNotReady", CNI_MESSAGE), False
    cilium_error = cilium_api_error(ctx, node)  # e.g. KubePrism off (falkit.twin.lab.talos)
    if cilium_error:
        ctx.forget(f"cni-ready:{node.hostname}")
        report_cilium_error(ctx, node.hostname, cilium_error)
        return ("False", "KubeletNotReady", CNI_MESSAGE), False
    if ctx.due(f"cni-ready:{node.hostname}", NODE_READY_AFTER_CNI_S):
        return ("True", "KubeletReady", "kubelet is posting ready status"), False
    return ("False", "KubeletNotReady", CNI_MESSAGE), False


def _register(ctx: LabContext, vm: Vm, node: TalosNode, index: int) -> dict:
    cap, alloc = _resources(vm, node)
    obj = {"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": node.hostname, "labels": node_labels(node),
                        "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                        "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                                        **({OWNED_LABELS: json.dumps(sorted(node.labels), separators=(",", ":"))}
                                           if node.labels else {})}},
           "spec": {"podCIDR": f"10.244.{index}.0/24", "podCIDRs": [f"10.244.{index}.0/24"],
                    "taints": _taints(node, "False")},
           "status": {"capacity": cap, "allocatable": alloc,
                      "addresses": [{"type": "InternalIP", "address": node.ip},
                                    {"type": "Hostname", "address": node.hostname}],
                      "conditions": _conditions([], ("False", "KubeletNotReady", CNI_MESSAGE), False),
                      "nodeInfo": _node_info(ctx, vm, node),
                      "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}}
    return ctx.store.create(obj, field_manager=MANAGER, keep_status=True)


OWNED_LABELS = "talos.dev/owned-labels"


def _owned_labels(md: dict) -> list[str]:
    try:
        return [str(k) for k in json.loads((md.get("annotations") or {}).get(OWNED_LABELS) or "[]")]
    except ValueError:
        return []


def _label_patch(node: TalosNode, md: dict) -> tuple[dict[str, str], dict[str, str | None]]:
    """(labels, annotations) Talos' node-label controller leaves on the Node: it applies
    ``machine.nodeLabels`` and records the keys it set in the ``talos.dev/owned-labels``
    annotation (a JSON list); a key it owned that the config no longer has is removed, labels
    others set are left alone. Source: Talos docs "What's New in Talos 1.3", Node Labels:
    "Changes to the node labels will be applied immediately without restarting kubelet. Talos
    keeps track of the owned node labels in the talos.dev/owned-labels annotation"; siderolabs/talos
    pkg/machinery/constants/constants.go ``AnnotationOwnedLabels`` ("the list of node labels owned
    by Talos"). The removal of an owned key is what owning means there (NodeApplyController); that
    controller's source was not re-read in this session."""
    labels = dict(md.get("labels") or {})
    owned = set(_owned_labels(md))
    for key in owned - set(node.labels):
        labels.pop(key, None)
    labels.update(node_labels(node))
    own = sorted(node.labels)
    ann: dict[str, str | None] = {OWNED_LABELS: json.dumps(own, separators=(",", ":")) if own else None}
    return labels, ann


def _sync(ctx: LabContext, vm: Vm, node: TalosNode, existing: dict) -> None:
    name = node.hostname
    ready, unknown = _ready(ctx, vm, node)
    md = existing["metadata"]
    labels = dict(md.get("labels") or {})
    want_labels, owned_ann = _label_patch(node, md)
    old_owned = (md.get("annotations") or {}).get(OWNED_LABELS)
    taints = [t for t in (existing.get("spec") or {}).get("taints") or []
              if not t["key"].startswith(("node.kubernetes.io/", "node-role.kubernetes.io/control-plane"))]
    taints = _taints(node, ready[0]) + taints
    if (want_labels != labels or taints != ((existing.get("spec") or {}).get("taints") or [])
            or owned_ann[OWNED_LABELS] != old_owned):
        # a merge patch: a label set to null is removed (RFC 7386)
        patch_labels: dict[str, str | None] = {**{k: None for k in labels if k not in want_labels}, **want_labels}
        ctx.store.patch("v1", "Node", name, {"metadata": {"labels": patch_labels, "annotations": owned_ann},
                                             "spec": {"taints": taints}}, field_manager="node-controller")
    st = existing.get("status") or {}
    conds = _conditions(st.get("conditions") or [], ready, unknown)
    cap, alloc = _resources(vm, node)
    info = st.get("nodeInfo") or {}
    new_info = _node_info(ctx, vm, node)
    addresses = [{"type": "InternalIP", "address": node.ip}, {"type": "Hostname", "address": name}]
    changed = (_strip_times(conds) != _strip_times(st.get("conditions")) or cap != st.get("capacity")
               or addresses != st.get("addresses")
               or alloc != st.get("allocatable") or info.get("bootID") != new_info["bootID"]
               or info.get("osImage") != new_info["osImage"])
    if changed:
        status = {"conditions": conds, "capacity": cap, "allocatable": alloc, "nodeInfo": new_info,
                  "addresses": addresses}
        ctx.store.patch("v1", "Node", name, {"status": status}, subresource="status",
                        field_manager=MANAGER if not unknown else "node-controller")


async def reconcile(ctx: LabContext) -> None:
    """One pass over every configured Talos node (see the module docstring)."""
    if not ctx.bootstrapped or ctx.pve is None:
        return
    cp = ctx.talos_nodes.get(ctx.bootstrap_ip or "") or next(
        (n for n in ctx.talos_nodes.values() if n.machine_type in ("controlplane", "init") and n.configured), None)
    if cp is not None:  # the API server runs the control plane's config (also after a restore)
        ctx.store.server_version = apiserver_version(ctx, cp)
    try:
        vms = {v.vmid: v for v in await ctx.pve.vms()}
    except PveUnavailableError:
        return
    fresh: dict | None = None
    for index, node in enumerate(sorted(ctx.talos_nodes.values(), key=lambda n: n.ip)):
        if not node.configured or not node.hostname:
            continue
        if node.mode == "installing" and not node.is_ready():
            ctx.wake_at(node.ready_at)  # the install/reboot finishes then: a deadline, not a tick
        name = node.hostname
        existing = ctx.store.try_get("v1", "Node", name)
        vm = vms.get(node.vmid) if node.vmid is not None else None
        if vm is None or (node.vm_uuid and vm.uuid and vm.uuid != node.vm_uuid):
            if existing is not None and ctx.due(f"node-gone:{name}", NODE_GONE_GRACE_S):
                try:
                    ctx.store.delete("v1", "Node", name)
                except ApiError as e:
                    if e.code != 404:
                        raise
                ctx.forget(f"node-gone:{name}")
            elif existing is not None:
                _sync_gone(ctx, existing)
            continue
        ctx.forget(f"node-gone:{name}")
        if existing is None:
            if vm.running and node.is_ready():
                # registering is rare: confirm with a fresh read (the cached list may predate a
                # shutdown, and a stopped VM's kubelet does not come back)
                if fresh is None:
                    try:
                        fresh = {v.vmid: v for v in await ctx.pve.vms(fresh=True)}
                    except PveUnavailableError:
                        return
                vm = fresh.get(node.vmid) or vm
            if not vm.running or not node.is_ready():
                continue
            existing = _register(ctx, vm, node, index + 1)
        _sync(ctx, vm, node, existing)


def _sync_gone(ctx: LabContext, existing: dict) -> None:
    conds = (existing.get("status") or {}).get("conditions") or []
    ready = next((c for c in conds if c["type"] == "Ready"), {})
    if ready.get("status") != "Unknown":
        new = _conditions(conds, ("Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status."), True)
        ctx.store.patch("v1", "Node", existing["metadata"]["name"], {"status": {"conditions": new}},
                        subresource="status", field_manager="node-controller")


async def run(ctx: LabContext) -> None:
    """The controller loop: a pass on every change and at each deadline it set (``ctx.due``,
    ``ctx.wake_at``: a node's install/reboot end, the CNI-ready delay, the node-gone grace)."""
    while True:
        try:
            await reconcile(ctx)
        except Exception:  # noqa: BLE001 - a controller never dies; the next pass retries
            log.exception("nodes controller pass failed")
        await ctx.wait_change()
