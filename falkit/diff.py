"""Plans as values: the diff vocabulary every step uses.

A :class:`Change` is one operation on one resource (``create``/``update``/``delete``/``action``)
with the field, old and new value. A :class:`Plan` is an immutable tuple of changes plus the
"already in place" notes (noops with a reason, as pyinfra reports them). Plans are printed,
compared, archived as JSON and tested; ``apply`` functions execute exactly a plan's changes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from dataclasses import field as _field
from typing import Any, Literal

Op = Literal["create", "update", "delete", "action"]


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
    data: Any = _field(default=None, repr=False, compare=False)  # what apply needs (payload), never shown

    def describe(self) -> str:
        what = f"{self.kind} {self.name}" + (f" {self.field}" if self.field else "")
        if self.op == "update":
            return f"~ {what}: {_short(self.old)} -> {_short(self.new)}"
        if self.op == "create":
            return f"+ {what}" + (f" = {_short(self.new)}" if self.new not in (None, "") else "")
        if self.op == "delete":
            return f"- {what}"
        return f"> {what}" + (f": {self.reason}" if self.reason else "")

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

    def rows(self) -> list[dict[str, Any]]:
        return [c.row() for c in self.changes]

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "changes": [{k: v for k, v in asdict(c).items() if k != "data"} for c in self.changes],
            "noops": [asdict(n) for n in self.noops],
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        if self.empty:
            head = f"plan {self.step}: nothing to change ({len(self.noops)} already in place)"
        else:
            head = f"plan {self.step}: {len(self.changes)} change(s)"
        lines = [head] + [f"  {c.describe()}" for c in self.changes]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from html import escape

        if self.empty:
            return f"<p><b>plan {escape(self.step)}</b>: nothing to change ({len(self.noops)} already in place)</p>"
        head = "".join(f"<th>{h}</th>" for h in ("op", "kind", "name", "field", "old", "new", "flags", "reason"))
        body = "".join(
            "<tr>" + "".join(f"<td>{escape(str(r[k]))}</td>" for k in ("op", "kind", "name", "field", "old", "new", "flags", "reason")) + "</tr>"
            for r in self.rows()
        )
        return f"<p><b>plan {escape(self.step)}</b>: {len(self.changes)} change(s)</p><table class='falkit-plan'><tr>{head}</tr>{body}</table>"


def _short(value: Any, limit: int = 80) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
