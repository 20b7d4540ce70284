"""The ``falkit`` command line.

Exit codes: 0 ok; 1 the lab has errors (findings) or a step failed; 2 invalid parameters or usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import FalkitError, SpecError

DEFAULT_PARAMS = "parameters/fal.yaml"


def _table(rows: list[dict], columns: list[str], widths: dict[str, int] | None = None) -> str:
    widths = widths or {}
    if not rows:
        return "(none)"
    w = {c: min(widths.get(c, 60), max(len(c), *(len(str(r.get(c, ""))) for r in rows))) for c in columns}
    lines = ["  ".join(c.ljust(w[c]) for c in columns), "  ".join("-" * w[c] for c in columns)]
    for r in rows:
        cells = []
        for c in columns:
            text = str(r.get(c, ""))
            cells.append(text.ljust(w[c]) if len(text) <= w[c] or c == columns[-1] else text[: w[c] - 1] + "…")
        lines.append("  ".join(cells))
    return "\n".join(lines)


def cmd_plan(args: argparse.Namespace) -> int:
    from .findings import has_errors, preflight
    from .plan import derive_plan
    from .spec import load_spec

    spec = load_spec(args.params)
    plan = derive_plan(spec)
    findings = preflight(spec, plan)
    if args.json:
        from dataclasses import asdict

        print(json.dumps({"params": str(args.params), "plan": asdict(plan), "findings": [f.to_json() for f in findings]}, indent=2, default=str))
    else:
        print(f"falkit plan for {spec.lab} ({args.params})\n")
        print("Machines")
        print(_table(plan.rows(), ["name", "vmid", "kind", "role", "cores", "memory_gb", "disks", "mgmt", "storage"]))
        print(f"\nLoadBalancer pool {plan.lb_pool[0]}-{plan.lb_pool[1]} ({plan.lb_pool_size} addresses)")
        print(_table([{"service": f"{s.namespace}/{s.name}", "old": s.old_ip or "", "requested": s.requested, "new": s.ip or "-"} for s in plan.services],
                     ["service", "old", "requested", "new"]))
        print(f"\nio-engine coreList: {list(plan.io_engine_cores)}")
        counts = {s: sum(1 for f in findings if f.severity == s) for s in ("error", "warning", "info")}
        print(f"\nFindings: {counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info")
        for f in findings:
            print(f"\n{f.severity.upper():8} {f.id}  ({f.subject})\n         {f.message}")
            if f.place:
                print(f"         at {f.place}")
            if f.fix:
                print(f"         fix: {f.fix}")
    return 1 if has_errors(findings) else 0


def cmd_twin(args: argparse.Namespace) -> int:
    from .twin import supervisor

    if args.twin_cmd == "up":
        conn = supervisor.up(args.params, state=args.state, time_factor=args.time_factor, restore=args.restore)
        print(json.dumps({k: v for k, v in conn.items() if k != "pids"}, indent=2))
        print("\nthe twin is up. Notebooks with target='twin' use it; `falkit twin down` stops it.")
        return 0
    if args.twin_cmd == "status":
        print(json.dumps(supervisor.status(), indent=2))
        return 0
    if args.twin_cmd == "down":
        supervisor.down()
        print("the twin is down")
        return 0
    if args.twin_cmd == "snapshot":
        print(supervisor.snapshot(args.path))
        return 0
    return 2


def cmd_lab(args: argparse.Namespace) -> int:
    from .jupyter import run_lab

    return run_lab(Path(__file__).resolve().parents[1], port=args.port)


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench.local import main_bench

    return main_bench(args)


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import main_run

    return main_run(args)


def cmd_runs(args: argparse.Namespace) -> int:
    from .runner import main_runs

    return main_runs(args)


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import main_doctor

    return main_doctor(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="falkit", description="Migrate The Fal to Talos + Cilium + Mayastor, rehearsed on the twin.")
    sub = p.add_subparsers(dest="cmd", required=True)

    sp = sub.add_parser("plan", help="validate a lab spec and show the derived plan and preflight findings")
    sp.add_argument("params", nargs="?", default=DEFAULT_PARAMS, type=Path)
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.set_defaults(fn=cmd_plan)

    tp = sub.add_parser("twin", help="start, inspect or stop the simulated lab (loopback only)")
    tsub = tp.add_subparsers(dest="twin_cmd", required=True)
    up = tsub.add_parser("up")
    up.add_argument("--params", default=DEFAULT_PARAMS, type=Path)
    up.add_argument("--state", choices=["auto", "before", "empty"], default="auto",
                    help="auto: 'before' when the spec has a 'previous' section, else 'empty'")
    up.add_argument("--time-factor", type=float, default=0.0, help="0: instant; 0.05: a watchable demo")
    up.add_argument("--restore", type=Path, default=None, help="a snapshot file to restore")
    tsub.add_parser("status")
    tsub.add_parser("down")
    snap = tsub.add_parser("snapshot")
    snap.add_argument("path", type=Path)
    tp.set_defaults(fn=cmd_twin)

    rp = sub.add_parser("run", help="run the notebooks with papermill and archive the run under outputs/")
    rp.add_argument("--params", default=DEFAULT_PARAMS, type=Path)
    rp.add_argument("--target", choices=["twin", "live"], default="twin")
    rp.add_argument("--apply", action=argparse.BooleanOptionalAction, default=None,
                    help="apply the plans (default: on for the twin, must be given for live)")
    rp.add_argument("--only", nargs="*", default=None, help="notebook prefixes to run, e.g. 00 10 20")
    rp.add_argument("--resume", default=None, help="continue a failed run (its directory or id)")
    rp.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a notebook option (YAML value)")
    rp.add_argument("--outputs", default="outputs", type=Path)
    rp.set_defaults(fn=cmd_run)

    lp = sub.add_parser("runs", help="list archived runs")
    lp.add_argument("--outputs", default="outputs", type=Path)
    lp.set_defaults(fn=cmd_runs)

    jp = sub.add_parser("lab", help="JupyterLab on 127.0.0.1 (random token) to step through the notebooks")
    jp.add_argument("--port", type=int, default=None)
    jp.set_defaults(fn=cmd_lab)

    dp = sub.add_parser("doctor", help="read-only readiness report for a target: one row per check, with the fix")
    dp.add_argument("--target", choices=["live", "twin"], default="twin")
    dp.add_argument("--params", default=DEFAULT_PARAMS, help=f"lab spec (default {DEFAULT_PARAMS})")
    dp.add_argument("--json", action="store_true", help="the rows as JSON")
    dp.set_defaults(fn=cmd_doctor)

    bp = sub.add_parser("bench", help="storage benchmarks with fio")
    bp.add_argument("--local", action="store_true", required=True, help="run the fio jobs against a local file")
    bp.add_argument("--dir", default=None)
    bp.add_argument("--profile", choices=["quick", "full"], default="quick")
    bp.add_argument("--json", action="store_true")
    bp.set_defaults(fn=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except SpecError as exc:
        print(f"falkit: {exc}", file=sys.stderr)
        print("nothing was changed.", file=sys.stderr)
        return 2
    except FalkitError as exc:
        print(f"falkit: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
