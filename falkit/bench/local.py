"""Run the benchmark's fio jobs for real against a file in a local directory.

Same job definitions as the Kubernetes Job (``falkit.bench.fio``): libaio + O_DIRECT. When the
filesystem refuses O_DIRECT (older tmpfs, some FUSE and overlay filesystems) the run falls back to
``ioengine=psync, direct=0`` and says so: such numbers include the page cache and iodepth is
effectively 1.

Before writing, the directory's free space is checked against the data file (the profile's size,
or ``--size-mib``) plus :data:`HEADROOM_BYTES`: too little is refused with both numbers in bytes,
before anything is written (:class:`InsufficientSpaceError`). While fio runs, a line every
``progress_every`` seconds (5 by default, on stderr from ``falkit bench``) says how far it is: the
data file's size while fio lays it out (a 15 GiB file for ``--profile full``), then the time
spent running the jobs. The data and job files are removed however the run ends — fio fails, an
exception, Ctrl-C (SIGINT) or SIGTERM (``falkit bench`` turns SIGTERM into an exception, see
:func:`falkit.cli._exit_on_sigterm`) — and a fio still running is stopped first.
"""

from __future__ import annotations

import argparse
import errno
import json
import mmap
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd  # annotations; imported where used (issue 17: ~30 MiB in every kernel and the CLI)

from falkit.bench.fio import (
    FioError,
    FioJob,
    fio_command,
    jobfile,
    parse_fio_json,
    profile_settings,
    resolve_jobs,
)

__all__ = ["HEADROOM_BYTES", "InsufficientSpaceError", "add_bench_arguments", "check_free_space", "find_fio", "fio_version", "main_bench", "run_local", "supports_o_direct"]

FALLBACK_NOTE = (
    "the filesystem refused O_DIRECT: ran with ioengine=psync, direct=0 (page cache included, "
    "queue depth effectively 1) -- not comparable with the storage benchmarks"
)


MIB = 1024 ** 2
HEADROOM_BYTES = 64 * MIB  # beyond the data file: fio's job and output files, filesystem metadata


class InsufficientSpaceError(FioError):
    """The directory has too little free space for fio's data file."""

    def __init__(self, directory: Path, needed: int, available: int):
        self.directory, self.needed, self.available = directory, needed, available
        super().__init__(
            f"not enough free space in {directory} for fio's data file: needs {needed:,} bytes "
            f"({needed / 1024 ** 3:.1f} GiB, the file plus {HEADROOM_BYTES // MIB} MiB headroom), "
            f"{available:,} bytes ({available / 1024 ** 3:.1f} GiB) available. Nothing was written; use a directory "
            f"with more space (--dir) or a smaller file (--size-mib, or --profile quick)")


