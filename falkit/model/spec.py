"""The lab spec: one YAML file describes the host, networks, cluster, storage and services.

``load_spec(path)`` parses the file with positions (:mod:`falkit.model.yamlsrc`), validates it with
pydantic v2 in strict mode (unknown keys are errors, no silent type coercion), then runs the
cross-field rules (duplicates, IPs inside their subnets). Every problem is reported together, each
with ``file:line:column``, the field path and what was expected; nothing is touched.

Secrets are *references* (:class:`SecretRef`: an environment variable or a file), never values.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from .errors import SpecError, SpecProblem, excerpt
from .yamlsrc import FieldPath, Positions, format_path, load_yaml, parse_yaml

# ---------------------------------------------------------------------------------------------
# Scalar types with operator-friendly messages


def _ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(f"expected an IPv4 address such as 10.10.0.11, got {excerpt(value)}") from None


def _cidr(value: str) -> str:
    try:
        net = ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"expected an IPv4 network in CIDR form such as 10.10.0.0/24, got {excerpt(value)}"
                         + (f" ({exc})" if len(value) <= 40 else "")) from None
    return str(net)


_MAC_PREFIX = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){4}$")


def _mac_prefix(value: str) -> str:
    if not _MAC_PREFIX.match(value):
        raise ValueError(f"expected five MAC octets such as 52:54:00:10:10, got {excerpt(value)}")
    first = int(value[:2], 16)
    if first & 1:
        raise ValueError(f"{excerpt(value)} is a multicast prefix (lowest bit of the first octet set); use a unicast one such as 52:54:00")
    return value.lower()


_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _dns_name(value: str) -> str:
    if len(value) > 63 or not _NAME.match(value):
        raise ValueError(f"expected a DNS label (lowercase letters, digits, '-'; at most 63), got {excerpt(value)}")
    return value


_VERSION = re.compile(r"^v?\d+\.\d+(\.\d+)?$")


def _version(value: str) -> str:
    if not _VERSION.match(value):
        raise ValueError(f"expected a version such as 1.18.10, got {excerpt(value)}")
    return value.lstrip("v")


# A block device path: /dev/ then path characters only. No shell metacharacters, no spaces, no '..':
# the value goes into a Talos machine config and into commands shown to the operator.
_DEVICE = re.compile(r"^/dev/[A-Za-z0-9][A-Za-z0-9._:+/-]*$")


def _device_path(value: str) -> str:
    if not _DEVICE.match(value) or ".." in value.split("/"):
        raise ValueError(f"expected a device path such as /dev/sda or /dev/disk/by-id/..., got {excerpt(value)}")
    return value


def _relative_path(value: str) -> str:
    parts = value.replace("\\", "/").split("/")
    if not value or value.startswith(("/", "~")) or ".." in parts or "\0" in value or re.match(r"^[A-Za-z]:", value):
        raise ValueError(f"expected a path inside the checkout (relative, without '..'), got {excerpt(value)}")
    return value


IPv4 = Annotated[str, AfterValidator(_ipv4)]
CIDR = Annotated[str, AfterValidator(_cidr)]
MacPrefix = Annotated[str, AfterValidator(_mac_prefix)]
DnsName = Annotated[str, AfterValidator(_dns_name)]
Version = Annotated[str, AfterValidator(_version)]
DevicePath = Annotated[str, AfterValidator(_device_path)]
RelativePath = Annotated[str, AfterValidator(_relative_path)]
PositiveInt = Annotated[int, Field(gt=0)]
VMID = Annotated[int, Field(ge=100, le=999_999_999)]
Number = Annotated[float, Field(ge=0)]  # strict float accepts ints too


class Model(BaseModel):
    """Base: strict types, unknown keys forbidden, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# ---------------------------------------------------------------------------------------------
# Secrets


class SecretRef(Model):
    """Where a secret comes from. Exactly one of ``env`` or ``file``. Never the value itself."""

    env: str | None = Field(default=None, description="environment variable holding the secret")
    file: str | None = Field(default=None, description="file holding the secret (mode 0600 recommended)")

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("a secret reference needs exactly one of 'env' or 'file' (never the secret itself)")
        return self

    def describe(self) -> str:
        return f"${self.env}" if self.env else f"file {self.file}"

    def resolve(self) -> str | None:
        """The secret, or None when it is not set. Never logged, never archived."""
        if self.env:
            return os.environ.get(self.env)
        path = Path(os.path.expanduser(self.file or ""))
        return path.read_text(encoding="utf-8").strip() if path.is_file() else None


