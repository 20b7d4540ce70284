"""Who owns a Kubernetes object, and how falkit changes it: directly, or through the GitOps
repository when Argo CD manages it.

A direct patch of an object Argo CD manages is undone by self-heal within seconds (or left
OutOfSync without it); the change belongs in the manifest in Git. So, before falkit changes an
object:

- :func:`managed_by` reads Argo CD's tracking from the live object: the annotation
  ``argocd.argoproj.io/tracking-id: <app>:<group>/<kind>:<namespace>/<name>`` (the default tracking
  method in Argo CD 3.x — ``falkit/data/upstream/PROVENANCE.md``, "Facts for a simulator"), or the
  label ``app.kubernetes.io/instance`` (label tracking, the 2.x default) — the label only counts when
  an Application of that name exists, because Helm charts set the same label to their release name;
- :func:`plan_object_change` returns one :class:`~falkit.plan.diff.Change`: ``kind="k8s-object"`` (a
  direct merge patch / create) when no Application manages the object, or ``kind="git-file"`` (the
  manifest edited in the checkout, its unified diff in ``reason``/``data``) when one does, or
  ``kind="argocd-sync"`` when Git already says so and only the sync is missing; None when there is
  nothing to do;
- :func:`plan_renames` / :func:`plan_file` plan Longhorn's ``*.disabled`` renames (and their
  reversal) and Application files (the Mayastor Application) as ``git-file`` changes;
- :func:`apply_git_changes` commits the ``git-file`` changes of a plan in one commit on
  ``spec.gitops.branch`` (pushing only when ``spec.gitops.push``) and waits until each Application
  reports the commit as its synced revision, Synced, and the live object carries the new values.
- :class:`GitOpsChanger` is :class:`falkit.clients.kube.KubeChanger` with the same check at apply time, for
  steps that change objects through a changer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable
from typing import Any

from ..clients.kube import WaitReporter, kget
from ..model.errors import FalkitError
from ..plan.diff import Change
from ..plan.payloads import DirectChange, GitChange, GitRepo
from ..render.gitops import Checkout, Commit, GitEdit, ObjectRef, get_field, load_documents, patch_fields

TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"
INSTANCE_LABEL = "app.kubernetes.io/instance"
ARGOCD_NS = "argocd"
APPLICATION = ("argoproj.io/v1alpha1", "Application")


class OwnershipError(FalkitError, RuntimeError):
    """An Argo CD-managed object cannot be changed as asked (no GitOps checkout, no manifest)."""


class SyncTimeoutError(FalkitError, TimeoutError):
    """Argo CD did not sync a Git change in time. Says which app, what it reports, and why."""


def tracking_id(app: str, ref: ObjectRef) -> str:
    """``<app>:<group>/<kind>:<namespace>/<name>`` as Argo CD writes it (group '' for core)."""
    return f"{app}:{ref.group}/{ref.kind}:{ref.namespace}/{ref.name}"


def parse_tracking_id(value: str) -> tuple[str, str, str, str, str] | None:
    """``(app, group, kind, namespace, name)`` or None when ``value`` is not a tracking id."""
    try:
        app, gk, nsn = value.split(":", 2)
        group, kind = gk.split("/", 1)
        ns, name = nsn.split("/", 1)
    except ValueError:
        return None
    return app, group, kind, ns, name


def managed_by(obj: dict | None, applications: Collection[str] | None = None) -> str | None:
    """The name of the Argo CD Application that manages ``obj``, or None.

    The tracking annotation decides when present (its ``<app>`` may be ``<appNs>_<name>`` for an
    Application outside ``argocd``: the name is returned) — unless ``applications`` (the
    Applications that exist) is given and does not hold it: an object left behind by a deleted
    Application (Argo CD orphans resources without its finalizer) is nobody's. Otherwise the label
    ``app.kubernetes.io/instance`` counts only if it names one of ``applications``."""
    if not obj:
        return None
    md = obj.get("metadata") or {}
    parsed = parse_tracking_id((md.get("annotations") or {}).get(TRACKING_ANNOTATION) or "")
    if parsed:
        app = parsed[0].split("_", 1)[-1]
        return app if applications is None or app in applications else None
    label = (md.get("labels") or {}).get(INSTANCE_LABEL)
    if label and applications is not None and label in applications:
        return label
    return None


def matches(obj: dict | None, patch: dict) -> bool:
    """True when every leaf of the merge ``patch`` already holds in ``obj`` (None = absent)."""
    if obj is None:
        return False
    return all(get_field(obj, f, patch) == get_field(patch, f, patch) for f in patch_fields(patch))


def _values(obj: dict | None, patch: dict) -> str:
    return ", ".join(f"{f}={get_field(obj, f, patch)!r}" for f in patch_fields(patch)) if obj is not None else ""


def plan_object_change(ref: ObjectRef, observed: dict | None, patch: dict, checkout: Checkout | None, *,
                       desired: dict | None = None, applications: Collection[str] | None = None,
                       reason: str = "") -> Change | None:
    """One change that makes ``patch`` hold on ``ref`` (see the module docstring).

    ``observed`` is the live object (None: missing); ``desired`` the full object to create when it
    is missing and no Application manages it. An Argo CD-managed object needs ``checkout`` and a
    manifest defining it (:class:`OwnershipError` otherwise)."""
    app = managed_by(observed, applications)
    fields = ", ".join(patch_fields(patch))
    if app is None:
        if observed is None:
            if desired is None:
                raise OwnershipError(f"{ref} does not exist and no object to create was given")
            return Change("create", "k8s-object", _name(ref), new=ref.kind, reason=reason,
                          data=DirectChange(ref, create=desired))
        if matches(observed, patch):
            return None
        return Change("update", "k8s-object", _name(ref), fields, _values(observed, patch), _values(patch, patch),
                      reason=reason, data=DirectChange(ref, patch=patch))
    if checkout is None:
        raise OwnershipError(f"{ref} is managed by Argo CD application {app!r}: a direct change would be reverted "
                             f"by self-heal; set spec.gitops (the checkout of the GitOps repository)")
    edit = checkout.plan_edit(ref, patch)  # its commit names only the fields Git does not have yet
    why = f"managed by Argo CD application {app!r}: changed in Git"
    if edit is not None:
        return Change("update", "git-file", edit.path, fields, _values(observed, patch), _values(patch, patch),
                      reason=f"{why}{'; ' + reason if reason else ''}", data=GitChange(edit, app, ref, patch, repo=GitRepo.of(checkout)))
    if matches(observed, patch):
        return None
    return Change("action", "argocd-sync", app, fields, _values(observed, patch), _values(patch, patch),
                  reason=f"Git already has {fields}; Argo CD has not synced {ref} yet",
                  data=GitChange(None, app, ref, patch, repo=GitRepo.of(checkout)))


def _name(ref: ObjectRef) -> str:
    return f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name


def plan_renames(checkout: Checkout, disable: bool = True, parent_app: str = "platform") -> tuple[Change, ...]:
    """Longhorn's Application files renamed ``*.disabled`` (``disable``) or back (rollback). The
    parent app-of-apps then prunes (or re-creates) the child Applications."""
    out = []
    for e in checkout.longhorn_renames(disable):
        data = rename_change(e, GitRepo.of(checkout), disable, parent_app)
        out.append(Change("update", "git-file", e.path, "name", e.path, e.rename_to,
                          reason=f"{'disable' if disable else 're-enable'} Longhorn: app-of-apps {parent_app!r} "
                                 f"{'prunes' if disable else 'creates'} Application {_child(data)!r}",
                          data=data))
    return tuple(out)


def rename_change(edit: GitEdit, repo: GitRepo, disable: bool, parent_app: str = "platform") -> GitChange:
    """The payload of a Longhorn Application file renamed (``edit``): the app-of-apps
    ``parent_app`` then prunes (``disable``) or creates the child Application the file defines."""
    child = _app_name(edit.before) if edit.before else None
    gone = ObjectRef(*APPLICATION, ARGOCD_NS, child) if child else None
    return GitChange(edit, parent_app, gone, None, gone=disable, repo=repo)


def _child(data: GitChange) -> str | None:
    return data.ref.name if data.ref is not None else None


def _app_name(text: str) -> str | None:
    return next((d["metadata"]["name"] for d in load_documents(text) if d.get("kind") == "Application"), None)


def plan_file(checkout: Checkout, rel: str, objects: list[dict], parent_app: str = "platform",
              reason: str = "") -> Change | None:
    """A manifest file created or replaced in Git (e.g. ``mayastor-app.yaml``)."""
    return file_change(checkout.plan_new_file(rel, objects), GitRepo.of(checkout), objects, parent_app, reason)


def file_change(edit: GitEdit | None, repo: GitRepo, objects: list[dict], parent_app: str = "platform",
                reason: str = "") -> Change | None:
    """The ``git-file`` change of a planned new-file ``edit`` (None: the file is as planned)."""
    if edit is None:
        return None
    rel = edit.path
    first = objects[0] if objects else {}
    ref = ObjectRef.of(first) if first else None
    return Change("update" if edit.before else "create", "git-file", rel, new=f"{len(objects)} document(s)",
                  reason=reason or f"applied by app-of-apps {parent_app!r}",
                  data=GitChange(edit, parent_app, ref, None, repo=repo))


def git_diff(changes: Iterable[Change]) -> str:
    """The unified diff of a plan's ``git-file`` changes (what the notebook shows)."""
    return "".join(c.data.edit.diff for c in changes if c.kind == "git-file" and c.data.edit is not None)


