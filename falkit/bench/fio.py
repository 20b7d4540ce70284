"""fio job definitions, job files, the fio JSON parser and the Kubernetes Job that runs fio on a PVC.

The jobs follow Longhorn's kbench, as storage people run them (docs/FACTS.md, "The physics of The Fal"):
4k at iodepth 64 for IOPS, 128k at iodepth 64 for bandwidth, 4k at iodepth 1 for latency, direct
I/O, ramp 5 s, runtime 20 s, and a file of at least 25x the expected bandwidth per second so the
page cache and the device's DRAM cache cannot hold it. Every job is its own stonewalled group, so
one fio run executes them one after another and reports one entry per job.

Units are in the names: ``*_mib_s`` is MiB/s (2**20 bytes per second), ``*_ms`` milliseconds.
fio reports ``bw_bytes`` in bytes/s, ``bw`` in KiB/s and completion latency ``clat_ns`` in ns.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd  # annotations; imported where used (issue 17: ~30 MiB in every kernel and the CLI)

__all__ = [
    "DEFAULT_FIO_IMAGE",
    "DEFAULT_JOBS",
    "JOBS",
    "PROFILES",
    "FioError",
    "FioJob",
    "Profile",
    "fio_command",
    "jobfile",
    "k8s_job_manifest",
    "parse_fio_json",
    "profile_settings",
    "resolve_jobs",
    "validate_job_manifest",
]

MIB = 1024 * 1024

# Nixery builds an image from Nix packages named in the path: /shell gives sh + coreutils, /fio
# gives fio. Not pulled or verified from this machine (loopback only): the live lab may pin its own.
DEFAULT_FIO_IMAGE = "nixery.dev/shell/fio"

BENCH_TARGETS = ("mayastor", "longhorn", "local-path")


class FioError(RuntimeError):
    """fio is missing, failed, or printed something that is not fio JSON."""


@dataclass(frozen=True)
class FioJob:
    """One fio job as kbench defines it.

    ``rw`` is fio's ``rw=`` (read, write, randread, randwrite); ``bs_bytes`` the block size;
    ``metric`` what the job is meant to measure: ``bandwidth`` (MiB/s), ``iops`` or ``latency`` (ms).
    """

    name: str
    rw: str
    bs_bytes: int
    iodepth: int
    numjobs: int = 1
    metric: str = "bandwidth"

    @property
    def direction(self) -> str:
        """``read`` or ``write``: the side of fio's JSON this job fills."""
        return "write" if "write" in self.rw else "read"

    @property
    def sequential(self) -> bool:
        return not self.rw.startswith("rand")


JOBS: dict[str, FioJob] = {
    j.name: j
    for j in (
        FioJob("seq_read", "read", 128 * 1024, 64, metric="bandwidth"),
        FioJob("seq_write", "write", 128 * 1024, 64, metric="bandwidth"),
        FioJob("rand_read_iops", "randread", 4096, 64, metric="iops"),
        FioJob("rand_write_iops", "randwrite", 4096, 64, metric="iops"),
        FioJob("lat_read", "randread", 4096, 1, metric="latency"),
        FioJob("lat_write", "randwrite", 4096, 1, metric="latency"),
    )
}
DEFAULT_JOBS: tuple[str, ...] = tuple(JOBS)


@dataclass(frozen=True)
class Profile:
    """Run length and file size of a fio run.

    ``full`` is kbench's: ramp 5 s, runtime 20 s, file >= 25x the expected bandwidth per second.
    ``quick`` is for tests and smoke runs: no ramp, 1 s per job, a 64 MiB file. Its numbers are
    dominated by caches and start-up and say nothing about a storage system.
    """

    name: str
    ramp_time_s: int
    runtime_s: int
    size_mib: int


def profile_settings(profile: str | Profile = "full", expected_mib_s: float = 600.0) -> Profile:
    """Resolve a profile name. ``size_mib = ceil(25 * expected_mib_s)`` for ``full``.

    ``expected_mib_s`` is the fastest bandwidth the target might reach; 600 MiB/s covers a SATA
    SSD such as ``helford`` (~550 MB/s read) and gives a 15000 MiB (~14.6 GiB) file.
    """
    if isinstance(profile, Profile):
        return profile
    if profile == "full":
        if expected_mib_s <= 0:
            raise ValueError(f"expected_mib_s must be > 0, got {expected_mib_s}")
        return Profile("full", ramp_time_s=5, runtime_s=20, size_mib=math.ceil(25 * expected_mib_s))
    if profile == "quick":
        return Profile("quick", ramp_time_s=0, runtime_s=1, size_mib=64)
    raise ValueError(f"unknown fio profile {profile!r}: expected 'full' or 'quick'")


