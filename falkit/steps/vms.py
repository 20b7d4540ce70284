"""Step 20-vms: the control plane and the workers exactly as ``falkit.model.design.derive_design`` says.

Desired VM (seed "VM Resource Allocation"): cores, memory in MiB (GB x 1024), ``scsi0`` OS disk on
local-lvm, ``scsi1`` data disk on helford (``helford:300`` allocates 300 GiB; see falkit.clients.proxmox),
``net0=virtio=MAC,bridge=vmbr0`` and (workers) ``net1=virtio=MAC,bridge=vmbr1`` with the seed's MAC
scheme, ``onboot=1``, ``agent=1``, ``scsihw=virtio-scsi-single``, ``ostype=l26``, ``cpu=host``,
``balloon=0`` (hugepages are pinned guest memory: ballooning must not take it back) and, at create
time only, the Talos ISO as CD-ROM (``ide2=local:iso/talos-<version>-metal-amd64.iso,media=cdrom``).

**The ISO.** A fresh VM needs it to boot Talos' maintenance mode. When it is not on the ``local``
storage the plan downloads it first with ``POST /nodes/{node}/storage/local/download-url``
(content ``iso``; parameters checked against PVE's API schema) from the Talos Image Factory
(``https://factory.talos.dev/image/<schematic>/v<version>/metal-amd64.iso``). The default schematic
is the factory's documented "vanilla" one; ``agent=1`` only helps with a schematic that carries
``siderolabs/qemu-guest-agent`` — set ``extra["talos_schematic"]`` to yours. Existing VMs run Talos
from disk, so their CD-ROM is not compared.

**Plan** (pure, from :class:`VmFacts`):

- a missing VM -> ``create`` (apply posts every create, then waits for all UPIDs in parallel, one
  progress bar per task);
- drift in cores / memory / cpu / balloon / onboot / agent / scsihw / ostype / name -> ``update``
  (non-disruptive: PVE keeps it pending on a running VM until its next start);
- net0/net1 MAC or bridge changed -> ``update`` **disruptive** (the guest sees a new NIC; DHCP
  reservations follow the MAC); a missing NIC -> ``update`` (hot-plugged / pending);
- a disk larger than planned, or on another storage -> ``update`` **destructive** (PVE cannot shrink;
  apply refuses it and says what to do by hand); a smaller disk -> ``resize`` action
  (``PUT …/resize``); a disk value that names no volume (``helford:300`` left in a config) ->
  blocked, with the ``qm set --delete`` that clears it;
- a missing disk of an existing VM: PVE lists a detached disk as ``unusedN: <volid>``; such a
  volume of the VM on the planned storage is **re-attached** (``scsi1=<volid>,…``; a pending
  detach is cancelled the same way), grown if smaller; a larger one is blocked (no shrink). With none, the change is **blocked**: a new
  disk would be empty where data was — re-attach the right volume by hand, or set
  ``new_empty_disk=True`` to allocate one (volumes of the VM that no config line names are listed,
  with ``qm disk rescan``). PVE hot-plugs a scsi/virtio disk into a running VM when its running
  config's ``hotplug`` has ``disk`` (the default); otherwise the disk change is pending and the plan
  has the reboot. If PVE leaves a change pending that the plan expected in effect (``hotplug``
  changed between plan and apply), apply fails at once naming it — it never waits for a reboot it
  did not plan;
- a running VM whose next-start config differs from what runs (pending changes) -> ``reboot``
  (disruptive). The reboot is always in the plan — a NIC or memory change is not in effect until
  then — so the plan is the same whatever the options; without ``allow_disruptive`` the runbook
  refuses it (:func:`falkit.runbook.refuse`), in JupyterLab and headless alike;
- a stopped VM -> ``start``;
- a VM named ``talos-*`` or listed under ``previous.nodes`` that the spec no longer has: a note,
  or a destructive ``delete`` when ``allow_destructive``. Other VMs on the node are never touched.

**Prerequisites** (from earlier notebooks) are planned as ``blocked`` changes that no allow_* option allows,
each naming what to do first: the bridges the VMs' NICs use must exist and be applied on the node
(10-network creates ``vmbr1``; a VM started on a missing bridge fails with QEMU's "bridge 'vmbr1'
does not exist"); the storages of disks to allocate must exist with content ``images``; the ISO
storage must exist with content ``iso`` when the ISO is downloaded or a VM is created. Observed with
``GET /nodes/{node}/network`` and ``GET /storage`` (PVE API viewer).

Every change carries a typed payload (this module's :class:`DownloadTalosIso`, :class:`CreateClusterVm`,
:class:`SetClusterVmConfig`, :class:`ResizeClusterDisk`, :class:`ClusterVmPower`, :class:`DestroyClusterVm`,
:class:`RefusedClusterDisk`;
a prerequisite or a lost disk: :class:`~falkit.plan.payloads.Blocked`): everything apply needs — the
create parameters, the config keys, whether the plan restarts the VM — is decided in plan. Apply
refuses a blocked or refused change, then executes the changes in its phases (:data:`APPLY_ORDER`:
downloads, creates, config updates, resizes, reboots, starts, deletes; each phase's tasks waited for
together). It reads no spec.

Apply waits for every task with ``options.wait_timeout_s`` and raises StepError naming the VM and
PVE's words (``TASK ERROR: …``, ``VM is locked (backup)``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from ..clients.kube import WaitReporter
from ..clients.proxmox import (
    PveCallError,
    TaskFailedError,
    TaskTimeoutError,
    VmState,
    call,
    list_vms,
    parse_drive,
    parse_net,
    task_label,
    task_log,
    vm_config,
)
from ..model.design import VmDesign, design_of
from ..model.errors import StepError
from ..model.spec import LabSpec
from ..plan.diff import Change, Noop, Plan
from ..plan.payloads import Blocked, payload
from .base import Check, Progress, StepOptions, register
from .executors import Apply, execute, executes, executes_together

STEP = "vms"

ISO_STORAGE = "local"
VANILLA_SCHEMATIC = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"  # talos.dev Image Factory docs
# Keys PVE applies at once on a running VM (everything else waits, pending, for the next start).
HOT_KEYS = ("name", "description", "onboot", "tags", "protection", "startup")
SIMPLE_KEYS = ("name", "cores", "memory", "cpu", "balloon", "onboot", "agent", "scsihw", "ostype")
NEW_DISK_OPTIONS = "discard=on,iothread=1,ssd=1"
# ``storage:size`` — what PVE allocates a new disk from; never a volume in a written config.
NEW_VOLUME = re.compile(r"[^/:\s]+:\d+(?:\.\d+)?")


@dataclass(frozen=True)
class VmFacts:
    """Observed: the node's VMs (vmid -> VmState) and the ISO files on the ISO storage."""

    node: str
    vms: dict[int, VmState]
    isos: tuple[str, ...] = ()
    cluster_names: tuple[str, ...] = field(default=())
    bridges: dict[str, bool] | None = None  # iface -> applied (active); None: not observed
    storages: dict[str, str] | None = None  # storage id -> content ("images,iso,..."); None: not observed
    # The image volumes on the storages the VMs' disks are planned on: volid -> (owner vmid, size in
    # GiB); None: not observed (GET /nodes/{node}/storage/{storage}/content?content=images).
    volumes: dict[str, tuple[int | None, float]] | None = None


