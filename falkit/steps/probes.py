"""The validation checks as data: observed facts in, :class:`~falkit.steps.base.Check` rows out (pure).

Every check of the seed's "Validation Steps" and "Monitoring and Troubleshooting" sections, each
with what was expected, what was observed and how to fix it. ``falkit.steps.validation`` gathers
the facts (:class:`ValidationFacts`) from a target; everything here is pure, so the checks are
tested as data tables (facts -> rows).

=================  ===========================================================================
area               checks (the seed's command they replace)
=================  ===========================================================================
nodes              Node Ready, management IP = the Node's InternalIP, storage IP in the Talos
                   config (``kubectl get nodes -o wide``)
pods               every pod Running/Succeeded with its containers ready and few restarts
                   (``kubectl get pods -A``)
cilium             agent DaemonSet ready = desired, the LB pool and the L2 policy present, no pool
                   with ``cilium.io/PoolConflict`` True (both pools and Cilium's message named), a
                   Lease ``cilium-l2announce-<ns>-<svc>`` holder per Cilium service
                   (``cilium status``, ``kubectl get ciliuml2announcementpolicies``)
services           every LoadBalancer service has an IP from the pool; pinned ones have theirs; a
                   service without one carries Cilium's ``cilium.io/IPAMRequestSatisfied`` reason
                   (``no_pool``, ``already_allocated``, ...) and a fix for it
                   (``kubectl get svc -A | grep LoadBalancer``)
mayastor           io-engine Running per labelled node, hugepages allocatable >= 2 GiB, csi-node's
                   ``nvme-tcp-probe`` done (else the ``nvme_tcp`` module and the Talos fix are
                   named), DiskPools Online with capacity, Mayastor volumes not degraded by lost
                   pools, the StorageClass parameters, a fresh PVC binds and takes writes (else the
                   claim's Events: the provisioner's reason) (``kubectl mayastor get
                   nodes|pools|volumes``, ``kubectl get sc``, the test PVC)
storage network    every worker reaches every other worker's storage IP (``ping 10.11.0.11``);
                   on the twin the ping Job's log is modelled and the row says so
argocd             Applications Synced/Healthy (only when the Application CRD is served)
truenas            NFS exports on the storage network, NFS service running (when enabled)
plex               the LXC running with the render node as ``dev0`` (when enabled)
=================  ===========================================================================

Facts behind the thresholds (docs/FACTS.md, OpenEBS Mayastor): io-engine requests 2 GiB of 2 MiB
hugepages per node; StorageClass parameters are strings (``repl: "3"``, ``thin: "true"``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..clients.kube import pod_state
from ..model.checks import Check
from ..model.design import design_of
from ..model.spec import LabSpec
from ..render.ciliumvalues import lb_pools, pool_addresses
from ..render.mayastorvalues import ENGINE_LABEL, PROVISIONER, pool_name, storage_class, storage_class_drift

HUGEPAGES_NEEDED = 2 * 1024**3  # io-engine's request: hugepages-2Mi: 2Gi
MAX_RESTARTS = 3  # more restarts than this and a Running pod counts as unhealthy (crash-looping)
LEASE_NS = "kube-system"

AREAS = ("nodes", "pods", "cilium", "services", "mayastor", "storage network", "argocd", "truenas", "plex",
         "rollback")
#: check name -> area (the summary chart groups by it)
AREA_OF = {
    "node Ready": "nodes", "node management IP": "nodes", "node storage IP": "nodes",
    "pod healthy": "pods",
    "cilium agents": "cilium", "cilium LB pool": "cilium", "cilium L2 policy": "cilium", "L2 announcement": "cilium",
    "LoadBalancer IP": "services", "pinned IP": "services",
    "cilium pool conflict": "cilium", "nvme_tcp module": "mayastor", "Mayastor volumes": "mayastor",
    "io-engine Running": "mayastor", "hugepages allocatable": "mayastor", "DiskPool Online": "mayastor",
    "StorageClass": "mayastor", "fresh PVC binds and takes writes": "mayastor",
    "storage network ping": "storage network",
    "ArgoCD application": "argocd",
    "NFS export": "truenas", "NFS service": "truenas", "TrueNAS API": "truenas",
    "Plex container": "plex", "Plex GPU (dev0)": "plex",
    "service IP as before": "rollback", "volume data as before": "rollback", "workload claim as before": "rollback",
}


# ---------------------------------------------------------------------------------------------
# Facts


@dataclass(frozen=True)
class Ping:
    """One worker's ping Job result: target IP -> reachable; ``modelled`` on the twin."""

    node: str
    results: dict[str, bool] = field(default_factory=dict)
    modelled: bool = False
    error: str = ""


