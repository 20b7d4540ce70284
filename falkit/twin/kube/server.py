"""The aiohttp application that speaks the Kubernetes REST API over a :class:`Store`.

Routes: ``/version``, ``/healthz|livez|readyz``, ``/api...`` and ``/apis...`` (everything else,
e.g. ``/lab/...``, is free for other sub-apps). ``/openapi/v3`` and its group-version documents are
served (see :mod:`falkit.twin.kube.openapi`: what kubectl's validation and ``explain`` read);
``/openapi/v2`` answers 404 (it is protobuf-only for client-go; kubectl uses v3 when a server has it).

Request paths (API conventions, "Resources"): ``/api/v1[/namespaces/{ns}]/{plural}[/{name}[/{sub}]]``
and ``/apis/{group}/{version}/...``, plus the legacy ``.../watch/...`` prefix. Verbs: GET (get,
list, ``?watch=true``), POST (create, 201), PUT (replace), PATCH (json / merge / strategic /
apply), DELETE (single and collection). Query parameters honoured: ``dryRun=All``,
``fieldManager``, ``fieldValidation``, ``force``, ``labelSelector``, ``fieldSelector``, ``limit``,
``continue``, ``resourceVersion``, ``timeoutSeconds``, ``allowWatchBookmarks``, ``tailLines``,
``includeObject``. Errors are ``Status`` objects; warnings go in ``Warning: 299 - "..."`` headers.

Authentication (when the app has an authenticator: ``build_app(..., authenticate=fn)``, which the
twin's lab process always sets) works as kube-apiserver's filter chain does: a bearer token
(``Authorization: Bearer <token>``; scheme case-insensitive; an empty token or another scheme
counts as no credentials — k8s.io/apiserver/pkg/authentication/request/bearertoken/bearertoken.go)
is checked first; an invalid token fails the request even on a health path (the union
authenticator fails on error); a request without credentials is anonymous only on ``/livez``,
``/readyz`` and ``/healthz`` (the structured AuthenticationConfiguration ``anonymous: {enabled:
true, conditions: [{path: /livez}, {path: /readyz}, {path: /healthz}]}`` — KEP-4633, stable in
Kubernetes 1.34; the example of Talos' ``KubeAuthenticationConfig`` document). Every failure is
the apiserver's ``401`` Status ``Unauthorized`` (k8s.io/apiserver/pkg/endpoints/filters/
authentication.go @ 02cf58102a61b6d1e021e256381ff750573ce55d: ``apierrors.NewUnauthorized(
"Unauthorized")``), which kubectl prints as "error: You must be logged in to the server
(Unauthorized)". Paths under ``/lab`` are left to the lab API's own check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable

from aiohttp import web

from . import discovery
from .errors import ApiError, bad_request, method_not_allowed
from .objects import clone
from .openapi import OpenAPIV3
from .patch import merge_patch, parse_patch_body
from .store import PATCH_TYPES, Store
from .table import to_table

log = logging.getLogger(__name__)
STORE_KEY = web.AppKey("kube_store", Store)
BOOKMARK_KEY = web.AppKey("kube_bookmark_interval", float)
OPENAPI_KEY = web.AppKey("kube_openapi", OpenAPIV3)
# The token check: a function token -> bool (None in the app: no authentication, in-process tests).
AUTH_KEY = web.AppKey("kube_authenticate", object)
ANONYMOUS_PATHS = ("/livez", "/readyz", "/healthz")
_JSON = "application/json"


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _json(obj, status: int = 200, warnings: list | None = None) -> web.Response:
    headers = {"Warning": ", ".join(f'299 - "{w}"'.replace('\n', ' ') for w in warnings)} if warnings else None
    return web.Response(text=_dumps(obj), status=status, content_type=_JSON, headers=headers)


def _error(e: ApiError) -> web.Response:
    headers = {"Retry-After": str(e.retry_after)} if e.retry_after is not None else None
    return web.Response(text=_dumps(e.status()), status=e.code, content_type=_JSON, headers=headers)


def bearer_token(request: web.Request) -> str | None:
    """The bearer token as kube-apiserver reads it (bearertoken.go): None when none is presented."""
    auth = request.headers.get("Authorization", "").strip()
    parts = auth.split(" ")
    if len(parts) < 2 or parts[0].lower() != "bearer" or not parts[1]:
        return None
    return parts[1]


def unauthorized() -> ApiError:
    """kube-apiserver's answer to a request it could not authenticate."""
    return ApiError(401, "Unauthorized", "Unauthorized")