# ---------------------------------------------------------------------------------------------
# Payloads of this step (the shared ones: falkit.plan.payloads)


@payload
@dataclass(frozen=True)
class DownloadTalosIso:
    """``POST /nodes/{node}/storage/{storage}/download-url`` of the ISO ``filename`` from ``url``."""

    storage: str
    filename: str
    url: str


@payload
@dataclass(frozen=True)
class CreateClusterVm:
    """``POST /nodes/{node}/qemu`` with ``params`` (the VM's whole planned config, its VMID and the ISO)."""

    vmid: int
    params: dict


@payload
@dataclass(frozen=True)
class SetClusterVmConfig:
    """``PUT /nodes/{node}/qemu/{vmid}/config`` of ``settings``; ``pending``: PVE keeps them pending until
    the next start; ``restarted``: the plan reboots or starts the VM (else a key expected in effect
    that PVE left pending is an error); ``reattach``: the ``unusedN`` key of a re-attached volume."""

    vmid: int
    settings: dict
    pending: bool
    restarted: bool = False
    reattach: str = ""


@payload
@dataclass(frozen=True)
class ResizeClusterDisk:
    """``PUT /nodes/{node}/qemu/{vmid}/resize`` of ``disk`` to ``size``."""

    vmid: int
    disk: str
    size: str


@payload
@dataclass(frozen=True)
class ClusterVmPower:
    """``POST /nodes/{node}/qemu/{vmid}/status/{action}`` (``reboot`` or ``start``)."""

    vmid: int
    action: str


@payload
@dataclass(frozen=True)
class DestroyClusterVm:
    """Stop VM ``vmid`` (when ``running``), then ``DELETE /nodes/{node}/qemu/{vmid}`` with ``purge``."""

    vmid: int
    running: bool


@payload
@dataclass(frozen=True)
class RefusedClusterDisk:
    """A disk change PVE cannot make (``refuse``: ``storage`` — on another storage; ``shrink``): apply refuses it."""

    vmid: int
    refuse: str


def iso_name(spec: LabSpec) -> str:
    return f"talos-{spec.versions.talos}-metal-amd64.iso"


def iso_url(spec: LabSpec, schematic: str = VANILLA_SCHEMATIC) -> str:
    return f"https://factory.talos.dev/image/{schematic}/v{spec.versions.talos}/metal-amd64.iso"


def cluster_vms(spec: LabSpec) -> list[VmDesign]:
    """The VMs this step owns: control plane and workers (TrueNAS is a later step's)."""
    return [v for v in design_of(spec).vms if v.role in ("control-plane", "worker")]


