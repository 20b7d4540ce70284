"""The table of resource types the emulator serves.

A :class:`ResourceType` is one (group, version, plural) the API answers for: its kind, scope,
short names, verbs and subresources, as listed by discovery (``/api/v1``, ``/apis/{g}/{v}``).
Built-in types below are the ones falkit touches; custom resources are added at runtime from
``CustomResourceDefinition`` objects (see :mod:`falkit.twin.kube.crd`).

Storage is keyed by (group, plural): every served version of a type shares one collection, as an
apiserver stores one storage version and converts on read (CRD conversion strategy ``None`` only
rewrites ``apiVersion``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    """One served (group, version, resource)."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    categories: tuple[str, ...] = ()
    crd: str | None = None  # name of the CustomResourceDefinition that defines it
    printer_columns: tuple[dict, ...] = field(default=(), compare=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def storage_key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def describe(self) -> str:
        """``plural.group`` as used in apiserver messages (``pods``, ``deployments.apps``)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


def _t(group, version, kind, plural, namespaced, short=(), sub=(), cats=()):
    return ResourceType(group, version, kind, plural, namespaced, tuple(short), tuple(sub), ALL_VERBS, tuple(cats))


BUILTIN_TYPES: tuple[ResourceType, ...] = (
    _t("", "v1", "Namespace", "namespaces", False, ["ns"], ["status", "finalize"]),
    _t("", "v1", "Node", "nodes", False, ["no"], ["status"]),
    _t("", "v1", "Pod", "pods", True, ["po"], ["status", "log"], ["all"]),
    _t("", "v1", "Service", "services", True, ["svc"], ["status"], ["all"]),
    _t("", "v1", "Endpoints", "endpoints", True, ["ep"]),
    _t("", "v1", "ConfigMap", "configmaps", True, ["cm"]),
    _t("", "v1", "Secret", "secrets", True),
    _t("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, ["pvc"], ["status"]),
    _t("", "v1", "PersistentVolume", "persistentvolumes", False, ["pv"], ["status"]),
    _t("", "v1", "Event", "events", True, ["ev"]),
    _t("", "v1", "ServiceAccount", "serviceaccounts", True, ["sa"]),
    _t("apps", "v1", "Deployment", "deployments", True, ["deploy"], ["status", "scale"], ["all"]),
    _t("apps", "v1", "DaemonSet", "daemonsets", True, ["ds"], ["status"], ["all"]),
    _t("apps", "v1", "StatefulSet", "statefulsets", True, ["sts"], ["status", "scale"], ["all"]),
    _t("apps", "v1", "ReplicaSet", "replicasets", True, ["rs"], ["status", "scale"], ["all"]),
    _t("batch", "v1", "Job", "jobs", True, (), ["status"], ["all"]),
    _t("storage.k8s.io", "v1", "StorageClass", "storageclasses", False, ["sc"]),
    _t("coordination.k8s.io", "v1", "Lease", "leases", True),
    _t("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", True),
    _t("networking.k8s.io", "v1", "Ingress", "ingresses", True, ["ing"], ["status"]),
    _t("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", True, ["netpol"]),
    _t("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True, ["pdb"], ["status"]),
    _t("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", False,
       ["crd", "crds"], ["status"]),
    _t("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
    _t("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
    _t("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    _t("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
)

_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple:
    """Sort key of Kubernetes version names: GA > beta > alpha, higher numbers first.

    See "Version priority" in the CRD versioning docs (v2 > v1 > v1beta2 > v1beta1 > v1alpha1 > foo).
    """
    m = _VERSION_RE.match(version)
    if not m:
        return (0, 0, 0, version)
    major, stage, minor = int(m.group(1)), m.group(2), int(m.group(3) or 0)
    rank = {None: 3, "beta": 2, "alpha": 1}[stage]
    return (rank, major, minor, "")


class Registry:
    """Served resource types, indexed for the lookups the server and the store make."""

    def __init__(self) -> None:
        self._by_gvr: dict[tuple[str, str, str], ResourceType] = {}

    def add(self, rt: ResourceType) -> None:
        self._by_gvr[(rt.group, rt.version, rt.plural)] = rt

    def remove_crd(self, crd_name: str) -> list[ResourceType]:
        gone = [rt for rt in self._by_gvr.values() if rt.crd == crd_name]
        for rt in gone:
            del self._by_gvr[(rt.group, rt.version, rt.plural)]
        return gone

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_gvr.get((group, version, plural))

    def resolve(self, api_version: str, kind_or_plural: str) -> ResourceType | None:
        """Find a type by apiVersion and kind, plural, singular or short name."""
        group, _, version = api_version.rpartition("/")
        rt = self._by_gvr.get((group, version, kind_or_plural))
        if rt:
            return rt
        low = kind_or_plural.lower()
        for rt in self._by_gvr.values():
            if rt.group == group and rt.version == version and (
                    rt.kind == kind_or_plural or rt.singular == low or low in rt.short_names):
                return rt
        return None

    def all(self) -> list[ResourceType]:
        return list(self._by_gvr.values())

    def group_versions(self) -> dict[str, list[str]]:
        """group -> served versions, preferred (highest priority) first."""
        out: dict[str, set[str]] = {}
        for g, v, _ in self._by_gvr:
            out.setdefault(g, set()).add(v)
        return {g: sorted(vs, key=version_priority, reverse=True) for g, vs in out.items()}

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [rt for (g, v, _), rt in self._by_gvr.items() if g == group and v == version]
