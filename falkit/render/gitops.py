"""The operator's local checkout of the GitOps repository (``spec.gitops``): read, edit, rename,
diff and commit the manifests Argo CD deploys.

In the seed, Argo CD deploys the platform from ``kubernetes/platform/`` of the operator's GitOps
repository (an app-of-apps: one ``*-app.yaml`` Application per component, and the manifests they
deploy in sub-directories such as ``traefik/``); Longhorn is disabled by renaming its three
Application files to ``*.disabled`` so the parent app stops applying them (Argo CD's directory
source reads only ``*.yaml``, ``*.yml`` and ``*.json``).

- :class:`Checkout` reads the manifests (multi-document YAML), finds the document that defines an
  object (group, kind, namespace, name; a document without a namespace takes the destination
  namespace of the Application whose ``path`` holds the file), and plans edits and renames as
  :class:`GitEdit` values whose unified diff is the plan shown to the operator.
- Editing changes one document only, with ruamel.yaml round-trip on that document's text: every
  other document, comment, key order and quoting of the file stays byte-for-byte.
- :meth:`Checkout.commit` writes the planned edits (refusing when the file changed since the plan),
  commits them with the ``git`` CLI on ``spec.gitops.branch`` (pushing it when ``spec.gitops.push``);
  :meth:`Checkout.deliver` (called by :func:`falkit.steps.ownership.apply_git_changes` before it waits
  for Argo CD) then gets the commit where Argo CD reads it: Argo CD syncs the *remote's* tracked revision (the Applications' ``targetRevision``;
  ``HEAD`` = the remote's default branch), never this checkout. With ``spec.gitops.push`` the
  branch is pushed; with ``push`` and ``spec.gitops.merge`` the tracked branch is fast-forwarded
  to the commit; otherwise :class:`GitOpsGateError` stops the step and says exactly what to push
  and merge (default: ``merge: false`` — falkit never writes the tracked branch unless told to).
  Nothing reaches a remote unless ``push`` is true.

:func:`falkit.twin.gitops_fixture.make_fixture_repo` builds a repository with the seed's layout
(tests and the twin).
"""

from __future__ import annotations

import dataclasses
import difflib
import io
import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..model.errors import FalkitError
from . import mayastorvalues as mv

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")  # what Argo CD's directory source reads
DISABLED = ".disabled"
_DOC_START = re.compile(r"^---(\s|$)")


class GitOpsError(FalkitError, RuntimeError):
    """A GitOps checkout operation failed."""


class ManifestNotFoundError(GitOpsError, LookupError):
    """No document in the checkout defines the object."""


class CheckoutConflictError(GitOpsError):
    """The file changed between plan and apply, or the working tree has unrelated changes."""


class GitCommandError(GitOpsError):
    """``git`` exited non-zero; carries its stderr."""


class GitOpsGateError(GitOpsError):
    """falkit's commit is not in the revision Argo CD tracks and the spec does not let falkit put it
    there: the message says exactly what to push and merge; re-run the notebook afterwards."""


@dataclass(frozen=True)
class ObjectRef:
    """A Kubernetes object: ``api_version`` (``v1``, ``apps/v1``), ``kind``, ``namespace`` ('' for
    cluster-scoped), ``name``. Matching ignores the version (``group`` only)."""

    api_version: str
    kind: str
    namespace: str
    name: str

    @property
    def group(self) -> str:
        return self.api_version.rsplit("/", 1)[0] if "/" in self.api_version else ""

    @classmethod
    def of(cls, obj: dict) -> ObjectRef:
        md = obj.get("metadata") or {}
        return cls(obj.get("apiVersion", ""), obj.get("kind", ""), md.get("namespace") or "", md.get("name", ""))

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


@dataclass(frozen=True)
class ManifestDoc:
    """One document of a manifest file: ``path`` relative to the repository root, ``index`` among
    the file's non-empty documents, the parsed object and the namespace it lands in."""

    path: str
    index: int
    obj: dict
    namespace: str

    @property
    def ref(self) -> ObjectRef:
        r = ObjectRef.of(self.obj)
        return ObjectRef(r.api_version, r.kind, r.namespace or self.namespace, r.name)