# ---------------------------------------------------------------------------------------------
# Host


class Cpu(Model):
    model: str
    cores: PositiveInt
    threads: PositiveInt


class StorageDevice(Model):
    """The physical device behind a Proxmox storage. Sets the performance ceilings."""

    physical_disk: str = Field(description="identifier of the physical disk; storages sharing one share a failure domain")
    device_class: Literal["sata-ssd", "nvme-ssd", "hdd", "ram"] = "sata-ssd"
    seq_read_mb_s: Number = Field(description="sustained sequential read, MB/s")
    seq_write_mb_s: Number = Field(description="sustained sequential write, MB/s")
    rand_read_iops: Number = Field(description="4k random read IOPS at depth 32")
    rand_write_iops: Number = Field(description="4k random write IOPS at depth 32")
    latency_ms: Number = Field(description="4k read latency at depth 1, ms")


class Storage(Model):
    name: DnsName
    type: Literal["lvmthin", "lvm", "dir", "zfspool"]
    size_gb: PositiveInt
    content: list[Literal["images", "rootdir", "iso", "vztmpl", "backup", "snippets"]]
    reserve_gb: Annotated[int, Field(ge=0)] = Field(0, description="space kept free for the host (the seed's 'Proxmox overhead')")
    device: StorageDevice


class Gpu(Model):
    model: str
    render_node: str = "/dev/dri/renderD128"
    render_gid: Annotated[int, Field(ge=0)] = Field(104, description="gid of the 'render' group inside the container")


class Overhead(Model):
    memory_gb: Number = Field(description="RAM the Proxmox host itself needs")
    root_disk_gb: Number = Field(description="the host OS disk (outside the VM storages)")


class OtherNode(Model):
    """A further Proxmox node of the same cluster; it has storages of the same names (as PVE's
    cluster-wide storage.cfg defines them), each on its own physical disks."""

    node: DnsName
    cpu: Cpu
    memory_gb: PositiveInt
    overhead: Overhead


class Host(Model):
    node: DnsName
    cpu: Cpu
    memory_gb: PositiveInt
    overhead: Overhead
    storages: list[Storage]
    gpu: Gpu | None = None
    nic: str = Field("enp1s0", description="the physical port behind vmbr0")
    nic_speed_gbps: Number = 2.5
    other_nodes: list[OtherNode] = Field(default_factory=list, description="further Proxmox nodes of the cluster")

    @property
    def node_names(self) -> list[str]:
        return [self.node] + [n.node for n in self.other_nodes]

    def node_info(self, name: str) -> Host | OtherNode:
        return self if name == self.node else next(n for n in self.other_nodes if n.node == name)


class Network(Model):
    cidr: CIDR
    gateway: IPv4
    bridge: str
    bridge_ports: str = Field("", description="physical port or VLAN of the bridge; '' for a host-internal bridge")
    mac_prefix: MacPrefix
    link_speed_gbps: Number


class Networks(Model):
    management: Network
    storage: Network


class Versions(Model):
    talos: Version = "1.11.6"
    kubernetes: Version = "1.34.1"
    cilium: Version = "1.18.10"
    mayastor: Version = "2.8.0"
    metallb: Version = "0.14.9"
    longhorn: Version = "1.7.2"
    argocd: Version = "3.5.1"


# ---------------------------------------------------------------------------------------------
# Cluster


class VmDefaults(Model):
    os_storage: DnsName = "local-lvm"
    data_storage: DnsName = "helford"


class ControlPlane(Model):
    name: DnsName
    vmid: VMID
    cores: PositiveInt
    memory_gb: PositiveInt
    os_disk_gb: PositiveInt
    ip: IPv4


class Worker(Model):
    name: DnsName
    vmid: VMID
    cores: PositiveInt
    memory_gb: PositiveInt
    os_disk_gb: PositiveInt
    data_disk_gb: PositiveInt
    ip: IPv4
    storage_ip: IPv4
    node: DnsName | None = Field(None, description="Proxmox node; defaults to host.node")


class Cluster(Model):
    name: DnsName
    control_plane: list[ControlPlane] = Field(min_length=1)
    workers: list[Worker] = Field(min_length=1)
    vm_defaults: VmDefaults = VmDefaults()


