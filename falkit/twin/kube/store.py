"""The in-memory object store: CRUD, watch, finalizers, namespaces, snapshots.

Semantics follow the Kubernetes API conventions
(https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md):

* ``metadata.resourceVersion`` is one global, monotonically increasing integer (as a string);
  writes that change nothing do not bump it. ``generation`` bumps when anything outside
  metadata/status changes. Optimistic concurrency: a PUT/PATCH carrying a stale
  ``resourceVersion`` is a 409 Conflict.
* Resources with a ``status`` subresource ignore status on main-resource writes (and drop it on
  create); ``.../status`` writes change only status.
* Delete with ``metadata.finalizers`` sets ``deletionTimestamp``; the object goes when the last
  finalizer is removed. Deleting a namespace deletes its objects (phase Terminating until empty).
* Watch: a bounded event history lets watches resume from a ``resourceVersion``; an older one is
  410 Expired ("too old resource version"). Label/field selectors apply to watches, with
  ADDED/DELETED synthesised when an object starts/stops matching.

Collections are dicts keyed by (namespace, name) inside dicts keyed by (group, plural), so get is
O(1). Each collection also indexes its objects by label (key=value and key), namespace and owner
UID (:class:`_Collection`), so a list or watch with a label selector (``a=b``, ``a in (x,y)``,
``a``), a namespace or ``metadata.name`` field selector only looks at the objects the index names
(then checks the whole selector on them), and garbage collection finds dependents without scanning
every collection; a full list stays O(n). The store is guarded by one re-entrant lock, so it can be
used from the server's event loop and from controller code alike. Objects held by the store are
never mutated in place; the public methods return copies.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import threading
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from . import managed
from .builtin import BUILTIN_TYPES, Registry, ResourceType
from .crd import crd_status, served_types, validate_crd
from .defaults import KUBE_GIT_VERSION, Allocators, apply_defaults
from .errors import ApiError, already_exists, bad_request, cause, conflict, forbidden, invalid, not_found
from .faults import Faults
from .objects import clone, now_iso, spec_part
from .patch import json_patch, merge_patch, strategic_merge
from .selectors import field_matcher, label_requirements, requirements_matcher
from .validation import CRSchema, check_name, unknown_field_error, validate_builtin

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apiserver names.SimpleNameGenerator


@dataclass(frozen=True)
class Event:
    """One change: ``type`` is ADDED / MODIFIED / DELETED; ``old`` is the previous object."""

    rv: int
    type: str
    key: tuple[str, str]
    obj: dict
    old: dict | None


class _Watcher:
    def __init__(self, key: tuple[str, str], loop: asyncio.AbstractEventLoop) -> None:
        self.key = key
        self.loop = loop
        self.thread = threading.get_ident()
        self.queue: asyncio.Queue = asyncio.Queue()

    def push(self, ev: Event | None) -> None:
        if threading.get_ident() == self.thread:
            self.queue.put_nowait(ev)
        else:
            try:
                self.loop.call_soon_threadsafe(self.queue.put_nowait, ev)
            except RuntimeError:  # loop closed
                pass


_EMPTY: frozenset = frozenset()


class _Collection(dict):
    """One collection: ``(namespace, name) -> object``, with secondary indexes kept in step on every
    write (stored objects are never mutated in place, so the indexed labels stay true)."""

    __slots__ = ("by_label", "by_key", "by_ns", "by_owner")

    def __init__(self) -> None:
        super().__init__()
        self.by_label: dict[tuple[str, str], set] = {}
        self.by_key: dict[str, set] = {}
        self.by_ns: dict[str | None, set] = {}
        self.by_owner: dict[str, set] = {}

    @staticmethod
    def _add(idx: dict, k, key) -> None:
        bucket = idx.get(k)
        if bucket is None:
            idx[k] = {key}
        else:
            bucket.add(key)

    @staticmethod
    def _drop(idx: dict, k, key) -> None:
        bucket = idx.get(k)
        if bucket is not None:
            bucket.discard(key)
            if not bucket:
                del idx[k]

    def _index(self, key, obj: dict, add: bool) -> None:
        f = self._add if add else self._drop
        md = obj.get("metadata") or {}
        for lk, lv in (md.get("labels") or {}).items():
            f(self.by_label, (lk, lv), key)
            f(self.by_key, lk, key)
        f(self.by_ns, key[0], key)
        for ref in md.get("ownerReferences") or []:
            if ref.get("uid"):
                f(self.by_owner, ref["uid"], key)

    def __setitem__(self, key, obj) -> None:
        old = dict.get(self, key)
        if old is not None:
            self._index(key, old, False)
        dict.__setitem__(self, key, obj)
        self._index(key, obj, True)

    def __delitem__(self, key) -> None:
        old = dict.pop(self, key)
        self._index(key, old, False)

    def pop(self, key, *default):
        if dict.__contains__(self, key):
            old = dict.pop(self, key)
            self._index(key, old, False)
            return old
        if default:
            return default[0]
        raise KeyError(key)

    def setdefault(self, key, default=None):  # pragma: no cover - not used; keep the indexes honest
        if key not in self:
            self[key] = default
        return self[key]

    def candidates(self, namespace: str | None, reqs, name: str | None) -> set | frozenset | None:
        """Keys that may match (None = every key): the smallest of the index sets the selector's
        positive requirements name, intersected with the others."""
        sets: list = []
        if name is not None:
            sets.append({(namespace, name)} if dict.__contains__(self, (namespace, name)) else _EMPTY)
        if namespace is not None:
            sets.append(self.by_ns.get(namespace, _EMPTY))
        for op, k, vals in reqs:
            if op in ("=", "in"):
                if len(vals) == 1:
                    sets.append(self.by_label.get((k, next(iter(vals))), _EMPTY))
                else:
                    sets.append(set().union(*(self.by_label.get((k, v), _EMPTY) for v in vals)))
            elif op == "exists":
                sets.append(self.by_key.get(k, _EMPTY))
        if not sets:
            return None
        sets.sort(key=len)
        out = set(sets[0])
        for other in sets[1:]:
            if not out:
                break
            out.intersection_update(other)
        return out


def _render(rt: ResourceType, obj: dict) -> dict:
    if obj.get("apiVersion") == rt.api_version:
        return obj
    return {**obj, "apiVersion": rt.api_version}


class Store:
    """In-memory Kubernetes object store. See the module docstring for semantics."""

    def __init__(self, *, history_size: int = 10000, default_manager: str = "falkit") -> None:
        self._lock = threading.RLock()
        self.history_size = history_size
        self.default_manager = default_manager
        self.faults = Faults()
        # What ``/version`` reports: the Kubernetes the cluster runs. The lab sets it from the Talos
        # config the cluster was bootstrapped with (falkit.twin.lab.talos.apiserver_version).
        self.server_version = KUBE_GIT_VERSION
        self._subscribers: list[Callable[[str, dict, dict | None], None]] = []
        self._reset()
        self._bootstrap()

    # --- setup ---------------------------------------------------------------------------------

    def _reset(self) -> None:
        self.registry = Registry()
        for rt in BUILTIN_TYPES:
            self.registry.add(rt)
        self._schemas: dict[tuple[str, str, str], CRSchema] = {}
        self._objects: dict[tuple[str, str], _Collection] = {}
        self._rv = 0
        self._history: deque[Event] = deque(maxlen=self.history_size)
        self._compacted = 0
        self._watchers: set[_Watcher] = set()
        self._logs: dict[tuple[str, str], str] = {}
        self.alloc = Allocators()

    def _bootstrap(self) -> None:
        for ns in DEFAULT_NAMESPACES:
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                        field_manager="kube-apiserver")
        self.create({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": "kubernetes", "namespace": "default",
                                  "labels": {"component": "apiserver", "provider": "kubernetes"}},
                     "spec": {"clusterIP": "10.96.0.1",
                              "ports": [{"name": "https", "port": 443, "targetPort": 6443}]}},
                    field_manager="kube-apiserver")

    @property
    def resource_version(self) -> int:
        return self._rv

    # --- type resolution ---------------------------------------------------------------------

    def resolve(self, api_version: str, kind: str) -> ResourceType:
        """The served type for apiVersion + kind (or plural/short name); 404 if not served."""
        rt = self.registry.resolve(api_version or "", kind or "")
        if rt is None:
            raise ApiError(404, "NotFound", f'no matches for kind "{kind}" in version "{api_version}"')
        return rt

    def _coll(self, rt: ResourceType) -> _Collection:
        coll = self._objects.get(rt.storage_key)
        if coll is None:
            coll = self._objects[rt.storage_key] = _Collection()
        return coll

    # --- public Python API (returns copies) ------------------------------------------------------

    def create(self, obj: dict, *, namespace: str | None = None, dry_run: bool = False,
               field_manager: str | None = None, field_validation: str = "Warn",
               keep_status: bool = False) -> dict:
        """Create ``obj`` (its apiVersion/kind pick the type). ``keep_status`` lets controllers
        create objects with a status (as kubelet registers Nodes)."""
        rt = self.resolve(obj.get("apiVersion"), obj.get("kind"))
        return clone(self.create_rt(rt, obj, namespace=namespace, dry_run=dry_run, field_manager=field_manager,
                                    field_validation=field_validation, keep_status=keep_status))

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict:
        rt = self.resolve(api_version, kind)
        return clone(self.get_rt(rt, name, namespace))

    def try_get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        try:
            return self.get(api_version, kind, name, namespace)
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    def list(self, api_version: str, kind: str, namespace: str | None = None, *,
             label_selector: str | None = None, field_selector: str | None = None,
             limit: int | None = None, continue_: str | None = None) -> dict:
        rt = self.resolve(api_version, kind)
        return clone(self.list_rt(rt, namespace, label_selector=label_selector, field_selector=field_selector,
                                  limit=limit, continue_=continue_))

    def update(self, obj: dict, *, subresource: str | None = None, dry_run: bool = False,
               field_manager: str | None = None, field_validation: str = "Warn") -> dict:
        rt = self.resolve(obj.get("apiVersion"), obj.get("kind"))
        md = obj.get("metadata") or {}
        return clone(self.update_rt(rt, obj, md.get("name"), md.get("namespace"), subresource=subresource,
                                    dry_run=dry_run, field_manager=field_manager,
                                    field_validation=field_validation))

    def update_status(self, obj: dict, **kw) -> dict:
        return self.update(obj, subresource="status", **kw)

    def patch(self, api_version: str, kind: str, name: str, patch, *, namespace: str | None = None,
              patch_type: str = "merge", subresource: str | None = None, field_manager: str | None = None,
              force: bool = False, dry_run: bool = False, field_validation: str = "Warn") -> dict:
        """``patch_type``: json | merge | strategic | apply (or the matching content type)."""
        rt = self.resolve(api_version, kind)
        ptype = PATCH_TYPES.get(patch_type, patch_type)
        return clone(self.patch_rt(rt, name, namespace, ptype, patch, subresource=subresource,
                                   field_manager=field_manager, force=force, dry_run=dry_run,
                                   field_validation=field_validation))

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None, *,
               dry_run: bool = False) -> dict:
        rt = self.resolve(api_version, kind)
        return clone(self.delete_rt(rt, name, namespace, dry_run=dry_run))

    async def watch(self, api_version: str, kind: str, namespace: str | None = None, *,
                    label_selector: str | None = None, field_selector: str | None = None,
                    resource_version: str | None = None, timeout: float | None = None) -> AsyncIterator[tuple[str, dict]]:
        """Async iterator of ``(type, object)``; same semantics as an HTTP watch."""
        rt = self.resolve(api_version, kind)
        async for etype, obj in self.watch_rt(rt, namespace, label_selector=label_selector,
                                              field_selector=field_selector,
                                              resource_version=resource_version, timeout=timeout):
            yield etype, clone(obj)

    def subscribe(self, callback: Callable[[str, dict, dict | None], None]) -> Callable[[], None]:
        """Call ``callback(type, obj, old)`` synchronously, under the store lock, for every change
        (do not block in it; hand off to a queue). Returns an unsubscribe function."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    # Logs are per container: ``(namespace, name)`` is the pod's first (default) container,
    # ``(namespace, "name/container")`` any other one, init containers included (a pod name holds
    # no "/", so the snapshot format stays one list of entries).
    @staticmethod
    def _log_key(namespace: str, name: str, container: str | None) -> tuple[str, str]:
        return (namespace, f"{name}/{container}" if container else name)

    def set_pod_log(self, namespace: str, name: str, text: str, container: str | None = None) -> None:
        self._logs[self._log_key(namespace, name, container)] = text

    def append_pod_log(self, namespace: str, name: str, text: str, container: str | None = None) -> None:
        key = self._log_key(namespace, name, container)
        self._logs[key] = self._logs.get(key, "") + text

    def pod_log(self, namespace: str, name: str, *, tail_lines: int | None = None,
                container: str | None = None) -> str:
        """A container's log (``?container=``; default: the first container). A name that is
        neither a container nor an init container of the pod is a 400 with the apiserver's words
        (pkg/registry/core/pod/strategy.go, LogLocation: "container %s is not valid for pod %s")."""
        pods = self.registry.get("", "v1", "pods")
        pod = self.get_rt(pods, name, namespace)
        spec = pod.get("spec") or {}
        first = next((c.get("name") for c in spec.get("containers") or []), None)
        if container and container != first:
            known = {c.get("name") for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])}
            if container not in known:
                raise bad_request(f"container {container} is not valid for pod {name}")
            text = self._logs.get(self._log_key(namespace, name, container), "")
        else:
            text = self._logs.get((namespace, name), "")
        if tail_lines is not None:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-tail_lines:]) if tail_lines > 0 else ""
        return text

    # --- internal API used by the server (shares stored objects; do not mutate results) ---------

    def _ns_check(self, rt: ResourceType, namespace: str | None, md: dict, *, creating: bool) -> str | None:
        if not rt.namespaced:
            md.pop("namespace", None)
            return None
        body_ns = md.get("namespace")
        if namespace and body_ns and body_ns != namespace:
            raise bad_request("the namespace of the provided object does not match the namespace sent on "
                              "the request")
        ns = namespace or body_ns or "default"
        md["namespace"] = ns
        if creating:
            nsobj = self._objects.get(("", "namespaces"), {}).get((None, ns))
            if nsobj is None:
                raise not_found(self.registry.get("", "v1", "namespaces"), ns)
            if (nsobj.get("metadata") or {}).get("deletionTimestamp"):
                raise forbidden(rt, md.get("name", ""), f'{rt.plural} "{md.get("name", "")}" is forbidden: unable '
                                f"to create new content in namespace {ns} because it is being terminated")
        return ns

    def _validate(self, rt: ResourceType, obj: dict, field_validation: str, warnings: list | None) -> list[dict]:
        name = obj["metadata"].get("name") or ""
        causes = check_name(rt.kind, name)
        if rt.crd:
            schema = self._schemas.get((rt.group, rt.version, rt.plural))
            if schema is not None:
                dropped = schema.prune(obj)
                if dropped and field_validation == "Strict":
                    raise unknown_field_error(dropped)
                if dropped and warnings is not None and field_validation != "Ignore":
                    warnings += [f'unknown field "{d}"' for d in dropped]
                causes += schema.validate(obj)
        else:
            causes += validate_builtin(obj, field_validation=field_validation, warnings=warnings)
        if rt.kind == "CustomResourceDefinition" and not causes:
            causes += validate_crd(obj)
        return causes

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _emit(self, etype: str, rt: ResourceType, obj: dict, old: dict | None) -> None:
        ev = Event(self._rv, etype, rt.storage_key, obj, old)
        if len(self._history) == self._history.maxlen:
            self._compacted = self._history[0].rv
        self._history.append(ev)
        for w in list(self._watchers):
            if w.key == ev.key:
                w.push(ev)
        for cb in list(self._subscribers):
            cb(etype, obj, old)

    def get_rt(self, rt: ResourceType, name: str, namespace: str | None) -> dict:
        with self._lock:
            obj = self._coll(rt).get((namespace if rt.namespaced else None, name))
        if obj is None:
            raise not_found(rt, name)
        return _render(rt, obj)

    def create_rt(self, rt: ResourceType, body: dict, *, namespace: str | None = None, dry_run: bool = False,
                  field_manager: str | None = None, field_validation: str = "Warn", keep_status: bool = False,
                  warnings: list | None = None, _managed_set: bool = False) -> dict:
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON object")
        obj = clone(body)
        if obj.get("kind") and obj["kind"] != rt.kind:
            raise bad_request(f"the kind in the data ({obj['kind']}) does not match the expected kind ({rt.kind})")
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        md = obj.setdefault("metadata", {})
        if not isinstance(md, dict):
            raise bad_request("metadata must be an object")
        if md.get("resourceVersion"):
            raise bad_request("resourceVersion should not be set on objects to be created")
        with self._lock:
            ns = self._ns_check(rt, namespace, md, creating=True)
            if not md.get("name") and md.get("generateName"):
                for _ in range(20):
                    cand = md["generateName"] + "".join(random.choices(_NAME_CHARS, k=5))
                    if (ns, cand) not in self._coll(rt):
                        md["name"] = cand
                        break
            if not md.get("name"):
                raise invalid(rt, "", [cause("metadata.name", "Required value: name or generateName is required",
                                             "FieldValueRequired")])
            name = md["name"]
            if rt.has_status and not keep_status and rt.kind not in ("Node",):
                obj.pop("status", None)
            for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
                md.pop(k, None)
            if not _managed_set:
                md.pop("managedFields", None)
            causes = self._validate(rt, obj, field_validation, warnings)
            if (ns, name) in self._coll(rt):
                raise already_exists(rt, name)
            md["uid"] = str(uuid.uuid4())
            md["creationTimestamp"] = now_iso()
            md["generation"] = 1
            if rt.kind == "CustomResourceDefinition":
                obj["status"] = crd_status(obj, md["creationTimestamp"])
            if not causes:
                causes += apply_defaults(obj, self.alloc, creating=True)
            if causes:
                self.alloc.release(obj)
                raise invalid(rt, name, causes)
            if not _managed_set:
                managed.record_update(None, obj, field_manager or self.default_manager, rt.api_version)
            if dry_run:
                self.alloc.release(obj)
                return obj
            md["resourceVersion"] = str(self._next_rv())
            self._coll(rt)[(ns, name)] = obj
            if rt.kind == "CustomResourceDefinition":
                self._register_crd(obj)
            self._emit("ADDED", rt, obj, None)
            return obj

    def _prepare_update(self, rt: ResourceType, old: dict, obj: dict, subresource: str | None) -> dict:
        if subresource == "status":
            new = clone(old)
            if "status" in obj:
                new["status"] = obj["status"]
            else:
                new.pop("status", None)
            new["metadata"]["managedFields"] = (obj.get("metadata") or {}).get(
                "managedFields", old["metadata"].get("managedFields"))
            return new
        new = obj
        if rt.has_status:
            if "status" in old:
                new["status"] = clone(old["status"])
            else:
                new.pop("status", None)
        md, omd = new.setdefault("metadata", {}), old["metadata"]
        for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation",
                  "name", "namespace"):
            if k in omd:
                md[k] = omd[k]
            else:
                md.pop(k, None)
        if "managedFields" not in md and "managedFields" in omd:
            md["managedFields"] = clone(omd["managedFields"])
        if rt.kind == "Service":
            spec, ospec = new.get("spec"), old.get("spec") or {}
            if isinstance(spec, dict):
                for k in ("clusterIP", "clusterIPs"):
                    if k not in spec and k in ospec:
                        spec[k] = clone(ospec[k])
        return new

    def update_rt(self, rt: ResourceType, body: dict, name: str, namespace: str | None, *,
                  subresource: str | None = None, dry_run: bool = False, field_manager: str | None = None,
                  field_validation: str = "Warn", warnings: list | None = None) -> dict:
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON object")
        obj = clone(body)
        if obj.get("kind") and obj["kind"] != rt.kind:
            raise bad_request(f"the kind in the data ({obj['kind']}) does not match the expected kind ({rt.kind})")
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        md = obj.setdefault("metadata", {})
        if md.get("name") and name and md["name"] != name:
            raise bad_request(f"the name of the object ({md['name']}) does not match the name on the URL ({name})")
        with self._lock:
            ns = self._ns_check(rt, namespace, md, creating=False)
            old = self._coll(rt).get((ns, name))
            if old is None:
                raise not_found(rt, name)
            if md.get("resourceVersion") and md["resourceVersion"] != old["metadata"]["resourceVersion"]:
                raise conflict(rt, name)
            new = self._prepare_update(rt, old, obj, subresource)
            return self._commit(rt, old, new, manager=field_manager, subresource=subresource, dry_run=dry_run,
                                field_validation=field_validation, warnings=warnings)

    def _commit(self, rt: ResourceType, old: dict, new: dict, *, manager: str | None, subresource: str | None,
                dry_run: bool, field_validation: str, warnings: list | None, record: bool = True) -> dict:
        md = new["metadata"]
        name = md["name"]
        if rt.has_status and not rt.crd and subresource != "status" and "status" in new:
            # A main-resource write of a built-in kind keeps the old status and validates the rest:
            # kubernetes pkg/registry/apps/daemonset/strategy.go (PrepareForUpdate "update is not
            # allowed to set status"; ValidateUpdate = ValidateDaemonSet + ValidateDaemonSetUpdate,
            # status only in the status strategy's ValidateDaemonSetStatusUpdate), as for every
            # workload kind. So a DaemonSet no controller has written a status for yet (``{}``) can
            # be upgraded by Helm.
            status = new.pop("status")
            causes = self._validate(rt, new, field_validation, warnings)
            new["status"] = status
        else:
            causes = self._validate(rt, new, field_validation, warnings)
        if rt.kind == "Service":
            ospec, nspec = old.get("spec") or {}, new.get("spec") or {}
            if ospec.get("clusterIP") and nspec.get("clusterIP") != ospec.get("clusterIP"):
                causes.append(cause("spec.clusterIPs[0]", "Invalid value: field is immutable"))
        if not causes:
            causes += apply_defaults(new, self.alloc, creating=False)
        if causes:
            raise invalid(rt, name, causes)
        if rt.kind == "CustomResourceDefinition":
            new["status"] = crd_status(new, now_iso()) if subresource != "status" else new.get("status")
        if spec_part(new) != spec_part(old):
            md["generation"] = int(old["metadata"].get("generation") or 1) + 1
        if record:
            managed.record_update(old, new, manager or self.default_manager, rt.api_version,
                                  subresource=subresource)
        md["resourceVersion"] = old["metadata"]["resourceVersion"]
        if _same(old, new):
            return _render(rt, old)
        if dry_run:
            return _render(rt, new)
        if md.get("deletionTimestamp") and not md.get("finalizers"):
            return self._remove(rt, new)
        md["resourceVersion"] = str(self._next_rv())
        self._coll(rt)[(md.get("namespace"), name)] = new
        if rt.kind == "CustomResourceDefinition":
            self._register_crd(new)
        self._emit("MODIFIED", rt, new, old)
        return _render(rt, new)

    def patch_rt(self, rt: ResourceType, name: str, namespace: str | None, patch_type: str, body, *,
                 subresource: str | None = None, field_manager: str | None = None, force: bool = False,
                 dry_run: bool = False, field_validation: str = "Warn", warnings: list | None = None) -> dict:
        ns = namespace if rt.namespaced else None
        with self._lock:
            old = self._coll(rt).get((ns, name))
            if patch_type == "apply":
                return self._apply(rt, old, name, ns, body, subresource=subresource, field_manager=field_manager,
                                   force=force, dry_run=dry_run, field_validation=field_validation,
                                   warnings=warnings)
            if old is None:
                raise not_found(rt, name)
            base = _render(rt, old)
            if patch_type == "json":
                new = json_patch(base, body)
            elif patch_type == "merge":
                if not isinstance(body, dict):
                    raise bad_request("merge patch must be a JSON object")
                new = merge_patch(base, body)
            elif patch_type == "strategic":
                if rt.crd:
                    raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format "
                                   "- accepted media types include: application/json-patch+json, "
                                   "application/merge-patch+json, application/apply-patch+yaml")
                if not isinstance(body, dict):
                    raise bad_request("strategic merge patch must be a JSON object")
                new = strategic_merge(base, body)
            else:
                raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {patch_type!r}")
            if not isinstance(new, dict):
                raise bad_request("patch did not produce an object")
            nmd = new.setdefault("metadata", {})
            if nmd.get("resourceVersion") and nmd["resourceVersion"] != old["metadata"]["resourceVersion"]:
                raise conflict(rt, name)
            if nmd.get("name") != name:
                raise bad_request("metadata.name cannot be changed by a patch")
            new["apiVersion"], new["kind"] = rt.api_version, rt.kind
            new = self._prepare_update(rt, old, new, subresource)
            return self._commit(rt, old, new, manager=field_manager, subresource=subresource, dry_run=dry_run,
                                field_validation=field_validation, warnings=warnings)

    def _apply(self, rt, old, name, ns, body, *, subresource, field_manager, force, dry_run, field_validation,
               warnings) -> dict:
        if not field_manager:
            raise bad_request("PATCH requests with apply content type must specify a fieldManager")
        if not isinstance(body, dict):
            raise bad_request("apply patch must be a YAML or JSON object")
        if body.get("kind") != rt.kind or body.get("apiVersion") != rt.api_version:
            raise bad_request(f"the apiVersion/kind of the applied object ({body.get('apiVersion')}/"
                              f"{body.get('kind')}) does not match the request ({rt.api_version}/{rt.kind})")
        bmd = body.get("metadata") or {}
        if bmd.get("name") and bmd["name"] != name:
            raise bad_request(f"the name of the object ({bmd['name']}) does not match the name on the URL ({name})")
        if old is None:
            if subresource:
                raise not_found(rt, name)
            merged = managed.apply(None, body, field_manager, rt.api_version, force=force)
            merged.setdefault("metadata", {})["name"] = name
            return self.create_rt(rt, merged, namespace=ns, dry_run=dry_run, field_validation=field_validation,
                                  warnings=warnings, _managed_set=True)
        if bmd.get("resourceVersion") and bmd["resourceVersion"] != old["metadata"]["resourceVersion"]:
            raise conflict(rt, name)
        merged = managed.apply(_render(rt, old), body, field_manager, rt.api_version, force=force,
                               subresource=subresource)
        merged["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        new = self._prepare_update(rt, old, merged, subresource)
        if subresource == "status":
            new["metadata"]["managedFields"] = merged["metadata"].get("managedFields")
        return self._commit(rt, old, new, manager=field_manager, subresource=subresource, dry_run=dry_run,
                            field_validation=field_validation, warnings=warnings, record=False)

    def delete_rt(self, rt: ResourceType, name: str, namespace: str | None, *, dry_run: bool = False,
                  preconditions: dict | None = None) -> dict:
        ns = namespace if rt.namespaced else None
        with self._lock:
            old = self._coll(rt).get((ns, name))
            if old is None:
                raise not_found(rt, name)
            pre = preconditions or {}
            if pre.get("uid") and pre["uid"] != old["metadata"].get("uid"):
                raise conflict(rt, name, f"Precondition failed: UID in precondition: {pre['uid']}, "
                                         f"UID in object meta: {old['metadata'].get('uid')}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != old["metadata"]["resourceVersion"]:
                raise conflict(rt, name)
            if rt.kind == "Namespace":
                return self._delete_namespace(rt, old, dry_run)
            if old["metadata"].get("finalizers"):
                if old["metadata"].get("deletionTimestamp"):
                    return _render(rt, old)
                new = clone(old)
                new["metadata"]["deletionTimestamp"] = now_iso()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                if dry_run:
                    return _render(rt, new)
                new["metadata"]["resourceVersion"] = str(self._next_rv())
                self._coll(rt)[(ns, name)] = new
                self._emit("MODIFIED", rt, new, old)
                return _render(rt, new)
            if dry_run:
                return _render(rt, old)
            return self._remove(rt, old)

    def delete_collection_rt(self, rt: ResourceType, namespace: str | None, *, label_selector=None,
                             field_selector=None, dry_run: bool = False) -> dict:
        with self._lock:
            lst = self.list_rt(rt, namespace, label_selector=label_selector, field_selector=field_selector)
            for o in lst["items"]:
                self.delete_rt(rt, o["metadata"]["name"], o["metadata"].get("namespace"), dry_run=dry_run)
            return lst

    def _remove(self, rt: ResourceType, obj: dict) -> dict:
        md = obj["metadata"]
        key = (md.get("namespace"), md["name"])
        self._coll(rt).pop(key, None)
        gone = {**obj, "metadata": {**md, "resourceVersion": str(self._next_rv())}}
        self.alloc.release(obj)
        if rt.kind == "Pod":
            for k in [k for k in self._logs if k == key or (k[0] == key[0] and k[1].startswith(f"{key[1]}/"))]:
                self._logs.pop(k, None)
        if rt.kind == "CustomResourceDefinition":
            self._unregister_crd(obj)
        self._emit("DELETED", rt, gone, obj)
        self._collect_dependents(md.get("uid"))
        if rt.namespaced:
            self._maybe_finish_namespace(md.get("namespace"))
        return _render(rt, gone)

    def _collect_dependents(self, uid: str | None) -> None:
        """Garbage collection (background propagation, the API's default for most kinds): objects
        whose ``ownerReferences`` name the deleted object go too — a Job's pods, a Deployment's
        ReplicaSets and their pods. (Real apiservers orphan a Job's pods when a client asks with
        ``propagationPolicy=Orphan``; falkit always deletes with Background.)"""
        if not uid:
            return
        by_key = {rt.storage_key: rt for rt in self.registry.all()}
        for key, coll in list(self._objects.items()):
            rt = by_key.get(key)
            owned = coll.by_owner.get(uid) if rt is not None else None
            if not owned:
                continue
            for k in list(owned):
                obj = coll.get(k)
                if obj is not None:
                    self._remove(rt, obj)

    def _delete_namespace(self, rt: ResourceType, old: dict, dry_run: bool) -> dict:
        name = old["metadata"]["name"]
        new = clone(old)
        new["metadata"].setdefault("deletionTimestamp", now_iso())
        new["metadata"]["deletionGracePeriodSeconds"] = 0
        new.setdefault("status", {})["phase"] = "Terminating"
        if dry_run:
            return new
        if not old["metadata"].get("deletionTimestamp"):
            new["metadata"]["resourceVersion"] = str(self._next_rv())
            self._coll(rt)[(None, name)] = new
            self._emit("MODIFIED", rt, new, old)
        for t in self._namespaced_types():
            for (ons, oname), _o in list(self._coll(t).items()):
                if ons == name:
                    self.delete_rt(t, oname, ons)
        self._maybe_finish_namespace(name)
        return _render(rt, self._coll(rt).get((None, name), new))

    def _namespaced_types(self) -> list[ResourceType]:
        seen, out = set(), []
        for t in self.registry.all():
            if t.namespaced and t.storage_key not in seen:
                seen.add(t.storage_key)
                out.append(t)
        return out

    def _maybe_finish_namespace(self, ns: str | None) -> None:
        nsrt = self.registry.get("", "v1", "namespaces")
        nsobj = self._coll(nsrt).get((None, ns))
        if nsobj is None or not nsobj["metadata"].get("deletionTimestamp"):
            return
        for t in self._namespaced_types():
            if any(k[0] == ns for k in self._coll(t)):
                return
        self._remove(nsrt, nsobj)

    # --- list / watch ----------------------------------------------------------------------------

    def _matcher(self, rt: ResourceType, namespace, label_selector, field_selector):
        return self._selection(rt, namespace, label_selector, field_selector)[0]

    def _selection(self, rt: ResourceType, namespace, label_selector, field_selector):
        """``(match, candidates)``: the full predicate, and a function ``coll -> keys`` naming the
        keys worth checking (None = all), from the label/namespace/name indexes."""
        reqs = label_requirements(label_selector)
        lm = requirements_matcher(reqs)
        fm = field_matcher(field_selector, rt.kind)
        ns = namespace if rt.namespaced else None
        name = _field_name(field_selector) if fm is not None else None

        def match(o: dict) -> bool:
            if ns is not None and o["metadata"].get("namespace") != ns:
                return False
            return (lm is None or lm((o.get("metadata") or {}).get("labels") or {})) and (fm is None or fm(o))

        def candidates(coll: _Collection):
            if name is not None and (ns is not None or not rt.namespaced):
                return coll.candidates(ns, reqs, name)
            return coll.candidates(ns, reqs, None)
        return match, candidates

    def _select(self, coll: _Collection, match, candidates) -> list[tuple[tuple, dict]]:
        keys = candidates(coll)
        if keys is None:
            return [(k, o) for k, o in coll.items() if match(o)]
        out = []
        for k in keys:
            o = coll.get(k)
            if o is not None and match(o):
                out.append((k, o))
        return out

    def list_rt(self, rt: ResourceType, namespace: str | None, *, label_selector: str | None = None,
                field_selector: str | None = None, limit: int | None = None, continue_: str | None = None) -> dict:
        match, candidates = self._selection(rt, namespace, label_selector, field_selector)
        start = None
        if continue_:
            try:
                start = tuple(json.loads(base64.urlsafe_b64decode(continue_.encode()))["start"])
            except (ValueError, KeyError, TypeError):
                raise bad_request("continue key is not valid") from None
        with self._lock:
            items = self._select(self._coll(rt), match, candidates)
            rv = self._rv
        items.sort(key=lambda ko: (ko[0][0] or "", ko[0][1]))
        if start is not None:
            items = [ko for ko in items if (ko[0][0] or "", ko[0][1]) > (start[0] or "", start[1])]
        meta: dict = {"resourceVersion": str(rv)}
        if limit and limit > 0 and len(items) > limit:
            last = items[limit - 1][0]
            meta["continue"] = base64.urlsafe_b64encode(json.dumps({"start": list(last), "rv": rv}).encode()).decode()
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        return {"kind": rt.kind + "List", "apiVersion": rt.api_version, "metadata": meta,
                "items": [_render(rt, o) for _, o in items]}

    async def watch_rt(self, rt: ResourceType, namespace: str | None = None, *, label_selector: str | None = None,
                       field_selector: str | None = None, resource_version: str | None = None,
                       bookmarks: bool = False, bookmark_interval: float = 60.0,
                       timeout: float | None = None) -> AsyncIterator[tuple[str, dict]]:
        """Yield ``(type, obj)``; raises ApiError (410 Expired) on the first step for a too-old RV."""
        match, candidates = self._selection(rt, namespace, label_selector, field_selector)
        loop = asyncio.get_running_loop()
        w = _Watcher(rt.storage_key, loop)
        with self._lock:
            if resource_version in (None, "", "0"):
                initial = [("ADDED", o) for _, o in sorted(self._select(self._coll(rt), match, candidates),
                                                           key=lambda ko: (ko[0][0] or "", ko[0][1]))]
            else:
                try:
                    since = int(resource_version)
                except ValueError:
                    raise bad_request(f"invalid resource version: {resource_version}") from None
                if since < self._compacted:
                    raise ApiError(410, "Expired", f"too old resource version: {since} ({self._compacted + 1})")
                initial = [t for ev in self._history if ev.rv > since and ev.key == w.key
                           for t in [_translate(ev, match)] if t]
            self._watchers.add(w)
        try:
            for etype, obj in initial:
                yield etype, _render(rt, obj)
            if bookmarks:
                yield "BOOKMARK", self._bookmark(rt)
            deadline = loop.time() + timeout if timeout else None
            while True:
                wait = bookmark_interval if bookmarks else None
                if deadline is not None:
                    left = deadline - loop.time()
                    if left <= 0:
                        return
                    wait = min(wait, left) if wait else left
                try:
                    ev = await asyncio.wait_for(w.queue.get(), wait) if wait else await w.queue.get()
                except TimeoutError:
                    if bookmarks and (deadline is None or loop.time() < deadline):
                        yield "BOOKMARK", self._bookmark(rt)
                    continue
                if ev is None:
                    return
                t = _translate(ev, match)
                if t:
                    yield t[0], _render(rt, t[1])
        finally:
            self._watchers.discard(w)

    def _bookmark(self, rt: ResourceType) -> dict:
        return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": {"resourceVersion": str(self._rv)}}

    # --- CRDs ------------------------------------------------------------------------------------

    def _register_crd(self, crd: dict) -> None:
        name = crd["metadata"]["name"]
        for rt in self.registry.remove_crd(name):
            self._schemas.pop((rt.group, rt.version, rt.plural), None)
        for rt, schema in served_types(crd):
            self.registry.add(rt)
            self._schemas[(rt.group, rt.version, rt.plural)] = schema

    def _unregister_crd(self, crd: dict) -> None:
        gone = self.registry.remove_crd(crd["metadata"]["name"])
        for rt in gone:
            self._schemas.pop((rt.group, rt.version, rt.plural), None)
        if gone:
            coll = self._objects.pop(gone[0].storage_key, {})
            for obj in coll.values():
                self._rv += 1
                self._emit("DELETED", gone[0], {**obj, "metadata": {**obj["metadata"],
                                                                   "resourceVersion": str(self._rv)}}, obj)

    # --- snapshots -------------------------------------------------------------------------------

    def dump(self) -> dict:
        """JSON-serialisable snapshot of all objects, pod logs and the resourceVersion counter."""
        with self._lock:
            objs = [clone(o) for coll in self._objects.values() for o in coll.values()]
            objs.sort(key=lambda o: o["kind"] != "CustomResourceDefinition")
            return {"format": "falkit-kube-store/1", "resourceVersion": self._rv, "objects": objs,
                    "podLogs": [{"namespace": ns, "name": n, "text": t} for (ns, n), t in self._logs.items()]}

    def load(self, snapshot: dict) -> None:
        """Replace the state with a :meth:`dump`; open watches end (clients relist, as after a restart)."""
        with self._lock:
            watchers = list(self._watchers)
            self._reset()
            for obj in snapshot.get("objects") or []:
                rt = self.resolve(obj["apiVersion"], obj["kind"])
                md = obj["metadata"]
                self._coll(rt)[(md.get("namespace") if rt.namespaced else None, md["name"])] = clone(obj)
                self.alloc.note(obj)
                if rt.kind == "CustomResourceDefinition":
                    self._register_crd(obj)
            for entry in snapshot.get("podLogs") or []:
                self._logs[(entry["namespace"], entry["name"])] = entry["text"]
            self._rv = int(snapshot.get("resourceVersion") or 0)
            self._compacted = self._rv
        for w in watchers:
            w.push(None)


def _field_name(expr: str | None) -> str | None:
    """The name a ``metadata.name=<name>`` field selector requirement asks for, if any."""
    if not expr:
        return None
    for part in expr.split(","):
        f, sep, v = part.partition("==") if "==" in part else part.partition("=")
        if sep and not f.endswith("!") and f.strip() == "metadata.name":
            return v.strip()
    return None


def _same(old: dict, new: dict) -> bool:
    """Equal apart from managedFields timestamps (a no-op write keeps the resourceVersion)."""
    def strip(o):
        md = {k: v for k, v in o["metadata"].items() if k not in ("managedFields", "resourceVersion")}
        return {**o, "metadata": md}
    return strip(old) == strip(new)


def _translate(ev: Event, match) -> tuple[str, dict] | None:
    if ev.type == "ADDED":
        return ("ADDED", ev.obj) if match(ev.obj) else None
    if ev.type == "DELETED":
        return ("DELETED", ev.obj) if match(ev.obj) else None
    now, before = match(ev.obj), ev.old is not None and match(ev.old)
    if now and before:
        return ("MODIFIED", ev.obj)
    if now:
        return ("ADDED", ev.obj)
    if before:
        return ("DELETED", ev.obj)
    return None
