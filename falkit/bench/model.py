"""The twin's performance model: what a fio job would report on Mayastor, Longhorn or local-path
given The Fal's physics. Pure functions over frozen dataclasses; units are in the names
(``*_mb_s`` = 10**6 bytes/s as disk vendors and the seed use, ``*_mib_s`` = 2**20 bytes/s as
fio reports, ``*_ms`` milliseconds).

Everything here is a *model*. Its output is labelled ``modelled`` wherever it goes
(``fio_json_from_model`` writes ``"falkit_modelled": true``; the parser turns that into
``source = "modelled"``). It is never a measurement of The Fal.

Physics of The Fal (docs/FACTS.md, "The physics of The Fal")
-------------------------------------------------------
* One host, one Linux bridge: replication between the worker VMs goes over virtio on the host
  bridge and never touches the 2.5 GbE NIC (~295 MB/s TCP payload, relevant only off-host).
* The three 300 GB Mayastor disks are all on the one 1 TB ``helford`` disk: every write lands on
  it ``replicas`` times, so sequential write <= device write / replicas; reads come from one
  replica and are <= the device's read.

Model, per target and direction (read or write), with n = replicas
-------------------------------------------------------------------
Ceilings (what the hardware can carry, no software inefficiency except the io-engine core cap)::

    disk_write_mb_s   = dev.seq_write_mb_s / n      if replicas share one disk else dev.seq_write_mb_s
    disk_write_iops   = dev.rand_write_iops / n     if replicas share one disk else dev.rand_write_iops
    disk_read_mb_s    = dev.seq_read_mb_s           (a read is served by one replica)
    disk_read_iops    = dev.rand_read_iops
    net_read_mb_s     = path.payload_mb_s                          (one replica's data crosses it)
    net_write_mb_s    = path.payload_mb_s / (n - 1)   for n > 1    (the nexus sends n-1 copies out)
    core_read_iops    = io_engine_cores * iops_per_core
    core_write_iops   = io_engine_cores * iops_per_core / n        (the nexus submits n child IOs)
    read_mb_s  = min(disk_read_mb_s,  net_read_mb_s)
    write_mb_s = min(disk_write_mb_s, net_write_mb_s)
    read_iops  = min(disk_read_iops,  core_read_iops)
    write_iops = min(disk_write_iops, core_write_iops)

``path`` is the host bridge (virtio, default 3000 MB/s payload, 0.05 ms round trip) when
``env.off_host`` is false -- The Fal -- and the 2.5 GbE NIC (295 MB/s, 0.10 ms) when it is true.

Latency of one IO at queue depth 1::

    lat1_ms = dev.latency_ms + engine_overhead_ms + net_ms + bs / bw_ceiling
    net_ms  = path.rtt_ms                   for writes (every replica must acknowledge), n > 1
            = path.rtt_ms * (n - 1) / n     for reads (round-robin over replicas, one local)

A fio job with block size ``bs`` and ``qd = iodepth * numjobs`` outstanding IOs (Little's law)::

    iops     = min(iops_ceiling (random jobs only), bw_ceiling / bs, qd / lat1)
    bw_mib_s = iops * bs / 2**20
    clat_ms  = qd / iops               (>= lat1; the queue waits when a ceiling binds)
    p50_ms   = clat_ms;  p99_ms = clat_ms * p99_factor

Targets
~~~~~~~
* ``mayastor``: the ceilings above; ``engine_overhead_ms = 0.15`` (NVMe-oF/TCP + SPDK nexus adds
  ~0.1-0.2 ms per IO at QD1); ``p99_factor = 1.5``. The io-engine busy-polls its cores;
  ``iops_per_core = 250_000`` is a typical SPDK NVMe-oF/TCP target figure (200-300k/core); on The
  Fal the 2-vCPU workers can give it one core (docs/FACTS.md: the chart default of 2 pinned cores does not
  exist on a 2-vCPU VM), so ``io_engine_cores = 1``.
* ``longhorn`` (v1 engine, iSCSI frontend + replica processes on a filesystem): the same disk and
  network ceilings, plus
  - ``longhorn_write_cap_mib_s = 290``: the Longhorn sizing guide's ~290 MiB/s sequential write
    (docs/FACTS.md);
  - ``longhorn_iops_fraction = 0.25``: Longhorn's v1.0 performance report gives "20% to 30% IOPS
    of the native disk" with 3 replicas (longhorn.io/blog/performance-scalability-report-aug-2020);
  - ``longhorn_overhead_ms = 0.6``: chosen so a QD1 read on an SSD (0.1 ms) over a LAN lands at the
    sizing guide's ~0.75 ms read latency (docs/FACTS.md); ``p99_factor = 2.0``.
* ``local-path``: a filesystem on the node's own virtual disk, no replication, no network:
  ``device`` ceilings, ``local_overhead_ms = 0.02`` (virtio-scsi + filesystem), ``p99_factor 1.3``.
  On The Fal local-path would sit on ``local-lvm``, not ``helford``; ``env.local_device`` lets you
  say so (default: the same SATA SSD assumptions).

Default device: ``helford``, a 1 TB SATA SSD. **Assumed**, not measured: the seed gives only its
size. SATA III carries 600 MB/s raw, ~550 MB/s payload, so a good SATA SSD's datasheet reads
~550 MB/s sequential read, ~500 MB/s sequential write, ~90k/80k 4k random IOPS at QD32, ~0.1 ms
4k QD1 latency. Sustained writes beyond the SLC cache are often far lower (consumer TLC/QLC: 100-
400 MB/s), which only lowers every write figure below.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd  # annotations; imported where used (issue 17: ~30 MiB in every kernel and the CLI)

from falkit.bench.fio import MIB, FioJob, Profile, profile_settings, resolve_jobs

__all__ = [
    "HELFORD_SATA_SSD",
    "HOST_BRIDGE",
    "NIC_2_5GBE",
    "SEED_CLAIMS",
    "TARGETS",
    "Device",
    "ModelEnv",
    "NetworkPath",
    "Result",
    "ceilings",
    "compare_with_claims",
    "fio_json_from_model",
    "predict",
    "predict_all",
    "the_fal",
]

MB = 1_000_000
MIB_PER_MB = MB / MIB  # 1 MB/s = 0.9537 MiB/s
TARGETS = ("mayastor", "longhorn", "local-path")


@dataclass(frozen=True)
class Device:
    """A backing block device. Random IOPS are 4k at QD32 (datasheet convention); ``latency_ms``
    is the 4k QD1 service time."""

    name: str = "helford"
    seq_read_mb_s: float = 550.0
    seq_write_mb_s: float = 500.0
    rand_read_iops: float = 90_000.0
    rand_write_iops: float = 80_000.0
    latency_ms: float = 0.1


HELFORD_SATA_SSD = Device()


@dataclass(frozen=True)
class NetworkPath:
    """The path replica traffic takes: TCP payload bandwidth and round-trip time."""

    name: str
    payload_mb_s: float
    rtt_ms: float


# virtio-net between VMs on one bridge: memory copies on the host, several GB/s per stream.
# 3000 MB/s is an assumption for 2-vCPU guests; it never binds against a SATA disk.
HOST_BRIDGE = NetworkPath("host bridge (virtio)", payload_mb_s=3000.0, rtt_ms=0.05)
# docs/FACTS.md: the 2.5 GbE NIC caps at ~295 MB/s TCP payload.
NIC_2_5GBE = NetworkPath("2.5 GbE", payload_mb_s=295.0, rtt_ms=0.10)


@dataclass(frozen=True)
class ModelEnv:
    """Everything the model needs about the lab. Defaults describe The Fal."""

    device: Device = HELFORD_SATA_SSD
    replicas: int = 3
    replicas_share_disk: bool = True
    off_host: bool = False
    host_bridge: NetworkPath = HOST_BRIDGE
    nic: NetworkPath = NIC_2_5GBE
    io_engine_cores: int = 1
    iops_per_core: float = 250_000.0
    mayastor_overhead_ms: float = 0.15
    longhorn_overhead_ms: float = 0.6
    longhorn_write_cap_mib_s: float = 290.0
    longhorn_iops_fraction: float = 0.25
    local_overhead_ms: float = 0.02
    local_device: Device | None = None
    p99_factor: Mapping[str, float] = field(
        default_factory=lambda: {"mayastor": 1.5, "longhorn": 2.0, "local-path": 1.3}
    )

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {self.replicas}")
        if self.io_engine_cores < 1:
            raise ValueError(f"io_engine_cores must be >= 1, got {self.io_engine_cores}")

    @property
    def path(self) -> NetworkPath:
        """The network replica traffic crosses: the NIC only when replicas are off-host."""
        return self.nic if self.off_host else self.host_bridge


def the_fal(**overrides) -> ModelEnv:
    """The Fal as the seed builds it: 3 replicas on one SATA disk, all VMs on one host bridge."""
    return replace(ModelEnv(), **overrides)


@dataclass(frozen=True)
class _Caps:
    """Per-target ceilings and QD1 base latency, each with the term that set it."""

    read_mb_s: tuple[float, str]
    write_mb_s: tuple[float, str]
    read_iops: tuple[float, str]
    write_iops: tuple[float, str]
    read_lat_ms: float
    write_lat_ms: float


def _argmin(*terms: tuple[float, str]) -> tuple[float, str]:
    return min(terms, key=lambda t: t[0])


def _replicated_caps(env: ModelEnv) -> _Caps:
    """Disk, network and io-engine ceilings of an n-replica volume (formulas in the module doc)."""
    dev, n, path = env.device, env.replicas, env.path
    share = env.replicas_share_disk and n > 1
    disk_w = (dev.seq_write_mb_s / n, f"{dev.name} write {dev.seq_write_mb_s:g} MB/s / {n} replicas on one disk") \
        if share else (dev.seq_write_mb_s, f"{dev.name} sequential write")
    disk_wi = (dev.rand_write_iops / n, f"{dev.name} {dev.rand_write_iops:g} write IOPS / {n} replicas on one disk") \
        if share else (dev.rand_write_iops, f"{dev.name} random write IOPS")
    disk_r = (dev.seq_read_mb_s, f"{dev.name} sequential read (one replica serves a read)")
    disk_ri = (dev.rand_read_iops, f"{dev.name} random read IOPS")
    net_r = (path.payload_mb_s, f"{path.name} {path.payload_mb_s:g} MB/s")
    net_w = (path.payload_mb_s / (n - 1), f"{path.name} {path.payload_mb_s:g} MB/s / {n - 1} outgoing copies") \
        if n > 1 else (math.inf, "no replication traffic")
    core_r = (env.io_engine_cores * env.iops_per_core, f"{env.io_engine_cores} io-engine core(s)")
    core_w = (env.io_engine_cores * env.iops_per_core / n, f"{env.io_engine_cores} io-engine core(s) / {n} child IOs")
    rtt = path.rtt_ms if n > 1 else 0.0
    return _Caps(
        read_mb_s=_argmin(disk_r, net_r),
        write_mb_s=_argmin(disk_w, net_w),
        read_iops=_argmin(disk_ri, core_r),
        write_iops=_argmin(disk_wi, core_w),
        read_lat_ms=dev.latency_ms + rtt * (n - 1) / n,
        write_lat_ms=dev.latency_ms + rtt,
    )


def _target_caps(target: str, env: ModelEnv) -> _Caps:
    if target == "mayastor":
        c = _replicated_caps(env)
        o = env.mayastor_overhead_ms
        return replace(c, read_lat_ms=c.read_lat_ms + o, write_lat_ms=c.write_lat_ms + o)
    if target == "longhorn":
        c = _replicated_caps(env)
        f = env.longhorn_iops_fraction
        lh_w = (env.longhorn_write_cap_mib_s / MIB_PER_MB, f"Longhorn engine ~{env.longhorn_write_cap_mib_s:g} MiB/s write")
        o = env.longhorn_overhead_ms
        return _Caps(
            read_mb_s=c.read_mb_s,
            write_mb_s=_argmin(c.write_mb_s, lh_w),
            read_iops=(c.read_iops[0] * f, f"Longhorn ~{f:.0%} of {c.read_iops[1]}"),
            write_iops=(c.write_iops[0] * f, f"Longhorn ~{f:.0%} of {c.write_iops[1]}"),
            read_lat_ms=c.read_lat_ms + o,
            write_lat_ms=c.write_lat_ms + o,
        )
    if target == "local-path":
        dev = env.local_device or env.device
        o = env.local_overhead_ms
        return _Caps(
            read_mb_s=(dev.seq_read_mb_s, f"{dev.name} sequential read"),
            write_mb_s=(dev.seq_write_mb_s, f"{dev.name} sequential write"),
            read_iops=(dev.rand_read_iops, f"{dev.name} random read IOPS"),
            write_iops=(dev.rand_write_iops, f"{dev.name} random write IOPS"),
            read_lat_ms=dev.latency_ms + o,
            write_lat_ms=dev.latency_ms + o,
        )
    raise ValueError(f"unknown target {target!r}; expected one of {TARGETS}")


@dataclass(frozen=True)
class Result:
    """A modelled fio job result. ``limited_by`` names the binding term of the formula."""

    target: str
    job: str
    direction: str
    bs_bytes: int
    queue_depth: int
    iops: float
    bandwidth_mib_s: float
    clat_mean_ms: float
    clat_p50_ms: float
    clat_p99_ms: float
    qd1_latency_ms: float
    limited_by: str


def predict(target: str, job: FioJob | str, env: ModelEnv | None = None) -> Result:
    """Model one fio job on ``target`` (mayastor | longhorn | local-path)::

        lat1  = base_lat_ms(target, direction) + bs / bw_ceiling
        iops  = min(iops_ceiling if random, bw_ceiling / bs, qd / lat1)
        bw    = iops * bs;  clat = qd / iops;  p99 = clat * p99_factor[target]
    """
    env = env or ModelEnv()
    (job,) = resolve_jobs([job])
    caps = _target_caps(target, env)
    write = job.direction == "write"
    bw_mb_s, bw_why = caps.write_mb_s if write else caps.read_mb_s
    iops_cap, iops_why = caps.write_iops if write else caps.read_iops
    base_ms = caps.write_lat_ms if write else caps.read_lat_ms
    bs = job.bs_bytes
    lat1_ms = base_ms + bs / (bw_mb_s * MB) * 1000.0
    qd = job.iodepth * job.numjobs
    terms = [(bw_mb_s * MB / bs, bw_why), (qd / (lat1_ms / 1000.0), f"queue depth {qd} / {lat1_ms:.3f} ms per IO")]
    if not job.sequential:
        terms.append((iops_cap, iops_why))
    iops, why = _argmin(*terms)
    clat_ms = qd / iops * 1000.0
    p99 = env.p99_factor.get(target, 1.5)
    return Result(
        target=target, job=job.name, direction=job.direction, bs_bytes=bs, queue_depth=qd,
        iops=iops, bandwidth_mib_s=iops * bs / MIB, clat_mean_ms=clat_ms, clat_p50_ms=clat_ms,
        clat_p99_ms=clat_ms * p99, qd1_latency_ms=lat1_ms, limited_by=why,
    )  # fmt: skip


def predict_all(targets: Iterable[str] = TARGETS, jobs=None, env: ModelEnv | None = None) -> pd.DataFrame:
    """``predict`` over targets x jobs as a table (one row per pair)."""
    import pandas as pd  # noqa: PLC0415 - pandas (heavy, issue 17) only when predictions are tabulated

    rows = [predict(t, j, env).__dict__ for t in targets for j in resolve_jobs(jobs)]
    return pd.DataFrame(rows)


def ceilings(env: ModelEnv | None = None) -> dict:
    """The physical highest a Mayastor volume can reach in ``env`` (no engine inefficiency, only
    the disk, network and io-engine core limits), plus the lowest QD1 latency physics allows
    (device + network, no engine overhead). Keys: ``seq_read_mb_s``, ``seq_write_mb_s``,
    ``rand_read_iops``, ``rand_write_iops``, ``latency_ms`` (QD1 read floor), ``write_latency_ms``
    (QD1 write floor), and ``basis``: metric -> the term that sets it."""
    env = env or ModelEnv()
    c = _replicated_caps(env)
    return {
        "seq_read_mb_s": c.read_mb_s[0],
        "seq_write_mb_s": c.write_mb_s[0],
        "rand_read_iops": c.read_iops[0],
        "rand_write_iops": c.write_iops[0],
        "latency_ms": c.read_lat_ms,
        "write_latency_ms": c.write_lat_ms,
        "basis": {
            "seq_read_mb_s": c.read_mb_s[1],
            "seq_write_mb_s": c.write_mb_s[1],
            "rand_read_iops": c.read_iops[1],
            "rand_write_iops": c.write_iops[1],
            "latency_ms": f"{env.device.name} {env.device.latency_ms:g} ms + {env.path.name} round trip",
            "write_latency_ms": f"{env.device.name} {env.device.latency_ms:g} ms + {env.path.name} round trip",
        },
    }


# ---------------------------------------------------------------------------------------------
# Seed claims and the comparison

#: The seed's "Performance Expectations" table (homelab-migration.md). "Random IOPS" is not split
#: into read and write there; it is compared with both. "Latency" is compared with 4k QD1 read.
SEED_CLAIMS: dict[str, dict[str, float]] = {
    "longhorn": {"seq_read_mb_s": 200, "seq_write_mb_s": 150, "rand_read_iops": 2_000,
                 "rand_write_iops": 2_000, "latency_ms": 5.0},
    "mayastor": {"seq_read_mb_s": 800, "seq_write_mb_s": 600, "rand_read_iops": 20_000,
                 "rand_write_iops": 20_000, "latency_ms": 0.5},
}  # fmt: skip

# metric -> (fio job, column, factor to the metric's unit, lower is better)
_METRIC_SOURCE = {
    "seq_read_mb_s": ("seq_read", "read_mib_s", 1 / MIB_PER_MB, False),
    "seq_write_mb_s": ("seq_write", "write_mib_s", 1 / MIB_PER_MB, False),
    "rand_read_iops": ("rand_read_iops", "read_iops", 1.0, False),
    "rand_write_iops": ("rand_write_iops", "write_iops", 1.0, False),
    "latency_ms": ("lat_read", "clat_mean_ms", 1.0, True),
    "write_latency_ms": ("lat_write", "clat_mean_ms", 1.0, True),
}
_UNITS = {"seq_read_mb_s": "MB/s", "seq_write_mb_s": "MB/s", "rand_read_iops": "IOPS",
          "rand_write_iops": "IOPS", "latency_ms": "ms", "write_latency_ms": "ms"}  # fmt: skip


def _fmt(v: float, unit: str) -> str:
    if unit == "ms":
        return f"{v:.2f} ms"
    if unit == "IOPS":
        return f"{v / 1000:.1f}k IOPS" if v >= 1000 else f"{v:.0f} IOPS"
    return f"{v:.0f} {unit}"


def compare_with_claims(claims: Mapping[str, float], ceilings: Mapping, results: pd.DataFrame | None) -> pd.DataFrame:
    """One row per claimed metric: ``metric, unit, claim, ceiling, result, source, possible,
    verdict``.

    ``claims``: metric -> value (e.g. ``SEED_CLAIMS["mayastor"]``); ``ceilings``: from
    ``ceilings(env)``; ``results``: ``parse_fio_json`` rows (measured or modelled) or ``None``.
    A bandwidth/IOPS claim above the ceiling, or a latency claim below the floor, is *impossible*
    on this hardware whatever the software. Results are converted from fio's MiB/s to MB/s.
    """
    import pandas as pd  # noqa: PLC0415 - pandas (heavy, issue 17) only when predictions are tabulated

    basis = ceilings.get("basis", {}) if isinstance(ceilings, Mapping) else {}
    rows = []
    for metric, claim in claims.items():
        if metric not in _METRIC_SOURCE:
            raise ValueError(f"unknown metric {metric!r}; known: {', '.join(_METRIC_SOURCE)}")
        job, col, factor, lower_better = _METRIC_SOURCE[metric]
        unit = _UNITS[metric]
        ceiling = ceilings.get(metric)
        result = source = None
        if results is not None and len(results):
            hit = results[results["job"] == job]
            if len(hit):
                result = float(hit.iloc[-1][col]) * factor
                source = str(hit.iloc[-1].get("source", "measured"))
        if ceiling is None:
            possible = True
            verdict = "no physical ceiling known for this metric"
        elif (claim < ceiling) if lower_better else (claim > ceiling):
            possible = False
            word = "below the physical floor" if lower_better else "exceeds the physical ceiling"
            why = f" ({basis[metric]})" if metric in basis else ""
            verdict = f"impossible on this hardware: claim {_fmt(claim, unit)} {word} of {_fmt(ceiling, unit)}{why}"
        else:
            possible = True
            where = "at or above the physical floor" if lower_better else "within the physical ceiling"
            verdict = f"physically possible: {where} of {_fmt(ceiling, unit)}"
        if result is not None:
            met = result <= claim * 1.1 if lower_better else result >= claim * 0.9
            label = "modelled (twin)" if source == "modelled" else source
            verdict += f"; {label} {_fmt(result, unit)} {'meets' if met else 'does not meet'} the claim"
        elif possible:
            verdict += "; no result yet"
        rows.append({"metric": metric, "unit": unit, "claim": float(claim),
                     "ceiling": None if ceiling is None else float(ceiling),
                     "result": result, "source": source, "possible": possible, "verdict": verdict})  # fmt: skip
    return pd.DataFrame(rows, columns=["metric", "unit", "claim", "ceiling", "result", "source", "possible", "verdict"])


# ---------------------------------------------------------------------------------------------
# Modelled fio JSON


def _side_json(res: Result | None, runtime_ms: int) -> dict:
    if res is None:
        zero = {"min": 0, "max": 0, "mean": 0.0, "stddev": 0.0, "N": 0}
        return {"io_bytes": 0, "io_kbytes": 0, "bw_bytes": 0, "bw": 0, "iops": 0.0, "runtime": 0,
                "total_ios": 0, "short_ios": 0, "drop_ios": 0, "slat_ns": dict(zero),
                "clat_ns": dict(zero), "lat_ns": dict(zero)}  # fmt: skip
    total_ios = int(res.iops * runtime_ms / 1000.0)
    bw_bytes = int(res.bandwidth_mib_s * MIB)
    mean_ns = res.clat_mean_ms * 1e6
    p50, p99 = res.clat_p50_ms * 1e6, res.clat_p99_ms * 1e6
    pct = {"1.000000": int(mean_ns * 0.7), "50.000000": int(p50), "90.000000": int((p50 + p99) / 2),
           "99.000000": int(p99), "99.900000": int(p99 * 1.3)}  # fmt: skip
    clat = {"min": int(mean_ns * 0.6), "max": int(p99 * 2), "mean": mean_ns, "stddev": (p99 - p50) / 2.33,
            "N": total_ios, "percentile": pct}  # fmt: skip
    return {"io_bytes": bw_bytes * runtime_ms // 1000, "io_kbytes": bw_bytes * runtime_ms // 1000 // 1024,
            "bw_bytes": bw_bytes, "bw": bw_bytes // 1024, "iops": res.iops, "runtime": runtime_ms,
            "total_ios": total_ios, "short_ios": 0, "drop_ios": 0,
            "slat_ns": {"min": 0, "max": 0, "mean": 0.0, "stddev": 0.0, "N": total_ios},
            "clat_ns": clat, "lat_ns": {k: v for k, v in clat.items() if k != "percentile"}}  # fmt: skip


def fio_json_from_model(
    target: str,
    jobs=None,
    env: ModelEnv | None = None,
    profile: str | Profile = "full",
    filename: str = "/data/falkit-fio.dat",
) -> str:
    """fio ``--output-format=json``-shaped text for ``jobs`` on ``target``, as the twin's
    controller writes it as the fio pod's log. Carries ``"falkit_modelled": true`` and
    ``"falkit_target"`` at the top level and ``"falkit_limited_by"`` per job, so the parser labels
    every row ``source = "modelled"``; ``"fio version"`` is ``falkit-model``, never a real fio."""
    env = env or ModelEnv()
    prof = profile_settings(profile)
    runtime_ms = prof.runtime_s * 1000
    out_jobs = []
    for i, job in enumerate(resolve_jobs(jobs)):
        res = predict(target, job, env)
        write = job.direction == "write"
        out_jobs.append({
            "jobname": job.name, "groupid": i, "error": 0, "eta": 0,
            "elapsed": (prof.ramp_time_s + prof.runtime_s) * (i + 1),
            "job options": {"rw": job.rw, "bs": f"{job.bs_bytes // 1024}k" if job.bs_bytes % 1024 == 0
                            else str(job.bs_bytes), "iodepth": str(job.iodepth), "numjobs": str(job.numjobs)},
            "read": _side_json(None if write else res, runtime_ms),
            "write": _side_json(res if write else None, runtime_ms),
            "job_runtime": runtime_ms,
            "falkit_limited_by": res.limited_by,
        })  # fmt: skip
    doc = {
        "fio version": "falkit-model",
        "falkit_modelled": True,
        "falkit_target": target,
        "falkit_note": "Modelled by falkit.bench.model from The Fal's physics; not a measurement.",
        "global options": {"ioengine": "libaio", "direct": "1", "filename": filename,
                           "size": f"{prof.size_mib}m", "time_based": "1", "ramp_time": str(prof.ramp_time_s),
                           "runtime": str(prof.runtime_s), "group_reporting": "1"},
        "jobs": out_jobs,
    }  # fmt: skip
    return json.dumps(doc, indent=2)
