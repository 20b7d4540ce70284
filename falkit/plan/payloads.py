"""Typed change payloads: what ``apply`` needs to carry out one :class:`falkit.plan.diff.Change`.

A payload is a frozen dataclass registered with :func:`payload`. It compares (a change's payload
counts in :class:`~falkit.plan.diff.Change` equality), and it serialises: :func:`encode` turns it into
JSON values tagged with the type's name (``{"$type": "HelmRelease", ...}``) and :func:`decode`
restores the identical value (tuples restored from the dataclass field types). A
:class:`~falkit.plan.diff.Plan` whose changes carry payloads is therefore a complete, archivable input
for apply: ``Plan.from_json(plan.to_json()) == plan``.

Each payload type has one executor (:mod:`falkit.steps.executors`); ``apply`` reads nothing but the plan's
payloads (and the target's clients), so everything a step decides is decided in ``plan``.

A payload whose ``shown_yaml()`` returns ``(before, after, documents)`` is shown in the plan as a
YAML diff (secrets redacted, :func:`falkit.plan.diff.yaml_diff`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..model.spec import SecretRef
from ..render.gitops import Checkout, GitEdit, ObjectRef

PAYLOADS: dict[str, type] = {}
TAG = "$type"  # the key naming a payload's type in JSON
T = TypeVar("T")


def payload(cls: type[T]) -> type[T]:
    """Register a frozen dataclass as a payload type (its name is its JSON tag)."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a dataclass")
    PAYLOADS[cls.__name__] = cls
    return cls


# ---------------------------------------------------------------------------------------------- codec

def encode(value: Any, redact: Callable[[dict], dict] | None = None) -> Any:
    """``value`` as JSON values: a registered payload as ``{"$type": name, field: ...}``, tuples as
    lists, a Path as a string. ``redact`` is applied to every mapping a payload carries (Helm
    values, Kubernetes objects, a Talos config): :meth:`falkit.plan.diff.Plan.to_json` passes one that
    replaces values under secret-named keys for an archived plan."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if PAYLOADS.get(name) is not type(value):
            if redact is not None:
                return f"<{name}: not archived>"
            raise TypeError(f"{name} is not a registered payload type (falkit.plan.payloads.payload)")
        out: dict[str, Any] = {TAG: name}
        for f in dataclasses.fields(value):
            if f.name.startswith("_"):
                continue
            out[f.name] = encode(getattr(value, f.name), redact)
        return out
    if isinstance(value, (list, tuple)):
        return [encode(v, redact) for v in value]
    if isinstance(value, dict):
        if redact is not None:
            value = redact(value)
        return {str(k): encode(v, redact) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if redact is not None:  # an archived plan: a value that does not serialise (a sealed config) is named, not shown
        return f"<{type(value).__name__}: not archived>"
    raise TypeError(f"a payload holds a {type(value).__name__}, which does not serialise")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))


def _decode_as(value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if value is None:
        return None
    if isinstance(value, dict) and value.get(TAG) in PAYLOADS:
        return decode(value)
    if origin in (typing.Union, types.UnionType):
        for a in args:
            if a is type(None):
                continue
            if typing.get_origin(a) is tuple and isinstance(value, list):
                return _decode_as(value, a)
            if a is Path and isinstance(value, str):
                return Path(value)
        return _decode_as(value, Any)
    if origin is tuple and isinstance(value, list):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode_as(v, args[0]) for v in value)
        if args and len(args) == len(value):
            return tuple(_decode_as(v, a) for v, a in zip(value, args, strict=True))
        return tuple(_decode_as(v, Any) for v in value)
    if hint is Path and isinstance(value, str):
        return Path(value)
    if isinstance(value, list):
        return [_decode_as(v, Any) for v in value]
    if isinstance(value, dict):
        return {k: _decode_as(v, Any) for k, v in value.items()}
    return value


def decode(data: Any) -> Any:
    """The inverse of :func:`encode` for a payload (``{"type": ...}``); other JSON is returned as is."""
    if not (isinstance(data, dict) and data.get(TAG) in PAYLOADS):
        return data
    cls = PAYLOADS[data[TAG]]
    hints = _hints(cls)
    kwargs = {f.name: _decode_as(data[f.name], hints.get(f.name, Any))
              for f in dataclasses.fields(cls) if f.init and f.name in data}
    return cls(**kwargs)


# ---------------------------------------------------------------------------------------------- payloads

payload(GitEdit)
payload(ObjectRef)


@payload
@dataclass(frozen=True)
class GitRepo:
    """The GitOps checkout a Git edit is committed in (:class:`falkit.render.gitops.Checkout`'s settings,
    frozen into the plan so apply does not read ``spec.gitops``)."""

    root: str
    platform_path: str = "kubernetes/platform"
    branch: str = "falkit/migration"
    push: bool = False
    remote: str = "origin"
    merge: bool = False
    target_revision: str = "HEAD"
    longhorn_files: tuple[str, ...] = ()

    @classmethod
    def of(cls, checkout: Checkout) -> GitRepo:
        return cls(os.fspath(checkout.root), checkout.platform_path, checkout.branch, checkout.push, checkout.remote,
                   checkout.merge, checkout.target_revision, tuple(checkout.longhorn_files))

    def checkout(self) -> Checkout:
        return Checkout(Path(self.root), self.platform_path, self.branch, self.push, remote=self.remote,
                        merge=self.merge, target_revision=self.target_revision, longhorn_files=self.longhorn_files)


@payload
@dataclass(frozen=True)
class GitChange:
    """A ``git-file``/``argocd-sync`` change: the edit (None for a sync-only wait), the Application
    that will apply it, the object + values to see in the cluster after the sync, and the checkout
    (``repo``) it is committed in. Its executor commits every Git change of a plan in one commit,
    then waits for each sync (:func:`falkit.steps.ownership.apply_git_changes`)."""

    edit: GitEdit | None
    app: str | None
    ref: ObjectRef | None = None
    expect: dict | None = None  # a merge patch that must hold on the live object after the sync
    gone: bool = False  # the object must disappear (a disabled Application's resources)
    repo: GitRepo | None = None
    deliver: bool = True  # get the commit where Argo CD reads it (False: only commit on the branch)


@payload
@dataclass(frozen=True)
class Blocked:
    """A change no option allows: a prerequisite is missing (``message``), fixed by ``fix`` or by
    running notebook ``run_first`` first. :func:`falkit.runbook.converge.refuse` refuses a plan that
    holds one; its executor raises should a plan holding it reach apply anyway."""

    message: str
    fix: str = ""
    run_first: str = ""


@payload
@dataclass(frozen=True)
class DirectChange:
    """A ``k8s-object`` change of an object no Application manages: a merge ``patch`` of an existing
    object, or the whole object to create (``create``)."""

    ref: ObjectRef
    patch: dict | None = None
    create: dict | None = None


@payload
@dataclass(frozen=True)
class HelmRelease:
    """``helm upgrade --install`` of ``chart`` ``version`` as ``namespace/name`` with ``values``;
    ``previous``: the release's values now (shown as the YAML diff)."""

    namespace: str
    name: str
    chart: str
    version: str
    values: dict
    previous: dict | None = None
    diff: bool = True  # shown as a YAML diff of ``previous`` -> ``values``

    def shown_yaml(self) -> tuple[Any, Any, bool] | None:
        return (self.previous, self.values, False) if self.diff else None


