"""Discovery documents: ``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/{g}``, ``/apis/{g}/{v}``.

Legacy (unaggregated) discovery: ``APIVersions``, ``APIGroupList``/``APIGroup`` and
``APIResourceList`` with kind, namespaced, verbs, shortNames, categories and subresources
(``pods/log``, ``*/status``, ``*/scale``). Clients asking for aggregated discovery
(``as=APIGroupDiscoveryList``) get these plain documents and fall back, as against old servers.
Custom resources appear as soon as their CRD is created.
"""

from __future__ import annotations

import hashlib

from .builtin import Registry, ResourceType
from .defaults import KUBE_GIT_VERSION

_SUB_VERBS = {"status": ["get", "patch", "update"], "scale": ["get", "patch", "update"], "log": ["get"],
              "finalize": ["update"]}


def version_info(git_version: str = KUBE_GIT_VERSION) -> dict:
    """``version.Info`` (k8s.io/apimachinery/pkg/version/types.go): the server's own version --
    the kube-apiserver image the cluster runs, not a constant of the emulator."""
    major, minor = git_version.lstrip("v").split(".")[:2]
    return {"major": major, "minor": minor, "gitVersion": git_version + "+falkit-twin",
            "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.8", "compiler": "gc",
            "platform": "linux/amd64"}


def api_versions(server_address: str) -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group(name: str, versions: list[str]) -> dict:
    vs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": vs, "preferredVersion": vs[0]}


def api_group_list(reg: Registry) -> dict:
    groups = [_group(g, vs) for g, vs in sorted(reg.group_versions().items()) if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(reg: Registry, name: str) -> dict | None:
    vs = reg.group_versions().get(name)
    if not vs:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, vs)}


def _entry(rt: ResourceType) -> dict:
    e = {"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced, "kind": rt.kind,
         "verbs": list(rt.verbs),
         "storageVersionHash": hashlib.sha256(f"{rt.group}/{rt.version}/{rt.kind}".encode()).hexdigest()[:11]}
    if rt.short_names:
        e["shortNames"] = list(rt.short_names)
    if rt.categories:
        e["categories"] = list(rt.categories)
    return e


def resource_list(reg: Registry, group: str, version: str) -> dict | None:
    types = sorted(reg.in_group_version(group, version), key=lambda t: t.plural)
    if not types:
        return None
    out = []
    for rt in types:
        out.append(_entry(rt))
        for sub in rt.subresources:
            e = {"name": f"{rt.plural}/{sub}", "singularName": "", "namespaced": rt.namespaced,
                 "kind": rt.kind, "verbs": _SUB_VERBS.get(sub, ["get"])}
            if sub == "scale":
                e.update(kind="Scale", group="autoscaling", version="v1")
            out.append(e)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}
