"""Argo CD's resource tracking, as the twin's Argo CD writes and reads it.

Written from Argo CD's source, not from falkit (falkit.steps.ownership reads the same annotation; the
twin must not borrow it, see .importlinter):

* ``util/argo/resource_tracking.go`` (argoproj/argo-cd@8667c596c9553f7b004f6556e2b1d187df1c9165),
  ``BuildAppInstanceValue``: ``fmt.Sprintf("%s:%s/%s:%s/%s", ApplicationName, Group, Kind,
  Namespace, Name)``; ``ParseAppInstanceValue`` splits it with ``SplitN(value, ":", 3)`` and each
  half on ``/``. ``Group`` is the GroupVersionKind's group: empty for the core API (``v1``).
* The annotation key is ``common.AnnotationKeyAppInstance`` = ``argocd.argoproj.io/tracking-id``;
  ``annotation`` is the default tracking method in 3.x (falkit/data/upstream/PROVENANCE.md,
  Argo CD v3.5.1 notes; docs "Resource Tracking", user-guide/resource_tracking.md).
"""

from __future__ import annotations

from dataclasses import dataclass

TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"


@dataclass(frozen=True)
class ObjectRef:
    """An object as Argo CD keys it: apiVersion, kind, namespace ('' when cluster-scoped), name."""

    api_version: str
    kind: str
    namespace: str
    name: str

    @property
    def group(self) -> str:
        """The API group of ``api_version`` (``apps/v1`` -> ``apps``; ``v1`` -> ``''``)."""
        return self.api_version.rsplit("/", 1)[0] if "/" in self.api_version else ""

    @classmethod
    def of(cls, obj: dict) -> ObjectRef:
        md = obj.get("metadata") or {}
        return cls(obj.get("apiVersion", ""), obj.get("kind", ""), md.get("namespace") or "", md.get("name", ""))


def tracking_id(app: str, ref: ObjectRef) -> str:
    """``<app>:<group>/<kind>:<namespace>/<name>`` (BuildAppInstanceValue)."""
    return f"{app}:{ref.group}/{ref.kind}:{ref.namespace}/{ref.name}"
