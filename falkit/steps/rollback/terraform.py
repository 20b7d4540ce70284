"""rollback-terraform: the Terraform code back as it was before falkit's edits (the seed's rollback:
``git checkout <previous-commit>`` for ``infrastructure/terraform``, then the operator's
``terraform apply``, which falkit never runs).

The previous commit is the parent of the first commit falkit made there (its message starts with
:data:`falkit.render.terraform.COMMIT_MARK`); every file those commits touched gets its content at that
commit back, committed on ``spec.gitops.branch``. Nothing else in the directory changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...plan.diff import Change, Noop, Plan
from ...plan.payloads import GitChange, GitRepo
from ...render import terraform as tf
from ...render.gitops import Checkout, GitEdit, git
from ..base import Check, Progress, StepOptions, register
from ..executors import execute
from ..terraform import tf_dir
from ..volumes import checkout_path

ROLLBACK_MESSAGE = "falkit: rollback: Terraform back to {base}"


@dataclass(frozen=True)
class TfBackFacts:
    checkout: str | None
    tf_dir: str
    base: str | None  # the commit before falkit's first Terraform edit
    files: dict[str, tuple[str, str]] = field(default_factory=dict)  # path -> (current, at base)


def observe_terraform_back(target: Any, spec: Any, options: StepOptions) -> TfBackFacts:
    path = checkout_path(spec.gitops, options, target)
    rel = tf_dir(options)
    if path is None or not (path / ".git").exists() or not (path / rel).is_dir():
        return TfBackFacts(str(path) if path else None, rel, None)
    shas = git(path, "log", "--format=%H", "--fixed-strings", f"--grep={tf.COMMIT_MARK}", "--", rel).split()
    if not shas:
        return TfBackFacts(str(path), rel, None)
    first = shas[-1]
    base = git(path, "rev-parse", f"{first}^").strip()
    touched = sorted({f for f in git(path, "log", "--format=", "--name-only", "--fixed-strings",
                                     f"--grep={tf.COMMIT_MARK}", "--", rel).split() if f})
    files = {}
    for f in touched:
        old = git(path, "show", f"{base}:{f}", check=False)
        cur = (path / f).read_text(encoding="utf-8") if (path / f).is_file() else ""
        files[f] = (cur, old)
    return TfBackFacts(str(path), rel, base, files)


def plan_terraform_back(spec: Any, facts: TfBackFacts) -> Plan:
    if facts.base is None:
        return Plan("rollback-terraform", notes=(f"no falkit commit in {facts.checkout}/{facts.tf_dir}: nothing to revert",))
    changes, noops = [], []
    for f, (cur, old) in sorted(facts.files.items()):
        if cur == old:
            noops.append(Noop("git-file", f, f"as at {facts.base[:10]}"))
            continue
        edit = GitEdit(f, cur, old, message=ROLLBACK_MESSAGE.format(base=facts.base[:10]))
        changes.append(Change("update", "git-file", f, "content", reason=f"back to {facts.base[:10]} (before falkit's edits)",
                              data=GitChange(edit, None, repo=GitRepo.of(Checkout.from_spec(spec.gitops, facts.checkout)),
                                             deliver=False)))
    notes = ("committed on the GitOps branch; then run `terraform apply` in the directory yourself (the seed's "
             "rollback), falkit never does",) if changes else ()
    return Plan("rollback-terraform", tuple(changes), tuple(noops), notes)


def apply_terraform_back(target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
    if plan.changes:
        execute(target, plan.changes, progress, options.wait_timeout_s, step="rollback-terraform")


@register("rollback-terraform")
class RollbackTerraform:
    title = "Rollback: the Terraform code back to the commit before falkit's edits"
    options = {"terraform_dir": (str, tf.TERRAFORM_DIR)}

    def observe(self, target, spec, options):
        return observe_terraform_back(target, spec, options)

    def plan(self, spec, observed, options):
        return plan_terraform_back(spec, observed)

    def apply(self, target, plan, options, progress):
        apply_terraform_back(target, plan, options, progress)

    def checks(self, target, spec, options):
        f = observe_terraform_back(target, spec, options)
        if f.base is None:
            return []
        return [Check("Terraform file reverted", p, f"as at {f.base[:10]}", "same" if cur == old else "differs",
                      cur == old, "re-run rollback-terraform") for p, (cur, old) in sorted(f.files.items())]
