"""Plans as values: the diff vocabulary every step uses.

A :class:`Change` is one operation on one resource (``create``/``update``/``delete``/``action``)
with the field, old and new value. A :class:`Plan` is an immutable tuple of changes plus the
"already in place" notes (noops with a reason, as pyinfra reports them). Plans are printed,
compared, archived as JSON and tested; ``apply`` functions execute exactly a plan's changes.

How a plan reads (``str(plan)``, ``repr(plan)`` and the notebook's HTML table):

- a Terraform-style summary line, ``5 to add, 3 to change, 1 to destroy`` (plus ``, 4 to run`` for
  actions such as a reboot or a bootstrap), and one ``+``/``~``/``-``/``>`` symbol per change
  (create/update/delete/action), as ``terraform plan`` marks them;
- the table left-aligned, every reason in full (old and new values are cut at 160 characters);
- configuration changes (a Talos machine config, Helm values, a Kubernetes object's spec) as a
  unified diff of their YAML, secrets redacted — what ``talosctl apply-config --dry-run`` shows —
  instead of digests. A change carries the two sides in ``data["yaml"] = (before, after)`` (one
  YAML document each; ``None``: absent) or ``data["yaml_documents"] = (before, after)`` (lists of
  documents, as a multi-document Talos config); a change whose ``old``/``new`` are themselves
  mappings or lists is diffed from those. Values under secret-named keys (``token``,
  ``secret``, ``key``, ``crt``, ``password``, ``id``…) are replaced by ``***REDACTED***`` (marked
  ``(changed)`` when they differ), then :func:`falkit.model.scrub.scrub_text`'s patterns (PEM blocks,
  bearer tokens, ...) run over the text.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from dataclasses import field as _field
from html import escape
from pathlib import Path
from typing import Any, Literal

import yaml

from ..model.scrub import scrub_text
from .payloads import decode, encode

Op = Literal["create", "update", "delete", "action"]
#: ``terraform plan``'s marks: + create, ~ update in place, - destroy; ``>`` an action (reboot, bootstrap)
SYMBOL = {"create": "+", "update": "~", "delete": "-", "action": ">"}
COLUMNS = ("", "op", "kind", "name", "field", "old", "new", "flags", "reason")
PLAN_STYLE = ("<style>table.falkit-plan th, table.falkit-plan td {text-align: left !important; vertical-align: top; "
              "padding: 2px 8px} table.falkit-plan td.falkit-sym {font-family: monospace; font-weight: bold} "
              "pre.falkit-yaml-diff {text-align: left; font-size: 90%; padding: 4px 8px; background: #f7f7f7; "
              "overflow-x: auto}</style>")
_SYM_COLOR = {"+": "#070", "~": "#a60", "-": "#b00", ">": "#04a"}


@dataclass(frozen=True)
class Change:
    op: Op
    kind: str  # e.g. "bridge", "vm", "vm-config", "talos-config", "helm-release", "k8s-object"
    name: str  # the resource, e.g. "vmbr1", "talos-worker-02", "kube-system/cilium"
    field: str = ""  # e.g. "net1", "memory"; "" for the whole resource
    old: Any = None
    new: Any = None
    disruptive: bool = False  # needs a reboot/reconnect, or changes identity (MAC, bridge)
    destructive: bool = False  # can lose data (delete a VM, a disk, a volume; shrink)
    reason: str = ""
    # what apply needs: a typed payload (falkit.plan.payloads), compared and serialised with the change;
    # a few steps still pass a plain dict (see docs/ARCHITECTURE.md)
    data: Any = _field(default=None, repr=False, hash=False)

    def describe(self) -> str:
        what = f"{self.kind} {self.name}" + (f" {self.field}" if self.field else "")
        cells = self.diff_cells() if self.yaml_diff() else {"old": _short(self.old), "new": _short(self.new)}
        if self.op == "update":
            return f"~ {what}: {cells['old']} -> {cells['new']}"
        if self.op == "create":
            return f"+ {what}" + (f" = {cells['new']}" if cells["new"] else "")
        if self.op == "delete":
            return f"- {what}"
        return f"> {what}" + (f": {self.reason}" if self.reason else "")

    @property
    def symbol(self) -> str:
        return SYMBOL.get(self.op, "?")

    def yaml_diff(self) -> str:
        """The unified diff of this change's configuration as YAML, secrets redacted ("" when the change
        carries no configuration; see the module docstring)."""
        edit = getattr(self.data, "edit", None)  # a Git edit (falkit.render.gitops.GitEdit): its own unified diff
        if edit is not None and isinstance(getattr(edit, "diff", None), str) and edit.diff:
            return scrub_text(edit.diff.rstrip("\n"), ())
        data = self.data if isinstance(self.data, dict) else {}
        label = f"{self.kind} {self.name}" + (f" {self.field}" if self.field else "")
        shown = getattr(self.data, "shown_yaml", None)
        sides = shown() if callable(shown) else None
        if sides is not None:
            return yaml_diff(sides[0], sides[1], label, documents=sides[2])
        if isinstance(data.get("yaml_documents"), tuple):
            before, after = data["yaml_documents"]
            return yaml_diff(before, after, label, documents=True)
        if isinstance(data.get("yaml"), tuple):
            before, after = data["yaml"]
        elif isinstance(self.old, (dict, list)) or isinstance(self.new, (dict, list)):
            before, after = self.old, self.new
        else:
            return ""
        return yaml_diff(before, after, label)

    def diff_cells(self) -> dict[str, str]:
        """``old``/``new`` as a plan table shows them next to a YAML diff: a digest, a mapping or a long
        value is replaced by a pointer to the diff; a short value (a chart version) stays."""
        data = self.data if isinstance(self.data, dict) else {}
        e = getattr(self.data, "edit", None)
        edit = e is not None and getattr(e, "before", None) != getattr(e, "after", None)  # a rename keeps its names
        shown = getattr(self.data, "shown_yaml", None)
        documents = "yaml_documents" in data or bool(callable(shown) and (shown() or (0, 0, False))[2])
        out = {}
        for k in ("old", "new"):
            v = getattr(self, k)
            whole = edit or documents or isinstance(v, (dict, list)) or len(str(v)) > 40
            out[k] = ("(YAML diff below)" if v not in (None, "") else "") if whole else _short(v)
        return out

    def row(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "kind": self.kind,
            "name": self.name,
            "field": self.field,
            "old": _short(self.old),
            "new": _short(self.new),
            "flags": ",".join(f for f, on in (("disruptive", self.disruptive), ("destructive", self.destructive)) if on),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Noop:
    kind: str
    name: str
    reason: str


@dataclass(frozen=True)
class Plan:
    step: str
    changes: tuple[Change, ...] = ()
    noops: tuple[Noop, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def empty(self) -> bool:
        return not self.changes

    @property
    def disruptive(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.disruptive)

    @property
    def destructive(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.destructive)

    def counts(self) -> dict[str, int]:
        """``{"add", "change", "destroy", "run"}``: the changes per op."""
        ops = [c.op for c in self.changes]
        return {"add": ops.count("create"), "change": ops.count("update"), "destroy": ops.count("delete"),
                "run": ops.count("action")}

    def summary(self) -> str:
        """``"5 to add, 3 to change, 1 to destroy"`` (``", 4 to run"`` when there are actions), as
        ``terraform plan`` ends."""
        n = self.counts()
        return (f"{n['add']} to add, {n['change']} to change, {n['destroy']} to destroy"
                + (f", {n['run']} to run" if n["run"] else ""))

    def rows(self) -> list[dict[str, Any]]:
        return [c.row() for c in self.changes]

    def to_json(self, redact: bool = False) -> dict[str, Any]:
        """The plan as JSON values, each change with its payload (:func:`falkit.plan.payloads.encode`).
        ``redact``: values under secret-named keys in the payloads are replaced by
        :data:`REDACTED` and :func:`falkit.model.scrub.scrub_text`'s patterns run over the strings — the
        archived plan (shown again, compared); the plan saved for a later apply keeps them and
        belongs in the private state directory."""
        out = {
            "step": self.step,
            "changes": [dict({f.name: _redact(getattr(c, f.name)) if redact and f.name in ("old", "new")
                              else getattr(c, f.name) for f in fields(c) if f.name != "data"},
                             data=encode(c.data, _redact if redact else None)) for c in self.changes],
            "noops": [asdict(n) for n in self.noops],
            "notes": list(self.notes),
        }
        if redact:  # then scrub's patterns (PEM blocks, bearer tokens, ...) over every string, as over a plan's diff
            out = json.loads(scrub_text(json.dumps(out, default=str), ()))  # an odd old/new value as text
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        """The inverse of :meth:`to_json` (``Plan.from_json(p.to_json()) == p`` for typed payloads)."""
        changes = tuple(Change(**{k: v for k, v in c.items() if k != "data"}, data=decode(c.get("data")))
                        for c in data.get("changes") or ())
        return cls(data["step"], changes, tuple(Noop(**n) for n in data.get("noops") or ()),
                   tuple(data.get("notes") or ()))

    def head(self) -> str:
        if self.empty:
            return f"plan {self.step}: nothing to change ({len(self.noops)} already in place)"
        return f"plan {self.step}: {len(self.changes)} change(s): {self.summary()}"

    def __str__(self) -> str:
        lines = [self.head()]
        for c in self.changes:
            lines.append(f"  {c.describe()}" + (f"  ({c.reason})" if c.reason and c.op != "action" else ""))
        if self.empty:  # what is already in place, and why (e.g. the run whose fio result is used)
            lines += [f"  = {n.kind} {n.name}: {n.reason}" for n in self.noops]
        lines += [f"  note: {n}" for n in self.notes]
        for c in self.changes:
            d = c.yaml_diff()
            if d:
                lines += ["", f"  {c.symbol} {c.kind} {c.name}:"] + [f"    {x}" for x in d.splitlines()]
        return "\n".join(lines)

    __repr__ = __str__  # a notebook's text/plain and ``repr`` read like the plan, not a dataclass dump

    def _repr_html_(self) -> str:
        head = f"<p><b>plan {escape(self.step)}</b>: "
        if self.empty:
            items = "".join(f"<li>{escape(n.kind)} {escape(n.name)}: {escape(n.reason)}</li>" for n in self.noops)
            return head + f"nothing to change ({len(self.noops)} already in place)</p>" + (f"<ul>{items}</ul>" if items else "")
        n = self.counts()
        parts = [f"<span style='color:{_SYM_COLOR[sym]}'>{n[k]} to {k}</span>" if n[k] else f"{n[k]} to {k}"
                 for k, sym in (("add", "+"), ("change", "~"), ("destroy", "-"))]
        if n["run"]:
            parts.append(f"<span style='color:{_SYM_COLOR['>']}'>{n['run']} to run</span>")
        th = "".join(f"<th>{escape(h)}</th>" for h in COLUMNS)
        body = []
        for c, r in zip(self.changes, self.rows(), strict=True):
            sym = c.symbol
            cells = [f"<td class='falkit-sym' style='color:{_SYM_COLOR.get(sym, '#000')}'>{escape(sym)}</td>"]
            if c.yaml_diff():
                r = dict(r, **c.diff_cells())
            cells += [f"<td>{escape(str(r[k]))}</td>" for k in COLUMNS[1:]]
            body.append("<tr>" + "".join(cells) + "</tr>")
        diffs = []
        for c in self.changes:
            d = c.yaml_diff()
            if d:
                diffs.append(f"<details open class='falkit-yaml-diff'><summary>{escape(c.symbol)} {escape(c.kind)} "
                             f"{escape(c.name)}: YAML diff</summary><pre class='falkit-yaml-diff'>{escape(d)}</pre></details>")
        notes = "".join(f"<p>note: {escape(x)}</p>" for x in self.notes)
        return (f"{PLAN_STYLE}{head}{len(self.changes)} change(s): {', '.join(parts)}</p>"
                f"<table class='falkit-plan'><tr>{th}</tr>{''.join(body)}</table>{notes}{''.join(diffs)}")


def load_plans(path: str | os.PathLike, step: str | None = None) -> list[Plan]:
    """The plans archived in ``path``: a plan JSON (:meth:`Plan.to_json`), a notebook's
    ``*.result.json`` (each step's ``plan``), or a run directory (every ``*.result.json`` in it);
    ``step``: only that step's. Shown again with ``print``/``display``, as the notebook showed them."""
    p = Path(path)
    files = sorted(p.glob("*.result.json")) if p.is_dir() else [p]
    out: list[Plan] = []
    for f in files:
        data = json.loads(f.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "changes" in data and "step" in data:
            found = [data]
        else:
            found = [rec["plan"] for rec in ((data or {}).get("steps") or {}).values()
                     if isinstance(rec, dict) and isinstance(rec.get("plan"), dict)]
        out += [Plan.from_json(d) for d in found if step is None or d.get("step") == step]
    return out


def _short(value: Any, limit: int = 160) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------- YAML diff

REDACTED = "***REDACTED***"
#: keys whose values are secrets in a Talos machine config, a kubeconfig or Helm values
_SECRET_KEY = re.compile(r"(?i)token|secret|passw|(?:^|[^a-z])key$|[a-z]Key$|^crt$|^ca$|^id$|-data$")


def _secret_key(key: Any) -> bool:
    return isinstance(key, str) and bool(_SECRET_KEY.search(key))


def _redact(value: Any, other: Any = None, secret: bool = False, mark: bool = False) -> Any:
    """``value`` with every string/number leaf under a secret-named key replaced by :data:`REDACTED`;
    with ``mark`` (the planned side), ``REDACTED (changed)`` where ``other`` (the same place on the
    running side) differs, so the diff shows that a secret changes without showing it."""
    if isinstance(value, dict):
        o = other if isinstance(other, dict) else {}
        return {k: _redact(v, o.get(k), secret or _secret_key(k), mark) for k, v in value.items()}
    if isinstance(value, list):
        o = other if isinstance(other, list) else []
        return [_redact(v, o[i] if i < len(o) else None, secret, mark) for i, v in enumerate(value)]
    if secret and value not in (None, "", True, False):
        return f"{REDACTED} (changed)" if mark and other is not None and other != value else REDACTED
    return value


def _yaml_text(docs: Any, other: Any, documents: bool = False, mark: bool = False) -> list[str]:
    if docs is None:
        return []
    if documents:
        others = list(other) if isinstance(other, (list, tuple)) else []
        red = [_redact(d, others[i] if i < len(others) else None, mark=mark) for i, d in enumerate(docs)]
        text = yaml.safe_dump_all(red, sort_keys=True, default_flow_style=False)
    else:
        text = yaml.safe_dump(_redact(docs, other, mark=mark), sort_keys=True, default_flow_style=False)
    return text.splitlines()


def yaml_diff(before: Any, after: Any, label: str = "config", documents: bool = False) -> str:
    """A unified diff (3 lines of context) of ``before`` -> ``after`` dumped as YAML (``documents``:
    each a list of YAML documents, dumped ``---``-separated), secrets redacted; "" when they are
    equal. ``None`` on one side is an absent config (everything added or removed)."""
    a, b = _yaml_text(before, after, documents), _yaml_text(after, before, documents, mark=True)
    if a == b:
        return ""
    lines = difflib.unified_diff(a, b, fromfile=f"{label} (now)", tofile=f"{label} (planned)", lineterm="", n=3)
    return scrub_text("\n".join(lines), ())
