"""rollback-vms, rollback-containers and rollback-network: the Proxmox side back to the recorded
before-state (:mod:`.state`, ``before-state.json``).

- **rollback-vms**: each VM the before-state had gets back the compared config keys it had
  (``net0``/``net1`` MAC and bridge, ``balloon``, ``memory``, ``cores``, ``cpu``, ``name``): a key
  that differs is set (``PUT /nodes/{node}/qemu/{vmid}/config``), a key it did not have is deleted
  (``delete=net1,balloon``). A NIC change is **disruptive** (the guest sees a new NIC; DHCP
  reservations follow the MAC). A running VM then has pending changes (PVE applies memory/balloon
  and, without hot-plug, NICs at the next start): one ``reboot`` (``POST …/status/reboot``,
  disruptive). A disk that differs is a note: PVE cannot shrink a disk, falkit does not delete one.
  VMs the before-state did not have are rollback-workers' (destroyed only with
  ``destroy_extra_workers``).
- **rollback-containers**: containers the before-state did not have (the Plex container of
  60-truenas-plex, unless its own rollback step removed it): stopped; destroyed (``DELETE
  …/lxc/{vmid}``, with ``purge``) only with ``destroy_new_containers=True`` (destructive: also
  ``allow_destructive``); otherwise kept, and the comparison says ``kept
  (destroy_new_containers=False)``.
- **rollback-network**: each bridge the before-state had gets its ports, address and gateway back
  (``PUT /nodes/{node}/network/{iface}``; vmbr0's address and gateway are **disruptive**: the
  operator reaches the host through it); a bridge it did not have (vmbr1) is deleted (``DELETE
  …/network/{iface}``) when no VM or container still has a NIC on it — otherwise it stays with
  what uses it named; then one ``PUT /nodes/{node}/network`` reload (PVE API, docs/FACTS.md).

Each change carries a typed payload (:class:`RestoreVmConfig`, :class:`RebootVmBack`,
:class:`StopNewContainer`, :class:`DestroyNewContainer`, :class:`RestoreBridge`,
:class:`ReloadNetworkBack`) holding everything its executor (this module's) needs; apply reads no spec.

Without a recorded before-state the spec's ``previous`` section is the reference where it says
enough: vmbr0 gets ``previous.network``'s subnet (the host keeps its host octet, 10.10.0.2 ->
10.30.0.2), gateway and ports, and the storage bridge goes when unused; VMs 200/201 get the old MAC
prefix on net0 (the seed's scheme: the IP's last octet) and lose net1. Balloon and the container set
are not in the spec: without a recording they are not compared (a note says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...clients.proxmox import PveCallError, TaskFailedError, TaskTimeoutError, call, list_vms, wait_task
from ...model.errors import StepError
from ...model.spec import LabSpec
from ...plan.diff import Change, Noop, Plan
from ...plan.payloads import payload
from ..base import Progress, StepOptions
from ..executors import Apply, execute, executes, executes_together
from ..network import _host_octet_ip, current, observe_network
from .state import VM_FIELDS, next_start_config, recorded_before

NO_BEFORE = ("no before-state recorded (before-state.json in the private dir): nothing to compare with, nothing "
             "planned — record it before the migration (falkit.steps.rollback.record_before_state)")


# ---------------------------------------------------------------------------------------------
# Payloads of these steps (the shared ones: falkit.plan.payloads)


@payload
@dataclass(frozen=True)
class RestoreVmConfig:
    """``PUT /nodes/{node}/qemu/{vmid}/config`` of ``settings`` with the keys to ``delete``: every
    compared key of the VM back at once (each changed key is a change carrying the same payload)."""

    vmid: int
    settings: dict
    delete: tuple[str, ...] = ()


@payload
@dataclass(frozen=True)
class RebootVmBack:
    """``POST /nodes/{node}/qemu/{vmid}/status/reboot`` (waited for): the pending changes take effect."""

    vmid: int


@payload
@dataclass(frozen=True)
class StopNewContainer:
    """Shut container ``vmid`` down (``status/shutdown``; ``status/stop`` when that fails)."""

    vmid: int


@payload
@dataclass(frozen=True)
class DestroyNewContainer:
    """``DELETE /nodes/{node}/lxc/{vmid}`` with ``purge``."""

    vmid: int


@payload
@dataclass(frozen=True)
class RestoreBridge:
    """Stage bridge ``iface`` as before: ``action`` ``create`` (``POST …/network`` with ``params``),
    ``update`` (``PUT …/network/{iface}`` with ``params`` and the keys to ``delete``) or ``delete``
    (``DELETE …/network/{iface}``). The changes of one bridge carry the same payload (one call)."""

    iface: str
    action: str
    params: dict | None = None
    delete: tuple[str, ...] = ()


@payload
@dataclass(frozen=True)
class ReloadNetworkBack:
    """``PUT /nodes/{node}/network``: apply the staged bridges (a task, waited for)."""


def _section(fields: dict[str, str], area: str) -> dict[str, dict[str, str]]:
    """``{subject: {field: value}}`` of one area of a snapshot."""
    out: dict[str, dict[str, str]] = {}
    for key, value in fields.items():
        a, subject, name = key.split("|", 2)
        if a == area:
            out.setdefault(subject, {})[name] = value
    return out


# =============================================================================================
# rollback-vms


@dataclass(frozen=True)
class PveFacts:
    before: dict[str, str] | None  # the recorded before-state's fields
    vms: dict[int, dict]  # vmid -> {"status", "config" (next start)}
    cts: dict[int, dict]  # vmid -> {"name", "status", "config"}
    bridges: dict[str, dict]  # iface -> observed interface


def observe_pve(target: Any, spec: LabSpec) -> PveFacts:
    before = recorded_before(target)
    vms = {vmid: {"status": v.status, "config": next_start_config(v)} for vmid, v in list_vms(target.pve, target.node).items()}
    cts = {}
    node = target.pve.nodes(target.node)
    for ct in call(f"list containers on {target.node}", node.lxc.get):
        vmid = int(ct["vmid"])
        cts[vmid] = {"name": str(ct.get("name") or ""), "status": str(ct.get("status") or ""),
                     "config": call(f"read CT {vmid}", node.lxc(vmid).config.get)}
    bridges = {k: v for k, v in observe_network(target.pve, target.node).interfaces.items() if v.get("type") == "bridge"}
    return PveFacts(before.fields if before and before.fields else None, vms, cts, bridges)


def _net_with_mac(value: str, mac: str) -> str:
    parts = str(value).split(",")
    model = parts[0].split("=", 1)[0]
    return ",".join([f"{model}={mac}", *parts[1:]])


def _spec_vms(spec: LabSpec, f: PveFacts) -> dict[str, dict[str, str]]:
    """The pre-migration VMs as far as ``spec.previous`` says: net0 on the old MAC, no net1; the
    other compared keys as they are now (the spec does not record them)."""
    out: dict[str, dict[str, str]] = {}
    if spec.previous is None:
        return out
    prefix = spec.previous.network.mac_prefix.lower()
    for n in spec.previous.nodes:
        vm = f.vms.get(n.vmid)
        if vm is None:
            continue
        was = {k: str(v) for k, v in vm["config"].items() if k in VM_FIELDS and k != "net1"}
        if "net0" in was:
            was["net0"] = _net_with_mac(was["net0"], f"{prefix}:{int(n.ip.rsplit('.', 1)[1]):02d}")
        out[f"VM {n.vmid}"] = was
    return out


def plan_vms_back(spec: LabSpec, f: PveFacts, options: StepOptions) -> Plan:
    changes, noops, notes = [], [], []
    if f.before is not None:
        was_all = _section(f.before, "vm")
    else:
        was_all = _spec_vms(spec, f)
        notes.append("no before-state recorded: spec.previous is the reference (old MAC on net0, no net1); "
                     "balloon, memory and cores are not compared")
    for subject, was in sorted(was_all.items()):
        vmid = int(subject.split()[1])
        vm = f.vms.get(vmid)
        if vm is None:
            notes.append(f"{subject} ({was.get('name', '?')}) is gone: falkit does not re-create it (restore it from a backup)")
            continue
        now = vm["config"]
        set_: dict[str, str] = {}
        delete: list[str] = []
        rows: list[tuple[str, str | None, str | None]] = []
        for key in VM_FIELDS:
            old, new = was.get(key), now.get(key)
            new = None if new is None else str(new)
            if old == new or (old and new and old.lower() == new.lower()):
                continue
            if key.startswith("scsi"):
                notes.append(f"{subject} {key}: {new} (was {old}); PVE cannot shrink a disk and falkit does not delete one")
                continue
            if old is None:
                delete.append(key)
            else:
                set_[key] = old
            rows.append((key, new, old))
        restore = RestoreVmConfig(vmid, set_, tuple(delete))  # the VM's keys all at once, on each of its changes
        for key, new, old in rows:
            changes.append(Change("update", "vm", f"{subject} {was.get('name', '')}".strip(), key, new, old or "(none)",
                                  disruptive=key.startswith("net"),
                                  reason="the guest sees its old NIC again (DHCP reservation on the old MAC)"
                                  if key.startswith("net") else "as before the migration",
                                  data=restore))
        if set_ or delete:
            if vm["status"] == "running":
                changes.append(Change("action", "vm", f"{subject} {was.get('name', '')}".strip(), "reboot", disruptive=True,
                                      reason="pending changes take effect at the next start", data=RebootVmBack(vmid)))
        else:
            noops.append(Noop("vm", subject, "as before the migration"))
    return Plan("rollback-vms", tuple(changes), tuple(noops), tuple(notes))


def apply_vms_back(target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
    try:
        execute(target, plan.changes, progress, options.wait_timeout_s, step="rollback-vms")
    except (PveCallError, TaskFailedError, TaskTimeoutError) as e:
        raise StepError("rollback-vms", str(e)) from e


@executes_together(RestoreVmConfig, key=lambda c: c.data.vmid)
def _restore_vm_config(changes: list[Change], ctx: Apply) -> None:
    """One ``PUT …/config`` for the (consecutive) changes of one VM."""
    d: RestoreVmConfig = changes[0].data
    kwargs: dict[str, Any] = dict(d.settings)
    if d.delete:
        kwargs["delete"] = ",".join(d.delete)
    ctx.progress.log(f"rollback-vms: VM {d.vmid}: " + ", ".join(c.describe() for c in changes))
    call(f"update VM {d.vmid}", ctx.target.pve.nodes(ctx.target.node).qemu(d.vmid).config.put, **kwargs)


@executes(RebootVmBack)
def _reboot_vm_back(c: Change, ctx: Apply) -> None:
    vmid = c.data.vmid
    ctx.progress.log(f"rollback-vms: reboot VM {vmid}")
    upid = call(f"reboot VM {vmid}", ctx.target.pve.nodes(ctx.target.node).qemu(vmid).status.reboot.post)
    wait_task(ctx.target.pve, ctx.target.node, upid, timeout=ctx.timeout)


# =============================================================================================
# rollback-containers


def plan_containers_back(spec: LabSpec, f: PveFacts, options: StepOptions) -> Plan:
    if f.before is None:
        return Plan("rollback-containers", notes=(NO_BEFORE,))
    had = {int(s.split()[1]) for s in _section(f.before, "container")}
    destroy = bool(options.extra.get("destroy_new_containers", False))
    changes, noops = [], []
    for vmid, ct in sorted(f.cts.items()):
        if vmid in had:
            noops.append(Noop("container", f"CT {vmid}", "the before-state had it"))
            continue
        name = f"CT {vmid} {ct['name']}".strip()
        if ct["status"] == "running":
            changes.append(Change("action", "container", name, "shutdown", disruptive=True,
                                  reason="added by the migration", data=StopNewContainer(vmid)))
        if destroy:
            changes.append(Change("delete", "container", name, old=f"CT {vmid}", destructive=True,
                                  reason="option destroy_new_containers: the container and its volumes go",
                                  data=DestroyNewContainer(vmid)))
        elif ct["status"] != "running":
            noops.append(Noop("container", name, "stopped; kept (destroy_new_containers=False)"))
    return Plan("rollback-containers", tuple(changes), tuple(noops))


def apply_containers_back(target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
    try:
        execute(target, plan.changes, progress, options.wait_timeout_s, step="rollback-containers")
    except (PveCallError, TaskFailedError, TaskTimeoutError) as e:
        raise StepError("rollback-containers", str(e)) from e


@executes(StopNewContainer)
def _stop_container(c: Change, ctx: Apply) -> None:
    target, vmid = ctx.target, c.data.vmid
    lxc = target.pve.nodes(target.node).lxc
    ctx.progress.log(f"rollback-containers: {c.describe()}")
    upid = call(f"shut down CT {vmid}", lxc(vmid).status.shutdown.post)
    try:
        wait_task(target.pve, target.node, upid, timeout=ctx.timeout)
    except (TaskFailedError, TaskTimeoutError):
        wait_task(target.pve, target.node, call(f"stop CT {vmid}", lxc(vmid).status.stop.post), timeout=ctx.timeout)


@executes(DestroyNewContainer)
def _destroy_container(c: Change, ctx: Apply) -> None:
    target, vmid = ctx.target, c.data.vmid
    ctx.progress.log(f"rollback-containers: {c.describe()}")
    upid = call(f"destroy CT {vmid}", target.pve.nodes(target.node).lxc(vmid).delete, purge=1)
    wait_task(target.pve, target.node, upid, timeout=ctx.timeout)


# =============================================================================================
# rollback-network


def _users(f: PveFacts, bridge: str) -> list[str]:
    """The VMs and containers with a NIC on ``bridge`` (next-start config)."""
    out = []
    for kind, items in (("VM", f.vms), ("CT", f.cts)):
        for vmid, item in sorted(items.items()):
            if any(k.startswith("net") and f"bridge={bridge}" in str(v).split(",") for k, v in item["config"].items()):
                out.append(f"{kind} {vmid}")
    return out


def plan_network_back(spec: LabSpec, f: PveFacts, options: StepOptions) -> Plan:
    mgmt = spec.previous.network.bridge if spec.previous else spec.networks.management.bridge
    changes, noops, notes = [], [], []
    if f.before is not None:
        was_all = _section(f.before, "bridge")
        extra = sorted(set(f.bridges) - set(was_all))
    elif spec.previous is None:
        return Plan("rollback-network", notes=(NO_BEFORE,))
    else:
        prev = spec.previous.network
        have0 = current(f.bridges[prev.bridge])["cidr"] if prev.bridge in f.bridges else ""
        prefix = prev.cidr.split("/")[1]
        was_all = {prev.bridge: {"bridge_ports": prev.bridge_ports or "(none)",
                                 "cidr": f"{_host_octet_ip(prev.cidr, have0)}/{prefix}", "gateway": prev.gateway}}
        extra = [b for b in (spec.networks.storage.bridge,) if b in f.bridges and b != prev.bridge]
        notes.append("no before-state recorded: spec.previous is the reference (vmbr0 on its old subnet and gateway, "
                     "the storage bridge removed)")
    for name, was in sorted(was_all.items()):
        iface = f.bridges.get(name)
        want = {k: ("" if v == "(none)" else v) for k, v in was.items()}
        if iface is None:
            changes.append(Change("create", "bridge", name, "", None, ", ".join(f"{k} {v or '(none)'}" for k, v in want.items()),
                                  reason="the before-state had it",
                                  data=RestoreBridge(name, "create", {"type": "bridge", **{k: v for k, v in want.items() if v}})))
            continue
        have = current(iface)
        diff = {k: v for k, v in want.items() if have.get(k, "") != v}
        for key, value in diff.items():
            changes.append(Change("update", "bridge", name, key, have.get(key) or "(none)", value or "(none)",
                                  disruptive=name == mgmt,
                                  reason="the operator reaches the host through this bridge: the connection may drop"
                                  if name == mgmt else "as before the migration",
                                  data=RestoreBridge(name, "update", {"type": "bridge", **{k: v for k, v in want.items() if v}},
                                                     tuple(k for k, v in want.items() if not v))))
        if not diff:
            noops.append(Noop("bridge", name, "as before the migration"))
    for name in extra:
        users = _users(f, name)
        if users:
            notes.append(f"{name}: the before-state had no such bridge, but {', '.join(users)} still use(s) it: kept "
                         "(destroy_extra_workers / destroy_new_containers remove what uses it)")
            continue
        changes.append(Change("delete", "bridge", name, old=_describe(current(f.bridges[name])),
                              reason="the before-state had no such bridge; nothing uses it", data=RestoreBridge(name, "delete")))
    if changes:
        changes.append(Change("action", "network", target_node(spec), "reload", disruptive=any(c.disruptive for c in changes),
                              reason="apply staged changes (PUT /nodes/{node}/network)", data=ReloadNetworkBack()))
    return Plan("rollback-network", tuple(changes), tuple(noops), tuple(notes))


def target_node(spec: LabSpec) -> str:
    return spec.host.node


def _describe(have: dict) -> str:
    return f"ports {have['bridge_ports'] or 'none'}, {have['cidr'] or 'no address'}"


def apply_network_back(target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
    try:
        execute(target, plan.changes, progress, options.wait_timeout_s, step="rollback-network")
    except (PveCallError, TaskFailedError, TaskTimeoutError) as e:
        raise StepError("rollback-network", str(e)) from e


@executes_together(RestoreBridge, key=lambda c: c.data.iface)
def _restore_bridge(changes: list[Change], ctx: Apply) -> None:
    """One staging call for the (consecutive) changes of one bridge."""
    c, d = changes[0], changes[0].data
    net = ctx.target.pve.nodes(ctx.target.node).network
    ctx.progress.log(f"rollback-network: {c.describe()}")
    if d.action == "delete":
        call(f"stage deletion of {d.iface}", net(d.iface).delete)
    elif d.action == "create":
        call(f"stage bridge {d.iface}", net.post, iface=d.iface, **(d.params or {}))
    else:
        kwargs = dict(d.params or {})
        if d.delete:
            kwargs["delete"] = ",".join(d.delete)
        call(f"stage {d.iface}", net(d.iface).put, **kwargs)


@executes(ReloadNetworkBack)
def _reload_network_back(c: Change, ctx: Apply) -> None:
    net = ctx.target.pve.nodes(ctx.target.node).network
    wait_task(ctx.target.pve, ctx.target.node, call("reload network", net.put), timeout=ctx.timeout)
