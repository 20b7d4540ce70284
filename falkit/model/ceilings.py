"""Bridge from the lab spec to the performance model (:mod:`falkit.bench.model`): which device
backs the Mayastor replicas, whether they share it, which network path replication takes, and how
many io-engine cores there are. ``ceilings_for_spec`` is what the preflight findings compare the
seed's claims with, and what the twin's fio Jobs are modelled from."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..bench.model import Device, ModelEnv, NetworkPath, ceilings
from .design import design_of
from .spec import LabSpec

TCP_PAYLOAD_FRACTION = 0.944  # docs/FACTS.md: a 2.5 GbE NIC carries ~295 MB/s of TCP payload


def model_env(spec: LabSpec) -> ModelEnv:
    """The model's view of this lab. Replicas 'share a disk' when there are fewer physical data
    disks (one per Proxmox node, as every data disk comes from ``vm_defaults.data_storage``) than
    replicas; they are 'off host' when the workers span more than one Proxmox node."""
    st = spec.storage(spec.cluster.vm_defaults.data_storage)
    dev = st.device
    nodes = {w.node or spec.host.node for w in spec.cluster.workers}
    nic_mb_s = spec.host.nic_speed_gbps * 1000 / 8 * TCP_PAYLOAD_FRACTION
    return ModelEnv(
        device=Device(dev.physical_disk, dev.seq_read_mb_s, dev.seq_write_mb_s, dev.rand_read_iops, dev.rand_write_iops, dev.latency_ms),
        replicas=spec.mayastor.replicas,
        replicas_share_disk=len(nodes) < spec.mayastor.replicas,
        off_host=len(nodes) > 1,
        nic=NetworkPath(f"{spec.host.nic_speed_gbps:g} GbE", payload_mb_s=nic_mb_s, rtt_ms=0.10),
        io_engine_cores=len(design_of(spec).io_engine_cores),
    )


def longhorn_replicas(spec: LabSpec) -> int:
    """Replicas a Longhorn volume of the before-state can have: Longhorn keeps each replica on a
    different node, so at most one per worker the old cluster had (``previous.nodes`` that are
    workers; The Fal: 1), and at most 3 (Longhorn's default)."""
    if spec.previous is None:
        return 3
    workers = {w.vmid for w in spec.cluster.workers}
    return max(1, min(3, sum(1 for n in spec.previous.nodes if n.vmid in workers)))


def ceilings_for_spec(spec: LabSpec, replicas: int | None = None) -> dict[str, Any]:
    """The physical ceilings of one Mayastor volume on this lab (``replicas``: of a volume with
    that many replicas instead, e.g. Longhorn's), with a one-line explanation."""
    env = model_env(spec)
    if replicas is not None:
        env = replace(env, replicas=replicas)
    c = ceilings(env)
    b = c["basis"]
    c["explain"] = (
        f"{env.replicas} replicas, {'one shared' if env.replicas_share_disk else 'separate'} {spec.storage(spec.cluster.vm_defaults.data_storage).device.device_class} "
        f"({env.device.name}); write set by {b['seq_write_mb_s']}, read by {b['seq_read_mb_s']}; "
        + ("replication stays on the host bridge (never the physical NIC)" if not env.off_host else f"replication crosses the {env.nic.name} NIC")
    )
    return c
