"""Latency of the kube emulator as a collection grows: p99 per object-count window up to 10,000.

Starts ``python -m falkit.twin.lab_process --emulator-only`` on 127.0.0.1 (``--with-lab``: the whole
lab process, its controllers ticking on the same event loop), then, for each object count (100, 1,000,
2,000, 5,000, 10,000 ConfigMaps in one namespace, in groups of 10 labelled ``app=g<i // 10>``, all
``tier=x``), runs a window of mixed requests through the official client at that count — get, list
with a label selector (``app=g<k>,tier in (x)``: one group, 10 objects, as a Deployment's pods are
selected out of a namespace), list of another namespace's Pods by label, patch, and create+delete
pairs that keep the count steady — and prints req/s and p50/p95/p99 per window. The goal (issue 17):
p99 < 5 ms, flat from 100 to 10,000.

Growing the collection between windows is not measured (it goes through a plain HTTP session).

``--store`` runs the same windows in-process against a ``Store`` (no HTTP, no client) and reports
each request's thread CPU time as well as wall time: the emulator's own cost per request, which a
busy shared machine disturbs far less than end-to-end latency.

    python benchmarks/bench_kube.py [--counts 100,1000,2000,5000,10000] [--window 1000] [--store | --with-lab]
                                    [--out f.json]
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

import requests
from kubernetes import client, config

NS = "bench"


def _start(state: Path, with_lab: bool = False) -> tuple[subprocess.Popen, dict]:
    """The lab process and its lab.json (kubeconfig, CA) (the emulator authenticates like kube-apiserver, over TLS)."""
    argv = [sys.executable, "-m", "falkit.twin.lab_process", "--state-dir", str(state)]
    if not with_lab:
        argv.append("--emulator-only")
    proc = subprocess.Popen(argv, cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 60
    while not (state / "lab.json").exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("lab process did not start")
        time.sleep(0.05)
    return proc, json.loads((state / "lab.json").read_text())


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def _cm(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"cm-{i}", "labels": {"app": f"g{i // 10}", "tier": "x"}},
            "data": {"i": str(i), "pad": "x" * 200}}


def _grow(http: requests.Session, server: str, start: int, stop: int) -> None:
    url = f"{server}/api/v1/namespaces/{NS}/configmaps"
    for i in range(start, stop):
        r = http.post(url, json=_cm(i), timeout=30)
        r.raise_for_status()


def run(counts: list[int], window: int, lab: dict) -> list[dict]:
    cfg = client.Configuration()
    config.load_kube_config(config_file=lab["kubeconfig"], client_configuration=cfg)
    server = cfg.host
    api = client.ApiClient(cfg)
    core = client.CoreV1Api(api)
    http = requests.Session()  # the same credentials and CA as the client
    http.trust_env = False  # else $REQUESTS_CA_BUNDLE beats Session.verify (psf/requests#3829)
    http.verify = lab["kube_ca_file"]
    http.headers["Authorization"] = cfg.api_key.get("authorization") or cfg.get_api_key_with_prefix("BearerToken")
    http.post(f"{server}/api/v1/namespaces", json={"metadata": {"name": NS}}, timeout=30).raise_for_status()
    pod_spec = {"containers": [{"name": "c", "image": "nginx:1.27"}]}
    for j in range(20):  # a second collection listed by label in its own namespace
        core.create_namespaced_pod("default", {"metadata": {"name": f"pod-{j}", "labels": {"app": f"p{j % 4}"}},
                                               "spec": pod_spec})
    for j in range(200):  # warm-up, not measured: the client's connection pool, first-request paths
        core.read_namespaced_pod(f"pod-{j % 20}", "default")
        core.list_namespaced_pod("default", label_selector=f"app=p{j % 4}")
    windows, have, nxt = [], 0, 0
    for count in counts:
        _grow(http, server, nxt, nxt + count - have)
        nxt += count - have
        have = count
        live = list(range(nxt - have, nxt))
        lat: list[float] = []
        by_op: dict[str, list[float]] = {}
        t_window = time.perf_counter()
        for i in range(window):
            step = i % 10
            t0 = time.perf_counter()
            if step in (0, 1, 2):
                core.read_namespaced_config_map(f"cm-{live[(i * 7919) % len(live)]}", NS)
                op = "get"
            elif step in (3, 4, 5):
                core.list_namespaced_config_map(NS, label_selector=f"app=g{live[(i * 31) % len(live)] // 10},tier in (x)")
                op = "list-selector"
            elif step == 6:
                core.list_namespaced_pod("default", label_selector=f"app=p{i % 4}")
                op = "list-selector"
            elif step == 7:
                core.patch_namespaced_config_map(f"cm-{live[(i * 104729) % len(live)]}", NS, {"data": {"n": str(i)}})
                op = "patch"
            elif step == 8:
                core.create_namespaced_config_map(NS, _cm(nxt))
                live.append(nxt)
                nxt += 1
                op = "create"
            else:
                core.delete_namespaced_config_map(f"cm-{live.pop(0)}", NS)
                op = "delete"
            dt = time.perf_counter() - t0
            lat.append(dt)
            by_op.setdefault(op, []).append(dt)
        elapsed = time.perf_counter() - t_window
        windows.append({"objects": count, "requests": len(lat), "req_per_s": round(len(lat) / elapsed, 1),
                        "p50_ms": round(_pct(lat, 50) * 1e3, 2), "p95_ms": round(_pct(lat, 95) * 1e3, 2),
                        "p99_ms": round(_pct(lat, 99) * 1e3, 2), "mean_ms": round(statistics.fmean(lat) * 1e3, 2),
                        "p99_by_op_ms": {k: round(_pct(v, 99) * 1e3, 2) for k, v in sorted(by_op.items())}})
        print(f"{count} objects: p99 {windows[-1]['p99_ms']} ms", file=sys.stderr, flush=True)
    api.close()
    http.close()
    return windows


def _served(counts: list[int], window: int, tmp: Path, with_lab: bool) -> list[dict]:
    proc, server = _start(tmp, with_lab)
    try:
        return run(counts, window, server)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def run_store(counts: list[int], window: int) -> list[dict]:
    """The windows of :func:`run`, in-process against a Store; latencies are thread CPU time."""
    from falkit.twin.kube import Store

    store = Store()
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    pod_spec = {"containers": [{"name": "c", "image": "nginx:1.27"}]}
    for j in range(20):
        store.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"pod-{j}", "namespace": "default",
                                                                      "labels": {"app": f"p{j % 4}"}},
                      "spec": pod_spec})
    windows, have, nxt = [], 0, 0
    for count in counts:
        for i in range(nxt, nxt + count - have):
            store.create({**_cm(i), "metadata": {**_cm(i)["metadata"], "namespace": NS}})
        nxt += count - have
        have = count
        live = list(range(nxt - have, nxt))
        cpu: list[float] = []
        by_op: dict[str, list[float]] = {}
        for i in range(window):
            step = i % 10
            t0 = time.thread_time()
            if step in (0, 1, 2):
                store.get("v1", "ConfigMap", f"cm-{live[(i * 7919) % len(live)]}", NS)
                op = "get"
            elif step in (3, 4, 5):
                store.list("v1", "ConfigMap", NS, label_selector=f"app=g{live[(i * 31) % len(live)] // 10},tier in (x)")
                op = "list-selector"
            elif step == 6:
                store.list("v1", "Pod", "default", label_selector=f"app=p{i % 4}")
                op = "list-selector"
            elif step == 7:
                store.patch("v1", "ConfigMap", f"cm-{live[(i * 104729) % len(live)]}", {"data": {"n": str(i)}},
                            namespace=NS)
                op = "patch"
            elif step == 8:
                store.create({**_cm(nxt), "metadata": {**_cm(nxt)["metadata"], "namespace": NS}})
                live.append(nxt)
                nxt += 1
                op = "create"
            else:
                store.delete("v1", "ConfigMap", f"cm-{live.pop(0)}", NS)
                op = "delete"
            dt = time.thread_time() - t0
            cpu.append(dt)
            by_op.setdefault(op, []).append(dt)
        windows.append({"objects": count, "requests": len(cpu), "req_per_s": round(len(cpu) / sum(cpu), 1),
                        "p50_ms": round(_pct(cpu, 50) * 1e3, 3), "p95_ms": round(_pct(cpu, 95) * 1e3, 3),
                        "p99_ms": round(_pct(cpu, 99) * 1e3, 3), "mean_ms": round(statistics.fmean(cpu) * 1e3, 3),
                        "p99_by_op_ms": {k: round(_pct(v, 99) * 1e3, 3) for k, v in sorted(by_op.items())}})
    return windows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="100,1000,2000,5000,10000")
    ap.add_argument("--window", type=int, default=1000)
    ap.add_argument("--with-lab", action="store_true", help="the whole lab process (controllers too)")
    ap.add_argument("--store", action="store_true", help="in-process against a Store; thread CPU time")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",")]
    if args.store:
        windows = run_store(counts, args.window)
        print("in-process Store, thread CPU time per request (req/s = 1 / mean CPU time)")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            windows = _served(counts, args.window, Path(tmp), args.with_lab)
    print(f"{'objects':>8} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}  p99 by op (ms)")
    for w in windows:
        ops = " ".join(f"{k}={v}" for k, v in w["p99_by_op_ms"].items())
        print(f"{w['objects']:>8} {w['req_per_s']:>8} {w['p50_ms']:>8} {w['p95_ms']:>8} {w['p99_ms']:>8}  {ops}")
    if args.out:
        args.out.write_text(json.dumps({"counts": counts, "window": args.window, "store": args.store, "with_lab": args.with_lab,
                                        "loadavg": os.getloadavg(), "windows": windows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