@dataclass(frozen=True)
class FreshPvc:
    """The fresh-PVC test: created, bound, written, then deleted again (falkit's own test data)."""

    name: str
    phase: str = "absent"
    written: str = ""  # the write Job's log line, "" when it did not run
    error: str = ""
    cleaned_up: bool = False
    #: the claim's Events while it waited, ``"<reason>: <message>"`` (the provisioner's own words)
    events: tuple[str, ...] = ()


@dataclass(frozen=True)
class ValidationFacts:
    """Everything the checks read. Kubernetes objects are dicts as the API returns them (camelCase).

    ``talos_ips``: node name -> IPs the node's Talos config gives it, or an error string;
    ``argocd_apps`` None = the Application CRD is not served; ``truenas``/``plex`` None = disabled
    in the spec; ``truenas`` = ``{"shares": [...], "services": [...]}`` or ``{"error": ...}``;
    ``plex`` = ``{"status": ..., "config": {...}}`` or ``{"error": ...}``.
    """

    target: str = "twin"
    nodes: tuple[dict, ...] = ()
    talos_ips: dict[str, Any] = field(default_factory=dict)
    pods: tuple[dict, ...] = ()
    cilium_daemonset: dict | None = None
    cilium_pools: tuple[dict, ...] = ()
    l2_policies: tuple[dict, ...] = ()
    leases: tuple[dict, ...] = ()
    services: tuple[dict, ...] = ()
    io_engine_pods: tuple[dict, ...] = ()
    diskpools: tuple[dict, ...] = ()
    #: PersistentVolumes of the Mayastor CSI driver (``spec.csi.driver`` = io.openebs.csi-mayastor)
    mayastor_volumes: tuple[dict, ...] = ()
    storage_class: dict | None = None
    fresh_pvc: FreshPvc | None = None
    pings: tuple[Ping, ...] = ()
    argocd_apps: tuple[dict, ...] | None = None
    truenas: dict | None = None
    plex: dict | None = None


# ---------------------------------------------------------------------------------------------
# Small readers of API objects


def _md(o: dict) -> dict:
    return o.get("metadata") or {}


def _st(o: dict) -> dict:
    return o.get("status") or {}


def ns_name(o: dict) -> str:
    md = _md(o)
    return f"{md['namespace']}/{md['name']}" if md.get("namespace") else str(md.get("name"))


def parse_quantity(q: Any) -> int:
    """A Kubernetes quantity in bytes (``2Gi``, ``2048Mi``, ``2147483648``, ``1G``); 0 when empty."""
    text = str(q or "0").strip()
    units = (("Ki", 2**10), ("Mi", 2**20), ("Gi", 2**30), ("Ti", 2**40), ("k", 10**3), ("M", 10**6),
             ("G", 10**9), ("T", 10**12))
    for unit, factor in units:
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(float(text))


def node_ready(node: dict) -> str:
    """The Ready condition's status ("True", "False", "Unknown") or "absent"."""
    c = next((c for c in _st(node).get("conditions") or [] if c.get("type") == "Ready"), None)
    return str(c.get("status")) if c else "absent"


def internal_ip(node: dict) -> str:
    return next((a.get("address", "") for a in _st(node).get("addresses") or [] if a.get("type") == "InternalIP"), "")


def lb_ip(svc: dict) -> str:
    return next((i.get("ip", "") for i in (_st(svc).get("loadBalancer") or {}).get("ingress") or [] if i.get("ip")), "")


def talos_addresses(docs: list[dict]) -> list[str]:
    """Every static address a Talos machine config gives (without prefix length): inline
    ``machine.network.interfaces[].addresses`` (Talos < 1.12) and ``LinkConfig``-style documents'
    ``addresses[].address`` (1.12+, docs/FACTS.md Talos)."""
    out: list[str] = []

    def add(a: Any) -> None:
        a = a.get("address") if isinstance(a, dict) else a
        if a:
            ip = str(a).split("/", 1)[0]
            if ip not in out:
                out.append(ip)

    for d in docs or []:
        if not isinstance(d, dict):
            continue
        for iface in (((d.get("machine") or {}).get("network") or {}).get("interfaces") or []):
            for a in iface.get("addresses") or []:
                add(a)
        if d.get("kind") and d.get("kind") != "Config":
            for a in d.get("addresses") or []:
                add(a)
    return out


# ---------------------------------------------------------------------------------------------
# Checks per area