# ---------------------------------------------------------------------------------------------- apply


def _get(api: Any, api_version: str, kind: str, name: str, namespace: str | None) -> dict | None:
    return kget(api, api_version, kind, name, namespace or None)


def app_status(app: dict | None) -> tuple[str, str, str]:
    """``(sync status, health status, synced revision)`` of an Application dict."""
    st = (app or {}).get("status") or {}
    sync = st.get("sync") or {}
    return sync.get("status") or "Unknown", (st.get("health") or {}).get("status") or "Unknown", sync.get("revision") or ""


STUCK_AFTER_S = 30.0


def wait_for_sync(api: Any, change: GitChange, commit: Commit | None, *, timeout: float = 300.0, poll: float = 0.2,
                  progress: Callable[[float, str], None] | None = None, stuck_after: float = STUCK_AFTER_S) -> dict | None:
    """Wait until Application ``change.app`` reports ``commit`` as its revision (when it tracks this
    repository) and Synced, and the live object carries ``change.expect`` (or is gone). Returns the
    live object. :class:`SyncTimeoutError` says what Argo CD reported last and, when the commit was
    not pushed, that Argo CD cannot see it until it is.

    Says what it waits for at least every :func:`falkit.clients.kube.report_every` seconds. Fails fast
    (after ``stuck_after`` seconds, not ``timeout``) when Argo CD reports the Application Synced at
    the expected revision while the live object still lacks the change: Argo CD then considers the
    object in sync with Git and will not change it, so waiting cannot help (seen when the GitOps
    repository is ahead of the lab: a twin started with an earlier rehearsal's repository)."""
    start = time.monotonic()
    last = ""
    stuck_since: float | None = None
    report = WaitReporter(f"Argo CD to sync {change.app} ({change.ref or 'its Application'})", timeout, progress)
    while True:
        app = _get(api, *APPLICATION, change.app or "", ARGOCD_NS) if change.app else None
        sync, health, rev = app_status(app)
        src = ((app or {}).get("spec") or {}).get("source") or {}
        tracks_repo = "path" in src
        rev_ok = commit is None or not tracks_repo or rev == commit.sha
        live = _get(api, change.ref.api_version, change.ref.kind, change.ref.name, change.ref.namespace) \
            if change.ref else None
        obj_ok = (live is None) if change.gone else (change.expect is None or matches(live, change.expect))
        ok = (app is None and change.gone) or (sync == "Synced" and rev_ok and obj_ok)
        last = f"{change.app}: {sync}/{health} revision {rev[:10] or '-'}" + ("" if obj_ok else f"; {change.ref} not yet")
        elapsed = time.monotonic() - start
        report(last, ok)
        if ok:
            return live
        now = time.monotonic()
        if app is not None and sync == "Synced" and rev_ok and not obj_ok:
            stuck_since = now if stuck_since is None else stuck_since
            if now - stuck_since >= min(stuck_after, timeout):
                def shown(v: Any) -> str:
                    return "absent" if v is None else repr(v)

                want = "it should be gone" if change.gone else "; ".join(
                    f"{f}: live {shown(get_field(live, f, change.expect))}, Git {shown(get_field(change.expect, f, change.expect))}"
                    for f in patch_fields(change.expect or {})
                    if get_field(live, f, change.expect) != get_field(change.expect, f, change.expect))
                raise SyncTimeoutError(
                    f"Argo CD reports {change.app} Synced at revision {rev[:10] or '-'} for {now - stuck_since:.0f} s, "
                    f"but {change.ref} is not as Git says ({want}): Argo CD sees nothing left to sync, so waiting "
                    f"longer cannot help. The live object differs from the manifest in a way Argo CD does not "
                    f"correct (e.g. an annotation set outside Git), or the GitOps repository is ahead of the lab "
                    f"(on the twin: an earlier rehearsal's commits — `falkit twin reset` starts it clean)")
        else:
            stuck_since = None
        if elapsed > timeout:
            hint = ""
            if commit is not None and not commit.pushed:
                hint = (f"; commit {commit.sha[:10]} is on local branch {commit.branch} and was not pushed "
                        f"(spec.gitops.push is false): Argo CD reads the remote — push it and merge it into the "
                        f"revision the Application tracks, then resume")
            raise SyncTimeoutError(f"Argo CD did not sync within {timeout:g} s ({last}){hint}")
        time.sleep(poll)


