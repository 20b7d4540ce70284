"""Small helpers over proxmoxer: tasks that raise, VM configs read back, property strings parsed.

proxmoxer models none of the PVE schema (its ``core.py`` only builds URLs from attribute access);
these helpers add only what every step needs:

- :func:`wait_task` waits for a task UPID and *raises* on timeout (:class:`TaskTimeoutError`) or
  failure (:class:`TaskFailedError`, with PVE's exit status verbatim, e.g. ``VM is locked (backup)``
  and the log's last lines) — unlike proxmoxer's ``Tasks.blocking_status``, which returns ``None``;
- :func:`call` runs one API call and turns proxmoxer's ``ResourceException`` into
  :class:`PveCallError` carrying PVE's status, message and per-field errors unchanged;
- :func:`parse_net` / :func:`parse_drive` / :func:`parse_size_gib` read ``netN`` and ``scsiN``
  values as PVE writes them (``virtio=52:54:00:10:10:11,bridge=vmbr0``,
  ``helford:vm-201-disk-1,discard=on,size=300G``);
- :func:`vm_config` reads ``GET …/qemu/{vmid}/config`` and ``…/pending`` into one value.

Sizes: PVE's ``storage:N`` syntax allocates N **GiB** (qemu-server ``PVE::QemuServer::Drive``; the
twin's fakepve does the same) and reads back as ``size=NG``. falkit uses the spec's "GB" figures
as that N, so the seed's "300GB" data disk is ``helford:300`` = 300 GiB.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from proxmoxer import ResourceException

from ...model.errors import FalkitError

SIZE_UNITS_GIB = {"K": 1 / 1024 ** 2, "M": 1 / 1024, "G": 1.0, "T": 1024.0}


class PveCallError(FalkitError, RuntimeError):
    """A PVE API call failed. ``status``, ``message`` and ``errors`` are PVE's own words."""

    def __init__(self, what: str, status: int | None, message: str, errors: dict | None = None):
        self.what = what
        self.status = status
        self.message = message
        self.errors = dict(errors or {})
        fields = "".join(f"\n  {k}: {v}" for k, v in sorted(self.errors.items()))
        m = re.search(r"/(?:qemu|lxc)/(\d+)|\b(?:VM|CT|vmid) (\d+)", what)
        vmid = (m.group(1) or m.group(2)) if m else None
        super().__init__(f"{what}: {status} {message}{fields}{lock_hint(message, vmid)}")


_LOCKED = re.compile(r"VM (?:(\d+) )?is locked \(([\w-]+)\)")


def lock_hint(text: str, vmid: str | int | None = None) -> str:
    """How to find and clear the lock PVE names in ``text`` (``VM is locked (backup)``: qemu-server
    PVE/QemuConfig.pm check_lock; the name is the VM config's ``lock:`` line), or ''."""
    m = _LOCKED.search(text or "")
    if not m:
        return ""
    vmid = m.group(1) or vmid or "<vmid>"
    name = m.group(2)
    return (f"\n  hint: VM {vmid}'s config has `lock: {name}` (`qm config {vmid} | grep ^lock`). Check that no "
            f"task still runs on it (`pvesh get /cluster/tasks` or the GUI's task list: a {name} in progress), "
            f"then clear it with `qm unlock {vmid}`")


class TaskFailedError(FalkitError, RuntimeError):
    """A PVE task ended with an exit status other than OK (e.g. ``VM is locked (backup)``)."""

    def __init__(self, upid: str, exitstatus: str, log: list[str]):
        self.upid = upid
        self.exitstatus = exitstatus
        self.log = list(log)
        tail = "".join(f"\n  | {line}" for line in self.log[-5:])
        parts = upid.split(":")
        hint = lock_hint(exitstatus, parts[6] if len(parts) > 6 and parts[6].isdigit() else None)
        super().__init__(f"task {upid} failed: {exitstatus}{tail}{hint}")


