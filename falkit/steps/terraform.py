"""Step ``terraform`` (20-vms, after ``vms``): the operator's Terraform keeps describing the lab.

In the seed, Terraform in the GitOps repository (``infrastructure/terraform``) owns the VMs. falkit
changes them through the Proxmox API, so it also changes that code — as it changes what Argo CD
manages in Git — or the operator's next ``terraform apply`` undoes the migration.

- **observe** (read-only): the GitOps checkout (option ``gitops_checkout``, the twin's own fixture,
  else ``spec.gitops.checkout``), the ``*.tf`` files under ``terraform_dir`` (default
  ``infrastructure/terraform``), whether they declare ``proxmox_virtual_environment_vm`` resources,
  ``terraform`` on PATH and whether the directory was initialised (``.terraform/``).
- **plan** (pure): the seed's "Terraform Module Changes" with falkit's derived values
  (:mod:`falkit.render.terraform`) as ``git-file`` changes, one per file; their unified diff is a note.
  No Terraform, or Terraform that manages no VM: a note, once, and nothing else.
- **apply**: one commit on ``spec.gitops.branch`` with the migration's other Git changes
  (:func:`falkit.steps.ownership.apply_git_changes`; pushed only with ``spec.gitops.push``).
- **checks**: the files parsed back with python-hcl2, each value compared with the plan; then, when
  ``terraform`` is on PATH and the directory is initialised, ``terraform plan -detailed-exitcode``:
  every resource it would still create, change, replace or destroy is a row; a replace or destroy
  is a failed check naming the resource (the notebook stops) unless ``allow_destructive``. Exit 1
  is a failed check with Terraform's last lines. falkit never runs ``terraform init`` or ``apply``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..model.spec import LabSpec
from ..plan.diff import Change, Noop, Plan, _short
from ..plan.payloads import GitChange, GitRepo
from ..render import terraform as tf
from ..render.gitops import Checkout
from .base import Check, Progress, StepOptions, register
from .executors import execute
from .volumes import checkout_path


@dataclass(frozen=True)
class TfFacts:
    checkout: str | None
    tf_dir: str
    tree: tf.TerraformTree | None
    vm_resources: tuple[str, ...] = ()
    binary: str | None = None
    initialised: bool = False


def tf_dir(options: StepOptions) -> str:
    return str(options.extra.get("terraform_dir") or tf.TERRAFORM_DIR).strip("/")


def observe(target: Any, spec: LabSpec, options: StepOptions) -> TfFacts:
    path = checkout_path(spec.gitops, options, target)
    rel = tf_dir(options)
    if path is None or not path.is_dir():
        return TfFacts(str(path) if path else None, rel, None)
    tree = tf.read_tree(path, rel)
    if tree is None:
        return TfFacts(str(path), rel, None)
    return TfFacts(str(path), rel, tree, tuple(tf.vm_resources(tree)), tf.terraform_binary(),
                   (tree.root / ".terraform").is_dir())


def plan_terraform(spec: LabSpec, facts: TfFacts) -> Plan:
    if facts.checkout is None or facts.tree is None:
        where = f"{facts.checkout}/{facts.tf_dir}" if facts.checkout else "(no GitOps checkout)"
        return Plan("terraform", notes=(f"no Terraform in {where}: nothing keeps the VMs' code, falkit goes on",))
    where = f"{facts.checkout}/{facts.tf_dir}"
    if not facts.vm_resources:
        return Plan("terraform", notes=(f"the Terraform in {where} declares no {tf.VM_RESOURCE}: it does not manage "
                                        "the lab's VMs; left alone",))
    changes, notes = [], [f"Terraform manages the lab's VMs ({'; '.join(facts.vm_resources)}): its code follows the "
                          "migration, committed with it"]
    edits = tf.plan_files(facts.tree, spec)
    repo = GitRepo.of(Checkout.from_spec(spec.gitops, facts.checkout))
    for edit, what in edits:
        changes.append(Change("update", "git-file", edit.path, ", ".join(what), reason="Terraform owns the VMs: "
                              "the seed's Terraform Module Changes, values from falkit's plan",
                              data=GitChange(edit, None, repo=repo)))
    if edits:
        notes.append("diff:\n" + "".join(e.diff for e, _ in edits))
    noops = () if edits else (Noop("terraform", facts.tf_dir, "the Terraform code already describes the migrated lab"),)
    if facts.binary is None:
        notes.append("terraform not on PATH: not checked")
    elif not facts.initialised:
        notes.append(f"{where} has no .terraform/ (terraform init was not run there): terraform plan not run — "
                     "falkit never runs terraform init; run it yourself to have the plan checked")
    else:
        notes.append(f"the checks run {facts.binary} plan -detailed-exitcode in {where}")
    return Plan("terraform", tuple(changes), noops, tuple(notes))


def apply_terraform(target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
    if plan.changes:  # one commit of every edited file (GitChange without an Application: no sync to wait for)
        execute(target, plan.changes, progress, options.wait_timeout_s, step="terraform")


def value_checks(spec: LabSpec, tree: tf.TerraformTree) -> list[Check]:
    """The files parsed back (python-hcl2): each value equal to falkit's plan."""
    exp, obs = tf.expected_values(spec), tf.observed_values(tree)
    where = str(tree.root)
    return [Check("Terraform value", k, _short(repr(v), 60), _short(repr(obs.get(k)), 60), obs.get(k) == v,
                  f"re-run the terraform step (or edit {where})") for k, v in exp.items()]


