"""Preflight findings: what will not work (error), what works but is risky (warning), and facts the
operator should know (info). Pure functions of the spec and the derived design; every message carries
its numbers and how to fix it.

``error`` blocks apply. Checks are a registry (``@check``), each returning findings; tests hold a
YAML fixture per check and the ids it must produce.

Each finding about a value in the parameters file carries the field path it is about (``at``);
:func:`preflight` adds where that field is written (``where``: ``fal.yaml:126:5``, from the
positions the loader kept), so ``falkit plan`` and 00-preflight name the place to fix, as a
schema error does.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from .ceilings import ceilings_for_spec
from .design import LabDesign, design_of
from .spec import LabSpec
from .yamlsrc import FieldPath, format_path

Severity = Literal["error", "warning", "info"]
HUGEPAGE_MIB = 2
IO_ENGINE_HUGEPAGES_MIB = 2048  # Mayastor: 2 GiB of 2 MiB hugepages per io-engine node
CHART_DEFAULT_IO_ENGINE_CPUS = 2  # mayastor chart io_engine.cpuCount default: pins cores 1,2
SUPPORTED_TALOS = ("1.10", "1.11", "1.12", "1.13")
SHIPPED_CILIUM = ("1.17", "1.18", "1.19")


@dataclass(frozen=True)
class Finding:
    id: str
    severity: Severity
    subject: str
    message: str
    fix: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    at: FieldPath = ()  # the field of the parameters file this finding is about
    where: str = ""  # file:line:column of that field (filled in by preflight)

    @property
    def field_path(self) -> str:
        """``cilium.lb_pool.start``: the field path, '' when the finding is about no one field."""
        return format_path(self.at)

    @property
    def place(self) -> str:
        """``fal.yaml:126:5 cilium.lb_pool.start``, as a schema error names it."""
        return " ".join(x for x in (self.where, self.field_path) if x)

    def row(self) -> dict[str, Any]:
        return {"severity": self.severity, "id": self.id, "subject": self.subject, "message": self.message, "fix": self.fix,
                "where": self.place}

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["at"] = self.field_path
        return out


Check = Callable[[LabSpec, LabDesign], Iterator[Finding]]
CHECKS: list[Check] = []


def check(fn: Check) -> Check:
    CHECKS.append(fn)
    return fn


def preflight(spec: LabSpec, design: LabDesign | None = None) -> list[Finding]:
    """Run every check. Errors first, then warnings, then info."""
    design = design or design_of(spec)
    out = [replace(f, where=spec.where(f.at)) if f.at else f for c in CHECKS for f in c(spec, design)]
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted(out, key=lambda f: order[f.severity])


def has_errors(findings: list[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)


def _ip(s: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(s)


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _vt(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split("."))


def machine_paths(spec: LabSpec) -> dict[str, FieldPath]:
    """Machine name -> its entry in the parameters file."""
    out: dict[str, FieldPath] = {}
    for i, cp in enumerate(spec.cluster.control_plane):
        out.setdefault(cp.name, ("cluster", "control_plane", i))
    for i, w in enumerate(spec.cluster.workers):
        out.setdefault(w.name, ("cluster", "workers", i))
    if spec.truenas:
        out.setdefault(spec.truenas.name, ("truenas",))
    if spec.plex:
        out.setdefault(spec.plex.hostname, ("plex",))
    return out


def ip_paths(spec: LabSpec) -> dict[str, FieldPath]:
    """Address -> the field that gives it to a machine or gateway (the first one)."""
    out: dict[str, FieldPath] = {}
    for key in ("management", "storage"):
        out.setdefault(getattr(spec.networks, key).gateway, ("networks", key, "gateway"))
    for base in machine_paths(spec).values():
        entry = spec
        for part in base:
            entry = entry[part] if isinstance(part, int) else getattr(entry, part)
        for attr in ("ip", "storage_ip"):
            ip = getattr(entry, attr, None)
            if ip:
                out.setdefault(ip, base + (attr,))
    return out


def _node_path(spec: LabSpec, node: str) -> FieldPath:
    if node == spec.host.node:
        return ("host",)
    i = next(i for i, n in enumerate(spec.host.other_nodes) if n.node == node)
    return ("host", "other_nodes", i)


# ---------------------------------------------------------------------------------------------
# Addressing


@check
def lb_pool(spec: LabSpec, design: LabDesign) -> Iterator[Finding]:
    mgmt = ipaddress.IPv4Network(spec.networks.management.cidr)
    stor = ipaddress.IPv4Network(spec.networks.storage.cidr)
    start, stop = design.lb_pool
    if _ip(start) not in mgmt or _ip(stop) not in mgmt:
        yield Finding("addr.pool-outside-subnet", "error", f"pool {start}-{stop}",
                      f"the LoadBalancer pool must lie inside the management subnet {mgmt} (L2 announcements answer ARP only there)",
                      f"choose a range inside {mgmt}", at=("cilium", "lb_pool", "start" if _ip(start) not in mgmt else "stop"))
    if _ip(start) in stor or _ip(stop) in stor:
        yield Finding("addr.pool-in-storage-subnet", "error", f"pool {start}-{stop}",
                      f"the LoadBalancer pool overlaps the storage subnet {stor}", "move the pool into the management subnet",
                      at=("cilium", "lb_pool", "start" if _ip(start) in stor else "stop"))
    paths = ip_paths(spec)
    used: dict[str, str] = {spec.networks.management.gateway: "the management gateway", str(mgmt.network_address): "the network address",
                            str(mgmt.broadcast_address): "the broadcast address"}
    for v in design.vms:
        for n in v.nics:
            used[n.ip] = v.name
    for c in design.containers:
        for n in c.nics:
            used[n.ip] = c.hostname
    for ip, who in sorted(used.items(), key=lambda kv: _ip(kv[0])):
        if design.in_lb_pool(ip):
            yield Finding("addr.pool-overlaps-host", "error", f"pool {start}-{stop}",
                          f"{ip} ({who}) lies inside the LoadBalancer pool cilium.lb_pool: Cilium could hand it to a service",
                          f"move {who} or shrink the pool",
                          at=paths.get(ip, ("networks", "management", "cidr")))


@check
def service_ips(spec: LabSpec, design: LabDesign) -> Iterator[Finding]:
    pinned = Counter(s.new_ip for s in spec.services if s.new_ip not in ("auto", "disabled"))
    hosts = ip_paths(spec)
    for i, s in enumerate(spec.services):
        if s.new_ip in ("auto", "disabled"):
            continue
        at = ("services", i, "new_ip")
        if s.new_ip in hosts:
            yield Finding("addr.service-ip-host", "error", f"service {s.namespace}/{s.name}",
                          f"requested IP {s.new_ip} is already {format_path(hosts[s.new_ip])}: two hosts would answer ARP for it",
                          "request another address inside the pool", at=at)
        if not design.in_lb_pool(s.new_ip):
            yield Finding("addr.service-ip-outside-pool", "error", f"service {s.namespace}/{s.name}",
                          f"requested IP {s.new_ip} is outside the pool {design.lb_pool_text}: "
                          "LB-IPAM would leave the service without an address",
                          "request an address inside the pool, or widen the pool", at=at)
        if pinned[s.new_ip] > 1:
            yield Finding("addr.service-ip-duplicate", "error", f"service {s.namespace}/{s.name}",
                          f"{s.new_ip} is requested by {pinned[s.new_ip]} services (without a sharing key only one gets it)",
                          "give each service its own address", at=at)
    wanted = [s for s in spec.services if s.new_ip != "disabled"]
    size = design.lb_pool_size
    if len(wanted) > size:
        yield Finding("addr.pool-too-small", "error", "LoadBalancer pool",
                      f"{len(wanted)} LoadBalancer services but the pool holds {size} addresses",
                      "widen the pool", at=("cilium", "lb_pool", "stop"))
    else:
        yield Finding("addr.pool-usage", "info", "LoadBalancer pool",
                      f"{len(wanted)} LoadBalancer service(s) in a pool of {size} addresses ({size - len(wanted)} free)",
                      data={"services": len(wanted), "pool_size": size})


@check
def macs(spec: LabSpec, design: LabDesign) -> Iterator[Finding]:
    machines = machine_paths(spec)
    for problem in design.mac_problems:
        name = problem.split(":")[0]
        yield Finding("addr.mac-scheme", "error", name, problem,
                      "keep host addresses at .2-.99 or change the MAC scheme",
                      at=machines[name] + ("ip",) if name in machines else ("networks", "management", "mac_prefix"))
    seen: dict[str, str] = {}
    for v in list(design.vms) + list(design.containers):
        name = getattr(v, "name", None) or v.hostname
        for n in v.nics:
            if n.mac is None:
                continue
            if n.mac in seen:
                yield Finding("addr.mac-duplicate", "error", f"{name} {n.slot}",
                              f"MAC {n.mac} is also used by {seen[n.mac]}", "give the networks different MAC prefixes",
                              at=("networks", "storage" if n.slot != "net0" else "management", "mac_prefix"))
            else:
                seen[n.mac] = f"{name} {n.slot}"
    if spec.previous and spec.previous.network.mac_prefix != spec.networks.management.mac_prefix:
        yield Finding("addr.mac-prefix-change", "info", "VM NICs",
                      f"existing VMs change MAC prefix {spec.previous.network.mac_prefix}:XX -> {spec.networks.management.mac_prefix}:XX: "
                      "a disruptive change (the guest sees a new NIC; DHCP reservations must follow)",
                      "update DHCP reservations from the hand-off table before the VMs restart")


# ---------------------------------------------------------------------------------------------
# Host budget


def _by_node(design: LabDesign, node: str) -> tuple[list, list]:
    return [v for v in design.vms if v.node == node], [c for c in design.containers if c.node == node]


def memory_budget(spec: LabSpec, design: LabDesign, node: str | None = None) -> dict[str, float]:
    node = node or spec.host.node
    info = spec.host.node_info(node)
    vms, cts = _by_node(design, node)
    return {"host_gb": info.memory_gb, "overhead_gb": info.overhead.memory_gb,
            "vms_gb": sum(v.memory_gb for v in vms), "containers_gb": sum(c.memory_gb for c in cts)}


def storage_budget(spec: LabSpec, design: LabDesign, node: str | None = None) -> dict[str, dict[str, float]]:
    node = node or spec.host.node
    vms, cts = _by_node(design, node)
    out: dict[str, dict[str, float]] = {
        s.name: {"size_gb": s.size_gb, "reserve_gb": s.reserve_gb, "allocated_gb": 0.0, "by": {}} for s in spec.host.storages
    }
    for v in vms:
        for d in v.disks:
            if d.storage in out:
                out[d.storage]["allocated_gb"] += d.size_gb
                out[d.storage]["by"][f"{v.name} {d.slot}"] = d.size_gb
    for c in cts:
        if c.rootfs_storage in out:
            out[c.rootfs_storage]["allocated_gb"] += c.rootfs_gb
            out[c.rootfs_storage]["by"][f"{c.hostname} rootfs"] = c.rootfs_gb
    return out


@check
def host_memory(spec: LabSpec, design: LabDesign) -> Iterator[Finding]:
    for node in spec.host.node_names:
        yield from _node_memory(spec, design, node)


def _node_memory(spec: LabSpec, design: LabDesign, node: str) -> Iterator[Finding]:
    b = memory_budget(spec, design, node)
    committed = b["vms_gb"] + b["overhead_gb"]
    headroom = b["host_gb"] - committed
    parts = " + ".join(f"{v.name} {v.memory_gb}" for v in _by_node(design, node)[0])
    numbers = f"VMs {b['vms_gb']:g} GB ({parts}) + Proxmox {b['overhead_gb']:g} GB = {committed:g} GB of {b['host_gb']} GB"
    if headroom < 0:
        yield Finding("budget.memory", "error", f"host {node} RAM",
                      f"{numbers}: {-headroom:g} GB over. The host will swap or the OOM killer will stop a VM",
                      "lower VM memory (e.g. workers) or leave TrueNAS disabled", data=b,
                      at=_node_path(spec, node) + ("memory_gb",))
    elif headroom < 2:
        yield Finding("budget.memory", "warning", f"host {node} RAM",
                      f"{numbers}: {headroom:g} GB headroom (no room for page cache, ZFS ARC or a new VM)",
                      "lower a worker's memory by 1-2 GB, or add RAM", data=b, at=_node_path(spec, node) + ("memory_gb",))
    else:
        yield Finding("budget.memory", "info", f"host {node} RAM", f"{numbers}: {headroom:g} GB headroom", data=b)
    if b["containers_gb"]:
        total = committed + b["containers_gb"]
        if total > b["host_gb"]:
            yield Finding("budget.memory-containers", "warning", f"host {node} RAM",
                          f"with container limits ({b['containers_gb']:g} GB) the total is {total:g} GB of {b['host_gb']} GB. "
                          "An LXC limit is a ceiling, not a reservation, but at full use the host is short",
                          "lower the container's memory limit or a VM's memory", data=b, at=_node_path(spec, node) + ("memory_gb",))


@check
def host_cpu(spec: LabSpec, design: LabDesign) -> Iterator[Finding]:
    for node in spec.host.node_names:
        yield from _node_cpu(spec, design, node)


def _node_cpu(spec: LabSpec, design: LabDesign, node: str) -> Iterator[Finding]:
    threads = spec.host.node_info(node).cpu.threads
    vms, cts = _by_node(design, node)
    vcpus = sum(v.cores for v in vms) + sum(c.cores for c in cts)
    for v in vms:
        if v.cores > threads:
            yield Finding("budget.vcpu-vm", "error", v.name, f"{v.cores} vCPUs but the host has {threads} threads", "lower the cores",
                          at=machine_paths(spec).get(v.name, ()) + ("cores",))
    sev: Severity = "warning" if vcpus > threads else "info"
    yield Finding("budget.vcpu", sev, f"host {node} CPU",
                  f"{vcpus} vCPUs on {threads} threads ({vcpus / threads:.2f}x)" + (": overcommitted" if vcpus > threads else ""),
                  "fewer vCPUs" if vcpus > threads else "", data={"vcpus": vcpus, "threads": threads})


@check
def host_storage(spec: LabSpec, design: LabDesign) -> Iterator[Finding]:
    for node in spec.host.node_names:
        yield from _node_storage(spec, design, node)


def _node_storage(spec: LabSpec, design: LabDesign, node: str) -> Iterator[Finding]:
    where = f" on {node}" if spec.host.other_nodes else ""
    for name, b in storage_budget(spec, design, node).items():
        need = b["allocated_gb"] + b["reserve_gb"]
        free = b["size_gb"] - need
        numbers = f"{b['allocated_gb']:g} GB of disks" + (f" + {b['reserve_gb']:g} GB reserved" if b["reserve_gb"] else "") + f" on {b['size_gb']} GB"
        thin = spec.storage(name).type in ("lvmthin", "zfspool")
        if free < 0:
            sev: Severity = "warning" if thin else "error"
            msg = f"{numbers}: {-free:g} GB over" + (" (thin pool: fine until the disks fill, then every VM on it stops)" if thin else "")
            if not thin or name in {d.storage for v in design.vms for d in v.disks if d.role == "data"}:
                sev = "error"
            yield Finding("budget.storage", sev, f"storage {name}{where}", msg, "smaller disks or a larger storage", data=b,
                          at=("host", "storages", [s.name for s in spec.host.storages].index(name), "size_gb"))
        elif free == 0:
            yield Finding("budget.storage", "warning", f"storage {name}{where}", f"{numbers}: fully allocated, 0 GB headroom",
                          "keep 10% free on thin pools", data=b)
        else:
            yield Finding("budget.storage", "info", f"storage {name}{where}", f"{numbers}: {free:g} GB free", data=b)


# ---------------------------------------------------------------------------------------------
# Mayastor


@check
def hugepages(spec: LabSpec, design: LabDesign) -> Iterator[Finding]:
    pages = spec.mayastor.hugepages_2mi
    mib = pages * HUGEPAGE_MIB
    worker_gb = min(w.memory_gb for w in spec.cluster.workers)
    data = {"pages": pages, "mib": mib, "required_mib": IO_ENGINE_HUGEPAGES_MIB}
    if mib < IO_ENGINE_HUGEPAGES_MIB:
        yield Finding("mayastor.hugepages", "error", "workers vm.nr_hugepages",
                      f"{pages} x 2 MiB = {mib} MiB, but io-engine requests {IO_ENGINE_HUGEPAGES_MIB} MiB: it stays Pending",
                      "set mayastor.hugepages_2mi to at least 1024 (2048 recommended)", data=data, at=("mayastor", "hugepages_2mi"))
    elif mib == IO_ENGINE_HUGEPAGES_MIB:
        yield Finding("mayastor.hugepages", "warning", "workers vm.nr_hugepages",
                      f"{pages} x 2 MiB = {mib} MiB is exactly io-engine's request: zero slack; upstream reports on Talos "
                      f"needed 2048 pages. 2048 pages would reserve 4 GiB of each worker's {worker_gb} GB",
                      "set mayastor.hugepages_2mi: 2048 if io-engine fails to allocate", data=data, at=("mayastor", "hugepages_2mi"))
    if mib / 1024 > worker_gb / 2:
        yield Finding("mayastor.hugepages-memory", "warning", "workers RAM",
                      f"hugepages take {mib / 1024:g} GiB of {worker_gb} GB per worker, more than half", "give workers more RAM",
                      at=("mayastor", "hugepages_2mi"))


@check
def io_engine(spec: LabSpec, design: LabDesign) -> Iterator[Finding]:
    vcpus = min(w.cores for w in spec.cluster.workers)
    cores = design.io_engine_cores
    workers = len(spec.cluster.workers)
    if spec.mayastor.io_engine_cores is not None:
        bad = [c for c in cores if c >= vcpus]
        if bad:
            yield Finding("mayastor.io-engine-cores", "error", "io-engine coreList",
                          f"cores {bad} do not exist on a {vcpus}-vCPU worker: io-engine fails with 'EAL: invalid core list'",
                          f"use cores below {vcpus}, or leave io_engine_cores unset", at=("mayastor", "io_engine_cores"))
            return
    if vcpus <= CHART_DEFAULT_IO_ENGINE_CPUS:
        yield Finding("mayastor.io-engine-cores", "warning", "io-engine on workers",
                      f"the chart default io_engine.cpuCount={CHART_DEFAULT_IO_ENGINE_CPUS} pins cores 1,2, which do not exist on "
                      f"{vcpus}-vCPU workers ('EAL: invalid core list'). falkit sets coreList {list(cores)}: io-engine busy-polls "
                      f"{len(cores)} of {vcpus} vCPUs at 100% ({100 * len(cores) // vcpus}% of each worker), "
                      f"{len(cores) * workers} host threads permanently busy",
                      "give workers 4 vCPUs so io-engine can have 2 cores and workloads keep 2",
                      data={"vcpus": vcpus, "core_list": list(cores), "host_threads_busy": len(cores) * workers},
                      at=("mayastor", "io_engine_cores") if spec.mayastor.io_engine_cores is not None else ("cluster", "workers"))
    else:
        yield Finding("mayastor.io-engine-cores", "info", "io-engine on workers",
                      f"coreList {list(cores)} on {vcpus}-vCPU workers ({len(cores) * workers} host threads busy-polling)")
    if workers < spec.mayastor.replicas:
        yield Finding("mayastor.io-engine-nodes", "error", "Mayastor replicas",
                      f"{spec.mayastor.replicas} replicas need {spec.mayastor.replicas} io-engine nodes; there are {workers} workers",
                      "add workers or lower mayastor.replicas", at=("mayastor", "replicas"))


@check
def kernel_modules(spec: LabSpec, design: LabDesign) -> Iterator[Finding]:
    mods = spec.talos.kernel_modules
    if "nvme_tcp" in mods:
        return
    if "nvme-tcp" in mods:
        yield Finding("talos.nvme-tcp-name", "info", "talos kernel modules",
                      "the seed writes 'nvme-tcp'; the module's name is nvme_tcp (as /proc/modules and lsmod list it). "
                      "falkit writes nvme_tcp into the machine config",
                      "write nvme_tcp")
    else:
        yield Finding("talos.nvme-tcp", "error", "talos kernel modules",
                      f"nvme_tcp is missing from talos.kernel_modules ({mods}): Talos will not load it, so "
                      "Mayastor's NVMe-oF/TCP cannot connect volumes (this checks the parameters, not a node)",
                      "add nvme_tcp to talos.kernel_modules",
                      at=("talos", "kernel_modules"))
    if "iscsi_tcp" in mods:
        yield Finding("talos.iscsi", "info", "talos kernel modules", "iscsi_tcp is only needed by Longhorn", "remove it after the migration")


@check
def failure_domains(spec: LabSpec, design: LabDesign) -> Iterator[Finding]:
    replicas = spec.mayastor.replicas
    disks: dict[str, list[str]] = {}
    nodes: set[str] = set()
    for w in design.workers:
        data = next(d for d in w.disks if d.role == "data")
        st = spec.storage(data.storage)
        phys = st.device.physical_disk if st else data.storage
        if spec.host.other_nodes:
            phys = f"{w.node}:{phys}"
        disks.setdefault(phys, []).append(w.name)
        nodes.add(w.node)
    if len(disks) < replicas:
        phys, names = max(disks.items(), key=lambda kv: len(kv[1]))
        yield Finding("mayastor.failure-domain-disk", "warning", "Mayastor replicas",
                      f"the data disks of {', '.join(names)} all sit on one physical disk ({phys}): the {replicas} replicas "
                      f"survive a VM restart, not a failure of that disk; every write lands on it {min(replicas, len(names))} times",
                      "put the data disks on separate physical disks, or treat Mayastor replication as VM-restart protection only",
                      data={"physical_disks": len(disks), "replicas": replicas})
    if len(nodes) < replicas:
        yield Finding("mayastor.failure-domain-host", "warning", "Mayastor replicas",
                      f"the workers run on {len(nodes)} Proxmox node(s) ({', '.join(sorted(nodes))}) for {replicas} replicas: "
                      "a host failure can take several replicas of a volume at once",
                      "keep backups off this host")


@check
def performance(spec: LabSpec, design: LabDesign) -> Iterator[Finding]:
    c = ceilings_for_spec(spec)
    yield Finding("perf.ceiling", "info", "Mayastor volume ceiling",
                  f"highest sequential read {c['seq_read_mb_s']:.0f} MB/s, write {c['seq_write_mb_s']:.0f} MB/s, "
                  f"random read {c['rand_read_iops']:.0f} IOPS ({c['explain']})", data=c)
    if not spec.expectations:
        return
    exp = spec.expectations.mayastor
    for key, claim, ceiling, unit in (
        ("seq_read", exp.seq_read_mb_s, c["seq_read_mb_s"], "MB/s"),
        ("seq_write", exp.seq_write_mb_s, c["seq_write_mb_s"], "MB/s"),
        ("rand_iops", exp.rand_iops, c["rand_read_iops"], "IOPS"),
    ):
        if claim > ceiling:
            yield Finding(f"perf.claim-{key}", "warning", f"seed expectation Mayastor {key.replace('_', ' ')}",
                          f"the seed expects ~{claim:g} {unit}; the physical ceiling on this lab is {ceiling:.0f} {unit}",
                          "expect the ceiling, not the seed's figure; benchmarks in 50-mayastor measure it",
                          data={"claim": claim, "ceiling": ceiling})
    if exp.latency_ms < c["latency_ms"]:
        yield Finding("perf.claim-latency", "warning", "seed expectation Mayastor latency",
                      f"the seed expects ~{exp.latency_ms:g} ms; the device plus NVMe-oF/TCP cannot go below {c['latency_ms']:.2f} ms",
                      "", data={"claim": exp.latency_ms, "floor": c["latency_ms"]})


# ---------------------------------------------------------------------------------------------
# Cilium and Talos


def cilium_api(version: str) -> dict[str, str]:
    """apiVersions and the LB-IP annotation key that fit a Cilium version (upstream/cilium/NOTES.md)."""
    v = _vt(version)
    return {
        "pool": "cilium.io/v2" if v >= (1, 18) else "cilium.io/v2alpha1",
        "l2policy": "cilium.io/v2alpha1",
        "annotation": "lbipam.cilium.io/ips",
        "annotation_alias": "io.cilium/lb-ipam-ips",
    }


def client_rate_limit(spec: LabSpec) -> dict[str, int]:
    """Cilium's k8s client limit sized to the L2 leases: each LB service holds a lease renewed
    within ``leaseRenewDeadline``; the defaults (5 qps / burst 10) are shared with everything else."""
    services = len([s for s in spec.services if s.new_ip != "disabled"])
    lease_qps = -(-services // spec.cilium.lease_renew_deadline_s)  # ceil
    qps = 5 + 2 * lease_qps
    return {"qps": qps, "burst": 2 * qps, "services": services}


@check
def cilium(spec: LabSpec, design: LabDesign) -> Iterator[Finding]:
    c = spec.cilium
    version = spec.versions.cilium
    if c.l2_announcements and not c.kube_proxy_replacement:
        yield Finding("cilium.kube-proxy-replacement", "error", "Cilium L2 announcements",
                      "L2 announcements need kubeProxyReplacement=true", "set cilium.kube_proxy_replacement: true",
                      at=("cilium", "kube_proxy_replacement"))
    need = client_rate_limit(spec)
    if c.k8s_client_rate_limit and (c.k8s_client_rate_limit.qps < need["qps"] or c.k8s_client_rate_limit.burst < need["burst"]):
        yield Finding("cilium.rate-limit", "warning", "Cilium k8sClientRateLimit",
                      f"qps {c.k8s_client_rate_limit.qps}/burst {c.k8s_client_rate_limit.burst} is below {need['qps']}/{need['burst']} "
                      f"needed for {need['services']} L2 leases renewed every {c.lease_renew_deadline_s} s: leases lapse and IPs flap",
                      "raise it or leave it unset so falkit sizes it", data=need, at=("cilium", "k8s_client_rate_limit"))
    else:
        yield Finding("cilium.rate-limit", "info", "Cilium k8sClientRateLimit",
                      f"qps {need['qps']}, burst {need['burst']} for {need['services']} L2 lease(s)", data=need)
    if _vt(version) < (1, 16):
        yield Finding("cilium.version", "error", f"Cilium {version}",
                      "falkit generates spec.blocks pools (Cilium 1.16+); older releases used spec.cidrs", "use Cilium 1.16 or newer",
                      at=("versions", "cilium"))
    elif _minor(version) not in SHIPPED_CILIUM:
        yield Finding("cilium.schema", "warning", f"Cilium {version}",
                      f"no values schema shipped for {_minor(version)} (have {', '.join(SHIPPED_CILIUM)}); values are checked against the nearest",
                      "")
    api = cilium_api(version)
    yield Finding("cilium.api", "info", f"Cilium {version}",
                  f"CiliumLoadBalancerIPPool {api['pool']}, CiliumL2AnnouncementPolicy {api['l2policy']}, "
                  f"annotation {api['annotation']} (the seed's {api['annotation_alias']} is a deprecated alias)", data=api)


@check
def talos(spec: LabSpec, design: LabDesign) -> Iterator[Finding]:
    v = spec.versions.talos
    if _minor(v) not in SUPPORTED_TALOS:
        yield Finding("talos.version", "error", f"Talos {v}",
                      f"no machine-config schema shipped for {_minor(v)} (have {', '.join(SUPPORTED_TALOS)})", "choose a supported version",
                      at=("versions", "talos"))
        return
    if _vt(v) >= (1, 12):
        msg = "network settings go into separate documents (LinkConfig, HostnameConfig, ResolverConfig); machine.network.interfaces is gone from the schema"
    else:
        msg = "network settings go inline (machine.network.interfaces, hostname, nameservers)"
    yield Finding("talos.config-format", "info", f"Talos {v}", msg)


@check
def storage_gateway(spec: LabSpec, design: LabDesign) -> Iterator[Finding]:
    """PVE allows one default gateway per host ("Default gateway already exists on interface
    'vmbr0'", seen against the twin's PVE API): vmbr1 gets an address, never a gateway."""
    s = spec.networks.storage
    net = ipaddress.IPv4Network(s.cidr)
    yield Finding("addr.storage-gateway", "info", f"bridge {s.bridge}",
                  f"Proxmox allows one default gateway per host, so {s.bridge} is created with address {s.gateway}/{net.prefixlen} "
                  f"and no gateway; workers get no default route on the storage NIC (their default route stays on "
                  f"{spec.networks.management.bridge}). The seed's 'ping {s.gateway}' then reaches the host's own bridge address"
                  + (" (the bridge has no physical port: storage traffic never leaves the host)" if not s.bridge_ports else ""),
                  "")