@payload
@dataclass(frozen=True)
class HelmUninstall:
    """``helm uninstall`` of ``namespace/name``."""

    namespace: str
    name: str


@payload
@dataclass(frozen=True)
class KubeApply:
    """Server-side apply of ``object`` (falkit's field manager); ``before``: its spec now (shown)."""

    object: dict


@payload
@dataclass(frozen=True)
class KubeCreate:
    """Create ``object`` unless it exists (a kind a chart just installed is waited for first)."""

    object: dict


@payload
@dataclass(frozen=True)
class KubePatch:
    """A JSON merge ``patch`` of one existing object (e.g. a Node's labels)."""

    ref: ObjectRef
    patch: dict


@payload
@dataclass(frozen=True)
class KubeReplace:
    """Delete ``object`` (when it exists) and create it again: a field the API server will not
    change in place (a DiskPool's disk, a StorageClass's parameters)."""

    object: dict


@payload
@dataclass(frozen=True)
class KubeAnnotate:
    """Set (a value) or remove (None) annotations of one object."""

    ref: ObjectRef
    annotations: dict


@payload
@dataclass(frozen=True)
class KubeDelete:
    """Delete one object (absent already: nothing to do)."""

    ref: ObjectRef


@payload
@dataclass(frozen=True)
class WaitServiceIPs:
    """Wait until each LoadBalancer service (``ns/name``) has its IP: a planned address, or
    ``"pool"`` — any address in ``pool`` (first, last). ``skip_absent``: a Service that does not
    exist is not waited for."""

    services: tuple[tuple[str, str], ...]
    pool: tuple[str, str] = ("", "")
    skip_absent: bool = False


@payload
@dataclass(frozen=True)
class SecretSource:
    """Where apply reads a secret (``spec``'s SecretRef): an environment variable or a file. The
    plan holds the reference, never the value."""

    env: str | None = None
    file: str | None = None

    def describe(self) -> str:
        return f"${self.env}" if self.env else f"file {self.file}"

    def resolve(self) -> str | None:
        return SecretRef(env=self.env, file=self.file).resolve()


@payload
@dataclass(frozen=True)
class ArgoRepository:
    """Argo CD's repository Secret ``object``; the password from ``credentials`` (resolved at apply,
    never in the plan) goes into its ``stringData`` with the user ``git``."""

    object: dict
    credentials: SecretSource | None = None


