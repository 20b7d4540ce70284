"""Validation of incoming objects.

Built-in kinds: the OpenAPI-derived JSON Schemas bundled by ``kubernetes-validate`` (the
``-strict`` variants, whose ``additionalProperties: false`` lets us find unknown fields), loaded
once and cached per kind, plus a few semantic rules the schemas cannot express (name syntax, PVC
``spec.accessModes`` / ``resources.requests.storage``, Service port ranges, Deployment selector vs
template labels). Unknown fields follow ``fieldValidation`` (API conventions / KEP-2885):
``Strict`` => 400 BadRequest "strict decoding error: unknown field", otherwise dropped, with a
``Warning`` when ``Warn`` (the default).

Custom resources: the CRD version's structural ``openAPIV3Schema`` — defaulting, pruning of
unknown fields (unless ``x-kubernetes-preserve-unknown-fields``) and value validation (types,
required, enum, pattern, formats, ranges, nullable, ``x-kubernetes-int-or-string``).
"""

from __future__ import annotations

import ipaddress
import json
import re
import threading
from functools import lru_cache
from pathlib import Path

import jsonschema
from referencing import Registry, Resource

from .errors import ApiError, bad_request, cause

SCHEMA_VERSION = "1.32.0"  # matches the emulated apiserver version (see server.KUBE_VERSION)

_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Kinds whose names must be DNS-1123 labels rather than subdomains.
_LABEL_NAMED = {"Namespace", "Service"}


def _schema_dir(strict: bool = True) -> Path:
    import kubernetes_validate  # noqa: PLC0415 - kubernetes-validate's schemas are located only when a schema is first needed

    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    return base / f"v{SCHEMA_VERSION}-local{'-strict' if strict else ''}"


_lock = threading.Lock()


@lru_cache(maxsize=1)
def _registry() -> Registry:
    defs = json.loads((_schema_dir() / "_definitions.json").read_text())
    return Resource.from_contents(defs) @ Registry()


@lru_cache(maxsize=128)
def _validator(api_version: str, kind: str):
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = _schema_dir() / f"{kind.lower()}-{api}.json"
    if not path.exists():
        return None
    schema = json.loads(path.read_text())
    with _lock:
        reg = Resource.from_contents(schema) @ _registry()
    return jsonschema.Draft202012Validator(schema, registry=reg)


def json_path(parts) -> str:
    s = ""
    for p in parts:
        s += f"[{p}]" if isinstance(p, int) else (f".{p}" if s else str(p))
    return s


def _unknown_fields(err) -> list[str]:
    props = set((err.schema or {}).get("properties") or {})
    return [k for k in err.instance if k not in props] if isinstance(err.instance, dict) else []


def validate_builtin(obj: dict, *, field_validation: str = "Warn", warnings: list | None = None) -> list[dict]:
    """Validate a built-in object in place (unknown fields dropped); return 422 causes."""
    causes: list[dict] = []
    v = _validator(obj.get("apiVersion", ""), obj.get("kind", ""))
    if v is not None:
        unknown: list[tuple[list, str]] = []
        for err in v.iter_errors(obj):
            path = list(err.absolute_path)
            if err.validator == "additionalProperties" and err.validator_value is False:
                unknown += [(path, k) for k in _unknown_fields(err)]
            elif err.validator == "required":
                missing = err.message.split("'")[1] if "'" in err.message else ""
                causes.append(cause(json_path(path + [missing]), "Required value", "FieldValueRequired"))
            else:
                where = json_path(path)
                causes.append(cause(where, f"Invalid value: {json.dumps(err.instance)[:80]}: "
                                           f"{where} in body {_short(err)}"))
        if unknown:
            names = [json_path(p + [k]) for p, k in unknown]
            if field_validation == "Strict":
                raise bad_request("strict decoding error: " + ", ".join(f'unknown field "{n}"' for n in names))
            for p, k in unknown:
                parent = obj
                for seg in p:
                    parent = parent[seg]
                parent.pop(k, None)
            if warnings is not None and field_validation != "Ignore":
                warnings += [f'unknown field "{n}"' for n in names]
    causes += semantic_rules(obj)
    return causes


