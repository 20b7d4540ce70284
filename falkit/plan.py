"""The derived plan: everything the runbook will build, computed from the spec alone (pure, no I/O).

- every VM with its VMID, Proxmox node, cores, memory, disks and their storages, both NICs with the
  seed's MAC scheme (``52:54:00:10:10:XX`` management, ``52:54:00:10:11:XX`` storage, XX = the
  host's last IP octet written as two decimal digits, as the seed does for 10.10.0.11 -> ``:11``);
- the Plex container and (when enabled) the TrueNAS VM;
- the LoadBalancer pool and each service's IP (pinned ones, and the first free ones for ``auto``);
- the io-engine core list that fits the workers.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .spec import LabSpec, Service


class MacSchemeError(ValueError):
    """The seed's MAC scheme cannot encode this address (last octet above 99)."""


def mac_for(prefix: str, ip: str) -> str:
    """``mac_for("52:54:00:10:10", "10.10.0.11") == "52:54:00:10:10:11"``.

    The seed writes the last octet's decimal digits as the MAC's last byte; that encodes 0-99 only.
    """
    octet = int(ip.rsplit(".", 1)[1])
    if octet > 99:
        raise MacSchemeError(f"the MAC scheme {prefix}:XX writes the last octet as two decimal digits; {ip} (.{octet}) does not fit")
    return f"{prefix}:{octet:02d}"


@dataclass(frozen=True)
class Disk:
    slot: str  # scsi0, scsi1
    storage: str
    size_gb: int
    role: str  # os | data


@dataclass(frozen=True)
class Nic:
    slot: str  # net0, net1
    bridge: str
    mac: str | None  # None when the scheme cannot encode it (a finding says so)
    ip: str
    cidr: str
    gateway: str
    network: str  # management | storage


@dataclass(frozen=True)
class VmPlan:
    name: str
    vmid: int
    node: str
    role: str  # control-plane | worker | truenas
    cores: int
    memory_gb: int
    disks: tuple[Disk, ...]
    nics: tuple[Nic, ...]

    @property
    def ip(self) -> str:
        return self.nics[0].ip

    @property
    def storage_ip(self) -> str | None:
        return next((n.ip for n in self.nics if n.network == "storage"), None)


@dataclass(frozen=True)
class CtPlan:
    hostname: str
    vmid: int
    node: str
    cores: int
    memory_gb: int
    rootfs_storage: str
    rootfs_gb: int
    nics: tuple[Nic, ...]
    unprivileged: bool
    gpu: str | None
    mounts: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ServiceIp:
    namespace: str
    name: str
    old_ip: str | None
    requested: str  # an IP, "auto" or "disabled"
    ip: str | None  # the address it will get (auto: the first free one, in order)


@dataclass(frozen=True)
class LabPlan:
    vms: tuple[VmPlan, ...]
    containers: tuple[CtPlan, ...]
    lb_pool: tuple[str, str]
    lb_pool_size: int
    services: tuple[ServiceIp, ...]
    io_engine_cores: tuple[int, ...]
    mac_problems: tuple[str, ...] = field(default=())

    @property
    def workers(self) -> tuple[VmPlan, ...]:
        return tuple(v for v in self.vms if v.role == "worker")

    def vm(self, name: str) -> VmPlan:
        return next(v for v in self.vms if v.name == name)

    def rows(self) -> list[dict]:
        """One row per VM/CT for a table."""
        out = []
        for v in self.vms:
            out.append(
                {
                    "name": v.name,
                    "vmid": v.vmid,
                    "kind": "qemu",
                    "role": v.role,
                    "node": v.node,
                    "cores": v.cores,
                    "memory_gb": v.memory_gb,
                    "disks": ", ".join(f"{d.slot}={d.storage}:{d.size_gb}G" for d in v.disks),
                    "mgmt": f"{v.nics[0].ip} {v.nics[0].mac or '?'} ({v.nics[0].bridge})",
                    "storage": next((f"{n.ip} {n.mac or '?'} ({n.bridge})" for n in v.nics if n.network == "storage"), ""),
                }
            )
        for c in self.containers:
            out.append(
                {
                    "name": c.hostname,
                    "vmid": c.vmid,
                    "kind": "lxc",
                    "role": "plex",
                    "node": c.node,
                    "cores": c.cores,
                    "memory_gb": c.memory_gb,
                    "disks": f"rootfs={c.rootfs_storage}:{c.rootfs_gb}G",
                    "mgmt": f"{c.nics[0].ip} {c.nics[0].mac or '?'} ({c.nics[0].bridge})",
                    "storage": next((f"{n.ip} {n.mac or '?'} ({n.bridge})" for n in c.nics if n.network == "storage"), ""),
                }
            )
        return out


