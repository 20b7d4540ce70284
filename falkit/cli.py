"""The ``falkit`` command line.

Exit codes: 0 ok; 1 the lab has errors (findings) or a step failed; 2 invalid parameters or usage.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from .model.errors import FalkitError, SpecError

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
    from .model.design import design_of  # noqa: PLC0415 - each subcommand loads only what it uses (start-up of `falkit --help`, issue 17)
    from .model.findings import has_errors, preflight  # noqa: PLC0415 - each subcommand loads only what it uses (start-up of `falkit --help`, issue 17)
    from .model.spec import load_spec  # noqa: PLC0415 - each subcommand loads only what it uses (start-up of `falkit --help`, issue 17)

    spec = load_spec(args.params)
    design = design_of(spec)
    findings = preflight(spec, design)
    if args.json:
        from dataclasses import asdict  # noqa: PLC0415 - each subcommand loads only what it uses (start-up of `falkit --help`, issue 17)

        print(json.dumps({"params": str(args.params), "plan": asdict(design), "findings": [f.to_json() for f in findings]}, indent=2, default=str))
    else:
        print(f"falkit plan for {spec.lab} ({args.params})\n")
        print("Machines")
        print(_table(design.rows(), ["name", "vmid", "kind", "role", "cores", "memory_gb", "disks", "mgmt", "storage"]))
        print(f"\nLoadBalancer pool {design.lb_pool_text} ({design.lb_pool_size} addresses)")
        print(_table([{"service": f"{s.namespace}/{s.name}", "old": s.old_ip or "", "requested": s.requested, "new": s.ip or "-"} for s in design.services],
                     ["service", "old", "requested", "new"]))
        print(f"\nio-engine coreList: {list(design.io_engine_cores)}")
        counts = {s: sum(1 for f in findings if f.severity == s) for s in ("error", "warning", "info")}
        print(f"\nFindings: {counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info")
        for f in findings:
            print(f"\n{f.severity.upper():8} {f.id}  ({f.subject})\n         {f.message}")
            if f.place:
                print(f"         at {f.place}")
            if f.fix:
                print(f"         fix: {f.fix}")
    return 1 if has_errors(findings) else 0


def _want_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False)) or getattr(args, "output", "table") == "json"


def twin_rows(conn: dict | None, processes: dict | None = None) -> list[dict]:
    """One row per twin component: what it is, where it listens, its process and whether it is alive."""
    conn = conn or {}
    pids = dict(conn.get("pids") or {})
    alive = {name: p.get("alive") for name, p in (processes or {}).items()}
    for name, p in (processes or {}).items():
        pids.setdefault(name, p.get("pid"))

    def state(proc: str) -> str:
        return "-" if proc not in alive else ("running" if alive[proc] else "stopped")

    px = conn.get("proxmox") or {}
    rows = [{"COMPONENT": "proxmox", "ENDPOINT": f"https://{px['host']}:{px['port']} (node {px.get('node')})" if px else "-",
             "PROCESS": "pve", "PID": pids.get("pve", "-"), "STATE": state("pve")}]
    if "lab" in pids or conn.get("kubernetes"):
        kube = conn.get("kubernetes") or {}
        rows += [{"COMPONENT": "kubernetes", "ENDPOINT": kube.get("server") or "-", "PROCESS": "lab",
                  "PID": pids.get("lab", "-"), "STATE": state("lab")},
                 {"COMPONENT": "lab API (talos, helm)", "ENDPOINT": conn.get("lab_api") or "-", "PROCESS": "lab",
                  "PID": pids.get("lab", "-"), "STATE": state("lab")}]
        if conn.get("truenas"):
            rows.append({"COMPONENT": "truenas", "ENDPOINT": conn["truenas"].get("url", "-"), "PROCESS": "lab",
                         "PID": pids.get("lab", "-"), "STATE": state("lab")})
    if conn.get("gitops"):
        rows.append({"COMPONENT": "gitops repository", "ENDPOINT": conn["gitops"].get("checkout", "-"), "PROCESS": "-",
                     "PID": "-", "STATE": "-"})
    return rows


def _print_twin(conn: dict | None, processes: dict | None, header: str) -> None:
    from .ui.widgets import text_table  # noqa: PLC0415 - each subcommand loads only what it uses (start-up of `falkit --help`, issue 17)

    print(header)
    print(text_table(twin_rows(conn, processes), ["COMPONENT", "ENDPOINT", "PROCESS", "PID", "STATE"], limit=100))
    if conn:
        kube = (conn.get("kubernetes") or {}).get("kubeconfig")
        print(f"\nstate dir {conn.get('state_dir')}; started {conn.get('started')}"
              + (f"\nkubectl: KUBECONFIG={kube} kubectl get nodes" if kube else ""))


def cmd_twin(args: argparse.Namespace) -> int:
    from .twin import supervisor  # noqa: PLC0415 - each subcommand loads only what it uses (start-up of `falkit --help`, issue 17)

    if args.twin_cmd in ("up", "reset"):
        if args.twin_cmd == "up":
            conn = supervisor.up(args.params, state=args.state, time_factor=args.time_factor, restore=args.restore,
                                 fresh=args.fresh, quiet=True)
        else:
            conn = supervisor.reset(args.params, state=args.state, time_factor=args.time_factor, quiet=True)
        st = supervisor.status()
        if _want_json(args):
            print(json.dumps({k: v for k, v in conn.items() if k != "pids"} | {"processes": st["processes"]}, indent=2))
            return 0
        if conn.get("already_up"):
            header = "the twin was already up (`falkit twin reset` restarts it in its start state):"
        elif args.twin_cmd == "reset":
            header = "the twin is reset to its start state and up:"
        else:
            header = "the twin is up:"
        _print_twin(conn, st["processes"], header)
        if conn.get("removed"):
            print("removed what the last twin left: " + ", ".join(conn["removed"]))
        print("\nNotebooks with target='twin' use it; `falkit twin down` stops it.")
        return 0
    if args.twin_cmd == "status":
        st = supervisor.status()
        if _want_json(args):
            print(json.dumps(st, indent=2))
        else:
            _print_twin(st["connection"], st["processes"], "the twin is up:" if st["up"] else
                        f"the twin is down (state dir {st['state_dir']}); `falkit twin up` starts it")
        return 0 if st["up"] else 3
    if args.twin_cmd == "down":
        res = supervisor.down()
        if _want_json(args):
            print(json.dumps(res, indent=2))
        else:
            print("the twin is down" + (f" (stopped pids {', '.join(map(str, res['stopped']))})" if res["stopped"] else
                                        " (it was not running)"))
        return 0
    if args.twin_cmd == "snapshot":
        print(supervisor.snapshot(args.path))
        return 0
    return 2


def cmd_lab(args: argparse.Namespace) -> int:
    from .runbook.jupyter import run_lab  # noqa: PLC0415 - each subcommand loads only what it uses (start-up of `falkit --help`, issue 17)

    _exit_on_sigterm()
    return run_lab(Path(__file__).resolve().parents[1], port=args.port)


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM, so ``finally`` blocks stop what the command started."""


