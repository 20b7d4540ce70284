"""The Proxmox half of the twin: fakepve, extended for The Fal, in its own process.

*** AGPL boundary ***
This is the ONLY falkit module that imports ``fakepve`` (PyPI 0.5.0, AGPL-3.0-or-later). fakepve is
used unmodified, as installed from PyPI; this module only subclasses it. It runs as its own process
(``python -m falkit.twin.pve_process --config CONFIG.json --state-dir DIR``) and the rest of falkit
reaches it only over HTTP(S): the PVE API over TLS (proxmoxer), the control API over plain HTTP on
127.0.0.1. Nothing else in falkit imports this module.

What it adds to fakepve (which has a fixed 4 CPU / 8 GiB node and a stateless ``/network``):

- ``GET /nodes/{node}/status`` (and the node entries of ``/nodes``, ``/cluster/resources``) report
  the configured CPU (threads, sockets, cores, model) and memory; memory used is the sum of the
  running guests' configured memory.
- ``/nodes/{node}/network`` is stateful as on PVE (pve-manager PVE/API2/Network.pm): POST/PUT
  ``{iface}``/DELETE ``{iface}`` stage changes (the ``interfaces.new`` file), GET lists the staged
  configuration with ``active``/``exists`` only for applied interfaces and a top-level ``changes``
  diff, PUT applies them (a ``srvreload`` task, as ifreload does), DELETE reverts them. A duplicate
  iface is a 400 ``{"iface": "interface already exists"}``; a second default gateway a 400
  ``{"gateway": "Default gateway already exists on interface 'vmbr0'."}`` (check_duplicate_gateway).
- A VM start whose NIC names a bridge that is not active fails inside the task as PVE's does: the
  log says ``bridge 'vmbr1' does not exist`` (pve-common PVE/Network.pm) and the task ends with
  ``TASK ERROR: start failed: QEMU exited with code 1`` (qemu-server).
- The token ``root@pam!falkit`` is privilege-separated (config ``token``: ``{"privsep": true, "acl":
  [{"path": "/", "privs": [...]}]}`` — the supervisor gives it exactly falkit's documented role,
  falkit/data/pve-role.json): every call outside that role is PVE's 403 ``Permission check failed
  (<path>, <privilege>)`` and ``GET /access/permissions`` shows the token's own privileges. Fault
  ``token_privilege_missing`` ``{privilege, path}`` takes one away.
- An ACL table is switched on (empty: root@pam and its tokens may do everything else), so PVE's
  root@pam-only rules apply to API tokens as on a real node: an LXC ``devN`` passthrough through the
  token ``root@pam!falkit`` is refused with ``403 Permission check failed (configuring device
  passthrough is only allowed for root@pam)``; a root@pam ticket (password file) may do it.
- Storages from the config with their sizes; initial guests' disks are allocated on them.
- The appliance index (``GET/POST /nodes/{node}/aplinfo``, pveam's API): config ``appliances``
  lists the templates Proxmox could download; POST downloads one onto a ``vztmpl`` storage. The
  twin starts without the Plex template on ``local`` (a fresh host has none).
- A control API (plain HTTP, 127.0.0.1, random port) for faults, state dump and snapshots; every
  fault maps onto one of fakepve's own mechanisms (see :class:`Control`). It answers only requests
  with ``Authorization: Bearer <token>``, the token of ``DIR/pve-control-token`` (0600, new at
  every start); snapshots go only inside ``DIR`` (0600).

When ready it writes ``DIR/pve.json`` atomically (0600):
``{"pid", "host", "port", "node", "ca_file", "user", "token_id", "token_name", "token_file",
"password_file", "control", "control_token_file", "url", "time_scale"}`` and removes it again on
SIGTERM/SIGINT. Secrets are only in the 0600 files it names, never on the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import difflib
import ipaddress
import json
import os
import re
import secrets
import signal
import sys
import time
import uuid
from typing import Any

from aiohttp import web
from fakepve import FakePve, PveError, TaskError
from fakepve import schema as pve_schema
from fakepve.certs import make_cert
from fakepve.lxc import parse_mount
from fakepve.lxc import parse_size as lxc_parse_size
from fakepve.qemu import DRIVE_KEY, boot_order, split_drive, with_mac
from fakepve.server import USER
from fakepve.server import params as read_params

from falkit.twin import credentials

GIB = 1024 ** 3
MIB = 1024 ** 2
SNAPSHOT_FORMAT = "falkit-pve-snapshot/1"
TOKEN_ID = "root@pam!falkit"
# Storage options PVE requires per type; filled in when the config leaves them out.
STORAGE_DEFAULTS = {
    "lvmthin": {"vgname": "pve", "thinpool": "data"},
    "lvm": {"vgname": "pve"},
    "dir": {"path": "/var/lib/vz"},
    "zfspool": {"pool": "rpool/data", "sparse": 1},
}
BRIDGE_TYPES = ("bridge", "OVSBridge")
# Keys of a network interface that are state, not configuration (not written to interfaces.new).
IFACE_STATE_KEYS = ("active", "exists", "priority", "families", "iface")


def _write_private(path: str, text: str) -> None:
    """Write a secret file, mode 0600 whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fd, 0o600)
        fh.write(text)


def write_json_atomic(path: str, data: Any) -> None:
    credentials.write_private_json(path, data)  # 0600: the connection files name the secret files


def _prefix_netmask(cidr: str) -> tuple[str, str]:
    iface = ipaddress.ip_interface(cidr)
    return str(iface.ip), str(iface.network.prefixlen)


def _bridge_of(net_value: str) -> str | None:
    for part in str(net_value).split(","):
        key, _, val = part.partition("=")
        if key == "bridge":
            return val
    return None