def desired_config(spec: LabSpec, vm: VmDesign) -> dict[str, str]:
    """The config keys this step manages, as PVE writes them (strings)."""
    cfg = {"name": vm.name, "cores": str(vm.cores), "memory": str(vm.memory_gb * 1024), "cpu": "host",
           "balloon": "0", "onboot": "1", "agent": "1", "scsihw": "virtio-scsi-single", "ostype": "l26"}
    for d in vm.disks:
        cfg[d.slot] = f"{d.storage}:{d.size_gb},{NEW_DISK_OPTIONS}"
    for n in vm.nics:
        cfg[n.slot] = f"virtio={n.mac},bridge={n.bridge}"
    return cfg


def create_params(spec: LabSpec, vm: VmDesign) -> dict[str, Any]:
    p: dict[str, Any] = {"vmid": vm.vmid, **desired_config(spec, vm)}
    p["ide2"] = f"{ISO_STORAGE}:iso/{iso_name(spec)},media=cdrom"
    p["sockets"] = 1
    return p


def _same(key: str, have: Any, want: str) -> bool:
    return str(have) == want if have is not None else False


def prerequisites(spec: LabSpec, facts: VmFacts, to_create: list[VmDesign], changes: list[Change]) -> list[Change]:
    """Blocked changes for what earlier notebooks (or the host) must provide first (module docstring)."""
    out: list[Change] = []
    if not changes and not to_create:
        return out
    nets = {spec.networks.management.bridge: "management", spec.networks.storage.bridge: "storage"}
    if facts.bridges is not None:
        used = sorted({n.bridge for v in cluster_vms(spec) for n in v.nics})
        for br in used:
            state = facts.bridges.get(br)
            if state is None:
                msg = f"bridge {br} ({nets.get(br, 'a')} network) does not exist on node {facts.node}: a VM NIC on it cannot start"
            elif not state:
                msg = f"bridge {br} is staged but not applied on node {facts.node} (no network reload yet)"
            else:
                continue
            out.append(Change("action", "prerequisite", br, "bridge", reason=f"blocked: {msg} — run 10-network first",
                              data=Blocked(msg, run_first="10-network")))
    if facts.storages is not None:
        need: dict[str, str] = {}
        for vm in to_create:
            for d in vm.disks:
                need.setdefault(d.storage, "images")
        for c in changes:
            if c.kind == "vm-config" and c.field.startswith("scsi") and c.old is None:
                need.setdefault(str(c.new).split(":", 1)[0], "images")
        if to_create or any(c.kind == "iso" for c in changes):
            need.setdefault(ISO_STORAGE, "iso")
        for sid, content in sorted(need.items()):
            have = facts.storages.get(sid)
            if have is None:
                msg = f"storage {sid!r} does not exist (needed for {'the Talos ISO' if content == 'iso' else 'VM disks'})"
            elif content not in [x.strip() for x in have.split(",")]:
                msg = f"storage {sid!r} does not allow content {content!r} (it has {have or 'none'})"
            else:
                continue
            fix = (f"add {content!r} to the content of storage {sid!r} (Datacenter -> Storage), or create it"
                   if content == "iso" else f"create storage {sid!r} with content 'images' on node {facts.node}, "
                   "or change the disks' storage in the lab YAML")
            out.append(Change("action", "prerequisite", sid, "storage", reason=f"blocked: {msg}",
                              data=Blocked(msg, fix=fix)))
    return out