class RateLimit(Model):
    qps: PositiveInt
    burst: PositiveInt


class LbPool(Model):
    start: IPv4
    stop: IPv4


class Cilium(Model):
    lb_pool: LbPool
    l2_announcements: bool = True
    external_ips: bool = True
    kube_proxy_replacement: bool = True
    interfaces: list[str] = Field(default_factory=lambda: ["^eth0$"], description="regexes of NICs that announce")
    lease_renew_deadline_s: PositiveInt = 5
    k8s_client_rate_limit: RateLimit | None = Field(None, description="None: falkit sizes it to the services")


class Mayastor(Model):
    replicas: PositiveInt = 3
    hugepages_2mi: Annotated[int, Field(ge=0)] = 1024
    disk_device: DevicePath = "/dev/sdb"
    storage_class: DnsName = "mayastor-3"
    protocol: Literal["nvmf"] = "nvmf"
    fs_type: Literal["ext4", "xfs", "btrfs"] = "ext4"
    thin: bool = True
    namespace: DnsName = "mayastor"
    io_engine_cores: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, description="CPU list for io-engine; None: falkit derives one that fits the worker vCPUs"
    )


class Service(Model):
    name: DnsName
    namespace: DnsName
    old_ip: IPv4 | None = None
    new_ip: IPv4 | Literal["auto", "disabled"] = "auto"
    dns: str | None = Field(None, description="DNS name, for the operator hand-off")
    tunnel: bool = Field(False, description="exposed through the Cloudflare tunnel")


class NfsShare(Model):
    path: str
    networks: list[CIDR]


class TrueNas(Model):
    enabled: bool = False
    name: DnsName = "truenas"
    vmid: VMID = 300
    cores: PositiveInt = 2
    memory_gb: PositiveInt = 8
    os_disk_gb: PositiveInt = 32
    data_disk_gb: Annotated[int, Field(ge=0)] = 0
    ip: IPv4
    storage_ip: IPv4
    api_key: SecretRef = SecretRef(env="FALKIT_TRUENAS_API_KEY")
    nfs_shares: list[NfsShare] = Field(default_factory=list)


class NfsMount(Model):
    share: str
    mountpoint: str


class Plex(Model):
    enabled: bool = True
    hostname: DnsName = "plex"
    vmid: VMID = 400
    cores: PositiveInt = 2
    memory_gb: PositiveInt = 2
    rootfs_gb: PositiveInt = 8
    rootfs_storage: DnsName = "local-lvm"
    ip: IPv4
    storage_ip: IPv4 | None = None
    unprivileged: bool = True
    gpu_passthrough: bool = True
    nfs_mounts: list[NfsMount] = Field(default_factory=list)


class PreviousNode(Model):
    name: DnsName
    vmid: VMID
    ip: IPv4


class Previous(Model):
    """The stack before the migration, for rollback."""

    network: Network
    nodes: list[PreviousNode]
    metallb_pool: LbPool
    longhorn_storage_class: DnsName = "longhorn"


class GitOps(Model):
    repo_url: str
    checkout: str = Field(description="the operator's local checkout of the GitOps repository")
    platform_path: RelativePath = "kubernetes/platform"
    longhorn_files: list[RelativePath] = Field(
        default_factory=lambda: ["longhorn-app.yaml", "longhorn-ingress-app.yaml", "longhorn-rbac-app.yaml"]
    )
    branch: str = "falkit/migration"
    push: bool = False
    # Fast-forward the branch Argo CD tracks to falkit's commit (needs push). false: falkit stops
    # at a gate that says what to merge (falkit.render.gitops.Checkout.deliver).
    merge: bool = False
    credentials: SecretRef | None = None


class Expectation(Model):
    seq_read_mb_s: Number
    seq_write_mb_s: Number
    rand_iops: Number
    latency_ms: Number


class Expectations(Model):
    longhorn: Expectation
    mayastor: Expectation


class Secrets(Model):
    proxmox_token: SecretRef = SecretRef(env="FALKIT_PVE_TOKEN")
    # Proxmox lets only the root@pam *user* (a ticket login, never an API token) set LXC device
    # passthrough (dev0) and host bind mounts (mpN). Optional: without it falkit prints the
    # `pct set` command to run as root instead.
    proxmox_root_password: SecretRef | None = SecretRef(env="FALKIT_PVE_ROOT_PASSWORD")
    proxmox_token_id: str = "root@pam!falkit"
    proxmox_url: str = "https://pve.example.invalid:8006"