def _short(err) -> str:
    if err.validator == "type":
        t = err.validator_value
        t = [x for x in t if x != "null"] if isinstance(t, list) else [t]
        return f"must be of type {' or '.join(t)}"
    if err.validator == "enum":
        return "Unsupported value: supported values: " + ", ".join(json.dumps(x) for x in err.validator_value)
    return err.message[:200]


def check_name(kind: str, name: str, field: str = "metadata.name") -> list[dict]:
    rx = _DNS1123_LABEL if kind in _LABEL_NAMED else _DNS1123_SUBDOMAIN
    limit = 63 if kind in _LABEL_NAMED else 253
    if not name or len(name) > limit or not rx.match(name):
        return [cause(field, f'Invalid value: "{name}": a lowercase RFC 1123 '
                             f'{"label" if kind in _LABEL_NAMED else "subdomain"} must consist of lower case '
                             "alphanumeric characters, '-' or '.', and must start and end with an "
                             "alphanumeric character")]
    return []


def semantic_rules(obj: dict) -> list[dict]:
    """Rules from the apiserver's per-kind validation that the OpenAPI schemas do not carry."""
    kind = obj.get("kind")
    spec = obj.get("spec")
    out: list[dict] = []
    if kind == "PersistentVolumeClaim":
        if not isinstance(spec, dict):
            return [cause("spec.accessModes", "Required value: at least 1 access mode is required",
                          "FieldValueRequired"),
                    cause("spec.resources[storage]", "Required value", "FieldValueRequired")]
        if not spec.get("accessModes") and not spec.get("dataSourceRef"):
            out.append(cause("spec.accessModes", "Required value: at least 1 access mode is required",
                             "FieldValueRequired"))
        if "storage" not in ((spec.get("resources") or {}).get("requests") or {}):
            out.append(cause("spec.resources[storage]", "Required value", "FieldValueRequired"))
    elif kind == "Service" and isinstance(spec, dict):
        stype = spec.get("type", "ClusterIP")
        ports = spec.get("ports") or []
        if not ports and stype != "ExternalName" and spec.get("clusterIP") != "None":
            out.append(cause("spec.ports", "Required value", "FieldValueRequired"))
        for i, p in enumerate(ports):
            if isinstance(p, dict) and isinstance(p.get("port"), int) and not 1 <= p["port"] <= 65535:
                out.append(cause(f"spec.ports[{i}].port", f"Invalid value: {p['port']}: must be "
                                                          "between 1 and 65535, inclusive"))
        if stype not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
            out.append(cause("spec.type", f'Unsupported value: "{stype}": supported values: '
                                          '"ClusterIP", "ExternalName", "LoadBalancer", "NodePort"',
                             "FieldValueNotSupported"))
    elif kind in ("Deployment", "ReplicaSet", "DaemonSet", "StatefulSet") and isinstance(spec, dict):
        sel = ((spec.get("selector") or {}).get("matchLabels")) or {}
        labels = (((spec.get("template") or {}).get("metadata") or {}).get("labels")) or {}
        if sel and any(labels.get(k) != v for k, v in sel.items()):
            out.append(cause("spec.template.metadata.labels",
                             f"Invalid value: {json.dumps(labels)}: `selector` does not match template `labels`"))
    elif kind == "Pod" and isinstance(spec, dict):
        if not spec.get("containers"):
            out.append(cause("spec.containers", "Required value", "FieldValueRequired"))
    return out


# --- custom resources ---------------------------------------------------------------------------

_FORMATS = jsonschema.FormatChecker(formats=())


def _is_ip(v):
    if not isinstance(v, str):
        return True
    ipaddress.ip_address(v)
    return True


def _is_cidr(v):
    if not isinstance(v, str):
        return True
    ipaddress.ip_network(v, strict=False)
    return True


_FORMATS.checks("ipv4", raises=ValueError)(lambda v: not isinstance(v, str) or ipaddress.IPv4Address(v))
_FORMATS.checks("ipv6", raises=ValueError)(lambda v: not isinstance(v, str) or ipaddress.IPv6Address(v))
_FORMATS.checks("ip", raises=ValueError)(_is_ip)
_FORMATS.checks("cidr", raises=ValueError)(_is_cidr)
_DATE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


@_FORMATS.checks("date-time")
def _is_date_time(v) -> bool:
    return not isinstance(v, str) or bool(_DATE_TIME.match(v))