PROFILES = ("full", "quick")


def resolve_jobs(jobs: Iterable[str | FioJob] | None) -> list[FioJob]:
    """Job names or FioJob values -> FioJob list (``None`` -> all of DEFAULT_JOBS)."""
    if jobs is None:
        return [JOBS[n] for n in DEFAULT_JOBS]
    out: list[FioJob] = []
    for j in jobs:
        if isinstance(j, FioJob):
            out.append(j)
        elif j in JOBS:
            out.append(JOBS[j])
        else:
            raise ValueError(f"unknown fio job {j!r}; known: {', '.join(JOBS)}")
    if not out:
        raise ValueError("no fio jobs selected")
    return out


def _bs_text(n: int) -> str:
    for unit, size in (("m", MIB), ("k", 1024)):
        if n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def jobfile(
    jobs: Iterable[str | FioJob] | None,
    filename: str,
    profile: str | Profile = "full",
    *,
    ioengine: str = "libaio",
    direct: bool = True,
    expected_mib_s: float = 600.0,
) -> str:
    """INI text of a fio job file: a ``[global]`` section and one stonewalled section per job.

    ``ioengine``/``direct`` exist for the local fallback (psync, buffered) on filesystems that
    refuse O_DIRECT; the storage benchmarks use libaio + direct=1.
    """
    prof = profile_settings(profile, expected_mib_s)
    if not filename or "\n" in filename or ":" in filename:
        # fio splits filename= on ':' (several files); a newline would end the INI line.
        raise ValueError(f"unsuitable fio filename {filename!r}")
    lines = [
        "; falkit fio job file (kbench-style); profile=" + prof.name,
        "[global]",
        f"ioengine={ioengine}",
        f"direct={1 if direct else 0}",
        f"filename={filename}",
        f"size={prof.size_mib}m",
        "time_based=1",
        f"ramp_time={prof.ramp_time_s}",
        f"runtime={prof.runtime_s}",
        "group_reporting=1",
        "randrepeat=0",
        "norandommap=1",
        "invalidate=1",
        "",
    ]
    for job in resolve_jobs(jobs):
        lines += [
            f"[{job.name}]",
            "stonewall",
            f"rw={job.rw}",
            f"bs={_bs_text(job.bs_bytes)}",
            f"iodepth={job.iodepth}",
            f"numjobs={job.numjobs}",
            "",
        ]
    return "\n".join(lines)


def fio_command(jobfile_path: str, *, fio: str = "fio", output_path: str | None = None) -> list[str]:
    """argv that runs a job file and prints (or writes to ``output_path``) fio's JSON."""
    cmd = [fio, "--output-format=json"]
    if output_path is not None:
        cmd.append(f"--output={output_path}")
    cmd.append(jobfile_path)
    return cmd


# ---------------------------------------------------------------------------------------------
# Parser

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_SIZE_MULT = {"": 1, "k": 1024, "m": MIB, "g": 1024 * MIB, "t": 1024 * 1024 * MIB}

COLUMNS = [
    "job", "rw", "bs", "bs_bytes", "iodepth", "numjobs",
    "read_mib_s", "write_mib_s", "read_iops", "write_iops", "iops",
    "clat_mean_ms", "clat_p50_ms", "clat_p99_ms", "runtime_s",
    "ioengine", "direct", "source", "target", "limited_by", "fio_version",
]  # fmt: skip


def _size_bytes(text: str | int | None) -> int | None:
    """fio sizes ('4k', '128K', '1m', '4096') -> bytes; fio's k is 1024 by default (kb_base=1024)."""
    if text is None:
        return None
    if isinstance(text, int):
        return text
    m = _SIZE_RE.match(str(text).split(",")[0])
    if not m:
        return None
    return int(float(m.group(1)) * _SIZE_MULT[m.group(2).lower()])


