"""rollback-gitops: the GitOps checkout's tree as it was before the migration — the files the
earlier rollback steps left different (a value re-written in another YAML style, a file the
migration added such as ``mayastor-app.yaml``) get their content at the commit before falkit's
first commit back, or are removed; committed on ``spec.gitops.branch`` and delivered to the branch
Argo CD syncs (:meth:`falkit.render.gitops.Checkout.deliver`: push, fast-forward when ``merge``).

"Before" is the recorded before-state's tree (sha256 per file, :mod:`.state`); the content comes
from Git: the parent of the oldest commit whose message starts with ``falkit:`` (every commit falkit
makes does). Files the working tree changed without a commit (rollback-longhorn's renames, which
the operator commits) count as they are on disk.

An Argo CD Application whose manifest leaves Git this way (``mayastor``) is pruned by its
app-of-apps when that has ``prune: true``; otherwise this step deletes it after the push, as
``argocd app sync --prune`` of the parent would (Argo CD "Sync Options": prune; the twin's Argo CD
models both, falkit/twin/lab/argocd.py). With the ``resources-finalizer.argocd.argoproj.io``
finalizer Argo CD deletes its resources too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import yaml

from ...clients.kube import WaitTimeoutError, kdelete, kget, wait_for
from ...model.errors import StepError
from ...model.spec import LabSpec
from ...plan.diff import Change, Noop, Plan
from ...plan.payloads import GitRepo, GitRestore, WaitPruned
from ...render.gitops import Checkout, Commit, GitCommandError, GitOpsError, git, git_identity
from ..base import Progress, StepOptions
from ..executors import Apply, execute, executes, executes_together
from ..volumes import checkout_path
from .state import recorded_before

MESSAGE = "falkit: rollback: GitOps tree back to {base}"
UNKNOWN = "\0unknown"  # the content at the base commit is not what the before-state recorded
PRUNE_WAIT_S = 60.0


@dataclass(frozen=True)
class GitBackFacts:
    checkout: str | None
    base: str | None
    before: dict[str, str] | None  # path -> sha256[:16] (recorded)
    files: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)  # path -> (now, at base); None = absent
    first: str | None = None  # falkit's oldest commit (the rollback commit names it)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def observe_gitops_back(target: Any, spec: LabSpec, options: StepOptions) -> GitBackFacts:
    path = checkout_path(spec.gitops, options, target)
    rec = recorded_before(target)
    before = {k.split("|")[1]: v for k, v in (rec.fields if rec else {}).items() if k.startswith("gitops|")} or None
    if path is None or not (path / ".git").exists():
        return GitBackFacts(str(path) if path else None, None, before)
    ours = git(path, "log", "--format=%H", "--grep=^falkit:", "HEAD", check=False).split()
    if not ours:
        return GitBackFacts(str(path), None, before)
    base = git(path, "rev-parse", f"{ours[-1]}^", check=False).strip() or None
    files: dict[str, tuple[str | None, str | None]] = {}
    if before is not None and base:
        now = {str(p.relative_to(path)): p for p in path.rglob("*") if p.is_file() and ".git" not in p.relative_to(path).parts}
        for rel in sorted(set(now) | set(before)):
            cur = now[rel].read_bytes() if rel in now else None
            if cur is not None and before.get(rel) == hashlib.sha256(cur).hexdigest()[:16]:
                continue
            old = git(path, "show", f"{base}:{rel}", check=False) if rel in before else None
            if old is not None and before.get(rel) != _sha(old):
                old = UNKNOWN  # not what the before-state had on disk: falkit does not guess
            files[rel] = (cur.decode("utf-8", "replace") if cur is not None else None, old)
    return GitBackFacts(str(path), base, before, files, ours[-1])


def _application(text: str | None) -> str | None:
    """The name of the Argo CD Application a manifest defines, if it is one."""
    try:
        docs = [d for d in yaml.safe_load_all(text or "") if isinstance(d, dict)]
    except yaml.YAMLError:
        return None
    app = next((d for d in docs if d.get("kind") == "Application" and str(d.get("apiVersion", "")).startswith("argoproj.io/")), None)
    return ((app or {}).get("metadata") or {}).get("name")


def plan_gitops_back(spec: LabSpec, f: GitBackFacts, options: StepOptions) -> Plan:
    if f.before is None:
        return Plan("rollback-gitops", notes=("no before-state of the GitOps tree recorded: nothing to compare with",))
    if f.base is None:
        return Plan("rollback-gitops", notes=(f"no falkit commit in {f.checkout}: the tree is as the operator keeps it",))
    changes, noops, notes = [], [], []
    repo = GitRepo.of(Checkout.from_spec(spec.gitops, f.checkout)) if spec.gitops else GitRepo(str(f.checkout))
    pruned = []  # after the commit: the Applications whose manifests left Git
    message = MESSAGE.format(base=(f.first or f.base)[:10])
    for rel, (cur, old) in sorted(f.files.items()):
        if old == UNKNOWN:
            notes.append(f"{rel}: the before-state's content is not the one at {f.base[:10]}; left as it is")
            continue
        if old is None and cur is not None:
            changes.append(Change("delete", "git-file", rel, reason=f"not in the tree before the migration ({f.base[:10]})",
                                  data=GitRestore(repo, rel, cur, None, message)))
            app = _application(cur)
            if app:
                pruned.append(Change("delete", "argocd-application", f"argocd/{app}",
                                      reason="its manifest leaves Git: pruned by its app-of-apps, else deleted",
                                      data=WaitPruned(app, PRUNE_WAIT_S)))
        elif old is not None:
            changes.append(Change("update" if cur is not None else "create", "git-file", rel, "content",
                                  reason=f"back to {f.base[:10]} (before the migration)",
                                  data=GitRestore(repo, rel, cur, old, message)))
    changes += pruned
    if not changes and not notes:
        noops.append(Noop("git-tree", f.checkout or "?", f"every file as before the migration ({len(f.before)})"))
    return Plan("rollback-gitops", tuple(changes), tuple(noops), tuple(notes))


def apply_gitops_back(target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
    execute(target, plan.changes, progress, options.wait_timeout_s, step="rollback-gitops")


@executes_together(GitRestore, key=lambda c: (c.data.repo, c.data.message))
def _restore(changes: list[Change], ctx: Apply) -> None:
    """Every file back as planned (each still as it was when planned), in one commit, delivered
    when the checkout pushes."""
    d0: GitRestore = changes[0].data
    co = d0.repo.checkout()
    root = co.root
    try:
        co.ensure_branch()
        for c in changes:
            p = root / c.data.path
            now = p.read_text(encoding="utf-8") if p.is_file() else None
            if now != c.data.before:
                raise StepError("rollback-gitops", f"{c.data.path} changed since the plan was made; re-run the step")
        paths = []
        for c in changes:
            p = root / c.data.path
            if c.data.after is None:
                git(root, "rm", "-q", "--", c.data.path)
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(c.data.after, encoding="utf-8")
                git(root, "add", "--", c.data.path)
            paths.append(c.data.path)
        git(root, *git_identity(root), "commit", "-q", "-m", d0.message, "--", *paths)
        commit = Commit(co.head(), co.branch, tuple(paths), False, d0.message)
        if co.push:
            commit = co.deliver(commit)
        ctx.progress.log(f"rollback-gitops: committed {commit.sha[:10]} on {commit.branch}: {len(paths)} file(s) as before")
    except (GitCommandError, GitOpsError) as e:
        raise StepError("rollback-gitops", str(e)) from e


@executes(WaitPruned)
def _pruned(c: Change, ctx: Apply) -> None:
    """The Application pruned by its parent, else (no prune) deleted, as ``argocd app sync --prune`` would."""
    api = ctx.target.kube()
    name = c.data.name
    try:
        wait_for(lambda: kget(api, "argoproj.io/v1alpha1", "Application", name, "argocd"), lambda a: a is None,
                 min(c.data.wait_s, ctx.timeout), f"Argo CD prunes Application {name}",
                 ctx.progress.task(f"Application {name} pruned", 1),
                 describe=lambda a: "pruned" if a is None else "still there")
    except WaitTimeoutError:
        ctx.progress.log(f"rollback-gitops: Application {name} not pruned by its parent (no prune): deleting it")
        kdelete(api, "argoproj.io/v1alpha1", "Application", name, "argocd")
