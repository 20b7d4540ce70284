"""Helm values, chart reference and Kubernetes objects for OpenEBS Mayastor (pure, no I/O).

Chart: ``mayastor`` from the ``openebs/mayastor-extensions`` Helm repository
(``helm repo add mayastor https://openebs.github.io/mayastor-extensions/``), version = the
Mayastor version of the spec (2.8.0 for The Fal). Chosen over the umbrella ``openebs/openebs``
chart (4.2.0 ships Mayastor 2.8.0, PROVENANCE.md) because its version is Mayastor's own — no
version table to keep — and it brings no LocalPV LVM/ZFS engines The Fal does not use. The
umbrella nests these same values under ``mayastor:`` and enables the engine with
``engines.replicated.mayastor.enabled``; :func:`umbrella_values` produces that shape for operators
who install through it.

Value names were checked against ``chart/values.yaml`` of openebs/mayastor-extensions
(``io_engine.coreList``, ``io_engine.cpuCount``, ``io_engine.resources.*.hugepages2Mi``,
``csi.node.kubeletDir``, ``etcd.replicaCount``, ``etcd.persistence.*``, ``loki-stack.enabled``,
``obs.callhome.enabled``, ``storageClass.enabled``).

Choices (docs/FACTS.md, OpenEBS Mayastor):

* ``io_engine.coreList`` = the cores of the design (:func:`falkit.model.design.derive_io_engine_cores`): the chart
  default ``cpuCount: "2"`` pins cores 1,2, which do not exist on a 2-vCPU worker ("EAL: invalid
  core list"). ``cpuCount`` is set to the list's length so both agree.
* hugepages: request = limit = the node's 2 MiB pages (``spec.mayastor.hugepages_2mi`` x 2 MiB);
  1024 pages = 2 GiB = exactly the io-engine's need, zero slack (a preflight finding says so).
* ``csi.node.kubeletDir: /var/lib/kubelet``: Talos runs the kubelet with the standard root dir.
* etcd: one replica per worker up to 3 (its anti-affinity is "hard"), persistent 2 GiB on the
  chart's hostpath LocalPV under ``/var/local`` (Talos kubelet extraMount, docs/FACTS.md).
* ``loki-stack.enabled: false``: a homelab does not need the 10 GiB log store and its promtail
  DaemonSet on 9 GB workers; ``obs.callhome.enabled: false``: no telemetry from a homelab.
* ``storageClass.enabled: false``: falkit creates ``mayastor-3`` itself (:func:`storage_class`).
"""

from __future__ import annotations

from typing import Any

from ..model.design import design_of
from ..model.schemas import diskpool_api_version
from ..model.spec import LabSpec

CHART = "mayastor"
CHART_REPO = "https://openebs.github.io/mayastor-extensions/"
UMBRELLA_CHART = "openebs"
UMBRELLA_REPO = "https://openebs.github.io/openebs"
# Umbrella release -> the Mayastor it ships (PROVENANCE.md; openebs/website releases.md).
UMBRELLA_FOR_MAYASTOR = {"2.8": "4.2.0", "2.10": "4.4.0", "2.11": "4.5.0"}
RELEASE_NAME = "mayastor"
PROVISIONER = "io.openebs.csi-mayastor"
ENGINE_LABEL = ("openebs.io/engine", "mayastor")
PSA_LABEL = ("pod-security.kubernetes.io/enforce", "privileged")
TALOS_KUBELET_DIR = "/var/lib/kubelet"
HUGEPAGE_MIB = 2


def _mib_text(mib: int) -> str:
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"


def hugepages_quantity(spec: LabSpec) -> str:
    """``1024`` pages of 2 MiB -> ``"2Gi"`` (Kubernetes quantity for ``hugepages-2Mi``)."""
    return _mib_text(spec.mayastor.hugepages_2mi * HUGEPAGE_MIB)


