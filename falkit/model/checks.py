"""What a verification found: :class:`Check`, the row every step's checks and 70-validation's
checks are made of (expected, observed, ok, and how to fix it).

It sits below both :mod:`falkit.steps` (each step's ``checks``) and :mod:`falkit.steps.probes` (the
checks 70-validation runs, which the steps also use), so neither has to import the other for it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Check:
    """One verification: what was expected, what was observed, and how to fix it."""

    check: str  # e.g. "node ready"
    subject: str  # e.g. "talos-worker-02"
    expected: str
    observed: str
    ok: bool
    fix: str = ""

    def row(self) -> dict[str, Any]:
        return asdict(self)
