"""Memory of a ``falkit run`` on the twin, and of the kube emulator as its object count grows.

Everything is read from /proc/<pid>/status (VmRSS = resident now, VmHWM = peak resident so far):

1. **run**: a whole ``falkit run`` on a fresh twin (state "before", time factor 0) in a temporary
   FALKIT_STATE_DIR, outputs dir and Jupyter runtime dir, notebooks built from ``notebooks/src``
   first (as bench_run.py does). The runner calls ``falkit.cli.main(["run", ...])`` like
   bench_run.py, but in a child python of its own, so its VmHWM is the run's alone: it reads
   /proc/self/status when the run returns. A thread samples every ``--interval`` s the runner, all
   of its descendants (the notebook kernels, one per notebook, and anything they start) and the
   twin's pve and lab processes (pids from the twin's connection.json); a kernel's peak is its last
   VmHWM seen, so a peak in its last ``--interval`` s is missed. The twin's VmHWM is read after
   the run (their peak since ``twin up``), then the twin is stopped. Besides the sum of RSS, the
   sum of PSS (``/proc/<pid>/smaps_rollup``; a page shared by n processes counts 1/n in each) at
   each sample: summed RSS counts the pages several processes share (the python binary, C
   extensions) once per process.
   **Idle CPU** (issue 17, goal <= 1 % of one core): the twin's processes' utime+stime over
   ``--idle`` seconds (default 60) with nothing touching the twin, once right after ``twin up`` and
   once after the run (the twin ``falkit run`` leaves up), as a share of one core.
2. **kube**: ``python -m falkit.twin.lab_process --emulator-only`` in a subprocess; ConfigMaps
   (~200 bytes of data each, labelled) are created through the official client up to each of
   ``--counts``, and the subprocess's VmRSS is read after each step (marginal bytes per object and a
   linear fit). Then, at that fixed object count, ``--requests`` mixed GET / LIST (label selector,
   limit 50) / PATCH (data replaced by the same size), VmRSS before and after; PATCHes only until
   the store's bounded watch history (10,000 events; a MODIFIED event keeps the superseded version)
   has turned over once; and ``--requests`` mixed again: once the history is full, RSS should stay
   flat (growth that goes on is a per-request leak; growth up to the bound is the history).

Only loopback addresses are used. Everything started is stopped at the end, also on error.

    python benchmarks/bench_memory.py [--skip-run] [--skip-kube] [--only 00 10 ...]
                                      [--counts 0 2000 5000 10000] [--requests 5000]
                                      [--interval 0.2] [--idle 60] [--out bench_memory.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from falkit.runbook import nbbuild  # noqa: E402
from falkit.runbook.runner import env_override as env  # noqa: E402
from falkit.twin import supervisor  # noqa: E402

MIB = 1024 * 1024

# The runner: falkit.cli.main as `falkit run` calls it, then its own peak from /proc/self/status.
RUNNER = r"""
import json, sys
from falkit.cli import main
rc = main(sys.argv[2:])
mem = {}
with open("/proc/self/status") as fh:
    for line in fh:
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            mem[key] = int(value.split()[0]) * 1024
with open(sys.argv[1], "w") as fh:
    json.dump({"rc": rc, **mem}, fh)