class TwinPve(FakePve):
    """fakepve with The Fal's node, storages, stateful network and twin faults."""

    def __init__(self, cfg: dict, password: str, host: str, port: int):
        super().__init__(user="root@pam", password=password, host=host, port=port)
        self.cfg = cfg
        self.node = cfg.get("node", "fal")
        self.nodes = {self.node: {"online": True}}
        cpu = cfg.get("cpu", {})
        self.cpu_threads = int(cpu.get("threads", cfg.get("cpu_threads", 16)))
        self.cpu_sockets = int(cpu.get("sockets", 1))
        self.cpu_cores = int(cpu.get("cores", max(self.cpu_threads // 2, 1)))
        self.cpu_model = cpu.get("model", "AMD Ryzen 9 6800HX with Radeon Graphics")
        self.memory_total = int(cfg.get("memory_bytes") or int(cfg.get("memory_gb", 32)) * GIB)
        self.time_scale = float(cfg.get("time_scale", 0.0))
        # The release the twin plays: Proxmox VE 9.1 (pve-manager 9.1.1, the 9.1 ISO of November 2025),
        # the first with OCI application containers (POST .../oci-registry-pull, which the twin
        # serves; docs/FACTS.md). fakepve answers 9.0.10 by default, a release without that call.
        self.version, self.release_version = str(cfg.get("pve_version", "9.1.1")), str(cfg.get("pve_release", "9.1"))
        # The appliance index `pveam update` keeps (config "appliances"): what POST aplinfo downloads.
        self.appliances: list[dict] = [dict(a) for a in cfg.get("appliances", [])]
        # ACL switched on, empty: root@pam and its tokens pass every privilege check, but PVE's
        # hard-coded `$authuser eq 'root@pam'` rules (LXC devN, bind mounts, ...) refuse tokens.
        self.acl = {}
        # Network: applied interfaces, and the staged configuration (None: no interfaces.new).
        self.net_active: dict[str, dict] = {}
        self.net_staged: dict[str, dict] | None = None
        # Privilege-separated API tokens (PVE's default for a new token, `pveum user token add
        # --privsep 1`): such a token holds only the privileges of its own ACL entries (and never
        # more than its user — root@pam holds all), even when its user is root@pam. pve-docs
        # pveum.adoc "API Tokens"; PVE::RPCEnvironment::permissions. fakepve treats every
        # root@pam token as root: allowed/check_permissions/_permissions are narrowed below.
        self.privsep_tokens: set[str] = set()
        # Twin faults on tasks: [{"id", "match", "vmid", "message", "times"}].
        self.task_faults: list[dict] = []
        # OCI images pulled with oci-registry-pull (volid -> reference) and the OCI archive each
        # application container was created from (vmid -> volid): see _oci_pull, guest_answer.
        self.oci_images: dict[str, str] = {}
        self.ct_oci: dict[int, str] = {}

    # ------------------------------------------------------------- initial state

    def load_config(self, cfg: dict) -> None:
        """Storages, templates, bridges and guests from the config."""
        self.storages = {}
        for st in cfg.get("storages", []):
            self._add_storage(st)
        for tpl in cfg.get("templates", []):
            self.store_file(tpl["storage"], tpl["name"], int(tpl.get("size", 100 * MIB)),
                            content=tpl.get("content", "iso"))
        for nic in cfg.get("nics", ["enp1s0"]):
            self.net_active[nic] = {"type": "eth", "method": "manual", "method6": "manual",
                                    "families": ["inet"], "active": 1, "exists": 1}
        for br in cfg.get("bridges", []):
            self.net_active[br["iface"]] = self._iface_from_params(dict(br), applied=True)
        for vm in cfg.get("vms", []):
            self._add_initial_vm(vm)
        for ct in cfg.get("cts", []):
            self._add_initial_ct(ct)

    def _add_storage(self, st: dict) -> None:
        kind = st.get("type", "dir")
        store: dict[str, Any] = dict(STORAGE_DEFAULTS.get(kind, {}))
        store.update({k: v for k, v in st.items() if k not in ("name", "total", "size_gb", "content")})
        content = st.get("content", "images,rootdir")
        store["content"] = ",".join(content) if isinstance(content, list) else content
        total = int(st.get("total") or float(st.get("size_gb", 100)) * 10 ** 9)  # GB as the seed states sizes
        store.update(type=kind, active=1, files=set(), volumes={}, total=total, avail=total)
        self.storages[st["name"]] = store

    def _alloc(self, sid: str, vmid: int, size: int, name: str | None = None) -> str:
        """Account a volume of size bytes on the storage; returns the volume id."""
        store = self.storages.get(sid)
        if store is None:
            raise ValueError(f"storage {sid!r} is not configured")
        if size > store["avail"]:
            raise ValueError(f"unable to write to storage '{sid}': No space left on device")
        if name is None:
            n = 0
            while f"vm-{vmid}-disk-{n}" in store["volumes"] or \
                    f"{vmid}/vm-{vmid}-disk-{n}.raw" in store["volumes"]:
                n += 1
            name = f"vm-{vmid}-disk-{n}" if store["type"] != "dir" else f"{vmid}/vm-{vmid}-disk-{n}.raw"
        store["volumes"][name] = {"content": "images", "format": "raw", "size": size, "vmid": vmid,
                                  "ctime": int(time.time())}
        store["avail"] -= size
        return f"{sid}:{name}"

    def _add_initial_vm(self, spec: dict) -> None:
        vmid = int(spec["vmid"])
        conf: dict[str, Any] = {}
        for key, value in (spec.get("config") or {}).items():
            if DRIVE_KEY.match(key):
                volume, props = split_drive(value)
                found = re.fullmatch(r"([^/:\s]+):(\d+(?:\.\d+)?)", volume)
                if found and props.get("media") != "cdrom":
                    size = int(float(found.group(2)) * GIB)
                    volume = self._alloc(found.group(1), vmid, size)
                    props["size"] = f"{int(float(found.group(2)))}G"
                elif ":" in volume and props.get("size") and props.get("media") != "cdrom":
                    sid, _, name = volume.partition(":")
                    self._alloc(sid, vmid, lxc_parse_size(props["size"]) or 0, name=name)
                conf[key] = ",".join([volume] + [f"{k}={props[k]}" for k in sorted(props)])
            elif re.fullmatch(r"net\d+", key):
                conf[key] = with_mac(value)
            else:
                conf[key] = value
        conf.setdefault("boot", boot_order(conf))
        conf.setdefault("meta", f"creation-qemu=10.0.2,ctime={int(time.time())}")
        conf.setdefault("smbios1", f"uuid={uuid.uuid4()}")
        conf.setdefault("vmgenid", str(uuid.uuid4()))
        vm = self.add_vm(vmid, spec.get("name") or f"VM {vmid}", node=self.node,
                         status=spec.get("status", "stopped"), config=conf)
        if spec.get("lock"):
            self.snapshot_lock(vmid, spec["lock"])
        return vm

    def _add_initial_ct(self, spec: dict) -> None:
        vmid = int(spec["vmid"])
        conf = dict(spec.get("config") or {})
        for key in [k for k in conf if k == "rootfs" or re.fullmatch(r"mp\d+", k)]:
            mount = parse_mount(conf[key])
            found = re.fullmatch(r"([^:\s]+):(\d+(?:\.\d+)?)", mount.get("volume", ""))
            if found:
                size = int(float(found.group(2)) * GIB)
                mount["volume"] = self._alloc(found.group(1), vmid, size)
                mount["size"] = f"{int(float(found.group(2)))}G"
                rest = sorted(k for k in mount if k != "volume")
                conf[key] = ",".join([mount["volume"]] + [f"{k}={mount[k]}" for k in rest])
        conf.setdefault("hostname", spec.get("hostname") or spec.get("name") or f"CT{vmid}")
        self.add_ct(vmid, node=self.node, status=spec.get("status", "stopped"), config=conf,
                    ostemplate=spec.get("ostemplate"))

    # -------------------------------------------------------------- snapshot

    def export_state(self) -> dict:
        """Everything a restore needs, as JSON-able data."""
        def guest(g, kind):
            out = {"vmid": g.vmid, "node": g.node, "status": g.status, "config": copy.deepcopy(g.config),
                   "pending": copy.deepcopy(g.pending), "snapshots": copy.deepcopy(g.snapshots),
                   "type": kind}
            if kind == "qemu":
                out.update(name=g.name, lock=g.lock, template=bool(g.template))
            return out
        storages = {}
        for name, st in self.storages.items():
            s = {k: v for k, v in st.items() if k != "files"}
            s["files"] = sorted(st.get("files", ()))
            storages[name] = copy.deepcopy(s)
        return {"node": self.node, "vms": [guest(v, "qemu") for v in self.vms],
                "cts": [guest(c, "lxc") for c in self.cts],
                "network": {"active": copy.deepcopy(self.net_active),
                            "staged": copy.deepcopy(self.net_staged)},
                "storages": storages,
                "oci": {"images": dict(self.oci_images), "cts": {str(k): v for k, v in self.ct_oci.items()}}}

    def import_state(self, state: dict) -> None:
        self.storages = {}
        for name, st in state["storages"].items():
            st = copy.deepcopy(st)
            st["files"] = set(st.get("files", ()))
            self.storages[name] = st
        self.net_active = copy.deepcopy(state["network"]["active"])
        self.net_staged = copy.deepcopy(state["network"]["staged"])
        self.vms, self.cts = [], []
        for g in state["vms"]:
            vm = self.add_vm(g["vmid"], g["name"], node=g["node"], status=g["status"], config=g["config"],
                             pending=g["pending"], template=g.get("template", False), lock=g.get("lock"))
            vm.snapshots = g.get("snapshots", {})
        for g in state["cts"]:
            ct = self.add_ct(g["vmid"], node=g["node"], status=g["status"], config=g["config"],
                             pending=g["pending"], defaults=False)
            ct.snapshots = g.get("snapshots", {})
        oci = state.get("oci") or {}
        self.oci_images = dict(oci.get("images") or {})
        self.ct_oci = {int(k): v for k, v in (oci.get("cts") or {}).items()}

    def dump_state(self) -> dict:
        """GET /state of the control API: the snapshot data plus derived views."""
        state = self.export_state()
        for name, st in state["storages"].items():
            total, used, avail = self._space(self.storages[name])
            st.update(total=total, used=used, avail=avail)
        state["network"]["changes"] = self._net_changes()
        state["memory"] = {"total": self.memory_total, "used": self._memory_used()}
        state["quorate"] = self.quorate
        state["nodes"] = copy.deepcopy(self.nodes)
        state["tasks"] = [{k: v for k, v in t.items()} for t in self.tasklog[-200:]]
        return state

    # ------------------------------------------------------------- node size

    def _memory_used(self) -> int:
        used = 0
        for vm in self.vms:
            if vm.status == "running":
                used += int(str(vm.config.get("memory", 512)).split("=")[-1]) * MIB
        for ct in self.cts:
            if ct.status == "running":
                used += int(ct.config.get("memory", 512)) * MIB
        return used

    def _node_stats(self, online):  # overrides fakepve's fixed 4 CPU / 8 GiB
        if not online:
            return {}
        return {"cpu": 0.02, "maxcpu": self.cpu_threads, "mem": self._memory_used(),
                "maxmem": self.memory_total, "disk": 4 * GIB, "maxdisk": 64 * GIB, "uptime": 3600}

    def _storage_resource(self, node, name):
        item = super()._storage_resource(node, name)
        if item is not None:
            total, used, _avail = self._space(self.storages[name])
            item.update(disk=used, maxdisk=total)
        return item

    async def _node_status(self, request):
        match = self.resolve(request, "/api2/json")
        data = await self.answer(request, match, await read_params(request), request[USER])
        used = self._memory_used()
        cpuinfo = dict(data.get("cpuinfo") or {})
        cpuinfo.update(cpus=self.cpu_threads, sockets=self.cpu_sockets, cores=self.cpu_cores,
                       model=self.cpu_model,
                       vendor="AuthenticAMD" if "AMD" in self.cpu_model else "GenuineIntel")
        data["cpuinfo"] = cpuinfo
        mem = dict(data.get("memory") or {})
        mem.update(total=self.memory_total, used=used, free=self.memory_total - used,
                   available=self.memory_total - used)
        data["memory"] = mem
        return web.json_response({"data": data})

    # -------------------------------------------------------------- network

    def _net_view(self) -> dict[str, dict]:
        """The configuration as PVE reads it: interfaces.new if there are staged changes."""
        return self.net_staged if self.net_staged is not None else self.net_active

    def _net_stage(self) -> dict[str, dict]:
        if self.net_staged is None:
            self.net_staged = copy.deepcopy(self.net_active)
        return self.net_staged

    @staticmethod
    def _iface_from_params(p: dict, applied: bool) -> dict:
        iface = {k: v for k, v in p.items() if k not in ("node", "iface", "delete", "digest")}
        iface.setdefault("type", "bridge")
        if iface.get("cidr"):
            address, netmask = _prefix_netmask(iface["cidr"])
            iface.update(address=address, netmask=netmask)
        iface["method"] = "static" if iface.get("cidr") or iface.get("address") else "manual"
        iface.setdefault("method6", "manual")
        iface["families"] = ["inet"]
        if iface["type"] == "bridge":
            iface.setdefault("bridge_ports", "")
            iface.setdefault("bridge_stp", "off")
            iface.setdefault("bridge_fd", "0")
        if "autostart" in iface:
            iface["autostart"] = 1 if str(iface["autostart"]) in ("1", "true", "True") else 0
        if applied:
            iface.update(active=1, exists=1)
        return iface

    def _listing(self, ifaces: dict[str, dict]) -> list[dict]:
        out = []
        for prio, (name, iface) in enumerate(ifaces.items(), 2):
            item = {k: v for k, v in iface.items() if k not in ("active", "exists")}
            item["iface"] = name
            item["priority"] = prio
            live = self.net_active.get(name)
            if live is not None and live.get("exists"):
                item.update(active=1, exists=1)
            out.append(item)
        return out

    @staticmethod
    def _interfaces_text(ifaces: dict[str, dict]) -> str:
        """An /etc/network/interfaces rendering, for the `changes` diff."""
        lines = ["auto lo", "iface lo inet loopback", ""]
        for name, i in ifaces.items():
            if i.get("autostart") or i.get("type") == "bridge":
                lines.append(f"auto {name}")
            lines.append(f"iface {name} inet {i.get('method', 'manual')}")
            if i.get("cidr"):
                lines.append(f"\taddress {i['cidr']}")
            if i.get("gateway"):
                lines.append(f"\tgateway {i['gateway']}")
            if i.get("type") == "bridge":
                lines.append(f"\tbridge-ports {i.get('bridge_ports') or 'none'}")
                lines.append(f"\tbridge-stp {i.get('bridge_stp', 'off')}")
                lines.append(f"\tbridge-fd {i.get('bridge_fd', '0')}")
            if i.get("comments"):
                lines.append(f"#{i['comments']}")
            lines.append("")
        return "\n".join(lines) + "\n"

    def _net_changes(self) -> str | None:
        if self.net_staged is None:
            return None
        diff = difflib.unified_diff(self._interfaces_text(self.net_active).splitlines(True),
                                    self._interfaces_text(self.net_staged).splitlines(True),
                                    "/etc/network/interfaces", "/etc/network/interfaces.new")
        return "".join(diff) or None

    @staticmethod
    def _param_error(**fields):
        """PVE's raise_param_exc: a 400 with a message per field."""
        return PveError(400, "Parameter verification failed.", fields)

    def _check_gateway(self, config: dict, iface: str, p: dict) -> None:
        if not p.get("gateway"):
            return
        for name, other in config.items():
            if name != iface and other.get("gateway"):
                raise self._param_error(gateway=f"Default gateway already exists on interface '{name}'.")

    async def _net_list(self, v, user, extra):
        view = self._net_view()
        want = v.get("type")
        items = self._listing(view)
        if want == "any_bridge":
            items = [i for i in items if i.get("type") in BRIDGE_TYPES]
        elif want:
            items = [i for i in items if i.get("type") == want]
        changes = self._net_changes()
        if changes:
            extra["changes"] = changes
        return items

    async def _net_create(self, v, user, extra):
        self.need_quorum()
        iface = v["iface"]
        config = self._net_view()
        if iface in config:
            raise self._param_error(iface="interface already exists")
        self._check_gateway(config, iface, v)
        self._net_stage()[iface] = self._iface_from_params(v, applied=False)
        return None

    async def _net_read(self, v, user, extra):
        iface = self._net_view().get(v["iface"])
        if iface is None:
            raise self._param_error(iface="interface does not exist")
        return self._listing({v["iface"]: iface})[0]

    async def _net_update(self, v, user, extra):
        self.need_quorum()
        name = v["iface"]
        config = self._net_view()
        if name not in config:
            raise self._param_error(iface="interface does not exist")
        self._check_gateway(config, name, v)
        staged = self._net_stage()
        current = dict(staged[name])
        for key in [k for k in re.split(r"[\s,;]+", str(v.get("delete") or "")) if k]:
            current.pop(key, None)
            if key == "cidr":
                current.pop("address", None)
                current.pop("netmask", None)
        current.update({k: x for k, x in v.items() if k not in ("node", "iface", "delete", "digest")})
        staged[name] = self._iface_from_params(current, applied=False)
        return None

    async def _net_delete_iface(self, v, user, extra):
        self.need_quorum()
        name = v["iface"]
        if name not in self._net_view():
            raise self._param_error(iface="interface does not exist")
        del self._net_stage()[name]
        return None

    async def _net_revert(self, v, user, extra):
        self.net_staged = None
        return None

    async def _net_reload(self, v, user, extra):
        self.need_quorum()

        async def body():
            if self.net_staged is not None:
                applied = {}
                for name, iface in self.net_staged.items():
                    iface = dict(iface)
                    iface.update(active=1, exists=1)
                    applied[name] = iface
                self.net_active = applied
                self.net_staged = None
        return await self.task(v["node"], "srvreload", "networking", user, body)

    # ----------------------------------------------------- privilege-separated tokens

    def _privsep(self, user: str | None) -> bool:
        return bool(user) and user in self.privsep_tokens

    def allowed(self, user, path, priv):
        if not self._privsep(user):
            return super().allowed(user, path, priv)
        paths = [path]  # ACL propagation as fakepve's allowed(): the path, its parents, the VM's pools
        if path.startswith("/vms/"):
            vmid = int(path.split("/")[2])
            paths += ["/vms"] + ["/pool/" + name for name, ids in self.pools.items() if vmid in ids]
        elif path.startswith("/storage/"):
            sid = path.split("/")[2]
            paths += ["/pool/" + name for name, meta in self.pool_info.items() if sid in meta["storage"]]
        return any(priv in privs and (granted == "/" or any(p == granted or p.startswith(granted + "/")
                                                            for p in paths))
                   for granted, privs in (self.acl or {}).get(user, []))

    def check_permissions(self, user, perms, values, declared=None):
        if not self._privsep(user):
            return super().check_permissions(user, perms, values, declared)
        # fakepve's rule evaluation without its "root@pam's tokens pass" shortcut (generic.py)
        if perms is None:
            ok, why = False, "user != root@pam"
        elif "check" in perms:
            ok, why = self._check(user, perms["check"], values, declared)
        elif perms.get("user") in ("all", "world"):
            return
        else:
            ok, why = False, "user != root@pam"
        if not ok:
            raise PveError(403, f"Permission check failed ({why})" if why else "Permission check failed")

    async def _permissions(self, v, user):
        who = v.get("userid") or user
        if not self._privsep(who):
            return await super()._permissions(v, user)
        held: dict[str, set] = {}
        for path, privs in (self.acl or {}).get(who, []):
            held.setdefault(path, set()).update(privs)
        if v.get("path") is not None:
            held = {p: ps for p, ps in held.items() if v["path"] == p or p == "/" or v["path"].startswith(p + "/")}
        return {path: dict.fromkeys(sorted(privs), 1) for path, privs in sorted(held.items())}

    def set_token(self, token_id: str, privsep: bool, acl: list[dict]) -> None:
        """The token's privilege separation and its ACL entries ``[{path, privs}]``."""
        if privsep:
            self.privsep_tokens.add(token_id)
        else:
            self.privsep_tokens.discard(token_id)
        self.acl = dict(self.acl or {})
        self.acl[token_id] = [((e.get("path") or "/").rstrip("/") or "/", set(e.get("privs") or [])) for e in acl]

    # ----------------------------------------------------- appliance templates (pveam)

    async def _apl_list(self, v, user, extra):
        """``GET /nodes/{node}/aplinfo``: the appliance index (pve-manager PVE/API2/Nodes.pm
        ``aplinfo``, commit 14a22df35955; its entries are PVE::APLInfo's fields)."""
        return [dict(a) for a in self.appliances]

    async def _apl_download(self, v, user, extra):
        """``POST /nodes/{node}/aplinfo`` (``apl_download``, same file): ``no such template`` for a
        name not in the index, ``storage '<id>' does not support templates`` without ``vztmpl``
        content; a ``download`` task puts ``vztmpl/<template>`` on the storage. The permission
        (Datastore.AllocateTemplate on /storage/{storage}) comes from the API schema."""
        appliance = next((a for a in self.appliances if a.get("template") == v.get("template")), None)
        if appliance is None:
            raise self._param_error(template="no such template")
        store = self.storages.get(v["storage"])
        if store is None:
            raise PveError(500, f"storage '{v['storage']}' does not exist")
        if "vztmpl" not in str(store.get("content", "")).split(","):
            raise PveError(500, f"storage '{v['storage']}' does not support templates")

        async def body():
            await self.pause(5)
            self.store_file(v["storage"], appliance["template"], int(appliance.get("size", 120 * MIB)), "vztmpl")
        return await self.task(v["node"], "download", appliance["template"], user, body,
                               log=[f"downloading {appliance.get('location')} to {appliance['template']}"])

    # --------------------------------------------- OCI images, application containers (PVE 9.1)

    async def _oci_pull(self, v, user, extra):
        """``POST /nodes/{node}/storage/{storage}/oci-registry-pull`` (Proxmox VE 9.1; parameters,
        permissions — Datastore.AllocateTemplate on the storage and Sys.AccessNetwork on the node —
        and ``protected`` from the API schema fakepve ships, pve-docs apidoc.js fetched 2026-10-19).
        The image lands as an OCI archive ``vztmpl/<filename>.tar`` (``filename`` default: the
        reference's name and tag; PVE appends ``.tar`` itself — seen in third-party notes on 9.1,
        not confirmed in pve-manager's source), which ``POST /nodes/{node}/lxc`` takes as
        ``ostemplate``. Modelled: no registry traffic; a storage without ``vztmpl`` is refused as
        for the appliance download."""
        store = self.storages.get(v["storage"])
        if store is None:
            raise PveError(500, f"storage '{v['storage']}' does not exist")
        if "vztmpl" not in str(store.get("content", "")).split(","):
            raise PveError(500, f"storage '{v['storage']}' does not support templates")
        ref = v["reference"]
        name = v.get("filename") or ref.rsplit("/", 1)[-1].replace(":", "_")
        name = name if name.endswith(".tar") else name + ".tar"
        volid = f"{v['storage']}:vztmpl/{name}"

        async def body():
            await self.pause(5)
            self.store_file(v["storage"], name, 300 * MIB, "vztmpl")
            self.oci_images[volid] = ref
        return await self.task(v["node"], "download", name, user, body,
                               log=[f"pulling {ref}", f"saved as {volid}"])

    def _parse_volname(self, store, volname):
        # An OCI archive is a template too: PVE 9.1's pve-storage lets VZTMPL_EXT_RE_1 match a plain
        # ".tar" beside .tar.{gz,xz,zst,bz2} (PVE/Storage.pm; fakepve 0.5.0 knows only the
        # compressed ones, so deleting a pulled image failed with "unable to parse directory
        # volume name").
        if re.fullmatch(r"vztmpl/[^/]+\.tar", volname) and store.get("type", "dir") not in ("lvm", "lvmthin", "zfspool", "rbd"):
            return "vztmpl", None, "raw"
        return super()._parse_volname(store, volname)

    # A deleted OCI archive keeps its record in oci_images: a container made from it keeps its
    # extracted rootfs (and its Plex), as on PVE.

    async def _lxc_create(self, user, v):
        upid = await super()._lxc_create(user, v)
        if str(v.get("ostemplate")) in self.oci_images:
            self.ct_oci[int(v["vmid"])] = str(v["ostemplate"])
        else:  # a container made again under this vmid from another template
            self.ct_oci.pop(int(v["vmid"]), None)
        return upid

    def guest_answer(self, host: str, port: int, path: str) -> tuple[int, str, str] | None:
        """What a guest service at ``host:port`` answers for ``GET path`` (status, content type,
        body), or None when nothing listens there (the caller drops the connection: a refused
        connection, as a stopped container or an image that runs no server gives).

        Modelled: Plex Media Server, the entrypoint of the ``plexinc/pms-docker`` image (its Docker
        Hub page: PMS on port 32400), in a *running* application container created from that
        image's OCI archive whose ``netN`` has ``ip=<host>/..``; ``GET /identity`` — Plex's
        unauthenticated identity endpoint — answers ``<MediaContainer ... machineIdentifier=..
        version=..>`` (the element and attributes as community Plex API references show them; not
        confirmed against a Plex document)."""
        for ct in self.cts:
            if ct.status != "running" or port != 32400:
                continue
            ips = [m.group(1) for k, val in ct.config.items() if re.fullmatch(r"net\d+", k)
                   for m in [re.search(r"(?:^|,)ip=([0-9.]+)", str(val))] if m]
            ref = self.oci_images.get(self.ct_oci.get(ct.vmid, ""), "")
            if host not in ips or "plexinc/pms-docker" not in ref:
                continue
            if path.split("?", 1)[0].rstrip("/") != "/identity":
                return 401, "text/html", "<html><head><title>Unauthorized</title></head></html>"
            version = ref.rsplit(":", 1)[-1] if ":" in ref.rsplit("/", 1)[-1] else "latest"
            ident = uuid.uuid5(uuid.NAMESPACE_URL, f"falkit-twin plex {ct.vmid}").hex
            return 200, "text/xml", ('<?xml version="1.0" encoding="UTF-8"?>\n<MediaContainer size="0" claimed="0" '
                                     f'machineIdentifier="{ident}" version="{version}">\n</MediaContainer>\n')
        return None

    def _twin_routes(self):
        net = "/nodes/{node}/network"
        return [("GET", "/nodes/{node}/aplinfo", self._apl_list), ("POST", "/nodes/{node}/aplinfo", self._apl_download),
                ("POST", "/nodes/{node}/storage/{storage}/oci-registry-pull", self._oci_pull),
                ("GET", net, self._net_list), ("POST", net, self._net_create),
                ("PUT", net, self._net_reload), ("DELETE", net, self._net_revert),
                ("GET", net + "/{iface}", self._net_read), ("PUT", net + "/{iface}", self._net_update),
                ("DELETE", net + "/{iface}", self._net_delete_iface)]

    def _register_stateful(self, router, prefixes):
        # Registered ahead of fakepve's catch-all route (FakePve._build_app calls this before it).
        for method, template, handler in self._twin_routes():
            for prefix in prefixes:
                router.add_route(method, prefix + template, self._twin_handler(template, handler))
        for prefix in prefixes:
            router.add_get(prefix + "/nodes/{node}/status", self._node_status)
        super()._register_stateful(router, prefixes)

    def _twin_handler(self, template, handler):
        async def serve(request):
            match = pve_schema.Match(template, dict(request.match_info), pve_schema.load().paths[template])
            user = request[USER]
            extra: dict = {}

            async def call(_match, values):
                return await handler(values, user, extra)
            data = await self.answer(request, match, await read_params(request), user, call)
            return web.json_response(dict({"data": data}, **extra))
        return serve

    # ------------------------------------------------------ VM start: bridges

    def _missing_bridges(self, vm) -> list[tuple[str, str]]:
        cfg = dict(vm.config)
        for key, val in vm.pending.items():
            if val is None:
                cfg.pop(key, None)
            else:
                cfg[key] = val
        out = []
        for key in sorted(k for k in cfg if re.fullmatch(r"net\d+", k)):
            bridge = _bridge_of(cfg[key])
            live = self.net_active.get(bridge) if bridge else None
            if bridge and not (live and live.get("active") and live.get("type") in BRIDGE_TYPES):
                out.append((key, bridge))
        return out

    async def _do_start(self, vm, user, p):
        missing = self._missing_bridges(vm)
        if not missing or vm.ha_managed or vm.template or (vm.lock and vm.lock != "suspended") \
                or vm.status == "running":
            return await super()._do_start(vm, user, p)
        key, bridge = missing[0]
        tap = f"tap{vm.vmid}i{key[3:]}"
        log = [f"bridge '{bridge}' does not exist",
               f"kvm: -netdev type=tap,id={key},ifname={tap},script=/usr/libexec/qemu-server/pve-bridge,"
               f"downscript=/usr/libexec/qemu-server/pve-bridgedown,vhost=on: network script "
               f"/usr/libexec/qemu-server/pve-bridge failed with status 512"]

        async def body():
            raise TaskError("start failed: QEMU exited with code 1")
        return await self.task(vm.node, "qmstart", vm.vmid, user, body, vm=vm, log=log)

    async def _do_reboot(self, vm, user, p):
        # A reboot is a shutdown plus a fresh start that applies pending changes (qemu-server
        # API2/Qemu.pm vm_reboot); the fresh QEMU hits the same missing bridge as a start
        # (pve-common PVE/Network.pm "bridge '%s' does not exist") and the VM stays stopped.
        # Modelled: the qmreboot task carries the start's log and fails (not confirmed upstream
        # whether PVE reports it in the reboot task or only in the journal).
        missing = self._missing_bridges(vm)
        if not missing or vm.ha_managed or vm.template:
            return await super()._do_reboot(vm, user, p)
        self._need_running(vm)
        self._check_lock(vm)
        key, bridge = missing[0]
        log = [f"bridge '{bridge}' does not exist"]

        async def body():
            await self._powerdown(vm, p)
            vm.apply_pending()
            vm.status = vm.qmpstatus = "stopped"
            raise TaskError("start failed: QEMU exited with code 1")
        return await self.task(vm.node, "qmreboot", vm.vmid, user, body, vm=vm, log=log)

    # ------------------------------------------- VM disks: allocate, hot-plug, detach (unusedN)
    #
    # fakepve 0.5.0's config PUT stores a drive value verbatim (``scsi1=helford:300`` stays the
    # string "helford:300", pending on a running VM) and drops a deleted drive. qemu-server
    # (proxmox/qemu-server e6352be67f70042a7433a3a3c712b36d02f9f7cb) does, in update_vm_api
    # (src/PVE/API2/Qemu.pm):
    # - a set drive goes through create_disks: ``storage:size`` allocates a new volume
    #   (vdisk_alloc) and the value becomes ``helford:vm-201-disk-N,…,size=300G``; an existing
    #   volume id is looked up ("volume helford:vm-201-disk-9 does not exist"); anything else is
    #   refused by the storage's volume-name parser ("unable to parse lvm volume name '300G'");
    # - a deleted drive is added to ``pending.delete``; a replaced drive's old volume is kept;
    # - then, on a running VM, vmconfig_hotplug_pending (src/PVE/QemuServer.pm): with ``disk`` in
    #   ``hotplug`` (default ``network,disk,usb``, confdesc ``hotplug``) a scsi/virtio drive is
    #   plugged at once (vmconfig_update_disk -> vm_deviceplug) or unplugged and its volume
    #   registered as ``unusedN`` (vmconfig_delete_or_detach_drive -> vmconfig_register_unused_drive,
    #   pve-guest-common add_unused_volume: the lowest free N, no duplicates); ide/sata/efidisk/
    #   tpmstate stay pending ("skip"); on a stopped VM vmconfig_apply_pending does the same at once;
    #   ``hotplug`` itself is not a fast-plug option: a new value waits for the next start;
    # - write_vm_config drops an ``unusedN`` whose volume a drive uses again (re-attach);
    # - deleting ``unusedN`` frees the volume (try_deallocate_drive).

    _DISK_KEY = re.compile(r"(scsi|virtio|sata|ide|efidisk|tpmstate)\d+")
    _HOTPLUG_DISK = re.compile(r"(scsi|virtio)\d+")

    @staticmethod
    def _hotplug_features(conf: dict) -> set[str]:
        """parse_hotplug_features: '1' (the default) is network,disk,usb; '0' none."""
        value = str(conf.get("hotplug", "1"))
        if value == "0":
            return set()
        if value == "1":
            value = "network,disk,usb"
        return {f.strip() for f in value.split(",") if f.strip()}

    @staticmethod
    def _drive_volume(value: Any) -> str | None:
        """The volume id of a drive value, or None for a CD-ROM, ``none`` or a path."""
        if value is None:
            return None
        volume, props = split_drive(str(value))
        if props.get("media") == "cdrom" or volume in ("", "none", "cdrom") or ":" not in volume:
            return None
        return volume

    def _add_unused(self, vm, volume: str | None) -> None:
        """vmconfig_register_unused_drive + add_unused_volume (owned volumes only)."""
        if not volume or not re.search(rf"(?:^|/)(?:vm|base)-{vm.vmid}-disk-\d+", volume.split(":", 1)[1]):
            return
        keys = [k for k in vm.config if re.fullmatch(r"unused\d+", k)]
        if any(vm.config[k] == volume for k in keys):
            return
        n = 0
        while f"unused{n}" in vm.config:
            n += 1
        if n >= 256:  # QemuConfig MAX_UNUSED_DISKS
            raise PveError(500, "Too many unused volumes - please delete them first.")
        vm.config[f"unused{n}"] = volume

    def _drop_reused_unused(self, vm) -> None:
        """write_vm_config: "remove 'unusedX' settings if we re-add a volume"."""
        used = {self._drive_volume(v) for k, v in list(vm.config.items()) + list(vm.pending.items())
                if self._DISK_KEY.fullmatch(k)}
        for key in [k for k in vm.config if re.fullmatch(r"unused\d+", k)]:
            if vm.config[key] in used:
                del vm.config[key]

    async def _apply_config(self, vm, user, p):
        p = dict(p)
        sets = {k: str(v) for k, v in p.items() if self._DISK_KEY.fullmatch(k) and self._drive_volume(v) is not None}
        deletes = [k for k in str(p.get("delete", "") or "").split(",") if k]
        unused_deletes = [k for k in deletes if re.fullmatch(r"unused\d+", k)]
        if not sets and not any(self._DISK_KEY.fullmatch(k) for k in deletes) and not unused_deletes:
            return await super()._apply_config(vm, user, p)
        for key, value in sets.items():  # create_disks' checks, before anything is allocated
            self._qm_check_drive(user, vm.vmid, None, key, value, None)
        if unused_deletes:  # what update_vm_api checks before try_deallocate_drive
            self.require(user, f"/vms/{vm.vmid}", "VM.Config.Disk")
        old = {k: vm.config.get(k) for k in list(sets) + deletes}
        made: list[str] = []
        try:
            for key, value in sets.items():
                new, vols = self._qm_new_drive(vm.vmid, key, value, None)
                made += vols
                p[key] = new
            freed = [(k, vm.config.get(k)) for k in unused_deletes if vm.config.get(k)]
            p["delete"] = ",".join(k for k in deletes if k not in unused_deletes)
            if not p["delete"]:
                p.pop("delete")
            await super()._apply_config(vm, user, p)  # privileges, lock, digest; pending or config
        except Exception:
            for volid in made:  # "free allocated images on error"
                self._qm_free(volid)
            raise
        for key, volume in freed:  # deleting unusedN frees the volume
            self._qm_free(volume)
            vm.config.pop(key, None)
        running = vm.status == "running"
        # parse_hotplug_features($conf->{hotplug}): the running config's, not a pending hotplug value
        hot = "disk" in self._hotplug_features(vm.config)
        for key in list(sets) + [k for k in deletes if self._DISK_KEY.fullmatch(k)]:
            if running and not (hot and self._HOTPLUG_DISK.fullmatch(key)):
                continue  # stays pending until the next start ("skip")
            if running and key in vm.pending:  # hot-plug / hot-unplug now
                new = vm.pending.pop(key)
                if new is None:
                    vm.config.pop(key, None)
                else:
                    vm.config[key] = new
            before = self._drive_volume(old.get(key))
            if before and before != self._drive_volume(vm.config.get(key)):
                self._add_unused(vm, before)
        # cleanup_pending (pve-guest-common AbstractConfig): a pending value equal to the config's
        # is no change; setting a drive again cancels its pending delete
        for key in [k for k, v in vm.pending.items() if v is not None and vm.config.get(k) == v]:
            del vm.pending[key]
        self._drop_reused_unused(vm)

    # ---------------------------------------------------------- twin faults

    def _take_task_fault(self, ttype, tid):
        for fault in list(self.task_faults):
            if not re.fullmatch(fault["match"], ttype):
                continue
            if fault.get("vmid") is not None and str(fault["vmid"]) != str(tid):
                continue
            if fault.get("times") is not None:
                fault["times"] -= 1
                if fault["times"] <= 0:
                    self.task_faults.remove(fault)
            return fault
        return None

    async def task(self, node, ttype, tid, user, body, vm=None, lock=True, log=()):
        fault = self._take_task_fault(ttype, tid)
        if fault is not None:
            guest = vm

            async def body():  # noqa: F811 - the injected failure replaces the worker
                await self.pause(fault.get("secs") or 0)
                if ttype in ("qmcreate", "vzcreate", "vzrestore") and guest is not None:
                    # PVE removes the half-created guest when its create worker fails.
                    if guest in self.vms:
                        self.vms.remove(guest)
                    if guest in self.cts:
                        self.cts.remove(guest)
                raise TaskError(fault["message"])
        return await super().task(node, ttype, tid, user, self._noting_change(body), vm=vm, lock=lock, log=log)

    # --- change feed for the twin's lab (issue 17) --------------------------------------------
    # The lab's controllers react to changes instead of polling this API on a tick: the lab
    # long-polls ``GET /twin/changes?since=N`` (authenticated like every request, by fakepve's
    # middleware; outside /api2, so no PVE client ever calls it). It answers ``{"seq": M}`` as soon
    # as M > N, or after ``timeout`` seconds (max 60) with the current seq (and ``served``: how many
    # authenticated requests the process has answered, this one included). A change is: a write
    # request (any method but GET/HEAD/OPTIONS) answered, a task finished, or a PVE-time pause over
    # (fakepve's delayed state changes, e.g. an HA start, follow a pause).

    def _change_state(self) -> tuple[int, asyncio.Event]:
        if not hasattr(self, "_change_seq"):
            self._change_seq, self._change_event = 0, asyncio.Event()
        return self._change_seq, self._change_event

    def mark_changed(self) -> None:
        _seq, ev = self._change_state()
        self._change_seq += 1
        self._change_event = asyncio.Event()
        ev.set()

    def _noting_change(self, body):
        async def noted():
            try:
                return await body()
            finally:
                self.mark_changed()
        return noted

    async def pause(self, secs):
        await super().pause(secs)
        if secs and self.time_scale:
            self.mark_changed()

    @web.middleware
    async def _change_middleware(self, request, handler):
        self._served = getattr(self, "_served", 0) + 1  # authenticated requests answered (tests)
        try:
            return await handler(request)
        finally:
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                self.mark_changed()

    async def _changes(self, request):
        try:
            since = int(request.query.get("since", "-1"))
            timeout = min(60.0, max(0.0, float(request.query.get("timeout", "30"))))
        except ValueError:
            return web.json_response({"errors": {"since": "not an integer"}, "data": None}, status=400)
        seq, ev = self._change_state()
        if seq == since:
            try:
                async with asyncio.timeout(timeout):
                    await ev.wait()
            except TimeoutError:
                pass
        return web.json_response({"data": {"seq": self._change_state()[0], "served": getattr(self, "_served", 0)}})

    def _build_app(self):
        app = super()._build_app()
        app.middlewares.append(self._change_middleware)
        app.router.add_get("/twin/changes", self._changes)
        return app

    def _failure_matches(self, request, generic, suffix):
        # 're:' keys are the control API's http_error faults: a regex on the request path.
        if suffix.startswith("re:"):
            rule = self.failures.get((request.method, suffix))
            if rule and rule["times"] is not None and rule["times"] <= 0:
                return False
            return re.search(suffix[3:], request.path) is not None
        return super()._failure_matches(request, generic, suffix)


class Control:
    """The control API: plain HTTP on 127.0.0.1, for tests and the runbook's fault drills.

    ``POST /faults`` takes one fault; each maps onto fakepve's own mechanism:

    - ``{"kind": "task_error", "match": "qmcreate", "vmid": 201, "message": "...", "count": 1}``:
      the next matching task (type regex, optional vmid) ends ``TASK ERROR: message`` (fakepve's
      task machinery; a failed create removes the half-made guest as PVE does).
    - ``{"kind": "pve_error", "method": "POST", "path": "/nodes/fal/qemu/201/status/start",
      "error": "locked", "count": 1}``: one of PVE's catalogued errors (``pve.fail(error=...)``).
    - ``{"kind": "lock", "vmid": 201, "lock": "backup"}``: ``snapshot_lock`` (config shows
      ``lock: backup``; actions get ``VM is locked (backup)``).
    - ``{"kind": "config_lock", "vmid": 201, "secs": null}``: ``hold_config_lock`` (a task holds
      the config lock: writes time out with ``can't lock file ...``).
    - ``{"kind": "offline_node"}``: ``set_node_offline`` (595 No route to host).
    - ``{"kind": "lost_quorum"}``: ``lose_quorum`` (writes: 500 cluster not ready - no quorum?).
    - ``{"kind": "slow_task", "vmid": 201, "action": "shutdown"|"start"|"stop", "secs": 120}``:
      the guest's ``shutdown_secs``/``start_secs``/``stop_secs`` (PVE seconds; a shutdown slower
      than its timeout fails ``VM quit/powerdown failed - got timeout`` even at time_scale 0).
    - ``{"kind": "start_error", "vmid": 201, "message": "..."}``: the guest's ``start_error``.
    - ``{"kind": "http_error", "status": 500, "count": 3, "path": "regex", "method": "GET",
      "message": "...", "html": false}``: ``pve.fail`` keyed by a path regex (all methods when
      ``method`` is omitted).
    - ``{"kind": "flaky_network", "drop_rate": 0.5, "hang_rate": 0, "seed": 1}``: ``flaky_network``.
    - ``{"kind": "slow_network", "latency": 2.0}``: ``slow_network`` (PVE seconds).
    - ``{"kind": "storage_full", "storage": "helford"}``: the storage's free space becomes 0.

    ``DELETE /faults`` undoes every fault; ``GET /faults`` lists them; ``GET /state`` dumps the lab;
    ``POST /snapshot {"path": ...}`` writes a snapshot (restore with ``--restore FILE``) inside the
    state directory only (mode 0600; another path is 403); ``GET /health`` answers once the PVE API
    is up. Every route needs ``Authorization: Bearer <token>`` (``token``: the constructor's, from
    ``pve-control-token``); without it: 401.
    """

    METHODS = ("GET", "POST", "PUT", "DELETE")

    def __init__(self, pve: TwinPve, state_dir: str, token: str | None = None):
        self.pve = pve
        self.state_dir = state_dir
        self.token = token
        self.faults: list[dict] = []
        self._seq = 0
        self.runner: web.AppRunner | None = None
        self.port = 0

    @web.middleware
    async def _auth(self, request, handler):
        if self.token and not credentials.token_ok(credentials.bearer(request.headers.get("Authorization")),
                                                   self.token):
            return web.json_response(
                {"error": "Unauthorized: the twin's Proxmox control API needs 'Authorization: Bearer <token>' with "
                          "the token of the twin's pve-control-token file (pve.json: control_token_file)"},
                status=401, headers={"WWW-Authenticate": 'Bearer realm="falkit twin pve control"'})
        return await handler(request)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/health", self.health)
        app.router.add_get("/faults", self.list_faults)
        app.router.add_post("/faults", self.add_fault)
        app.router.add_delete("/faults", self.clear_faults)
        app.router.add_get("/state", self.state)
        app.router.add_post("/snapshot", self.snapshot)
        return app

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app())
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()

    # ---------------------------------------------------------------- handlers

    async def health(self, request):
        return web.json_response({"ok": True, "node": self.pve.node})

    async def list_faults(self, request):
        return web.json_response({"faults": [f["spec"] | {"id": f["id"]} for f in self.faults]})

    async def add_fault(self, request):
        try:
            spec = await request.json()
            if not isinstance(spec, dict):
                raise ValueError("a fault is a JSON object")
            undo = await self.apply(spec)
        except (ValueError, KeyError, TypeError, re.error) as e:
            return web.json_response({"error": f"{type(e).__name__}: {e}"}, status=400)
        self._seq += 1
        self.faults.append({"id": self._seq, "spec": spec, "undo": undo})
        return web.json_response({"id": self._seq, "fault": spec})

    async def clear_faults(self, request):
        cleared = len(self.faults)
        await self.clear()
        return web.json_response({"cleared": cleared})

    async def state(self, request):
        data = self.pve.dump_state()
        data["faults"] = [f["spec"] | {"id": f["id"]} for f in self.faults]
        return web.json_response(data)

    async def snapshot(self, request):
        body = {}
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                return web.json_response({"error": "body must be JSON"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"error": "body must be a JSON object"}, status=400)
        try:
            path = credentials.snapshot_path(self.state_dir, body.get("path"), "pve-snapshot.json")
        except ValueError as e:
            return web.json_response({"error": str(e)}, status=403)
        write_json_atomic(str(path), {"format": SNAPSHOT_FORMAT, "created": time.time(),
                                      "config": self.pve.cfg, "state": self.pve.export_state()})
        return web.json_response({"path": str(path)})

    # ---------------------------------------------------------------- faults

    async def clear(self) -> None:
        for fault in reversed(self.faults):
            fault["undo"]()
        self.faults = []

    def _guest(self, vmid):
        guest = self.pve.guest(int(vmid))
        if guest is None:
            raise KeyError(f"no guest {vmid}")
        return guest

    async def apply(self, spec: dict):
        """Apply one fault; returns the function that undoes it."""
        pve = self.pve
        kind = spec.get("kind")
        count = spec.get("count")
        if kind == "task_error":
            re.compile(spec["match"])
            fault = {"match": spec["match"], "vmid": spec.get("vmid"), "times": count,
                     "secs": spec.get("secs"),
                     "message": spec.get("message") or "fault injected by the falkit twin"}
            pve.task_faults.append(fault)
            return lambda: fault in pve.task_faults and pve.task_faults.remove(fault)
        if kind == "pve_error":
            key = (spec["method"], spec["path"])
            pve.fail(spec["method"], spec["path"], error=spec["error"], times=count)
            return lambda: pve.failures.pop(key, None)
        if kind == "http_error":
            pattern = spec.get("path", ".*")
            re.compile(pattern)
            methods = [spec["method"]] if spec.get("method") else list(self.METHODS)
            rule = {"status": int(spec.get("status", 500)), "html": bool(spec.get("html")), "error": None,
                    "message": spec.get("message") or "Internal Server Error", "times": count}
            keys = [(m, "re:" + pattern) for m in methods]
            for k in keys:
                pve.failures[k] = rule  # one rule object: the count is shared across methods

            def undo():
                for k in keys:
                    pve.failures.pop(k, None)
            return undo
        if kind == "lock":
            guest = self._guest(spec["vmid"])
            before = guest.lock
            pve.snapshot_lock(guest.vmid, spec.get("lock", "backup"))
            return lambda: pve.snapshot_lock(guest.vmid, before) if before else pve.unlock(guest.vmid)
        if kind == "config_lock":
            guest = self._guest(spec["vmid"])
            await pve.hold_config_lock(guest.vmid, spec.get("secs"))
            return lambda: pve.release_config_lock(guest.vmid)
        if kind == "offline_node":
            node = spec.get("node", pve.node)
            pve.set_node_offline(node)
            return lambda: pve.set_node_offline(node, offline=False)
        if kind == "lost_quorum":
            pve.lose_quorum()
            return pve.regain_quorum
        if kind == "slow_task":
            guest = self._guest(spec["vmid"])
            attr = {"start": "start_secs", "shutdown": "shutdown_secs", "stop": "stop_secs"}[
                spec.get("action", "shutdown")]
            before = getattr(guest, attr)
            setattr(guest, attr, float(spec.get("secs", 120)))
            return lambda: setattr(guest, attr, before)
        if kind == "start_error":
            guest = self._guest(spec["vmid"])
            before = guest.start_error
            guest.start_error = spec.get("message") or "start failed: QEMU exited with code 1"
            return lambda: setattr(guest, "start_error", before)
        if kind == "flaky_network":
            before = dict(pve.network)
            pve.flaky_network(drop_rate=float(spec.get("drop_rate", 0)), hang_rate=float(spec.get("hang_rate", 0)),
                              hang_secs=float(spec.get("hang_secs", 120)), seed=spec.get("seed"))
            return lambda: pve.network.update(before)
        if kind == "slow_network":
            before = copy.deepcopy(pve.network)
            pve.slow_network(float(spec["latency"]), float(spec.get("jitter", 0)), node=spec.get("node"))
            return lambda: pve.network.update(before)
        if kind == "token_privilege_missing":
            # The operator's token lacks a privilege on a path (an incomplete role or ACL).
            priv, path = str(spec["privilege"]), str(spec.get("path", "/"))
            entries = (pve.acl or {}).get(TOKEN_ID, [])
            before = [(p, set(ps)) for p, ps in entries]
            pve.acl[TOKEN_ID] = [(p, ps - {priv} if p == path else ps) for p, ps in entries]
            return lambda: pve.acl.__setitem__(TOKEN_ID, before)
        if kind == "storage_full":
            store = pve.storages[spec["storage"]]
            before = store["avail"]
            store["avail"] = 0
            return lambda: store.update(avail=before)
        raise ValueError(f"unknown fault kind {kind!r}")


# ------------------------------------------------------------------ process

async def start_guest_listener(pve: TwinPve) -> tuple[asyncio.AbstractServer, int]:
    """The guests' services on loopback: one plain-HTTP listener on 127.0.0.1 (random port) that
    stands in for every ``<guest IP>:<port>`` of the lab. falkit reaches it through the address map
    in connection.json (``"*:32400" -> 127.0.0.1:<port>``) and sends the lab address in ``Host``;
    :meth:`TwinPve.guest_answer` decides what answers. Nothing listening = the connection is closed
    without a reply."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode("latin-1").split("\r\n")
            method, path = (lines[0].split(" ") + ["", ""])[:2]
            hosthdr = next((ln.split(":", 1)[1].strip() for ln in lines[1:] if ln.lower().startswith("host:")), "")
            host, _, port = hosthdr.rpartition(":")
            answer = pve.guest_answer(host, int(port or 0), path) if method == "GET" and port.isdigit() else None
            if answer is not None:
                status, ctype, body = answer
                data = body.encode()
                writer.write(f"HTTP/1.1 {status} {'OK' if status == 200 else 'Unauthorized'}\r\nContent-Type: {ctype}"
                             f"\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _check_loopback(host: str) -> str:
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"pve_process: refusing to listen on {host}: the twin is loopback only")
    return host


async def serve(cfg: dict, state_dir: str, restore: str | None) -> None:
    credentials.private_dir(state_dir)
    host = _check_loopback(cfg.get("host", "127.0.0.2"))
    port = int(cfg.get("port") or 0)
    password = secrets.token_urlsafe(18)
    pve = TwinPve(cfg, password=password, host=host, port=port)
    if restore:
        with open(restore) as fh:
            snap = json.load(fh)
        if snap.get("format") != SNAPSHOT_FORMAT:
            raise SystemExit(f"pve_process: {restore} is not a {SNAPSHOT_FORMAT} snapshot")
        pve.load_config(dict(cfg, vms=[], cts=[], bridges=[], templates=[]))
        pve.import_state(snap["state"])
    else:
        pve.load_config(cfg)
    token = str(uuid.uuid4())
    pve.apitokens[TOKEN_ID] = token
    tok = cfg.get("token")  # {"privsep": bool, "acl": [{"path", "privs"}]}; absent: a token without privsep
    if tok:
        pve.set_token(TOKEN_ID, bool(tok.get("privsep", True)), list(tok.get("acl") or []))
    token_file = os.path.join(state_dir, "pve-token")
    password_file = os.path.join(state_dir, "pve-password")
    _write_private(token_file, token + "\n")
    _write_private(password_file, password + "\n")
    certfile, keyfile, _der = make_cert(state_dir, name="pve", hosts=(host,))
    await pve.start(certfile, keyfile)
    control_token, control_token_file = credentials.make_token_file(state_dir, credentials.PVE_CONTROL_TOKEN)
    control = Control(pve, state_dir, token=control_token)
    await control.start()
    guests, guest_port = await start_guest_listener(pve)

    ready = {"pid": os.getpid(), "host": pve.host, "port": pve.port, "node": pve.node,
             "url": pve.url, "ca_file": os.path.abspath(certfile), "user": "root@pam",
             "token_id": TOKEN_ID, "token_name": TOKEN_ID.split("!", 1)[1],
             "token_file": os.path.abspath(token_file), "password_file": os.path.abspath(password_file),
             "control": f"http://127.0.0.1:{control.port}", "control_token_file": str(control_token_file),
             "time_scale": pve.time_scale,
             # lab address -> loopback stand-in ("*" = any guest IP); falkit's Target applies it
             "address_map": {"*:32400": f"127.0.0.1:{guest_port}"}}
    ready_file = os.path.join(state_dir, "pve.json")
    write_json_atomic(ready_file, ready)
    print(f"pve_process: listening on {pve.url}, control {ready['control']}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        try:
            with open(ready_file) as fh:
                if json.load(fh).get("pid") == os.getpid():
                    os.unlink(ready_file)
        except (OSError, ValueError):
            pass
        guests.close()
        await control.stop()
        await pve.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m falkit.twin.pve_process", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="pve config JSON (see supervisor.pve_config_from_spec)")
    parser.add_argument("--state-dir", required=True, help="directory for the cert, token and pve.json")
    parser.add_argument("--restore", help="snapshot file written by POST /snapshot")
    args = parser.parse_args(argv)
    with open(args.config) as fh:
        cfg = json.load(fh)
    asyncio.run(serve(cfg, args.state_dir, args.restore))
    return 0


if __name__ == "__main__":
    sys.exit(main())