def _nic(spec: LabSpec, slot: str, network: str, ip: str, problems: list[str], name: str) -> Nic:
    net = getattr(spec.networks, network)
    try:
        mac = mac_for(net.mac_prefix, ip)
    except MacSchemeError as exc:
        problems.append(f"{name} {slot}: {exc}")
        mac = None
    return Nic(slot, net.bridge, mac, ip, net.cidr, net.gateway, network)


def derive_io_engine_cores(spec: LabSpec) -> tuple[int, ...]:
    """The io-engine core list: the spec's, or one that fits the smallest worker.

    The chart's default ``io_engine.cpuCount: "2"`` pins cores 1 and 2, which do not exist on a
    2-vCPU VM ("EAL: invalid core list"). falkit leaves core 0 to the kubelet and system pods and
    gives io-engine cores 1..min(2, vcpus-1).
    """
    if spec.mayastor.io_engine_cores is not None:
        return tuple(spec.mayastor.io_engine_cores)
    vcpus = min(w.cores for w in spec.cluster.workers)
    count = max(1, min(2, vcpus - 1))
    return tuple(range(1, 1 + count)) if vcpus > 1 else (0,)


def lb_addresses(start: str, stop: str) -> list[str]:
    a, b = int(ipaddress.IPv4Address(start)), int(ipaddress.IPv4Address(stop))
    return [str(ipaddress.IPv4Address(i)) for i in range(a, b + 1)]


def assign_service_ips(pool: list[str], services: list[Service]) -> tuple[ServiceIp, ...]:
    """Pinned services get their IP; ``auto`` ones the lowest free pool address, in spec order
    (Cilium LB-IPAM allocates the lowest free address of a pool)."""
    taken = {s.new_ip for s in services if s.new_ip not in ("auto", "disabled")}
    free = [ip for ip in pool if ip not in taken]
    out = []
    for s in services:
        if s.new_ip == "disabled":
            ip = None
        elif s.new_ip == "auto":
            ip = free.pop(0) if free else None
        else:
            ip = s.new_ip
        out.append(ServiceIp(s.namespace, s.name, s.old_ip, s.new_ip, ip))
    return tuple(out)


def derive_plan(spec: LabSpec) -> LabPlan:
    """Everything the runbook will build, from the spec alone."""
    problems: list[str] = []
    d = spec.cluster.vm_defaults
    vms: list[VmPlan] = []
    for cp in spec.cluster.control_plane:
        vms.append(
            VmPlan(
                cp.name, cp.vmid, spec.host.node, "control-plane", cp.cores, cp.memory_gb,
                (Disk("scsi0", d.os_storage, cp.os_disk_gb, "os"),),
                (_nic(spec, "net0", "management", cp.ip, problems, cp.name),),
            )
        )
    for w in spec.cluster.workers:
        vms.append(
            VmPlan(
                w.name, w.vmid, w.node or spec.host.node, "worker", w.cores, w.memory_gb,
                (Disk("scsi0", d.os_storage, w.os_disk_gb, "os"), Disk("scsi1", d.data_storage, w.data_disk_gb, "data")),
                (_nic(spec, "net0", "management", w.ip, problems, w.name), _nic(spec, "net1", "storage", w.storage_ip, problems, w.name)),
            )
        )
    t = spec.truenas
    if t and t.enabled:
        disks = [Disk("scsi0", d.os_storage, t.os_disk_gb, "os")]
        if t.data_disk_gb:
            disks.append(Disk("scsi1", d.data_storage, t.data_disk_gb, "data"))
        vms.append(
            VmPlan(
                t.name, t.vmid, spec.host.node, "truenas", t.cores, t.memory_gb, tuple(disks),
                (_nic(spec, "net0", "management", t.ip, problems, t.name), _nic(spec, "net1", "storage", t.storage_ip, problems, t.name)),
            )
        )
    cts: list[CtPlan] = []
    p = spec.plex
    if p and p.enabled:
        nics = [_nic(spec, "net0", "management", p.ip, problems, p.hostname)]
        if p.storage_ip:
            nics.append(_nic(spec, "net1", "storage", p.storage_ip, problems, p.hostname))
        gpu = spec.host.gpu.render_node if (p.gpu_passthrough and spec.host.gpu) else None
        cts.append(
            CtPlan(
                p.hostname, p.vmid, spec.host.node, p.cores, p.memory_gb, p.rootfs_storage, p.rootfs_gb, tuple(nics),
                p.unprivileged, gpu, tuple((m.share, m.mountpoint) for m in p.nfs_mounts),
            )
        )
    pool = lb_addresses(spec.cilium.lb_pool.start, spec.cilium.lb_pool.stop)
    return LabPlan(
        vms=tuple(vms),
        containers=tuple(cts),
        lb_pool=(spec.cilium.lb_pool.start, spec.cilium.lb_pool.stop),
        lb_pool_size=len(pool),
        services=assign_service_ips(pool, spec.services),
        io_engine_cores=derive_io_engine_cores(spec),
        mac_problems=tuple(problems),
    )
