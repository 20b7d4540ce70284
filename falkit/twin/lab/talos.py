"""The twin's Talos model: what ``talosctl apply-config / bootstrap / kubeconfig / get machineconfig /
read / health / version / service`` do, performed on the twin's state. falkit never calls it
directly: the ``talosctl`` stand-in (falkit/twin/tools/talosctl.py) does, through the lab API, and
says how it connects so that apid's TLS handshake is modelled (:func:`handshake`).

A node is addressed by IP, as ``talosctl --nodes IP``. The IP reaches a VM of the twin's Proxmox
when (a) the VM's configured node holds that address (static, or the lease it keeps), or (b) the
lab router's DHCP gives it to the VM: a reservation on the VM's MAC (:func:`reservations`, the
seed's MAC scheme, written here for the twin) or, without one, a pool lease (:func:`pool_lease`,
fault ``dhcp_no_reservations``). The VM must exist and run; otherwise the error is the one
talosctl prints for a dead endpoint (connection refused).

TLS (siderolabs/talos @ v1.11.6): a node in maintenance mode serves a self-signed certificate, so a
talosconfig client fails with x509's "certificate signed by unknown authority", and an
``--insecure`` client gets the reader role only (admin APIs: "API is not implemented in maintenance
mode"); a configured node trusts only clients signed by its OS CA (``machine.ca``) and requires a
client certificate ("tls: certificate required"). The "before" nodes' CA is the twin's own
(:func:`before_identity`), kept for the operator in ``STATE/operator/secrets.yaml``.

``apply`` validates every YAML document against the real Talos schema of ``spec.versions.talos``
(``falkit.model.schemas.validate_talos_documents``): a rejected config is not stored. An accepted one is
remembered with what it sets (hostname, addresses, node labels, kernel modules, sysctls, kubelet
extra mounts, machine type); a node in maintenance mode then installs and reboots (~90 s real).
A config applied without a reboot that lowers or drops ``vm.nr_hugepages`` leaves the pages
reserved at boot (``TalosNode.sysctls`` then holds what the running kernel has, not the config)
until a reboot. ``bootstrap`` sets the API server's ``/version`` (:func:`apiserver_version`).
``health`` reports talosctl's checks in upstream order; ``etcd_state`` what ``service etcd`` shows;
``kube_prism`` / ``cilium_api_error`` whether Cilium's agent reaches the API server it is told to use.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import hmac
import ipaddress
import os
import re
import secrets as rnd
import time
import uuid
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from falkit.model.errors import TwinError
from falkit.model.schemas import dump_documents, validate_talos_documents

from .context import LabContext, TalosNode, module_name
from .pods import record_event
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


# --------------------------------------------------------------------------------- TLS and errors

#: ``X-Talos-Client`` absent: a caller inside the twin (its own tests, the before-state builder);
#: no TLS is modelled. The talosctl stand-in always says how it connects.
INTERNAL = "internal"

# grpc-go wraps a failed TLS handshake as ``connection error: desc = "transport: authentication
# handshake failed: <crypto/tls error>"`` with code Unavailable; Go's crypto/tls reports a server
# certificate from another CA as "tls: failed to verify certificate: x509: certificate signed by
# unknown authority". A Talos node in maintenance mode serves a self-signed certificate
# (internal/app/machined/pkg/controllers/runtime/maintenance_service.go @ v1.11.6,
# ``maintenance.NewTLSProvider``), so a client that presents a talosconfig fails that way.
UNKNOWN_AUTHORITY = ('rpc error: code = Unavailable desc = connection error: desc = "transport: authentication '
                     'handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown '
                     'authority"')
# apid requires a client certificate; a client without one (``--insecure``) gets TLS 1.3's
# certificate_required alert (RFC 8446 §4.4.2.4; Go's text "remote error: tls: certificate required").
CERTIFICATE_REQUIRED = ('rpc error: code = Unavailable desc = connection error: desc = "error reading server '
                        'preface: remote error: tls: certificate required"')
# The maintenance service grants an insecure client the reader role only; admin APIs such as
# Version answer this (internal/app/maintenance/server.go @ v1.11.6, assertAdminRole).
MAINTENANCE_UNIMPLEMENTED = "rpc error: code = Unimplemented desc = API is not implemented in maintenance mode"
# A client certificate the node's CA did not sign: Go's server sends the bad_certificate alert
# (golang/go src/crypto/tls/handshake_server.go, processCertsFromClient, as stored at 0007017f; newer
# Go releases may name the alert differently — not confirmed against a real node). Only reached when
# a talosconfig carries the node's CA but a client certificate that CA did not sign.
BAD_CERTIFICATE = ('rpc error: code = Unavailable desc = connection error: desc = "error reading server '
                   'preface: remote error: tls: bad certificate"')


def _pem(b64: str) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(base64.b64decode(b64))
    except (ValueError, TypeError, binascii.Error):
        return None


def node_ca(node: TalosNode | None) -> str:
    """The node's Talos API CA (``machine.ca.crt``, base64 PEM) from its applied config; "" if none."""
    if node is None:
        return ""
    main = next((d for d in node.docs if d.get("version") == "v1alpha1" and "kind" not in d), {}) or {}
    return str(((main.get("machine") or {}).get("ca") or {}).get("crt") or "")


