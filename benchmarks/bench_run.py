"""How long ``falkit run`` takes on the twin, and how much of it is papermill and kernel start.

Measures, each against a fresh twin in its own temporary FALKIT_STATE_DIR (stopped at the end):

1. **cold**: ``falkit run`` of all notebooks on a twin just started in its "before" state;
2. **no-op**: the same run again (every plan empty: no change applied; its only mutating calls are 70-validation's test objects);
3. **worker scaling** (issue 17: the whole run with 30 workers <= 2x the run with 3): the whole
   ``falkit run`` (every notebook, cold, on a fresh "before" twin) of a generated spec with 3 and with
   30 workers (4 GiB / 4 GB OS / 10 GB data per worker, host and local-lvm sized to fit; LB pool,
   Plex and TrueNAS addresses moved above the workers'); the ratio 30 / 3 of the whole run, and of
   its VM step (notebooks 10-network + 20-vms, from the same runs' per-notebook durations);
0. **floor**: the same notebooks with every code cell emptied (parameters kept), run one after
   the other through papermill's Python API as ``falkit run`` calls it; the ratios cold / floor and
   no-op / floor (issue 17 goals: <= 2.0 and <= 1.3) are printed from the same invocation;
4. **overhead**: papermill's Python API on an empty notebook (kernel start, parameter injection,
   one trivial cell, immediate shutdown), compared with the per-notebook times above.

**CPU time** next to each wall time (the machine is shared: wall time is mostly waiting for a CPU
when others work, CPU time hardly moves): of this process (the runner, its export thread),
of its finished children (the notebook kernels, and what they ran: the ``talosctl``/``helm``
stand-ins, git; ``getrusage(RUSAGE_CHILDREN)``) and of the twin's pve and lab processes
(``/proc/<pid>/stat``), over the run alone (not the twin's start). The load average is recorded with
each figure. Ratios are printed for both wall and CPU time.

Notebooks are built from ``notebooks/src`` into a temp dir first (so the measurement does not depend
on the checked-in .ipynb being fresh). A run that fails is reported with where it failed.

    python benchmarks/bench_run.py [--only 00 10 20 ...] [--parts floor runs scaling overhead]
                                   [--workers 3 30] [--out bench_run.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from falkit.cli import main as falkit_main  # noqa: E402
from falkit.runbook import nbbuild  # noqa: E402
from falkit.runbook.runner import env_override as env  # noqa: E402
from falkit.twin import supervisor  # noqa: E402


def _ticks(pid: int) -> float | None:
    """utime + stime of ``pid`` in seconds (/proc/<pid>/stat fields 14 and 15), None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuClock:
    """CPU seconds spent between ``start()`` and ``stop()``: this process, its reaped children
    (kernels and what they ran), and the given twin processes."""

    def __init__(self, twin_pids: dict[str, int] | None = None) -> None:
        self.twin = dict(twin_pids or {})

    def _now(self) -> dict[str, float]:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        out = {"runner": me.ru_utime + me.ru_stime, "children": kids.ru_utime + kids.ru_stime}
        for name, pid in self.twin.items():
            out[f"twin_{name}"] = _ticks(pid) or 0.0
        return out

    def start(self) -> CpuClock:
        self.t0, self.wall0, self.load0 = self._now(), time.monotonic(), os.getloadavg()
        return self

    def stop(self) -> dict:
        t1 = self._now()
        cpu = {k: round(t1[k] - self.t0.get(k, 0.0), 2) for k in t1}
        cpu["total"] = round(sum(cpu.values()), 2)
        return {"wall_s": round(time.monotonic() - self.wall0, 2), "cpu_s": cpu,
                "loadavg_1m": [round(self.load0[0], 2), round(os.getloadavg()[0], 2)]}  # at start, at end


def _twin_pids(state: Path) -> dict[str, int]:
    conn = json.loads((state / "twin" / "connection.json").read_text())
    return {name: int(pid) for name, pid in (conn.get("pids") or {}).items()}