def apply_git_changes(changes: Iterable[Change], checkout: Checkout, api: Any | None = None, *,
                      wait: bool = True, timeout: float = 300.0,
                      progress: Callable[[str], Callable[[float, str], None]] | None = None) -> Commit | None:
    """Commit the ``git-file`` changes in one commit, then (``wait`` and ``api``) wait for each
    ``git-file``/``argocd-sync`` change to be synced. ``progress(name)`` returns an updater."""
    changes = [c for c in changes if isinstance(c.data, GitChange)]  # git-file, argocd-sync, gitops-file (a rename)
    edits = [c.data.edit for c in changes if c.data.edit is not None]
    commit = checkout.commit(edits)
    if commit is not None:
        # Argo CD syncs the remote's tracked revision: push + fast-forward it, or stop at the gate
        # that says what to merge (GitOpsGateError; spec.gitops.push/merge). Issue 13 fault 6.
        commit = checkout.deliver(commit)
    if wait and api is not None:
        for c in changes:
            if c.data.app:
                upd = progress(f"Argo CD sync of {c.data.app}: {c.name}") if progress else None
                wait_for_sync(api, c.data, commit, timeout=timeout, progress=upd)
    return commit


# ---------------------------------------------------------------------------------------------- changer


class GitOpsChanger:
    """A :class:`falkit.clients.kube.KubeChanger` that sends changes of Argo CD-managed objects to Git.

    ``apply(obj)`` / ``annotate(...)`` read the live object first; when an Application manages it,
    the manifest is edited, committed (:meth:`Checkout.commit`) and the call waits for the sync;
    otherwise the wrapped changer does it. ``commits`` lists what was committed."""

    def __init__(self, inner: Any, checkout: Checkout | None, api: Any, *, timeout: float = 300.0):
        self.inner = inner
        self.checkout = checkout
        self.api = api
        self.timeout = timeout
        self.commits: list[Commit] = []

    def _via_git(self, ref: ObjectRef, patch: dict) -> dict | None:
        live = _get(self.api, ref.api_version, ref.kind, ref.name, ref.namespace)
        change = plan_object_change(ref, live, patch, self.checkout, desired=None) if live is not None else None
        if change is None or change.kind == "k8s-object":
            return None
        commit = apply_git_changes([change], self.checkout, self.api, timeout=self.timeout)
        if commit:
            self.commits.append(commit)
        return _get(self.api, ref.api_version, ref.kind, ref.name, ref.namespace)

    def apply(self, obj: dict) -> dict:
        ref = ObjectRef.of(obj)
        patch = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
        patch["metadata"] = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in ("name", "namespace")}
        if not patch["metadata"]:
            del patch["metadata"]
        out = self._via_git(ref, patch)
        return out if out is not None else self.inner.apply(obj)

    def annotate(self, api_version: str, kind: str, name: str, namespace: str | None,
                 annotations: dict[str, str | None]) -> dict:
        ref = ObjectRef(api_version, kind, namespace or "", name)
        out = self._via_git(ref, {"metadata": {"annotations": annotations}})
        return out if out is not None else self.inner.annotate(api_version, kind, name, namespace, annotations)

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        live = _get(self.api, api_version, kind, name, namespace)
        app = managed_by(live)
        if app is not None:
            raise OwnershipError(f"{kind} {namespace}/{name} is managed by Argo CD application {app!r}: remove it from "
                                 f"Git (or disable the application) instead of deleting it; self-heal would re-create it")
        return self.inner.delete(api_version, kind, name, namespace)