def check_nodes(spec: LabSpec, f: ValidationFacts) -> list[Check]:
    by_name = {_md(n).get("name"): n for n in f.nodes}
    out: list[Check] = []
    want = [(v.name, v.ip, v.storage_ip) for v in design_of(spec).vms if v.role in ("control-plane", "worker")]
    for name, ip, storage_ip in want:
        node = by_name.get(name)
        ready = node_ready(node) if node else "absent"
        out.append(Check("node Ready", name, "Ready=True", f"Ready={ready}" if node else "no Node object", ready == "True",
                         "talosctl -n <ip> health; kubectl describe node " + name))
        have_ip = internal_ip(node) if node else ""
        out.append(Check("node management IP", name, ip, have_ip or "none", have_ip == ip,
                         "check the VM's net0 MAC (DHCP reservation) and the Talos config's address (30-talos)"))
        if storage_ip:
            ips = f.talos_ips.get(name)
            seen = ", ".join(ips) if isinstance(ips, list) else str(ips or "no Talos config read")
            out.append(Check("node storage IP", name, f"{storage_ip} in the Talos config", seen,
                             isinstance(ips, list) and storage_ip in ips,
                             "re-run 30-talos: the worker patch gives eth1 its storage address"))
    extra = sorted(set(by_name) - {n for n, _, _ in want})
    for name in extra:
        ready = node_ready(by_name[name])
        out.append(Check("node Ready", name, "Ready=True (not in the spec)", f"Ready={ready}", ready == "True",
                         f"kubectl describe node {name}; remove it if it is left over"))
    return out


def _pod_problem(pod: dict) -> str:
    st = _st(pod)
    phase = st.get("phase", "Unknown")
    if phase == "Succeeded":
        return ""
    if phase != "Running":
        return phase
    problems = []
    for cs in st.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            problems.append(f"{cs.get('name')} {waiting['reason']}")
        elif not cs.get("ready"):
            problems.append(f"{cs.get('name')} not ready")
        if int(cs.get("restartCount") or 0) > MAX_RESTARTS:
            problems.append(f"{cs.get('name')} restarted {cs.get('restartCount')}x")
    return "; ".join(problems)


def check_pods(spec: LabSpec, f: ValidationFacts) -> list[Check]:
    bad = [(ns_name(p), _pod_problem(p)) for p in f.pods]
    bad = [(n, why) for n, why in bad if why]
    if not bad:
        return [Check("pod healthy", "all pods", "Running or Succeeded, containers ready",
                      f"{len(f.pods)} pods healthy", True, "")]
    return [Check("pod healthy", n, "Running or Succeeded, containers ready", why, False,
                  f"kubectl -n {n.split('/')[0]} describe pod {n.split('/')[-1]}; kubectl logs --previous")
            for n, why in sorted(bad)]


def _in_pool(spec: LabSpec, ip: str) -> bool:
    return design_of(spec).in_lb_pool(ip)


def _pool_range(pool: dict) -> list[str]:
    out = []
    for b in (pool.get("spec") or {}).get("blocks") or []:
        out.append(b["cidr"] if b.get("cidr") else f"{b.get('start')}-{b.get('stop')}")
    return out


def _condition(o: dict, ctype: str) -> dict:
    return next((c for c in _st(o).get("conditions") or [] if c.get("type") == ctype), {})


#: Cilium LB-IPAM's pool condition (operator/pkg/lbipam/lbipam.go, ``ciliumPoolConflict``): True with
#: reason ``cidr_overlap`` and "Pool conflicts since range '<a>' overlaps range '<b>' from IP Pool
#: '<other>'" on the newer of two overlapping pools, which then allocates nothing.
POOL_CONFLICT = "cilium.io/PoolConflict"


def _pool_conflicts(f: ValidationFacts) -> list[Check]:
    out = []
    for p in sorted(f.cilium_pools, key=lambda p: _md(p).get("name", "")):
        c = _condition(p, POOL_CONFLICT)
        if c.get("status") != "True":
            continue
        name = _md(p).get("name", "")
        msg = str(c.get("message") or "")
        m = re.search(r"from IP Pool '([^']+)'", msg)
        other = m.group(1) if m else "another pool"
        out.append(Check("cilium pool conflict", f"{name} vs {other}", "no pool overlaps another",
                         f"{POOL_CONFLICT}=True ({c.get('reason') or 'no reason'}): {msg}", False,
                         f"the conflicting pool '{name}' allocates nothing until it no longer overlaps '{other}': "
                         f"delete it or change its blocks (kubectl get ciliumloadbalancerippool: CONFLICTING), "
                         "then re-run 40-cilium"))
    if not out and f.cilium_pools:
        out.append(Check("cilium pool conflict", "CiliumLoadBalancerIPPool", "no pool overlaps another",
                         f"{len(f.cilium_pools)} pool(s), none with {POOL_CONFLICT}=True", True, ""))
    return out


