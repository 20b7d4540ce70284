"""The "before" state (``lab_process --state before``): The Fal before the migration.

From ``spec.previous`` (the seed; docs/UPSTREAM.md and ``falkit.twin.supervisor.pve_config_from_spec``,
which gives the pve process VMs 200/201 with MACs ``52:54:00:10:30:XX`` on vmbr0):

- Talos configs in the old style applied to talos-cp-01 (10.30.0.10) and talos-worker-01
  (10.30.0.11): ``iscsi_tcp`` module, no hugepages, Longhorn's kubelet extraMount
  ``/var/lib/longhorn``, kube-proxy on; the cluster bootstrapped (the Kubernetes API answers);
- Helm releases: cilium (CNI only: no kube-proxy replacement, no L2 announcements), metallb with
  an ``IPAddressPool`` (``previous.metallb_pool``) and an ``L2Advertisement``, longhorn, argo-cd;
- LoadBalancer Services with MetalLB's requested-IP annotation ``metallb.universe.tf/loadBalancerIPs``
  = each ``spec.services[].old_ip`` (traefik, argocd-server, longhorn-frontend); their
  ``status.loadBalancer`` is the MetalLB controller's job (``falkit.twin.lab.lbipam``);
- Deployments traefik (ns traefik) and plex, sonarr, radarr (ns media), the media apps with a
  Longhorn PVC each, bound to a ``driver.longhorn.io`` PV; ``ctx.volumes`` keeps a checksum per PV
  so a later step can prove the data survived.

Nodes (and their readiness) come from the nodes controller once the VMs are seen running.
"""

from __future__ import annotations

import hashlib
import ipaddress

import yaml

from ..applications import app_of_apps
from .context import LabContext, TalosNode, VolumeData
from .helm import HELM_MANAGER, ensure_namespace, upsert
from .talos import _minor, before_identity, derive, parse_config

MANAGER = "falkit-before"
LONGHORN_DRIVER = "driver.longhorn.io"
MEDIA_APPS = {"plex": ("plexinc/pms-docker:1.41.3", "plex-config", "20Gi", 32400),
              "sonarr": ("lscr.io/linuxserver/sonarr:4.0.11", "sonarr-config", "5Gi", 8989),
              "radarr": ("lscr.io/linuxserver/radarr:5.16.3", "radarr-config", "5Gi", 7878)}


def old_config(ctx: LabContext, name: str, ip: str, machine_type: str, endpoint_ip: str) -> str:
    """The pre-migration machine config of one node (YAML), valid for ``spec.versions.talos``."""
    spec = ctx.spec
    ident = before_identity(ctx)  # the existing cluster's own CA (falkit.twin.lab.talos)
    os_ca = ident["certs"]["os"]
    machine: dict = {"type": machine_type, "install": {"disk": spec.talos.install_disk},
                     "token": ident["trustdinfo"]["token"],
                     "ca": {"crt": os_ca["crt"], "key": os_ca["key"] if machine_type == "controlplane" else ""},
                     "kernel": {"modules": [{"name": "iscsi_tcp"}]},
                     "kubelet": {"extraMounts": [{"destination": "/var/lib/longhorn", "type": "bind",
                                                  "source": "/var/lib/longhorn",
                                                  "options": ["bind", "rshared", "rw"]}]}}
    docs: list[dict] = [{"version": "v1alpha1", "machine": machine,
                         "cluster": {"clusterName": spec.cluster.name,
                                     "controlPlane": {"endpoint": f"https://{endpoint_ip}:6443"},
                                     "network": {"cni": {"name": "none"}}}}]
    if _minor(spec.versions.talos) < (1, 12):
        machine["network"] = {"hostname": name}
    else:
        docs.append({"apiVersion": "v1alpha1", "kind": "HostnameConfig", "hostname": name, "auto": "off"})
    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)


def checksum(namespace: str, claim: str) -> str:
    """The (deterministic) sha256 of a before-state volume's content."""
    return hashlib.sha256(f"falkit-twin before-state data {namespace}/{claim}".encode()).hexdigest()