def _exit_on_sigterm() -> None:
    """SIGTERM (systemd, ``kill``, a container runtime) unwinds like Ctrl-C: the command's cleanup
    runs (``falkit lab`` stops JupyterLab and its kernels; ``falkit bench`` removes fio's file).
    Exit status 143 (128 + SIGTERM), as a shell reports a process killed by it."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench.local import main_bench  # noqa: PLC0415 - each subcommand loads only what it uses (start-up of `falkit --help`, issue 17)

    _exit_on_sigterm()
    return main_bench(args)


def resolve_only(only: list[str] | None) -> list[str] | None:
    """``--only`` items -> notebook stems, in notebook order: a number or prefix (``00``, ``4`` for
    40 and 45), a full name (``00-preflight``, ``00-preflight.ipynb``) or a name without its number
    (``preflight``, ``truenas-plex``). An item that names no notebook is a
    :class:`~falkit.model.errors.ParameterError` listing the notebooks."""
    from .model.errors import ParameterError  # noqa: PLC0415 - each subcommand loads only what it uses (start-up of `falkit --help`, issue 17)
    from .runbook.runner import NOTEBOOK_PATTERN, notebooks_dir  # noqa: PLC0415 - each subcommand loads only what it uses (start-up of `falkit --help`, issue 17)

    if not only:
        return only
    directory = notebooks_dir()
    stems = sorted(p.stem for p in directory.glob("*.ipynb") if NOTEBOOK_PATTERN.match(p.name))
    chosen: set[str] = set()
    for item in only:
        key = Path(item).name.removesuffix(".ipynb")
        hits = [s for s in stems if key and (s.startswith(key) or s.split("-", 1)[1] == key)]
        if not hits:
            raise ParameterError(f"--only {item!r} names no notebook; the notebooks in {directory} are: "
                                 f"{', '.join(stems)} (give a number, e.g. 40, a name, e.g. cilium, or both, "
                                 "e.g. 40-cilium)")
        chosen.update(hits)
    return [s for s in stems if s in chosen]


def cmd_run(args: argparse.Namespace) -> int:
    from .model.errors import ParameterError  # noqa: PLC0415 - each subcommand loads only what it uses (start-up of `falkit --help`, issue 17)
    from .runbook.runner import main_run  # noqa: PLC0415 - each subcommand loads only what it uses (start-up of `falkit --help`, issue 17)

    try:
        args.only = resolve_only(args.only)
    except ParameterError as exc:
        print(f"falkit run: {exc}\nnothing was run.", file=sys.stderr)
        return 2
    outputs = Path(args.outputs)
    before = {p.parent for p in outputs.glob("*/run.json")}
    rc = main_run(args)
    runs = sorted({p.parent for p in outputs.glob("*/run.json")} - before)
    if args.resume:
        runs = [p for p in (Path(args.resume), outputs / args.resume) if (p / "run.json").is_file()][:1]
    if runs:
        run = json.loads((runs[-1] / "run.json").read_text())
        if run.get("apply") is False:  # a dry run: say what it would change
            print()
            print(would_change(run, runs[-1]))
    return rc


_OP = {"create": "+", "update": "~", "delete": "-", "action": ">"}


def _change_line(c: dict) -> str:
    """One planned change of a result (``diff.Change`` as JSON) as a line: ``~ vm-config talos-cp-01 net0: a -> b``."""
    target = " ".join(x for x in (c.get("kind"), c.get("name")) if x)
    field = c.get("field") or ""
    old, new = c.get("old") or "", c.get("new") or ""
    text = f"{_OP.get(c.get('op', ''), '?')} {target}" + (f" {field}" if field else "")
    if old or new:
        text += f": {old} -> {new}" if old else f": {new}"
    if c.get("flags"):
        text += f"  [{c['flags']}]"
    if c.get("reason"):
        text += f"  ({c['reason']})"
    return text


def would_change(run: dict, run_dir: Path | None = None) -> str:
    """What a ``--no-apply`` run planned, per notebook and step, read from the notebooks' results
    (``<nb>.result.json``, else run.json's ``planned_changes``): each change, the step's status
    (refusals say what they need) and its notes."""
    lines = ["What --apply would change (plans read from each notebook's result; nothing was applied):"]
    total = 0
    for nb in run.get("notebooks") or []:
        name = nb["notebook"]
        result = None
        if run_dir is not None and (run_dir / f"{name}.result.json").is_file():
            try:
                result = json.loads((run_dir / f"{name}.result.json").read_text())
            except ValueError:
                result = None
        steps = (result or {}).get("steps") or {s: {"planned": p} for s, p in (nb.get("planned_changes") or {}).items()}
        status = nb.get("status")
        lines.append(f"\n{name}" + ("" if status == "ok" else f"  ({status}: {((nb.get('error') or {}).get('ename') or '')})"))
        if not steps:
            lines.append("  nothing to change")
        for step, info in steps.items():
            planned = info.get("planned") or []
            total += len(planned)
            st = info.get("status") or ""
            show_status = "refus" in st or (st and not planned)  # a refusal always; otherwise only with nothing planned
            lines.append(f"  {step}: {len(planned)} change(s)" + (f" — {st}" if show_status else ""))
            lines += [f"    {_change_line(c)}" for c in planned]
            lines += [f"    note: {n}" for n in info.get("notes") or []]
    lines.append(f"\n{total} change(s) planned in {len(run.get('notebooks') or [])} notebook(s); "
                 "run again with --apply to apply them")
    return "\n".join(lines)


def cmd_show_plan(args: argparse.Namespace) -> int:
    """The plans archived in FILE (a plan JSON, a notebook's result.json or a run directory), shown
    as the notebook showed them."""
    from .plan.diff import load_plans  # noqa: PLC0415 - each subcommand loads only what it uses (start-up of `falkit --help`, issue 17)

    if not Path(args.file).exists():
        print(f"falkit show-plan: no file or directory {args.file}", file=sys.stderr)
        return 2
    plans = load_plans(args.file, args.step)
    if not plans:
        print(f"falkit show-plan: no archived plan in {args.file}" + (f" for step {args.step}" if args.step else ""),
              file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([p.to_json(redact=True) for p in plans], indent=2, default=str))
    else:
        print("\n\n".join(str(p) for p in plans))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from .runbook.runner import list_runs  # noqa: PLC0415 - each subcommand loads only what it uses (start-up of `falkit --help`, issue 17)
    from .ui.widgets import text_table  # noqa: PLC0415 - each subcommand loads only what it uses (start-up of `falkit --help`, issue 17)

    outputs = Path(args.outputs)
    if args.run:
        run_dir = next((p for p in (Path(args.run), outputs / args.run) if (p / "run.json").is_file()), None)
        if run_dir is None:
            print(f"falkit runs: no run {args.run!r} (no run.json in {args.run} or {outputs / args.run}); "
                  f"`falkit runs --outputs {outputs}` lists them", file=sys.stderr)
            return 2
        run = json.loads((run_dir / "run.json").read_text())
        if _want_json(args):
            print(json.dumps(run, indent=2))
            return 0
        print(show_run(run, run_dir))
        return 0
    rows = list_runs(outputs)
    if _want_json(args):
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no runs in {outputs}")
        return 0
    print(text_table(rows, ["run", "started", "target", "lab", "status", "ok", "failed", "mutating calls", "where"]))
    return 0


def show_run(run: dict, run_dir: Path) -> str:
    """One archived run as text: what, where, when, and a row per notebook."""
    from .ui.widgets import text_table  # noqa: PLC0415 - each subcommand loads only what it uses (start-up of `falkit --help`, issue 17)

    t = run.get("totals") or {}
    head = [f"run       {run.get('id') or run_dir.name}  ({run_dir})",
            f"lab       {run.get('lab')} on the {run.get('target')}, apply={'on' if run.get('apply') else 'off'}, "
            f"params {run.get('params')}",
            f"status    {run.get('status')}  started {run.get('started')}  finished {run.get('finished') or '-'}",
            f"totals    {t.get('notebooks_ok', 0)} notebook(s) ok, {t.get('notebooks_failed', 0)} failed, "
            f"{t.get('planned_changes', 0)} planned, {t.get('applied_changes', 0)} applied, "
            f"{t.get('mutating_calls', 0)} mutating API call(s), checks {t.get('checks_ok', 0)} ok/"
            f"{t.get('checks_failed', 0)} failed"]
    if run.get("options"):
        head.append(f"options   {json.dumps(run['options'])}")
    rows = [{"notebook": n.get("notebook"), "status": n.get("status"), "seconds": n.get("duration_s", ""),
             "planned": n.get("planned", 0), "applied": n.get("applied", 0),
             "checks ok/failed": f"{(n.get('checks') or {}).get('ok', 0)}/{(n.get('checks') or {}).get('failed', 0)}",
             "mutating calls": n.get("mutating_calls", 0),
             "error": (f"{n['error'].get('ename')}: {str(n['error'].get('evalue') or '').splitlines()[0] if n['error'].get('evalue') else ''}"
                       if n.get("error") else "")}
            for n in run.get("notebooks") or []]
    out = "\n".join(head) + "\n\n" + text_table(rows, ["notebook", "status", "seconds", "planned", "applied",
                                                         "checks ok/failed", "mutating calls", "error"], limit=90)
    if run.get("remaining") and run.get("status") != "ok":
        out += "\n\nnot run yet: " + ", ".join(Path(r).stem for r in run["remaining"])
    if run.get("resume"):
        out += f"\nto resume: {run['resume']}"
    return out


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table (same as -o json)")
    parser.add_argument("-o", "--output", choices=["table", "json"], default="table",
                        help="output format: table (default) or json")


def _twin_spec_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default=DEFAULT_PARAMS, type=Path,
                        help=f"the lab spec the twin is built from (default: {DEFAULT_PARAMS})")
    parser.add_argument("--state", choices=["auto", "before", "empty"], default="auto",
                        help="before: the lab before the migration; empty: a bare host; "
                             "auto (default): 'before' when the spec has a 'previous' section, else 'empty'")
    parser.add_argument("--time-factor", type=float, default=0.0,
                        help="real seconds per simulated second for Proxmox tasks and controllers "
                             "(default 0: instant; 0.05: a watchable demo)")


def cmd_doctor(args: argparse.Namespace) -> int:
    from .runbook.doctor import main_doctor  # noqa: PLC0415 - each subcommand loads only what it uses (start-up of `falkit --help`, issue 17)

    return main_doctor(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="falkit", description="Migrate The Fal to Talos + Cilium + Mayastor, rehearsed on the twin.",
                                epilog="exit codes: 0 ok; 1 the lab has errors or a step failed; 2 invalid parameters "
                                       "or usage; 3 `twin status`: the twin is down")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    sp = sub.add_parser("plan", help="validate a lab spec and show the derived design and preflight findings")
    sp.add_argument("params", nargs="?", default=DEFAULT_PARAMS, type=Path,
                    help=f"the lab spec (YAML; default: {DEFAULT_PARAMS})")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.set_defaults(fn=cmd_plan)

    tp = sub.add_parser("twin", help="start, inspect, reset or stop the simulated lab (loopback only)",
                        description="The twin always starts in its start state: `up` after `down` builds the lab "
                                    "anew and removes what the last twin left (its GitOps repository, its private "
                                    "state, benchmark results). `up --restore SNAPSHOT` (or --no-fresh) keeps them.")
    tsub = tp.add_subparsers(dest="twin_cmd", required=True, metavar="TWIN_COMMAND")
    up = tsub.add_parser("up", help="start the twin (a table of its endpoints; -o json for JSON)")
    _twin_spec_options(up)
    up.add_argument("--restore", type=Path, default=None,
                    help="a snapshot written by `falkit twin snapshot` (its name or path) to continue from: keeps the "
                         "GitOps repository and the private state, whose kubeconfigs follow the new port")
    up.add_argument("--fresh", action=argparse.BooleanOptionalAction, default=None,
                    help="remove what the last twin left (GitOps repository, private state) before starting "
                         "(default: on, off with --restore)")
    _output_options(up)
    rs = tsub.add_parser("reset", help="stop the twin if it runs and start it again in its start state "
                                       "(GitOps repository and private state included)")
    _twin_spec_options(rs)
    _output_options(rs)
    st = tsub.add_parser("status", help="is the twin up: its processes and endpoints (exit 3 when down)")
    _output_options(st)
    dn = tsub.add_parser("down", help="stop the twin's processes (exactly those `twin up` started)")
    _output_options(dn)
    snap = tsub.add_parser("snapshot", help="save the running twin (Proxmox, lab and private state) inside its state dir")
    snap.add_argument("path", type=Path, help="a name (written to $FALKIT_STATE_DIR/twin/snapshots/NAME) or a path inside "
                                              "the twin's state dir; the lab half goes to PATH.lab, the private state "
                                              "to PATH.private (all 0600: they hold the lab's secrets)")
    tp.set_defaults(fn=cmd_twin)

    rp = sub.add_parser("run", help="run the notebooks with papermill and archive the run under outputs/")
    rp.add_argument("--params", default=DEFAULT_PARAMS, type=Path,
                    help=f"the lab spec every notebook gets (default: {DEFAULT_PARAMS})")
    rp.add_argument("--target", choices=["twin", "live"], default="twin",
                    help="twin (default): the simulated lab, started if none is up; live: the lab in the spec")
    rp.add_argument("--apply", action=argparse.BooleanOptionalAction, default=None,
                    help="apply the plans (default: on for the twin, must be given for live); "
                         "--no-apply plans only and lists what would change")
    rp.add_argument("--only", nargs="*", default=None, metavar="NOTEBOOK",
                    help="the notebooks to run: numbers (00 10), names (preflight cilium) or both (40-cilium)")
    rp.add_argument("--resume", default=None, metavar="RUN",
                    help="continue a failed run from its failed notebook (its directory or id under --outputs)")
    rp.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a notebook option (YAML value), e.g. --set allow_disruptive=true; repeatable")
    rp.add_argument("--outputs", default="outputs", type=Path,
                    help="the archive directory; each run goes to OUTPUTS/<time>-<target>/ (default: outputs)")
    rp.set_defaults(fn=cmd_run)

    pp = sub.add_parser("show-plan", help="show the plans archived in a plan JSON, a result.json or a run directory")
    pp.add_argument("file", type=Path, help="a plan JSON, a notebook's *.result.json, or a run directory")
    pp.add_argument("--step", default=None, help="only this step's plan (e.g. cilium)")
    pp.add_argument("--json", action="store_true", help="the plans as JSON")
    pp.set_defaults(fn=cmd_show_plan)

    lp = sub.add_parser("runs", help="list archived runs, or show one")
    lp.add_argument("run", nargs="?", default=None, help="a run to show: its id (directory name) or directory")
    lp.add_argument("--outputs", default="outputs", type=Path, help="the archive directory (default: outputs)")
    _output_options(lp)
    lp.set_defaults(fn=cmd_runs)

    jp = sub.add_parser("lab", help="JupyterLab on 127.0.0.1 (random token) to step through the notebooks")
    jp.add_argument("--port", type=int, default=None,
                    help="the port on 127.0.0.1 to listen on (default: a free random port)")
    jp.set_defaults(fn=cmd_lab)

    dp = sub.add_parser("doctor", help="read-only readiness report for a target: one row per check, with the fix")
    dp.add_argument("--target", choices=["live", "twin"], default="twin",
                    help="the lab to check: twin (default; started if none is up) or live (read-only)")
    dp.add_argument("--params", default=DEFAULT_PARAMS, help=f"lab spec (default {DEFAULT_PARAMS})")
    dp.add_argument("--json", action="store_true", help="the rows as JSON")
    dp.add_argument("--plex-image", default=None, metavar="IMAGE",
                    help="60-truenas-plex's plex_image (default Plex's OCI image; '' checks the Debian LXC template)")
    dp.set_defaults(fn=cmd_doctor)

    from .bench.local import add_bench_arguments  # noqa: PLC0415 - each subcommand loads only what it uses (start-up of `falkit --help`, issue 17)

    bp = sub.add_parser("bench", help="storage benchmarks with fio on this machine")
    add_bench_arguments(bp)
    bp.set_defaults(fn=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rc = args.fn(args)
        sys.stdout.flush()  # inside the try: a closed pipe (`falkit plan --json | head`) is caught below
        return rc
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as coreutils do. Point stdout at /dev/null so
        # the interpreter's final flush does not raise again (Python docs, "Note on SIGPIPE").
        import os  # noqa: PLC0415 - each subcommand loads only what it uses (start-up of `falkit --help`, issue 17)

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a writer killed by it
    except KeyboardInterrupt:
        print("falkit: interrupted", file=sys.stderr)
        return 130  # 128 + SIGINT
    except SpecError as exc:
        print(f"falkit: {exc}", file=sys.stderr)
        print("nothing was changed.", file=sys.stderr)
        return 2
    except FalkitError as exc:
        print(f"falkit: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
