"""rollback-longhorn: Longhorn's ``*.disabled`` manifests renamed back in the GitOps checkout.

Typed payloads (issue 18): each rename is a ``GitChange`` (:func:`falkit.steps.volumes.longhorn_renames`),
a missing checkout ``Blocked``."""

from __future__ import annotations

from typing import Any

from ...model.errors import StepError
from ...model.spec import LabSpec
from ...plan.diff import Change, Noop, Plan
from ...plan.payloads import Blocked
from ..base import Progress, StepOptions
from ..executors import execute
from ..volumes import longhorn_renames


def plan_longhorn(spec: LabSpec, gitops: Any) -> Plan:
    """Pure: rename every ``<file>.disabled`` back (``gitops``: ``volumes.GitopsFacts`` or None)."""
    if gitops is None:
        return Plan("rollback-longhorn", notes=("no gitops section in the spec: re-enable Longhorn by hand",))
    if not gitops.exists:
        return Plan("rollback-longhorn", (Change("action", "gitops", gitops.checkout, reason="checkout missing",
                                                 data=Blocked("checkout missing")),))
    changes = sorted(longhorn_renames(spec, gitops, disable=False), key=lambda c: c.name)
    noops = [Noop("gitops-file", f, state) for f, state in sorted(gitops.files.items()) if state != "disabled"]
    notes = ("the renames are committed on the GitOps branch (pushed only with spec.gitops.push); Argo CD's "
             "app-of-apps then re-creates the Longhorn Applications",) if changes else ()
    return Plan("rollback-longhorn", tuple(changes), tuple(noops), notes)


def apply_longhorn(target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
    """Commit the renames planned in :func:`plan_longhorn` (one commit), then wait for Argo CD."""
    if any(isinstance(c.data, Blocked) for c in plan.changes):
        raise StepError("rollback-longhorn", f"the GitOps checkout {plan.changes[0].name} does not exist: clone it or pass "
                                             "gitops_checkout=<path>; nothing was changed")
    execute(target, plan.changes, progress, options.wait_timeout_s, step="rollback-longhorn")
