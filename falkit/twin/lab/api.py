"""The lab API (loopback JSON under ``/lab``; table in docs/ARCHITECTURE.md) and ``install``.

Routes: ``POST /lab/talos/apply|bootstrap``, ``GET /lab/talos/kubeconfig|config|read|health|version|service``
(the twin's Talos model, used by the ``talosctl`` stand-in ``falkit.twin.tools.talosctl``),
``GET /lab/helm/releases``, ``GET|PUT|DELETE /lab/helm/releases/{ns}/{name}`` (+ ``/history``),
``GET|POST|DELETE /lab/faults``, ``POST /lab/snapshot``, ``GET /lab/state``.
Errors answer ``{"error": message, "issues": [...]}`` with the status of the failure (400 schema,
404 not found / maintenance mode, 409 conflict, 502 node unreachable, 500 injected failure).

Authentication: once the lab process sets ``app[LAB_TOKEN_KEY]`` (it always does; in-process test
apps may leave it unset), every ``/lab`` route needs ``Authorization: Bearer <token>`` with the
token of the twin's ``lab-token`` file (0600; connection.json's ``lab_token_file``); anything else
is ``401 {"error": "Unauthorized: ..."}``. ``/lab/truenas/...`` is the TrueNAS stand-in, which checks
its own API key (``truenas-key``) as TrueNAS does. ``POST /lab/snapshot`` writes only inside the
twin's state directory (0600; :func:`falkit.twin.credentials.snapshot_path`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from falkit.model.errors import TwinError
from falkit.model.spec import load_spec
from falkit.twin import credentials

from . import faults as faults_mod
from . import helm, nodes, talos
from .before import apply_before
from .context import LabContext
from .pvereader import PveReader
from .registry import CONTROLLERS, controller_modules

log = logging.getLogger(__name__)
CTX_KEY = web.AppKey("lab_ctx", LabContext)
LAB_TOKEN_KEY = web.AppKey("lab_token", str)
SNAPSHOT_FORMAT = "falkit-twin-lab/1"
DEFAULT_SPEC = Path(__file__).resolve().parents[3] / "parameters" / "fal.yaml"


def _ctx(request: web.Request) -> LabContext:
    return request.app[CTX_KEY]


def _error(e: Exception) -> web.Response:
    status = getattr(e, "status", 400 if isinstance(e, ValueError) else 500)
    return web.json_response({"error": getattr(e, "message", str(e)), "issues": getattr(e, "issues", [])},
                             status=status)


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text=json.dumps({"error": "the body must be JSON"}),
                                 content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "the body must be a JSON object"}),
                                 content_type="application/json")
    return body


@web.middleware
async def lab_auth_middleware(request: web.Request, handler):
    """Refuse a ``/lab`` request without the lab token (see the module docstring)."""
    path = request.path
    expected = request.app.get(LAB_TOKEN_KEY)
    if expected and (path == "/lab" or path.startswith("/lab/")) and not path.startswith("/lab/truenas/"):
        if not credentials.token_ok(credentials.bearer(request.headers.get("Authorization")), expected):
            return web.json_response(
                {"error": "Unauthorized: the twin's lab API needs 'Authorization: Bearer <token>' with the token "
                          "of the twin's lab-token file (connection.json: lab_token_file)", "issues": []},
                status=401, headers={"WWW-Authenticate": 'Bearer realm="falkit twin lab API"'})
    return await handler(request)


def _node_param(request: web.Request, body: dict | None = None) -> str:
    node = (body or {}).get("node") or request.query.get("node")
    if not node or not talos.is_ip(str(node)):
        raise web.HTTPBadRequest(text=json.dumps({"error": f"'node' must be an IPv4 address, got {node!r}"}),
                                 content_type="application/json")
    return str(node)


def _talos_client(request: web.Request) -> Any:
    """How the talosctl stand-in connects (falkit.twin.lab.talos.handshake): header
    ``X-Talos-Client: insecure`` or ``talosconfig`` (+ ``X-Talos-CA`` / ``X-Talos-Crt``, base64 PEM);
    absent: an internal caller (no TLS modelled)."""
    mode = request.headers.get("X-Talos-Client")
    if mode is None:
        return talos.INTERNAL
    if mode == "insecure":
        return None
    return {"ca": request.headers.get("X-Talos-CA", ""), "crt": request.headers.get("X-Talos-Crt", "")}


def _handles(fn):
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await fn(request)
        except (TwinError, ValueError) as e:
            return _error(e)
    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


# --------------------------------------------------------------------------------- talos

@_handles
async def talos_apply(request: web.Request) -> web.Response:
    body = await _json(request)
    node = _node_param(request, body)
    if not isinstance(body.get("config"), str):
        return web.json_response({"error": "'config' must be the machine config as YAML text"}, status=400)
    return web.json_response(await talos.apply(_ctx(request), node, body["config"], bool(body.get("insecure")),
                                               _talos_client(request), bool(body.get("dry_run"))))


@_handles
async def talos_bootstrap(request: web.Request) -> web.Response:
    body = await _json(request)
    return web.json_response(await talos.bootstrap(_ctx(request), _node_param(request, body), _talos_client(request)))


@_handles
async def talos_kubeconfig(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    if request.query.get("node"):
        await talos.running_node(ctx, _node_param(request), _talos_client(request))
    server = ctx.kube_server or f"{request.scheme}://{request.host}"
    return web.json_response({"kubeconfig": talos.kubeconfig(ctx, server)})


@_handles
async def talos_config(request: web.Request) -> web.Response:
    return web.json_response(await talos.get_config(_ctx(request), _node_param(request), _talos_client(request)))


@_handles
async def talos_read(request: web.Request) -> web.Response:
    path = request.query.get("path") or ""
    text = await talos.read(_ctx(request), _node_param(request), path, _talos_client(request))
    return web.json_response({"node": request.query["node"], "path": path, "content": text})


@_handles
async def talos_health(request: web.Request) -> web.Response:
    node = _node_param(request) if request.query.get("node") else None
    return web.json_response(await talos.health(_ctx(request), node, _talos_client(request)))


@_handles
async def talos_version(request: web.Request) -> web.Response:
    return web.json_response(await talos.version(_ctx(request), _node_param(request), _talos_client(request)))


@_handles
async def talos_service(request: web.Request) -> web.Response:
    return web.json_response(await talos.service(_ctx(request), _node_param(request), request.query.get("id", ""),
                                                 _talos_client(request)))


# --------------------------------------------------------------------------------- helm

@_handles
async def helm_list(request: web.Request) -> web.Response:
    return web.json_response({"releases": helm.listing(_ctx(request), request.query.get("namespace"))})


@_handles
async def helm_get(request: web.Request) -> web.Response:
    m = request.match_info
    return web.json_response(helm.get(_ctx(request), m["ns"], m["name"]).public())


@_handles
async def helm_history(request: web.Request) -> web.Response:
    m = request.match_info
    return web.json_response({"history": helm.get(_ctx(request), m["ns"], m["name"]).history})


@_handles
async def helm_put(request: web.Request) -> web.Response:
    m = request.match_info
    body = await _json(request)
    chart, version = body.get("chart"), body.get("version")
    values = body.get("values") or {}
    if not isinstance(chart, str) or not isinstance(version, str) or not isinstance(values, dict):
        return web.json_response({"error": "body needs 'chart' (string), 'version' (string), 'values' (object)"},
                                 status=400)
    return web.json_response(helm.upsert(_ctx(request), m["ns"], m["name"], chart, version, values))


@_handles
async def helm_delete(request: web.Request) -> web.Response:
    m = request.match_info
    return web.json_response(helm.uninstall(_ctx(request), m["ns"], m["name"]))


# --------------------------------------------------------------------------------- faults, state, snapshot

@_handles
async def faults_get(request: web.Request) -> web.Response:
    return web.json_response(faults_mod.state(_ctx(request)))


@_handles
async def faults_post(request: web.Request) -> web.Response:
    rec = faults_mod.inject(_ctx(request), await _json(request))
    return web.json_response({"fault": rec}, status=201)


@_handles
async def faults_delete(request: web.Request) -> web.Response:
    return web.json_response({"cleared": faults_mod.clear(_ctx(request))})


def snapshot_data(ctx: LabContext) -> dict[str, Any]:
    return {"format": SNAPSHOT_FORMAT, "kube": ctx.store.dump(), "lab": ctx.dump()}


def restore_data(ctx: LabContext, data: dict[str, Any]) -> None:
    if data.get("format") != SNAPSHOT_FORMAT:
        raise ValueError(f"not a {SNAPSHOT_FORMAT} snapshot")
    ctx.store.load(data["kube"])
    ctx.load(data["lab"])
    if ctx.bootstrapped:
        ctx.store.faults.api_up()
    else:
        ctx.store.faults.api_down()


@_handles
async def snapshot(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    body = await _json(request)
    try:
        path = credentials.snapshot_path(ctx.state_dir, body.get("path"), "lab-snapshot.json")
    except ValueError as e:
        return web.json_response({"error": str(e), "issues": []}, status=403)
    credentials.write_private(path, json.dumps(snapshot_data(ctx)))
    return web.json_response({"path": str(path)})


@_handles
async def state(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    return web.json_response({
        "bootstrapped": ctx.bootstrapped, "kube_api_available": talos.api_available(ctx),
        "time_factor": ctx.time_factor,
        "talos_nodes": {ip: {"hostname": n.hostname, "mode": n.mode, "type": n.machine_type, "vmid": n.vmid,
                             "labels": n.labels, "kernel_modules": n.kernel_modules, "hugepages": n.hugepages,
                             "addresses": n.addresses}
                        for ip, n in sorted(ctx.talos_nodes.items())},
        "releases": helm.listing(ctx),
        "volumes": {k: {"namespace": v.namespace, "claim": v.claim, "driver": v.driver, "size_bytes": v.size_bytes,
                        "checksum": v.checksum, "state": v.state} for k, v in sorted(ctx.volumes.items())},
        "faults": ctx.faults.to_json()})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/lab/talos/apply", talos_apply)
    r.add_post("/lab/talos/bootstrap", talos_bootstrap)
    r.add_get("/lab/talos/kubeconfig", talos_kubeconfig)
    r.add_get("/lab/talos/config", talos_config)
    r.add_get("/lab/talos/read", talos_read)
    r.add_get("/lab/talos/health", talos_health)
    r.add_get("/lab/talos/version", talos_version)
    r.add_get("/lab/talos/service", talos_service)
    r.add_get("/lab/helm/releases", helm_list)
    r.add_get("/lab/helm/releases/{ns}/{name}", helm_get)
    r.add_get("/lab/helm/releases/{ns}/{name}/history", helm_history)
    r.add_put("/lab/helm/releases/{ns}/{name}", helm_put)
    r.add_delete("/lab/helm/releases/{ns}/{name}", helm_delete)
    r.add_get("/lab/faults", faults_get)
    r.add_post("/lab/faults", faults_post)
    r.add_delete("/lab/faults", faults_delete)
    r.add_post("/lab/snapshot", snapshot)
    r.add_get("/lab/state", state)


# --------------------------------------------------------------------------------- install

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The lab's options for ``lab_process``'s argument parser."""
    parser.add_argument("--spec", type=Path, default=None, help=f"lab spec YAML (default {DEFAULT_SPEC})")
    parser.add_argument("--state", choices=("before", "empty"), default="before",
                        help="before: the pre-migration lab; empty: nothing bootstrapped")
    parser.add_argument("--time-factor", type=float, default=0.0,
                        help="real seconds per lab second (0: every lab duration is instant)")
    parser.add_argument("--pve-conn", type=Path, default=None, help="the pve process's pve.json (default STATE_DIR/pve.json)")
    parser.add_argument("--restore", type=Path, default=None, help="a snapshot written by POST /lab/snapshot")