def check_cilium(spec: LabSpec, f: ValidationFacts) -> list[Check]:
    out: list[Check] = []
    ds = f.cilium_daemonset
    st = _st(ds) if ds else {}
    desired, ready = st.get("desiredNumberScheduled"), st.get("numberReady")
    out.append(Check("cilium agents", "kube-system/cilium", "ready = desired > 0",
                     f"{ready}/{desired} ready" if ds else "no DaemonSet", bool(ds) and bool(desired) and ready == desired,
                     "kubectl -n kube-system logs -l k8s-app=cilium; cilium status"))
    want = design_of(spec).lb_pool_text
    ranges = [r for p in f.cilium_pools for r in _pool_range(p)]
    covered = pool_addresses(list(f.cilium_pools)) >= pool_addresses(lb_pools(spec))
    out.append(Check("cilium LB pool", "CiliumLoadBalancerIPPool", f"{want} (pinned addresses in pools of their own)",
                     ", ".join(ranges) or "none", covered, "re-run 40-cilium (kubectl get ciliumloadbalancerippool)"))
    out.extend(_pool_conflicts(f))
    pol = [p for p in f.l2_policies if (p.get("spec") or {}).get("loadBalancerIPs")]
    out.append(Check("cilium L2 policy", "CiliumL2AnnouncementPolicy", "one with loadBalancerIPs: true",
                     ", ".join(_md(p).get("name", "") for p in pol) or f"{len(f.l2_policies)} without loadBalancerIPs",
                     bool(pol), "re-run 40-cilium (kubectl get ciliuml2announcementpolicies)"))
    leases = {_md(le).get("name"): le for le in f.leases}
    for svc in f.services:
        if (svc.get("spec") or {}).get("type") != "LoadBalancer" or not _in_pool(spec, lb_ip(svc)):
            continue
        md = _md(svc)
        lname = f"cilium-l2announce-{md.get('namespace')}-{md.get('name')}"
        holder = ((leases.get(lname) or {}).get("spec") or {}).get("holderIdentity") or ""
        out.append(Check("L2 announcement", ns_name(svc), f"Lease {LEASE_NS}/{lname} held by a node",
                         f"held by {holder}" if holder else "no holder" if lname in leases else "no Lease", bool(holder),
                         "check the L2 policy's interfaces and nodeSelector, the agents' client rate limit "
                         "(k8sClientRateLimit) and kubectl -n kube-system logs -l k8s-app=cilium"))
    return out


#: Cilium LB-IPAM's Service condition (operator/pkg/lbipam/lbipam.go): False with reason ``no_pool``
#: ("No pool exists with a CIDR containing '<ip>'"; "There are no enabled CiliumLoadBalancerIPPools
#: that match this service"), ``already_allocated``, ``pool_selector_mismatch``, ``out_of_ips``.
IPAM_SATISFIED = "cilium.io/IPAMRequestSatisfied"


def _ipam_refusal(svc: dict) -> str:
    """Cilium's reason a Service has no IP (``"<reason>: <message>"``), "" when it gave none."""
    c = _condition(svc, IPAM_SATISFIED)
    if c.get("status") != "False":
        return ""
    return f"{IPAM_SATISFIED}=False, {c.get('reason') or 'no reason'}: {c.get('message') or ''}".rstrip(": ")


def _ipam_fix(svc: dict | None, why: str) -> str:
    if not svc or not why:
        return ""
    where = f"{_md(svc).get('namespace')}/{_md(svc).get('name')}"
    if "no_pool" in why and "containing" in why:
        return (f"the IP {where} requests is in no CiliumLoadBalancerIPPool: add it to the pool range "
                "(cilium.lb_pool, or a pinned pool of its own) and re-run 40-cilium, or change the service's "
                "lbipam.cilium.io/ips annotation")
    if "no_pool" in why:
        return "no enabled pool selects this service: check the pools' serviceSelector and that none is disabled"
    if "already_allocated" in why:
        return f"another service holds the IP {where} requests: kubectl get svc -A | grep <ip>, free it or pick another"
    if "out_of_ips" in why:
        return "the pool is full: widen cilium.lb_pool and re-run 40-cilium"
    return f"kubectl -n {_md(svc).get('namespace')} describe svc {_md(svc).get('name')}"