class Talos(Model):
    kernel_modules: list[str] = Field(default_factory=lambda: ["nvme_tcp"], description="modules loaded on workers")
    sysctls: dict[str, str] = Field(
        default_factory=lambda: {"vm.overcommit_memory": "1", "vm.panic_on_oom": "0"},
        description="worker sysctls besides vm.nr_hugepages (which comes from mayastor.hugepages_2mi)",
    )
    install_disk: DevicePath = "/dev/sda"


class LabSpec(Model):
    """The whole lab. See parameters/fal.yaml for The Fal with every field explained."""

    lab: DnsName
    host: Host
    networks: Networks
    versions: Versions = Versions()
    cluster: Cluster
    cilium: Cilium
    talos: Talos = Talos()
    mayastor: Mayastor = Mayastor()
    services: list[Service] = Field(default_factory=list)
    truenas: TrueNas | None = None
    plex: Plex | None = None
    previous: Previous | None = None
    gitops: GitOps | None = None
    expectations: Expectations | None = None
    secrets: Secrets = Secrets()

    _positions: Positions | None = PrivateAttr(None)

    # -- where each value came from ----------------------------------------------------------
    def where(self, path: FieldPath) -> str:
        """``fal.yaml:42:7`` for a field path (the nearest parent the file has), '' when unknown."""
        pos = self._positions
        if pos is None:
            return ""
        line, col = pos.get(tuple(path))
        file = pos.file
        if os.path.isabs(file):  # shorter, and the same on every machine (00-preflight's stored output)
            root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the source tree
            inside = os.path.commonpath([root, os.path.abspath(file)]) == root
            rel = os.path.relpath(file)
            ours = inside and os.path.commonpath([root, os.getcwd()]) == root  # notebooks/ -> ../parameters
            file = rel if ours or not rel.startswith("..") else file
        return file + (f":{line}" if line is not None else "") + (f":{col}" if line is not None and col is not None else "")

    # -- convenience -----------------------------------------------------------------------
    def storage(self, name: str) -> Storage | None:
        return next((s for s in self.host.storages if s.name == name), None)

    @property
    def all_vm_names(self) -> list[str]:
        names = [n.name for n in self.cluster.control_plane] + [w.name for w in self.cluster.workers]
        if self.truenas and self.truenas.enabled:
            names.append(self.truenas.name)
        return names


# ---------------------------------------------------------------------------------------------
# Cross-field rules (need the whole document; pydantic validators would lose the positions)


