"""PATCH bodies: JSON Patch (RFC 6902), JSON Merge Patch (RFC 7386) and strategic merge patch.

Strategic merge patch (k8s.io/apimachinery/pkg/util/strategicpatch) merges lists by their
``patchMergeKey`` instead of replacing them. The Go types carry the keys as struct tags; here a
table by field name covers the lists falkit patches: containers / initContainers / volumes / env /
imagePullSecrets by ``name``, ports by ``containerPort`` (containers) or ``port`` (services),
volumeMounts by ``mountPath``, conditions by ``type``, ownerReferences by ``uid``; ``finalizers``
merge as a set; every other list (tolerations, args, ...) is replaced. Directives ``$patch:
delete|replace`` (in maps and list items) and ``$deleteFromPrimitiveList/<field>`` are honoured;
``$retainKeys`` and ``$setElementOrder`` are accepted and ignored.
All functions return new values and never modify their arguments.
"""

from __future__ import annotations

import json

import yaml

from .errors import ApiError
from .objects import clone

MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",), "initContainers": ("name",), "ephemeralContainers": ("name",),
    "volumes": ("name",), "env": ("name",), "imagePullSecrets": ("name",),
    "ports": ("containerPort", "port"), "volumeMounts": ("mountPath",), "volumeDevices": ("devicePath",),
    "conditions": ("type",), "ownerReferences": ("uid",), "hostAliases": ("ip",),
    "topologySpreadConstraints": ("topologyKey",), "resourceClaims": ("name",),
}
PRIMITIVE_SET_LISTS = {"finalizers"}


def _invalid(msg: str) -> ApiError:
    return ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: {msg}")


# --- RFC 6902 -----------------------------------------------------------------------------------

def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _invalid(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc, parts: list[str], path: str):
    cur = doc
    for p in parts:
        if isinstance(cur, dict):
            if p not in cur:
                raise _invalid(f"doc is missing path: {path!r}")
            cur = cur[p]
        elif isinstance(cur, list):
            try:
                cur = cur[int(p)]
            except (ValueError, IndexError):
                raise _invalid(f"invalid index in path: {path!r}") from None
        else:
            raise _invalid(f"doc is missing path: {path!r}")
    return cur


def _index(container: list, key: str, path: str, *, allow_end: bool) -> int:
    if key == "-" and allow_end:
        return len(container)
    try:
        i = int(key)
    except ValueError:
        raise _invalid(f"invalid array index {key!r} in {path!r}") from None
    if i < 0 or i > len(container) or (i == len(container) and not allow_end):
        raise _invalid(f"array index out of bounds in {path!r}")
    return i


def _add(doc, path: str, value):
    parts = _pointer(path)
    if not parts:
        return value
    parent = _walk(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, path, allow_end=True), value)
    else:
        raise _invalid(f"cannot add to {path!r}")
    return doc


def _remove(doc, path: str):
    parts = _pointer(path)
    if not parts:
        raise _invalid("cannot remove the whole document")
    parent = _walk(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _invalid(f"unable to remove nonexistent key: {last}: missing value")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, path, allow_end=False))
    raise _invalid(f"cannot remove from {path!r}")


def json_patch(doc, ops) -> dict:
    """Apply an RFC 6902 operation list to a copy of ``doc``."""
    if not isinstance(ops, list):
        raise ApiError(400, "BadRequest", "json patch must be a list of operations")
    doc = clone(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise _invalid(f"invalid JSON patch operation {op!r}")
        kind, path = op["op"], op["path"]
        if kind == "add":
            doc = _add(doc, path, clone(op.get("value")))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            parts = _pointer(path)
            if not parts:
                doc = clone(op.get("value"))
                continue
            _walk(doc, parts, path)  # must exist
            _remove(doc, path)
            doc = _add(doc, path, clone(op.get("value")))
        elif kind in ("move", "copy"):
            src = op.get("from", "")
            value = clone(_walk(doc, _pointer(src), src))
            if kind == "move":
                _remove(doc, src)
            doc = _add(doc, path, value)
        elif kind == "test":
            if _walk(doc, _pointer(path), path) != op.get("value"):
                raise _invalid(f"testing value {path} failed")
        else:
            raise _invalid(f"unexpected kind of operation: {kind!r}")
    return doc


# --- RFC 7386 -----------------------------------------------------------------------------------

def merge_patch(target, patch):
    """RFC 7386: maps merge recursively, ``null`` deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return clone(patch)
    out = clone(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


# --- strategic merge ----------------------------------------------------------------------------

def merge_key_for(field: str, items: list) -> str | None:
    """The patch-merge-key of list ``field`` given some of its items, or None (atomic list)."""
    keys = MERGE_KEYS.get(field)
    if not keys:
        return None
    for k in keys:
        if any(isinstance(i, dict) and k in i for i in items):
            return k
    return None


def _strip_directives(v):
    if isinstance(v, dict):
        return {k: _strip_directives(x) for k, x in v.items() if not k.startswith("$")}
    if isinstance(v, list):
        return [_strip_directives(x) for x in v]
    return v


def _smp_list(field: str, target: list, patch: list) -> list:
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [_strip_directives(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    if field in PRIMITIVE_SET_LISTS and all(not isinstance(i, dict | list) for i in patch):
        return list(target) + [i for i in patch if i not in target]
    key = merge_key_for(field, patch) or merge_key_for(field, target)
    if key is None or not all(isinstance(i, dict) for i in patch):
        return _strip_directives(patch)
    out = [clone(i) for i in target]
    for item in patch:
        if key not in item:
            raise _invalid(f"map: {item!r} does not contain declared merge key: {key}")
        idx = next((n for n, t in enumerate(out) if isinstance(t, dict) and t.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
        elif idx is None:
            out.append(_strip_directives(item))
        else:
            out[idx] = strategic_merge(out[idx], item)
    return out


def strategic_merge(target, patch):
    """Apply a strategic merge patch to a copy of ``target``."""
    if not isinstance(patch, dict):
        return clone(patch)
    if patch.get("$patch") == "replace":
        return _strip_directives(patch)
    out = clone(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            if isinstance(out.get(field), list):
                out[field] = [x for x in out[field] if x not in (v or [])]
            continue
        if k.startswith("$"):
            continue
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict):
            if v.get("$patch") == "delete":
                out.pop(k, None)
            else:
                out[k] = strategic_merge(out.get(k), v)
        elif isinstance(v, list) and isinstance(out.get(k), list):
            out[k] = _smp_list(k, out[k], v)
        else:
            out[k] = _strip_directives(v)
    return out


def parse_patch_body(content_type: str, raw: bytes):
    """Decode a PATCH body by content type (apply bodies may be YAML or JSON)."""
    if content_type == "application/apply-patch+yaml":
        try:
            return yaml.safe_load(raw.decode() or "{}")
        except yaml.YAMLError as e:
            raise ApiError(400, "BadRequest", f"error decoding YAML: {e}") from None
    try:
        return json.loads(raw or b"null")
    except ValueError as e:
        raise ApiError(400, "BadRequest", f"error decoding patch: {e}") from None