sys.exit(rc)
"""


# ------------------------------------------------------------------------------------------- /proc


def mem(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of pid in bytes ({} when it is gone or a zombie)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            text = fh.read()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def pss(pid: int) -> int:
    """Proportional set size of pid in bytes (/proc/<pid>/smaps_rollup: a page shared by n processes
    counts 1/n in each — the python binary, the C extensions several falkit processes map), 0 when
    unreadable. Summed over processes it does not count shared pages twice, as summed RSS does."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def stat(pid: int) -> tuple[int, int] | None:
    """(ppid, start time in clock ticks) of pid, or None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[19])


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of pid in clock ticks (/proc/<pid>/stat fields 14 and 15), or None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[11]) + int(fields[12])


def idle_cpu(twin: dict[str, int], seconds: float) -> dict:
    """CPU share of one core each twin process used while nothing touched the twin for ``seconds``
    (clock ticks from /proc, so 1 tick = 1/CLK_TCK s of resolution: ±0.02 % over 60 s)."""
    hz = os.sysconf("SC_CLK_TCK")
    before = {name: cpu_ticks(pid) for name, pid in twin.items()}
    t0 = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - t0
    after = {name: cpu_ticks(pid) for name, pid in twin.items()}
    share = {name: round(100 * (after[name] - before[name]) / hz / wall, 2)
             for name in twin if before[name] is not None and after[name] is not None}
    return {"seconds": round(wall, 1), "percent_of_one_core": share, "total_percent": round(sum(share.values()), 2)}


def proc_table() -> dict[int, tuple[int, int]]:
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = stat(int(name))
            if st:
                table[int(name)] = st
    return table


def descendants(table: dict[int, tuple[int, int]], root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _start) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return []


def role_of(argv: list[str]) -> str:
    text = " ".join(argv)
    if "ipykernel" in text:
        return "kernel"
    return "other: " + " ".join(Path(a).name for a in argv[:3]) if argv else "other: ?"


def mib(n: float | None) -> str:
    return "-" if n is None else f"{n / MIB:.1f}"


# ------------------------------------------------------------------------------------- run sampler


class Sampler(threading.Thread):
    """Samples the runner, its descendants and the twin's processes every ``interval`` s."""

    def __init__(self, runner: int, twin: dict[str, int], interval: float) -> None:
        super().__init__(daemon=True)
        self.runner, self.twin, self.interval = runner, twin, interval
        self.procs: dict[tuple[int, int], dict] = {}  # (pid, start ticks) -> record
        self.samples, self.sample_s = 0, 0.0
        self.max_total, self.max_kernels_rss, self.max_kernels_alive = 0, 0, 0
        self.max_total_pss = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.sample()
            self.stopping.wait(self.interval)

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)
        self.sample()  # one last look

    def sample(self) -> None:
        t0 = time.perf_counter()
        table = proc_table()
        pids = [(self.runner, "runner")] + [(p, "") for p in descendants(table, self.runner)]
        for name, pid in self.twin.items():
            pids += [(pid, name)] + [(p, f"{name} child") for p in descendants(table, pid)]
        total = kernels = alive = total_pss = 0
        for pid, role in pids:
            m = mem(pid)
            if "VmRSS" not in m or pid not in table:
                continue
            key = (pid, table[pid][1])
            rec = self.procs.get(key)
            if rec is None:
                argv = cmdline(pid)
                role = role if role in ("runner", "pve", "lab") else f"{role} {role_of(argv)}".strip()
                rec = self.procs[key] = {"pid": pid, "role": role, "argv": argv[:6],
                                         "max_rss": 0, "hwm": 0, "samples": 0}
            rec["max_rss"] = max(rec["max_rss"], m["VmRSS"])
            rec["hwm"] = max(rec["hwm"], m.get("VmHWM", 0))
            rec["rss"] = m["VmRSS"]
            rec["samples"] += 1
            total += m["VmRSS"]
            total_pss += pss(pid)
            if rec["role"] == "kernel":
                kernels += m["VmRSS"]
                alive += 1
        self.max_total = max(self.max_total, total)
        self.max_total_pss = max(self.max_total_pss, total_pss)
        self.max_kernels_rss = max(self.max_kernels_rss, kernels)
        self.max_kernels_alive = max(self.max_kernels_alive, alive)
        self.samples += 1
        self.sample_s += time.perf_counter() - t0

    def still_ours(self) -> list[int]:
        """Descendants seen that still run (same pid and start time), the twin excluded."""
        out = []
        for (pid, start), rec in self.procs.items():
            if rec["role"] in ("runner", "pve", "lab") or rec["role"].startswith(("pve ", "lab ")):
                continue
            st = stat(pid)
            if st and st[1] == start and mem(pid):
                out.append(pid)
        return out