class TaskTimeoutError(FalkitError, TimeoutError):
    """A PVE task was still running when the timeout passed."""

    def __init__(self, upid: str, timeout: float):
        self.upid = upid
        self.timeout = timeout
        super().__init__(f"task {upid} still running after {timeout:g} s")


def call(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``; a ``ResourceException`` becomes :class:`PveCallError` named ``what``."""
    try:
        return fn(*args, **kwargs)
    except ResourceException as e:
        raise PveCallError(what, e.status_code, str(e.content or e.status_message or ""), e.errors) from e


def task_log(pve: Any, node: str, upid: str, limit: int = 50) -> list[str]:
    """The task's log lines (``GET /nodes/{node}/tasks/{upid}/log``)."""
    try:
        return [line.get("t", "") for line in pve.nodes(node).tasks(upid).log.get(limit=limit)]
    except ResourceException:
        return []


def task_label(upid: str) -> str:
    """``qmcreate 202`` from ``UPID:node:pid:pstart:starttime:qmcreate:202:root@pam!falkit:`` (PVE's
    UPID layout, pve-common ``PVE::Tools::upid_decode``); the UPID itself when it has another shape."""
    parts = str(upid).split(":")
    return f"{parts[5]} {parts[6]}".strip() if len(parts) >= 8 and parts[0] == "UPID" else str(upid)


def wait_task(pve: Any, node: str, upid: str, timeout: float = 600.0, poll: float = 0.1,
              on_poll: Callable[[dict], None] | None = None) -> dict:
    """Wait until task ``upid`` stops; returns its status. Raises, never returns None.

    :class:`TaskFailedError` when ``exitstatus`` is not ``OK`` (PVE's message and the log tail),
    :class:`TaskTimeoutError` after ``timeout`` seconds. ``on_poll(status)`` sees every poll. Says
    what it waits for (the task's type and object, from the UPID) every
    :func:`falkit.clients.kube.report_every` seconds.
    """
    # falkit.clients.kube loads the kubernetes client: the runner process imports falkit.clients.proxmox and must not
    # load it (tests/test_runner_speed.py), so WaitReporter is imported only when a task is awaited.
    from ..kube import WaitReporter  # noqa: PLC0415 - the runner imports this module and must not load kubernetes (issue 17)

    deadline = time.monotonic() + timeout
    report = WaitReporter(f"Proxmox task {task_label(upid)} on {node}", timeout)
    while True:
        status = call(f"task {upid}", pve.nodes(node).tasks(upid).status.get)
        report(str(status.get("status") or "unknown"), status.get("status") == "stopped")
        if on_poll is not None:
            on_poll(status)
        if status.get("status") == "stopped":
            exitstatus = str(status.get("exitstatus", ""))
            if exitstatus != "OK" and not exitstatus.startswith("WARNINGS"):
                raise TaskFailedError(upid, exitstatus, task_log(pve, node, upid))
            return status
        if time.monotonic() >= deadline:
            raise TaskTimeoutError(upid, timeout)
        time.sleep(poll)


# ---------------------------------------------------------------------------------------------
# Property strings


def split_props(value: str) -> tuple[str | None, dict[str, str]]:
    """``"a,b=c,d=e"`` -> ``("a", {"b": "c", "d": "e"})``; the first item is positional when it has no ``=``."""
    first: str | None = None
    props: dict[str, str] = {}
    for i, part in enumerate(p for p in str(value).split(",") if p):
        key, eq, val = part.partition("=")
        if not eq and i == 0:
            first = key
        else:
            props[key] = val
    return first, props


NET_MODELS = ("virtio", "e1000", "e1000e", "rtl8139", "vmxnet3")


@dataclass(frozen=True)
class NetConf:
    """A ``netN`` value: model, MAC (lower case), bridge and the other options."""

    model: str | None
    mac: str | None
    bridge: str | None
    options: dict[str, str] = field(default_factory=dict)

    def value(self) -> str:
        parts = [f"{self.model or 'virtio'}={self.mac}" if self.mac else (self.model or "virtio")]
        if self.bridge:
            parts.append(f"bridge={self.bridge}")
        parts += [f"{k}={v}" for k, v in sorted(self.options.items())]
        return ",".join(parts)


def parse_net(value: str) -> NetConf:
    """``virtio=52:54:00:10:10:11,bridge=vmbr0,firewall=1`` -> NetConf (``model=…,macaddr=…`` too)."""
    model = mac = bridge = None
    options: dict[str, str] = {}
    for part in (p for p in str(value).split(",") if p):
        key, _, val = part.partition("=")
        if key in NET_MODELS:
            model, mac = key, (val or None)
        elif key == "model":
            model = val
        elif key == "macaddr":
            mac = val
        elif key == "bridge":
            bridge = val
        else:
            options[key] = val
    return NetConf(model, mac.lower() if mac else None, bridge, options)


@dataclass(frozen=True)
class DriveConf:
    """A drive value: volume id, its storage, size in GiB (None if unknown) and options."""

    volume: str
    storage: str | None
    size_gib: float | None
    options: dict[str, str] = field(default_factory=dict)

    @property
    def cdrom(self) -> bool:
        return self.options.get("media") == "cdrom" or self.volume == "cdrom"


def parse_size_gib(text: str | None) -> float | None:
    """``"300G"`` -> 300.0, ``"512M"`` -> 0.5, ``"1T"`` -> 1024.0; bytes without a unit too."""
    if not text:
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", str(text).strip())
    if not m:
        return None
    number, unit = float(m.group(1)), m.group(2)
    return number * SIZE_UNITS_GIB[unit] if unit else number / 1024 ** 3


def parse_drive(value: str) -> DriveConf:
    """``local-lvm:vm-200-disk-0,discard=on,size=30G`` -> DriveConf; ``helford:300`` (a disk to
    allocate) reads as 300 GiB on helford."""
    first, props = split_props(value)
    volume = first if first is not None else props.pop("file", "")
    storage = volume.split(":", 1)[0] if ":" in volume else None
    size = parse_size_gib(props.get("size"))
    new = re.fullmatch(r"([^/:\s]+):(\d+(?:\.\d+)?)", volume)
    if size is None and new:
        size = float(new.group(2))
    return DriveConf(volume, storage, size, {k: v for k, v in props.items() if k != "size"})


# ---------------------------------------------------------------------------------------------
# Reading VMs


@dataclass(frozen=True)
class VmState:
    """One VM as observed: its config, the pending changes (key -> new value, None = delete) and status."""

    vmid: int
    name: str
    status: str
    config: dict[str, Any]
    pending: dict[str, Any]
    lock: str | None = None

    def effective(self) -> dict[str, Any]:
        """The config the next start uses: config with pending changes applied."""
        out = dict(self.config)
        for key, val in self.pending.items():
            if val is None:
                out.pop(key, None)
            else:
                out[key] = val
        return out


def vm_config(pve: Any, node: str, vmid: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config, pending)`` of a VM. ``pending`` maps key -> new value, or None for a pending delete."""
    qemu = pve.nodes(node).qemu(vmid)
    config = call(f"read config of VM {vmid}", qemu.config.get)
    pending: dict[str, Any] = {}
    for item in call(f"read pending changes of VM {vmid}", qemu.pending.get):
        if item.get("delete"):
            pending[item["key"]] = None
        elif "pending" in item:
            pending[item["key"]] = item["pending"]
    config = {k: v for k, v in config.items() if k != "digest"}
    return config, pending


def list_vms(pve: Any, node: str) -> dict[int, VmState]:
    """Every VM on the node with config, pending changes and status."""
    out: dict[int, VmState] = {}
    for item in call(f"list VMs on {node}", pve.nodes(node).qemu.get):
        vmid = int(item["vmid"])
        config, pending = vm_config(pve, node, vmid)
        out[vmid] = VmState(vmid, str(item.get("name") or config.get("name") or ""), str(item.get("status", "")),
                            config, pending, config.get("lock"))
    return out