def timed_run(params: Path, outputs: Path, extra: list[str], twin_pids: dict[str, int] | None = None) -> dict:
    """One ``falkit run``; its wall and CPU time and run.json's per-notebook durations."""
    clock = CpuClock(twin_pids).start()
    rc = falkit_main(["run", "--params", str(params), "--outputs", str(outputs), *extra])
    took = clock.stop()
    run_dir = sorted(p for p in outputs.iterdir() if p.is_dir())[-1]
    run = json.loads((run_dir / "run.json").read_text())
    return {"rc": rc, **took, "status": run["status"], "failed": run.get("failed"),
            "notebooks": {n["notebook"]: n.get("duration_s") for n in run["notebooks"]},
            "mutating_calls": run["totals"]["mutating_calls"], "applied": run["totals"]["applied_changes"]}


def scaled_spec(workers: int, tmp: Path) -> Path:
    data = yaml.safe_load((ROOT / "parameters" / "fal.yaml").read_text())
    base = data["cluster"]["workers"][0]
    # 4 GiB: the io-engine's hugepages must fit. talos-worker-01 exists in the "before" lab (the
    # previous cluster's worker): its disks keep their size (shrinking one is destructive, refused).
    data["cluster"]["workers"] = [
        dict(base, name=f"talos-worker-{i:02d}", vmid=200 + i, ip=f"10.10.0.{10 + i}", storage_ip=f"10.11.0.{10 + i}",
             memory_gb=4, **({} if i == 1 else {"os_disk_gb": 4, "data_disk_gb": 40}))
        for i in range(1, workers + 1)]  # 40 GB: 50-mayastor's fio file (25 s x the expected MiB/s) must fit
    data["host"]["memory_gb"] = 4 + 4 * workers + 8
    for st in data["host"]["storages"]:
        if st["name"] == "local-lvm":
            st["size_gb"] = max(st["size_gb"], 80 + 5 * workers)
        elif st["name"] == data["cluster"]["vm_defaults"]["data_storage"]:
            st["size_gb"] = max(st["size_gb"], 300 + 40 * workers + int(st.get("reserve_gb") or 0) + 100)
    data["plex"]["ip"], data["plex"]["storage_ip"] = "10.10.0.90", "10.11.0.90"
    data["truenas"]["ip"], data["truenas"]["storage_ip"] = "10.10.0.95", "10.11.0.95"
    data["cilium"]["lb_pool"] = {"start": "10.10.0.100", "stop": "10.10.0.149"}
    for s in data["services"]:
        if s["new_ip"] not in ("auto", "disabled"):
            s["new_ip"] = "10.10.0.120"
    path = tmp / f"lab-{workers}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def fresh_twin_run(params: Path, nbdir: Path, extra: list[str], repeat: int = 1, state_name: str = "before") -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="falkit-bench-") as tmp:
        state, outputs = Path(tmp) / "state", Path(tmp) / "outputs"
        with env(FALKIT_STATE_DIR=str(state), FALKIT_NOTEBOOKS_DIR=str(nbdir), FALKIT_HEADLESS="1"):
            try:
                t0 = time.monotonic()
                supervisor.up(str(params), state=state_name, state_dir=state / "twin")
                twin_up = time.monotonic() - t0
                results = []
                for _ in range(repeat):
                    results.append(timed_run(params, outputs, extra, _twin_pids(state)))
                results[0]["twin_up_s"] = round(twin_up, 2)
                return results
            finally:
                supervisor.down(state / "twin")