@dataclass(frozen=True)
class GitEdit:
    """A planned change of one file: content ``before`` -> ``after`` (an edit) and/or a rename to
    ``rename_to``. ``diff`` is the unified diff shown as the plan."""

    path: str
    before: str
    after: str
    rename_to: str | None = None
    message: str = ""

    @property
    def diff(self) -> str:
        new_path = self.rename_to or self.path
        text = unified_diff(self.path, self.before, self.after, new_path)
        if self.rename_to and self.before == self.after:
            text = f"rename from {self.path}\nrename to {self.rename_to}\n"
        return text


def new_file_edit(rel: str, before: str, objects: Iterable[dict], message: str = "") -> GitEdit | None:
    """The edit that makes ``rel`` (now ``before``; "" absent) hold ``objects`` as YAML documents;
    None when it already does. Pure: a step that read ``before`` while observing plans it in plan."""
    text = "---\n".join(yaml.safe_dump(o, sort_keys=False) for o in objects)
    if before and load_documents(before) == load_documents(text):
        return None
    return GitEdit(rel, before, text, message=message or f"falkit: {'update' if before else 'add'} {rel}")


@dataclass(frozen=True)
class Commit:
    """What :meth:`Checkout.commit` did: the commit, the branch, the files and whether it pushed."""

    sha: str
    branch: str
    files: tuple[str, ...]
    pushed: bool
    message: str
    tracked: str = ""  # the remote branch Argo CD follows (the Applications' targetRevision)
    merged: bool = False  # the commit is in ``tracked`` on the remote


# ---------------------------------------------------------------------------------------------- text


def unified_diff(path: str, before: str, after: str, new_path: str | None = None) -> str:
    """``git diff``-style unified diff of one file (``a/path`` -> ``b/path``)."""
    lines = difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                 f"a/{path}", f"b/{new_path or path}")
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def split_documents(text: str) -> list[str]:
    """The file's text cut at ``---`` lines; each chunk keeps its separator line, so
    ``"".join(split_documents(t)) == t``."""
    chunks: list[list[str]] = [[]]
    for line in text.splitlines(keepends=True):
        if _DOC_START.match(line) and any(x.strip() and not x.lstrip().startswith("#") for x in chunks[-1]):
            chunks.append([])
        chunks[-1].append(line)
    return ["".join(c) for c in chunks]


def _doc_chunks(text: str) -> list[tuple[int, Any]]:
    """``[(chunk index, parsed object)]`` for the non-empty documents of ``text``."""
    out = []
    for i, chunk in enumerate(split_documents(text)):
        obj = yaml.safe_load(chunk) if chunk.strip() else None
        if isinstance(obj, dict):
            out.append((i, obj))
    return out


def load_documents(text: str) -> list[dict]:
    """The non-empty mapping documents of a multi-document YAML text."""
    return [obj for _, obj in _doc_chunks(text)]


def _merge(target: Any, patch: dict) -> None:
    """RFC 7386 JSON merge patch applied in place to a ruamel CommentedMap (None deletes). A key
    added in the same mapping where one is deleted takes the deleted key's place (an annotation
    renamed keeps its position)."""
    freed: list[int] = []
    for key, value in patch.items():
        if value is None:
            if key in target:
                freed.append(list(target).index(key))
                target.pop(key)
        elif key not in target and freed and hasattr(target, "insert"):
            target.insert(freed.pop(0), key, value)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def edit_document(text: str, index: int, patch: dict) -> str:
    """``text`` with merge ``patch`` applied to its ``index``-th non-empty document (ruamel.yaml
    round-trip of that document only: comments, order and quoting elsewhere are kept)."""
    from ruamel.yaml import YAML  # noqa: PLC0415 - loaded only when a document is edited round-trip (start-up time)

    chunks = split_documents(text)
    docs = _doc_chunks(text)
    if index >= len(docs):
        raise ManifestNotFoundError(f"document {index} does not exist ({len(docs)} documents)")
    ci = docs[index][0]
    chunk = chunks[ci]
    lines = chunk.splitlines(keepends=True)
    head = lines[0] if lines and _DOC_START.match(lines[0]) else ""
    body = chunk[len(head):]
    mapping, offset = guess_indent(body)
    ry = YAML()
    ry.preserve_quotes = True
    ry.width = 4096
    ry.indent(mapping=mapping, sequence=offset + 2, offset=offset)
    data = ry.load(body)
    _merge(data, patch)
    buf = io.StringIO()
    ry.dump(data, buf)
    new_body = buf.getvalue()
    if body.endswith("\n\n") and not new_body.endswith("\n\n"):
        new_body += "\n" * (len(body) - len(body.rstrip("\n")) - 1)
    chunks[ci] = head + new_body
    return "".join(chunks)