def stop_pids(pids: list[int], timeout: float = 5.0) -> None:
    """SIGTERM then SIGKILL exactly these pids (processes this benchmark started)."""
    starts = {pid: stat(pid) for pid in pids}
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(stat(p) == starts[p] and mem(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if starts[pid] and stat(pid) == starts[pid] and mem(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def run_memory(params: Path, only: list[str], interval: float, idle_s: float = 60.0) -> dict:
    with tempfile.TemporaryDirectory(prefix="falkit-mem-") as tmp:
        tmp_path = Path(tmp)
        nbdir, state, outputs = tmp_path / "notebooks", tmp_path / "state", tmp_path / "outputs"
        nbdir.mkdir()
        nbbuild.build(ROOT / "notebooks" / "src", nbdir)
        with env(FALKIT_STATE_DIR=str(state), FALKIT_NOTEBOOKS_DIR=str(nbdir), FALKIT_HEADLESS="1",
                 JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime")):
            proc: subprocess.Popen | None = None
            sampler: Sampler | None = None
            try:
                t0 = time.monotonic()
                supervisor.up(str(params), state="before", state_dir=state / "twin")
                twin_up_s = time.monotonic() - t0
                conn = json.loads((state / "twin" / "connection.json").read_text())
                twin = {name: int(pid) for name, pid in conn["pids"].items()}
                twin_after_up = {name: mem(pid) for name, pid in twin.items()}
                idle_fresh = idle_cpu(twin, idle_s) if idle_s > 0 else None
                result_file = tmp_path / "runner-mem.json"
                argv = ["run", "--params", str(params), "--outputs", str(outputs)]
                argv += ["--only", *only] if only else []
                t0 = time.monotonic()
                proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(result_file), *argv], cwd=str(tmp_path),
                                        stdin=subprocess.DEVNULL, stdout=sys.stderr,
                                        env=dict(os.environ, PYTHONPATH=str(ROOT)))
                sampler = Sampler(proc.pid, twin, interval)
                sampler.start()
                rc = proc.wait()
                wall = time.monotonic() - t0
                sampler.stop()
                twin_end = {name: mem(pid) for name, pid in twin.items()}
                idle_after = idle_cpu(twin, idle_s) if idle_s > 0 else None  # the twin `falkit run` leaves up
                runner = json.loads(result_file.read_text()) if result_file.exists() else {}
                run_dirs = sorted(p for p in outputs.iterdir() if p.is_dir()) if outputs.is_dir() else []
                run = json.loads((run_dirs[-1] / "run.json").read_text()) if run_dirs else {}
            finally:
                leftovers = []
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                if sampler is not None:
                    sampler.stopping.set()
                    sampler.join(10)
                    leftovers = sampler.still_ours()
                    stop_pids(leftovers)
                supervisor.down(state / "twin")
    kernels = [r for r in sampler.procs.values() if r["role"] == "kernel"]
    others = [r for r in sampler.procs.values() if "other" in r["role"]]
    runner_rec = next((r for r in sampler.procs.values() if r["role"] == "runner"), {})
    return {
        "rc": rc, "status": run.get("status"), "failed": run.get("failed"), "wall_s": round(wall, 1),
        "twin_up_s": round(twin_up_s, 1), "notebooks": [n["notebook"] for n in run.get("notebooks", [])],
        "runner": {"VmHWM": runner.get("VmHWM"), "VmRSS_at_end": runner.get("VmRSS"),
                   "sampled_max_rss": runner_rec.get("max_rss"), "how": "/proc/self/status when the run returned"},
        "twin": {name: {"pid": twin[name], "VmRSS_after_up": twin_after_up[name].get("VmRSS"),
                        "VmRSS_at_end": twin_end[name].get("VmRSS"), "VmHWM": twin_end[name].get("VmHWM")}
                 for name in twin},
        "kernels": {"seen": len(kernels), "max_alive_at_once": sampler.max_kernels_alive,
                    "peak_each_max": max((k["hwm"] for k in kernels), default=None),
                    "peak_each_median": statistics.median([k["hwm"] for k in kernels]) if kernels else None,
                    "max_sum_rss": sampler.max_kernels_rss,
                    "per_kernel_peak": [k["hwm"] for k in kernels]},
        "other_descendants": [{"what": o["role"], "argv": o["argv"], "peak": o["hwm"]} for o in others],
        "max_total_rss": sampler.max_total,
        "max_total_pss": sampler.max_total_pss,
        "idle_cpu": {"fresh_twin": idle_fresh, "after_the_run": idle_after},
        "sampling": {"interval_s": interval, "samples": sampler.samples,
                     "mean_sample_ms": round(1e3 * sampler.sample_s / max(sampler.samples, 1), 2)},
        "stragglers_stopped": leftovers,
    }


# ---------------------------------------------------------------------------------- kube emulator


def start_emulator(state: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "falkit.twin.lab_process", "--state-dir", str(state),
                             "--emulator-only"], cwd=ROOT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not (state / "lab.json").exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            proc.wait()
            raise SystemExit("lab process did not start")
        time.sleep(0.05)
    return proc, json.loads((state / "lab.json").read_text())["kubeconfig"]  # TLS + bearer token


def _payload(i: int, fill: str) -> str:
    return f"{i:08d}" + fill * 192  # 200 bytes


def kube_memory(counts: list[int], requests: int) -> dict:
    from kubernetes import client, config

    with tempfile.TemporaryDirectory(prefix="falkit-mem-kube-") as tmp:
        proc, kubeconfig = start_emulator(Path(tmp))
        try:
            cfg = client.Configuration()
            config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
            api = client.ApiClient(cfg)
            core = client.CoreV1Api(api)
            # warm-up: every code path used below once (lazy imports, schemas), then gone again
            core.create_namespaced_config_map("default", {"metadata": {"name": "warmup", "labels": {"app": "a0"}},
                                                          "data": {"payload": _payload(0, "x")}})
            core.read_namespaced_config_map("warmup", "default")
            core.list_namespaced_config_map("default", label_selector="app=a0", limit=50)
            core.patch_namespaced_config_map("warmup", "default", {"data": {"payload": _payload(0, "y")}})
            core.delete_namespaced_config_map("warmup", "default")
            time.sleep(0.5)
            steps, n = [], 0
            for target in sorted(set(counts)):
                t0 = time.perf_counter()
                created = target - n
                while n < target:
                    core.create_namespaced_config_map(
                        "default", {"metadata": {"name": f"cm-{n:06d}", "labels": {"app": f"a{n % 7}", "tier": "x"}},
                                    "data": {"payload": _payload(n, "x")}})
                    n += 1
                dt = time.perf_counter() - t0
                time.sleep(0.3)
                m = mem(proc.pid)
                steps.append({"objects": n, "rss": m["VmRSS"], "hwm": m["VmHWM"],
                              "create_req_per_s": round(created / dt, 1) if created else None})
            for prev, cur in zip(steps, steps[1:], strict=False):
                cur["marginal_bytes_per_object"] = round((cur["rss"] - prev["rss"]) / (cur["objects"] - prev["objects"]))
            fit = None
            if len(steps) >= 3:
                xs, ys = [s["objects"] for s in steps], [s["rss"] for s in steps]
                slope, intercept = statistics.linear_regression(xs, ys)
                fit = {"bytes_per_object": round(slope), "intercept_mib": round(intercept / MIB, 1),
                       "r2": round(statistics.correlation(xs, ys) ** 2, 4)}
            # fixed object count: a mixed round, PATCH only until the store's bounded watch history
            # holds nothing but MODIFIED events (each keeps the superseded version), a mixed round again
            history = _history_size()
            fixed = [{"phase": "start", "requests": 0, "patches": 0, **_mem_short(proc.pid)}]
            counter = {"i": 0, "patches": 0}
            plan = [("mixed", requests, MIX), ("patch only", None, ("patch",)), ("mixed again", requests, MIX)]
            for phase, count, mix in plan:
                if count is None:  # patches so far + these = one full turn of the history
                    count = max(history - counter["patches"], 0)
                t0 = time.perf_counter()
                for _ in range(count):
                    _request(core, n, mix, counter)
                dt = time.perf_counter() - t0
                time.sleep(0.3)
                fixed.append({"phase": phase, "requests": count, "patches": counter["patches"],
                              "req_per_s": round(count / dt, 1) if count else None, **_mem_short(proc.pid)})
            for prev, cur in zip(fixed, fixed[1:], strict=False):
                if cur["requests"]:
                    cur["delta_bytes_per_request"] = round((cur["rss"] - prev["rss"]) / cur["requests"], 1)
            api.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return {"objects_data_bytes": 200, "steps": steps, "fit": fit, "fixed_objects": n,
            "mix": "per 10 requests: 4 GET, 1 LIST (label selector, limit 50), 5 PATCH (same-size data)",
            "watch_history_size": history, "fixed": fixed}


# per 10 requests: 4 GET, 1 LIST with a label selector (O(n) in the collection), 5 PATCH
MIX = ("get",) * 4 + ("list",) + ("patch",) * 5


def _request(core, n: int, mix: tuple[str, ...], counter: dict) -> None:  # noqa: ANN001 - CoreV1Api
    i = counter["i"]
    op = "list" if n == 0 else mix[i % len(mix)]
    name = f"cm-{(i * 7919) % max(n, 1):06d}"
    if op == "list":
        core.list_namespaced_config_map("default", label_selector=f"app=a{i % 7},tier in (x)", limit=50)
    elif op == "get":
        core.read_namespaced_config_map(name, "default")
    else:
        core.patch_namespaced_config_map(name, "default", {"data": {"payload": _payload(i, "y" if i % 2 else "z")}})
        counter["patches"] += 1
    counter["i"] = i + 1


def _history_size() -> int:
    """The emulator store's watch-history length (events kept for watch resumption)."""
    import inspect

    from falkit.twin.kube.store import Store

    return inspect.signature(Store.__init__).parameters["history_size"].default


def _mem_short(pid: int) -> dict:
    m = mem(pid)
    return {"rss": m["VmRSS"], "hwm": m["VmHWM"]}


# ------------------------------------------------------------------------------------------ report


def print_run(r: dict) -> None:
    where = f", failed at {r['failed']['notebook']}" if r.get("failed") else ""
    print(f"\n== falkit run on the twin: {r['status']} (rc {r['rc']}), {len(r['notebooks'])} notebook(s), "
          f"{r['wall_s']} s wall (twin up {r['twin_up_s']} s){where} ==")
    print(f"{'process':34} {'peak MiB':>9} {'end MiB':>8}  how")
    ru = r["runner"]
    print(f"{'runner (falkit run)':34} {mib(ru['VmHWM']):>9} {mib(ru['VmRSS_at_end']):>8}  VmHWM from /proc/self/status at the end")
    for name, t in r["twin"].items():
        print(f"{'twin ' + name + ' process':34} {mib(t['VmHWM']):>9} {mib(t['VmRSS_at_end']):>8}  "
              f"VmHWM after the run (after twin up: {mib(t['VmRSS_after_up'])} MiB)")
    k = r["kernels"]
    print(f"{'kernel, largest (' + str(k['seen']) + ' seen)':34} {mib(k['peak_each_max']):>9} {'':>8}  "
          f"last VmHWM sampled every {r['sampling']['interval_s']} s; median {mib(k['peak_each_median'])} MiB, "
          f"at most {k['max_alive_at_once']} alive at once")
    for o in r["other_descendants"]:
        print(f"{o['what'][:34]:34} {mib(o['peak']):>9} {'':>8}  sampled")
    if not r["other_descendants"]:
        print(f"{'other children (git, ...)':34} {'-':>9} {'':>8}  none caught: shorter-lived than the sampling interval")
    print(f"{'all of them at once (sum of RSS)':34} {mib(r['max_total_rss']):>9} {'':>8}  max over "
          f"{r['sampling']['samples']} samples ({r['sampling']['mean_sample_ms']} ms each)")
    for when, idle in r["idle_cpu"].items():
        if idle:
            each = ", ".join(f"{n} {v:.2f} %" for n, v in idle["percent_of_one_core"].items())
            print(f"idle twin CPU, {when.replace('_', ' ')}: {idle['total_percent']:.2f} % of one core over "
                  f"{idle['seconds']:.0f} s ({each}); goal <= 1 %")
    print(f"{'all of them at once (sum of PSS)':34} {mib(r['max_total_pss']):>9} {'':>8}  shared pages counted once "
          "(/proc/<pid>/smaps_rollup)")
    print(f"peak memory of the run, runner + kernels + twin at once: {mib(r['max_total_rss'])} MiB summed RSS, "
          f"{mib(r['max_total_pss'])} MiB summed PSS (goal <= 450 MiB)")
    if r["stragglers_stopped"]:
        print(f"stopped {len(r['stragglers_stopped'])} process(es) left after the run: {r['stragglers_stopped']}")


def print_kube(k: dict) -> None:
    print("\n== kube emulator (lab_process --emulator-only): ConfigMaps with ~200 bytes of data ==")
    print(f"{'objects':>8} {'VmRSS MiB':>10} {'VmHWM MiB':>10} {'bytes/object':>13} {'create req/s':>13}")
    for s in k["steps"]:
        print(f"{s['objects']:>8} {mib(s['rss']):>10} {mib(s['hwm']):>10} "
              f"{s.get('marginal_bytes_per_object', '-')!s:>13} {s['create_req_per_s'] or '-'!s:>13}")
    if k["fit"]:
        f = k["fit"]
        print(f"linear fit: {f['bytes_per_object']} bytes/object + {f['intercept_mib']} MiB, R² {f['r2']}")
    print(f"\n{k['fixed_objects']} objects fixed; {k['mix']}; the store keeps the last "
          f"{k['watch_history_size']} watch events (a MODIFIED one holds the old and new version)")
    print(f"{'phase':>12} {'requests':>9} {'patches':>8} {'VmRSS MiB':>10} {'VmHWM MiB':>10} {'Δ bytes/req':>12} {'req/s':>8}")
    for f in k["fixed"]:
        print(f"{f['phase']:>12} {f['requests']:>9} {f['patches']:>8} {mib(f['rss']):>10} {mib(f['hwm']):>10} "
              f"{f.get('delta_bytes_per_request', '-')!s:>12} {f.get('req_per_s') or '-'!s:>8}")

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-run", action="store_true", help="skip the falkit run part")
    ap.add_argument("--skip-kube", action="store_true", help="skip the kube emulator part")
    ap.add_argument("--only", nargs="*", default=None, help="notebook prefixes for the run")
    ap.add_argument("--params", type=Path, default=ROOT / "parameters" / "fal.yaml")
    ap.add_argument("--interval", type=float, default=0.2, help="sampling interval of the run's processes (s)")
    ap.add_argument("--counts", type=int, nargs="+", default=[0, 2000, 5000, 10000])
    ap.add_argument("--requests", type=int, default=5000, help="GET/LIST/PATCH requests per mixed round")
    ap.add_argument("--idle", type=float, default=60.0,
                    help="seconds the idle twin's CPU is measured, fresh and after the run (0: skip)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    report: dict = {"pid": os.getpid()}
    t0 = time.monotonic()
    if not args.skip_run:
        report["run"] = run_memory(args.params.resolve(), args.only or [], args.interval, args.idle)
    if not args.skip_kube:
        report["kube"] = kube_memory(args.counts, args.requests)
    report["elapsed_s"] = round(time.monotonic() - t0, 1)
    if "run" in report:
        print_run(report["run"])
    if "kube" in report:
        print_kube(report["kube"])
    print(f"\n(benchmark took {report['elapsed_s']} s)")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