def _cross_checks(spec: LabSpec) -> list[tuple[FieldPath, str]]:
    out: list[tuple[FieldPath, str]] = []
    mgmt = ipaddress.IPv4Network(spec.networks.management.cidr)
    stor = ipaddress.IPv4Network(spec.networks.storage.cidr)

    for key, net in (("management", spec.networks.management), ("storage", spec.networks.storage)):
        if ipaddress.IPv4Address(net.gateway) not in ipaddress.IPv4Network(net.cidr):
            out.append((("networks", key, "gateway"), f"gateway {net.gateway} is outside {net.cidr}"))
    if mgmt.overlaps(stor):
        out.append((("networks", "storage", "cidr"), f"storage network {stor} overlaps the management network {mgmt}"))
    if spec.networks.management.bridge == spec.networks.storage.bridge:
        out.append((("networks", "storage", "bridge"), "the storage network needs its own bridge"))

    def inside(ip: str, net: ipaddress.IPv4Network, path: FieldPath, what: str) -> None:
        addr = ipaddress.IPv4Address(ip)
        if addr not in net:
            out.append((path, f"{what} {ip} is outside its subnet {net}"))
        elif net.prefixlen <= 30 and addr in (net.network_address, net.broadcast_address):
            which = "network" if addr == net.network_address else "broadcast"
            out.append((path, f"{what} {ip} is the {which} address of {net}: no host can use it "
                              f"(hosts are {net.network_address + 1}-{net.broadcast_address - 1})"))

    seen_names: dict[str, FieldPath] = {}
    seen_vmids: dict[int, FieldPath] = {}
    seen_ips: dict[str, FieldPath] = {}

    def unique(kind: str, seen: dict, value: Any, path: FieldPath) -> None:
        if value in seen:
            out.append((path, f"duplicate {kind} {value} (also at {format_path(seen[value])})"))
        else:
            seen[value] = path

    for net_key, net in (("management", mgmt), ("storage", stor)):
        gw = getattr(spec.networks, net_key).gateway
        unique("IP", seen_ips, gw, ("networks", net_key, "gateway"))
        if ipaddress.IPv4Address(gw) in net:
            inside(gw, net, ("networks", net_key, "gateway"), "gateway")
    for i, cp in enumerate(spec.cluster.control_plane):
        base = ("cluster", "control_plane", i)
        unique("name", seen_names, cp.name, base + ("name",))
        unique("VMID", seen_vmids, cp.vmid, base + ("vmid",))
        unique("IP", seen_ips, cp.ip, base + ("ip",))
        inside(cp.ip, mgmt, base + ("ip",), "IP")
    for i, w in enumerate(spec.cluster.workers):
        base = ("cluster", "workers", i)
        unique("name", seen_names, w.name, base + ("name",))
        unique("VMID", seen_vmids, w.vmid, base + ("vmid",))
        unique("IP", seen_ips, w.ip, base + ("ip",))
        unique("IP", seen_ips, w.storage_ip, base + ("storage_ip",))
        inside(w.ip, mgmt, base + ("ip",), "IP")
        inside(w.storage_ip, stor, base + ("storage_ip",), "storage IP")
    if spec.truenas:
        base = ("truenas",)
        t = spec.truenas
        unique("name", seen_names, t.name, base + ("name",))
        unique("VMID", seen_vmids, t.vmid, base + ("vmid",))
        unique("IP", seen_ips, t.ip, base + ("ip",))
        unique("IP", seen_ips, t.storage_ip, base + ("storage_ip",))
        inside(t.ip, mgmt, base + ("ip",), "IP")
        inside(t.storage_ip, stor, base + ("storage_ip",), "storage IP")
    if spec.plex:
        base = ("plex",)
        p = spec.plex
        unique("name", seen_names, p.hostname, base + ("hostname",))
        unique("VMID", seen_vmids, p.vmid, base + ("vmid",))
        unique("IP", seen_ips, p.ip, base + ("ip",))
        inside(p.ip, mgmt, base + ("ip",), "IP")
        if p.storage_ip:
            unique("IP", seen_ips, p.storage_ip, base + ("storage_ip",))
            inside(p.storage_ip, stor, base + ("storage_ip",), "storage IP")
        if p.gpu_passthrough and spec.host.gpu is None:
            out.append((base + ("gpu_passthrough",), "GPU passthrough asked for, but host.gpu is not set"))
        if spec.storage(p.rootfs_storage) is None:
            out.append((base + ("rootfs_storage",), f"no storage named {p.rootfs_storage!r} in host.storages"))

    nodes = spec.host.node_names
    for i, w in enumerate(spec.cluster.workers):
        if w.node and w.node not in nodes:
            out.append((("cluster", "workers", i, "node"), f"no Proxmox node {w.node!r} (host.node / host.other_nodes: {', '.join(nodes)})"))
    storage_names = [s.name for s in spec.host.storages]
    for i, s in enumerate(spec.host.storages):
        if storage_names.index(s.name) != i:
            out.append((("host", "storages", i, "name"), f"duplicate storage name {s.name!r}"))
    for key in ("os_storage", "data_storage"):
        name = getattr(spec.cluster.vm_defaults, key)
        if name not in storage_names:
            out.append((("cluster", "vm_defaults", key), f"no storage named {name!r} in host.storages ({', '.join(storage_names)})"))

    pool = spec.cilium.lb_pool
    if ipaddress.IPv4Address(pool.start) > ipaddress.IPv4Address(pool.stop):
        out.append((("cilium", "lb_pool", "stop"), f"pool end {pool.stop} is before its start {pool.start}"))
    if spec.host.cpu.threads < spec.host.cpu.cores:
        out.append((("host", "cpu", "threads"), "threads cannot be fewer than cores"))

    svc_seen: dict[tuple[str, str], FieldPath] = {}
    old_ips: dict[str, FieldPath] = {}
    for i, s in enumerate(spec.services):
        unique_key = (s.namespace, s.name)
        if unique_key in svc_seen:
            out.append((("services", i, "name"), f"duplicate service {s.namespace}/{s.name}"))
        svc_seen[unique_key] = ("services", i)
        if s.old_ip:
            if s.old_ip in old_ips:
                out.append((("services", i, "old_ip"), f"old IP {s.old_ip} is also the old IP of {format_path(old_ips[s.old_ip])}: "
                                                       "the hand-off table and DNS would send two services' clients to one address"))
            else:
                old_ips[s.old_ip] = ("services", i)

    out += _mayastor_checks(spec)
    out += _previous_checks(spec)
    return out


