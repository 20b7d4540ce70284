"""Server-side defaults and allocators for built-in kinds.

What a real apiserver fills in on create so that clients (and the official client's model
deserialisation, which rejects ``None`` in required fields) see complete objects: Pod
``status.phase: Pending`` and spec defaults, Service ``type: ClusterIP`` with a ``clusterIP`` from
10.96.0.0/12 (``kubernetes`` = 10.96.0.1) and node ports 30000-32767 for NodePort/LoadBalancer,
PVC ``status.phase: Pending``, PV ``Available``, Namespace ``Active`` with the
``kubernetes.io/metadata.name`` label, Node ``status.nodeInfo`` / ``daemonEndpoints``, workload
spec defaults, Secret ``stringData`` folded into ``data``.
"""

from __future__ import annotations

import base64
import ipaddress

from .errors import cause

KUBE_GIT_VERSION = "v1.32.4"


class Allocators:
    """ClusterIP (10.96.0.0/12) and NodePort (30000-32767) allocation."""

    def __init__(self) -> None:
        self.net = ipaddress.ip_network("10.96.0.0/12")
        self.ips: set[str] = set()
        self.ports: set[int] = set()
        self._next_ip = int(self.net.network_address) + 10
        self._next_port = 30000

    def take_ip(self, ip: str | None) -> str | list[dict]:
        if ip:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                return [cause("spec.clusterIPs", f'Invalid value: ["{ip}"]: must be a valid IP address')]
            if addr not in self.net:
                return [cause("spec.clusterIPs", f'Invalid value: ["{ip}"]: failed to allocate IP {ip}: '
                                                 "the provided IP is not in the valid range")]
            if ip in self.ips:
                return [cause("spec.clusterIPs", f'Invalid value: ["{ip}"]: failed to allocate IP {ip}: '
                                                 "provided IP is already allocated")]
            self.ips.add(ip)
            return ip
        size = self.net.num_addresses
        base = int(self.net.network_address)
        for _ in range(size):
            cand = str(ipaddress.ip_address(self._next_ip))
            self._next_ip += 1
            if self._next_ip >= base + size - 1:
                self._next_ip = base + 10
            if cand not in self.ips:
                self.ips.add(cand)
                return cand
        return [cause("spec.clusterIPs", "Internal error: range is full")]

    def take_port(self, port: int | None) -> int | list[dict]:
        if port:
            if port in self.ports:
                return [cause("spec.ports.nodePort", f"Invalid value: {port}: provided port is already allocated")]
            self.ports.add(port)
            return port
        for _ in range(2768):
            cand = self._next_port
            self._next_port = 30000 if cand >= 32767 else cand + 1
            if cand not in self.ports:
                self.ports.add(cand)
                return cand
        return [cause("spec.ports.nodePort", "Internal error: range is full")]

    def release(self, obj: dict) -> None:
        if obj.get("kind") != "Service":
            return
        spec = obj.get("spec") or {}
        for ip in spec.get("clusterIPs") or [spec.get("clusterIP")]:
            self.ips.discard(ip)
        for p in spec.get("ports") or []:
            self.ports.discard(p.get("nodePort"))

    def note(self, obj: dict) -> None:
        """Mark the IPs/ports of a loaded Service as used (snapshot restore)."""
        if obj.get("kind") != "Service":
            return
        spec = obj.get("spec") or {}
        for ip in spec.get("clusterIPs") or []:
            self.ips.add(ip)
        for p in spec.get("ports") or []:
            if p.get("nodePort"):
                self.ports.add(p["nodePort"])


def _pod_spec(spec: dict) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    if spec.get("serviceAccountName") or spec.get("serviceAccount"):
        spec.setdefault("serviceAccountName", spec.get("serviceAccount"))
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            if not isinstance(c, dict):
                continue
            img = str(c.get("image", ""))
            latest = ":" not in img.rsplit("/", 1)[-1] or img.endswith(":latest")
            c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            c.setdefault("resources", {})
            for p in c.get("ports") or []:
                if isinstance(p, dict):
                    p.setdefault("protocol", "TCP")


def _template(spec: dict) -> None:
    tpl = spec.get("template")
    if isinstance(tpl, dict):
        tpl.setdefault("metadata", {})
        if isinstance(tpl.get("spec"), dict):
            _pod_spec(tpl["spec"])