def guess_indent(text: str) -> tuple[int, int]:
    """``(mapping indent, dash offset)`` of a block-style YAML text: ``2, 2`` for the kubectl
    style (``ports:`` / ``  - name: web``), ``2, 0`` for ``- name`` under the key."""
    mapping, offset = 0, None
    prev = None
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        col = len(line) - len(stripped)
        if stripped.startswith("- ") or stripped == "-":
            if offset is None and prev is not None and not prev[1].startswith("-"):
                offset = max(0, col - prev[0])
        elif col > 0 and (mapping == 0 or col < mapping) and prev is not None and not prev[1].startswith("-"):
            mapping = col
        prev = (col, stripped)
    return mapping or 2, 2 if offset is None else offset


def patch_fields(patch: dict, prefix: str = "") -> list[str]:
    """Dotted leaf paths of a merge patch: ``{"metadata": {"annotations": {"a/b": "x"}}}`` ->
    ``["metadata.annotations.a/b"]``."""
    out = []
    for k, v in patch.items():
        path = f"{prefix}.{k}" if prefix else str(k)
        out.extend(patch_fields(v, path) if isinstance(v, dict) and v else [path])
    return out


def get_field(obj: Any, dotted: str, patch: dict | None = None) -> Any:
    """The value at a dotted path made by :func:`patch_fields` (keys may contain dots: the patch
    gives the split)."""
    keys = _keys(patch, dotted) if patch is not None else dotted.split(".")
    cur = obj
    for k in keys:
        if not isinstance(cur, dict) or k not in cur:
            return None
        cur = cur[k]
    return cur


def _keys(patch: dict, dotted: str) -> list[str]:
    for k, v in patch.items():
        if dotted == k:
            return [k]
        if dotted.startswith(k + ".") and isinstance(v, dict):
            return [k, *_keys(v, dotted[len(k) + 1:])]
    return dotted.split(".")


# ---------------------------------------------------------------------------------------------- git