def plan_vms(spec: LabSpec, facts: VmFacts, options: StepOptions) -> Plan:
    """Pure: facts in, changes out (see the module docstring)."""
    changes: list[Change] = []
    noops: list[Noop] = []
    notes: list[str] = []
    wanted = cluster_vms(spec)
    to_create = [v for v in wanted if v.vmid not in facts.vms]
    if to_create and iso_name(spec) not in facts.isos:
        schematic = str(options.extra.get("talos_schematic") or VANILLA_SCHEMATIC)
        changes.append(Change("action", "iso", f"{ISO_STORAGE}:iso/{iso_name(spec)}", "download",
                              reason=f"Talos {spec.versions.talos} ISO for the new VMs (download-url)",
                              data=DownloadTalosIso(ISO_STORAGE, iso_name(spec), iso_url(spec, schematic))))
    for vm in to_create:
        summary = f"{vm.cores} vCPU, {vm.memory_gb} GiB, " + ", ".join(f"{d.slot} {d.storage}:{d.size_gb}G" for d in vm.disks) \
            + ", " + ", ".join(f"{n.slot} {n.mac}@{n.bridge}" for n in vm.nics)
        changes.append(Change("create", "vm", vm.name, "", None, f"VMID {vm.vmid}: {summary}",
                              reason=vm.role, data=CreateClusterVm(vm.vmid, create_params(spec, vm))))
        changes.append(Change("action", "vm", vm.name, "start", reason="boot Talos maintenance mode from the ISO",
                              data=ClusterVmPower(vm.vmid, "start")))
    for vm in wanted:
        state = facts.vms.get(vm.vmid)
        if state is None:
            continue
        vm_changes = _drift(spec, vm, state, facts.volumes, bool(options.extra.get("new_empty_disk")))
        pending_after = bool(state.pending) or any(_pending(c) for c in vm_changes)
        power: Change | None = None
        if state.status == "running" and pending_after:
            keys = sorted(set(state.pending) | {c.field for c in vm_changes if _pending(c)})
            power = Change("action", "vm", vm.name, "reboot", disruptive=True,
                           reason="apply pending changes: " + ", ".join(keys), data=ClusterVmPower(vm.vmid, "reboot"))
        elif state.status != "running":
            power = Change("action", "vm", vm.name, "start", reason=f"VM is {state.status}",
                           data=ClusterVmPower(vm.vmid, "start"))
        if power is not None:  # the config updates know the plan restarts the VM
            vm_changes = [replace(c, data=replace(c.data, restarted=True))
                          if isinstance(c.data, SetClusterVmConfig) else c for c in vm_changes]
        changes += vm_changes
        if power is not None:
            changes.append(power)
        if not vm_changes and not (state.status == "running" and pending_after) and state.status == "running":
            noops.append(Noop("vm", vm.name, f"VMID {vm.vmid} running as planned"))
    known = {v.vmid for v in wanted}
    for vmid, state in sorted(facts.vms.items()):
        if vmid in known or not (state.name.startswith("talos-") or state.name in facts.cluster_names):
            continue
        if options.allow_destructive:
            changes.append(Change("delete", "vm", state.name, "", f"VMID {vmid}", None, destructive=True,
                                  reason="not in the spec: stop and destroy (disks deleted)",
                                  data=DestroyClusterVm(vmid, state.status == "running")))
        else:
            notes.append(f"VM {vmid} ({state.name}) is not in the spec; kept (allow_destructive=True deletes it)")
    blocked = prerequisites(spec, facts, to_create, changes)
    return Plan("vms", tuple(blocked + changes), tuple(noops), tuple(notes))


def _pending(c: Change) -> bool:
    return isinstance(c.data, SetClusterVmConfig) and c.data.pending


def hot_disk(config: dict[str, Any], slot: str) -> bool:
    """Whether PVE hot-plugs a disk into ``slot`` of a running VM with this config: ``disk`` in
    ``hotplug`` (default ``network,disk,usb``; ``0`` none, ``1`` the default — qemu-server
    src/PVE/QemuServer.pm confdesc ``hotplug`` and parse_hotplug_features) and a scsi/virtio slot
    (vmconfig_hotplug_pending "skip"s efidisk/ide/sata/tpmstate). qemu-server commit e6352be6."""
    value = str(config.get("hotplug", "1"))
    features = set() if value == "0" else {f.strip() for f in ("network,disk,usb" if value == "1" else value).split(",")}
    return "disk" in features and re.fullmatch(r"(scsi|virtio)\d+", slot) is not None


def _owned(volume: str, vmid: int) -> bool:
    return re.search(rf"(?:^|/)vm-{vmid}-disk-\d+", volume.split(":", 1)[-1]) is not None


