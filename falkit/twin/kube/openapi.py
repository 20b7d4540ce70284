"""OpenAPI v3 documents: ``/openapi/v3`` and ``/openapi/v3/{api/v1 | apis/{group}/{version}}``.

What kubectl needs from them (kubectl v1.32, client-go ``openapi3``):

* ``kubectl apply|create -f`` with validation on (the default ``--validate=strict``) asks, per object,
  whether the server does field validation itself: ``cli-runtime/pkg/resource/
  query_param_verifier_v3.go`` looks in the object's group-version document for the PATCH operation
  whose ``x-kubernetes-group-version-kind`` is the object's GVK and for a ``fieldValidation``
  parameter on it; if it is there, kubectl sends ``?fieldValidation=Strict`` and the server
  validates (``falkit.twin.kube.validation``). For a custom resource whose group-version has no
  document it checks the Namespace PATCH operation instead. Without these documents kubectl stops
  with "failed to download openapi".
* ``kubectl explain`` finds the schema in ``components.schemas`` whose
  ``x-kubernetes-group-version-kind`` (a list) names the resource's GVK and renders its fields,
  following ``$ref`` (wrapped in ``allOf`` when the reference carries a description, as the
  apiserver publishes them).

Sources: built-in kinds' schemas are Kubernetes' own OpenAPI definitions as shipped by the
``kubernetes-validate`` package (``kubernetes-json-schema/v1.<minor>.0-local/_definitions.json``, a
JSON-Schema rendering of ``api/openapi-spec/swagger.json`` of that Kubernetes release: ``type:
[t, "null"]`` is turned back into ``type: t``, ``#/$defs/`` into ``#/components/schemas/``, the
``apiVersion``/``kind`` enums it adds are dropped, ``IntOrString`` becomes ``type: string, format:
int-or-string``, ``Quantity`` ``type: string``). Custom resources' schemas are their CRD version's
``openAPIV3Schema`` with ``metadata`` referring to ``ObjectMeta``, named like the apiextensions
apiserver names them (reversed group, version, kind: ``io.cilium.v2alpha1.CiliumLoadBalancerIPPool``).

The root lists each group-version with a ``serverRelativeURL`` carrying ``?hash=`` of the
document's inputs (the apiserver uses the document's hash; clients cache by URL).
"""

from __future__ import annotations

import hashlib
import json
import threading
from functools import lru_cache
from pathlib import Path

from .builtin import Registry, ResourceType
from .defaults import KUBE_GIT_VERSION

_REF = "#/components/schemas/"
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_lock = threading.Lock()


def _defs_file() -> Path:
    import kubernetes_validate  # noqa: PLC0415 - kubernetes-validate's schemas are located only when a schema is first needed

    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    minor = int(KUBE_GIT_VERSION.lstrip("v").split(".")[1])
    have = sorted((int(p.name.split(".")[1]), p) for p in base.glob("v1.*.0-local"))
    best = min(have, key=lambda mp: (abs(mp[0] - minor), -mp[0]))[1]
    return best / "_definitions.json"


def _convert(s):
    """A kubernetes-validate JSON Schema node back to an OpenAPI v3 schema node."""
    if isinstance(s, list):
        return [_convert(x) for x in s]
    if not isinstance(s, dict):
        return s
    if "$ref" in s:
        ref = _REF + s["$ref"].rsplit("/", 1)[-1]
        rest = {k: _convert(v) for k, v in s.items() if k != "$ref"}
        return {"allOf": [{"$ref": ref}], **rest} if rest else {"$ref": ref}
    out = {}
    for k, v in s.items():
        if k in ("$schema", "$id"):
            continue
        if k == "type" and isinstance(v, list):
            kinds = [t for t in v if t != "null"]
            out["type"] = kinds[0] if kinds else "object"
        elif k == "properties":
            out[k] = {pk: _convert(pv) for pk, pv in v.items()}
        else:
            out[k] = _convert(v)
    return out


@lru_cache(maxsize=1)
def builtin_schemas() -> dict[str, dict]:
    """Kubernetes' definitions, as OpenAPI v3 component schemas (name -> schema)."""
    raw = json.loads(_defs_file().read_text())["$defs"]
    out = {}
    for name, d in raw.items():
        s = _convert(d)
        props = s.get("properties") or {}
        if s.get("x-kubernetes-group-version-kind"):
            for p in ("apiVersion", "kind"):
                if isinstance(props.get(p), dict):
                    props[p].pop("enum", None)
        if name.endswith("util.intstr.IntOrString"):
            s = {"description": s.get("description", "IntOrString is a type that can hold an int32 or a string."),
                 "type": "string", "format": "int-or-string"}
        elif name.endswith("api.resource.Quantity"):
            s = {"description": s.get("description", "Quantity is a fixed-point representation of a number."),
                 "type": "string"}
        out[name] = s
    return out


