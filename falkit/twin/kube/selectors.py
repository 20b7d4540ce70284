"""Label and field selectors, as in the ``labelSelector`` / ``fieldSelector`` list parameters.

Label selectors (k8s.io/apimachinery/pkg/labels): equality ``a=b``, ``a==b``, ``a!=b``, set-based
``a in (x,y)``, ``a notin (x)``, existence ``a`` and ``!a``, comma-separated (AND).
Field selectors: ``field=value``, ``field==value``, ``field!=value``; each kind supports only a few
fields (``metadata.name``, ``metadata.namespace`` everywhere, ``spec.nodeName``/``status.phase`` on
pods, ...). Unsupported fields are a 400 BadRequest as on a real apiserver.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .errors import bad_request

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_RE_NOT_EXISTS = re.compile(rf"^!\s*({_KEY})$")
_RE_SET = re.compile(rf"^({_KEY})\s+(in|notin)\s*\(([^)]*)\)$")
_RE_EQ = re.compile(rf"^({_KEY})\s*(==|=|!=)\s*([-A-Za-z0-9_.]*)$")
_RE_EXISTS = re.compile(rf"^({_KEY})$")

Matcher = Callable[[dict], bool]


def _split_top(expr: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in expr:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


Requirement = tuple[str, str, frozenset]  # (op, key, values); op: = != in notin exists !exists


def label_requirements(expr: str | None) -> list[Requirement]:
    """The requirements of a label selector (ANDed); [] for "everything"."""
    if not expr or not expr.strip():
        return []
    reqs: list[Requirement] = []
    for part in _split_top(expr):
        if m := _RE_NOT_EXISTS.match(part):
            reqs.append(("!exists", m.group(1), frozenset()))
        elif m := _RE_SET.match(part):
            vals = frozenset(v.strip() for v in m.group(4).split(",") if v.strip())
            reqs.append((m.group(3), m.group(1), vals))
        elif m := _RE_EQ.match(part):
            reqs.append(("!=" if m.group(3) == "!=" else "=", m.group(1), frozenset((m.group(4),))))
        elif m := _RE_EXISTS.match(part):
            reqs.append(("exists", m.group(1), frozenset()))
        else:
            raise bad_request(f"unable to parse requirement: {part!r}: invalid label selector {expr!r}")
    return reqs


def _req_matcher(op: str, k: str, vals: frozenset) -> Callable[[dict], bool]:
    if op == "!exists":
        return lambda lb: k not in lb
    if op == "exists":
        return lambda lb: k in lb
    if op in ("in", "="):
        return lambda lb: lb.get(k) in vals
    return lambda lb: lb.get(k) not in vals  # notin, != (a missing key matches, as in labels.Selector)


def requirements_matcher(reqs: list[Requirement]) -> Matcher | None:
    if not reqs:
        return None
    fns = [_req_matcher(*r) for r in reqs]
    return lambda labels: all(f(labels) for f in fns)


def parse_label_selector(expr: str | None) -> Matcher | None:
    """Return a predicate over a labels dict, or None for "everything"."""
    return requirements_matcher(label_requirements(expr))


def label_matcher(expr: str | None) -> Matcher | None:
    """Predicate over a whole object, from a label selector."""
    m = parse_label_selector(expr)
    if m is None:
        return None
    return lambda obj: m((obj.get("metadata") or {}).get("labels") or {})


# Field selectors each kind supports (beyond metadata.name / metadata.namespace), after the
# apiserver's per-resource GetAttrs / field label conversion funcs.
FIELDS_BY_KIND: dict[str, set[str]] = {
    "Pod": {"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
            "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"},
    "Node": {"spec.unschedulable"},
    "Event": {"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
              "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
              "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"},
    "Secret": {"type"},
    "Namespace": {"status.phase"},
    "Job": {"status.successful"},
    "ReplicaSet": {"status.replicas"},
    "PersistentVolume": {"name"},
}


def _field_value(obj: dict, path: str) -> str:
    cur = obj
    for seg in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(seg)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def field_matcher(expr: str | None, kind: str) -> Matcher | None:
    """Predicate over an object from a field selector; 400 for fields the kind does not support."""
    if not expr or not expr.strip():
        return None
    allowed = {"metadata.name", "metadata.namespace"} | FIELDS_BY_KIND.get(kind, set())
    reqs = []
    for part in _split_top(expr):
        m = re.match(r"^([A-Za-z0-9_.]+)\s*(==|!=|=)\s*(.*)$", part)
        if not m:
            raise bad_request(f"invalid selector: '{expr}'; can't understand '{part}'")
        f, op, v = m.group(1), m.group(2), m.group(3).strip()
        if f not in allowed:
            raise bad_request(f'field label not supported: {f}')
        if op == "!=":
            reqs.append(lambda o, f=f, v=v: _field_value(o, f) != v)
        else:
            reqs.append(lambda o, f=f, v=v: _field_value(o, f) == v)
    return lambda obj: all(r(obj) for r in reqs)