def _missing_disk(vm: VmDesign, disk: Any, state: VmState, want: str,
                  volumes: dict[str, tuple[int | None, float]] | None, new_empty_disk: bool, pending: bool) -> list[Change]:
    """The changes for a planned disk the VM's config does not have.

    A disk detached from the VM is listed by PVE as ``unusedN: <volid>`` (qemu-server
    vmconfig_register_unused_drive): when such a volume of this VM is on the planned storage, it
    is re-attached (``PUT …/config scsi1=<volid>,…``) — never replaced by a new, empty disk. With
    no detached volume, a new empty disk is allocated only with ``new_empty_disk=True``; without it
    the change is blocked (the data may still exist: a volume of this VM on the storage that no
    config line names is listed, with ``qm disk rescan``). A detach still pending (no disk
    hot-plug: the disk stays in the running config) is cancelled by setting the same volume again
    (update_vm_api remove_from_pending_delete; cleanup_pending), which needs no restart.
    """
    have = state.effective()
    running_vol = state.config.get(disk.slot)
    if running_vol is not None and disk.slot in state.pending and state.pending[disk.slot] is None:
        volid = parse_drive(str(running_vol)).volume
        return [Change("update", "vm-config", vm.name, disk.slot, None, volid,
                       reason=f"cancel the pending detach of the {disk.role} disk {volid}",
                       data=SetClusterVmConfig(vm.vmid, {disk.slot: str(running_vol)}, pending=False))]
    attached = {parse_drive(str(v)).volume for k, v in have.items() if re.fullmatch(r"(scsi|virtio|sata|ide)\d+", k)}
    unused = [(k, str(have[k])) for k in sorted(have, key=lambda k: int(k[6:]) if k[6:].isdigit() else 0)
              if re.fullmatch(r"unused\d+", k)]
    cands = [(k, v) for k, v in unused if v.split(":", 1)[0] == disk.storage and _owned(v, vm.vmid) and v not in attached]
    if len(cands) > 1 and volumes:  # several: the one of the planned size
        sized = [(k, v) for k, v in cands if v in volumes and volumes[v][1] == disk.size_gb]
        cands = sized if len(sized) == 1 else cands
    if len(cands) == 1 and volumes and cands[0][1] in volumes and volumes[cands[0][1]][1] > disk.size_gb:
        key, volid = cands[0]
        msg = (f"{vm.name} has no {disk.slot}; its detached volume {volid} ({key}) is "
               f"{volumes[volid][1]:g}G, larger than the planned {disk.size_gb}G (PVE cannot shrink a disk)")
        return [Change("update", "vm-disk", vm.name, disk.slot, None, volid, reason=f"blocked: {msg}",
                       data=Blocked(msg, fix=f"re-attach it by hand (qm set {vm.vmid} --{disk.slot} {volid}) and plan "
                                             "that size in the lab YAML, then re-run 20-vms"))]
    if len(cands) == 1:
        key, volid = cands[0]
        options = want.split(",", 1)[1] if "," in want else ""
        out = [Change("update", "vm-config", vm.name, disk.slot, None, volid,
                      reason=f"re-attach the detached {disk.role} disk ({key}: {volid})",
                      data=SetClusterVmConfig(vm.vmid, {disk.slot: ",".join(p for p in (volid, options) if p)},
                                       pending=pending, reattach=key))]
        size = volumes[volid][1] if volumes and volid in volumes else None
        if size is not None and size < disk.size_gb:
            out.append(Change("action", "vm-disk", vm.name, f"{disk.slot} resize", f"{size:g}G", f"{disk.size_gb}G",
                              reason="grow online (PUT …/resize)",
                              data=ResizeClusterDisk(vm.vmid, disk.slot, f"{disk.size_gb}G")))
        return out
    if len(cands) > 1:
        listed = ", ".join(f"{k}: {v}" for k, v in cands)
        msg = f"{vm.name} has no {disk.slot}, and several detached volumes of it on {disk.storage} ({listed})"
        return [Change("update", "vm-disk", vm.name, disk.slot, None, f"{disk.storage}:{disk.size_gb}G",
                       reason=f"blocked: {msg}",
                       data=Blocked(msg, fix=f"attach the right one by hand (qm set {vm.vmid} --{disk.slot} <volid>) "
                                             "and re-run 20-vms"))]
    if new_empty_disk:
        return [Change("update", "vm-config", vm.name, disk.slot, None, f"{disk.storage}:{disk.size_gb}G",
                       reason=f"allocate a new, empty {disk.role} disk (new_empty_disk=True)",
                       data=SetClusterVmConfig(vm.vmid, {disk.slot: want}, pending=pending))]
    orphans = sorted(v for v, (owner, _size) in (volumes or {}).items()
                     if owner == vm.vmid and v.split(":", 1)[0] == disk.storage and v not in attached
                     and v not in {u for _k, u in unused})
    seen = (f"; volume(s) of VM {vm.vmid} on {disk.storage} that its config does not name: {', '.join(orphans)} "
            f"(`qm disk rescan --vmid {vm.vmid}` lists them as unusedN, then re-run 20-vms)") if orphans else ""
    msg = (f"{vm.name} has no {disk.slot} ({disk.role} disk, {disk.storage}:{disk.size_gb}G) and no detached volume "
           f"of it (unusedN) on {disk.storage}: a new disk would be empty{seen}")
    return [Change("update", "vm-disk", vm.name, disk.slot, None, f"{disk.storage}:{disk.size_gb}G",
                   reason=f"blocked: {msg}",
                   data=Blocked(msg, fix="re-attach the volume that holds the data (qm set "
                                         f"{vm.vmid} --{disk.slot} <volid>), or allocate an empty disk with "
                                         "new_empty_disk=True (falkit run: --set new_empty_disk=true)"))]


