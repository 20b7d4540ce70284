"""Step truenas_plex (60-truenas-plex): the TrueNAS VM and its NFS exports, the Plex container,
and Kubernetes NFS mounts moved to TrueNAS's storage address.

**TrueNAS** (``spec.truenas``; disabled in the seed: "Deploy TrueNAS VM (currently commented
out)"). When enabled, the host budget is re-run (:func:`falkit.model.findings.preflight` on the spec
with TrueNAS in it) and any error finding is a ``blocked`` change: apply refuses with the
finding's message (The Fal: 31 GB of VMs + 8 GB TrueNAS + 1 GB Proxmox > 32 GB). Otherwise the VM
is created as the design derives it (both NICs: net0 on vmbr0, net1 on vmbr1, the seed's MACs) and
started, then through TrueNAS's REST API (``target.truenas``): one NFS share per
``truenas.nfs_shares`` whose allowed networks lie inside the storage network (10.11.0.0/24 —
anything else is refused in the plan), and the NFS service enabled and running. TrueNAS's own
addresses come from DHCP reservations on the planned MACs or its console; falkit does not
re-address a NAS it cannot reach yet. Option ``truenas_iso`` (e.g. ``local:iso/TrueNAS-SCALE.iso``)
attaches the installer ISO.

**Plex** (``spec.plex``): an unprivileged LXC created with ``POST /nodes/{node}/lxc`` from
``plex_template`` (default ``local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst``). When that
template is not on its storage, Proxmox downloads it first from its appliance index
(``POST /nodes/{node}/aplinfo``, what ``pveam download`` does — pve-manager PVE/API2/Nodes.pm
``apl_download``); a template missing from the index too is a ``blocked`` preflight that names
the ``pveam`` command. Cores,
memory and rootfs from the spec; ``net0``/``net1`` with the planned MACs and static addresses;
GPU passthrough ``dev0=/dev/dri/renderD128,gid=<render gid>`` (Proxmox VE 8.1+; docs/FACTS.md) so the
container's ``render`` group can open the AMD 680M's render node; started.
NFS media in an *unprivileged* container: the kernel refuses NFS mounts inside it (mounting needs
CAP_SYS_ADMIN in the initial user namespace), so the host mounts the share and the container
gets a bind mount: ``mp0=/mnt/pve/<plex_nfs_storage>/,mp=<mountpoint>``. The host mount is a
Proxmox NFS storage (``POST /storage``: type ``nfs``, server = TrueNAS's storage address, export =
the share; PVE mounts it at ``/mnt/pve/<id>``): with TrueNAS enabled falkit adds it after the
shares are exported and before the container is created and started (:func:`nfs_storage_params`);
a storage of that ID that exists with another server or export is reported, never changed. With
TrueNAS disabled (the seed) there is nothing to mount and the container gets no ``mpN``. Proxmox lets only the root@pam *user* — not an API token, not
even root's — set ``devN`` and host bind mounts ``mpN``; falkit creates the container through its
token without them and prints the exact ``pct set`` command to run as root on the host (a note in
the plan and the fix of the failing checks). In an unprivileged CT uid 0 is host uid 100000: give the share
``mapall_user``/dataset permissions for that range, or Plex cannot write metadata there.

**Kubernetes NFS mounts**: Deployments/StatefulSets with inline ``nfs`` volumes whose server is
not TrueNAS's storage address get it patched (pods restart, a disruptive change). PersistentVolumes
with ``spec.nfs.server`` elsewhere are reported with the manual fix (a PV's source is immutable:
a new PV/PVC pair is needed).

**Checks**: the TrueNAS VM has both NICs and runs; every share is exported to the storage network
only; NFS runs; the Plex CT runs unprivileged with ``dev0`` and ``mp0``. Honest limits: Proxmox's
API has no ``pct exec``, so "the render node is visible inside the container" is checked from the
container's config (dev0 passes exactly that node); verify it by hand with
``pct exec <vmid> -- ls -l /dev/dri/renderD128``, and install Plex Media Server inside
(``pct exec <vmid> -- bash -c 'apt-get install plexmediaserver'`` after adding Plex's apt repo).
"""

from __future__ import annotations

import ipaddress
import posixpath
from dataclasses import dataclass, field, replace
from typing import Any

from ..clients.kube import WaitTimeoutError, klist, kpatch, wait_for
from ..clients.proxmox import PveCallError, TaskFailedError, TaskTimeoutError, call, list_vms, wait_task
from ..model.design import design_of
from ..model.errors import StepError
from ..model.findings import preflight
from ..model.spec import LabSpec
from ..plan.diff import Change, Noop, Plan
from ..plan.payloads import Blocked, payload
from .base import Check, Progress, StepOptions, register
from .executors import Apply, execute, executes
from .vms import desired_config

STEP = "truenas_plex"
DEFAULT_TEMPLATE = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
DEFAULT_NFS_STORAGE = "truenas-media"
# Plex Media Server's image (Docker Hub plexinc/pms-docker: tags latest/public/beta; PMS on 32400,
# its library in /config). Proxmox VE 9.1 pulls it with oci-registry-pull and creates an application
# container from the archive. "" = the older path: a Debian system container, Plex installed by hand.
DEFAULT_PLEX_IMAGE = "docker.io/plexinc/pms-docker:latest"
DEFAULT_CONFIG_STORAGE = "plex-config"
IMAGE_STORAGE = "local"


def plex_image(options: StepOptions) -> str:
    return str(options.extra.get("plex_image", DEFAULT_PLEX_IMAGE) or "")


def oci_volid(image: str, storage: str = IMAGE_STORAGE) -> str:
    """The archive ``oci-registry-pull`` writes for ``image``: ``<storage>:vztmpl/<name>_<tag>.tar``
    (falkit passes ``filename`` = ``<name>_<tag>``; PVE appends ``.tar``)."""
    return f"{storage}:vztmpl/{oci_filename(image)}.tar"


