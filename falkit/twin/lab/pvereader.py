"""Read-only view of the twin's Proxmox for the lab: VMs, containers, their configs and status.

The lab process reaches the pve process as any client would: HTTPS with the API token, verifying
the twin's CA (``pve.json`` written by ``falkit.twin.pve_process``: host, port, node, ca_file,
token_id/token_file). Nothing here writes to Proxmox.

Answers are cached for ``ttl`` seconds (default 0.5 s) so controllers polling every tick do not
flood the pve process; ``invalidate()`` drops the cache. ``pve.json`` is read lazily: the lab may
start before the pve process is ready; until then every query raises :class:`PveUnavailableError`.
Blocking HTTP runs in a worker thread (``asyncio.to_thread``), so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from falkit.model.errors import TwinError

_SIZE = re.compile(r"(?:^|,)size=(\d+(?:\.\d+)?)([KMGT]?)(?:,|$)")
_UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}
_MAC = re.compile(r"(?:^|,)(?:virtio|e1000|rtl8139|vmxnet3|e1000e)=([0-9A-Fa-f:]{17})")
_DISK_SLOT = re.compile(r"^(scsi|virtio|sata|ide)\d+$")


class PveUnavailableError(TwinError):
    """The twin's Proxmox cannot be reached (not started yet, stopped, or answering an error)."""


def size_bytes(disk_value: str) -> int:
    """``helford:vm-201-disk-1,size=300G,ssd=1`` -> 322122547200 (PVE sizes are binary units)."""
    m = _SIZE.search(disk_value)
    if not m:
        return 0
    return int(float(m.group(1)) * _UNITS[m.group(2)])


@dataclass(frozen=True)
class Disk:
    """A VM disk: ``slot`` (scsi1), ``storage`` (helford), ``volume`` (vm-201-disk-1), size in
    bytes, and the raw config value. ``media=cdrom`` drives are not disks."""

    slot: str
    storage: str
    volume: str
    size_bytes: int
    raw: str


@dataclass(frozen=True)
class Vm:
    """A QEMU VM of the twin's Proxmox: ``status`` is ``running``/``stopped``; ``macs`` maps
    ``net0`` -> lowercase MAC; ``bridges`` maps ``net0`` -> bridge; ``memory_mib`` and ``cores``
    (``cores * sockets`` vCPUs) come from the config."""

    vmid: int
    name: str
    node: str
    status: str
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def memory_mib(self) -> int:
        return int(str(self.config.get("memory", 512)).split(",")[0].replace("current=", ""))

    @property
    def vcpus(self) -> int:
        return int(self.config.get("cores", 1)) * int(self.config.get("sockets", 1))

    @property
    def uuid(self) -> str:
        """SMBIOS uuid (``smbios1: uuid=...``): the VM's systemUUID."""
        m = re.search(r"uuid=([0-9a-fA-F-]{36})", str(self.config.get("smbios1", "")))
        return m.group(1).lower() if m else ""

    @property
    def macs(self) -> dict[str, str]:
        out = {}
        for k, v in self.config.items():
            if re.fullmatch(r"net\d+", k) and isinstance(v, str):
                m = _MAC.search(v)
                if m:
                    out[k] = m.group(1).lower()
        return out

    @property
    def bridges(self) -> dict[str, str]:
        out = {}
        for k, v in self.config.items():
            if re.fullmatch(r"net\d+", k) and isinstance(v, str):
                m = re.search(r"(?:^|,)bridge=([^,]+)", v)
                if m:
                    out[k] = m.group(1)
        return out

    @property
    def links_down(self) -> set[str]:
        """NICs (``net1``) whose config says ``link_down=1``: the guest sees no carrier
        (qemu-server PVE/QemuServer.pm ``link_down`` — "Whether this interface should be
        disconnected (like pulling the plug)")."""
        return {k for k, v in self.config.items()
                if re.fullmatch(r"net\d+", k) and isinstance(v, str) and re.search(r"(?:^|,)link_down=1(?:,|$)", v)}

    def bridges_up(self) -> set[str]:
        """Bridges this VM has a NIC with link on."""
        down = self.links_down
        return {b for k, b in self.bridges.items() if k not in down}

    @property
    def disks(self) -> list[Disk]:
        """Disks in slot order (scsi0 first)."""
        out = []
        for k in sorted(self.config, key=_slot_key):
            v = self.config[k]
            if not _DISK_SLOT.match(k) or not isinstance(v, str) or "media=cdrom" in v:
                continue
            vol = v.split(",", 1)[0]
            storage, _, volume = vol.partition(":")
            out.append(Disk(k, storage, volume, size_bytes(v), v))
        return out


def _slot_key(k: str) -> tuple[str, int]:
    m = re.match(r"([a-z]+)(\d+)$", k)
    return (m.group(1), int(m.group(2))) if m else (k, 0)