def check_free_space(directory: str | os.PathLike, size_bytes: int) -> None:
    """Raise :class:`InsufficientSpaceError` unless ``directory`` has ``size_bytes`` + headroom free."""
    d = Path(directory)
    needed = int(size_bytes) + HEADROOM_BYTES
    available = shutil.disk_usage(d).free
    if available < needed:
        raise InsufficientSpaceError(d, needed, available)


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
    size_mib: int | None = None,
    progress: Callable[[str], None] | None = None,
    progress_every: float = 5.0,
) -> pd.DataFrame:
    """Run fio in ``directory`` and return ``parse_fio_json`` rows (``source = measured``).

    ``direct=None`` probes O_DIRECT and falls back to psync/buffered when refused; ``True`` or
    ``False`` forces a mode. ``size_mib`` overrides the profile's file size. ``progress(line)`` is
    called at least every ``progress_every`` seconds while fio runs (see the module docstring).
    ``df.attrs`` holds ``fio_version``, ``ioengine``, ``direct``, ``directory``, ``profile``,
    ``size_mib``, ``note`` (the fallback note or "") and ``raw_json`` (fio's output). The data file
    and job file are removed afterwards, also on an exception or a signal turned into one.
    """
    fio = find_fio()
    d = Path(directory)
    if not d.is_dir():
        raise FioError(f"not a directory: {d}")
    selected = resolve_jobs(jobs)
    prof = profile_settings(profile)
    if size_mib is not None:
        if size_mib <= 0:
            raise FioError(f"--size-mib must be > 0, not {size_mib}")
        prof = replace(prof, size_mib=int(size_mib))
    size_bytes = prof.size_mib * MIB
    check_free_space(d, size_bytes)
    use_direct = supports_o_direct(d) if direct is None else direct
    ioengine = "libaio" if use_direct else "psync"
    note = "" if use_direct else FALLBACK_NOTE
    say = progress or (lambda line: None)
    fd, data_file = tempfile.mkstemp(prefix="falkit-fio-", suffix=".dat", dir=d)
    os.close(fd)
    job_fd, job_path = tempfile.mkstemp(prefix="falkit-", suffix=".fio")
    out_fd, out_path = tempfile.mkstemp(prefix="falkit-fio-", suffix=".json")
    os.close(out_fd)
    proc: subprocess.Popen | None = None
    try:
        with os.fdopen(job_fd, "w") as f:
            f.write(jobfile(selected, data_file, prof, ioengine=ioengine, direct=use_direct))
        run_s = len(selected) * (prof.ramp_time_s + prof.runtime_s)
        limit = timeout_s or 60 + run_s * 3
        with open(os.devnull, "rb") as devnull, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(fio_command(job_path, fio=fio, output_path=out_path), stdin=devnull,
                                    stdout=subprocess.DEVNULL, stderr=err)
            start = time.monotonic()
            last = None
            laid_out_at = None
            while proc.poll() is None:
                now = time.monotonic()
                if now - start > limit:
                    raise FioError(f"fio did not finish within {limit:.0f} s")
                if last is None or now - last >= progress_every:
                    last = now
                    try:
                        written = os.stat(data_file).st_size
                    except FileNotFoundError:
                        written = 0
                    if written < size_bytes and laid_out_at is None:
                        say(f"fio: laying out its data file {data_file}: {written / MIB:,.0f} of {prof.size_mib:,} MiB "
                            f"({100 * written // size_bytes}%), {now - start:.0f} s")
                    else:
                        laid_out_at = laid_out_at or now
                        say(f"fio: running {len(selected)} job(s) on {data_file}: {now - laid_out_at:.0f} s "
                            f"of about {run_s} s")
                time.sleep(0.1)
            err.seek(0)
            stderr = err.read().decode(errors="replace")
        output = Path(out_path).read_text(errors="replace")
        if proc.returncode != 0:
            raise FioError(f"fio exited with {proc.returncode}: {(stderr or output).strip()[:2000]}")
        df = parse_fio_json(output)
    finally:
        if proc is not None and proc.poll() is None:  # interrupted: stop fio before removing its file
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for p in (data_file, job_path, out_path):
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
        size_mib=prof.size_mib,
        note=note,
        raw_json=output,
    )
    return df


# ---------------------------------------------------------------------------------------------
# CLI: `falkit bench --local [--dir D] [--profile quick|full] [--json]` (wired by falkit.cli)


def add_bench_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``falkit bench`` options to ``parser``."""
    parser.add_argument("--local", action="store_true",
                        help="run fio on this machine against a file in --dir (the only mode here; the cluster "
                             "benchmarks run as Kubernetes Jobs from the notebooks)")
    parser.add_argument("--dir", default=".", help="directory for fio's data file (default: current directory)")
    parser.add_argument("--profile", choices=("quick", "full"), default="quick",
                        help="quick: 1 s per job, 64 MiB file; full: kbench's ramp 5 s, runtime 20 s, ~15 GiB file")  # fmt: skip
    parser.add_argument("--size-mib", type=int, default=None,
                        help="size of fio's data file in MiB (default: the profile's)")
    parser.add_argument("--progress-every", type=float, default=5.0, metavar="SECONDS",
                        help="print progress to stderr at least this often while fio runs (default 5)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON records")
    return parser


_TABLE_COLUMNS = {
    "job": "job", "rw": "rw", "bs": "bs", "iodepth": "QD", "read_mib_s": "read MiB/s",
    "write_mib_s": "write MiB/s", "iops": "IOPS", "clat_mean_ms": "clat mean ms",
    "clat_p50_ms": "p50 ms", "clat_p99_ms": "p99 ms",
}  # fmt: skip


def main_bench(args: argparse.Namespace) -> int:
    """Entry point of ``falkit bench``: 0 ok, 1 fio failed or missing, 2 usage."""
    if not getattr(args, "local", False):
        print("falkit bench: only --local is available here; cluster benchmarks run as Jobs from the notebooks",
              file=sys.stderr)  # fmt: skip
        return 2
    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        df = run_local(getattr(args, "dir", ".") or ".", profile=getattr(args, "profile", "quick"),
                       size_mib=getattr(args, "size_mib", None), progress=say,
                       progress_every=getattr(args, "progress_every", 5.0))
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
