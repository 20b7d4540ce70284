"""What each Helm chart creates in the twin's cluster (a table, ``CHARTS``; not an if/elif chain).

A chart stand-in is ``Chart(render, validate)``: ``render(ctx, release) -> list[object dict]`` is
the manifest ``helm template`` would produce in the twin's terms (CRDs, Deployments, DaemonSets,
Services, StorageClasses); ``validate(release) -> list[issue dict]`` rejects bad values as the real
chart does (Cilium: the chart's ``values.schema.json``, types only — docs/FACTS.md: a misspelt key
passes). Pods are made by the workload controllers from the Deployments/DaemonSets
(``falkit.twin.lab.workloads``); the Mayastor io-engine and csi-node DaemonSets are annotated
``falkit.twin/controller: mayastor`` (their pods' fate depends on hugepages, ``nvme_tcp`` and cores:
``falkit.twin.lab.mayastor``). Facts the controllers need are recorded in ``release.notes``:

- cilium: ``ctx.cilium_config()`` (:func:`cilium_effective_config`) — kubeProxyReplacement,
  l2announcements, externalIPs, k8sClientRateLimit, devices, lease timings;
- openebs / mayastor: ``notes["io_engine"] = {"coreList": [...] | None, "cpuCount": str,
  "hugepages_2Mi": "2Gi", "nodeSelector": {...}}``, ``notes["diskpool_api_version"]``,
  ``notes["namespace"]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from falkit.model.schemas import UPSTREAM, cilium_crd_dir, diskpool_api_version, validate_cilium_values
from falkit.twin.kube import diskpool_crd, load_crd_file
from falkit.twin.tools.chartrepos import (  # noqa: F401 - the repository table, re-exported
    LATEST,
    OCI_CHARTS,
    REPOSITORIES,
    chart_key,
    latest_version,
    repository,
)

from .context import POD_CONTROLLER, LabContext, Release, cilium_effective_config, helm_value

HELM_MANAGER = "helm"


# --------------------------------------------------------------------------------- object helpers

def _labels(release: Release, app: str, component: str | None = None) -> dict[str, str]:
    out = {"app.kubernetes.io/name": app, "app.kubernetes.io/instance": release.name,
           "app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": f"{chart_key(release.chart)}-{release.version}"}
    if component:
        out["app.kubernetes.io/component"] = component
    return out


def _meta(release: Release, name: str, labels: dict[str, str], annotations: dict | None = None) -> dict:
    ann = {"meta.helm.sh/release-name": release.name, "meta.helm.sh/release-namespace": release.namespace}
    ann.update(annotations or {})
    return {"name": name, "namespace": release.namespace, "labels": labels, "annotations": ann}


# The csi-node init container of the mayastor chart's values (``csi.node.initContainers``,
# openebs/mayastor-extensions chart/values.yaml): it waits until nvme_tcp is loaded.
NVME_TCP_PROBE = {"name": "nvme-tcp-probe", "image": "busybox:latest", "command": [
    "sh", "-c", 'trap "exit 1" TERM; until $(lsmod | grep nvme_tcp &>/dev/null); do [ -z "$WARNED" ] && '
    'echo "nvme_tcp module not loaded..."; WARNED=1; sleep 60; done;']}


def _pod_template(selector: dict[str, str], image: str, *, node_selector: dict | None = None,
                  tolerate_all: bool = False, host_network: bool = False, resources: dict | None = None,
                  args: list[str] | None = None, init_containers: list[dict] | None = None) -> dict:
    container: dict[str, Any] = {"name": selector.get("app.kubernetes.io/name") or "main", "image": image}
    if resources:
        container["resources"] = resources
    if args:
        container["args"] = args
    spec: dict[str, Any] = {"containers": [container]}
    if init_containers:
        spec["initContainers"] = init_containers
    if node_selector:
        spec["nodeSelector"] = node_selector
    if tolerate_all:
        spec["tolerations"] = [{"operator": "Exists"}]
    if host_network:
        spec["hostNetwork"] = True
    return {"metadata": {"labels": dict(selector)}, "spec": spec}


def deployment(release: Release, name: str, app: str, image: str, *, replicas: int = 1, component: str | None = None,
               extra_labels: dict | None = None, **tpl: Any) -> dict:
    sel = {"app.kubernetes.io/name": app, "app.kubernetes.io/instance": release.name}
    if component:
        sel["app.kubernetes.io/component"] = component
    sel.update(extra_labels or {})
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(release, name, {**_labels(release, app, component), **sel}),
            "spec": {"replicas": replicas, "selector": {"matchLabels": sel}, "template": _pod_template(sel, image, **tpl)}}


def daemonset(release: Release, name: str, app: str, image: str, *, component: str | None = None,
              controller: str | None = None, extra_labels: dict | None = None, **tpl: Any) -> dict:
    sel = {"app.kubernetes.io/name": app, "app.kubernetes.io/instance": release.name}
    if component:
        sel["app.kubernetes.io/component"] = component
    sel.update(extra_labels or {})
    ann = {POD_CONTROLLER: controller} if controller else None
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": _meta(release, name, {**_labels(release, app, component), **sel}, ann),
            "spec": {"selector": {"matchLabels": sel}, "template": _pod_template(sel, image, **tpl)}}


def service(release: Release, name: str, app: str, ports: list[tuple[str, int]], *, type_: str = "ClusterIP",
            annotations: dict | None = None, selector: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": _meta(release, name, _labels(release, app), annotations),
            "spec": {"type": type_, "selector": selector or {"app.kubernetes.io/name": app,
                                                             "app.kubernetes.io/instance": release.name},
                     "ports": [{"name": n, "port": p, "targetPort": p} for n, p in ports]}}


def crd(path: Path) -> dict:
    return load_crd_file(path)


# --------------------------------------------------------------------------------- cilium

def _cilium_validate(release: Release) -> list[dict]:
    return [{"document": 0, "path": i.path, "message": i.message}
            for i in validate_cilium_values(release.values, release.version)]


def _cilium_render(ctx: LabContext, release: Release) -> list[dict]:
    cfg = cilium_effective_config(release)
    release.notes["cilium"] = {"kubeProxyReplacement": cfg.kube_proxy_replacement,
                               "l2announcements": cfg.l2_announcements, "externalIPs": cfg.external_ips,
                               "k8sClientRateLimit": {"qps": cfg.qps, "burst": cfg.burst}, "devices": list(cfg.devices)}
    crds = [crd(p) for p in sorted(cilium_crd_dir(release.version).rglob("*.yaml"))]
    image = f"quay.io/cilium/cilium:v{release.version}"
    agent = daemonset(release, "cilium", "cilium-agent", image, extra_labels={"k8s-app": "cilium"},
                      tolerate_all=True, host_network=True)
    operator = deployment(release, "cilium-operator", "cilium-operator",
                          f"quay.io/cilium/operator-generic:v{release.version}",
                          replicas=int(helm_value(release.values, "operator.replicas", 2) or 1),
                          extra_labels={"io.cilium/app": "operator", "name": "cilium-operator"},
                          tolerate_all=True, host_network=True)
    return crds + [agent, operator]


# --------------------------------------------------------------------------------- metallb

def _metallb_render(ctx: LabContext, release: Release) -> list[dict]:
    base = UPSTREAM / "metallb"
    pinned = base / "v0.14.9"
    src = pinned if release.version.lstrip("v").startswith("0.14.") else base
    crds = [crd(p) for p in sorted(src.glob("*.yaml"))]
    image = f"quay.io/metallb/{{}}:v{release.version.lstrip('v')}"
    return crds + [
        deployment(release, "metallb-controller", "metallb", image.format("controller"), component="controller"),
        daemonset(release, "metallb-speaker", "metallb", image.format("speaker"), component="speaker",
                  tolerate_all=True, host_network=True),
    ]


# --------------------------------------------------------------------------------- openebs / mayastor

def _mayastor_values(release: Release) -> dict:
    if chart_key(release.chart) == "openebs":
        return release.values.get("mayastor") or {}
    return release.values


def _mayastor_render(ctx: LabContext, release: Release) -> list[dict]:
    v = _mayastor_values(release)
    mversion = release.version if chart_key(release.chart) == "mayastor" else ctx.spec.versions.mayastor
    api_version = diskpool_api_version(mversion)
    io = v.get("io_engine") or {}
    node_selector = io.get("nodeSelector") or {"openebs.io/engine": "mayastor", "kubernetes.io/arch": "amd64"}
    hugepages = helm_value(io, "resources.limits.hugepages2Mi") or helm_value(io, "resources.limits.hugepages-2Mi") or "2Gi"
    cpu_count = str(io.get("cpuCount", "2"))
    core_list = io.get("coreList")
    release.notes["io_engine"] = {"coreList": core_list, "cpuCount": cpu_count, "hugepages_2Mi": hugepages,
                                  "nodeSelector": node_selector}
    release.notes["diskpool_api_version"] = api_version
    release.notes["namespace"] = release.namespace
    release.notes["mayastor_version"] = mversion
    served = ("v1beta2",) if api_version.endswith("v1beta2") else ("v1beta2", "v1beta3")
    tag = f"v{mversion}"
    image = f"docker.io/openebs/mayastor-{{}}:{tag}"
    pre = release.name
    args = [f"-l{','.join(str(c) for c in core_list)}"] if core_list else [f"--cpu-count={cpu_count}"]
    objs: list[dict] = [diskpool_crd(served, storage=api_version.split("/")[1])]
    for comp in ("agent-core", "api-rest", "csi-controller", "operator-diskpool"):
        objs.append(deployment(release, f"{pre}-{comp}", comp, image.format(comp), component=comp,
                               extra_labels={"app": comp}))
    objs.append(deployment(release, f"{pre}-etcd", "etcd", "docker.io/bitnami/etcd:3.5", component="etcd",
                           extra_labels={"app": "etcd"}))
    if helm_value(v, "nats.enabled", False):
        objs.append(deployment(release, f"{pre}-nats", "nats", "nats:2.9", component="nats"))
    objs.append(daemonset(release, f"{pre}-io-engine", "io-engine", image.format("io-engine"), component="io-engine",
                          controller="mayastor", extra_labels={"app": "io-engine"}, node_selector=node_selector,
                          args=args, resources={"limits": {"cpu": cpu_count, "memory": "1Gi", "hugepages-2Mi": hugepages},
                                                "requests": {"cpu": cpu_count, "memory": "1Gi",
                                                             "hugepages-2Mi": hugepages}}))
    objs.append(daemonset(release, f"{pre}-csi-node", "csi-node", image.format("csi-node"), component="csi-node",
                          controller="mayastor", extra_labels={"app": "csi-node"},
                          node_selector={"kubernetes.io/arch": "amd64"}, host_network=True,
                          init_containers=[NVME_TCP_PROBE]))
    return objs


# --------------------------------------------------------------------------------- longhorn

def _longhorn_render(ctx: LabContext, release: Release) -> list[dict]:
    image = f"longhornio/{{}}:v{release.version.lstrip('v')}"
    default_class = helm_value(release.values, "persistence.defaultClass", True)
    sc = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
          "metadata": {"name": "longhorn", "labels": _labels(release, "longhorn"),
                       "annotations": {"storageclass.kubernetes.io/is-default-class": str(bool(default_class)).lower(),
                                       "meta.helm.sh/release-name": release.name,
                                       "meta.helm.sh/release-namespace": release.namespace}},
          "provisioner": "driver.longhorn.io", "allowVolumeExpansion": True, "reclaimPolicy": "Delete",
          "volumeBindingMode": "Immediate",
          "parameters": {"numberOfReplicas": str(helm_value(release.values, "persistence.defaultClassReplicaCount", 3)),
                         "staleReplicaTimeout": "30", "fsType": "ext4", "dataLocality": "disabled"}}
    ui_type = helm_value(release.values, "service.ui.type", "ClusterIP")
    return [
        daemonset(release, "longhorn-manager", "longhorn-manager", image.format("longhorn-manager"),
                  extra_labels={"app": "longhorn-manager"}),
        deployment(release, "longhorn-ui", "longhorn-ui", image.format("longhorn-ui"), replicas=2,
                   extra_labels={"app": "longhorn-ui"}),
        deployment(release, "longhorn-driver-deployer", "longhorn-driver-deployer", image.format("longhorn-manager"),
                   extra_labels={"app": "longhorn-driver-deployer"}),
        service(release, "longhorn-frontend", "longhorn-ui", [("http", 80)], type_=ui_type,
                selector={"app": "longhorn-ui"}),
        sc,
    ]


# --------------------------------------------------------------------------------- argo-cd

def _argocd_render(ctx: LabContext, release: Release) -> list[dict]:
    crds = [crd(p) for p in sorted((UPSTREAM / "argocd").glob("*.yaml"))]
    image = f"quay.io/argoproj/argocd:v{ctx.spec.versions.argocd}"
    svc_type = helm_value(release.values, "server.service.type", "ClusterIP")
    svc_ann = helm_value(release.values, "server.service.annotations", {}) or {}
    objs = crds + [
        deployment(release, "argocd-server", "argocd-server", image, component="server"),
        deployment(release, "argocd-repo-server", "argocd-repo-server", image, component="repo-server"),
        deployment(release, "argocd-application-controller", "argocd-application-controller", image,
                   component="application-controller"),
        deployment(release, "argocd-redis", "argocd-redis", "redis:7", component="redis"),
        service(release, "argocd-server", "argocd-server", [("http", 80), ("https", 443)], type_=svc_type,
                annotations=svc_ann),
    ]
    return objs


# --------------------------------------------------------------------------------- the table

@dataclass(frozen=True)
class Chart:
    render: Callable[[LabContext, Release], list[dict]]
    validate: Callable[[Release], list[dict]] = lambda release: []  # noqa: E731 - a table default


CHARTS: dict[str, Chart] = {
    "cilium": Chart(_cilium_render, _cilium_validate),
    "metallb": Chart(_metallb_render),
    "openebs": Chart(_mayastor_render),
    "mayastor": Chart(_mayastor_render),
    "longhorn": Chart(_longhorn_render),
    "argo-cd": Chart(_argocd_render),
}

