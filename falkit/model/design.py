"""The lab's design: everything the runbook will build, derived from the spec alone (pure, no I/O).

- every VM with its VMID, Proxmox node, cores, memory, disks and their storages, both NICs with the
  seed's MAC scheme (``52:54:00:10:10:XX`` management, ``52:54:00:10:11:XX`` storage, XX = the
  host's last IP octet written as two decimal digits, as the seed does for 10.10.0.11 -> ``:11``);
  each guest's storage NIC (:attr:`VmDesign.storage_nic`);
- the Plex container and (when enabled) the TrueNAS VM;
- the LoadBalancer pool, its membership (:meth:`LabDesign.in_lb_pool`) and each service's IP
  (pinned ones, and the first free ones for ``auto``);
- the io-engine core list that fits the workers.

"Design" is what the lab should be; a "plan" is only :class:`falkit.plan.diff.Plan`, a step's changes.
:func:`derive_design` computes it; :func:`design_of` is the one place that calls it: a spec object
(frozen) gets its design once, and every later caller — the runbook's ``Lab``, the steps, the
renderers — reads that same value. A notebook loads its spec once, so it derives its design once.
"""

from __future__ import annotations

import ipaddress
import weakref
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

    @property
    def device(self) -> str:
        """The guest's name for this NIC: ``net0`` -> ``eth0`` (Talos boots with ``net.ifnames=0``
        or names them so itself, see falkit.render.talosconfig; the container gets ``name=eth1``)."""
        return f"eth{self.slot.removeprefix('net')}"


@dataclass(frozen=True)
class VmDesign:
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
    def storage_nic(self) -> Nic | None:
        """The NIC on the storage network (``net1``), None for the control plane."""
        return _storage_nic(self.nics)

    @property
    def storage_ip(self) -> str | None:
        return n.ip if (n := self.storage_nic) else None


@dataclass(frozen=True)
class CtDesign:
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

    @property
    def storage_nic(self) -> Nic | None:
        """The NIC on the storage network (``net1``), None when the spec gives no storage IP."""
        return _storage_nic(self.nics)


@dataclass(frozen=True)
class ServiceIp:
    namespace: str
    name: str
    old_ip: str | None
    requested: str  # an IP, "auto" or "disabled"
    ip: str | None  # the address it will get (auto: the first free one, in order)


@dataclass(frozen=True)
class LabDesign:
    vms: tuple[VmDesign, ...]
    containers: tuple[CtDesign, ...]
    lb_pool: tuple[str, str]
    lb_pool_size: int
    services: tuple[ServiceIp, ...]
    io_engine_cores: tuple[int, ...]
    mac_problems: tuple[str, ...] = field(default=())

    @property
    def workers(self) -> tuple[VmDesign, ...]:
        return tuple(v for v in self.vms if v.role == "worker")

    @property
    def control_plane(self) -> VmDesign:
        return next(v for v in self.vms if v.role == "control-plane")

    @property
    def lb_pool_text(self) -> str:
        """``10.10.0.100-10.10.0.149``."""
        return f"{self.lb_pool[0]}-{self.lb_pool[1]}"

    def in_lb_pool(self, ip: str | None) -> bool:
        """Whether ``ip`` is an address of the LoadBalancer pool (False for None or a non-IPv4 text)."""
        try:
            a = int(ipaddress.IPv4Address(ip or ""))
        except ValueError:
            return False
        return int(ipaddress.IPv4Address(self.lb_pool[0])) <= a <= int(ipaddress.IPv4Address(self.lb_pool[1]))

    def service(self, namespace: str, name: str) -> ServiceIp | None:
        return next((s for s in self.services if s.namespace == namespace and s.name == name), None)

    def vm(self, name: str) -> VmDesign:
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
                    "storage": _nic_text(v.storage_nic),
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
                    "storage": _nic_text(c.storage_nic),
                }
            )
        return out


def _storage_nic(nics: tuple[Nic, ...]) -> Nic | None:
    return next((n for n in nics if n.network == "storage"), None)


def _nic_text(n: Nic | None) -> str:
    return f"{n.ip} {n.mac or '?'} ({n.bridge})" if n else ""


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


_DESIGNS: dict[int, LabDesign] = {}


def design_of(spec: LabSpec) -> LabDesign:
    """The design of this spec object, derived on first use and kept while the spec lives.

    LabSpec is frozen, so its design never goes stale; the cache is keyed on the object (its id,
    dropped by a weakref finalizer when the spec is collected, before the id can be reused)."""
    key = id(spec)
    design = _DESIGNS.get(key)
    if design is None:
        design = _DESIGNS[key] = derive_design(spec)
        weakref.finalize(spec, _DESIGNS.pop, key, None)
    return design


def derive_design(spec: LabSpec) -> LabDesign:
    """Everything the runbook will build, from the spec alone (callers use :func:`design_of`)."""
    problems: list[str] = []
    d = spec.cluster.vm_defaults
    vms: list[VmDesign] = []
    for cp in spec.cluster.control_plane:
        vms.append(
            VmDesign(
                cp.name, cp.vmid, spec.host.node, "control-plane", cp.cores, cp.memory_gb,
                (Disk("scsi0", d.os_storage, cp.os_disk_gb, "os"),),
                (_nic(spec, "net0", "management", cp.ip, problems, cp.name),),
            )
        )
    for w in spec.cluster.workers:
        vms.append(
            VmDesign(
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
            VmDesign(
                t.name, t.vmid, spec.host.node, "truenas", t.cores, t.memory_gb, tuple(disks),
                (_nic(spec, "net0", "management", t.ip, problems, t.name), _nic(spec, "net1", "storage", t.storage_ip, problems, t.name)),
            )
        )
    cts: list[CtDesign] = []
    p = spec.plex
    if p and p.enabled:
        nics = [_nic(spec, "net0", "management", p.ip, problems, p.hostname)]
        if p.storage_ip:
            nics.append(_nic(spec, "net1", "storage", p.storage_ip, problems, p.hostname))
        gpu = spec.host.gpu.render_node if (p.gpu_passthrough and spec.host.gpu) else None
        cts.append(
            CtDesign(
                p.hostname, p.vmid, spec.host.node, p.cores, p.memory_gb, p.rootfs_storage, p.rootfs_gb, tuple(nics),
                p.unprivileged, gpu, tuple((m.share, m.mountpoint) for m in p.nfs_mounts),
            )
        )
    pool = lb_addresses(spec.cilium.lb_pool.start, spec.cilium.lb_pool.stop)
    return LabDesign(
        vms=tuple(vms),
        containers=tuple(cts),
        lb_pool=(spec.cilium.lb_pool.start, spec.cilium.lb_pool.stop),
        lb_pool_size=len(pool),
        services=assign_service_ips(pool, spec.services),
        io_engine_cores=derive_io_engine_cores(spec),
        mac_problems=tuple(problems),
    )