def helm_values(spec: LabSpec) -> dict[str, Any]:
    """The values falkit installs the ``mayastor`` chart with (see the module docstring)."""
    cores = list(design_of(spec).io_engine_cores)
    hp = hugepages_quantity(spec)
    etcd_replicas = max(1, min(3, len(spec.cluster.workers)))
    return {
        "io_engine": {
            "cpuCount": str(len(cores)),
            "coreList": cores,
            "nodeSelector": {ENGINE_LABEL[0]: ENGINE_LABEL[1], "kubernetes.io/arch": "amd64"},
            "resources": {
                "limits": {"memory": "1Gi", "hugepages2Mi": hp},
                "requests": {"memory": "1Gi", "hugepages2Mi": hp},
            },
        },
        "csi": {"node": {"kubeletDir": TALOS_KUBELET_DIR}},
        "etcd": {
            "replicaCount": etcd_replicas,
            "persistence": {"enabled": True, "size": "2Gi", "storageClass": "mayastor-etcd-localpv"},
        },
        "loki-stack": {"enabled": False},
        "obs": {"callhome": {"enabled": False}},
        "storageClass": {"enabled": False},
    }


def umbrella_values(spec: LabSpec) -> dict[str, Any]:
    """The same values for the umbrella ``openebs`` chart (Mayastor as its ``mayastor`` subchart)."""
    return {
        "engines": {"replicated": {"mayastor": {"enabled": True}},
                    "local": {"lvm": {"enabled": False}, "zfs": {"enabled": False}}},
        "mayastor": helm_values(spec),
    }


def chart_ref(spec: LabSpec) -> tuple[str, str]:
    """``(chart, version)`` falkit installs: the ``mayastor`` chart at the spec's Mayastor version."""
    return CHART, spec.versions.mayastor


def namespace_object(spec: LabSpec) -> dict[str, Any]:
    """The install namespace with the PodSecurity exemption Talos needs (its default profile is
    ``baseline``; io-engine and the CSI node plugin are privileged — docs/FACTS.md, Mayastor/Talos)."""
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": spec.mayastor.namespace, "labels": {PSA_LABEL[0]: PSA_LABEL[1]}}}


def pool_name(worker: str) -> str:
    return f"pool-{worker}"


def diskpool(spec: LabSpec, worker: str, device: str) -> dict[str, Any]:
    """A DiskPool on ``worker``'s data disk in the apiVersion the spec's Mayastor serves
    (``openebs.io/v1beta2`` for 2.5-2.8, ``v1beta3`` from 2.9; docs/FACTS.md). One disk per pool."""
    return {
        "apiVersion": diskpool_api_version(spec.versions.mayastor),
        "kind": "DiskPool",
        "metadata": {"name": pool_name(worker), "namespace": spec.mayastor.namespace,
                     "labels": {"app.kubernetes.io/managed-by": "falkit"}},
        "spec": {"node": worker, "disks": [device]},
    }


def storage_class(spec: LabSpec) -> dict[str, Any]:
    """StorageClass ``spec.mayastor.storage_class``; every parameter a string (docs/FACTS.md)."""
    m = spec.mayastor
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": m.storage_class, "labels": {"app.kubernetes.io/managed-by": "falkit"}},
        "provisioner": PROVISIONER,
        "allowVolumeExpansion": True,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
        "parameters": {"repl": str(m.replicas), "protocol": m.protocol, "thin": "true" if m.thin else "false",
                       "fsType": m.fs_type},
    }


def probe_pvc(spec: LabSpec, name: str = "falkit-mayastor-test", namespace: str = "default",
             size: str = "1Gi") -> dict[str, Any]:
    """The seed's validation PVC (``test-pvc``, 1Gi RWO on ``mayastor-3``), named for falkit."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": "falkit"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}},
                 "storageClassName": spec.mayastor.storage_class},
    }


def storage_class_drift(desired: dict[str, Any], observed: dict[str, Any] | None) -> list[tuple[str, Any, Any]]:
    """Fields of a StorageClass that differ: ``[(field, old, new)]``. StorageClass parameters and
    provisioner are immutable in Kubernetes, so any drift means delete + create."""
    if observed is None:
        return []
    out = []
    if observed.get("provisioner") != desired["provisioner"]:
        out.append(("provisioner", observed.get("provisioner"), desired["provisioner"]))
    old = {k: str(v) for k, v in (observed.get("parameters") or {}).items()}
    for k, v in desired["parameters"].items():
        if old.get(k) != v:
            out.append((f"parameters.{k}", old.get(k), v))
    return out