def _load_fio_document(text: str) -> dict:
    """Find fio's JSON object in ``text``: fio prints notes/warnings ('fio: ...', 'note: ...')
    to stdout before the JSON when they are not errors."""
    decoder = json.JSONDecoder()
    for m in re.finditer(r"(?m)^\{", text):
        try:
            doc, _ = decoder.raw_decode(text, m.start())
        except json.JSONDecodeError:
            continue
        if isinstance(doc, dict) and "jobs" in doc:
            return doc
    head = text.strip().splitlines()[:5]
    raise FioError("no fio JSON document in the output; first lines: " + " | ".join(head))


def _pct_ms(clat: dict, key: str) -> float:
    pct = clat.get("percentile") or {}
    v = pct.get(key)
    return float(v) / 1e6 if v is not None else math.nan


def _side(job: dict, side: str) -> dict:
    return job.get(side) or {}


def _row(job: dict, global_opts: dict, source: str, target: str | None, version: str | None) -> dict:
    opts = {**global_opts, **(job.get("job options") or {})}
    rw = opts.get("rw", opts.get("readwrite", "read"))
    rd, wr = _side(job, "read"), _side(job, "write")
    rd_ios = float(rd.get("total_ios", 0) or 0)
    wr_ios = float(wr.get("total_ios", 0) or 0)
    # Latency of the side that did the I/O; for mixed jobs an IO-weighted mean and the worse tail.
    sides = [(s, n) for s, n in ((rd, rd_ios), (wr, wr_ios)) if n > 0]
    if sides:
        total = sum(n for _, n in sides)
        mean = sum(float((s.get("clat_ns") or {}).get("mean", math.nan)) * n for s, n in sides) / total
        p50 = max(_pct_ms(s.get("clat_ns") or {}, "50.000000") for s, _ in sides)
        p99 = max(_pct_ms(s.get("clat_ns") or {}, "99.000000") for s, _ in sides)
        mean_ms = mean / 1e6
    else:
        mean_ms = p50 = p99 = math.nan
    read_iops = float(rd.get("iops", 0.0) or 0.0)
    write_iops = float(wr.get("iops", 0.0) or 0.0)
    bs = opts.get("bs", opts.get("blocksize"))
    iodepth = opts.get("iodepth", 1)
    return {
        "job": job.get("jobname"),
        "rw": rw,
        "bs": bs,
        "bs_bytes": _size_bytes(bs),
        "iodepth": int(iodepth),
        "numjobs": int(opts.get("numjobs", 1)),
        "read_mib_s": float(rd.get("bw_bytes", 0) or 0) / MIB,
        "write_mib_s": float(wr.get("bw_bytes", 0) or 0) / MIB,
        "read_iops": read_iops,
        "write_iops": write_iops,
        "iops": read_iops + write_iops,
        "clat_mean_ms": mean_ms,
        "clat_p50_ms": p50,
        "clat_p99_ms": p99,
        "runtime_s": float(job.get("job_runtime", 0) or 0) / 1000.0,
        "ioengine": opts.get("ioengine"),
        "direct": str(opts.get("direct", "0")) == "1",
        "source": source,
        "target": target,
        "limited_by": job.get("falkit_limited_by"),
        "fio_version": version,
    }


def parse_fio_json(text: str) -> pd.DataFrame:
    """fio ``--output-format=json`` text -> one row per job (see ``COLUMNS``).

    Options are read from ``"global options"`` overlaid with each job's ``"job options"`` (fio
    reports only what the job file set). Bandwidth = ``bw_bytes / 2**20`` MiB/s; latency = fio's
    completion latency ``clat_ns`` (mean, 50th and 99th percentile) / 1e6 ms. ``source`` is
    ``modelled`` when the document carries ``"falkit_modelled": true`` (written by
    ``falkit.bench.model.fio_json_from_model``), otherwise ``measured``.
    """
    import pandas as pd  # noqa: PLC0415 - pandas / kubernetes-validate (heavy) only when results are parsed or a Job validated

    doc = _load_fio_document(text)
    if doc.get("jobs") is None or not isinstance(doc["jobs"], list):
        raise FioError("fio JSON without a 'jobs' list")
    source = "modelled" if doc.get("falkit_modelled") is True else "measured"
    target = doc.get("falkit_target")
    version = doc.get("fio version")
    global_opts = doc.get("global options") or {}
    rows = []
    for job in doc["jobs"]:
        if int(job.get("error", 0) or 0) != 0:
            raise FioError(f"fio job {job.get('jobname')!r} failed with error {job.get('error')}")
        rows.append(_row(job, global_opts, source, target, version))
    return pd.DataFrame(rows, columns=COLUMNS)