def apply_defaults(obj: dict, alloc: Allocators, *, creating: bool) -> list[dict]:
    """Fill server-side defaults in place; returns 422 causes from allocation failures."""
    kind = obj.get("kind")
    md = obj.setdefault("metadata", {})
    spec = obj.get("spec")
    causes: list[dict] = []
    if kind == "Namespace":
        md.setdefault("labels", {})["kubernetes.io/metadata.name"] = md.get("name")
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
    elif kind == "Node":
        st = obj.setdefault("status", {})
        info = st.setdefault("nodeInfo", {})
        for k, v in {"architecture": "amd64", "bootID": "", "containerRuntimeVersion": "containerd://2.0.5",
                     "kernelVersion": "6.12.25-talos", "kubeProxyVersion": KUBE_GIT_VERSION,
                     "kubeletVersion": KUBE_GIT_VERSION, "machineID": "", "operatingSystem": "linux",
                     "osImage": "Talos (v1.10.0)", "systemUUID": ""}.items():
            if info.get(k) is None:
                info[k] = v
        st.setdefault("daemonEndpoints", {"kubeletEndpoint": {"Port": 10250}})
        obj.setdefault("spec", {})
    elif kind == "Pod" and isinstance(spec, dict):
        _pod_spec(spec)
        st = obj.setdefault("status", {})
        st.setdefault("phase", "Pending")
        st.setdefault("qosClass", "BestEffort")
    elif kind == "Service" and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        stype = spec["type"]
        if stype != "ExternalName":
            spec.setdefault("internalTrafficPolicy", "Cluster")
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            if creating and spec.get("clusterIP") != "None":
                got = alloc.take_ip(spec.get("clusterIP"))
                if isinstance(got, list):
                    causes += got
                else:
                    spec["clusterIP"] = got
                    spec["clusterIPs"] = [got]
            elif spec.get("clusterIP") == "None":
                spec["clusterIPs"] = ["None"]
        if stype in ("NodePort", "LoadBalancer"):
            spec.setdefault("externalTrafficPolicy", "Cluster")
        for p in spec.get("ports") or []:
            if not isinstance(p, dict):
                continue
            p.setdefault("protocol", "TCP")
            if "port" in p:
                p.setdefault("targetPort", p["port"])
            if creating and stype in ("NodePort", "LoadBalancer"):
                got = alloc.take_port(p.get("nodePort"))
                if isinstance(got, list):
                    causes += got
                else:
                    p["nodePort"] = got
        if stype == "LoadBalancer":
            spec.setdefault("allocateLoadBalancerNodePorts", True)
        obj.setdefault("status", {}).setdefault("loadBalancer", {})
    elif kind == "PersistentVolumeClaim":
        if isinstance(spec, dict):
            spec.setdefault("volumeMode", "Filesystem")
        obj.setdefault("status", {}).setdefault("phase", "Pending")
    elif kind == "PersistentVolume":
        if isinstance(spec, dict):
            spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
            spec.setdefault("volumeMode", "Filesystem")
        obj.setdefault("status", {}).setdefault("phase", "Available")
    elif kind in ("Deployment", "StatefulSet", "ReplicaSet", "DaemonSet") and isinstance(spec, dict):
        if kind != "DaemonSet":
            spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        if kind == "Deployment":
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault("strategy", {"type": "RollingUpdate",
                                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        elif kind == "DaemonSet":
            spec.setdefault("updateStrategy", {"type": "RollingUpdate",
                                               "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}})
        elif kind == "StatefulSet":
            spec.setdefault("podManagementPolicy", "OrderedReady")
            spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        _template(spec)
        st = obj.setdefault("status", {})
        if kind == "DaemonSet":  # DaemonSetStatus' four int32 counters are not omitempty: a new one reads 0
            # (k8s.io/api apps/v1 types.go DaemonSetStatus; the typed clients require them)
            for k in ("currentNumberScheduled", "desiredNumberScheduled", "numberMisscheduled", "numberReady"):
                st.setdefault(k, 0)
    elif kind == "Job" and isinstance(spec, dict):
        spec.setdefault("parallelism", 1)
        spec.setdefault("completions", 1)
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        uid = md.get("uid")
        if creating and uid and not spec.get("manualSelector"):
            lbl = {"batch.kubernetes.io/controller-uid": uid}
            spec.setdefault("selector", {"matchLabels": dict(lbl)})
            tmd = spec.setdefault("template", {}).setdefault("metadata", {})
            tmd.setdefault("labels", {}).update({**lbl, "batch.kubernetes.io/job-name": md.get("name")})
        _template(spec)
        obj.setdefault("status", {})
    elif kind == "StorageClass":
        obj.setdefault("reclaimPolicy", "Delete")
        obj.setdefault("volumeBindingMode", "Immediate")
    elif kind == "Secret":
        obj.setdefault("type", "Opaque")
        sd = obj.pop("stringData", None)
        if isinstance(sd, dict):
            data = obj.setdefault("data", {})
            for k, v in sd.items():
                data[k] = base64.b64encode(str(v).encode()).decode()
    elif kind == "Event":
        obj.setdefault("type", "Normal")
    elif kind == "Lease":
        obj.setdefault("spec", {})
    return causes
