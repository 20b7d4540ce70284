"""Whether a plan may be applied (refusal, a pure function) and the wait until a step converged.

- **Refusal**: :func:`refuse` (plan + options, nothing else) refuses disruptive changes unless
  ``allow_disruptive``, destructive ones unless ``allow_destructive``, and *blocked* changes (a
  prerequisite an earlier notebook provides, a :class:`~falkit.plan.payloads.Blocked` payload, naming it: "run 10-network first")
  always; a step listed in :data:`REQUIRED_OPTIONS` applies only with its option on. The same
  function decides headless and at a JupyterLab gate, before anything is applied. Plans never
  depend on ``allow_*``: the options refuse, they do not change what is planned.
- **Convergence**: after applying, :func:`converge` re-plans from the lab until a fresh plan is
  empty or the timeout passes, polling from :data:`POLL_S` ``[0]`` up to ``[1]`` seconds and
  logging what it still waits for (:func:`waiting_for_text`) every 10 s.
- :func:`plan_key`: when two plans are the same plan (a gate re-plans at click time and applies
  only the plan the operator saw).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..plan.diff import Change, Plan
from ..plan.payloads import Blocked
from ..steps.base import StepOptions

POLL_S = (0.05, 2.0)  # convergence polling: first and longest interval

#: steps that apply only when an option of their own is on, whatever ``apply`` says: the rollback
#: (80-rollback's parameters cell has ``"rollback": False``; ``falkit run --set rollback=true``)
REQUIRED_OPTIONS: dict[str, str] = {"rollback-": "rollback"}


@dataclass(frozen=True)
class Refusal:
    """Why a plan may not be applied with the given options (falsy when it may).

    ``blocked``: changes whose payload is :class:`falkit.plan.payloads.Blocked` (``message``, ``fix``,
    ``run_first``) — a prerequisite from an earlier notebook is missing (bridge, storage, ISO
    storage, ...); no option allows them. ``disruptive``/``destructive``: changes the options do not
    allow.
    """

    blocked: tuple[Change, ...] = ()
    disruptive: tuple[Change, ...] = ()
    destructive: tuple[Change, ...] = ()
    #: options the step itself needs on before it applies anything (80-rollback's ``rollback``)
    requires: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.blocked or self.disruptive or self.destructive or self.requires)

    @property
    def needs(self) -> list[str]:
        """The options that would allow the plan (none allows a blocked change)."""
        return list(self.requires) + [o for o, cs in (("allow_disruptive", self.disruptive),
                                                      ("allow_destructive", self.destructive)) if cs]

    @property
    def run_first(self) -> list[str]:
        out: list[str] = []
        for c in self.blocked:
            nb = blocked_by(c).run_first
            if nb and nb not in out:
                out.append(nb)
        return out

    def text(self) -> str:
        parts = []
        for c in self.blocked:
            d = blocked_by(c)
            first = f" — run {d.run_first} first" if d.run_first else ""
            fix = f" (fix: {d.fix})" if d.fix else ""
            parts.append(f"blocked: {d.message or c.reason or c.describe()}{first}{fix}")
        for opt in self.requires:
            parts.append(f"this step applies only with {opt}=True (it is off: a dry run that shows the plan)")
        for what, cs, opt in (("disruptive", self.disruptive, "allow_disruptive"),
                              ("destructive", self.destructive, "allow_destructive")):
            if cs:
                parts.append(f"{len(cs)} {what} change(s) (" + "; ".join(c.describe() for c in cs) + f") need {opt}=True")
        return "; ".join(parts)

    def how(self) -> str:
        """How to allow it: the notebook's parameters cell, or ``falkit run --set``."""
        out = []
        if self.blocked:
            first = self.run_first
            out.append(("run " + ", then ".join(first) + " first" if first else "fix what blocks it, as each blocked "
                        "change's fix says") + " (allow_disruptive/allow_destructive do not allow a blocked change)")
        if self.needs:
            cell = ", ".join(f'"{o}": True' for o in self.needs)
            sets = " ".join(f"--set {o}=true" for o in self.needs)
            out.append(f"to allow it, put {cell} in the parameters cell's options and run the notebook again "
                       f"(falkit run: {sets})")
        return "; ".join(out)


def blocked_by(change: Change) -> Blocked | None:
    """What blocks ``change`` (its :class:`~falkit.plan.payloads.Blocked` payload), or None.
    Every step marks a change it cannot make with a ``Blocked`` payload (issue 18: no step plans
    untyped ``dict`` payloads any more)."""
    return change.data if isinstance(change.data, Blocked) else None


def refuse(plan: Plan, options: StepOptions) -> Refusal:
    """The refusal of ``plan`` under ``options`` — pure, and the same for ``falkit run`` and a gate."""
    requires = tuple(opt for prefix, opt in REQUIRED_OPTIONS.items()
                     if plan.step.startswith(prefix) and plan.changes and not options.extra.get(opt))
    return Refusal(blocked=tuple(c for c in plan.changes if blocked_by(c) is not None),
                   disruptive=() if options.allow_disruptive else plan.disruptive,
                   destructive=() if options.allow_destructive else plan.destructive,
                   requires=requires)


def plan_key(plan: Plan) -> list[tuple]:
    """What makes two plans the same plan for the same lab: each change's operation, resource, field,
    observed (old) value and flags. The desired (new) value is left out: it comes from the spec, and
    some are rendered from material generated per plan until it exists (Talos machine configs before
    ``talos-secrets.yaml`` is written hash differently each time)."""
    return [(c.op, c.kind, c.name, c.field, str(c.old), c.disruptive, c.destructive) for c in plan.changes]


def waiting_for_text(plan: Plan, limit: int = 4) -> str:
    """What a step still waits for, named: ``~ vm-config talos-cp-01 net0: … -> …; > vm talos-cp-01 reboot``."""
    items = [c.describe() for c in plan.changes]
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


def converge(name: str, replan: Callable[[], Plan], timeout_s: float, log: Callable[[str], None],
             on_poll: Callable[[], None] | None = None) -> Plan | None:
    """Re-plan step ``name`` (``replan()``: a fresh plan from the lab as it is) until the plan is empty:
    None then; the last, non-empty plan when ``timeout_s`` passed first. ``on_poll`` runs after each
    re-plan (the dashboard's refresh); ``log`` gets "waiting (N s of T s) for <changes>" every 10 s."""
    t0 = time.monotonic()
    delay = POLL_S[0]
    next_log = 1.0
    while True:
        fresh = replan()
        if on_poll is not None:
            on_poll()
        if fresh.empty:
            return None
        waited = time.monotonic() - t0
        if waited > timeout_s:
            return fresh
        if waited >= next_log:
            log(f"{name}: waiting ({waited:.0f} s of {timeout_s:g} s) for " + waiting_for_text(fresh))
            next_log = waited + 10.0
        time.sleep(delay)
        delay = min(delay * 2, POLL_S[1])
