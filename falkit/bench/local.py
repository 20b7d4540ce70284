"""Run the benchmark's fio jobs for real against a file in a local directory.

Same job definitions as the Kubernetes Job (``falkit.bench.fio``): libaio + O_DIRECT. When the
filesystem refuses O_DIRECT (older tmpfs, some FUSE and overlay filesystems) the run falls back to
``ioengine=psync, direct=0`` and says so: such numbers include the page cache and iodepth is
effectively 1.
"""

from __future__ import annotations

import argparse
import errno
import json
import mmap
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from falkit.bench.fio import (
    FioError,
    FioJob,
    fio_command,
    jobfile,
    parse_fio_json,
    profile_settings,
    resolve_jobs,
)

__all__ = ["add_bench_arguments", "find_fio", "fio_version", "main_bench", "run_local", "supports_o_direct"]

FALLBACK_NOTE = (
    "the filesystem refused O_DIRECT: ran with ioengine=psync, direct=0 (page cache included, "
    "queue depth effectively 1) -- not comparable with the storage benchmarks"
)


def find_fio() -> str:
    """Path of the fio binary, or FioError telling how to install it."""
    path = shutil.which("fio")
    if path is None:
        raise FioError("fio is not installed (not on PATH): install it with `apt-get install fio` (Debian/Ubuntu)")
    return path


def fio_version(fio: str | None = None) -> str:
    out = subprocess.run([fio or find_fio(), "--version"], capture_output=True, text=True, check=True, timeout=10)
    return out.stdout.strip()


def supports_o_direct(directory: str | os.PathLike) -> bool:
    """Whether a file in ``directory`` accepts an aligned 4 KiB O_DIRECT write."""
    if not hasattr(os, "O_DIRECT"):  # pragma: no cover - not Linux
        return False
    fd, probe = tempfile.mkstemp(prefix=".falkit-odirect-", dir=directory)
    os.close(fd)
    buf = mmap.mmap(-1, 4096)  # page-aligned, as O_DIRECT requires
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_DIRECT)
        try:
            os.write(fd, buf)
        finally:
            os.close(fd)
        return True
    except OSError as e:
        if e.errno in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
            return False
        raise
    finally:
        buf.close()
        os.unlink(probe)


def run_local(
    directory: str | os.PathLike,
    profile: str = "quick",
    jobs: Sequence[str | FioJob] | None = None,
    *,
    direct: bool | None = None,
    timeout_s: float | None = None,
) -> pd.DataFrame:
    """Run fio in ``directory`` and return ``parse_fio_json`` rows (``source = measured``).

    ``direct=None`` probes O_DIRECT and falls back to psync/buffered when refused; ``True`` or
    ``False`` forces a mode. ``df.attrs`` holds ``fio_version``, ``ioengine``, ``direct``,
    ``directory``, ``profile``, ``note`` (the fallback note or "") and ``raw_json`` (fio's output).
    The data file and job file are removed afterwards.
    """
    fio = find_fio()
    d = Path(directory)
    if not d.is_dir():
        raise FioError(f"not a directory: {d}")
    selected = resolve_jobs(jobs)
    prof = profile_settings(profile)
    use_direct = supports_o_direct(d) if direct is None else direct
    ioengine = "libaio" if use_direct else "psync"
    note = "" if use_direct else FALLBACK_NOTE
    fd, data_file = tempfile.mkstemp(prefix="falkit-fio-", suffix=".dat", dir=d)
    os.close(fd)
    job_fd, job_path = tempfile.mkstemp(prefix="falkit-", suffix=".fio")
    try:
        with os.fdopen(job_fd, "w") as f:
            f.write(jobfile(selected, data_file, prof, ioengine=ioengine, direct=use_direct))
        limit = timeout_s or 60 + len(selected) * (prof.ramp_time_s + prof.runtime_s) * 3
        try:
            proc = subprocess.run(fio_command(job_path, fio=fio), capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired as e:
            raise FioError(f"fio did not finish within {limit:.0f} s") from e
        if proc.returncode != 0:
            raise FioError(f"fio exited with {proc.returncode}: {(proc.stderr or proc.stdout).strip()[:2000]}")
        df = parse_fio_json(proc.stdout)
    finally:
        for p in (data_file, job_path):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
    df.attrs.update(
        fio_version=df["fio_version"].iloc[0] if len(df) else None,
        ioengine=ioengine,
        direct=use_direct,
        directory=str(d.resolve()),
        profile=prof.name,
        note=note,
        raw_json=proc.stdout,
    )
    return df


# ---------------------------------------------------------------------------------------------
# CLI: `falkit bench --local [--dir D] [--profile quick|full] [--json]` (wired by falkit.cli)


def add_bench_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``falkit bench`` options to ``parser``."""
    parser.add_argument("--local", action="store_true", help="run fio on this machine (loopback only)")
    parser.add_argument("--dir", default=".", help="directory for fio's data file (default: current directory)")
    parser.add_argument("--profile", choices=("quick", "full"), default="quick",
                        help="quick: 1 s per job, 64 MiB file; full: kbench's ramp 5 s, runtime 20 s, ~15 GiB file")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the results as JSON records")
    return parser


_TABLE_COLUMNS = {
    "job": "job", "rw": "rw", "bs": "bs", "iodepth": "QD", "read_mib_s": "read MiB/s",
    "write_mib_s": "write MiB/s", "iops": "IOPS", "clat_mean_ms": "clat mean ms",
    "clat_p50_ms": "p50 ms", "clat_p99_ms": "p99 ms",
}  # fmt: skip


def main_bench(args: argparse.Namespace) -> int:
    """Entry point of ``falkit bench``: 0 ok, 1 fio failed or missing, 2 usage."""
    import sys

    if not getattr(args, "local", False):
        print("falkit bench: only --local is available here; cluster benchmarks run as Jobs from the notebooks",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        df = run_local(getattr(args, "dir", ".") or ".", profile=getattr(args, "profile", "quick"))
    except FioError as e:
        print(f"falkit bench: {e}", file=sys.stderr)
        return 1
    if getattr(args, "json", False):
        meta = {k: v for k, v in df.attrs.items() if k != "raw_json"}
        print(json.dumps({"meta": meta, "results": json.loads(df.to_json(orient="records"))}, indent=2))
        return 0
    a = df.attrs
    print(f"{a['fio_version']} in {a['directory']} (profile {a['profile']}, ioengine={a['ioengine']}, "
          f"direct={int(a['direct'])}; source: measured)")  # fmt: skip
    if a["note"]:
        print(f"note: {a['note']}")
    table = df[list(_TABLE_COLUMNS)].rename(columns=_TABLE_COLUMNS)
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
    return 0