def handshake(node: TalosNode | None, client: Any, *, maintenance_ok: bool = False) -> None:
    """Model apid's TLS handshake for ``client``: :data:`INTERNAL`, None (``--insecure``) or
    ``{"ca", "crt"}`` (base64 PEM from the talosconfig). Raises what talosctl would see."""
    if client == INTERNAL:
        return
    configured = node is not None and node.configured
    if client is None:
        if configured:
            raise TalosUnreachableError(CERTIFICATE_REQUIRED)
        if not maintenance_ok:
            raise TalosError(MAINTENANCE_UNIMPLEMENTED, status=501)
        return
    if not configured:
        raise TalosUnreachableError(UNKNOWN_AUTHORITY)
    ca, theirs = _pem(node_ca(node)), _pem(str(client.get("ca") or ""))
    if ca is None or theirs is None or ca != theirs:
        raise TalosUnreachableError(UNKNOWN_AUTHORITY)
    crt = _pem(str(client.get("crt") or ""))
    try:
        if crt is None:
            raise ValueError("no client certificate")
        crt.verify_directly_issued_by(ca)
    except (ValueError, TypeError, Exception):  # noqa: BLE001 - any verification failure
        raise TalosUnreachableError(BAD_CERTIFICATE) from None


# --------------------------------------------------------------------------------- DHCP

def seed_mac(prefix: str, ip: str) -> str | None:
    """The seed's MAC scheme (written here for the twin, not taken from falkit): the IP's last
    octet as the last MAC byte's digits (10.10.0.11 -> ``<prefix>:11``; >= 100 in hex)."""
    try:
        octet = int(ip.rsplit(".", 1)[1])
    except (IndexError, ValueError):
        return None
    if octet > 255:
        return None
    return (f"{prefix}:{octet:02d}" if octet < 100 else f"{prefix}:{octet:02x}").lower()


def reservations(ctx: LabContext) -> dict[str, str]:
    """The lab router's DHCP reservations, IP -> MAC: the operator reserved the planned addresses
    of the cluster's NICs on the seed's MACs (docs/FACTS.md, Proxmox: the seed fixes MACs so that DHCP
    reservations give each VM its planned IP), and the pre-migration nodes have theirs. The fault
    ``dhcp_no_reservations`` models a router without the new ones: a fresh Talos VM in
    maintenance mode then gets a pool address (:func:`pool_lease`), not its planned IP."""
    spec = ctx.spec
    out: dict[str, str] = {}

    def put(prefix: str, ip: str | None) -> None:
        mac = seed_mac(prefix, ip) if ip else None
        if mac:
            out[ip] = mac

    if not (ctx.extra.get("talos") or {}).get("dhcp_no_reservations"):
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


def pool_lease(ctx: LabContext, vm: Vm) -> str | None:
    """The address a DHCP server without a reservation leases to ``vm``'s first NIC on the
    management network: the pool starts at .100 of that network (the twin's router; a real one
    picks any free address — never, by design, the one falkit planned)."""
    spec = ctx.spec
    mac = next(iter(vm.macs.values()), "")
    if not mac.startswith(spec.networks.management.mac_prefix.lower()):
        return None
    net = ipaddress.IPv4Network(spec.networks.management.cidr, strict=False)
    return str(net.network_address + 100 + vm.vmid % 100)