def _drift(spec: LabSpec, vm: VmDesign, state: VmState, volumes: dict[str, tuple[int | None, float]] | None = None,
           new_empty_disk: bool = False) -> list[Change]:
    want = desired_config(spec, vm)
    have = state.effective()
    running = state.status == "running"
    out: list[Change] = []
    for key in SIMPLE_KEYS:
        if not _same(key, have.get(key), want[key]):
            pending = running and key not in HOT_KEYS
            out.append(Change("update", "vm-config", vm.name, key, have.get(key), want[key],
                              reason="pending until restart" if pending else "",
                              data=SetClusterVmConfig(vm.vmid, {key: want[key]}, pending)))
    for nic in vm.nics:
        cur = have.get(nic.slot)
        new = want[nic.slot]
        if cur is None:
            out.append(Change("update", "vm-config", vm.name, nic.slot, None, new, reason=f"add the {nic.network} NIC",
                              data=SetClusterVmConfig(vm.vmid, {nic.slot: new}, running)))
            continue
        c = parse_net(cur)
        if c.mac != (nic.mac or "").lower() or c.bridge != nic.bridge or (c.model or "virtio") != "virtio":
            what = []
            if c.mac != (nic.mac or "").lower():
                what.append("MAC")
            if c.bridge != nic.bridge:
                what.append("bridge")
            out.append(Change("update", "vm-config", vm.name, nic.slot, cur, new, disruptive=True,
                              reason=f"{' and '.join(what) or 'model'} change: the guest sees a new NIC; DHCP reservations must follow",
                              data=SetClusterVmConfig(vm.vmid, {nic.slot: new}, running)))
    for disk in vm.disks:
        cur = have.get(disk.slot)
        # PVE hot-plugs a scsi/virtio disk into a running VM when ``hotplug`` has ``disk`` (the
        # default); otherwise the change waits, pending, for the next start (module docstring).
        disk_pending = running and not hot_disk(state.config, disk.slot)
        if cur is None:
            out += _missing_disk(vm, disk, state, want[disk.slot], volumes, new_empty_disk, disk_pending)
            continue
        d = parse_drive(cur)
        if NEW_VOLUME.fullmatch(d.volume):
            msg = (f"{vm.name} {disk.slot} is {d.volume!r}, a size to allocate, not a volume: no {disk.role} disk is "
                   "attached (PVE allocates `storage:size` when it writes a config; this value never was)")
            out.append(Change("update", "vm-disk", vm.name, disk.slot, d.volume, f"{disk.storage}:{disk.size_gb}G",
                              reason=f"blocked: {msg}",
                              data=Blocked(msg, fix=f"remove it (qm set {vm.vmid} --delete {disk.slot}) and re-run 20-vms")))
            continue
        size = d.size_gib
        if size is None and volumes and d.volume in volumes:
            size = volumes[d.volume][1]
        size = size or 0
        if d.storage != disk.storage:
            out.append(Change("update", "vm-disk", vm.name, disk.slot, d.volume, f"{disk.storage}:{disk.size_gb}G", destructive=True,
                              reason=f"on storage {d.storage}, planned on {disk.storage}: move it by hand (qm disk move) or recreate it",
                              data=RefusedClusterDisk(vm.vmid, "storage")))
        elif size > disk.size_gb:
            out.append(Change("update", "vm-disk", vm.name, disk.slot, f"{size:g}G", f"{disk.size_gb}G", destructive=True,
                              reason="PVE cannot shrink a disk: back up, detach and recreate it by hand",
                              data=RefusedClusterDisk(vm.vmid, "shrink")))
        elif size < disk.size_gb:
            out.append(Change("action", "vm-disk", vm.name, f"{disk.slot} resize", f"{size:g}G", f"{disk.size_gb}G",
                              reason="grow online (PUT …/resize)",
                              data=ResizeClusterDisk(vm.vmid, disk.slot, f"{disk.size_gb}G")))
    return out


def observe_vms(pve: Any, node: str, spec: LabSpec) -> VmFacts:
    vms = list_vms(pve, node)
    try:
        content = call("list ISOs", pve.nodes(node).storage(ISO_STORAGE).content.get, content="iso")
        isos = tuple(str(i.get("volid", "")).split("/", 1)[-1] for i in content)
    except PveCallError:
        isos = ()
    names = tuple(n.name for n in (spec.previous.nodes if spec.previous else ()))
    ifaces = call(f"read network of {node}", pve.nodes(node).network.get)
    bridges = {str(i["iface"]): bool(i.get("active")) for i in ifaces if i.get("type") == "bridge"}
    storages = {str(s["storage"]): str(s.get("content") or "") for s in call("list storages", pve.storage.get)}
    volumes: dict[str, tuple[int | None, float]] | None = {}
    for sid in sorted({d.storage for v in cluster_vms(spec) for d in v.disks} & set(storages)):
        try:
            items = call(f"list the images on {sid}", pve.nodes(node).storage(sid).content.get, content="images")
        except PveCallError:
            volumes = None  # not observed: a missing disk is then re-attached only from unusedN
            break
        for i in items:
            owner = i.get("vmid")
            volumes[str(i["volid"])] = (int(owner) if str(owner or "").isdigit() else None, int(i.get("size") or 0) / 1024 ** 3)
    return VmFacts(node, vms, isos, names, bridges, storages, volumes)


