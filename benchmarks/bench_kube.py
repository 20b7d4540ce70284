"""Latency of the kube emulator over time: 5,000 mixed requests through the official client.

Starts ``python -m falkit.twin.lab_process`` on 127.0.0.1, then runs create / get / list with a
label selector / patch / delete of ConfigMaps and Pods, and reports req/s and p50/p95/p99 per
1,000-request window (flat numbers = no growth with history or object count).

    python benchmarks/bench_kube.py [--requests 5000] [--window 1000] [--out bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubernetes import client


def _start(state: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "falkit.twin.lab_process", "--state-dir", str(state)],
                            cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 30
    while not (state / "lab.json").exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("lab process did not start")
        time.sleep(0.05)
    return proc, json.loads((state / "lab.json").read_text())["kube_server"]


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def run(n: int, window: int, server: str) -> list[dict]:
    cfg = client.Configuration()
    cfg.host = server
    api = client.ApiClient(cfg)
    core = client.CoreV1Api(api)
    pod_spec = {"containers": [{"name": "c", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}
    live: list[tuple[str, str]] = []
    windows, lat, ops = [], [], {}
    t_window = time.perf_counter()
    for i in range(n):
        kind = "pod" if i % 2 else "cm"
        step = i % 10
        t0 = time.perf_counter()
        if step in (0, 1, 2) or not live:
            name = f"{kind}-{i}"
            labels = {"app": f"a{i % 7}", "tier": "x"}
            if kind == "pod":
                core.create_namespaced_pod("default", {"metadata": {"name": name, "labels": labels}, "spec": pod_spec})
            else:
                core.create_namespaced_config_map("default", {"metadata": {"name": name, "labels": labels},
                                                              "data": {"i": str(i)}})
            live.append((kind, name))
            op = "create"
        elif step in (3, 4, 5):
            k, name = live[i % len(live)]
            (core.read_namespaced_pod if k == "pod" else core.read_namespaced_config_map)(name, "default")
            op = "get"
        elif step == 6:
            core.list_namespaced_config_map("default", label_selector=f"app=a{i % 7},tier in (x)", limit=50)
            op = "list"
        elif step in (7, 8):
            k, name = live[i % len(live)]
            if k == "pod":
                core.patch_namespaced_pod(name, "default", {"metadata": {"labels": {"n": str(i)}}})
            else:
                core.patch_namespaced_config_map(name, "default", {"data": {"n": str(i)}})
            op = "patch"
        else:
            k, name = live.pop(0)
            (core.delete_namespaced_pod if k == "pod" else core.delete_namespaced_config_map)(name, "default")
            op = "delete"
        dt = time.perf_counter() - t0
        lat.append(dt)
        ops[op] = ops.get(op, 0) + 1
        if (i + 1) % window == 0:
            elapsed = time.perf_counter() - t_window
            windows.append({"window": len(windows) + 1, "requests": len(lat), "req_per_s": round(len(lat) / elapsed, 1),
                            "p50_ms": round(_pct(lat, 50) * 1e3, 2), "p95_ms": round(_pct(lat, 95) * 1e3, 2),
                            "p99_ms": round(_pct(lat, 99) * 1e3, 2),
                            "mean_ms": round(statistics.fmean(lat) * 1e3, 2), "objects": len(live), "ops": ops})
            lat, ops, t_window = [], {}, time.perf_counter()
    api.close()
    return windows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--window", type=int, default=1000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        proc, server = _start(Path(tmp))
        try:
            windows = run(args.requests, args.window, server)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    print(f"{'window':>6} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'objects':>8}")
    for w in windows:
        print(f"{w['window']:>6} {w['req_per_s']:>8} {w['p50_ms']:>8} {w['p95_ms']:>8} {w['p99_ms']:>8} "
              f"{w['objects']:>8}")
    if args.out:
        args.out.write_text(json.dumps({"requests": args.requests, "window": args.window, "pid": os.getpid(),
                                        "windows": windows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
