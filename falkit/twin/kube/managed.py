"""``metadata.managedFields`` and server-side apply (approximation of structured-merge-diff).

A field set is a set of paths; each path is a tuple of ``f:<field>`` and ``k:{"key":value}``
segments (lists with a merge key, see :data:`patch.MERGE_KEYS`) — the same element names as
``fieldsV1`` (see "Field management" in the server-side apply docs). Other lists are atomic
leaves. Every write records the fields it changed for its manager (operation ``Update``); apply
records the fields in the applied configuration (operation ``Apply``). Apply conflicts when
another manager owns a field the configuration sets to a different value (409, unless
``force=true``, which takes ownership), and removes fields this manager applied before, no longer
applies, and nobody else owns.
"""

from __future__ import annotations

import json

from .errors import ApiError
from .objects import clone, now_iso
from .patch import merge_key_for, strategic_merge

IGNORED_META = {"managedFields", "resourceVersion", "uid", "creationTimestamp", "generation",
                "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "name", "namespace"}

Path = tuple[str, ...]


def fieldset(obj: dict, *, with_status: bool = True) -> set[Path]:
    out: set[Path] = set()
    for k, v in obj.items():
        if k in ("apiVersion", "kind") or (k == "status" and not with_status):
            continue
        if k == "metadata" and isinstance(v, dict):
            _walk({mk: mv for mk, mv in v.items() if mk not in IGNORED_META}, ("f:metadata",), out)
        else:
            _walk_value(k, v, ("f:" + k,), out)
    return out


def _walk(d: dict, prefix: Path, out: set) -> None:
    for k, v in d.items():
        _walk_value(k, v, prefix + ("f:" + k,), out)


def _walk_value(field: str, v, path: Path, out: set) -> None:
    if isinstance(v, dict) and v:
        _walk(v, path, out)
    elif isinstance(v, list) and v and (key := merge_key_for(field, v)) and all(
            isinstance(i, dict) and key in i for i in v):
        for item in v:
            ip = path + ("k:" + json.dumps({key: item[key]}, separators=(",", ":")),)
            out.add(ip)
            _walk({k: x for k, x in item.items() if k != key}, ip, out)
    else:
        out.add(path)


_MISSING = object()


def get_path(obj, path: Path):
    cur = obj
    for seg in path:
        if seg.startswith("f:"):
            if not isinstance(cur, dict) or seg[2:] not in cur:
                return _MISSING
            cur = cur[seg[2:]]
        else:
            (k, want), = json.loads(seg[2:]).items()
            if not isinstance(cur, list):
                return _MISSING
            cur = next((i for i in cur if isinstance(i, dict) and i.get(k) == want), _MISSING)
            if cur is _MISSING:
                return cur
    return cur


def remove_path(obj: dict, path: Path) -> None:
    parent = get_path(obj, path[:-1]) if len(path) > 1 else obj
    seg = path[-1]
    if parent is _MISSING:
        return
    if seg.startswith("f:") and isinstance(parent, dict):
        parent.pop(seg[2:], None)
    elif seg.startswith("k:") and isinstance(parent, list):
        (k, want), = json.loads(seg[2:]).items()
        parent[:] = [i for i in parent if not (isinstance(i, dict) and i.get(k) == want)]


def to_fields_v1(paths: set[Path]) -> dict:
    root: dict = {}
    for p in sorted(paths):
        node = root
        for seg in p:
            node = node.setdefault(seg, {})
        if len(p) and p[-1].startswith("k:"):
            node.setdefault(".", {})
    return root


def from_fields_v1(tree: dict, prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for seg, sub in (tree or {}).items():
        if seg == ".":
            continue
        p = prefix + (seg,)
        if not sub or "." in sub or seg.startswith("k:"):
            out.add(p)
        out |= from_fields_v1(sub, p)
    return out


def _entries(obj: dict) -> list[dict]:
    return list((obj.get("metadata") or {}).get("managedFields") or [])


def _set_entries(obj: dict, entries: list[dict]) -> None:
    obj.setdefault("metadata", {})["managedFields"] = [e for e in entries if e.get("fieldsV1")]


def record_update(old: dict | None, new: dict, manager: str, api_version: str, *,
                  subresource: str | None = None) -> None:
    """Give ``manager`` (operation Update) the fields that differ between ``old`` and ``new``."""
    with_status = subresource == "status" or old is None
    new_fields = fieldset(new, with_status=True)
    changed = {p for p in fieldset(new, with_status=with_status)
               if old is None or get_path(old, p) != get_path(new, p)}
    entries = _entries(old) if old is not None else []
    out, mine = [], None
    for e in entries:
        fs = from_fields_v1(e.get("fieldsV1") or {}) & new_fields
        if e.get("manager") == manager and e.get("operation") == "Update" \
                and e.get("subresource") == subresource:
            mine = fs
            continue
        fs -= changed
        out.append({**e, "fieldsV1": to_fields_v1(fs)})
    mine = (mine or set()) | changed
    if mine or not changed:
        entry = {"manager": manager, "operation": "Update", "apiVersion": api_version,
                 "time": now_iso(), "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(mine)}
        if subresource:
            entry["subresource"] = subresource
        out.append(entry)
    _set_entries(new, out)


def apply(live: dict | None, applied: dict, manager: str, api_version: str, *, force: bool,
          subresource: str | None = None) -> dict:
    """Server-side apply ``applied`` onto ``live`` (None = create); returns the merged object."""
    with_status = subresource == "status"
    cfg = clone(applied)
    if not with_status:
        cfg.pop("status", None)
    else:
        cfg = {k: v for k, v in cfg.items() if k in ("apiVersion", "kind", "metadata", "status")}
    applied_fields = fieldset(cfg)
    if not with_status:
        applied_fields = {p for p in applied_fields if p[0] != "f:status"}
    else:
        applied_fields = {p for p in applied_fields if p[0] == "f:status"}
    base = live or {}
    entries = _entries(base)
    conflicts: list[tuple[str, Path]] = []
    others: list[dict] = []
    prev_mine: set[Path] = set()
    for e in entries:
        fs = from_fields_v1(e.get("fieldsV1") or {})
        if e.get("manager") == manager and e.get("operation") == "Apply":
            prev_mine = fs
            continue
        clash = {p for p in fs & applied_fields if p[-1].startswith("f:") and get_path(base, p) != get_path(cfg, p)}
        if clash and not force:
            conflicts += [(e["manager"], p) for p in sorted(clash)]
        fs -= clash
        others.append({**e, "fieldsV1": to_fields_v1(fs), "_fs": fs})
    if conflicts:
        causes = [{"reason": "FieldManagerConflict", "field": _dotted(p),
                   "message": f'conflict with "{m}": {_dotted(p)}'} for m, p in conflicts]
        msg = f"Apply failed with {len(conflicts)} conflict{'s' if len(conflicts) > 1 else ''}: " + \
              "; ".join(f'conflict with "{m}": {_dotted(p)}' for m, p in conflicts)
        raise ApiError(409, "Conflict", msg, details={"causes": causes})
    merged = strategic_merge(base, cfg) if live is not None else clone(cfg)
    owned_by_others = set().union(*(o["_fs"] for o in others)) if others else set()
    for p in sorted(prev_mine - applied_fields - owned_by_others, key=len, reverse=True):
        if p[0] != "f:metadata" or len(p) > 2:
            remove_path(merged, p)
    out = [{k: v for k, v in o.items() if k != "_fs"} for o in others]
    entry = {"manager": manager, "operation": "Apply", "apiVersion": api_version, "time": now_iso(),
             "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(applied_fields)}
    if subresource:
        entry["subresource"] = subresource
    out.append(entry)
    _set_entries(merged, out)
    return merged


def _dotted(p: Path) -> str:
    s = ""
    for seg in p:
        s += "." + seg[2:] if seg.startswith("f:") else "[" + seg[2:] + "]"
    return s