@lru_cache(maxsize=1)
def _by_gvk() -> dict[tuple[str, str, str], str]:
    idx = {}
    for name, s in builtin_schemas().items():
        for g in s.get("x-kubernetes-group-version-kind") or []:
            idx[(g.get("group", ""), g.get("version", ""), g.get("kind", ""))] = name
    return idx


def _refs(node, acc: set[str]) -> None:
    if isinstance(node, dict):
        r = node.get("$ref")
        if isinstance(r, str) and r.startswith(_REF):
            acc.add(r[len(_REF):])
        for v in node.values():
            _refs(v, acc)
    elif isinstance(node, list):
        for v in node:
            _refs(v, acc)


def _closure(roots: list[str], pool: dict[str, dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    todo = list(roots)
    while todo:
        n = todo.pop()
        if n in out or n not in pool:
            continue
        out[n] = pool[n]
        acc: set[str] = set()
        _refs(pool[n], acc)
        todo.extend(acc - out.keys())
    return out


def crd_schema_name(group: str, version: str, kind: str) -> str:
    return ".".join(reversed(group.split("."))) + f".{version}.{kind}"


def _crd_schema(rt: ResourceType, schema: dict | None) -> dict:
    s = json.loads(json.dumps(schema)) if schema else {"type": "object",
                                                       "x-kubernetes-preserve-unknown-fields": True}
    s.setdefault("type", "object")
    props = s.setdefault("properties", {})
    props["apiVersion"] = {"description": "APIVersion defines the versioned schema of this representation of an "
                                          "object. Servers should convert recognized schemas to the latest internal "
                                          "value, and may reject unrecognized values. More info: https://git.k8s.io/"
                                          "community/contributors/devel/sig-architecture/api-conventions.md#resources",
                           "type": "string"}
    props["kind"] = {"description": "Kind is a string value representing the REST resource this object represents. "
                                    "Servers may infer this from the endpoint the client submits requests to. Cannot "
                                    "be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/"
                                    "devel/sig-architecture/api-conventions.md#types-kinds", "type": "string"}
    props["metadata"] = {"allOf": [{"$ref": _REF + _OBJECT_META}],
                         "description": "Standard object's metadata. More info: https://git.k8s.io/community/"
                                        "contributors/devel/sig-architecture/api-conventions.md#metadata"}
    s["x-kubernetes-group-version-kind"] = [{"group": rt.group, "kind": rt.kind, "version": rt.version}]
    return s


_Q = {"in": "query", "schema": {"type": "string", "uniqueItems": True}}
_PARAMS = {
    "dryRun": "When present, indicates that modifications should not be persisted. An invalid or unrecognized "
              "dryRun directive will result in an error response and no further processing of the request. Valid "
              "values are: - All: all dry run stages will be processed",
    "fieldManager": "fieldManager is a name associated with the actor or entity that is making these changes.",
    "fieldValidation": "fieldValidation instructs the server on how to handle objects in the request "
                       "(POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore - Warn "
                       "(default) - Strict",
}


def _param(name: str, desc: str, typ: str = "string") -> dict:
    return {"name": name, "description": desc, **_Q, "schema": {"type": typ, "uniqueItems": True}}


def _op(action: str, rt: ResourceType, schema_ref: str, write: bool, patch: bool = False) -> dict:
    gvk = {"group": rt.group, "kind": rt.kind, "version": rt.version}
    params = []
    if write:
        params = [_param(n, d) for n, d in _PARAMS.items()]
        if patch:
            params.append(_param("force", "Force is going to \"force\" Apply requests.", "boolean"))
    content = {"application/json": {"schema": {"$ref": schema_ref}}}
    op = {"description": f"{action} {rt.kind}", "operationId": f"{action}{rt.kind}",
          "tags": [rt.group.replace(".", "") + "_" + rt.version if rt.group else "core_v1"],
          "parameters": params,
          "responses": {"200": {"description": "OK", "content": content}, "401": {"description": "Unauthorized"}},
          "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk}
    if write:
        types = (["application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json",
                  "application/strategic-merge-patch+json"] if patch else ["*/*"])
        op["requestBody"] = {"content": {t: {"schema": {"$ref": schema_ref}} for t in types}, "required": True}
    return op


def _paths(rt: ResourceType, schema_ref: str) -> dict:
    base = f"/apis/{rt.group}/{rt.version}" if rt.group else "/api/v1"
    ns = "/namespaces/{namespace}" if rt.namespaced else ""
    coll = f"{base}{ns}/{rt.plural}"
    name_param = {"name": "name", "in": "path", "description": f"name of the {rt.kind}", "required": True,
                  "schema": {"type": "string", "uniqueItems": True}}
    ns_param = [{"name": "namespace", "in": "path", "description": "object name and auth scope, such as for teams "
                 "and projects", "required": True, "schema": {"type": "string", "uniqueItems": True}}] if ns else []
    verbs = set(rt.verbs)
    item = {"parameters": [name_param] + ns_param}
    if "get" in verbs:
        item["get"] = _op("get", rt, schema_ref, False)
    if "update" in verbs:
        item["put"] = _op("put", rt, schema_ref, True)
    if "patch" in verbs:
        item["patch"] = _op("patch", rt, schema_ref, True, patch=True)
    if "delete" in verbs:
        item["delete"] = _op("delete", rt, schema_ref, False)
    colls = {"parameters": ns_param}
    if "list" in verbs:
        colls["get"] = _op("list", rt, schema_ref, False)
    if "create" in verbs:
        colls["post"] = _op("post", rt, schema_ref, True)
    return {coll: colls, f"{coll}/{{name}}": item}


class OpenAPIV3:
    """Builds and caches the documents for a store's registry (CRDs included)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[str, bytes]] = {}
        self._digests: dict[int, tuple[object, str]] = {}

    def _schema_digest(self, schema) -> str:
        """A CRD version schema's digest, memoised per schema object (a CRD update registers new
        schema objects, so a changed CRD gets a new digest)."""
        if schema is None:
            return "-"
        hit = self._digests.get(id(schema))
        if hit is not None and hit[0] is schema:
            return hit[1]
        digest = hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()
        if len(self._digests) > 256:
            self._digests.clear()
        self._digests[id(schema)] = (schema, digest)
        return digest

    @staticmethod
    def _gv_path(group: str, version: str) -> str:
        return f"apis/{group}/{version}" if group else "api/v1"

    def _inputs(self, reg: Registry, crd_schemas: dict, group: str, version: str) -> tuple[list, str]:
        types = sorted(reg.in_group_version(group, version), key=lambda t: t.plural)
        h = hashlib.sha512()
        h.update(f"{KUBE_GIT_VERSION}|{group}/{version}".encode())
        for rt in types:
            h.update(f"|{rt.plural}:{rt.kind}:{rt.namespaced}:{','.join(rt.verbs)}".encode())
            if rt.crd:
                h.update(self._schema_digest(crd_schemas.get((rt.group, rt.version, rt.plural))).encode())
        return types, h.hexdigest().upper()

    def root(self, reg: Registry, crd_schemas: dict) -> dict:
        paths = {}
        for g, vs in sorted(reg.group_versions().items()):
            for v in vs:
                _, digest = self._inputs(reg, crd_schemas, g, v)
                p = self._gv_path(g, v)
                paths[p] = {"serverRelativeURL": f"/openapi/v3/{p}?hash={digest}"}
        return {"paths": paths}

    def document(self, reg: Registry, crd_schemas: dict, gv_path: str) -> bytes | None:
        """The JSON bytes of one group-version document, or None when not served."""
        segs = gv_path.strip("/").split("/")
        if segs == ["api", "v1"]:
            group, version = "", "v1"
        elif len(segs) == 3 and segs[0] == "apis":
            group, version = segs[1], segs[2]
        else:
            return None
        types, digest = self._inputs(reg, crd_schemas, group, version)
        if not types:
            return None
        with _lock:
            hit = self._cache.get(gv_path)
            if hit and hit[0] == digest:
                return hit[1]
        pool = dict(builtin_schemas())
        by_gvk = _by_gvk()
        roots, paths = [], {}
        for rt in types:
            if rt.crd:
                name = crd_schema_name(rt.group, rt.version, rt.kind)
                pool[name] = _crd_schema(rt, crd_schemas.get((rt.group, rt.version, rt.plural)))
            else:
                name = by_gvk.get((rt.group, rt.version, rt.kind))
                if name is None:
                    continue
                lst = by_gvk.get((rt.group, rt.version, rt.kind + "List"))
                if lst:
                    roots.append(lst)
            roots.append(name)
            paths.update(_paths(rt, _REF + name))
        schemas = _closure(roots + ["io.k8s.apimachinery.pkg.apis.meta.v1.Status"], pool)
        doc = {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": KUBE_GIT_VERSION},
               "paths": dict(sorted(paths.items())), "components": {"schemas": dict(sorted(schemas.items()))}}
        body = json.dumps(doc, separators=(",", ":")).encode()
        with _lock:
            self._cache[gv_path] = (digest, body)
        return body
