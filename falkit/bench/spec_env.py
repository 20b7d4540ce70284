"""Bridge from the lab spec to the performance model: which device backs the Mayastor replicas,
how many replicas share it, and which network path replication takes."""

from __future__ import annotations

from typing import Any

from ..spec import LabSpec


def ceilings_for_spec(spec: LabSpec) -> dict[str, Any]:
    """The physical ceilings of one Mayastor volume on this lab (see falkit.bench.model)."""
    st = spec.storage(spec.cluster.vm_defaults.data_storage)
    dev = st.device
    replicas = spec.mayastor.replicas
    # all data disks come from vm_defaults.data_storage: one physical disk per Proxmox node
    nodes = {w.node or spec.host.node for w in spec.cluster.workers}
    same_host = len(nodes) == 1
    # replicas are spread over the nodes; the busiest disk holds ceil(replicas / nodes) of them
    sharing = -(-replicas // len(nodes))
    net_mb_s = None if same_host else spec.host.nic_speed_gbps * 1000 / 8 * 0.944
    write = dev.seq_write_mb_s / sharing
    if net_mb_s:
        write = min(write, net_mb_s)
    read = dev.seq_read_mb_s
    explain = (
        f"{replicas} replicas on one {dev.device_class} ({dev.physical_disk}): write <= {dev.seq_write_mb_s:g}/{sharing}, "
        f"read <= {dev.seq_read_mb_s:g} MB/s; "
        + ("replication stays on the host bridge (never the 2.5 GbE NIC)" if same_host else f"replication over the NIC <= {net_mb_s:.0f} MB/s")
    )
    return {
        "seq_read_mb_s": read,
        "seq_write_mb_s": write,
        "rand_read_iops": dev.rand_read_iops,
        "rand_write_iops": dev.rand_write_iops / sharing,
        "latency_ms": dev.latency_ms + 0.1,
        "explain": explain,
        "replicas_sharing_disk": sharing,
        "same_host": same_host,
    }