_WILL = {"create": "will be created", "update": "will be updated in-place", "replace": "must be replaced",
         "destroy": "will be destroyed"}


def plan_checks(facts: TfFacts, options: StepOptions) -> list[Check]:
    """``terraform plan -detailed-exitcode`` (0 no changes, 1 error, 2 changes)."""
    assert facts.tree is not None and facts.binary is not None
    where = str(facts.tree.root)
    res = tf.run_plan(facts.tree.root, facts.binary, timeout=max(60.0, options.wait_timeout_s))
    if res.exit_code == 0:
        return [Check("terraform plan", facts.tf_dir, "no changes", "no changes (exit 0)", True)]
    if res.exit_code != 2:
        return [Check("terraform plan", facts.tf_dir, "exit 0 or 2", f"exit {res.exit_code}: {res.error}", False,
                      f"run `terraform plan` in {where} yourself and fix what it reports")]
    out = []
    for c in res.changes:
        ok = not c.destroys or options.allow_destructive
        fix = (f"Terraform would {c.action} {c.address}: make the Terraform code in {where} describe the lab before "
               "anyone runs terraform apply" + ("" if ok else " (or accept it: allow_destructive=True)"))
        out.append(Check("terraform plan", c.address, "no change", _WILL[c.action], ok, fix))
    if not out:
        out.append(Check("terraform plan", facts.tf_dir, "no changes", res.summary or "changes (exit 2)", True,
                         "only outputs change"))
    return out


@register("terraform")
class TerraformStep:
    title = "Terraform: the operator's infrastructure/terraform describes the migrated lab"
    options = {"terraform_dir": (str, tf.TERRAFORM_DIR)}

    def observe(self, target, spec, options):
        return observe(target, spec, options)

    def plan(self, spec, observed, options):
        return plan_terraform(spec, observed)

    def apply(self, target, plan, options, progress):
        apply_terraform(target, plan, options, progress)

    def checks(self, target, spec, options):
        facts = observe(target, spec, options)
        if facts.tree is None or not facts.vm_resources:
            return []
        out = value_checks(spec, facts.tree)
        if facts.binary is not None and facts.initialised:
            out += plan_checks(facts, options)
        return out


__all__ = ["TerraformStep", "TfFacts", "apply_terraform", "observe", "plan_terraform"]