def _size_bytes(q: str) -> int:
    return int(q[:-2]) * 1024 ** 3 if q.endswith("Gi") else int(q)


def _apply(ctx: LabContext, obj: dict) -> dict:
    md = obj["metadata"]
    return ctx.store.patch(obj["apiVersion"], obj["kind"], md["name"], obj, namespace=md.get("namespace"),
                           patch_type="apply", field_manager=MANAGER, force=True)


def _talos(ctx: LabContext) -> None:
    prev = ctx.spec.previous
    assert prev is not None
    cp_vmids = {c.vmid for c in ctx.spec.cluster.control_plane}
    cps = [n for n in prev.nodes if n.vmid in cp_vmids] or prev.nodes[:1]
    for n in prev.nodes:
        mtype = "controlplane" if n in cps else "worker"
        text = old_config(ctx, n.name, n.ip, mtype, cps[0].ip)
        docs = parse_config(text, ctx.spec.versions.talos)
        node = TalosNode(ip=n.ip, vmid=n.vmid, docs=docs, mode="running", talos_version=ctx.spec.versions.talos,
                         boot_id=hashlib.sha256(f"boot {n.vmid}".encode()).hexdigest()[:32])
        for k, v in derive(docs, n.ip).items():
            setattr(node, k, v)
        ctx.talos_nodes[n.ip] = node
        ctx.elapse(f"cni-ready:{node.hostname}")
    ctx.bootstrapped = True
    ctx.bootstrap_ip = cps[0].ip
    ctx.store.faults.api_up()


def _service_ip(ctx: LabContext, namespace: str, name: str) -> str | None:
    return next((s.old_ip for s in ctx.spec.services if s.namespace == namespace and s.name == name), None)


def _releases(ctx: LabContext) -> None:
    v = ctx.spec.versions
    prev = ctx.spec.previous
    assert prev is not None
    upsert(ctx, "kube-system", "cilium", "cilium/cilium", v.cilium,
           {"ipam": {"mode": "kubernetes"}, "kubeProxyReplacement": False})
    upsert(ctx, "metallb-system", "metallb", "metallb/metallb", v.metallb, {})
    upsert(ctx, "longhorn-system", "longhorn", "longhorn/longhorn", v.longhorn,
           {"service": {"ui": {"type": "LoadBalancer"}},
            "persistence": {"defaultClass": True, "defaultClassReplicaCount": 1}})
    argo_ip = _service_ip(ctx, "argocd", "argocd-server")
    upsert(ctx, "argocd", "argocd", "argo/argo-cd", v.argocd,
           {"server": {"service": {"type": "LoadBalancer",
                                   "annotations": {"metallb.universe.tf/loadBalancerIPs": argo_ip} if argo_ip else {}}}})
    pool = prev.metallb_pool
    _apply(ctx, {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
                 "metadata": {"name": "default-pool", "namespace": "metallb-system"},
                 "spec": {"addresses": [f"{pool.start}-{pool.stop}"], "autoAssign": True}})
    _apply(ctx, {"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement",
                 "metadata": {"name": "default", "namespace": "metallb-system"},
                 "spec": {"ipAddressPools": ["default-pool"]}})
    lh_ip = _service_ip(ctx, "longhorn-system", "longhorn-frontend")
    if lh_ip:
        ctx.store.patch("v1", "Service", "longhorn-frontend",
                        {"metadata": {"annotations": {"metallb.universe.tf/loadBalancerIPs": lh_ip}}},
                        namespace="longhorn-system", field_manager=HELM_MANAGER)
    # MetalLB serves a requested address only from a pool's range: "an explicit start-end range of
    # IPs", both ends included (falkit/data/upstream/metallb/metallb.io_ipaddresspools.yaml).
    assert not lh_ip or (ipaddress.IPv4Address(pool.start) <= ipaddress.IPv4Address(lh_ip)
                         <= ipaddress.IPv4Address(pool.stop))