class PveReader:
    """``PveReader(conn_path)`` with ``conn_path`` = the pve process's ``pve.json``.

    Async API (for controllers and lab routes): ``await vms()``, ``await vm(vmid)``,
    ``await vm_by_mac(mac)``, ``await cts()``. Sync twins (``vms_sync()`` ...) for threads/tests.
    """

    def __init__(self, conn_path: str | Path, *, ttl: float = 0.5, timeout: float = 10.0) -> None:
        self.conn_path = Path(conn_path)
        self.ttl = ttl
        self.timeout = timeout
        self._conn: dict[str, Any] | None = None
        self._session: requests.Session | None = None
        self._cache: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._gen = 0

    # --- connection ------------------------------------------------------------------------------

    def _connect(self) -> dict[str, Any]:
        if self._conn is None:
            try:
                conn = json.loads(self.conn_path.read_text())
                token = Path(conn["token_file"]).read_text().strip()
            except (OSError, ValueError, KeyError) as e:
                raise PveUnavailableError(f"the twin's Proxmox is not ready ({self.conn_path}: {e})") from e
            s = requests.Session()
            s.trust_env = False  # REQUESTS_CA_BUNDLE would override the twin's CA (requests#3829)
            token_id = conn.get("token_id") or f"{conn.get('user', 'root@pam')}!{conn.get('token_name', 'falkit')}"
            s.headers["Authorization"] = f"PVEAPIToken={token_id}={token}"
            self._session = s
            self._conn = conn
        return self._conn

    @property
    def node(self) -> str:
        return self._connect()["node"]

    def _get(self, path: str) -> Any:
        conn = self._connect()
        url = f"https://{conn['host']}:{conn['port']}/api2/json{path}"
        try:
            r = self._session.get(url, timeout=self.timeout, verify=conn["ca_file"])  # type: ignore[union-attr]
        except requests.RequestException as e:
            self._conn = None  # re-read pve.json next time (the process may have restarted)
            raise PveUnavailableError(f"the twin's Proxmox at {url} is unreachable: {e}") from e
        if r.status_code != 200:
            raise PveUnavailableError(f"GET {path}: {r.status_code} {r.text.strip()[:300]}")
        return r.json().get("data")

    def _cached(self, key: str, fn, fresh: bool = False):
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit and not fresh and now - hit[0] < self.ttl:
                return hit[1]
            gen = self._gen
        value = fn()
        with self._lock:
            if gen == self._gen:  # not invalidated while loading: the answer is current
                self._cache[key] = (time.monotonic(), value)
        return value

    def invalidate(self) -> None:
        with self._lock:
            self._gen += 1
            self._cache.clear()

    # --- sync queries --------------------------------------------------------------------------------

    def vms_sync(self, fresh: bool = False) -> list[Vm]:
        """Every QEMU VM on every node of the cluster, with its config (cached; ``fresh`` reads
        through the cache and refreshes it)."""
        return self._cached("vms", self._load_vms, fresh)

    def _load_vms(self) -> list[Vm]:
        out = []
        for res in self._get("/cluster/resources?type=vm") or []:
            if res.get("type") != "qemu" or res.get("template"):
                continue
            vmid, node = int(res["vmid"]), res["node"]
            cfg = self._get(f"/nodes/{node}/qemu/{vmid}/config") or {}
            out.append(Vm(vmid, res.get("name") or cfg.get("name", ""), node, res.get("status", "stopped"), cfg))
        return sorted(out, key=lambda v: v.vmid)

    def cts_sync(self) -> list[Vm]:
        """Every LXC container (same shape as a VM; ``config`` is the container's)."""
        def load() -> list[Vm]:
            out = []
            for res in self._get("/cluster/resources?type=vm") or []:
                if res.get("type") != "lxc":
                    continue
                vmid, node = int(res["vmid"]), res["node"]
                cfg = self._get(f"/nodes/{node}/lxc/{vmid}/config") or {}
                out.append(Vm(vmid, res.get("name") or cfg.get("hostname", ""), node, res.get("status", "stopped"), cfg))
            return sorted(out, key=lambda v: v.vmid)
        return self._cached("cts", load)

    def bridges_sync(self) -> set[str]:
        """The bridges that exist (are active) on the node: ``GET /nodes/{node}/network?type=any_bridge``
        entries with ``active`` (a staged, not yet applied bridge does not exist for a guest)."""
        def load() -> set[str]:
            rows = self._get(f"/nodes/{self.node}/network?type=any_bridge") or []
            return {r["iface"] for r in rows if r.get("active") and r.get("iface")}
        return self._cached("bridges", load)

    def vm_sync(self, vmid: int) -> Vm | None:
        return next((v for v in self.vms_sync() if v.vmid == int(vmid)), None)

    def vm_by_mac_sync(self, mac: str) -> Vm | None:
        mac = mac.lower()
        return next((v for v in self.vms_sync() if mac in v.macs.values()), None)

    # --- async queries ---------------------------------------------------------------------------------

    async def vms(self, fresh: bool = False) -> list[Vm]:
        return await asyncio.to_thread(self.vms_sync, fresh)

    async def bridges(self) -> set[str]:
        return await asyncio.to_thread(self.bridges_sync)

    async def cts(self) -> list[Vm]:
        return await asyncio.to_thread(self.cts_sync)

    async def vm(self, vmid: int) -> Vm | None:
        return await asyncio.to_thread(self.vm_sync, vmid)

    async def vm_by_mac(self, mac: str) -> Vm | None:
        return await asyncio.to_thread(self.vm_by_mac_sync, mac)