def build_context(store, args) -> LabContext:  # noqa: ANN001 - kube Store, argparse.Namespace
    spec_arg = getattr(args, "spec", None)
    spec = spec_arg if hasattr(spec_arg, "cluster") else load_spec(spec_arg or DEFAULT_SPEC)
    state_dir = Path(getattr(args, "state_dir", None) or ".")
    pve_conn = getattr(args, "pve_conn", None) or state_dir / "pve.json"
    return LabContext(store, spec, state_dir, PveReader(pve_conn), float(getattr(args, "time_factor", 0.0) or 0.0))


def install(app: web.Application, store, args) -> LabContext:  # noqa: ANN001 - kube Store, argparse.Namespace
    """Mount the lab API on ``app``, and on startup build the initial state and start the
    controllers (``nodes.run`` + ``falkit.twin.lab.registry.CONTROLLERS``); cancel them on cleanup.

    ``args`` has ``spec`` (path or LabSpec), ``state`` (before|empty), ``time_factor``,
    ``pve_conn`` (path of pve.json), ``restore`` (snapshot path or None), ``state_dir``.
    """
    ctx = build_context(store, args)
    app[CTX_KEY] = ctx
    add_routes(app)
    modules = controller_modules()
    for mod in modules:
        if callable(getattr(mod, "setup", None)):
            mod.setup(app, ctx)
    tasks: list[asyncio.Task] = []

    async def on_startup(_app: web.Application) -> None:
        ctx.attach()
        restore = getattr(args, "restore", None)
        if restore:
            restore_data(ctx, json.loads(Path(restore).read_text()))
        elif getattr(args, "state", "before") == "before":
            apply_before(ctx)
        else:
            store.faults.api_down()  # no cluster until `talos bootstrap`
        for fn in [nodes.run, *CONTROLLERS]:
            tasks.append(asyncio.get_running_loop().create_task(_guard(fn, ctx), name=f"lab:{fn.__module__}"))

    async def on_cleanup(_app: web.Application) -> None:
        # Cancel until done: a controller may swallow one cancellation (e.g. inside wait_for).
        for _ in range(50):
            pending = [t for t in tasks if not t.done()]
            if not pending:
                break
            for t in pending:
                t.cancel()
            await asyncio.wait(pending, timeout=0.2)
        for t in tasks:
            if t.done() and not t.cancelled():
                with contextlib.suppress(Exception):
                    t.result()
        tasks.clear()
        ctx.detach()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return ctx


async def _guard(fn, ctx: LabContext) -> None:  # noqa: ANN001
    """Run a controller; if it returns or dies, log and restart it after a moment."""
    ctx.enter_controller(getattr(fn, "__module__", repr(fn)))  # its deadlines are its own
    while True:
        try:
            await fn(ctx)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - keep the lab alive; the log says what broke
            log.exception("lab controller %s failed; restarting", getattr(fn, "__module__", fn))
        await asyncio.sleep(max(ctx.tick or 0.5, 0.05))