def check_services(spec: LabSpec, f: ValidationFacts) -> list[Check]:
    out: list[Check] = []
    pool = design_of(spec).lb_pool_text
    by_key = {ns_name(s): s for s in f.services}
    disabled = {f"{s.namespace}/{s.name}" for s in spec.services if s.new_ip == "disabled"}
    for svc in sorted(f.services, key=ns_name):
        if (svc.get("spec") or {}).get("type") != "LoadBalancer":
            continue
        ip = lb_ip(svc)
        if ns_name(svc) in disabled:  # the seed: "Longhorn UI ... Disabled"
            out.append(Check("LoadBalancer disabled", ns_name(svc), "no address from the pool (disabled in the spec)",
                             ip or "none", not (ip and _in_pool(spec, ip)),
                             f"delete the Service or set its type to ClusterIP: it holds {ip} of the pool"))
            continue
        why = _ipam_refusal(svc)
        out.append(Check("LoadBalancer IP", ns_name(svc), f"an IP from {pool}",
                         ip or ("pending" + (f" ({why})" if why else "")), bool(ip) and _in_pool(spec, ip),
                         _ipam_fix(svc, why) or f"kubectl -n {_md(svc).get('namespace')} describe svc "
                         f"{_md(svc).get('name')} (condition {IPAM_SATISFIED})"))
    for s in design_of(spec).services:
        if s.requested in ("auto", "disabled"):
            continue
        svc = by_key.get(f"{s.namespace}/{s.name}")
        ip = lb_ip(svc) if svc else ""
        why = _ipam_refusal(svc) if svc else ""
        seen = ip or (("pending" + (f" ({why})" if why else "")) if svc else "no Service")
        out.append(Check("pinned IP", f"{s.namespace}/{s.name}", s.requested, seen, ip == s.requested,
                         _ipam_fix(svc, why) if why else
                         "annotate it lbipam.cilium.io/ips and check no other service holds the IP"))
    return out


def _pool_state(pool: dict) -> tuple[str, int]:
    st = _st(pool)
    return str(st.get("pool_status") or st.get("state") or st.get("cr_state") or ""), int(st.get("capacity") or 0)


NVME_PROBE = "nvme-tcp-probe"  # the openebs chart's csi-node init container (csi.node.initContainers)


def _nvme_tcp(spec: LabSpec, f: ValidationFacts) -> list[Check]:
    """The csi-node pods' ``nvme-tcp-probe`` init container waits while ``nvme_tcp`` is not loaded
    (it prints "nvme_tcp module not loaded..."): the pod stays Init:0/1 and no Mayastor volume mounts on
    that node. Named here with the Talos fix, instead of a bare "Pending"."""
    out = []
    ns = spec.mayastor.namespace
    for p in sorted(f.pods, key=ns_name):
        if _md(p).get("namespace") != ns:
            continue
        probe = next((c for c in _st(p).get("initContainerStatuses") or [] if c.get("name") == NVME_PROBE), None)
        if probe is None or probe.get("ready") or "terminated" in (probe.get("state") or {}):
            continue
        node = (p.get("spec") or {}).get("nodeName") or "?"
        out.append(Check("nvme_tcp module", node, "nvme_tcp loaded (csi-node's nvme-tcp-probe done)",
                         f"{ns_name(p)} {_st(p).get('phase', 'Pending')}, Init:0/1: init container {NVME_PROBE} waits "
                         "for the nvme_tcp kernel module (\"nvme_tcp module not loaded...\")", False,
                         f"load nvme_tcp on {node}: the Talos machine config needs machine.kernel.modules: "
                         "[{name: nvme_tcp}] (talos.kernel_modules in the spec); re-run 30-talos (the node "
                         f"reboots), then kubectl -n {ns} logs {_md(p).get('name')} -c {NVME_PROBE}"))
    return out


#: A Mayastor volume keeps ``repl`` replicas on pools of distinct nodes (openebs.io docs, "Replica
#: Operations": the control plane maintains that number of replicas); a lost pool or node leaves its
#: volumes degraded until a replica is rebuilt (openebs.io docs, "DiskPool I/O Failure Handling":
#: "device removal events may result in degraded volumes"). Fewer live pools than a volume's repl and
#: it cannot be healthy: Degraded, Faulted with none left (the states ``kubectl mayastor get volumes``
#: prints; not confirmed from Mayastor's source here). Read from the DiskPools and the PV's
#: ``volumeAttributes.repl`` (the StorageClass's parameters), without Mayastor's REST API: a lower
#: bound -- with more pools than repl a lost pool may still hold no replica of a volume.
LIVE_POOL = ("Online", "Degraded")


