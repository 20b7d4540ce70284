"""The Helm stand-in: ``helm upgrade --install`` / ``helm list`` / ``helm get values`` /
``helm uninstall`` on the twin's state.

- ``upsert(ctx, ns, name, chart, version, values)``: install (revision 1) or upgrade. Same chart,
  version and values as the deployed revision => nothing happens, ``changed: false`` (the revision
  stays). Values are validated first (Cilium: its ``values.schema.json``) — a rejected install
  stores nothing (``HelmValuesError``, HTTP 400). The chart's objects (``falkit.twin.lab.charts``)
  are applied server-side (field manager ``helm``); objects a previous revision made and this one
  does not are deleted, as Helm does. A failure while applying leaves the release ``failed``.
- ``uninstall``: deletes the objects the release made, except CRDs (Helm never deletes CRDs).
- The namespace is created when missing (``--create-namespace``).
"""

from __future__ import annotations

import copy
import datetime as _dt
from typing import Any

from falkit.model.errors import TwinError
from falkit.twin.kube import ApiError

from .charts import CHARTS, HELM_MANAGER, chart_key
from .context import LabContext, Release


class HelmError(TwinError):
    status = 500

    def __init__(self, message: str, *, status: int | None = None, issues: list[dict] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.issues = issues or []
        if status is not None:
            self.status = status


class HelmValuesError(HelmError):
    status = 400


class HelmNotFoundError(HelmError):
    status = 404


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _ref(obj: dict) -> list[str]:
    md = obj.get("metadata") or {}
    return [obj["apiVersion"], obj["kind"], md.get("namespace") or "", md["name"]]


def ensure_namespace(ctx: LabContext, ns: str) -> None:
    if ctx.store.try_get("v1", "Namespace", ns) is None:
        ctx.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                         field_manager=HELM_MANAGER)


def apply_object(ctx: LabContext, obj: dict) -> None:
    """Create or server-side apply one manifest object (CRDs: created once, kept)."""
    md = obj["metadata"]
    ns = md.get("namespace")
    if obj["kind"] == "CustomResourceDefinition":
        if ctx.store.try_get(obj["apiVersion"], obj["kind"], md["name"]) is None:
            ctx.store.create(obj, field_manager=HELM_MANAGER)
        return
    ctx.store.patch(obj["apiVersion"], obj["kind"], md["name"], obj, namespace=ns, patch_type="apply",
                    field_manager=HELM_MANAGER, force=True)


def _delete(ctx: LabContext, ref: list[str]) -> None:
    api_version, kind, ns, name = ref
    if kind == "CustomResourceDefinition":
        return  # Helm does not delete CRDs on uninstall/upgrade
    try:
        ctx.store.delete(api_version, kind, name, ns or None)
    except ApiError as e:
        if e.code != 404:
            raise


def upsert(ctx: LabContext, namespace: str, name: str, chart: str, version: str,
           values: dict[str, Any] | None = None) -> dict[str, Any]:
    """Install or upgrade; returns the release's public dict plus ``changed``."""
    key = chart_key(chart)
    if key not in CHARTS:
        raise HelmNotFoundError(f"Error: chart \"{chart}\" not found in the twin's repositories "
                                f"(known: {', '.join(sorted(CHARTS))})", status=404)
    version = str(version).lstrip("v")
    values = copy.deepcopy(values or {})
    old = ctx.releases.get((namespace, name))
    if old is not None and old.status == "deployed" and chart_key(old.chart) == key and old.version == version \
            and old.values == values:
        return {**old.public(), "changed": False}
    new = Release(namespace, name, chart, version, values)
    issues = CHARTS[key].validate(new)
    if issues:
        raise HelmValuesError(f"Error: values don't meet the specifications of the schema(s) in the following "
                              f"chart(s):\n{key}:\n" + "\n".join(f"- {i['path'] or '(root)'}: {i['message']}"
                                                                   for i in issues), issues=issues)
    if old is not None:
        new.revision = old.revision + 1
        new.history = list(old.history)
        new.notes = {}
    new.updated = _now()
    try:
        ensure_namespace(ctx, namespace)
        objs = CHARTS[key].render(ctx, new)
        for obj in objs:
            obj.setdefault("metadata", {})
            if obj["kind"] != "CustomResourceDefinition" and not obj["metadata"].get("namespace") \
                    and obj["kind"] not in ("StorageClass",):
                obj["metadata"]["namespace"] = namespace
            apply_object(ctx, obj)
        new.objects = [_ref(o) for o in objs]
        if old is not None:
            keep = {tuple(r) for r in new.objects}
            for ref in old.objects:
                if tuple(ref) not in keep:
                    _delete(ctx, ref)
        new.status = "deployed"
    except ApiError as e:
        new.status = "failed"
        new.notes["error"] = str(e)
    new.history.append({"revision": new.revision, "chart": chart, "version": version, "values": values,
                        "status": new.status, "updated": new.updated})
    ctx.releases[(namespace, name)] = new
    ctx.notify()
    if new.status == "failed":
        raise HelmError(f"Error: UPGRADE FAILED: {new.notes.get('error')}", status=500)
    return {**new.public(), "changed": True}


def uninstall(ctx: LabContext, namespace: str, name: str) -> dict[str, Any]:
    rel = ctx.releases.get((namespace, name))
    if rel is None:
        raise HelmNotFoundError(f"Error: uninstall: Release not loaded: {name}: release: not found")
    for ref in reversed(rel.objects):
        _delete(ctx, ref)
    del ctx.releases[(namespace, name)]
    ctx.notify()
    return {"name": name, "namespace": namespace, "uninstalled": True}


def get(ctx: LabContext, namespace: str, name: str) -> Release:
    rel = ctx.releases.get((namespace, name))
    if rel is None:
        raise HelmNotFoundError(f"Error: release: not found: {namespace}/{name}")
    return rel


def listing(ctx: LabContext, namespace: str | None = None) -> list[dict[str, Any]]:
    return [r.public() for k, r in sorted(ctx.releases.items()) if namespace in (None, k[0])]