@payload
@dataclass(frozen=True)
class WaitArgoCD:
    """Wait until Service ``server`` (``ns/name``) has a LoadBalancer IP and each Application of
    ``applications`` is Synced and Healthy (``retiring`` ones, disabled later, are not waited for)."""

    server: str
    applications: tuple[str, ...] = ()
    retiring: tuple[str, ...] = ()


@payload
@dataclass(frozen=True)
class GitRestore:
    """A file of the GitOps checkout set back to ``after`` (None: removed); refused when the file is
    no longer ``before``. The restores of a plan are one commit ``message`` (rollback-gitops)."""

    repo: GitRepo
    path: str
    before: str | None
    after: str | None
    message: str


@payload
@dataclass(frozen=True)
class WaitPruned:
    """Wait (at most ``wait_s``) for Argo CD to prune Application ``name``, whose manifest left Git;
    delete it when its app-of-apps does not prune."""

    name: str
    wait_s: float = 60.0


@payload
@dataclass(frozen=True)
class RecordBeforeState:
    """Record the lab before the migration (every compared field, a checksum per mounted claim) in
    the private dir; ``checkout``: the GitOps checkout whose tree is recorded (None: none)."""

    checkout: str | None = None


# ---------------------------------------------------------------------------------------------- Talos

class Sealed:
    """A secret a payload carries (a Talos machine config, the cluster's secrets bundle, as text):
    ``repr`` redacted; it compares by value but does not serialise — :meth:`falkit.plan.diff.Plan.to_json`
    refuses it (TypeError), the archived (redacted) plan names it ``<Sealed: not archived>``."""

    __slots__ = ("value",)

    def __init__(self, value: str):
        self.value = value

    def __repr__(self) -> str:
        return "<redacted>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sealed) and other.value == self.value

    def __hash__(self) -> int:
        return hash(Sealed)


@payload
@dataclass(frozen=True)
class TalosSecrets:
    """The cluster's secrets bundle (``talosctl gen secrets`` YAML, sealed) saved to the private state dir."""

    bundle: Sealed
    file: str = "talos-secrets.yaml"


@payload
@dataclass(frozen=True)
class TalosClientConfig:
    """The talosctl client config (context ``context``, ``endpoints``, ``nodes``) generated from the
    sealed secrets bundle at apply (a fresh admin client certificate) into the private state dir."""

    bundle: Sealed
    context: str
    endpoints: tuple[str, ...]
    nodes: tuple[str, ...]


@payload
@dataclass(frozen=True)
class TalosApplyConfig:
    """``talosctl apply-config`` of the sealed machine config ``config`` (its YAML) at ``ip``
    (``--insecure`` in maintenance mode); ``running``/``planned``: the documents shown as the YAML
    diff (secrets redacted when shown or archived)."""

    ip: str
    insecure: bool
    config: Sealed
    running: tuple[dict, ...] | None = None
    planned: tuple[dict, ...] = ()

    def shown_yaml(self) -> tuple[Any, Any, bool] | None:
        return (list(self.running) if self.running else None, list(self.planned), True)


@payload
@dataclass(frozen=True)
class TalosBootstrap:
    """Wait until the control plane at ``ip`` is out of maintenance mode, then ``talosctl bootstrap``
    (its AlreadyExists counts as done)."""

    ip: str | None


@payload
@dataclass(frozen=True)
class TalosKubeconfig:
    """``talosctl kubeconfig`` from ``ip`` (waited for) into the private state dir."""

    ip: str | None


@payload
@dataclass(frozen=True)
class TalosHealth:
    """Wait for ``talosctl health`` at ``ip`` (each probe at most ``probe_s``), nodes waiting only
    for a CNI counting as healthy."""

    ip: str | None
    probe_s: float = 120.0


@payload
@dataclass(frozen=True)
class TalosAddressConfig:
    """rollback-talos: ``talosctl apply-config`` of the sealed config ``config`` (a node's running
    config edited for its old address) at ``ip``, then wait until the node answers at ``wait_ip``;
    ``running``/``planned``: the documents shown as the YAML diff (secrets redacted)."""

    ip: str
    config: Sealed
    wait_ip: str
    running: tuple[dict, ...] = ()
    planned: tuple[dict, ...] = ()

    def shown_yaml(self) -> tuple[Any, Any, bool] | None:
        return (list(self.running), list(self.planned), True)


@payload
@dataclass(frozen=True)
class TalosEndpoints:
    """The saved talosconfig's current context switched to ``endpoint`` and ``nodes`` (private state dir)."""

    endpoint: str
    nodes: tuple[str, ...]


@payload
@dataclass(frozen=True)
class WaitNodeAddresses:
    """Wait until each Node (name, InternalIP) of ``ips`` has its address, then remove from the
    Nodes of ``keep_labels`` every ``openebs.io/`` label not listed there (the labels the
    before-state recorded; ones Talos does not own were set by hand)."""

    ips: tuple[tuple[str, str], ...]
    keep_labels: tuple[tuple[str, tuple[str, ...]], ...] = ()