def _authenticated(request: web.Request) -> bool:
    authenticate: Callable[[str], bool] | None = request.app.get(AUTH_KEY)  # type: ignore[assignment]
    if authenticate is None or request.path == "/lab" or request.path.startswith("/lab/"):
        return True
    token = bearer_token(request)
    if token is None:
        return request.path in ANONYMOUS_PATHS
    return bool(authenticate(token))


@web.middleware
async def _api_middleware(request: web.Request, handler):
    if not _authenticated(request):
        return _error(unauthorized())
    store = request.app[STORE_KEY]
    fault = store.faults.check(request.method, request.path)
    if fault is not None:
        return _error(fault)
    try:
        return await handler(request)
    except ApiError as e:
        return _error(e)
    except web.HTTPException:
        raise
    except Exception as e:  # noqa: BLE001 - answer like an apiserver, keep serving
        log.exception("internal error on %s %s", request.method, request.path)
        return _error(ApiError(500, "InternalError", f"Internal error occurred: {e}"))


def _not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def _manager(request: web.Request) -> str:
    fm = request.query.get("fieldManager")
    if fm:
        return fm
    ua = request.headers.get("User-Agent", "unknown")
    return ua.split("/", 1)[0] or "unknown"


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1")


def _dry_run(request: web.Request, body: dict | None = None) -> bool:
    vals = request.query.getall("dryRun", [])
    if body and isinstance(body.get("dryRun"), list):
        vals += body["dryRun"]
    for v in vals:
        if v != "All":
            raise bad_request(f'dryRun: Unsupported value: "{v}": supported values: "All"')
    return bool(vals)


async def _body(request: web.Request):
    raw = await request.read()
    ctype = request.content_type
    if request.method == "PATCH":
        return parse_patch_body(ctype, raw)
    if not raw:
        return None
    if "yaml" in ctype:
        return parse_patch_body("application/apply-patch+yaml", raw)
    try:
        return json.loads(raw)
    except ValueError as e:
        raise bad_request(f"error decoding request body: {e}") from None


@contextlib.contextmanager
def _decode_errors(rt):
    """Create and update decode the body, so a strict decoding error gets the handlers' prefix
    (k8s.io/apiserver/pkg/endpoints/handlers/rest.go ``transformDecodeError``: "%s in version %q cannot
    be handled as a %s: %v"); patches report it bare (handlers/patch.go)."""
    try:
        yield
    except ApiError as e:
        if e.code == 400 and e.message.startswith("strict decoding error"):
            e.message = f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {e.message}'
            e.args = (e.message,)
        raise