# --------------------------------------------------------------------------------- config parsing

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
    """The running VM behind ``ip`` and its TalosNode (None if never configured); else refused.

    A configured node answers at its address (static, or the lease it holds); an unconfigured VM
    at the address DHCP gives it: its reservation (:func:`reservations`), else a pool lease."""
    if ctx.pve is None:
        raise refused(ip)
    try:
        vms = await ctx.pve.vms(fresh=True)  # talosctl reaches the VM as it is now
    except PveUnavailableError:
        raise refused(ip) from None
    node = ctx.talos_nodes.get(ip)
    vm = None
    mac = reservations(ctx).get(ip)
    if mac:
        vm = next((v for v in vms if mac in v.macs.values()), None)
    if vm is None:
        owner = node or next((n for n in ctx.talos_nodes.values() if ip in n.ips), None)
        if owner is not None and owner.vmid is not None:
            vm = next((v for v in vms if v.vmid == owner.vmid), None)
            node = owner
    if vm is None:  # an unreserved VM answers at its pool lease
        vm = next((v for v in vms if v.running and pool_lease(ctx, v) == ip
                   and not any(n.vmid == v.vmid and n.configured for n in ctx.talos_nodes.values())), None)
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


async def running_node(ctx: LabContext, ip: str, client: Any = INTERNAL) -> tuple[Vm, TalosNode]:
    """A configured node that finished installing; else refused (rebooting), the TLS handshake's
    error (:func:`handshake`) or 404 (maintenance, internal callers)."""
    vm, node = await find_vm(ctx, ip)
    if node is not None and node.configured:
        _settle(ctx, node)
        if node.mode != "running":
            raise refused(ip)  # installing / rebooting: apid is not up
    handshake(node, client)
    if node is None or not node.configured:
        raise TalosNotFoundError(f"node {ip} is in maintenance mode: no machine configuration")
    return vm, node


def apiserver_version(ctx: LabContext, node: TalosNode) -> str:
    """The Kubernetes version the control plane runs: the tag of ``cluster.apiServer.image`` in the
    machine config it was bootstrapped with (``talosctl gen config --kubernetes-version`` writes
    ``registry.k8s.io/kube-apiserver:v<version>``; Talos runs that image as the static pod, docs
    "Configuration Reference: v1alpha1" APIServerConfig.image), else the spec's
    ``versions.kubernetes`` (Talos' default image for that version). kube-apiserver's ``/version``
    reports its own build (k8s.io/apimachinery/pkg/version)."""
    main = next((d for d in node.docs if d.get("version") == "v1alpha1" and "kind" not in d), {}) or {}
    image = str(((main.get("cluster") or {}).get("apiServer") or {}).get("image") or "")
    tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
    if re.fullmatch(r"v\d+\.\d+\.\d+", tag):
        return tag
    return "v" + ctx.spec.versions.kubernetes


def _keep_boot_hugepages(node: TalosNode, fields: dict[str, Any]) -> None:
    """Hugepages are reserved at boot: a config applied without a reboot that drops or lowers
    ``vm.nr_hugepages`` leaves the pages the node booted with (the running kernel keeps them, and
    io-engine holds them) until the next reboot, when the new config's value is what the kernel
    reserves. Sources: Cozystack docs "How to enable Hugepages" (Talos: set machine.sysctls
    vm.nr_hugepages, ``talosctl apply``, then ``talosctl reboot``: "Applying this configuration after
    installation will require a full node reboot"); Linux Documentation/admin-guide/mm/hugetlbpage
    (pages in use are not freed when nr_hugepages shrinks). Talos' own docs were not found saying it
    in this session; issue 15 item 5 states it for real Talos. Raising the number takes effect at
    once (the kernel allocates more pages)."""
    new = fields["sysctls"]
    try:
        want = int(str(new.get("vm.nr_hugepages", "0")).strip())
    except ValueError:
        want = 0
    if node.hugepages > want:
        fields["sysctls"] = {**new, "vm.nr_hugepages": str(node.hugepages)}


# --------------------------------------------------------------------------------- operations