# Memory a worker needs besides the hugepages (all MiB):
# - Talos reserves 384 MiB for the system on workers (kubelet systemReserved;
#   siderolabs/talos pkg/machinery/constants/constants.go KubeletSystemReservedMemoryWorker = "384Mi",
#   applied in internal/app/machined/pkg/controllers/k8s/kubelet_spec.go);
# - the kubelet's default hard eviction threshold memory.available<100Mi (Kubernetes "Node-pressure
#   Eviction" docs);
# - io-engine's own 1 GiB memory request besides its hugepages (docs/FACTS.md, Mayastor).
# Hugepages are taken from RAM at boot and cannot be swapped or reclaimed: if they and these do not
# fit, the worker cannot run io-engine (or anything), so it is an error, not a warning.
TALOS_SYSTEM_RESERVED_MIB = 384
KUBELET_EVICTION_HARD_MIB = 100
IO_ENGINE_MEMORY_MIB = 1024
HUGEPAGE_MIB = 2


def _mayastor_checks(spec: LabSpec) -> list[tuple[FieldPath, str]]:
    out: list[tuple[FieldPath, str]] = []
    pages = spec.mayastor.hugepages_2mi
    huge = pages * HUGEPAGE_MIB
    need = huge + TALOS_SYSTEM_RESERVED_MIB + KUBELET_EVICTION_HARD_MIB + IO_ENGINE_MEMORY_MIB
    for w in spec.cluster.workers:
        ram = w.memory_gb * 1024
        if need > ram:
            out.append((("mayastor", "hugepages_2mi"),
                        f"{pages} x 2 MiB = {huge:,} MiB of hugepages, plus {TALOS_SYSTEM_RESERVED_MIB} MiB Talos system reserve, "
                        f"{KUBELET_EVICTION_HARD_MIB} MiB kubelet eviction threshold and {IO_ENGINE_MEMORY_MIB} MiB for io-engine, "
                        f"is {need:,} MiB: more than worker {w.name}'s {w.memory_gb} GiB ({ram:,} MiB). "
                        f"At most {max(0, (ram - need + huge) // HUGEPAGE_MIB)} pages fit (1024 is io-engine's need)"))
            break
    return out


def _ranges_overlap(a: LbPool, b: LbPool) -> bool:
    a0, a1 = ipaddress.IPv4Address(a.start), ipaddress.IPv4Address(a.stop)
    b0, b1 = ipaddress.IPv4Address(b.start), ipaddress.IPv4Address(b.stop)
    return a0 <= b1 and b0 <= a1


def _previous_checks(spec: LabSpec) -> list[tuple[FieldPath, str]]:
    out: list[tuple[FieldPath, str]] = []
    prev = spec.previous
    if prev is None:
        return out
    net = ipaddress.IPv4Network(prev.network.cidr)
    seen: dict[str, FieldPath] = {}
    for i, n in enumerate(prev.nodes):
        path: FieldPath = ("previous", "nodes", i, "ip")
        if n.ip in seen:
            out.append((path, f"duplicate IP {n.ip} (also at {format_path(seen[n.ip])}): two old nodes cannot share an address"))
        else:
            seen[n.ip] = path
        addr = ipaddress.IPv4Address(n.ip)
        if addr not in net:
            out.append((path, f"IP {n.ip} is outside the old network {net}"))
        elif net.prefixlen <= 30 and addr in (net.network_address, net.broadcast_address):
            out.append((path, f"IP {n.ip} is the {'network' if addr == net.network_address else 'broadcast'} address of {net}"))
    # Both stacks run side by side during the migration (MetalLB on the old nodes until
    # 90-decommission): one address in both pools would be answered by two ARP speakers.
    if _ranges_overlap(prev.metallb_pool, spec.cilium.lb_pool):
        out.append((("cilium", "lb_pool", "start"),
                    f"the Cilium pool {spec.cilium.lb_pool.start}-{spec.cilium.lb_pool.stop} overlaps the old MetalLB pool "
                    f"{prev.metallb_pool.start}-{prev.metallb_pool.stop} (previous.metallb_pool): while both stacks run, "
                    "two L2 speakers would answer for the same address"))
    return out