def oci_filename(image: str) -> str:
    return image.rsplit("/", 1)[-1].replace(":", "_")


def config_nfs(spec: LabSpec, options: StepOptions) -> tuple[str, str]:
    """(server, export) of the NFS export that holds Plex's library: the option ``plex_config_nfs``
    (``server:/export``), else TrueNAS's storage address and ``/mnt/tank/plex-config``. Both the
    Kubernetes copy Job (a static NFS PersistentVolume) and the Proxmox host (an NFS storage, bind
    mounted at the container's /config) reach it — the one place a real lab lets both write."""
    text = str(options.extra.get("plex_config_nfs") or "")
    if text:
        server, _, export = text.partition(":")
        return server, export or "/"
    server = spec.truenas.storage_ip if spec.truenas else (spec.plex.storage_ip or spec.plex.ip)
    return str(server), "/mnt/tank/plex-config"


def config_storage(options: StepOptions) -> str:
    return str(options.extra.get("plex_config_storage") or DEFAULT_CONFIG_STORAGE)


def plex_env(spec: LabSpec) -> str:
    """The container's ``env`` (NUL-separated, the API schema's pattern): pms-docker's ``TZ`` and
    ``ADVERTISE_IP`` (its README). No ``PLEX_CLAIM``: the copied library already holds the server's
    sign-in, and a claim token is a secret falkit keeps out of configs."""
    return f"TZ=Etc/UTC\0ADVERTISE_IP=http://{spec.plex.ip}:32400/"