async def apply(ctx: LabContext, ip: str, text: str, insecure: bool = False, client: Any = INTERNAL,
                dry_run: bool = False) -> dict[str, Any]:
    """``talosctl apply-config [--insecure] [--dry-run] --nodes IP --file F``."""
    vm, node = await find_vm(ctx, ip)
    maintenance = node is None or not node.configured
    if node is not None and node.configured:
        _settle(ctx, node)
        if node.mode != "running":
            raise refused(ip)
    if client == INTERNAL:
        if maintenance and not insecure:
            raise TalosUnreachableError(UNKNOWN_AUTHORITY)
        if not maintenance and insecure:
            raise TalosUnreachableError(CERTIFICATE_REQUIRED)
    else:
        handshake(node, None if insecure else client, maintenance_ok=True)
    if ip in ctx.faults.talos_apply_error:
        raise TalosError(ctx.faults.talos_apply_error[ip], status=500)
    version = ctx.spec.versions.talos
    docs = parse_config(text, version)
    fields = derive(docs, ip)
    if dry_run:  # internal/app/maintenance/server.go @ v1.11.6 (ApplyConfiguration, DryRun)
        return {"node": ip, "mode": node.mode if node else "maintenance", "hostname": fields["hostname"],
                "reboot": False, "dry_run": True,
                "message": "Dry run summary:\nNode is running in maintenance mode and does not have a config yet."
                if maintenance else "Dry run summary:\nApplied configuration without a reboot (dry run)"}
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
        else:
            _keep_boot_hugepages(node, fields)
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
            "maintenance_install": maintenance,
            "message": "Applied configuration with a reboot" if reboot else "Applied configuration without a reboot"}


async def bootstrap(ctx: LabContext, ip: str, client: Any = INTERNAL) -> dict[str, Any]:
    """``talosctl bootstrap``: once per cluster, on a control-plane node. The Kubernetes API answers
    ``BOOTSTRAP_S`` (scaled) later; until then the emulator returns 503. A second bootstrap answers
    machined's "etcd data directory is not empty" (internal/app/machined/internal/server/v1alpha1/
    v1alpha1_server.go @ v1.11.6, Bootstrap)."""
    _vm, node = await running_node(ctx, ip, client)
    if node.machine_type not in ("controlplane", "init"):
        raise TalosError("rpc error: code = FailedPrecondition desc = bootstrap is not available on worker nodes",
                         status=400)
    if ctx.bootstrapped:
        raise TalosConflictError("rpc error: code = AlreadyExists desc = etcd data directory is not empty")
    ctx.bootstrapped = True
    ctx.bootstrap_ip = ip
    ctx.store.server_version = apiserver_version(ctx, node)
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


def admin_token(ctx: LabContext) -> str:
    """The bearer token of the cluster's admin kubeconfig. Talos signs the admin kubeconfig's client
    certificate with the cluster's Kubernetes CA (``cluster.ca`` of the secrets bundle); the
    emulator serves plain HTTP, so the credential is a token derived from that CA key instead: the
    same cluster secrets give the same credential (a restored twin accepts the kubeconfig fetched
    before the snapshot), new secrets a new one. Without a CA key in the bootstrap node's config, a
    random seed kept in the lab state (``ctx.extra``, saved in snapshots) stands in for it."""
    node = ctx.talos_nodes.get(ctx.bootstrap_ip or "")
    main = next((d for d in (node.docs if node else []) if d.get("version") == "v1alpha1" and "kind" not in d), {})
    key = str((((main or {}).get("cluster") or {}).get("ca") or {}).get("key") or "")
    if not key:
        key = ctx.extra.setdefault("talos", {}).setdefault("admin_token_seed", rnd.token_hex(32))
    return hmac.new(key.encode(), f"admin@{ctx.spec.cluster.name}".encode(), hashlib.sha256).hexdigest()


def _ca_data(ctx: LabContext, server: str) -> dict[str, str]:
    """The emulator's TLS CA for an https server (the lab process sets ``ctx.kube_ca_data``)."""
    ca = getattr(ctx, "kube_ca_data", None)
    return {"certificate-authority-data": ca} if ca and server.startswith("https://") else {}


def kubeconfig(ctx: LabContext, server: str) -> dict[str, Any]:
    """The admin kubeconfig ``talosctl kubeconfig`` writes: cluster/context named after the spec's
    cluster (``admin@NAME``); the cluster's admin credential (:func:`admin_token`), which the
    emulator's authenticator accepts."""
    if not ctx.bootstrapped:
        raise TalosError("rpc error: code = FailedPrecondition desc = kubeconfig is not available before bootstrap",
                         status=409)
    name = ctx.spec.cluster.name
    user = f"admin@{name}"
    return {"apiVersion": "v1", "kind": "Config", "current-context": user,
            "clusters": [{"name": name, "cluster": {"server": server, **_ca_data(ctx, server)}}],
            "users": [{"name": user, "user": {"token": admin_token(ctx)}}],
            "contexts": [{"name": user, "context": {"cluster": name, "user": user, "namespace": "default"}}],
            "preferences": {}}