@register("vms")
class VmsStep:
    title = "Talos VMs on Proxmox"
    # talos_schematic "" = the Image Factory's vanilla schematic; new_empty_disk: allocate a new,
    # empty disk where an existing VM's planned disk is missing and no detached volume of it exists
    options = {"talos_schematic": (str, ""), "new_empty_disk": (bool, False)}

    def observe(self, target: Any, spec: LabSpec, options: StepOptions) -> VmFacts:
        return observe_vms(target.pve, target.node, spec)

    def plan(self, spec: LabSpec, observed: VmFacts, options: StepOptions) -> Plan:
        return plan_vms(spec, observed, options)

    def apply(self, target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
        blocked = [c for c in plan.changes if isinstance(c.data, Blocked)]
        if blocked:  # the runbook refuses such a plan before apply; never act on one anyway
            fixes = [c.data.fix for c in blocked if c.data.fix]
            raise StepError(STEP, "; ".join(c.reason for c in blocked),
                            resume="; ".join(fixes) if fixes else "run the notebook named above first")
        _refuse([c for c in plan.changes if isinstance(c.data, RefusedClusterDisk)])
        execute(target, apply_order(plan.changes), progress, options.wait_timeout_s, step=STEP)

    def checks(self, target: Any, spec: LabSpec, options: StepOptions) -> list[Check]:
        facts = observe_vms(target.pve, target.node, spec)
        out = []
        for vm in cluster_vms(spec):
            st = facts.vms.get(vm.vmid)
            drift = _drift(spec, vm, st, facts.volumes) if st else []
            ok = st is not None and st.status == "running" and not drift and not st.pending  # pending: not in effect
            observed = "absent" if st is None else f"{st.status}" + (f", drift: {', '.join(c.field for c in drift)}" if drift else "") \
                + (f", pending: {', '.join(sorted(st.pending))}" if st.pending else "")
            out.append(Check("VM as planned", f"{vm.name} ({vm.vmid})", f"running, {vm.cores} vCPU, {vm.memory_gb} GiB, "
                             + ", ".join(f"{n.slot} {n.mac}" for n in vm.nics)
                             + "".join(f", {d.slot} {d.storage} {d.size_gb}G" for d in vm.disks), observed, ok,
                             "" if ok else "; ".join(c.data.fix for c in drift if isinstance(c.data, Blocked) and c.data.fix)
                             or "re-run 20-vms with apply and allow_disruptive (MAC changes and the restarts "
                             "that make pending changes take effect)"))
        return out


def _refuse(refused: list[Change]) -> None:
    if refused:
        raise StepError(STEP, "; ".join(f"{c.name} {c.field}: {c.reason}" for c in refused),
                        resume="change the disk by hand (or the spec), then re-run 20-vms")


def _left_pending(pve: Any, node: str, changes: list[Change], updates: dict[int, dict[str, str]],
                  names: dict[int, str]) -> None:
    """After the config updates: a change the plan expected in effect at once (``pending`` False:
    hot-plugged) that PVE left pending waits for a restart the plan does not make (e.g. the VM's
    ``hotplug`` changed between plan and apply). Say so now — converging would wait
    ``wait_timeout_s`` for a reboot nobody applies."""
    rebooted = {c.data.vmid for c in changes if c.data.restarted}
    expected: dict[int, set[str]] = {}
    for c in changes:
        if not c.data.pending:
            expected.setdefault(c.data.vmid, set()).update(c.data.settings)
    stuck = []
    for vmid in updates:
        if vmid in rebooted or not expected.get(vmid):
            continue
        _config, pending = vm_config(pve, node, vmid)
        keys = sorted(expected[vmid] & set(pending))
        if keys:
            stuck.append(f"{names[vmid]} ({vmid}): {', '.join(keys)}")
    if stuck:
        raise StepError(STEP, "Proxmox left change(s) pending instead of applying them to the running VM — "
                        + "; ".join(stuck) + " (not hot-plugged: see the VM's `hotplug` option)",
                        resume="they take effect at the VM's next start: re-run 20-vms with allow_disruptive=True "
                        "to restart it, or restart it by hand")


# ---------------------------------------------------------------------------------------------
# Executors of this step's payloads

#: The phases of apply, in order: each phase's changes (in plan order) run together, their tasks
#: waited for in parallel.
APPLY_ORDER: tuple[tuple[type, str], ...] = (
    (Blocked, ""), (RefusedClusterDisk, ""), (DownloadTalosIso, ""), (CreateClusterVm, ""), (SetClusterVmConfig, ""),
    (ResizeClusterDisk, ""), (ClusterVmPower, "reboot"), (ClusterVmPower, "start"), (DestroyClusterVm, ""))


def _phase(c: Change) -> int:
    key = (type(c.data), getattr(c.data, "action", "") if isinstance(c.data, ClusterVmPower) else "")
    return APPLY_ORDER.index(key) if key in APPLY_ORDER else len(APPLY_ORDER)


def apply_order(changes: Iterable[Change]) -> list[Change]:
    """``changes`` in the order apply carries them out (:data:`APPLY_ORDER`; stable within a phase)."""
    return sorted(changes, key=_phase)


def _pve_of(ctx: Apply) -> tuple[Any, str]:
    return ctx.target.pve, ctx.target.node


@executes(RefusedClusterDisk)
def _refused(c: Change, ctx: Apply) -> None:
    _refuse([c])


@executes(DownloadTalosIso)
def _download_iso(c: Change, ctx: Apply) -> None:
    d: DownloadTalosIso = c.data
    pve, node = _pve_of(ctx)
    upid = _pve(STEP, f"download {d.filename}", pve.nodes(node).storage(d.storage)("download-url").post,
                content="iso", filename=d.filename, url=d.url)
    wait_all(pve, node, {d.filename: upid}, ctx.timeout, ctx.progress, "download")


@executes_together(CreateClusterVm, key=lambda c: None)
def _create_vms(changes: list[Change], ctx: Apply) -> None:
    """Post every create, then wait for all their tasks in parallel."""
    pve, node = _pve_of(ctx)
    upids = {c.name: _pve(STEP, f"create VM {c.name}", pve.nodes(node).qemu.post, **c.data.params) for c in changes}
    wait_all(pve, node, upids, ctx.timeout, ctx.progress, "create")


@executes_together(SetClusterVmConfig, key=lambda c: None)
def _set_configs(changes: list[Change], ctx: Apply) -> None:
    """One ``PUT …/config`` per VM with all its keys; then a key expected in effect that PVE left
    pending is an error (:func:`_left_pending`)."""
    pve, node = _pve_of(ctx)
    updates: dict[int, dict[str, str]] = {}
    names: dict[int, str] = {}
    for c in changes:
        updates.setdefault(c.data.vmid, {}).update(c.data.settings)
        names[c.data.vmid] = c.name
    for vmid, params in updates.items():
        ctx.progress.log(f"{names[vmid]}: set {', '.join(f'{k}={v}' for k, v in params.items())}")
        _pve(STEP, f"update VM {names[vmid]}", pve.nodes(node).qemu(vmid).config.put, **params)
    _left_pending(pve, node, changes, updates, names)


@executes_together(ResizeClusterDisk, key=lambda c: None)
def _resize_disks(changes: list[Change], ctx: Apply) -> None:
    pve, node = _pve_of(ctx)
    resizes = {c.name + " " + c.data.disk: _pve(STEP, f"resize {c.name}", pve.nodes(node).qemu(c.data.vmid).resize.put,
                                                disk=c.data.disk, size=c.data.size)
               for c in changes}
    wait_all(pve, node, {k: v for k, v in resizes.items() if isinstance(v, str)}, ctx.timeout, ctx.progress, "resize")


@executes_together(ClusterVmPower, key=lambda c: c.data.action)
def _power(changes: list[Change], ctx: Apply) -> None:
    """Reboot (or start) the VMs of consecutive changes, then wait for all their tasks in parallel."""
    pve, node = _pve_of(ctx)
    verb = changes[0].data.action
    upids = {c.name: _pve(STEP, f"{verb} VM {c.name}", getattr(pve.nodes(node).qemu(c.data.vmid).status, verb).post)
             for c in changes}
    wait_all(pve, node, upids, ctx.timeout, ctx.progress, verb)


@executes(DestroyClusterVm)
def _destroy(c: Change, ctx: Apply) -> None:
    pve, node = _pve_of(ctx)
    vmid = c.data.vmid
    if c.data.running:
        wait_all(pve, node, {c.name: _pve(STEP, f"stop {c.name}", pve.nodes(node).qemu(vmid).status.stop.post)},
                 ctx.timeout, ctx.progress, "stop")
    wait_all(pve, node, {c.name: _pve(STEP, f"destroy {c.name}", pve.nodes(node).qemu(vmid).delete, purge=1)},
             ctx.timeout, ctx.progress, "destroy")


def _pve(step: str, what: str, fn: Any, **kwargs: Any) -> Any:
    try:
        return call(what, fn, **kwargs)
    except PveCallError as e:
        raise StepError(step, f"{what}: {e.status} {e.message}" + "".join(f"; {k}: {v}" for k, v in e.errors.items())) from e


def wait_all(pve: Any, node: str, upids: dict[str, str], timeout: float, progress: Progress, verb: str,
             poll: float = 0.1) -> None:
    """Wait for several tasks at once, one progress bar each; StepError naming every failed one."""
    bars = {name: progress.task(f"{verb} {name}", 1) for name in upids}
    left = dict(upids)
    failed: list[str] = []
    deadline = time.monotonic() + timeout
    report = WaitReporter(f"Proxmox tasks on {node}", timeout)
    while left:
        report(", ".join(f"{verb} {name} ({task_label(upid)})" for name, upid in left.items()) + " still running")
        for name, upid in list(left.items()):
            try:
                st = call(f"task {upid}", pve.nodes(node).tasks(upid).status.get)
            except PveCallError as e:
                failed.append(f"{name}: {e}")
                del left[name]
                continue
            if st.get("status") != "stopped":
                continue
            del left[name]
            exitstatus = str(st.get("exitstatus", ""))
            if exitstatus == "OK" or exitstatus.startswith("WARNINGS"):
                bars[name](1, "done")
            else:
                err = TaskFailedError(upid, exitstatus, task_log(pve, node, upid))
                bars[name](1, f"failed: {exitstatus}")
                failed.append(f"{verb} {name}: {exitstatus}" + "".join(f"\n    | {line}" for line in err.log[-4:]))
        if left and time.monotonic() > deadline:
            failed += [f"{verb} {name}: {TaskTimeoutError(upid, timeout)}" for name, upid in left.items()]
            break
        if left:
            time.sleep(poll)
    if failed:
        raise StepError("vms", "; ".join(failed))