@dataclass(frozen=True)
class TnPlexFacts:
    vms: dict[int, dict[str, Any]]  # vmid -> {"status", "config"}
    cts: dict[int, dict[str, Any]]  # vmid -> {"status", "config"}
    storages: tuple[str, ...]
    nas_error: str = ""
    shares: tuple[dict, ...] = ()
    nfs_service: dict | None = None
    workloads: tuple[dict, ...] = ()
    pvs: tuple[dict, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    storage_config: dict[str, dict] = field(default_factory=dict)  # storage id -> GET /storage/{id}


# ---------------------------------------------------------------------------------------------
# Payloads of this step (the shared one: falkit.plan.payloads.Blocked). Apply carries them out in
# the order of APPLY_ORDER (TrueNAS first: VM, its start, its shares; then the host's NFS storages,
# the container's template or image, the container, its start, the apps' NFS mounts).


@payload
@dataclass(frozen=True)
class TrueNasCreateVM:
    """``POST /nodes/{node}/qemu`` with ``params`` (the TrueNAS VM as the design derives it)."""

    vmid: int
    params: dict


@payload
@dataclass(frozen=True)
class TrueNasStartVM:
    """Start VM ``vmid`` (``status/start``) and wait for its task."""

    vmid: int


@payload
@dataclass(frozen=True)
class TrueNasShare:
    """The NFS share ``path`` exported to ``networks`` (TrueNAS's REST API); ``wait_api``: the first
    NAS change of the plan waits until the TrueNAS API answers (a NAS just started is booting)."""

    path: str
    networks: tuple[str, ...]
    wait_api: bool = False


@payload
@dataclass(frozen=True)
class TrueNasService:
    """TrueNAS service ``service`` enabled and started; ``wait_api`` as for :class:`TrueNasShare`."""

    service: str
    wait_api: bool = False


@payload
@dataclass(frozen=True)
class PveStorage:
    """``POST /storage`` with ``params`` (an NFS storage the host mounts at ``/mnt/pve/<id>``)."""

    params: dict


@payload
@dataclass(frozen=True)
class PlexTemplateDownload:
    """``POST /nodes/{node}/aplinfo``: Proxmox downloads LXC template ``template`` to ``storage``."""

    storage: str
    template: str


@payload
@dataclass(frozen=True)
class PlexImagePull:
    """``POST /nodes/{node}/storage/{storage}/oci-registry-pull`` of ``reference`` as ``filename``."""

    storage: str
    reference: str
    filename: str


@payload
@dataclass(frozen=True)
class PlexCreateCT:
    """``POST /nodes/{node}/lxc`` with ``params`` (the Plex container, without root-only keys)."""

    vmid: int
    params: dict


@payload
@dataclass(frozen=True)
class PlexCTConfig:
    """``PUT /nodes/{node}/lxc/{vmid}/config`` with ``values``; ``root``: through the root@pam
    session (``devN``/``mpN``, which Proxmox refuses to API tokens)."""

    vmid: int
    values: dict
    root: bool = False


@payload
@dataclass(frozen=True)
class PlexStartCT:
    """Start container ``vmid`` (``status/start``) and wait for its task."""

    vmid: int


@payload
@dataclass(frozen=True)
class NfsMountServer:
    """The inline ``nfs`` volume ``volume`` of workload ``kind`` ``namespace/name`` repointed at ``server``."""

    kind: str
    namespace: str | None
    name: str
    volume: str
    server: str



def truenas_enabled(spec: LabSpec) -> bool:
    return bool(spec.truenas and spec.truenas.enabled)


def plex_config(spec: LabSpec, options: StepOptions) -> dict[str, str]:
    """The container's config as PVE writes it back (strings), for create and for drift checks."""
    ct = design_of(spec).containers[0]
    cfg = {"hostname": ct.hostname, "cores": str(ct.cores), "memory": str(ct.memory_gb * 1024),
           "unprivileged": "1" if ct.unprivileged else "0", "onboot": "1", "features": "nesting=1"}
    for n in ct.nics:
        net = ipaddress.IPv4Network(n.cidr)
        nic = f"name={n.device},bridge={n.bridge},hwaddr={n.mac.upper() if n.mac else ''},ip={n.ip}/{net.prefixlen}"
        if n.network == "management":
            nic += f",gw={n.gateway}"
        cfg[n.slot] = nic
    if ct.gpu and spec.host.gpu:
        cfg["dev0"] = f"{ct.gpu},gid={spec.host.gpu.render_gid}"
    storage = str(options.extra.get("plex_nfs_storage") or DEFAULT_NFS_STORAGE)
    for i, (share, mountpoint) in enumerate(ct.mounts):
        sub = share.rstrip("/").rsplit("/", 1)[-1]
        cfg[f"mp{i}"] = f"/mnt/pve/{storage}/{sub},mp={mountpoint}" if len(ct.mounts) > 1 else f"/mnt/pve/{storage},mp={mountpoint}"
    if plex_image(options):
        cfg["env"] = plex_env(spec)
        cfg[config_mount_key(spec)] = f"/mnt/pve/{config_storage(options)},mp=/config"
    return cfg


def config_mount_key(spec: LabSpec) -> str:
    """``mpN`` of the library's bind mount: after the media mounts."""
    return f"mp{len(spec.plex.nfs_mounts)}"


def nfs_storage_params(spec: LabSpec, storage: str, node: str) -> dict[str, str]:
    """``POST /storage`` for the host's NFS mount of Plex's media (PVE mounts it at
    ``/mnt/pve/<storage>``): server = TrueNAS's storage address; export = the share (several
    shares: their common parent, as :func:`plex_config`'s ``mpN`` paths expect). Content ``iso``
    only because an NFS storage needs a content type; ``create-subdirs 0`` keeps PVE from making its
    ``template/iso`` folders in the media share."""
    shares = [m.share.rstrip("/") or "/" for m in spec.plex.nfs_mounts]
    export = shares[0] if len(shares) == 1 else posixpath.commonpath(shares)
    return {"storage": storage, "type": "nfs", "server": spec.truenas.storage_ip, "export": export,
            "content": "iso", "create-subdirs": "0", "nodes": node}


def config_storage_params(spec: LabSpec, options: StepOptions, node: str) -> dict[str, str]:
    """``POST /storage`` for the host's mount of Plex's library export (at ``/mnt/pve/<id>``, bind
    mounted at the container's ``/config``); content ``iso`` and ``create-subdirs 0`` as for the media
    storage (:func:`nfs_storage_params`)."""
    server, export = config_nfs(spec, options)
    return {"storage": config_storage(options), "type": "nfs", "server": server, "export": export,
            "content": "iso", "create-subdirs": "0", "nodes": node}


def nfs_storage_item(sid: str, want: dict[str, str], facts: TnPlexFacts, reason: str,
                     option: str) -> Change | Noop | str:
    """The plan for Proxmox NFS storage ``sid`` (``want``: its params): a ``create`` when it is
    missing, a note (a ``str``) when it exists as something else — falkit does not change a storage
    that may be in use; ``option`` names the option that picks another — else a noop."""
    have = facts.storage_config.get(sid)
    if sid not in facts.storages:
        return Change("create", "pve-storage", sid, new=f"NFS {want['server']}:{want['export']} at /mnt/pve/{sid}",
                      reason=reason, data=PveStorage(want))
    if have is not None and (have.get("type"), have.get("server"), have.get("export")) != \
            ("nfs", want["server"], want["export"]):
        return (f"Proxmox storage {sid!r} exists as {have.get('type')} {have.get('server', '')}:{have.get('export', '')}, "
                f"not NFS {want['server']}:{want['export']}: falkit does not change a storage that may be in use; "
                f"fix it by hand or choose {option}")
    return Noop("pve-storage", sid, f"NFS {want['server']}:{want['export']}")


def _place(item: Change | Noop | str, changes: list[Change], noops: list[Noop], notes: list[str],
           at: int | None = None) -> None:
    if isinstance(item, Change):
        changes.insert(len(changes) if at is None else at, item)
    elif isinstance(item, Noop):
        noops.append(item)
    else:
        notes.append(item)


def _config_storage_changes(spec: LabSpec, facts: TnPlexFacts, options: StepOptions, changes: list[Change],
                            noops: list[Noop], notes: list[str]) -> None:
    want = config_storage_params(spec, options, str(facts.extra.get("node", "")))
    _place(nfs_storage_item(want["storage"], want, facts, "Plex's library: the host mounts the export, the container "
                            "gets it at /config", "plex_config_storage"), changes, noops, notes)


def _props(text: str) -> dict[str, str] | None:
    """``a=1,b=2`` -> dict; None when ``text`` is not a property string."""
    parts = [p for p in str(text).split(",") if p]
    if not parts or not all("=" in p for p in parts):
        return None
    return {k.strip().lower(): v.strip().lower() for k, v in (p.split("=", 1) for p in parts)}


def same_value(have: Any, want: str) -> bool:
    """PVE writes property strings back normalised (keys sorted, defaults such as ``type=veth``
    added, MACs upper-case): equal when every wanted property has the wanted value."""
    if have is None:
        return False
    hp, wp = _props(str(have)), _props(want)
    if hp is not None and wp is not None:
        return all(hp.get(k) == v for k, v in wp.items())
    return str(have).lower() == want.lower()


def root_only(key: str) -> bool:
    """Config keys PVE lets only the root@pam *user* set (not an API token, even root's):
    ``devN`` ("configuring device passthrough is only allowed for root@pam") and bind mounts
    ``mpN`` of host paths ("Only root can pass arbitrary filesystem paths")."""
    return key.startswith(("dev", "mp")) and key[-1].isdigit()


def pct_set(vmid: int, keys: dict[str, str]) -> str:
    return f"pct set {vmid} " + " ".join(f"-{k} {v}" for k, v in sorted(keys.items())) + f" && pct reboot {vmid}"


def plan_config(spec: LabSpec, options: StepOptions | None = None) -> dict[str, str]:
    """The Plex CT's config as the plan wants it (for tests and the notebook)."""
    return plex_config(spec, options or StepOptions())


def _nfs_server_of(volume: dict) -> str | None:
    nfs = volume.get("nfs")
    return nfs.get("server") if isinstance(nfs, dict) else None


def plan_truenas_plex(spec: LabSpec, facts: TnPlexFacts, options: StepOptions) -> Plan:
    changes: list[Change] = []
    noops: list[Noop] = []
    notes: list[str] = []
    design = design_of(spec)
    t = spec.truenas
    if truenas_enabled(spec):
        errors = [f for f in preflight(spec, design) if f.severity == "error"]
        for f in errors:
            changes.append(Change("action", "preflight", f.subject, f.id, reason=f"blocked: {f.message} — fix: {f.fix}",
                                  data=Blocked(f.message, f.fix)))
        vm = design.vm(t.name)
        have = facts.vms.get(t.vmid)
        if have is None:
            params = {"vmid": t.vmid, **desired_config(spec, vm), "sockets": 1}
            if options.extra.get("truenas_iso"):
                params["ide2"] = f"{options.extra['truenas_iso']},media=cdrom"
            changes.append(Change("create", "vm", t.name, new=f"{t.cores} vCPU, {t.memory_gb} GB, net0+net1",
                                  data=TrueNasCreateVM(t.vmid, params)))
            changes.append(Change("action", "vm", t.name, "status", "stopped", "running", data=TrueNasStartVM(t.vmid)))
        else:
            noops.append(Noop("vm", t.name, f"exists ({have['status']})"))
            if have["status"] != "running":
                changes.append(Change("action", "vm", t.name, "status", have["status"], "running", data=TrueNasStartVM(t.vmid)))
        stor = ipaddress.IPv4Network(spec.networks.storage.cidr)
        for share in t.nfs_shares:
            outside = [n for n in share.networks if not ipaddress.IPv4Network(n).subnet_of(stor)]
            if outside:
                changes.append(Change("action", "preflight", share.path, "networks", reason=f"blocked: {share.path} would be "
                                      f"exported to {', '.join(outside)}, outside the storage network {stor}",
                                      data=Blocked("NFS only on the storage network", "fix truenas.nfs_shares")))
                continue
            cur = next((s for s in facts.shares if s.get("path") == share.path), None)
            if cur is None or sorted(cur.get("networks") or []) != sorted(share.networks):
                changes.append(Change("create" if cur is None else "update", "nfs-share", share.path, "networks",
                                      None if cur is None else cur.get("networks"), share.networks,
                                      data=TrueNasShare(share.path, tuple(share.networks))))
            else:
                noops.append(Noop("nfs-share", share.path, f"exported to {', '.join(share.networks)}"))
        svc = facts.nfs_service or {}
        if not (svc.get("enable") and svc.get("state") == "RUNNING"):
            changes.append(Change("update", "service", "nfs", "state", svc.get("state", "unknown"), "RUNNING (enabled)",
                                  data=TrueNasService("nfs")))
        else:
            noops.append(Noop("service", "nfs", "enabled and running"))
        # a NAS that was just started answers once it has booted: the first NAS change waits for its API
        first = next((i for i, c in enumerate(changes) if isinstance(c.data, (TrueNasShare, TrueNasService))), None)
        if first is not None:
            changes[first] = replace(changes[first], data=replace(changes[first].data, wait_api=True))
        if facts.nas_error and t.vmid in facts.vms and facts.vms[t.vmid]["status"] == "running":
            notes.append(f"TrueNAS API: {facts.nas_error}")
    elif t is not None:
        notes.append("TrueNAS is disabled in the spec (as in the seed): no VM, no exports; Plex's NFS media and "
                     f"apps' NFS mounts point at {t.storage_ip}, which answers only once TrueNAS runs")
    p = spec.plex
    if p and p.enabled:
        full = plex_config(spec, options)
        if not truenas_enabled(spec):  # no NAS yet: no NFS media to bind-mount (the seed: TrueNAS commented out)
            full = {k: v for k, v in full.items() if not k.startswith("mp") or k == config_mount_key(spec) and plex_image(options)}
            if p.nfs_mounts:
                notes.append("TrueNAS is disabled: Plex's NFS media mounts wait until it is enabled")
        want = {k: v for k, v in full.items() if not root_only(k)}
        have = facts.cts.get(p.vmid)
        cfg_now = (have or {}).get("config") or {}
        missing = {k: v for k, v in full.items() if root_only(k) and not same_value(cfg_now.get(k), v)}
        root_change = None
        if missing and facts.extra.get("root_session"):
            root_change = (Change("update", "ct-config-root", p.hostname, ", ".join(sorted(missing)),
                                  ", ".join(str(cfg_now.get(k, "-")) for k in sorted(missing)),
                                  ", ".join(missing[k] for k in sorted(missing)),
                                  reason="root@pam login (Proxmox refuses these to API tokens); takes effect at the next start",
                                  data=PlexCTConfig(p.vmid, missing, root=True)))
        elif missing:
            notes.append("root@pam only (Proxmox refuses device passthrough and host bind mounts to API tokens): set "
                         "secrets.proxmox_root_password, or on the host run  " + pct_set(p.vmid, missing))
        image = plex_image(options)
        if image:
            _config_storage_changes(spec, facts, options, changes, noops, notes)
        if have is None and image:
            volid = oci_volid(image)
            if not facts.extra.get("oci_present", True):
                # POST /nodes/{node}/storage/{storage}/oci-registry-pull (Proxmox VE 9.1)
                changes.append(Change("create", "oci-image", volid, new=f"pulled by Proxmox from {image}",
                                      reason="Plex's application container is created from this OCI image",
                                      data=PlexImagePull(IMAGE_STORAGE, image, oci_filename(image))))
        if have is None:
            volid = oci_volid(image) if image else template_volid(options)
            if not image and not facts.extra.get("template_present", True):
                storage, name = volid.partition(":")[0], volid.rsplit("/", 1)[-1]
                if facts.extra.get("template_appliance"):
                    changes.append(Change("create", "lxc-template", volid, new="downloaded by Proxmox (appliance index)",
                                          reason="the container's ostemplate is not on the host yet",
                                          data=PlexTemplateDownload(storage, name)))
                else:
                    changes.append(Change("action", "preflight", volid, "ostemplate", reason=f"blocked: the LXC template "
                                          f"{volid} is not on the host and not in Proxmox's appliance index",
                                          data=Blocked(f"LXC template {volid} missing",
                                                       f"run `pveam update && pveam download {storage} {name}` on the "
                                                       f"host, or set the plex_template option to a template it has")))
            params = {"vmid": p.vmid, "ostemplate": volid,
                      "rootfs": f"{p.rootfs_storage}:{p.rootfs_gb}", "swap": 512, **want}
            changes.append(Change("create", "ct", p.hostname, new=f"unprivileged, {p.cores} cores, {p.memory_gb} GB, "
                                  + "net0+net1; dev0/mp0 by root@pam",
                                  data=PlexCreateCT(p.vmid, params)))
            if root_change:
                changes.append(root_change)
            if not image:  # an application container starts once its library is in place (step plex)
                changes.append(Change("action", "ct", p.hostname, "status", "stopped", "running", data=PlexStartCT(p.vmid)))
        else:
            cfg = have["config"]
            for k, v in want.items():
                if not same_value(cfg.get(k), v):
                    changes.append(Change("update", "ct-config", p.hostname, k, cfg.get(k), v,
                                          disruptive=k.startswith(("net", "unprivileged")),
                                          data=PlexCTConfig(p.vmid, {k: v})))
            if root_change:
                changes.append(root_change)
            if have["status"] != "running" and not image:
                changes.append(Change("action", "ct", p.hostname, "status", have["status"], "running", data=PlexStartCT(p.vmid)))
            if not any(c.kind.startswith("ct") for c in changes):
                noops.append(Noop("ct", p.hostname, "configured as planned and running"))
        storage = str(options.extra.get("plex_nfs_storage") or DEFAULT_NFS_STORAGE)
        if p.nfs_mounts and truenas_enabled(spec):
            want_nfs = nfs_storage_params(spec, storage, str(facts.extra.get("node", "")))
            # before the container: PVE starts a CT only when its bind mount's source exists
            at = next((i for i, c in enumerate(changes) if c.kind == "ct"), len(changes))
            _place(nfs_storage_item(storage, want_nfs, facts, "the host mounts TrueNAS's share; Plex gets it as a "
                                    "bind mount", "plex_nfs_storage"), changes, noops, notes, at)
    if t is not None:
        for w in facts.workloads:
            vols = (((w.get("spec") or {}).get("template") or {}).get("spec") or {}).get("volumes") or []
            for v in vols:
                server = _nfs_server_of(v)
                if server and server != t.storage_ip:
                    md = w["metadata"]
                    changes.append(Change("update", "nfs-mount", f"{w['kind']}/{md.get('namespace')}/{md['name']}",
                                          f"volumes.{v['name']}.nfs.server", server, t.storage_ip, disruptive=True,
                                          reason="NFS over the storage network (pods restart)",
                                          data=NfsMountServer(w["kind"], md.get("namespace"), md["name"], v["name"], t.storage_ip)))
        for pv in facts.pvs:
            server = ((pv.get("spec") or {}).get("nfs") or {}).get("server")
            if server and server != t.storage_ip:
                notes.append(f"PV {pv['metadata']['name']} mounts NFS from {server}: a PV's source is immutable; create a "
                             f"new PV/PVC with nfs.server {t.storage_ip} and point the workload at it")
    return Plan(STEP, tuple(prerequisites(spec, facts, changes) + changes), tuple(noops), tuple(notes))


def prerequisites(spec: LabSpec, facts: TnPlexFacts, changes: list[Change]) -> list[Change]:
    """What earlier notebooks must provide, as ``blocked`` changes naming the notebook to run first:
    the bridges of a VM/CT to create (10-network), their disk/rootfs storages, and — to repoint
    apps' NFS mounts — a Kubernetes API (30-talos). Only from facts that were observed
    (``extra["bridges"]``, ``extra["storage_content"]``, ``extra["kube_error"]``)."""
    out: list[Change] = []
    design = design_of(spec)
    creating = [c for c in changes if c.op == "create" and c.kind in ("vm", "ct")]
    bridges = facts.extra.get("bridges")
    if creating and bridges is not None:
        guests = [design.vm(spec.truenas.name)] if any(c.kind == "vm" for c in creating) else []
        guests += list(design.containers[:1]) if any(c.kind == "ct" for c in creating) else []
        for br in sorted({n.bridge for g in guests for n in g.nics}):
            if not bridges.get(br):
                msg = (f"bridge {br} does not exist on node {facts.extra.get('node', '')}" if br not in bridges
                       else f"bridge {br} is staged but not applied")
                out.append(Change("action", "prerequisite", br, "bridge", reason=f"blocked: {msg} — run 10-network first",
                                  data=Blocked(msg, run_first="10-network")))
    content = facts.extra.get("storage_content")
    if creating and content is not None:
        need: dict[str, str] = {}
        if any(c.kind == "vm" for c in creating):
            for d in design.vm(spec.truenas.name).disks:
                need.setdefault(d.storage, "images")
        if any(c.kind == "ct" for c in creating):
            need.setdefault(design.containers[0].rootfs_storage, "rootdir")
        for sid, kind in sorted(need.items()):
            have = content.get(sid)
            if have is not None and kind in [x.strip() for x in have.split(",")]:
                continue
            msg = (f"storage {sid!r} does not exist" if have is None
                   else f"storage {sid!r} does not allow content {kind!r} (it has {have or 'none'})")
            out.append(Change("action", "prerequisite", sid, "storage", reason=f"blocked: {msg}",
                              data=Blocked(msg, f"create storage {sid!r} with content {kind!r}, or change the lab YAML")))
    if spec.truenas is not None and facts.extra.get("kube_error"):
        msg = f"no Kubernetes API to repoint the apps' NFS mounts ({facts.extra['kube_error']})"
        out.append(Change("action", "prerequisite", "kubernetes", "api", reason=f"blocked: {msg} — run 30-talos first",
                          data=Blocked(msg, run_first="30-talos")))
    return out


# ---------------------------------------------------------------------------------------------
# Observe / apply / checks


def _lxc(pve: Any, node: str) -> dict[int, dict[str, Any]]:
    out = {}
    for item in call(f"list containers on {node}", pve.nodes(node).lxc.get):
        vmid = int(item["vmid"])
        cfg = call(f"read CT {vmid}", pve.nodes(node).lxc(vmid).config.get)
        out[vmid] = {"status": str(item.get("status", "")), "config": {k: str(v) for k, v in cfg.items()}}
    return out


def observe(target: Any, spec: LabSpec, options: StepOptions) -> TnPlexFacts:
    pve, node = target.pve, target.node
    vms = {vmid: {"status": s.status, "config": s.config} for vmid, s in list_vms(pve, node).items()}
    listed = call("list storages", pve.storage.get)
    storages = tuple(s["storage"] for s in listed)
    storage_config = {s["storage"]: s for s in listed}
    shares: tuple[dict, ...] = ()
    svc = None
    err = ""
    t = spec.truenas
    if truenas_enabled(spec) and t.vmid in vms and vms[t.vmid]["status"] == "running":
        try:
            shares = tuple(target.truenas.nfs_shares())
            svc = target.truenas.service("nfs")
        except Exception as e:  # noqa: BLE001 - reported as a note and a failed check
            err = str(e)
    workloads: tuple[dict, ...] = ()
    pvs: tuple[dict, ...] = ()
    try:
        api = target.kube()
        workloads = tuple(w for k in ("Deployment", "StatefulSet") for w in klist(api, "apps/v1", k))
        pvs = tuple(klist(api, "v1", "PersistentVolume"))
    except Exception as e:  # noqa: BLE001 - no cluster yet: a blocked prerequisite (run 30-talos first)
        err = err or f"kubernetes: {e}"
        kube_error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    else:
        kube_error = ""
    root = getattr(target, "pve_root", None)
    ifaces = call(f"read network of {node}", pve.nodes(node).network.get)
    extra = {"root_session": bool(root and root() is not None), "node": node, "kube_error": kube_error,
             "bridges": {str(i["iface"]): bool(i.get("active")) for i in ifaces if i.get("type") == "bridge"},
             "storage_content": {sid: str(c.get("content") or "") for sid, c in storage_config.items()}}
    if spec.plex and spec.plex.enabled and plex_image(options):
        volid = oci_volid(plex_image(options))
        try:
            content = call("list templates on local", pve.nodes(node).storage(IMAGE_STORAGE).content.get, content="vztmpl")
        except PveCallError:
            content = []
        extra["oci_present"] = any(c.get("volid") == volid for c in content)
    elif spec.plex and spec.plex.enabled:
        extra.update(_template_facts(pve, node, template_volid(options)))
    return TnPlexFacts(vms, _lxc(pve, node), storages, err, shares, svc, workloads, pvs, extra, storage_config)


def template_volid(options: StepOptions) -> str:
    return str(options.extra.get("plex_template") or DEFAULT_TEMPLATE)


def _template_facts(pve: Any, node: str, volid: str) -> dict[str, Any]:
    """Is the LXC template on its storage, and can Proxmox download it (its appliance index)?
    ``{"template_present": bool, "template_appliance": bool}`` (read-only calls)."""
    storage, _, _rest = volid.partition(":")
    name = volid.rsplit("/", 1)[-1]
    try:
        content = call(f"list templates on {storage}", pve.nodes(node).storage(storage).content.get, content="vztmpl")
    except PveCallError:
        content = []
    present = any(c.get("volid") == volid for c in content)
    try:
        index = call("read the appliance index", pve.nodes(node).aplinfo.get)
    except PveCallError:
        index = []
    return {"template_present": present, "template_appliance": any(a.get("template") == name for a in index)}


def _pve(what: str, fn: Any, **kw: Any) -> Any:
    try:
        return call(what, fn, **kw)
    except PveCallError as e:
        raise StepError(STEP, str(e)) from e


def _wait(pve: Any, node: str, upid: Any, timeout: float) -> None:
    if isinstance(upid, str) and upid.startswith("UPID:"):
        try:
            wait_task(pve, node, upid, timeout=timeout)
        except (TaskFailedError, TaskTimeoutError) as e:
            raise StepError(STEP, str(e)) from e


# ---------------------------------------------------------------------------------------------
# Executors of this step's payloads


#: the order apply carries the changes out in (a stable sort: the plan's order within a rank).
#: TrueNAS first (VM, then its shares), then the host's NFS storage, then Plex, whose bind mount
#: needs that storage mounted when it starts.
APPLY_ORDER: dict[type, int] = {TrueNasCreateVM: 0, TrueNasStartVM: 1, TrueNasShare: 2, TrueNasService: 2,
                                PveStorage: 3, PlexTemplateDownload: 4, PlexImagePull: 5, PlexCreateCT: 6,
                                PlexCTConfig: 6, PlexStartCT: 7, NfsMountServer: 8}


def in_apply_order(changes: tuple[Change, ...] | list[Change]) -> list[Change]:
    """``changes`` in the order apply carries them out (:data:`APPLY_ORDER`; another payload last)."""
    return sorted(changes, key=lambda c: APPLY_ORDER.get(type(c.data), len(APPLY_ORDER)))


def _start(c: Change, ctx: Apply, api: Any) -> None:
    pve, node = ctx.target.pve, ctx.target.node
    ctx.progress.log(f"start {c.kind.upper()} {c.name}")
    _wait(pve, node, _pve(f"start {c.name}", api(c.data.vmid).status.start.post), ctx.timeout)


def _create(c: Change, ctx: Apply, what: str, collection: str) -> None:
    """Create the guest ``c.data.params`` describes (``collection``: ``qemu`` or ``lxc``) and wait for its task."""
    pve, node = ctx.target.pve, ctx.target.node
    ctx.progress.log(f"create {what} {c.name}")
    post = getattr(pve.nodes(node), collection).post
    _wait(pve, node, _pve(f"create {what} {c.name}", post, **c.data.params), ctx.timeout)


@executes(TrueNasCreateVM)
def _create_vm(c: Change, ctx: Apply) -> None:
    _create(c, ctx, "VM", "qemu")


@executes(TrueNasStartVM)
def _start_vm(c: Change, ctx: Apply) -> None:
    _start(c, ctx, ctx.target.pve.nodes(ctx.target.node).qemu)


def _nas_answers(ctx: Apply) -> None:
    """A NAS that was just started answers once it has booted."""
    try:
        wait_for(ctx.target.truenas.nfs_shares, lambda _: True, ctx.timeout, "the TrueNAS API answers",
                 ctx.progress.task("TrueNAS API"))
    except WaitTimeoutError as e:
        raise StepError(STEP, str(e), resume="check the TrueNAS VM's console (its address comes from DHCP "
                        "or the console), then re-run 60-truenas-plex") from e


@executes(TrueNasShare)
def _nfs_share(c: Change, ctx: Apply) -> None:
    d: TrueNasShare = c.data
    if d.wait_api:
        _nas_answers(ctx)
    ctx.progress.log(f"NFS share {d.path} -> {', '.join(d.networks)}")
    ctx.target.truenas.ensure_nfs_share(d.path, list(d.networks))


@executes(TrueNasService)
def _nas_service(c: Change, ctx: Apply) -> None:
    if c.data.wait_api:
        _nas_answers(ctx)
    ctx.target.truenas.enable_service(c.data.service)


@executes(PveStorage)
def _pve_storage(c: Change, ctx: Apply) -> None:
    ctx.progress.log(f"add Proxmox storage {c.name}: {c.new}")
    _pve(f"add storage {c.name}", ctx.target.pve.storage.post, **c.data.params)


@executes(PlexTemplateDownload)
def _template_download(c: Change, ctx: Apply) -> None:
    # POST /nodes/{node}/aplinfo — what `pveam download STORAGE TEMPLATE` calls
    # (pve-manager PVE/API2/Nodes.pm apl_download: Datastore.AllocateTemplate on the storage)
    d: PlexTemplateDownload = c.data
    pve, node = ctx.target.pve, ctx.target.node
    ctx.progress.log(f"download LXC template {d.template} to {d.storage}")
    _wait(pve, node, _pve(f"download template {d.template}", pve.nodes(node).aplinfo.post,
                          storage=d.storage, template=d.template), ctx.timeout)


@executes(PlexImagePull)
def _image_pull(c: Change, ctx: Apply) -> None:
    # POST /nodes/{node}/storage/{storage}/oci-registry-pull (PVE 9.1 API schema: reference,
    # filename; Datastore.AllocateTemplate on the storage, Sys.AccessNetwork on the node)
    d: PlexImagePull = c.data
    pve, node = ctx.target.pve, ctx.target.node
    ctx.progress.log(f"pull OCI image {d.reference} to {d.storage}")
    pull = getattr(pve.nodes(node).storage(d.storage), "oci-registry-pull")
    _wait(pve, node, _pve(f"pull {d.reference}", pull.post, reference=d.reference, filename=d.filename), ctx.timeout)


@executes(PlexCreateCT)
def _create_ct(c: Change, ctx: Apply) -> None:
    _create(c, ctx, "CT", "lxc")


@executes(PlexCTConfig)
def _ct_config(c: Change, ctx: Apply) -> None:
    d: PlexCTConfig = c.data
    node = ctx.target.node
    if not d.root:
        _pve(f"update CT {c.name}", ctx.target.pve.nodes(node).lxc(d.vmid).config.put, **d.values)
        return
    ctx.progress.log(f"as root@pam: set {', '.join(sorted(d.values))} on CT {c.name}")
    root = ctx.target.pve_root()
    _pve(f"update CT {c.name} (root@pam)", root.nodes(node).lxc(d.vmid).config.put, **d.values)


@executes(PlexStartCT)
def _start_ct(c: Change, ctx: Apply) -> None:
    _start(c, ctx, ctx.target.pve.nodes(ctx.target.node).lxc)


@executes(NfsMountServer)
def _nfs_mount(c: Change, ctx: Apply) -> None:
    d: NfsMountServer = c.data
    api = ctx.target.kube()
    w = klist(api, "apps/v1", d.kind, d.namespace)
    obj = next(o for o in w if o["metadata"]["name"] == d.name)
    vols = obj["spec"]["template"]["spec"]["volumes"]
    for v in vols:
        if v["name"] == d.volume:
            v["nfs"]["server"] = d.server
    kpatch(api, "apps/v1", d.kind, d.name, {"spec": {"template": {"spec": {"volumes": vols}}}}, d.namespace)



@register(STEP)
class TrueNasPlexStep:
    title = "TrueNAS (NFS on the storage network) and the Plex container"
    options = {"truenas_iso": (str, ""), "plex_template": (str, DEFAULT_TEMPLATE),
               "plex_nfs_storage": (str, DEFAULT_NFS_STORAGE), "plex_image": (str, DEFAULT_PLEX_IMAGE),
               "plex_config_nfs": (str, ""), "plex_config_storage": (str, DEFAULT_CONFIG_STORAGE)}

    def observe(self, target: Any, spec: LabSpec, options: StepOptions) -> TnPlexFacts:
        return observe(target, spec, options)

    def plan(self, spec: LabSpec, observed: TnPlexFacts, options: StepOptions) -> Plan:
        return plan_truenas_plex(spec, observed, options)

    def apply(self, target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
        blocked = [c.data for c in plan.changes if isinstance(c.data, Blocked)]
        if blocked:
            raise StepError(STEP, "refused: " + "; ".join(d.message + (f" (fix: {d.fix})" if d.fix else "") for d in blocked),
                            resume="change the lab spec (or leave truenas.enabled: false), then re-run 60-truenas-plex")
        execute(target, in_apply_order(plan.changes), progress, options.wait_timeout_s, step=STEP)

    def checks(self, target: Any, spec: LabSpec, options: StepOptions) -> list[Check]:
        return checks_from(spec, observe(target, spec, options), options)


def checks_from(spec: LabSpec, facts: TnPlexFacts, options: StepOptions) -> list[Check]:
    out: list[Check] = []
    t = spec.truenas
    if truenas_enabled(spec):
        vm = facts.vms.get(t.vmid)
        cfg = (vm or {}).get("config") or {}
        nics = [k for k in ("net0", "net1") if k in cfg]
        out.append(Check("TrueNAS VM", t.name, "running with net0 (vmbr0) and net1 (vmbr1)",
                         "absent" if vm is None else f"{vm['status']}, {', '.join(nics) or 'no NICs'}",
                         bool(vm) and vm["status"] == "running" and len(nics) == 2, "re-run 60-truenas-plex with apply"))
        for share in t.nfs_shares:
            cur = next((s for s in facts.shares if s.get("path") == share.path), None)
            out.append(Check("NFS export on the storage network", share.path, ", ".join(share.networks),
                             "absent" if cur is None else ", ".join(cur.get("networks") or []) or "everyone",
                             cur is not None and sorted(cur.get("networks") or []) == sorted(share.networks),
                             facts.nas_error or "re-run 60-truenas-plex with apply"))
        svc = facts.nfs_service or {}
        out.append(Check("NFS service", t.name, "enabled, RUNNING", f"enable={svc.get('enable')}, {svc.get('state', 'unknown')}",
                         bool(svc.get("enable")) and svc.get("state") == "RUNNING", facts.nas_error or "re-run with apply"))
    p = spec.plex
    if p and p.enabled:
        ct = facts.cts.get(p.vmid)
        cfg = (ct or {}).get("config") or {}
        out.append(Check("Plex container", p.hostname, "running, unprivileged",
                         "absent" if ct is None else f"{ct['status']}, unprivileged={cfg.get('unprivileged', '0')}",
                         bool(ct) and ct["status"] == "running" and cfg.get("unprivileged") == "1", "re-run with apply"))
        if p.gpu_passthrough and spec.host.gpu:
            want = plex_config(spec, options)["dev0"]
            out.append(Check("transcoding device passed to the container", p.hostname, want,
                             cfg.get("dev0", "no dev0") + " (from the CT config; verify inside: pct exec "
                             f"{p.vmid} -- ls -l {spec.host.gpu.render_node})", same_value(cfg.get("dev0"), want),
                             f"as root on the host: {pct_set(p.vmid, {'dev0': want})} (Proxmox VE 8.1+; amdgpu loaded)"))
        for i, m in enumerate(p.nfs_mounts if truenas_enabled(spec) else []):
            want = plex_config(spec, options).get(f"mp{i}", "")
            out.append(Check("NFS media bind mount", f"{p.hostname}:{m.mountpoint}", want, cfg.get(f"mp{i}", "absent"),
                             same_value(cfg.get(f"mp{i}"), want), f"as root on the host: {pct_set(p.vmid, {f'mp{i}': want})}"))
        storage = str(options.extra.get("plex_nfs_storage") or DEFAULT_NFS_STORAGE)
        if p.nfs_mounts and truenas_enabled(spec):
            out.append(Check("host NFS storage for Plex media", storage, f"Proxmox NFS storage {storage} from "
                             f"{t.storage_ip if t else 'TrueNAS'}", "present" if storage in facts.storages else "absent",
                             storage in facts.storages, "re-run 60-truenas-plex with apply (or Datacenter > Storage > "
                             f"Add > NFS: ID {storage}, server {t.storage_ip if t else '<TrueNAS>'}, "
                             f"export {p.nfs_mounts[0].share})"))
    if t is not None:
        wrong = [f"{w['metadata'].get('namespace')}/{w['metadata']['name']}" for w in facts.workloads
                 for v in (((w.get("spec") or {}).get("template") or {}).get("spec") or {}).get("volumes") or []
                 if _nfs_server_of(v) and _nfs_server_of(v) != t.storage_ip]
        wrong += [f"PV {pv['metadata']['name']}" for pv in facts.pvs
                  if ((pv.get("spec") or {}).get("nfs") or {}).get("server") not in (None, t.storage_ip)]
        out.append(Check("NFS mounts use TrueNAS's storage address", "kubernetes", t.storage_ip,
                         ", ".join(wrong) or "all NFS mounts use it", not wrong, "re-run with apply; PVs by hand (see the plan notes)"))
    return out