async def get_config(ctx: LabContext, ip: str, client: Any = INTERNAL) -> dict[str, Any]:
    _vm, node = await running_node(ctx, ip, client)
    return {"node": ip, "config": dump_documents(node.docs), "mode": node.mode,
            "hostname": node.hostname, "type": node.machine_type, "addresses": node.addresses}


async def version(ctx: LabContext, ip: str, client: Any = INTERNAL) -> dict[str, Any]:
    _vm, node = await find_vm(ctx, ip)
    maintenance = node is None or not node.configured
    if node is not None:
        _settle(ctx, node)
        if node.mode == "installing":
            raise refused(ip)
    handshake(node, client)  # maintenance + --insecure: Unimplemented (admin API)
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


async def read(ctx: LabContext, ip: str, path: str, client: Any = INTERNAL) -> str:
    """``talosctl read``: /proc/meminfo, /proc/modules, /proc/cpuinfo, /sys/block (listing),
    /sys/block/sdX/size (512-byte sectors), /proc/sys/<sysctl>, /etc/hostname."""
    vm, node = await running_node(ctx, ip, client)
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


def kube_prism(node: TalosNode) -> bool:
    """``machine.features.kubePrism.enabled`` of the node's config. Off unless the config turns it
    on: ``FeaturesConfig.KubePrism`` returns an empty KubePrism when the key is absent and
    ``Enabled`` dereferences a nil pointer to false (pkg/machinery/config/types/v1alpha1/
    v1alpha1_features.go @ v1.11.6 and @ ad88231); only ``talosctl gen config`` writes it, for
    version contracts above 1.5 (pkg/machinery/config/contract.go, KubePrismEnabled;
    generate/init.go and worker.go). Port 7445 (constants.DefaultKubePrismPort)."""
    main = next((d for d in node.docs if d.get("version") == "v1alpha1" and "kind" not in d), {}) or {}
    kp = (((main.get("machine") or {}).get("features") or {}).get("kubePrism") or {})
    return kp.get("enabled") is True


def etcd_state(ctx: LabContext, node: TalosNode) -> tuple[str, str, str]:
    """``talosctl service etcd``'s STATE, HEALTH and last event on a control-plane node. Before
    bootstrap etcd waits in its pre-state (buildInitialCluster retries and logs "please run
    `talosctl bootstrap`", internal/app/machined/pkg/system/services/etcd.go @ v1.11.6)."""
    if ctx.bootstrapped:
        return "Running", "OK", "Health check successful"
    return "Preparing", "?", "Running pre state"


# Check names and order of DefaultClusterChecks: PreBootSequenceChecks, K8sComponentsReadinessChecks,
# then node readiness, kube-proxy, coredns, schedulable (pkg/cluster/check/default.go @ v1.11.6).
PRE_BOOT = ("etcd to be healthy", "etcd members to be consistent across nodes", "etcd members to be control plane nodes",
            "apid to be ready", "all nodes memory sizes", "all nodes disk sizes", "no diagnostics",
            "kubelet to be healthy", "all nodes to finish boot sequence")
K8S_COMPONENTS = ("all k8s nodes to report", "all control plane static pods to be running",
                  "all control plane components to be ready")
# From Talos 1.13 the node-readiness and coredns checks are skipped when the CNI is disabled
# (commit 57599fb "fix: skip some readiness checks when the CNI is disabled", first in v1.13.0).
CNI_SKIP_FROM = (1, 13)