def _volumes(spec: LabSpec, f: ValidationFacts) -> list[Check]:
    if not f.mayastor_volumes:
        return []
    live = sorted(_md(p).get("name", "") for p in f.diskpools if _pool_state(p)[0] in LIVE_POOL)
    lost = sorted(f"{_md(p).get('name')} ({_pool_state(p)[0] or 'pending'})" for p in f.diskpools
                  if _pool_state(p)[0] not in LIVE_POOL)
    default = str(storage_class(spec)["parameters"].get("repl", "1"))
    bad = []
    for pv in sorted(f.mayastor_volumes, key=lambda v: _md(v).get("name", "")):
        attrs = ((pv.get("spec") or {}).get("csi") or {}).get("volumeAttributes") or {}
        repl = int(str(attrs.get("repl") or default))
        if len(live) < repl:
            claim = (pv.get("spec") or {}).get("claimRef") or {}
            bad.append((f"{claim.get('namespace')}/{claim.get('name')}" if claim else _md(pv).get("name", ""), repl))
    if not bad:
        return [Check("Mayastor volumes", f"{len(f.mayastor_volumes)} volume(s)", "every volume's replicas on live pools",
                      f"{len(live)} live pool(s)", True, "")]
    return [Check("Mayastor volumes", claim, f"{repl} replicas on Online pools (volume Online)",
                  f"{'Faulted' if not live else 'Degraded'}: only {len(live)} of {repl} replica pools live; lost "
                  f"{', '.join(lost) or 'none'}", False,
                  "kubectl mayastor get volumes (Degraded/Faulted); bring the lost pool's node and disk back "
                  f"(kubectl -n {spec.mayastor.namespace} describe diskpool), Mayastor then rebuilds the replica; "
                  "do not delete data until the volume is Online again")
            for claim, repl in bad]


def check_mayastor(spec: LabSpec, f: ValidationFacts) -> list[Check]:
    out: list[Check] = []
    ns = spec.mayastor.namespace
    key, val = ENGINE_LABEL
    engine_nodes = sorted(_md(n).get("name") for n in f.nodes if (_md(n).get("labels") or {}).get(key) == val)
    workers = [w.name for w in spec.cluster.workers]
    phases = {(p.get("spec") or {}).get("nodeName"): pod_state(p) for p in f.io_engine_pods}
    by_node = {_md(n).get("name"): n for n in f.nodes}
    for name in sorted(set(engine_nodes) | set(workers)):
        labelled = name in engine_nodes
        phase = phases.get(name, "no pod")
        out.append(Check("io-engine Running", name, f"labelled {key}={val}, io-engine Running",
                         ("" if labelled else "not labelled, ") + phase, labelled and phase == "Running",
                         f"kubectl -n {ns} describe pod -l app=io-engine (hugepages, cores, nvme_tcp)"))
        alloc = ((_st(by_node.get(name) or {}).get("allocatable")) or {}).get("hugepages-2Mi")
        have = parse_quantity(alloc) if alloc else 0
        out.append(Check("hugepages allocatable", name, ">= 2Gi hugepages-2Mi", alloc or "none", have >= HUGEPAGES_NEEDED,
                         "set mayastor.hugepages_2mi (vm.nr_hugepages) >= 1024 and re-run 30-talos"))
    pools = {(p.get("spec") or {}).get("node"): p for p in f.diskpools}
    for w in workers:
        p = pools.get(w)
        state, cap = _pool_state(p) if p else ("absent", 0)
        out.append(Check("DiskPool Online", _md(p).get("name", pool_name(w)) if p else pool_name(w), "Online, capacity > 0",
                         f"{state or 'pending'}, {cap / 1e9:.0f} GB", state == "Online" and cap > 0,
                         f"kubectl -n {ns} describe diskpool {pool_name(w)}; kubectl mayastor get pools"))
    out.extend(_nvme_tcp(spec, f))
    out.extend(_volumes(spec, f))
    want = storage_class(spec)
    sc = f.storage_class
    drift = storage_class_drift(want, sc) if sc else []
    out.append(Check("StorageClass", spec.mayastor.storage_class, f"{PROVISIONER} {want['parameters']}",
                     "absent" if sc is None else f"{sc.get('provisioner')} {sc.get('parameters')}", sc is not None and not drift,
                     "re-run 50-mayastor with apply"))
    fp = f.fresh_pvc
    if fp is not None:
        ok = fp.phase == "Bound" and bool(fp.written) and not fp.error
        seen = f"{fp.phase}, {fp.written.strip() or 'not written'}" + (f" ({fp.error})" if fp.error else "")
        if fp.events and not ok:
            seen += "; events: " + "; ".join(fp.events)
        seen += ", test PVC deleted" if fp.cleaned_up else ", test PVC left in place"
        fix = "kubectl describe pvc; kubectl mayastor get pools (free space, Online)"
        if any("not enough suitable pools" in e for e in fp.events):
            fix = (f"the provisioner finds fewer Online pools with room than repl={want['parameters'].get('repl')}: "
                   "bring the lost DiskPools back Online (kubectl mayastor get pools) or lower repl")
        elif not fp.events and fp.phase == "Pending":
            fix = (f"no provisioner acted on the claim: check the StorageClass's provisioner ({PROVISIONER}) and "
                   "the csi-controller pod; " + fix)
        out.append(Check("fresh PVC binds and takes writes", fp.name, f"Bound on {spec.mayastor.storage_class}, written",
                         seen, ok, fix))
    return out


