"""What fio prints in the twin: the job file the pod runs, played against the lab's physical devices.

The twin's own performance model, written separately from falkit's (``falkit.bench.model``, which
the twin must not import: .importlinter). It differs from falkit's in what it starts from: it
reads what the pod would run and what the lab actually holds, not what falkit says it asked for:

* **the jobs** come from the fio job file in the container's ``FALKIT_FIO_JOBFILE`` env var (the
  file the container hands fio; INI: ``[global]`` then one section per job, keys ``rw``, ``bs``,
  ``iodepth``, ``numjobs``, ``runtime``, ``ramp_time``, ``size``: fio HOWTO, "Job file format"
  and "Job parameters", https://fio.readthedocs.io/en/latest/fio_doc.html);
* **the storage** is the CSI driver of the PV the claim is bound to (``io.openebs.csi-mayastor``,
  ``driver.longhorn.io``, anything else = a local filesystem), not the Job's label;
* **the replicas** are the pools the twin's Mayastor placed the volume on (``VolumeData.replicas``);
* **the io-engine cores** are the ones the installed chart's values give the io-engine
  (:func:`falkit.twin.lab.mayastor.core_list`: ``io_engine.coreList``, else ``cpuCount``);
* **the device** is the physical device behind the Proxmox storage the data disks are on
  (``spec.host.storages[].device``: sequential MB/s, 4k random IOPS at QD32, 4k QD1 latency — the
  operator's datasheet or measured figures).

Rules (each with where it comes from):

* Mayastor's nexus writes every IO to all replicas and reads from one (OpenEBS docs, Replicated PV
  Mayastor concepts: the nexus sends writes to every child replica and serves a read from one
  healthy child). When the replicas' pools sit on one physical disk (the three data disks of The Fal's
  workers all on ``helford``), that disk carries ``n`` writes per IO: write MB/s and write IOPS
  are the device's ``/ n``; reads are the device's.
* The io-engine is an SPDK application that busy-polls one reactor per core it is given (SPDK's
  event framework, spdk/doc/event.md), so its IOPS are capped per core. PER_CORE_IOPS is **assumed** (SPDK's NVMe-oF TCP performance reports give a few hundred
  thousand 4k IOPS per target core on server CPUs; not read from a report here); a write costs the
  nexus one child IO per replica.
* Longhorn v1 puts an iSCSI target and a replica process per replica in the path; Longhorn's own
  report ("Performance and scalability report", longhorn.io blog, Aug 2020) puts v1 at roughly a
  fifth to a third of the native disk's IOPS. LONGHORN_IOPS_SHARE = 0.25 and the per-IO overheads
  below are **assumed** from that, not measured.
* Queueing: with ``qd = iodepth * numjobs`` IOs in flight and a QD1 service time ``t``, fio sees
  at most ``qd / t`` IOPS (Little's law); bandwidth = IOPS x block size; the completion latency is
  ``qd / IOPS``.

The output is fio's ``--output-format=json`` shape (fio HOWTO, "Interpreting the output" / JSON:
``jobs[].jobname``, ``job options``, ``read``/``write`` with ``bw_bytes``, ``iops``, ``clat_ns``
with ``percentile``), with ``"fio version": "falkit-twin"`` and ``"falkit_modelled": true`` so
no one takes it for a measurement.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

MB = 1_000_000
PER_CORE_IOPS = 200_000.0  # assumed (see the module docstring)
LONGHORN_IOPS_SHARE = 0.25  # assumed from Longhorn's 2020 report (see the module docstring)
# Per-IO software overhead on top of the device, ms (assumed): NVMe-oF/TCP hop + nexus; iSCSI +
# replica process; a local filesystem.
OVERHEAD_MS = {"mayastor": 0.12, "longhorn": 0.5, "local": 0.02}
TAIL = {"mayastor": 1.4, "longhorn": 2.2, "local": 1.2}  # p99 / mean (assumed)


@dataclass(frozen=True)
class Job:
    name: str
    rw: str
    bs: int
    iodepth: int
    numjobs: int
    runtime_s: int
    ramp_s: int
    options: dict


def _size(text: str) -> int:
    t = text.strip().lower()
    for suffix, f in (("k", 1024), ("m", 1024 ** 2), ("g", 1024 ** 3)):
        if t.endswith(suffix):
            return int(float(t[:-1]) * f)
    return int(t)


def parse_jobfile(text: str) -> tuple[dict, list[Job]]:
    """fio's job file: ``[global]`` options, then one job per section inheriting them."""
    sections: list[tuple[str, dict]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in ";#":
            continue
        if line.startswith("[") and line.endswith("]"):
            sections.append((line[1:-1], {}))
            continue
        if not sections:
            raise ValueError(f"fio: option outside a section: {line!r}")
        key, _, value = line.partition("=")
        sections[-1][1][key.strip()] = value.strip()  # a bare key (``stonewall``) has the value ''
    glob = next((opts for name, opts in sections if name == "global"), {})
    jobs = []
    for name, opts in sections:
        if name == "global":
            continue
        o = {**glob, **opts}
        jobs.append(Job(name, o.get("rw", o.get("readwrite", "read")), _size(o.get("bs", "4k")),
                        int(o.get("iodepth", "1")), int(o.get("numjobs", "1")), int(o.get("runtime", "0") or 0),
                        int(o.get("ramp_time", "0") or 0), opts))
    return glob, jobs


@dataclass(frozen=True)
class Storage:
    """What a volume sits on: engine, device figures, replicas, whether they share one disk, cores."""

    engine: str  # mayastor | longhorn | local
    seq_read_mb_s: float
    seq_write_mb_s: float
    rand_read_iops: float
    rand_write_iops: float
    latency_ms: float
    replicas: int = 1
    shared_disk: bool = True
    cores: int = 1


def _rates(st: Storage, job: Job) -> tuple[float, float, float]:
    """(bandwidth ceiling B/s, IOPS ceiling, QD1 service time s) for one job on ``st``."""
    write = "write" in job.rw
    n = max(1, st.replicas)
    share = n if (write and st.shared_disk and st.engine != "local") else 1
    bw = (st.seq_write_mb_s if write else st.seq_read_mb_s) * MB / share
    iops = (st.rand_write_iops if write else st.rand_read_iops) / share
    if st.engine == "mayastor":
        iops = min(iops, st.cores * PER_CORE_IOPS / (n if write else 1))
    elif st.engine == "longhorn":
        iops *= LONGHORN_IOPS_SHARE
    t = (st.latency_ms + OVERHEAD_MS[st.engine]) / 1000.0 + job.bs / bw
    return bw, iops, t


def _side(iops: float, bs: int, runtime_ms: int, engine: str, qd: int) -> dict:
    total = int(iops * runtime_ms / 1000)
    mean_ns = qd / iops * 1e9 if iops else 0.0
    p99 = mean_ns * TAIL[engine]
    pct = {"1.000000": int(mean_ns * 0.5), "50.000000": int(mean_ns * 0.95), "90.000000": int(mean_ns * 1.2),
           "99.000000": int(p99), "99.900000": int(p99 * 1.5)}
    clat = {"min": int(mean_ns * 0.4), "max": int(p99 * 3), "mean": mean_ns, "stddev": mean_ns * 0.2, "N": total,
            "percentile": pct}
    bw = int(iops * bs)
    return {"io_bytes": bw * runtime_ms // 1000, "io_kbytes": bw * runtime_ms // 1000 // 1024, "bw_bytes": bw,
            "bw": bw // 1024, "iops": iops, "runtime": runtime_ms, "total_ios": total, "short_ios": 0, "drop_ios": 0,
            "slat_ns": {"min": 0, "max": 0, "mean": 0.0, "stddev": 0.0, "N": total}, "clat_ns": clat,
            "lat_ns": {k: v for k, v in clat.items() if k != "percentile"}}


def _shown(options: dict) -> dict:
    """The options fio's JSON reports: those with a value (bare flags such as ``stonewall`` are left
    out, as in real fio 3.33 output, tests/bench/data/fio-3.33-quick-libaio-ext4.json)."""
    return {k: v for k, v in options.items() if v != ""}


_IDLE = {"io_bytes": 0, "io_kbytes": 0, "bw_bytes": 0, "bw": 0, "iops": 0.0, "runtime": 0, "total_ios": 0,
         "short_ios": 0, "drop_ios": 0}


def fio_output(jobfile: str, st: Storage, *, target_label: str | None = None) -> str:
    """fio's JSON for ``jobfile`` run on ``st`` (see the module docstring)."""
    glob, jobs = parse_jobfile(jobfile)
    out = []
    for i, job in enumerate(jobs):
        bw, cap, t = _rates(st, job)
        qd = job.iodepth * job.numjobs
        terms = {"bandwidth": bw / job.bs, "queue": qd / t}
        if job.rw.startswith("rand"):
            terms["iops"] = cap
        why = min(terms, key=terms.__getitem__)
        iops = terms[why]
        runtime_ms = max(1, job.runtime_s) * 1000
        busy = _side(iops, job.bs, runtime_ms, st.engine, qd)
        write = "write" in job.rw
        out.append({"jobname": job.name, "groupid": i, "error": 0, "eta": 0,
                    "elapsed": (job.ramp_s + job.runtime_s) * (i + 1), "job options": _shown(job.options),
                    "read": dict(_IDLE) if write else busy, "write": busy if write else dict(_IDLE),
                    "job_runtime": runtime_ms, "falkit_limited_by": f"twin: {why} ({st.engine})"})
    doc = {"fio version": "falkit-twin", "falkit_modelled": True, "falkit_target": target_label,
           "falkit_note": "Modelled by the twin (falkit.twin.lab.perf) from the lab's device figures; not a measurement.",
           "global options": _shown(glob), "jobs": out}
    return json.dumps(doc, indent=2)