async def health(ctx: LabContext, ip: str | None = None, client: Any = INTERNAL) -> dict[str, Any]:
    """``talosctl health`` (server side, run by the node ``ip``): the checks in upstream order, each
    ``{"name", "ok", "message"}`` with ``message`` the condition's last error ("OK", "SKIP"), up to
    and including the first that fails (check.Wait stops there). ``nodes``: the discovered IPs."""
    if ip is not None:
        await running_node(ctx, ip, client)
    nodes = sorted((n for n in ctx.talos_nodes.values() if n.configured), key=lambda n: n.ip)
    cps = [n for n in nodes if n.machine_type in ("controlplane", "init")]
    objs = {n["metadata"]["name"]: n for n in ctx.store.list("v1", "Node")["items"]} if api_available(ctx) else {}

    def ready(name: str) -> bool:
        conds = {c["type"]: c for c in ((objs.get(name) or {}).get("status") or {}).get("conditions") or []}
        return (conds.get("Ready") or {}).get("status") == "True"

    pending = [n for n in nodes if n.mode != "running" and not n.is_ready()]
    results: list[tuple[str, str]] = []
    for name in PRE_BOOT:
        if name == "etcd to be healthy" and not ctx.bootstrapped:
            bad = "; ".join(f'{n.ip}: service "etcd" not in expected state "Running": current state '
                            f'[Preparing] Running pre state' for n in cps) or "no control plane nodes"
            results.append((name, bad))
        elif name == "all nodes to finish boot sequence" and pending:
            results.append((name, f"node {pending[0].ip} is not ready yet"))
        else:
            results.append((name, "OK"))
    for name in K8S_COMPONENTS:
        if not api_available(ctx):
            results.append((name, "the Kubernetes API is not available"))
        elif name == "all k8s nodes to report":
            missing = [n.ip for n in nodes if n.hostname not in objs]
            results.append((name, f"some nodes are not reported: {missing}" if missing else "OK"))
        else:
            results.append((name, "OK"))
    cni_none = all((((next((d for d in n.docs if d.get("version") == "v1alpha1" and "kind" not in d), {}) or {})
                     .get("cluster") or {}).get("network") or {}).get("cni", {}).get("name") == "none" for n in cps)
    skip_cni = cni_none and _minor(ctx.spec.versions.talos) >= CNI_SKIP_FROM
    not_ready = sorted(name for name in objs if not ready(name))
    results.append(("all k8s nodes to report ready", "SKIP" if skip_cni else
                    (f"some nodes are not ready: [{' '.join(not_ready)}]" if not_ready else "OK")))
    results.append(("kube-proxy to report ready", "SKIP"))  # proxy disabled: no DaemonSet, skipped
    results.append(("coredns to report ready", "SKIP" if skip_cni or not not_ready else "OK"))
    results.append(("all k8s nodes to report schedulable", "OK"))
    checks = []
    for name, msg in results:
        ok = msg in ("OK", "SKIP")
        checks.append({"name": name, "ok": ok, "message": msg})
        if not ok:
            break
    return {"ok": all(c["ok"] for c in checks), "checks": checks, "nodes": [n.ip for n in nodes],
            "time_factor": ctx.time_factor}


async def service(ctx: LabContext, ip: str, name: str, client: Any = INTERNAL) -> dict[str, Any]:
    """``talosctl service NAME`` on a configured node: etcd on control-plane nodes (see
    :func:`etcd_state`); kubelet, apid, containerd, machined Running everywhere."""
    _vm, node = await running_node(ctx, ip, client)
    if name == "etcd":
        if node.machine_type not in ("controlplane", "init"):
            raise TalosNotFoundError(f'service "{name}" is not registered on any nodes')
        state, health_, event = etcd_state(ctx, node)
    elif name in ("kubelet", "apid", "containerd", "machined", "trustd", "udevd", "cri"):
        state, health_, event = "Running", "OK", "Health check successful"
    else:
        raise TalosNotFoundError(f'service "{name}" is not registered on any nodes')
    return {"node": node.hostname or ip, "id": name, "state": state, "health": health_, "event": event}


def is_ip(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------------- before-state identity

def _ca_pem(common_name: str, key: Any) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else [])
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=3650))
         .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True))
    cert = b.sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM)


