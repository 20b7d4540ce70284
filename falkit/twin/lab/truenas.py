"""The TrueNAS twin: the subset of TrueNAS SCALE's REST API v2.0 falkit uses, under
``/lab/truenas/api/v2.0`` (``setup(app, ctx)`` mounts it; ``truenas_routes(ctx)`` lists the routes).

Routes (TrueNAS SCALE API v2.0 names and payloads):

* ``GET /interface``; ``POST /interface`` (``{name, type, aliases, ...}``);
  ``PUT /interface/id/{name}`` (``{aliases: [{type: "INET", address, netmask}], ipv4_dhcp}``): staged,
  ``GET /interface/has_pending_changes`` says so; ``POST /interface/commit``
  (``{rollback, checkin_timeout}``) applies them; ``POST /interface/checkin`` keeps them -- without a
  checkin within ``checkin_timeout`` (default 60 s, scaled by the time factor) they roll back, as
  TrueNAS does; ``GET /interface/checkin_waiting``.
* ``GET/POST /sharing/nfs``, ``PUT/DELETE /sharing/nfs/id/{id}``: ``path`` (the newer singular
  form), ``networks``, ``hosts``, ``enabled``, ``ro``, ``comment``. A path outside ``/mnt/`` is a 422
  with TrueNAS's validation shape ``{"sharingnfs_create.path": [{"message", "errno"}]}``.
* ``GET /service``; ``PUT /service/id/{id}`` (``{enable}``); ``POST /service/start``
  (``{service: "nfs"}``).

Auth: ``Authorization: Bearer <key>``; the key is ``<state dir>/truenas-key`` (0600, created when the lab starts).
The API answers only while the TrueNAS VM (``spec.truenas.vmid``) exists and runs in
the twin's Proxmox; otherwise 503 "connection refused" (the live NAS would not answer at all).
State lives in ``ctx.extra["truenas"]`` (snapshotted with the lab).
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

from aiohttp import web

PREFIX = "/lab/truenas/api/v2.0"
SERVICES = ("nfs", "cifs", "ssh", "iscsitarget", "ups", "snmp")


def key_file(ctx) -> Path:  # noqa: ANN001
    return Path(ctx.state_dir) / "truenas-key"


def api_key(ctx) -> str:  # noqa: ANN001
    """The twin's API key (created 0600 on first use)."""
    p = key_file(ctx)
    if not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"1-{secrets.token_hex(32)}\n")
    return p.read_text().strip()


def _state(ctx) -> dict[str, Any]:  # noqa: ANN001
    st = ctx.extra.setdefault("truenas", {})
    if not st:
        st.update(interfaces={}, pending=None, checkin_deadline=None, shares=[], next_share=1,
                  services=[{"id": i + 1, "service": s, "enable": False, "state": "STOPPED", "pids": []}
                            for i, s in enumerate(SERVICES)])
    return st


def _iface(name: str, mac: str = "", aliases: list | None = None, dhcp: bool = False) -> dict:
    return {"id": name, "name": name, "fake": False, "type": "PHYSICAL", "ipv4_dhcp": dhcp, "ipv6_auto": False,
            "description": "", "mtu": None, "aliases": list(aliases or []),
            "state": {"name": name, "link_address": mac, "link_state": "LINK_STATE_UP",
                      "aliases": [dict(a, type="INET") for a in aliases or []]}}


async def _vm(ctx):  # noqa: ANN001, ANN202
    t = ctx.spec.truenas
    if t is None or ctx.pve is None:
        return None
    try:
        vm = await ctx.pve.vm(t.vmid)
    except Exception:  # noqa: BLE001 - Proxmox down: the NAS is unreachable too
        return None
    return vm if vm is not None and vm.running else None


def _err(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"message": message, **extra}, status=status)


def _invalid(ns: str, field: str, message: str) -> web.Response:
    return web.json_response({f"{ns}.{field}": [{"message": message, "errno": 22}]}, status=422)