def git(root: str | os.PathLike, *args: str, check: bool = True) -> str:
    """Run ``git -C root args`` and return stdout (``GitCommandError`` with stderr on failure)."""
    proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                          env={**os.environ, "GIT_TERMINAL_PROMPT": "0"}, check=False)
    if check and proc.returncode != 0:
        raise GitCommandError(f"git {' '.join(args)} failed in {root}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def git_identity(root: Path) -> list[str]:
    """``-c user.name/email`` when the checkout has no identity configured (fresh machines)."""
    if git(root, "config", "user.email", check=False).strip():
        return []
    return ["-c", "user.name=falkit", "-c", "user.email=falkit@localhost"]


# ---------------------------------------------------------------------------------------------- checkout


@dataclass
class Checkout:
    """The operator's checkout: ``root``, ``platform_path`` (relative), ``branch`` to commit on,
    ``push`` (push the branch to ``remote`` after committing), ``longhorn_files``."""

    root: Path
    platform_path: str = "kubernetes/platform"
    branch: str = "falkit/migration"
    push: bool = False
    remote: str = "origin"
    merge: bool = False
    target_revision: str = "HEAD"
    longhorn_files: tuple[str, ...] = ("longhorn-app.yaml", "longhorn-ingress-app.yaml", "longhorn-rbac-app.yaml")
    _cache: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_spec(cls, gitops: Any, root: str | os.PathLike | None = None) -> Checkout:
        """From ``spec.gitops``; ``root`` overrides ``checkout`` (the twin keeps its own)."""
        path = Path(os.path.expanduser(str(root if root is not None else gitops.checkout)))
        return cls(path, gitops.platform_path.strip("/"), gitops.branch, gitops.push,
                   longhorn_files=tuple(gitops.longhorn_files), merge=bool(getattr(gitops, "merge", False)))

    @classmethod
    def for_target(cls, target: Any) -> Checkout:
        """The checkout falkit edits on ``target``: the spec's, except on the twin, whose
        connection may name its own (``connection["gitops"]["checkout"]``, a fixture repository in
        the twin's state directory) so a rehearsal never touches the operator's real checkout."""
        gitops = target.gitops
        if gitops is None:
            raise GitOpsError("the lab spec has no 'gitops' section")
        root = (target.connection.get("gitops") or {}).get("checkout") if target.kind == "twin" else None
        return cls.from_spec(gitops, root)

    # -- reading ----------------------------------------------------------------------------------
    def path(self, rel: str) -> Path:
        return self.root / rel

    def read(self, rel: str) -> str:
        return self.path(rel).read_text(encoding="utf-8")

    def exists(self, rel: str) -> bool:
        return self.path(rel).is_file()

    def manifest_files(self, under: str | None = None) -> list[str]:
        """Manifest files (``*.yaml``/``*.yml``/``*.json``, not ``*.disabled``) below ``under``
        (default ``platform_path``), relative to the root, sorted."""
        base = self.path(under if under is not None else self.platform_path)
        if not base.is_dir():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*")
                      if p.is_file() and p.suffix in MANIFEST_SUFFIXES and ".git" not in p.parts)

    def documents(self, under: str | None = None) -> list[ManifestDoc]:
        apps = self._app_namespaces()
        out = []
        for rel in self.manifest_files(under):
            ns = apps.get(str(Path(rel).parent), "")
            for i, obj in enumerate(load_documents(self.read(rel))):
                out.append(ManifestDoc(rel, i, obj, ns))
        return out

    def _app_namespaces(self) -> dict[str, str]:
        """Application ``spec.source.path`` -> destination namespace, for the repo's Applications."""
        out = {}
        for rel in self.manifest_files(self.platform_path):
            for obj in load_documents(self.read(rel)):
                if obj.get("kind") == "Application":
                    spec = obj.get("spec") or {}
                    for src in [spec.get("source") or {}, *(spec.get("sources") or [])]:
                        if src.get("path"):
                            out[src["path"].strip("/")] = (spec.get("destination") or {}).get("namespace", "")
        return out

    def find(self, ref: ObjectRef) -> ManifestDoc | None:
        """The document defining ``ref`` (group, kind, name; namespace explicit or the app's)."""
        hits = [d for d in self.documents() if d.ref.kind == ref.kind and d.ref.name == ref.name
                and d.ref.group == ref.group and d.ref.namespace in (ref.namespace, "")]
        exact = [d for d in hits if d.ref.namespace == ref.namespace]
        return (exact or hits or [None])[0]

    def applications(self) -> list[ManifestDoc]:
        """The Application documents directly in ``platform_path`` (the app-of-apps' children)."""
        top = [r for r in self.manifest_files(self.platform_path) if str(Path(r).parent) == self.platform_path]
        return [d for d in self.documents(self.platform_path) if d.path in top and d.obj.get("kind") == "Application"]

    # -- planning ---------------------------------------------------------------------------------
    def plan_edit(self, ref: ObjectRef, patch: dict, message: str = "") -> GitEdit | None:
        """The edit that merges ``patch`` into the document defining ``ref``; None when the file
        already says so. ``ManifestNotFoundError`` when no document defines it."""
        doc = self.find(ref)
        if doc is None:
            raise ManifestNotFoundError(f"no manifest under {self.root / self.platform_path} defines {ref}")
        before = self.read(doc.path)
        after = edit_document(before, doc.index, patch)
        if after == before:
            return None
        changed = [f for f in patch_fields(patch) if get_field(doc.obj, f, patch) != get_field(patch, f, patch)]
        return GitEdit(doc.path, before, after,
                       message=message or f"falkit: {ref}: {', '.join(changed or patch_fields(patch))}")

    def plan_new_file(self, rel: str, objects: Iterable[dict], message: str = "") -> GitEdit | None:
        """Create (or replace) ``rel`` with ``objects`` as YAML documents; None when identical."""
        return new_file_edit(rel, self.read(rel) if self.exists(rel) else "", objects, message)

    def plan_rename(self, rel: str, disable: bool = True, message: str = "") -> GitEdit | None:
        """Rename ``rel`` to ``rel.disabled`` (``disable``) or back; None when already so.
        ``ManifestNotFoundError`` when neither name exists."""
        enabled, disabled = rel.removesuffix(DISABLED), rel.removesuffix(DISABLED) + DISABLED
        src, dst = (enabled, disabled) if disable else (disabled, enabled)
        if self.exists(dst) and not self.exists(src):
            return None
        if not self.exists(src):
            raise ManifestNotFoundError(f"neither {enabled} nor {disabled} exists in {self.root}")
        text = self.read(src)
        verb = "disable" if disable else "re-enable"
        return GitEdit(src, text, text, rename_to=dst, message=message or f"falkit: {verb} {Path(enabled).name}")

    def longhorn_renames(self, disable: bool = True) -> list[GitEdit]:
        """The seed's Longhorn step: its Application files renamed ``*.disabled`` (or back)."""
        edits = [self.plan_rename(f"{self.platform_path}/{name}", disable) for name in self.longhorn_files]
        return [e for e in edits if e is not None]

    # -- applying ---------------------------------------------------------------------------------
    def current_branch(self) -> str:
        return git(self.root, "rev-parse", "--abbrev-ref", "HEAD").strip()

    def head(self, rev: str = "HEAD") -> str:
        return git(self.root, "rev-parse", f"{rev}^{{commit}}").strip()

    def ensure_branch(self) -> None:
        """Switch to ``branch`` (created from HEAD when missing). Refuses when the working tree has
        uncommitted changes to tracked files (they would be carried over or lost)."""
        if self.current_branch() == self.branch:
            return
        dirty = git(self.root, "status", "--porcelain", "--untracked-files=no").strip()
        if dirty:
            raise CheckoutConflictError(f"{self.root} has uncommitted changes; commit or stash them before falkit "
                                        f"switches to branch {self.branch}:\n{dirty}")
        exists = git(self.root, "rev-parse", "--verify", "--quiet", f"refs/heads/{self.branch}", check=False).strip()
        git(self.root, "switch", *(() if exists else ("-c",)), self.branch)

    def commit(self, edits: Iterable[GitEdit], message: str | None = None) -> Commit | None:
        """Write ``edits`` and commit them on ``branch``; push only when ``push`` is true.
        ``CheckoutConflictError`` when a file no longer has the content the plan was made from."""
        edits = list(edits)
        if not edits:
            return None
        self.ensure_branch()
        for e in edits:
            current = self.read(e.path) if self.exists(e.path) else ""
            if current != e.before:
                raise CheckoutConflictError(f"{e.path} changed since the plan was made; re-run the step to re-plan")
        files: list[str] = []
        for e in edits:
            p = self.path(e.path)
            if e.rename_to:
                git(self.root, "mv", e.path, e.rename_to)
                self.path(e.rename_to).write_text(e.after, encoding="utf-8")
                files += [e.path, e.rename_to]
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(e.after, encoding="utf-8")
                files.append(e.path)
        added = [f for f in files if self.exists(f)]
        git(self.root, "add", "--", *added)
        lines = list(dict.fromkeys(e.message for e in edits if e.message)) or ["falkit: GitOps change"]
        msg = message or (lines[0] if len(lines) == 1 else f"falkit: {len(lines)} GitOps changes\n\n" + "\n".join(lines))
        git(self.root, *git_identity(self.root), "commit", "-q", "-m", msg, "--", *files)
        sha = self.head()
        pushed = False
        if self.push:
            git(self.root, "push", "-q", self.remote, f"{self.branch}:{self.branch}")
            pushed = True
        return Commit(sha, self.branch, tuple(files), pushed, msg)

    def tracked_branch(self) -> str:
        """The remote branch Argo CD follows: ``target_revision``, or for ``HEAD`` the remote's
        default branch (``git ls-remote --symref REMOTE HEAD``)."""
        if self.target_revision not in ("", "HEAD"):
            return self.target_revision.removeprefix("refs/heads/")
        out = git(self.root, "ls-remote", "--symref", self.remote, "HEAD")
        for line in out.splitlines():
            if line.startswith("ref: refs/heads/") and line.endswith("\tHEAD"):
                return line[len("ref: refs/heads/"):-len("\tHEAD")]
        raise GitOpsError(f"cannot tell which branch {self.remote}'s HEAD is (git ls-remote --symref {self.remote} HEAD)")

    def deliver(self, commit: Commit) -> Commit:
        """Get ``commit`` into the revision Argo CD syncs (it reads the remote, never this checkout):

        1. ``push``: push ``branch`` to ``remote`` (:meth:`commit` did when it made the commit);
        2. already in the tracked branch on the remote: done;
        3. ``push`` and ``merge``: fast-forward the tracked branch to the commit
           (``git push REMOTE SHA:refs/heads/TRACKED``; git refuses anything but a fast-forward);
        4. otherwise :class:`GitOpsGateError` naming the branch, the commit and the exact commands.
        """
        if self.push and not commit.pushed:
            git(self.root, "push", "-q", self.remote, f"{self.branch}:{self.branch}")
            commit = dataclasses.replace(commit, pushed=True)
        tracked = self.tracked_branch()
        commit = dataclasses.replace(commit, tracked=tracked)
        git(self.root, "fetch", "-q", self.remote, f"+refs/heads/{tracked}:refs/remotes/{self.remote}/{tracked}")
        upstream = f"{self.remote}/{tracked}"
        if self._is_ancestor(commit.sha, upstream):
            return dataclasses.replace(commit, merged=True)
        if self.push and self.merge:
            if not self._is_ancestor(upstream, commit.sha):
                raise GitOpsGateError(
                    f"{upstream} has commits that {self.branch} (commit {commit.sha[:10]}) lacks, so falkit cannot "
                    f"fast-forward it: in {self.root} run  git fetch {self.remote} && git rebase {upstream} "
                    f"{self.branch} && git push --force-with-lease {self.remote} {self.branch}  then merge "
                    f"{self.branch} into {tracked} (or re-run: falkit fast-forwards it), and re-run the notebook")
            git(self.root, "push", "-q", self.remote, f"{commit.sha}:refs/heads/{tracked}")
            return dataclasses.replace(commit, merged=True)
        push = "" if commit.pushed else f"git -C {self.root} push {self.remote} {self.branch}; then "
        raise GitOpsGateError(
            f"Argo CD syncs {tracked} of {self.remote}; falkit's changes are commit {commit.sha[:10]} on branch "
            f"{self.branch}{'' if commit.pushed else ' (local only: spec.gitops.push is false)'}. To deploy them: "
            f"{push}merge {self.branch} into {tracked} (a pull request, or  git -C {self.root} push {self.remote} "
            f"{self.branch}:{tracked}  for a fast-forward), then re-run this notebook. (With spec.gitops.push "
            f"and spec.gitops.merge true falkit does both itself.)")

    def _is_ancestor(self, a: str, b: str) -> bool:
        proc = subprocess.run(["git", "-C", str(self.root), "merge-base", "--is-ancestor", a, b],
                              capture_output=True, text=True, check=False)
        return proc.returncode == 0


