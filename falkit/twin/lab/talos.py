"""The Talos stand-in: what ``talosctl apply-config / bootstrap / kubeconfig / get machineconfig /
read / health / version`` do, performed on the twin's state.

A node is addressed by IP, as ``talosctl --nodes IP``. The IP reaches a VM of the twin's Proxmox
when (a) the VM's NIC has the MAC the spec plans for that IP — the seed fixes MACs so that DHCP
reservations give each VM its planned IP and a fresh Talos VM in maintenance mode answers there
(FACTS.md, Proxmox; ``falkit.plan.mac_for``, the "before" network's ``previous.network.mac_prefix``)
— or (b) the VM's applied config holds that address. The VM must exist and run; otherwise the
error is the one talosctl prints for a dead endpoint (connection refused).

``apply`` validates every YAML document against the real Talos schema of ``spec.versions.talos``
(``falkit.schemas.validate_talos_documents``): a rejected config is not stored. An accepted one is
remembered with what it sets (hostname, addresses, node labels, kernel modules, sysctls, kubelet
extra mounts, machine type); a node in maintenance mode then installs and reboots (~90 s real).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import time
import uuid
from typing import Any

import yaml

from falkit.errors import TwinError
from falkit.plan import MacSchemeError, mac_for
from falkit.schemas import dump_documents, validate_talos_documents

from .context import LabContext, TalosNode, module_name
from .pvereader import PveUnavailableError, Vm

INSTALL_S = 90.0  # Talos install to disk + reboot after the first apply (60-120 s on real labs)
REBOOT_S = 45.0  # a reboot after a change that needs one (kernel modules)
BOOTSTRAP_S = 60.0  # etcd bootstrap until the Kubernetes API answers
APID_PORT = 50000


class TalosError(TwinError):
    """A talosctl-style failure; ``status`` is the lab API's HTTP status, ``issues`` schema issues."""

    status = 500

    def __init__(self, message: str, *, status: int | None = None, issues: list[dict] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.issues = issues or []


class TalosUnreachableError(TalosError):
    status = 502


class TalosConfigError(TalosError):
    status = 400


class TalosConflictError(TalosError):
    status = 409


class TalosNotFoundError(TalosError):
    status = 404


def refused(ip: str) -> TalosUnreachableError:
    return TalosUnreachableError(
        f'rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: '
        f'dial tcp {ip}:{APID_PORT}: connect: connection refused"')


# --------------------------------------------------------------------------------- config parsing

def planned_macs(ctx: LabContext) -> dict[str, str]:
    """IP -> MAC the spec plans for it: the cluster's management and storage NICs (and TrueNAS),
    and the pre-migration nodes on the previous network."""
    spec = ctx.spec
    out: dict[str, str] = {}

    def put(prefix: str, ip: str | None) -> None:
        if ip:
            try:
                out[ip] = mac_for(prefix, ip)
            except MacSchemeError:
                pass

    mg, st = spec.networks.management.mac_prefix, spec.networks.storage.mac_prefix
    for cp in spec.cluster.control_plane:
        put(mg, cp.ip)
    for w in spec.cluster.workers:
        put(mg, w.ip)
        put(st, w.storage_ip)
    if spec.previous:
        for n in spec.previous.nodes:
            put(spec.previous.network.mac_prefix, n.ip)
    return out


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.lstrip("v").split(".")[:2]
    return int(major), int(minor)


def derive(docs: list[dict[str, Any]], ip: str) -> dict[str, Any]:
    """What a machine config sets, as :class:`TalosNode` fields (pure)."""
    main = next((d for d in docs if d.get("version") == "v1alpha1" and "kind" not in d), {}) or {}
    machine = main.get("machine") or {}
    network = machine.get("network") or {}
    out: dict[str, Any] = {
        "machine_type": machine.get("type") or "worker",
        "hostname": network.get("hostname") or "",
        "labels": {str(k): str(v) for k, v in (machine.get("nodeLabels") or {}).items()},
        "kernel_modules": [module_name(m["name"]) for m in ((machine.get("kernel") or {}).get("modules") or [])
                           if isinstance(m, dict) and m.get("name")],
        "sysctls": {str(k): str(v) for k, v in (machine.get("sysctls") or {}).items()},
        "extra_mounts": list(((machine.get("kubelet") or {}).get("extraMounts")) or []),
        "cluster_name": (main.get("cluster") or {}).get("clusterName") or "",
    }
    addresses: dict[str, list[str]] = {}
    for i, iface in enumerate(network.get("interfaces") or []):
        name = iface.get("interface") or f"eth{i}"
        addresses.setdefault(name, []).extend(str(a) for a in iface.get("addresses") or [])
    for d in docs:
        if d.get("kind") == "HostnameConfig" and d.get("hostname"):
            out["hostname"] = d["hostname"]
        elif d.get("kind") == "LinkConfig":
            addresses.setdefault(d.get("name") or "eth0", []).extend(
                str(a.get("address")) for a in d.get("addresses") or [] if isinstance(a, dict) and a.get("address"))
    if not any(a.split("/")[0] == ip for v in addresses.values() for a in v):
        # The node got its management address by DHCP (reservation on its MAC) on the first NIC.
        addresses.setdefault("eth0", []).insert(0, f"{ip}/24")
    out["addresses"] = addresses
    if not out["hostname"]:  # Talos' default: talos-XXX-YYY derived from the machine identity
        h = hashlib.sha256(ip.encode()).hexdigest()
        out["hostname"] = f"talos-{h[:3]}-{h[3:6]}"
    return out


def parse_config(text: str, version: str) -> list[dict[str, Any]]:
    """YAML text -> documents, validated; raises TalosConfigError (400) with the schema issues."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise TalosConfigError(f"failed to parse config: {e}") from None
    if not docs:
        raise TalosConfigError("failed to parse config: no documents")
    issues = validate_talos_documents(docs, version)
    if issues:
        msg = "failed to validate config:\n" + "\n".join(f"  {i}" for i in issues)
        raise TalosConfigError(msg, issues=[{"document": i.document, "path": i.path, "message": i.message}
                                            for i in issues])
    if sum(1 for d in docs if d.get("version") == "v1alpha1" and "kind" not in d) != 1:
        raise TalosConfigError("failed to validate config: exactly one v1alpha1 machine config document is required")
    return docs


# --------------------------------------------------------------------------------- reaching nodes

async def find_vm(ctx: LabContext, ip: str) -> tuple[Vm, TalosNode | None]:
    """The running VM behind ``ip`` and its TalosNode (None if never configured); else refused."""
    if ctx.pve is None:
        raise refused(ip)
    try:
        vms = await ctx.pve.vms(fresh=True)  # talosctl reaches the VM as it is now
    except PveUnavailableError:
        raise refused(ip) from None
    node = ctx.talos_nodes.get(ip)
    vm = None
    mac = planned_macs(ctx).get(ip)
    if mac:
        vm = next((v for v in vms if mac in v.macs.values()), None)
    if vm is None:
        owner = node or next((n for n in ctx.talos_nodes.values() if ip in n.ips), None)
        if owner is not None and owner.vmid is not None:
            vm = next((v for v in vms if v.vmid == owner.vmid), None)
            node = owner
    if vm is None or not vm.running:
        raise refused(ip)
    if node is None:
        node = next((n for n in ctx.talos_nodes.values() if n.vmid == vm.vmid and n.configured), None)
    if node is not None and node.vm_uuid and vm.uuid and node.vm_uuid != vm.uuid:
        node = None  # the VM was re-created: a blank disk boots into maintenance mode
    return vm, node


def _settle(ctx: LabContext, node: TalosNode) -> None:
    if node.mode == "installing" and time.time() >= node.ready_at:
        node.mode = "running"


async def running_node(ctx: LabContext, ip: str) -> tuple[Vm, TalosNode]:
    """A configured node that finished installing; else refused (rebooting) or 404 (maintenance)."""
    vm, node = await find_vm(ctx, ip)
    if node is None or not node.configured:
        raise TalosNotFoundError(f"node {ip} is in maintenance mode: no machine configuration")
    _settle(ctx, node)
    if node.mode != "running":
        raise refused(ip)  # installing / rebooting: apid is not up
    return vm, node


# --------------------------------------------------------------------------------- operations

async def apply(ctx: LabContext, ip: str, text: str, insecure: bool = False) -> dict[str, Any]:
    """``talosctl apply-config [--insecure] --nodes IP --file F``."""
    vm, node = await find_vm(ctx, ip)
    maintenance = node is None or not node.configured
    if maintenance and not insecure:
        raise TalosUnreachableError(
            'rpc error: code = Unavailable desc = connection error: desc = "transport: authentication handshake '
            'failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"')
    if not maintenance and insecure:
        raise TalosUnreachableError(
            'rpc error: code = Unavailable desc = connection error: desc = "error reading server preface: '
            'remote error: tls: certificate required"')
    if ip in ctx.faults.talos_apply_error:
        raise TalosError(ctx.faults.talos_apply_error[ip], status=500)
    version = ctx.spec.versions.talos
    docs = parse_config(text, version)
    fields = derive(docs, ip)
    now = time.time()
    if maintenance:
        node = ctx.talos_nodes.get(ip) or TalosNode(ip=ip)
        node.mode = "installing"
        node.applied_at = now
        node.ready_at = now + ctx.scaled(INSTALL_S)
        node.boot_id = str(uuid.uuid4())
        reboot = True
    else:
        assert node is not None
        reboot = sorted(fields["kernel_modules"]) != sorted(node.kernel_modules)
        node.applied_at = now
        if reboot:
            node.mode = "installing"
            node.ready_at = now + ctx.scaled(REBOOT_S)
            node.boot_id = str(uuid.uuid4())
    for k, v in fields.items():
        setattr(node, k, v)
    node.docs = docs
    node.vmid = vm.vmid
    node.vm_uuid = vm.uuid
    node.talos_version = version
    for other_ip, other in list(ctx.talos_nodes.items()):  # one TalosNode per VM
        if other.vmid == vm.vmid:
            del ctx.talos_nodes[other_ip]
    # A static address on the management interface moves the node there (the seed re-addresses
    # 10.30.0.x -> 10.10.0.x): the node answers, and the kubelet registers, at its new IP.
    mgmt = node.addresses.get("eth0") or next(iter(node.addresses.values()), [])
    if mgmt:
        node.ip = mgmt[0].split("/", 1)[0]
    ctx.talos_nodes[node.ip] = node
    _settle(ctx, node)
    ctx.notify()
    return {"node": node.ip, "mode": node.mode, "hostname": node.hostname, "reboot": reboot,
            "message": "Applied configuration with a reboot" if reboot else "Applied configuration without a reboot"}


async def bootstrap(ctx: LabContext, ip: str) -> dict[str, Any]:
    """``talosctl bootstrap``: once per cluster, on a control-plane node. The Kubernetes API answers
    ``BOOTSTRAP_S`` (scaled) later; until then the emulator returns 503."""
    _vm, node = await running_node(ctx, ip)
    if node.machine_type not in ("controlplane", "init"):
        raise TalosError("rpc error: code = FailedPrecondition desc = bootstrap is not available on worker nodes",
                         status=400)
    if ctx.bootstrapped:
        raise TalosConflictError("rpc error: code = AlreadyExists desc = etcd data directory is not empty")
    ctx.bootstrapped = True
    ctx.bootstrap_ip = ip
    delay = ctx.scaled(BOOTSTRAP_S)
    if delay <= 0:
        ctx.store.faults.api_up()
    else:
        async def later() -> None:
            await asyncio.sleep(delay)
            if ctx.bootstrapped:
                ctx.store.faults.api_up()
        task = asyncio.get_running_loop().create_task(later())
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)
    ctx.notify()
    return {"node": ip, "bootstrapped": True}


_BACKGROUND: set[asyncio.Task] = set()


def api_available(ctx: LabContext) -> bool:
    return ctx.bootstrapped and not ctx.store.faults.down


def kubeconfig(ctx: LabContext, server: str) -> dict[str, Any]:
    """The admin kubeconfig ``talosctl kubeconfig`` writes: cluster/context named after the spec's
    cluster (``admin@NAME``); token auth (the emulator accepts any token)."""
    if not ctx.bootstrapped:
        raise TalosError("rpc error: code = FailedPrecondition desc = kubeconfig is not available before bootstrap",
                         status=409)
    name = ctx.spec.cluster.name
    user = f"admin@{name}"
    return {"apiVersion": "v1", "kind": "Config", "current-context": user,
            "clusters": [{"name": name, "cluster": {"server": server}}],
            "users": [{"name": user, "user": {"token": f"twin-{name}-admin"}}],
            "contexts": [{"name": user, "context": {"cluster": name, "user": user, "namespace": "default"}}],
            "preferences": {}}


async def get_config(ctx: LabContext, ip: str) -> dict[str, Any]:
    _vm, node = await running_node(ctx, ip)
    return {"node": ip, "config": dump_documents(node.docs), "mode": node.mode,
            "hostname": node.hostname, "type": node.machine_type, "addresses": node.addresses}


async def version(ctx: LabContext, ip: str) -> dict[str, Any]:
    _vm, node = await find_vm(ctx, ip)
    maintenance = node is None or not node.configured
    if node is not None:
        _settle(ctx, node)
        if node.mode == "installing":
            raise refused(ip)
    return {"node": ip, "talos": "v" + ctx.spec.versions.talos, "kubernetes": "v" + ctx.spec.versions.kubernetes,
            "maintenance": maintenance}


def _meminfo(vm: Vm, node: TalosNode) -> str:
    total_kb = vm.memory_mib * 1024
    huge_kb = node.hugepages * 2048
    free_kb = max(total_kb - huge_kb - 900 * 1024, 0)
    rows = [("MemTotal", total_kb), ("MemFree", free_kb), ("MemAvailable", free_kb + 300 * 1024),
            ("Buffers", 4096), ("Cached", 600 * 1024), ("SwapTotal", 0), ("SwapFree", 0)]
    text = "".join(f"{k + ':':<16}{v:>8} kB\n" for k, v in rows)
    text += (f"HugePages_Total: {node.hugepages:>7}\nHugePages_Free:  {node.hugepages:>7}\n"
             f"HugePages_Rsvd:        0\nHugePages_Surp:        0\nHugepagesize:       2048 kB\n"
             f"Hugetlb:        {huge_kb:>8} kB\n")
    return text


def _modules(node: TalosNode) -> str:
    return "".join(f"{m} 65536 0 - Live 0x0000000000000000\n" for m in node.kernel_modules)


def _disks(vm: Vm) -> dict[str, int]:
    """``/dev/sdX`` -> size in bytes: scsi disks in slot order (scsi0 = sda, the OS disk)."""
    scsi = [d for d in vm.disks if d.slot.startswith(("scsi", "sata"))]
    return {f"sd{chr(ord('a') + i)}": d.size_bytes for i, d in enumerate(scsi)}


async def read(ctx: LabContext, ip: str, path: str) -> str:
    """``talosctl read``: /proc/meminfo, /proc/modules, /proc/cpuinfo, /sys/block (listing),
    /sys/block/sdX/size (512-byte sectors), /proc/sys/<sysctl>, /etc/hostname."""
    vm, node = await running_node(ctx, ip)
    disks = _disks(vm)
    if path == "/proc/meminfo":
        return _meminfo(vm, node)
    if path == "/proc/modules":
        return _modules(node)
    if path == "/proc/cpuinfo":
        return "".join(f"processor\t: {i}\nmodel name\t: AMD Ryzen 9 6800HX\nflags\t\t: sse4_2 avx2\n\n"
                       for i in range(vm.vcpus))
    if path == "/etc/hostname":
        return node.hostname + "\n"
    if path in ("/sys/block", "/sys/block/", "/dev/disk"):
        return "".join(f"{d}\n" for d in disks)
    if path.startswith("/sys/block/") and path.endswith("/size"):
        dev = path.split("/")[3]
        if dev in disks:
            return f"{disks[dev] // 512}\n"
    if path.startswith("/proc/sys/"):
        key = path[len("/proc/sys/"):].replace("/", ".")
        if key in node.sysctls:
            return node.sysctls[key] + "\n"
        if key == "vm.nr_hugepages":
            return "0\n"
    raise TalosNotFoundError(f"rpc error: code = NotFound desc = open {path}: no such file or directory")


async def health(ctx: LabContext) -> dict[str, Any]:
    """``talosctl health``: etcd, the Kubernetes API, every configured node registered and Ready."""
    checks = []
    cps = [n for n in ctx.talos_nodes.values() if n.configured and n.machine_type in ("controlplane", "init")]
    checks.append({"name": "etcd bootstrapped", "ok": ctx.bootstrapped,
                   "message": "" if ctx.bootstrapped else "etcd is not bootstrapped"})
    checks.append({"name": "kubernetes api", "ok": api_available(ctx),
                   "message": "" if api_available(ctx) else "the Kubernetes API is not available"})
    checks.append({"name": "control plane nodes", "ok": bool(cps), "message": f"{len(cps)} control plane node(s)"})
    ready, why = {}, {}
    for n in ctx.store.list("v1", "Node")["items"]:
        conds = {c["type"]: c for c in (n.get("status") or {}).get("conditions") or []}
        ready[n["metadata"]["name"]] = (conds.get("Ready") or {}).get("status") == "True"
        why[n["metadata"]["name"]] = (conds.get("Ready") or {}).get("message") or ""
    for n in sorted(ctx.talos_nodes.values(), key=lambda n: n.hostname):
        if not n.configured:
            continue
        ok = ready.get(n.hostname, False)
        checks.append({"name": f"node {n.hostname} ready", "ok": ok,
                       "message": "" if ok else ("not registered" if n.hostname not in ready
                                                 else f"NotReady: {why[n.hostname]}".rstrip(": "))})
    return {"ok": all(c["ok"] for c in checks), "checks": checks}


def is_ip(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True