def check_storage_network(spec: LabSpec, f: ValidationFacts) -> list[Check]:
    out: list[Check] = []
    pings = {p.node: p for p in f.pings}
    workers = design_of(spec).workers
    for src in workers:
        p = pings.get(src.name)
        for dst in workers:
            if dst.name == src.name:
                continue
            if p is None or p.error:
                seen = p.error if p else "no ping Job ran"
                ok = False
            else:
                reach = p.results.get(dst.storage_ip)
                seen = {True: "reachable", False: "unreachable", None: "not pinged"}[reach]
                seen += " (modelled by the twin)" if p.modelled else ""
                ok = reach is True
            out.append(Check("storage network ping", f"{src.name} -> {dst.name}", f"{dst.storage_ip} reachable over "
                             f"{spec.networks.storage.bridge}", seen, ok,
                             f"check the workers' second NIC: `qm config <vmid>` shows net1 on "
                             f"{spec.networks.storage.bridge} without link_down=1, the bridge exists on the host "
                             f"(`ip link show {spec.networks.storage.bridge}`), then the Talos address and "
                             "`ip route` on the node"))
    return out


def check_argocd(spec: LabSpec, f: ValidationFacts) -> list[Check]:
    if f.argocd_apps is None:
        return []
    out = []
    for app in sorted(f.argocd_apps, key=ns_name):
        st = _st(app)
        sync = (st.get("sync") or {}).get("status") or "Unknown"
        health = (st.get("health") or {}).get("status") or "Unknown"
        out.append(Check("ArgoCD application", ns_name(app), "Synced / Healthy", f"{sync} / {health}",
                         sync == "Synced" and health == "Healthy",
                         f"argocd app get {_md(app).get('name')} (or kubectl describe application)"))
    return out


def check_truenas(spec: LabSpec, f: ValidationFacts) -> list[Check]:
    t = spec.truenas
    if t is None or not t.enabled or f.truenas is None:
        return []
    if f.truenas.get("error"):
        return [Check("TrueNAS API", t.name, f"reachable at {t.ip}", f.truenas["error"], False,
                      "check the TrueNAS VM is running and truenas.api_key is set")]
    out = []
    shares = {s.get("path"): s for s in f.truenas.get("shares") or []}
    for want in t.nfs_shares:
        s = shares.get(want.path)
        nets = sorted(str(n) for n in (s or {}).get("networks") or [])
        ok = s is not None and bool(s.get("enabled", True)) and nets == sorted(want.networks)
        out.append(Check("NFS export", want.path, f"exported to {', '.join(want.networks)} only",
                         "absent" if s is None else f"networks {', '.join(nets) or 'any'}" +
                         ("" if s.get("enabled", True) else ", disabled"), ok, "re-run 60-truenas-plex"))
    nfs = next((s for s in f.truenas.get("services") or [] if s.get("service") == "nfs"), None)
    state = (nfs or {}).get("state", "absent")
    out.append(Check("NFS service", t.name, "RUNNING", state, state == "RUNNING", "re-run 60-truenas-plex"))
    return out


def check_plex(spec: LabSpec, f: ValidationFacts) -> list[Check]:
    p = spec.plex
    if p is None or not p.enabled or f.plex is None:
        return []
    if f.plex.get("error"):
        return [Check("Plex container", f"{p.hostname} ({p.vmid})", "running", f.plex["error"], False, "run 60-truenas-plex")]
    status = f.plex.get("status", "absent")
    out = [Check("Plex container", f"{p.hostname} ({p.vmid})", "running", status, status == "running",
                 f"pct start {p.vmid}; pct config {p.vmid}")]
    if p.gpu_passthrough and spec.host.gpu:
        dev0 = str((f.plex.get("config") or {}).get("dev0") or "")
        want = spec.host.gpu.render_node
        out.append(Check("Plex GPU (dev0)", f"{p.hostname} ({p.vmid})", f"dev0 = {want},gid={spec.host.gpu.render_gid}",
                         dev0 or "no dev0", dev0.split(",")[0] == want, "re-run 60-truenas-plex (PVE 8.1+ dev0 passthrough)"))
    return out


CHECKS = (check_nodes, check_pods, check_cilium, check_services, check_mayastor, check_storage_network, check_argocd,
          check_truenas, check_plex)


def all_checks(spec: LabSpec, facts: ValidationFacts) -> list[Check]:
    """Every check, area by area, in the order of :data:`AREAS`."""
    return [c for fn in CHECKS for c in fn(spec, facts)]