# ---------------------------------------------------------------------------------------------
# Kubernetes Job

_JOBFILE_PATH = "/tmp/falkit.fio"
_SCRIPT = (
    'printf "%s\\n" "$FALKIT_FIO_JOBFILE" > ' + _JOBFILE_PATH + " && exec fio --output-format=json "
    + _JOBFILE_PATH
)


def k8s_job_manifest(
    name: str,
    namespace: str,
    pvc_name: str,
    jobs: Sequence[str | FioJob] | None,
    profile: str | Profile = "full",
    image: str = DEFAULT_FIO_IMAGE,
    *,
    target: str,
    expected_mib_s: float = 600.0,
    ttl_seconds_after_finished: int | None = 3600,
) -> dict:
    """A ``batch/v1`` Job that runs fio against ``/data/falkit-fio.dat`` on PVC ``pvc_name`` and
    prints fio's JSON to stdout (the pod log is the result; ``parse_fio_json`` reads it).

    The job file travels in the env var ``FALKIT_FIO_JOBFILE`` (no ConfigMap to clean up); the
    annotation ``falkit.io/fio-jobs`` lists the job names, ``falkit.io/fio-profile`` the profile.
    ``target`` (mayastor | longhorn | local-path) labels what storage the PVC is on; it is
    required so a result can never be filed under the wrong storage.
    The PVC must hold the profile's file (``profile_settings(profile).size_mib`` MiB).
    """
    if target not in BENCH_TARGETS:
        raise ValueError(f"unknown bench target {target!r}; expected one of {BENCH_TARGETS}")
    prof = profile_settings(profile, expected_mib_s)
    selected = resolve_jobs(jobs)
    text = jobfile(selected, "/data/falkit-fio.dat", prof)
    labels = {
        "app.kubernetes.io/name": "falkit-fio",
        "app.kubernetes.io/managed-by": "falkit",
        "falkit.io/bench-target": target,
    }
    annotations = {
        "falkit.io/fio-jobs": ",".join(j.name for j in selected),
        "falkit.io/fio-profile": prof.name,
        "falkit.io/fio-size-mib": str(prof.size_mib),
    }
    spec: dict = {
        "backoffLimit": 0,
        "template": {
            "metadata": {"labels": dict(labels), "annotations": dict(annotations)},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "fio",
                        "image": image,
                        "command": ["/bin/sh", "-c", _SCRIPT],
                        "env": [{"name": "FALKIT_FIO_JOBFILE", "value": text}],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}},
                    }
                ],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": pvc_name}}],
            },
        },
    }
    if ttl_seconds_after_finished is not None:
        spec["ttlSecondsAfterFinished"] = ttl_seconds_after_finished
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations},
        "spec": spec,
    }


def validate_job_manifest(manifest: dict, kubernetes_version: str | None = None) -> str:
    """Validate against the Kubernetes JSON schema (``kubernetes-validate``, a declared dependency;
    strict: unknown keys fail). Returns the schema version used; raises ``ValueError`` when the
    manifest is not a valid Job. (The untested fallback to the kubernetes client's models is gone:
    falkit.bench is a model below the clients, and the dependency is always installed.)"""
    if manifest.get("apiVersion") != "batch/v1" or manifest.get("kind") != "Job":
        raise ValueError("not a batch/v1 Job")
    import kubernetes_validate  # noqa: PLC0415 - pandas / kubernetes-validate (heavy) only when results are parsed or a Job validated

    version = kubernetes_version or kubernetes_validate.latest_version()
    try:
        return kubernetes_validate.validate(manifest, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = "/".join(str(p) for p in e.absolute_path)
        raise ValueError(f"invalid Job at {path or '<root>'}: {e.message}") from e