def floor_run(nbdir: Path, params: Path, only: list[str] | None) -> dict:
    """The floor (issue 17): the same notebooks with every code cell emptied (the parameters cell
    kept), executed one after the other with papermill's Python API as ``falkit run`` calls it
    (same parameters, kernel, IPC transport, immediate shutdown) -- what running N notebooks costs
    before falkit does anything in them."""
    import nbformat
    import papermill as pm

    from falkit.runbook.jupyter import ipc_kernel_config

    names = sorted(p for p in nbdir.glob("*.ipynb") if p.name[:2].isdigit())
    if only:
        names = [p for p in names if any(p.name.startswith(o) for o in only)]
    parameters = {"params": str(params), "target": "twin", "apply": True, "options": {}}
    times = {}
    with tempfile.TemporaryDirectory(prefix="falkit-floor-") as tmp:
        empty_dir = Path(tmp)
        for nb_path in names:
            nb = nbformat.read(nb_path, as_version=4)
            for cell in nb.cells:
                if cell.cell_type == "code" and "parameters" not in cell.metadata.get("tags", []):
                    cell.source = ""
            nbformat.write(nb, empty_dir / nb_path.name)
        clock = CpuClock().start()
        for nb_path in names:
            t = time.monotonic()
            pm.execute_notebook(str(empty_dir / nb_path.name), str(empty_dir / ("out-" + nb_path.name)),
                                parameters=parameters, cwd=str(empty_dir), kernel_name="python3", progress_bar=False,
                                shutdown_kernel="immediate", config=ipc_kernel_config())
            times[nb_path.stem] = round(time.monotonic() - t, 2)
        took = clock.stop()
    return {**took, "notebooks": times}


def papermill_overhead(n: int = 3) -> dict:
    import papermill as pm

    src = '# %% tags=["parameters"]\nx = 1\n\n# %%\ny = x + 1\n'
    with tempfile.TemporaryDirectory() as tmp:
        nb = Path(tmp) / "00-empty.ipynb"
        nb.write_text(nbbuild.render(nbbuild.build_notebook(src, "00-empty")))
        times = []
        for _ in range(n):
            t0 = time.monotonic()
            pm.execute_notebook(str(nb), str(Path(tmp) / "out.ipynb"), parameters={"x": 2}, kernel_name="python3",
                                progress_bar=False, shutdown_kernel="immediate")
            times.append(time.monotonic() - t0)
        t0 = time.monotonic()
        import subprocess

        subprocess.run([sys.executable, "-c", "import falkit.runbook, falkit.steps.vms, kubernetes, plotly"],
                       check=False, cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)))
        imports = time.monotonic() - t0
    return {"empty_notebook_s": round(min(times), 3), "empty_notebook_all_s": [round(t, 3) for t in times],
            "falkit_import_in_fresh_python_s": round(imports, 3)}


PARTS = ("floor", "runs", "scaling", "overhead")


def _cpu_text(r: dict) -> str:
    c = r["cpu_s"]
    twin = sum(v for k, v in c.items() if k.startswith("twin_"))
    return (f"CPU {c['total']:.1f} s (runner {c['runner']:.1f}, kernels+children {c['children']:.1f}"
            + (f", twin {twin:.1f}" if any(k.startswith("twin_") for k in c) else "") + ")"
            + f", load {r['loadavg_1m'][0]:.1f}->{r['loadavg_1m'][1]:.1f}")


def _ratio(a: dict, b: dict) -> tuple[float, float]:
    return a["wall_s"] / b["wall_s"], a["cpu_s"]["total"] / max(b["cpu_s"]["total"], 1e-9)