def truenas_routes(ctx) -> list[web.RouteDef]:  # noqa: ANN001, C901 - one closure per route
    """The aiohttp routes of the TrueNAS twin, bound to ``ctx``."""

    async def guard(request: web.Request):
        vm = await _vm(ctx)
        if vm is None:
            return _err(503, "connection refused: the TrueNAS VM is not running"), None
        if request.headers.get("Authorization", "") != f"Bearer {api_key(ctx)}":
            return _err(401, "Not authenticated"), None
        st = _state(ctx)
        if not st["interfaces"]:
            macs = vm.macs
            for i, slot in enumerate(sorted(macs)):
                name = f"ens{18 + i}"
                st["interfaces"][name] = _iface(name, macs[slot], dhcp=(i == 0))
        if st["checkin_deadline"] is not None and time.time() > st["checkin_deadline"]:
            st["interfaces"], st["checkin_deadline"] = st.pop("rollback_to"), None
        return None, st

    def handler(fn):
        async def wrapped(request: web.Request) -> web.StreamResponse:
            bad, st = await guard(request)
            if bad is not None:
                return bad
            body = {}
            if request.can_read_body:
                try:
                    body = await request.json()
                except ValueError:
                    return _err(400, "Invalid JSON")
            out = fn(request, st, body)
            ctx.notify()
            return out if isinstance(out, web.StreamResponse) else web.json_response(out)
        return wrapped

    def list_ifaces(_r, st, _b):
        return list(st["interfaces"].values())

    def create_iface(_r, st, b):
        name = b.get("name") or f"br{len(st['interfaces'])}"
        if name in st["interfaces"]:
            return _invalid("interface_create", "name", "Interface name is already in use.")
        base = (st["pending"] or st["interfaces"]).copy()
        base[name] = _iface(name, aliases=b.get("aliases"))
        base[name]["type"] = b.get("type", "BRIDGE")
        st["pending"] = base
        return base[name]

    def update_iface(r, st, b):
        name = r.match_info["name"]
        base = {k: dict(v) for k, v in (st["pending"] or st["interfaces"]).items()}
        if name not in base:
            return _err(404, f"Interface {name} not found")
        for a in b.get("aliases") or []:
            if a.get("type", "INET") != "INET" or not a.get("address") or not isinstance(a.get("netmask"), int):
                return _invalid("interface_update", "aliases", "Each alias needs type INET, address and an "
                                                               "integer netmask.")
        if "aliases" in b:
            base[name]["aliases"] = [{"type": "INET", "address": a["address"], "netmask": a["netmask"]}
                                     for a in b["aliases"]]
        if "ipv4_dhcp" in b:
            base[name]["ipv4_dhcp"] = bool(b["ipv4_dhcp"])
        st["pending"] = base
        return base[name]

    def pending(_r, st, _b):
        return st["pending"] is not None

    def commit(_r, st, b):
        if st["pending"] is None:
            return None
        st["rollback_to"] = st["interfaces"]
        st["interfaces"] = st["pending"]
        for i in st["interfaces"].values():
            i["state"]["aliases"] = [dict(a) for a in i["aliases"]]
        st["pending"] = None
        if b.get("rollback", True):
            st["checkin_deadline"] = time.time() + ctx.scaled(b.get("checkin_timeout", 60)) + 0.5
        return None

    def checkin(_r, st, _b):
        st["checkin_deadline"] = None
        st.pop("rollback_to", None)
        return None

    def checkin_waiting(_r, st, _b):
        d = st["checkin_deadline"]
        return None if d is None else max(0.0, d - time.time())

    def list_shares(_r, st, _b):
        return st["shares"]

    def _share_fields(b: dict, ns: str) -> dict | web.Response:
        if "paths" in b and "path" not in b:
            return _invalid(ns, "paths", "Field was not expected")
        path = b.get("path")
        if not isinstance(path, str) or not path.startswith("/mnt/"):
            return _invalid(ns, "path", "Path must reside within a pool mount point (/mnt/...).")
        return {"path": path, "networks": list(b.get("networks") or []), "hosts": list(b.get("hosts") or []),
                "enabled": bool(b.get("enabled", True)), "ro": bool(b.get("ro", False)),
                "comment": b.get("comment", ""), "aliases": [], "maproot_user": b.get("maproot_user"),
                "maproot_group": b.get("maproot_group"), "mapall_user": None, "mapall_group": None,
                "security": [], "locked": False}

    def create_share(_r, st, b):
        f = _share_fields(b, "sharingnfs_create")
        if isinstance(f, web.Response):
            return f
        if any(s["path"] == f["path"] for s in st["shares"]):
            return _invalid("sharingnfs_create", "path", "Export conflicts with another export on the same path.")
        share = {"id": st["next_share"], **f}
        st["next_share"] += 1
        st["shares"].append(share)
        return share

    def update_share(r, st, b):
        sid = int(r.match_info["id"])
        share = next((s for s in st["shares"] if s["id"] == sid), None)
        if share is None:
            return _err(404, f"NFS share {sid} does not exist")
        f = _share_fields({**share, **b}, "sharingnfs_update")
        if isinstance(f, web.Response):
            return f
        share.update(f)
        return share

    def delete_share(r, st, _b):
        sid = int(r.match_info["id"])
        before = len(st["shares"])
        st["shares"] = [s for s in st["shares"] if s["id"] != sid]
        return True if len(st["shares"]) < before else _err(404, f"NFS share {sid} does not exist")

    def list_services(_r, st, _b):
        return st["services"]

    def update_service(r, st, b):
        sid = int(r.match_info["id"])
        svc = next((s for s in st["services"] if s["id"] == sid), None)
        if svc is None:
            return _err(404, f"Service {sid} does not exist")
        if "enable" in b:
            svc["enable"] = bool(b["enable"])
        return svc["id"]

    def start_service(_r, st, b):
        svc = next((s for s in st["services"] if s["service"] == b.get("service")), None)
        if svc is None:
            return _invalid("service.start", "service", f"{b.get('service')!r}: service not found")
        svc["state"], svc["pids"] = "RUNNING", [1000 + svc["id"]]
        return True

    return [
        web.get(f"{PREFIX}/interface", handler(list_ifaces)),
        web.post(f"{PREFIX}/interface", handler(create_iface)),
        web.put(f"{PREFIX}/interface/id/{{name}}", handler(update_iface)),
        web.get(f"{PREFIX}/interface/has_pending_changes", handler(pending)),
        web.post(f"{PREFIX}/interface/commit", handler(commit)),
        web.post(f"{PREFIX}/interface/checkin", handler(checkin)),
        web.get(f"{PREFIX}/interface/checkin_waiting", handler(checkin_waiting)),
        web.get(f"{PREFIX}/sharing/nfs", handler(list_shares)),
        web.post(f"{PREFIX}/sharing/nfs", handler(create_share)),
        web.put(f"{PREFIX}/sharing/nfs/id/{{id}}", handler(update_share)),
        web.delete(f"{PREFIX}/sharing/nfs/id/{{id}}", handler(delete_share)),
        web.get(f"{PREFIX}/service", handler(list_services)),
        web.put(f"{PREFIX}/service/id/{{id}}", handler(update_service)),
        web.post(f"{PREFIX}/service/start", handler(start_service)),
    ]


def setup(app: web.Application, ctx) -> None:  # noqa: ANN001 - LabContext
    """Mount the TrueNAS twin on the lab app (called by ``falkit.twin.lab.api.install``). The API key is
    written now, so a client can read it from the state dir before the first request."""
    api_key(ctx)
    app.add_routes(truenas_routes(ctx))