def _deployment(ns: str, name: str, image: str, port: int, claim: str | None = None) -> dict:
    labels = {"app.kubernetes.io/name": name}
    pod: dict = {"containers": [{"name": name, "image": image, "ports": [{"containerPort": port}]}]}
    if claim:
        pod["containers"][0]["volumeMounts"] = [{"name": "config", "mountPath": "/config"}]
        pod["volumes"] = [{"name": "config", "persistentVolumeClaim": {"claimName": claim}}]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": pod}}}


def _volume(ctx: LabContext, ns: str, claim: str, size: str, node: str) -> None:
    pvc = ctx.store.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                            "metadata": {"name": claim, "namespace": ns,
                                         "annotations": {"pv.kubernetes.io/bind-completed": "yes",
                                                         "volume.kubernetes.io/storage-provisioner": LONGHORN_DRIVER}},
                            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "longhorn",
                                     "resources": {"requests": {"storage": size}}}}, field_manager=MANAGER)
    pv_name = f"pvc-{pvc['metadata']['uid']}"
    ctx.store.create({"apiVersion": "v1", "kind": "PersistentVolume",
                      "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": LONGHORN_DRIVER}},
                      "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                               "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "longhorn",
                               "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns,
                                            "name": claim, "uid": pvc["metadata"]["uid"]},
                               "csi": {"driver": LONGHORN_DRIVER, "volumeHandle": pv_name, "fsType": "ext4"}}},
                     field_manager=MANAGER)
    ctx.store.patch("v1", "PersistentVolume", pv_name, {"status": {"phase": "Bound"}}, subresource="status",
                    field_manager="persistentvolume-controller")
    ctx.store.patch("v1", "PersistentVolumeClaim", claim, {"spec": {"volumeName": pv_name}}, namespace=ns,
                    field_manager="persistentvolume-controller")
    ctx.store.patch("v1", "PersistentVolumeClaim", claim,
                    {"status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": size}}},
                    namespace=ns, subresource="status", field_manager="persistentvolume-controller")
    used = _size_bytes(size) // 10
    ctx.volumes[pv_name] = VolumeData(pv_name, ns, claim, LONGHORN_DRIVER, _size_bytes(size), used,
                                      checksum(ns, claim), [node], "healthy")


def _workloads(ctx: LabContext) -> None:
    traefik_ip = _service_ip(ctx, "traefik", "traefik")
    ensure_namespace(ctx, "traefik")
    _apply(ctx, _deployment("traefik", "traefik", "traefik:v3.2", 8000))
    _apply(ctx, {"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": "traefik", "namespace": "traefik",
                              "annotations": {"metallb.universe.tf/loadBalancerIPs": traefik_ip} if traefik_ip else {}},
                 "spec": {"type": "LoadBalancer", "selector": {"app.kubernetes.io/name": "traefik"},
                          "ports": [{"name": "web", "port": 80, "targetPort": 8000},
                                    {"name": "websecure", "port": 443, "targetPort": 8443}]}})
    ensure_namespace(ctx, "media")
    worker = ctx.spec.previous.nodes[-1].name if ctx.spec.previous else ""
    for app, (image, claim, size, port) in MEDIA_APPS.items():
        _volume(ctx, "media", claim, size, worker)
        _apply(ctx, _deployment("media", app, image, port, claim))


def apply_before(ctx: LabContext) -> None:
    """Build the before state into ``ctx`` and its store (synchronous; at startup)."""
    if ctx.spec.previous is None:
        raise ValueError("the spec has no 'previous' section: there is no before state to build")
    _talos(ctx)
    _releases(ctx)
    _workloads(ctx)
    _gitops(ctx)
    ctx.notify()


def _gitops(ctx: LabContext) -> None:
    """The seed's app-of-apps: when the twin has a GitOps repository (the supervisor makes one at
    ``STATE_DIR/gitops`` with the seed's layout), Argo CD manages the platform from it."""
    if ctx.spec.gitops is None or not (ctx.state_dir / "gitops" / ".git").exists():
        return
    _apply(ctx, app_of_apps(ctx.spec.gitops.repo_url, ctx.spec.gitops.platform_path))