# ---------------------------------------------------------------------------------------------- Applications

ARGOCD_NS = "argocd"
TRAEFIK_SERVICE = "kubernetes/platform/traefik/service.yaml"


def application(name: str, repo_url: str, *, path: str | None = None, chart: str | None = None,
                revision: str = "HEAD", namespace: str, values: dict | None = None, prune: bool = True,
                self_heal: bool = True) -> dict:
    """An ``argoproj.io/v1alpha1`` Application in namespace ``argocd`` (project ``default``): a Git
    directory source (``path``) or a Helm chart source (``chart`` from the Helm repository
    ``repo_url`` at version ``revision``), automated sync with prune and self-heal, and
    ``CreateNamespace=true`` as the seed's apps use it."""
    source: dict[str, Any] = {"repoURL": repo_url, "targetRevision": revision}
    if chart:
        source["chart"] = chart
        if values:
            source["helm"] = {"valuesObject": values}
    else:
        source["path"] = path
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": ARGOCD_NS},
            "spec": {"project": "default", "source": source,
                     "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
                     "syncPolicy": {"automated": {"prune": prune, "selfHeal": self_heal},
                                    "syncOptions": ["CreateNamespace=true"]}}}


def platform_application(gitops: Any, name: str = "platform") -> dict:
    """The seed's app-of-apps: a directory source over ``platform_path`` (not recursive: only the
    ``*-app.yaml`` files at its top level), applied into ``argocd``; pruning removes a child
    Application whose file was renamed ``*.disabled``."""
    return application(name, gitops.repo_url, path=gitops.platform_path, namespace=ARGOCD_NS)


def mayastor_application(spec: Any) -> dict:
    """The Mayastor Application ("Mayastor will be deployed by ArgoCD"): the ``mayastor`` chart at
    the spec's version with the values falkit computes (:mod:`falkit.render.mayastorvalues`)."""
    return application("mayastor", mv.CHART_REPO, chart=mv.CHART, revision=spec.versions.mayastor,
                       namespace=spec.mayastor.namespace, values=mv.helm_values(spec))