# ---------------------------------------------------------------------------------------------
# The before-state (rollback)


@dataclass(frozen=True)
class LabState:
    """What must be the same after a rollback: LB IP per service (``ns/name``), the claim each
    workload mounts (``ns/Kind/name`` -> claim), and the data checksum per claim (``ns/claim``)."""

    service_ips: dict[str, str] = field(default_factory=dict)
    workload_claims: dict[str, list[str]] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)
    #: every other compared field (:data:`Snapshot`: bridges, VMs, containers, nodes, objects, Git tree)
    fields: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"service_ips": dict(self.service_ips), "workload_claims": {k: list(v) for k, v in self.workload_claims.items()},
                "checksums": dict(self.checksums), "fields": dict(self.fields)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LabState:
        return cls(dict(d.get("service_ips") or {}), {k: list(v) for k, v in (d.get("workload_claims") or {}).items()},
                   dict(d.get("checksums") or {}), dict(d.get("fields") or {}))


def compare_states(before: LabState, after: LabState) -> list[Check]:
    """The lab matches its before-state: same service IPs, same claims mounted, same checksums."""
    out = []
    for key, ip in sorted(before.service_ips.items()):
        now = after.service_ips.get(key, "")
        out.append(Check("service IP as before", key, ip, now or "none", now == ip,
                         "re-run 80-rollback (MetalLB restore, annotations metallb.universe.tf/loadBalancerIPs)"))
    for key, claims in sorted(before.workload_claims.items()):
        now = after.workload_claims.get(key)
        out.append(Check("workload claim as before", key, ", ".join(claims), ", ".join(now) if now is not None else "absent",
                         now == claims, "re-run 80-rollback (volumes part)"))
    for key, sha in sorted(before.checksums.items()):
        now = after.checksums.get(key, "")
        out.append(Check("volume data as before", key, sha[:16], now[:16] or "no checksum", now == sha,
                         "the data differs: compare with the Mayastor copy (kept) before writing anything"))
    return out


#: the compared fields of the whole lab (:func:`compare_snapshots`): ``"area|subject|field" -> value``
Snapshot = dict[str, str]


def snapshot_key(area: str, subject: str, name: str) -> str:
    return f"{area}|{subject}|{name}"


def compare_snapshots(before: Snapshot, after: Snapshot, kept: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The before/after comparison table: one row per compared field present before or after —
    ``{area, subject, field, before, after, result}``, result ``equal``, ``kept (<why>)`` when
    ``kept`` (key -> the parameter that keeps it, e.g. ``destroy_extra_workers=False``) names a
    field that differs, else ``differs``. Pure."""
    kept = kept or {}
    out = []
    for key in sorted(set(before) | set(after)):
        area, subject, name = key.split("|", 2)
        b, a = before.get(key), after.get(key)
        result = "equal" if a == b else (f"kept ({kept[key]})" if key in kept else "differs")
        out.append({"area": area, "subject": subject, "field": name, "before": "absent" if b is None else b,
                    "after": "absent" if a is None else a, "result": result})
    return out


def comparison_checks(table: list[dict[str, Any]]) -> list[Check]:
    """The comparison as checks: every row equal or kept by a stated parameter passes."""
    return [Check(f"as before: {r['area']} {r['field']}", r["subject"], r["before"],
                  r["after"] + ("" if r["result"] in ("equal", "differs") else f" — {r['result']}"),
                  r["result"] != "differs", "" if r["result"] != "differs" else "re-run 80-rollback with rollback=True "
                  "(the plans say what each part restores)") for r in table]


# ---------------------------------------------------------------------------------------------
# Display


def rows(checks: list[Check]) -> list[dict[str, Any]]:
    return [{"area": AREA_OF.get(c.check, "other"), **c.row()} for c in checks]


def summary_counts(checks: list[Check]) -> list[dict[str, Any]]:
    """``[{area, ok, failed}]`` in :data:`AREAS` order (areas without checks left out)."""
    counts: dict[str, list[int]] = {}
    for r in rows(checks):
        counts.setdefault(r["area"], [0, 0])[0 if r["ok"] else 1] += 1
    order = [a for a in AREAS if a in counts] + sorted(set(counts) - set(AREAS))
    return [{"area": a, "ok": counts[a][0], "failed": counts[a][1]} for a in order]


__all__ = ["AREAS", "AREA_OF", "FreshPvc", "LabState", "Ping", "Snapshot", "ValidationFacts", "all_checks",
           "compare_snapshots", "compare_states", "comparison_checks", "snapshot_key",
           "parse_quantity", "rows", "summary_counts", "talos_addresses"]