def _vm_step(r: dict) -> float:
    return sum(v or 0.0 for k, v in r["notebooks"].items() if k.startswith(("10-", "20-")))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=None, help="notebook prefixes for the cold/no-op runs")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to measure (default: all)")
    ap.add_argument("--skip-scaling", action="store_true", help="the same as --parts floor runs overhead")
    ap.add_argument("--workers", nargs=2, type=int, default=[3, 30], metavar=("FEW", "MANY"),
                    help="worker counts of the scaling runs (default 3 30)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    parts = [p for p in args.parts if not (args.skip_scaling and p == "scaling")]
    report: dict = {"parts": parts}
    with tempfile.TemporaryDirectory(prefix="falkit-nb-") as nbtmp:
        nbdir = Path(nbtmp)
        nbbuild.build(ROOT / "notebooks" / "src", nbdir)
        only = ["--only", *args.only] if args.only else []
        if "floor" in parts:
            report["floor"] = floor_run(nbdir, ROOT / "parameters" / "fal.yaml", args.only)
        if "runs" in parts:
            cold, noop = fresh_twin_run(ROOT / "parameters" / "fal.yaml", nbdir, only, repeat=2)
            report["cold"], report["noop"] = cold, noop
        if "scaling" in parts:
            with tempfile.TemporaryDirectory() as tmp:
                for workers in args.workers:
                    try:
                        spec = scaled_spec(workers, Path(tmp))
                        report[f"whole_run_{workers}_workers"] = fresh_twin_run(spec, nbdir, [], state_name="before")[0]
                    except Exception as exc:  # noqa: BLE001 - report the rest; say why this part is missing
                        print(f"the whole run with {workers} workers not measured: {type(exc).__name__}: {exc}",
                              file=sys.stderr)
        if "overhead" in parts:
            report["overhead"] = papermill_overhead()
    ov = report.get("overhead", {}).get("empty_notebook_s")
    fl = report.get("floor")
    if fl:
        print(f"\n== floor: {len(fl['notebooks'])} emptied notebooks (parameters cell kept) through papermill: "
              f"{fl['wall_s']:.1f} s wall, {_cpu_text(fl)} ==")
        print("                   " + ", ".join(f"{k} {v:.1f}s" for k, v in fl["notebooks"].items()))
    runs = [k for k in report if k in ("cold", "noop") or k.startswith("whole_run_")]
    if runs:
        print("\n== falkit run on the twin ==")
    for key in runs:
        r = report[key]
        n = len(r["notebooks"])
        where = f", failed at {r['failed']['notebook']}" if r.get("failed") else ""
        share = f", papermill+kernel ≈ {n * ov:.1f} s ({100 * n * ov / r['wall_s']:.0f} %)" if ov else ""
        print(f"{key:22} {r['status']:6} {r['wall_s']:7.1f} s wall, {n} notebook(s), "
              f"{r['mutating_calls']} mutating call(s){share}{where}")
        print(f"{'':22} {_cpu_text(r)}")
        print(f"{'':22} " + ", ".join(f"{k} {v:.1f}s" for k, v in r["notebooks"].items() if v is not None))
    ratios: dict = {}
    if fl and "cold" in report:
        (cw, cc), (nw, nc) = _ratio(report["cold"], fl), _ratio(report["noop"], fl)
        ratios.update(cold_over_floor=round(cw, 2), noop_over_floor=round(nw, 2),
                      cold_over_floor_cpu=round(cc, 2), noop_over_floor_cpu=round(nc, 2))
        print(f"\nratios (one run, side by side): cold / floor = {cw:.2f} wall, {cc:.2f} CPU (goal <= 2.0); "
              f"no-op re-run / floor = {nw:.2f} wall, {nc:.2f} CPU (goal <= 1.3)")
    few, many = (report.get(f"whole_run_{w}_workers") for w in args.workers)
    if few and many and not (few["status"] == many["status"] == "ok"):
        print(f"whole run, {args.workers[1]} / {args.workers[0]} workers: not measured (a run failed, see above)")
    elif few and many:
        ww, wc = _ratio(many, few)
        vm = _vm_step(many) / max(_vm_step(few), 1e-9)
        ratios.update(workers=list(args.workers), whole_run_workers_wall=round(ww, 2), whole_run_workers_cpu=round(wc, 2),
                      vm_step_workers_wall=round(vm, 2))
        print(f"whole run, {args.workers[1]} / {args.workers[0]} workers = {ww:.2f} wall, {wc:.2f} CPU (goal <= 2); "
              f"its VM step (10-network + 20-vms) {vm:.2f} wall")
    report["ratios"] = ratios
    if ov:
        print(f"\nempty notebook through papermill (kernel start + shutdown): {ov:.2f} s; "
              f"importing falkit's stack in a fresh python: {report['overhead']['falkit_import_in_fresh_python_s']:.2f} s")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