def _wants_table(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "as=Table" in accept


async def version(request: web.Request) -> web.Response:
    return _json(discovery.version_info(request.app[STORE_KEY].server_version))


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def openapi(request: web.Request) -> web.Response:
    raise _not_found()


def _crd_schemas(store: Store) -> dict:
    with store._lock:
        return {k: v.schema for k, v in store._schemas.items()}


async def openapi_v3(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    oa = request.app[OPENAPI_KEY]
    tail = request.match_info.get("tail", "").strip("/")
    if not tail:
        with store._lock:
            return _json(oa.root(store.registry, _crd_schemas(store)))
    def build():
        with store._lock:  # the registry changes under this lock (CRDs); the first build takes ~0.1-0.5 s
            return oa.document(store.registry, _crd_schemas(store), tail)
    body = await asyncio.get_running_loop().run_in_executor(None, build)
    if body is None:
        raise _not_found()
    headers = {"Cache-Control": "public, immutable"} if request.query.get("hash") else None
    return web.Response(body=body, content_type=_JSON, headers=headers)


async def core(request: web.Request) -> web.Response:
    tail = [s for s in request.match_info.get("tail", "").split("/") if s]
    store = request.app[STORE_KEY]
    if not tail:
        return _json(discovery.api_versions(f"{request.host}"))
    if tail[0] != "v1":
        raise _not_found()
    if len(tail) == 1:
        return _json(discovery.resource_list(store.registry, "", "v1"))
    return await _resource(request, "", "v1", tail[1:])


async def groups(request: web.Request) -> web.Response:
    tail = [s for s in request.match_info.get("tail", "").split("/") if s]
    store = request.app[STORE_KEY]
    if not tail:
        return _json(discovery.api_group_list(store.registry))
    if len(tail) == 1:
        doc = discovery.api_group(store.registry, tail[0])
        if doc is None:
            raise _not_found()
        return _json(doc)
    if len(tail) == 2:
        doc = discovery.resource_list(store.registry, tail[0], tail[1])
        if doc is None:
            raise _not_found()
        return _json(doc)
    return await _resource(request, tail[0], tail[1], tail[2:])


async def _resource(request: web.Request, group: str, version: str, segs: list[str]) -> web.StreamResponse:
    store: Store = request.app[STORE_KEY]
    legacy_watch = False
    if segs[0] == "watch":
        legacy_watch, segs = True, segs[1:]
    ns = None
    if len(segs) >= 3 and segs[0] == "namespaces" and not (group == "" and segs[2] in ("status", "finalize")):
        ns, segs = segs[1], segs[2:]
    if not segs or len(segs) > 3:
        raise _not_found()
    rt = store.registry.get(group, version, segs[0])
    if rt is None or (ns is not None and not rt.namespaced):
        raise _not_found()
    name = segs[1] if len(segs) > 1 else None
    sub = segs[2] if len(segs) > 2 else None
    if sub and sub not in rt.subresources:
        raise _not_found()
    q = request.query
    m = request.method
    fv = q.get("fieldValidation", "Warn")
    warnings: list[str] = []

    if name is None:
        if m == "GET":
            if legacy_watch or _flag(request, "watch"):
                return await _watch(request, rt, ns)
            lst = store.list_rt(rt, ns, label_selector=q.get("labelSelector"), field_selector=q.get("fieldSelector"),
                                limit=int(q["limit"]) if q.get("limit") else None, continue_=q.get("continue"))
            if _wants_table(request):
                return _json(to_table(rt, lst["items"], lst["metadata"], q.get("includeObject", "Metadata")))
            return _json(lst)
        if m == "POST":
            body = await _body(request)
            with _decode_errors(rt):
                obj = store.create_rt(rt, body, namespace=ns, dry_run=_dry_run(request),
                                      field_manager=_manager(request), field_validation=fv, warnings=warnings)
            return _json(obj, 201, warnings)
        if m == "DELETE":
            body = await _body(request) or {}
            lst = store.delete_collection_rt(rt, ns, label_selector=q.get("labelSelector"),
                                             field_selector=q.get("fieldSelector"), dry_run=_dry_run(request, body))
            return _json(lst)
        raise method_not_allowed()

    if sub == "log":
        if m != "GET":
            raise method_not_allowed()
        tail = int(q["tailLines"]) if q.get("tailLines") else None
        return web.Response(text=store.pod_log(ns, name, tail_lines=tail, container=q.get("container")),
                            content_type="text/plain")
    if sub == "scale":
        return await _scale(request, rt, ns, name)
    if sub == "finalize":
        sub = None  # namespace finalize: a plain update of spec.finalizers
    if m == "GET":
        obj = store.get_rt(rt, name, ns)
        if _wants_table(request):
            return _json(to_table(rt, [obj], {"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                                  q.get("includeObject", "Metadata")))
        return _json(obj)
    if m == "PUT":
        body = await _body(request)
        with _decode_errors(rt):
            obj = store.update_rt(rt, body, name, ns, subresource=sub, dry_run=_dry_run(request),
                                  field_manager=_manager(request), field_validation=fv, warnings=warnings)
        return _json(obj, 200, warnings)
    if m == "PATCH":
        ptype = PATCH_TYPES.get(request.content_type)
        if ptype is None:
            raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                           f"accepted media types include: {', '.join(PATCH_TYPES)}")
        body = await _body(request)
        existed = (ns if rt.namespaced else None, name) in store._coll(rt)
        mgr = q.get("fieldManager") if ptype == "apply" else _manager(request)
        obj = store.patch_rt(rt, name, ns, ptype, body, subresource=sub, field_manager=mgr,
                             force=_flag(request, "force"), dry_run=_dry_run(request), field_validation=fv,
                             warnings=warnings)
        return _json(obj, 201 if (ptype == "apply" and not existed) else 200, warnings)
    if m == "DELETE":
        body = await _body(request) or {}
        obj = store.delete_rt(rt, name, ns, dry_run=_dry_run(request, body), preconditions=body.get("preconditions"))
        return _json(obj)
    raise method_not_allowed()


async def _scale(request: web.Request, rt, ns, name) -> web.Response:
    """``autoscaling/v1 Scale`` view of ``spec.replicas``."""
    store: Store = request.app[STORE_KEY]

    def view(o):
        md = o["metadata"]
        sel = ((o.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                             if k in md},
                "spec": {"replicas": (o.get("spec") or {}).get("replicas", 0)},
                "status": {"replicas": (o.get("status") or {}).get("replicas", 0),
                           "selector": ",".join(f"{k}={v}" for k, v in sel.items())}}
    cur = store.get_rt(rt, name, ns)
    if request.method == "GET":
        return _json(view(cur))
    if request.method not in ("PUT", "PATCH"):
        raise method_not_allowed()
    body = await _body(request)
    if request.method == "PATCH":
        if request.content_type != "application/merge-patch+json" and \
                request.content_type != "application/strategic-merge-patch+json":
            raise ApiError(415, "UnsupportedMediaType", "scale supports merge patches only")
        body = merge_patch(view(cur), body)
    replicas = ((body or {}).get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or replicas < 0:
        raise ApiError(422, "Invalid", f"Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value")
    obj = store.patch_rt(rt, name, ns, "merge", {"spec": {"replicas": replicas}}, field_manager=_manager(request),
                         dry_run=_dry_run(request))
    return _json(view(obj))


async def _watch(request: web.Request, rt, ns) -> web.StreamResponse:
    store: Store = request.app[STORE_KEY]
    q = request.query
    timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else None
    gen = store.watch_rt(rt, ns, label_selector=q.get("labelSelector"), field_selector=q.get("fieldSelector"),
                         resource_version=q.get("resourceVersion"), bookmarks=_flag(request, "allowWatchBookmarks"),
                         bookmark_interval=request.app[BOOKMARK_KEY], timeout=timeout)
    resp = web.StreamResponse(status=200, headers={"Content-Type": _JSON, "Transfer-Encoding": "chunked"})
    await resp.prepare(request)
    try:
        async for etype, obj in gen:
            await resp.write((_dumps({"type": etype, "object": obj}) + "\n").encode())
    except ApiError as e:
        await resp.write((_dumps({"type": "ERROR", "object": e.status()}) + "\n").encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        await gen.aclose()
    try:
        await resp.write_eof()
    except ConnectionResetError:
        pass
    return resp


def build_app(store: Store | None = None, *, bookmark_interval: float = 60.0,
              authenticate: Callable[[str], bool] | None = None) -> web.Application:
    """The emulator as an aiohttp app. Add more routes (e.g. ``/lab/...``) or sub-apps to it freely;
    only ``/api``, ``/apis``, ``/version``, ``/openapi`` and health paths are taken.
    ``authenticate(token) -> bool`` switches authentication on (see the module docstring); it can
    also be set later as ``app[AUTH_KEY]`` before the app starts."""
    app = web.Application(middlewares=[_api_middleware], client_max_size=64 * 1024 * 1024)
    if authenticate is not None:
        app[AUTH_KEY] = authenticate
    app[STORE_KEY] = store if store is not None else Store()
    app[BOOKMARK_KEY] = bookmark_interval
    app[OPENAPI_KEY] = OpenAPIV3()
    r = app.router
    r.add_get("/version", version)
    r.add_get("/version/", version)
    for p in ("/healthz", "/livez", "/readyz"):
        r.add_get(p, healthz)
    r.add_get("/openapi/v3", openapi_v3)
    r.add_get("/openapi/v3/{tail:.*}", openapi_v3)
    r.add_get("/openapi/{tail:.*}", openapi)
    r.add_route("*", "/api", core)
    r.add_route("*", "/api/{tail:.*}", core)
    r.add_route("*", "/apis", groups)
    r.add_route("*", "/apis/{tail:.*}", groups)
    return app


def kubeconfig(server: str, *, context: str = "falkit-twin", token: str | None = None,
               ca_data: str | None = None) -> dict:
    """A kubeconfig dict for ``server``; ``token``: the bearer token the app's authenticator accepts
    (keep the file 0600: it is the cluster's admin credential); ``ca_data``: the base64 PEM CA of
    an https ``server``."""
    cluster = {"server": server, **({"certificate-authority-data": ca_data} if ca_data else {})}
    return {"apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": context, "cluster": cluster}],
            "users": [{"name": context, "user": {"token": token} if token else {}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context,
                                                       "namespace": "default"}}],
            "preferences": {}}


__all__ = ["AUTH_KEY", "build_app", "bearer_token", "kubeconfig", "STORE_KEY", "clone", "unauthorized"]
