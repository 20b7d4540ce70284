"""rollback-longhorn: Longhorn's ``*.disabled`` manifests renamed back in the GitOps checkout."""

from __future__ import annotations

from typing import Any

from ...diff import Change, Noop, Plan
from ...errors import StepError
from ...spec import LabSpec
from ..base import Progress, StepOptions


def plan_longhorn(spec: LabSpec, gitops: Any) -> Plan:
    """Pure: rename every ``<file>.disabled`` back (``gitops``: ``volumes.GitopsFacts`` or None)."""
    if gitops is None:
        return Plan("rollback-longhorn", notes=("no gitops section in the spec: re-enable Longhorn by hand",))
    if not gitops.exists:
        return Plan("rollback-longhorn", (Change("action", "gitops", gitops.checkout, reason="checkout missing",
                                                 data={"blocked": True}),))
    changes, noops = [], []
    for f, state in sorted(gitops.files.items()):
        if state == "disabled":
            changes.append(Change("update", "gitops-file", f, "name", f + ".disabled", f, reason="re-enable Longhorn (seed)",
                                  data={"checkout": gitops.checkout, "file": f}))
        else:
            noops.append(Noop("gitops-file", f, state))
    notes = ("the renames are committed on the GitOps branch (pushed only with spec.gitops.push); Argo CD's "
             "app-of-apps then re-creates the Longhorn Applications",) if changes else ()
    return Plan("rollback-longhorn", tuple(changes), tuple(noops), notes)


def apply_longhorn(target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
    spec = target.spec
    if any((c.data or {}).get("blocked") for c in plan.changes):
        raise StepError("rollback-longhorn", f"the GitOps checkout {plan.changes[0].name} does not exist: clone it or pass "
                                             "gitops_checkout=<path>; nothing was changed")
    if not plan.changes:
        return
    from ...gitops import Checkout
    from ...ownership import apply_git_changes, plan_renames

    co = Checkout.from_spec(spec.gitops, plan.changes[0].data["checkout"])
    renames = plan_renames(co, disable=False)
    for c in renames:
        progress.log(f"git mv {c.old} {c.new}")
    api = target.kube() if getattr(target, "kind", "") == "twin" or spec.gitops.push else None
    apply_git_changes(renames, co, api, timeout=options.wait_timeout_s)