def before_identity(ctx: LabContext) -> dict[str, Any]:
    """The pre-migration cluster's secrets bundle, in ``talosctl gen secrets``' layout
    (pkg/machinery/config/generate/secrets/bundle.go @ v1.11.6: cluster, secrets, trustdinfo,
    certs.{etcd,k8s,k8saggregator,k8sserviceaccount,os}; keys/certs as base64 PEM), made once per
    twin by the twin itself. Its OS CA signs the before nodes' apid certificates, so they accept
    only talosconfigs of this CA. The operator's copy is written to ``STATE/operator/secrets.yaml``
    (the twin's stand-in for "the operator kept secrets.yaml"; falkit.clients.target copies it to the
    private state dir, where docs/ARCHITECTURE.md tells operators to put it)."""

    extra = ctx.extra.setdefault("talos", {})
    if extra.get("before_secrets"):
        return extra["before_secrets"]

    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode()

    def key_pem(k: Any) -> bytes:
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())

    certs: dict[str, Any] = {}
    for name, cn in (("etcd", "etcd"), ("k8s", "kubernetes"), ("k8saggregator", "front-proxy")):
        k = ec.generate_private_key(ec.SECP256R1())
        certs[name] = {"crt": b64(_ca_pem(cn, k)), "key": b64(key_pem(k))}
    osk = ed25519.Ed25519PrivateKey.generate()
    certs["os"] = {"crt": b64(_ca_pem("talos", osk)), "key": b64(key_pem(osk))}
    certs["k8sserviceaccount"] = {"key": b64(key_pem(ec.generate_private_key(ec.SECP256R1())))}
    alnum = "abcdefghijklmnopqrstuvwxyz0123456789"

    def tok() -> str:
        return "".join(rnd.choice(alnum) for _ in range(6)) + "." + "".join(rnd.choice(alnum) for _ in range(16))

    bundle = {"cluster": {"id": b64(rnd.token_bytes(32)), "secret": b64(rnd.token_bytes(32))},
              "secrets": {"bootstraptoken": tok(), "secretboxencryptionsecret": b64(rnd.token_bytes(32))},
              "trustdinfo": {"token": tok()}, "certs": certs}
    extra["before_secrets"] = bundle
    out = ctx.state_dir / "operator" if getattr(ctx, "state_dir", None) else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        os.chmod(out, 0o700)
        path = out / "secrets.yaml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(yaml.safe_dump(bundle, sort_keys=False))
    return bundle


# --------------------------------------------------------------------------------- KubePrism and Cilium

LOCALHOST = ("localhost", "127.0.0.1", "::1")


def cilium_api_error(ctx: LabContext, node: TalosNode) -> str | None:
    """Cilium's own error when its agent on ``node`` cannot reach the API server it is told to use,
    else None. Modelled: ``k8sServiceHost`` on localhost (KubePrism's address, Talos' Cilium guide)
    while the node's config does not enable KubePrism on that port (:func:`kube_prism`) — nothing
    listens there, the agent's connection is refused and it exits; it never writes its CNI config,
    so kubelet keeps the Node NotReady ("cni plugin not initialized"). The text is the agent's
    log line (cilium/cilium pkg/k8s/client: "Establishing connection to apiserver" then "Unable to
    contact k8s api-server" with the client-go error; Cilium docs, Troubleshooting "Unable to contact
    k8s api-server"); the address is the one Go dials for ``localhost`` first ([::1])."""
    r = ctx.release_of("cilium")
    if r is None:
        return None
    host = str(r.values.get("k8sServiceHost") or "")
    if host not in LOCALHOST:
        return None
    try:
        port = int(r.values.get("k8sServicePort") or 443)
    except (TypeError, ValueError):
        port = 443
    main = next((d for d in node.docs if d.get("version") == "v1alpha1" and "kind" not in d), {}) or {}
    kp = (((main.get("machine") or {}).get("features") or {}).get("kubePrism") or {})
    if kube_prism(node) and int(kp.get("port") or 7445) == port:
        return None
    addr = "[::1]" if host == "localhost" else host
    return (f'level=error msg="Unable to contact k8s api-server" module=k8s-client ipAddr=https://{host}:{port} '
            f'error="Get \\"https://{host}:{port}/api/v1/namespaces/kube-system\\": dial tcp {addr}:{port}: '
            f'connect: connection refused"')


def report_cilium_error(ctx: LabContext, node_name: str, message: str) -> None:
    """The kubelet's Warning ``BackOff`` Event on the node's cilium agent pod, carrying the agent's
    last log line (the chart's agent container uses ``terminationMessagePolicy:
    FallbackToLogsOnError``, so a real cluster shows it as the container's last termination
    message)."""
    for pod in ctx.store.list("v1", "Pod", namespace="kube-system")["items"]:
        labels = pod["metadata"].get("labels") or {}
        if labels.get("k8s-app") == "cilium" and (pod.get("spec") or {}).get("nodeName") == node_name:
            record_event(ctx, pod, "BackOff",
                         f"Back-off restarting failed container cilium-agent in pod {pod['metadata']['name']}: "
                         f"{message}", "Warning", component="kubelet")