def to_jsonschema(s):
    """openAPIV3Schema -> JSON Schema draft 4 (nullable, int-or-string, no k8s extensions)."""
    if isinstance(s, list):
        return [to_jsonschema(x) for x in s]
    if not isinstance(s, dict):
        return s
    out = {}
    for k, v in s.items():
        if k.startswith("x-kubernetes") or k in ("nullable", "default", "description", "example"):
            continue
        if k in ("properties", "patternProperties", "definitions"):
            out[k] = {pk: to_jsonschema(pv) for pk, pv in v.items()}
        elif k in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            out[k] = to_jsonschema(v)
        else:
            out[k] = v
    if s.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = out.get("anyOf") or [{"type": "integer"}, {"type": "string"}]
    if s.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = list(out["enum"]) + [None]
    if "format" in out and out["format"] not in ("ipv4", "ipv6", "ip", "cidr", "date-time"):
        out.pop("format")  # int32/int64/byte/... are not checked here
    return out


class CRSchema:
    """Defaulting, pruning and validation for one served custom resource version."""

    def __init__(self, openapi: dict | None) -> None:
        self.schema = openapi or {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        js = to_jsonschema(self.schema)
        props = dict(js.get("properties") or {})
        props["metadata"] = {"type": "object"}
        js["properties"] = props
        self._v = jsonschema.Draft4Validator(js, format_checker=_FORMATS)

    def prune(self, obj: dict) -> list[str]:
        """Apply defaults and drop unknown fields in place; return the dropped paths."""
        dropped: list[str] = []
        props = self.schema.get("properties") or {}
        for k in list(obj):
            if k in ("apiVersion", "kind", "metadata"):
                continue
            if k not in props and not self.schema.get("x-kubernetes-preserve-unknown-fields"):
                del obj[k]
                dropped.append(k)
            elif k in props:
                obj[k] = _prune(obj[k], props[k], k, dropped)
        _defaults(obj, self.schema, skip_meta=True)
        return dropped

    def validate(self, obj: dict) -> list[dict]:
        causes = []
        for err in self._v.iter_errors(obj):
            path = list(err.absolute_path)
            if err.validator == "required":
                missing = err.message.split("'")[1] if "'" in err.message else ""
                causes.append(cause(json_path(path + [missing]), "Required value", "FieldValueRequired"))
            else:
                where = json_path(path)
                causes.append(cause(where, f"Invalid value: {json.dumps(err.instance)[:80]}: "
                                           f"{where} in body {_short(err)}"))
        return causes


def _prune(v, s: dict, path: str, dropped: list):
    if not isinstance(s, dict):
        return v
    if isinstance(v, dict):
        if s.get("x-kubernetes-embedded-resource"):
            keep = {"apiVersion", "kind", "metadata"}
        else:
            keep = set()
        props = s.get("properties")
        addl = s.get("additionalProperties")
        preserve = s.get("x-kubernetes-preserve-unknown-fields")
        for k in list(v):
            if props and k in props:
                v[k] = _prune(v[k], props[k], f"{path}.{k}", dropped)
            elif isinstance(addl, dict):
                v[k] = _prune(v[k], addl, f"{path}.{k}", dropped)
            elif preserve or addl is True or k in keep:
                continue
            else:
                del v[k]
                dropped.append(f"{path}.{k}")
    elif isinstance(v, list) and isinstance(s.get("items"), dict):
        return [_prune(x, s["items"], f"{path}[{i}]", dropped) for i, x in enumerate(v)]
    return v


def _defaults(v, s: dict, skip_meta: bool = False) -> None:
    if isinstance(v, dict) and isinstance(s, dict):
        for k, ps in (s.get("properties") or {}).items():
            if skip_meta and k in ("apiVersion", "kind", "metadata"):
                continue
            if k not in v and isinstance(ps, dict) and "default" in ps:
                v[k] = json.loads(json.dumps(ps["default"]))
            if k in v:
                _defaults(v[k], ps)
        if isinstance(s.get("additionalProperties"), dict):
            for x in v.values():
                _defaults(x, s["additionalProperties"])
    elif isinstance(v, list) and isinstance(s, dict) and isinstance(s.get("items"), dict):
        for x in v:
            _defaults(x, s["items"])


def unknown_field_error(dropped: list[str]) -> ApiError:
    return bad_request("strict decoding error: " + ", ".join(f'unknown field "{d}"' for d in dropped))