# ---------------------------------------------------------------------------------------------
# Loading


# Field names whose values are secrets, and values that look like one (a PVE API token
# "user@realm!id=uuid", a long token-like string): an error never echoes them.
_SECRET_FIELD = re.compile(r"token|passw|secret|api_?key|credential|private_?key|bearer|auth", re.I)
_SECRET_VALUE = re.compile(r"^(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9+=._~!@$%^&*-]{16,}$")


def is_secret_field(loc: FieldPath) -> bool:
    """A field under ``secrets`` or one whose name says it holds a secret."""
    return bool(loc) and (loc[0] == "secrets" or any(isinstance(k, str) and _SECRET_FIELD.search(k) for k in loc))


def looks_secret(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    if "PVEAPIToken" in value or re.search(r"![\w.-]+=\S{8,}", value) or "-----BEGIN" in value:
        return True
    if re.search(r"://[^/@\s:]+:[^/@\s]+@", value):  # a URL with a password in it
        return True
    return bool(_SECRET_VALUE.match(value.strip()))


def _shown(loc: FieldPath, value: Any) -> str:
    """How an error names the value it got: a short excerpt, or nothing if it may be a secret."""
    if is_secret_field(loc) and not isinstance(value, dict | list | bool | int | float | None):
        return f"a {type(value).__name__} (not shown: it may be a secret)"
    if looks_secret(value) or (isinstance(value, dict | list) and any(looks_secret(v) for v in _scalars(value))):
        return f"a {type(value).__name__} (not shown: it looks like a secret)"
    return f"{type(value).__name__} {excerpt(value)}"


def _scalars(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _scalars(v)]
    if isinstance(value, list):
        return [x for v in value for x in _scalars(v)]
    return [value]


def _problem_from_pydantic(err: dict, pos: Positions) -> SpecProblem:
    loc: FieldPath = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
    etype = err["type"]
    inp = err.get("input")
    shown = _shown(loc, inp)
    if etype == "extra_forbidden":
        msg = f"unknown field {loc[-1]!r}: not part of the lab spec (check the spelling; see parameters/fal.yaml)"
    elif etype == "missing":
        msg = "required field is missing"
    elif etype.endswith("_type"):
        expected = etype.removesuffix("_type").replace("_", " ")
        msg = f"expected {expected}, got {shown}"
    elif etype == "literal_error":
        msg = f"{err['msg'].replace('Input should be', 'expected')}, got {shown}"
    elif etype == "value_error":
        msg = err["msg"].removeprefix("Value error, ")
    else:
        msg = f"{err['msg']}, got {shown}"
    if isinstance(inp, str) and len(inp) >= 4 and inp in msg and (is_secret_field(loc) or looks_secret(inp)):
        msg = msg.replace(repr(inp), "(not shown)").replace(inp, "(not shown)")
    return pos.problem(loc, msg)


def spec_from_data(data: Any, pos: Positions) -> LabSpec:
    """Validate already-parsed data. Raises :class:`SpecError` with every problem."""
    if not isinstance(data, dict):
        raise SpecError([pos.problem((), f"expected a mapping of lab settings at the top level, got {type(data).__name__}")])
    try:
        spec = LabSpec.model_validate(data)
    except ValidationError as exc:
        problems = [_problem_from_pydantic(e, pos) for e in exc.errors()]
        # one message per path is enough (unions otherwise report each branch)
        seen: set[tuple[str, str]] = set()
        uniq = []
        for p in problems:
            if (p.path, p.message) not in seen:
                seen.add((p.path, p.message))
                uniq.append(p)
        raise SpecError(uniq) from None
    problems = [pos.problem(path, msg) for path, msg in _cross_checks(spec)]
    if problems:
        raise SpecError(problems)
    spec._positions = pos
    return spec


def load_spec(path: str | Path) -> LabSpec:
    """Load and validate a lab spec file. Raises :class:`SpecError`."""
    data, pos = load_yaml(path)
    return spec_from_data(data, pos)


def parse_spec(text: str, file: str = "<string>") -> LabSpec:
    data, pos = parse_yaml(text, file)
    return spec_from_data(data, pos)
