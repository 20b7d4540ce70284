"""``falkit run``: execute the runbook's notebooks with papermill and archive the run.

Behaviour:

- Notebooks ``notebooks/NN-*.ipynb`` run in order with papermill's Python API (about 0.8 s per
  notebook less than its CLI; ``shutdown_kernel="immediate"`` saves more — docs/FACTS.md, Notebook
  stack), cwd = the notebooks directory, each with the same parameters: ``params`` (absolute path),
  ``target``, ``apply`` and ``options`` (from ``--set name=value``, YAML values). Unknown or
  ill-typed options are rejected before anything runs (papermill itself only warns).
- No arguments: The Fal (``parameters/fal.yaml``) on the twin, started in its "before" state if none
  is up, ``apply`` on and ``allow_disruptive`` on (the migration changes the VMs' MAC prefix; the
  runner says so). ``--target live`` needs ``--apply``/``--no-apply`` given explicitly and the
  Proxmox token in the environment (or its file).
- Archive ``outputs/<UTC time>-<target>/``: each executed notebook, its HTML export (plotly.js
  embedded once per file, external scripts removed: it renders offline), ``<nb>.result.json`` (the
  notebook's own record), ``run.json`` (per notebook: status, duration, planned/applied changes,
  findings, checks; totals; the falkit version and git commit) and ``journal.jsonl`` (every
  mutating API call). Secrets are scrubbed from every archived file (:mod:`falkit.model.scrub`).
- ``index.html``: the run as a page a person reads — time, falkit version and commit, lab, target,
  parameters, each notebook's status and counts (planned/applied changes, checks ok/failed,
  mutating calls, preflight findings by severity) linking its HTML report; rewritten with
  run.json. Each report is titled ``<notebook> · <lab> · <time>`` and starts with a strip naming
  the run and linking the index.
- Stops at the first failing notebook, prints which notebook and cell and why, exits 1, archives
  what ran; ``run.json`` has status ``failed`` and a ``resume`` command. ``--resume RUN`` continues
  from the failed notebook in the same directory.
- A lock per lab and target (:mod:`falkit.runbook.lock`) refuses a second concurrent run.
- On the twin, the twin is left running (to inspect, re-run or resume) and the last line says so and
  how to stop it: ``falkit twin down`` (:func:`twin_left_running`).
- Speed (issue 17): the next notebook's kernel starts, and imports falkit, while the current one
  runs (:class:`_Kernels`; each notebook still runs in its own fresh kernel); HTML reports are
  exported in a background thread while the next notebook runs (:class:`_Exports`); the archive is
  scrubbed incrementally (:class:`_Scrubber`); the options are checked in a forked child
  (:func:`checked_options`), so the runner never imports the step modules, kubernetes or pandas.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import pickle
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from html import escape
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..clients.journal import read_journal
from ..model.errors import FalkitError, ParameterError, TargetError
from ..model.scrub import MIN_SECRET_LEN, TEXT_SUFFIXES, collect_secrets, scrub_text
from ..ui.widgets import text_table
from .archive import summarize as _summ
from .archive import totals as _totals
from .jupyter import ipc_kernel_config
from .lock import RunLock
from .prewarm import EXEC_LINE

if TYPE_CHECKING:
    from ..model.spec import LabSpec

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_PATTERN = re.compile(r"^\d\d-[\w.-]+\.ipynb$")
MAC_NOTE = ("note: on the twin, allow_disruptive is on: the migration changes the VMs' MAC prefix "
            "({old} -> {new}), a disruptive change. On the live lab allow it yourself: --set allow_disruptive=true")


@dataclass
class RunConfig:
    params: Path
    spec: LabSpec  # ``params`` as prepare loaded it (once per run; the notebooks load it themselves)
    target: str
    apply: bool
    options: dict[str, Any]
    notebooks: list[Path]
    outputs: Path
    notes: list[str] = field(default_factory=list)


def notebooks_dir() -> Path:
    """``$FALKIT_NOTEBOOKS_DIR``, else ``./notebooks`` if present, else the source tree's."""
    env = os.environ.get("FALKIT_NOTEBOOKS_DIR")
    if env:
        return Path(env).resolve()
    here = Path.cwd() / "notebooks"
    return here.resolve() if here.is_dir() else ROOT / "notebooks"


def list_notebooks(directory: Path, only: list[str] | None = None) -> list[Path]:
    found = sorted(p for p in directory.glob("*.ipynb") if NOTEBOOK_PATTERN.match(p.name))
    if only:
        found = [p for p in found if any(p.name.startswith(o) for o in only)]
    if not found:
        raise ParameterError(f"no notebooks NN-*.ipynb in {directory}" + (f" matching {only}" if only else ""))
    return found


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``["allow_disruptive=true", "wait_timeout_s=30"]`` -> options (values parsed as YAML)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ParameterError(f"--set {item!r}: expected NAME=VALUE")
        name, value = item.split("=", 1)
        try:
            out[name.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as exc:
            raise ParameterError(f"--set {item!r}: the value is not valid YAML: {exc}") from None
    return out


def prepare(args: Any, stored: dict | None = None) -> RunConfig:
    """Validate everything before anything runs (``stored``: the run.json of a run to resume)."""
    from ..model.spec import load_spec  # noqa: PLC0415 - the `falkit run` process stays small: kernels do the work (issue 17, benchmarks/bench_memory.py)

    if stored:
        params, target, apply = Path(stored["params"]), stored["target"], stored["apply"]
        options = dict(stored.get("options") or {})
    else:
        params, target = Path(args.params).expanduser().resolve(), args.target
        if target == "live" and args.apply is None:
            raise ParameterError("--target live needs --apply (or --no-apply for a dry run) given explicitly")
        apply = True if args.apply is None else bool(args.apply)
        options = {}
    sets = parse_sets(getattr(args, "set", []))
    notes = []
    spec = load_spec(params)
    if target == "twin" and not stored and "allow_disruptive" not in sets:
        sets["allow_disruptive"] = True
        old = spec.previous.network.mac_prefix if spec.previous else "the old prefix"
        notes.append(MAC_NOTE.format(old=old, new=spec.networks.management.mac_prefix))
    options.update(sets)
    options, defaults = checked_options(options)
    if target == "live":
        ref = spec.secrets.proxmox_token
        if not ref.resolve():
            raise TargetError(f"--target live: the Proxmox API token is not set: {ref.describe()} "
                              "(spec secrets.proxmox_token). Nothing was run.")
    only = [Path(n).stem for n in stored["remaining"]] if stored else getattr(args, "only", None)
    nbs = list_notebooks(notebooks_dir(), only)
    options = {k: v for k, v in options.items() if k in sets or defaults.get(k) != v}
    return RunConfig(params, spec, target, apply, options, nbs, Path(args.outputs), notes)


def _options_now(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    # imported here, not at the top: the options are declared on the step classes, and the runner
    # must not hold every step, the kubernetes client and pandas for the whole run (issue 17; see
    # checked_options, which calls this in a forked child)
    from .options import known_options, validate_options  # noqa: PLC0415 - the `falkit run` process stays small: kernels do the work (issue 17, benchmarks/bench_memory.py)

    return validate_options(options), {k: d for k, (_t, d) in known_options().items()}


def checked_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(validated options, every option's default)``, as :func:`falkit.runbook.validate_options` and
    ``known_options`` give them; a :class:`~falkit.model.errors.ParameterError` as they raise it.

    They import every step module (the options are declared on the step classes), and with them
    the kubernetes client, pandas, numpy...: ~60 MiB the runner would hold for the whole run
    without ever using them (issue 17, the run's peak memory). So, where it can, the runner asks
    a forked child process, which exits right after answering. In-process when the platform has
    no ``fork``, when those modules are imported here already, or when threads run (a fork
    copies no thread: a lock one of them holds would never be released in the child)."""
    if not hasattr(os, "fork") or "falkit.steps.base" in sys.modules or threading.active_count() > 1:
        return _options_now(options)

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer through the pipe, then exit without any cleanup of the parent's
        try:
            os.close(read)
            try:
                answer: tuple = ("ok", _options_now(options))
            except ParameterError as exc:
                answer = ("parameter", str(exc))
            except BaseException as exc:  # noqa: BLE001 - reported by the parent
                answer = ("error", f"{type(exc).__name__}: {exc}")
            with os.fdopen(write, "wb") as fh:
                fh.write(pickle.dumps(answer))
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    kind, value = pickle.loads(data) if data else ("error", "the option check ended without an answer")
    if kind == "ok":
        return value
    if kind == "parameter":
        raise ParameterError(value)
    raise FalkitError(f"checking the notebook options failed: {value}")


@contextlib.contextmanager
def env_override(**values: str) -> Iterator[None]:
    """Set environment variables for the ``with`` block, then restore them (also used by benchmarks/)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _Echo:
    """papermill's ``stdout_file``: the kernels' printed lines (progress) echoed to our stdout."""

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                print(f"    {line}", flush=True)
        return len(text)

    def flush(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------- archive


def report_title(notebook: str, lab: str, when: str) -> str:
    """``20-vms · the-fal · 2026-12-03 08:40 UTC``: an HTML report's title (its tab, its heading)."""
    return f"{notebook} · {lab} · {_human_time(when)}"


def _human_time(when: str | None) -> str:
    if not when:
        return ""
    try:
        t = _dt.datetime.fromisoformat(when)
    except ValueError:
        return when
    return t.astimezone(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def export_html(ipynb: Path, html_path: Path, title: str | None = None, banner: str = "") -> None:
    """HTML export that renders offline: plotly figures embedded (plotly.js once), no external scripts.

    ``title`` becomes the page's ``<title>`` (nbconvert's default is the file name, or "Notebook");
    ``banner`` (HTML) is put at the top of the page: the run it belongs to, a link to its index."""
    import nbformat  # noqa: PLC0415 - the `falkit run` process stays small: kernels do the work (issue 17, benchmarks/bench_memory.py)
    from nbconvert import HTMLExporter  # noqa: PLC0415 - the `falkit run` process stays small: kernels do the work (issue 17, benchmarks/bench_memory.py)

    from .charts import embed_plotly_outputs, plotly_script  # noqa: PLC0415 - the `falkit run` process stays small: kernels do the work (issue 17, benchmarks/bench_memory.py)

    nb = nbformat.read(ipynb, as_version=4)
    figures = embed_plotly_outputs(nb)
    resources = {"metadata": {"name": title or ipynb.stem}}
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb, resources=resources)
    body = re.sub(r"<script[^>]*\ssrc=[\"']https?://[^>]*>\s*</script>", "", body)
    body = re.sub(r"<link[^>]*\shref=[\"']https?://[^>]*>", "", body)
    if figures:
        body = body.replace("</head>", plotly_script() + "</head>", 1)
    if banner:
        body = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + banner, body, count=1)
    html_path.write_text(body, encoding="utf-8")


def falkit_build() -> dict[str, str]:
    """``{"version", "commit"}`` of the falkit that runs: the package version and the source tree's git
    commit (``+dirty`` with uncommitted changes; ``unknown`` outside a git checkout)."""
    try:
        ver = version("falkit")
    except PackageNotFoundError:
        ver = "unknown"
    commit = "unknown"
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode == 0 and head.stdout.strip():
            commit = head.stdout.strip()
            dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10)
            if dirty.returncode == 0 and dirty.stdout.strip():
                commit += "+dirty"
    except (OSError, subprocess.SubprocessError):
        pass
    return {"version": ver, "commit": commit}


INDEX_STYLE = """<style>
body {font-family: system-ui, sans-serif; margin: 1.5em 2em; color: #222}
table {border-collapse: collapse; margin: 0.5em 0 1.2em}
th, td {text-align: left; vertical-align: top; padding: 3px 10px; border-bottom: 1px solid #ddd}
td.num, th.num {text-align: right}
tr.failed td {background: #fdd} tr.running td {background: #ffd}
.status-ok {color: #070; font-weight: bold} .status-failed {color: #b00; font-weight: bold}
.falkit-banner {font-family: system-ui, sans-serif; padding: 6px 12px; background: #f3f3f3; border-bottom: 1px solid #ccc}
</style>"""

_INDEX_COLUMNS = (("notebook", ""), ("status", ""), ("duration", "num"), ("planned", "num"), ("applied", "num"),
                  ("checks ok", "num"), ("checks failed", "num"), ("mutating calls", "num"), ("findings", ""),
                  ("report", ""))


def index_rows(run: dict) -> list[dict[str, Any]]:
    """One row per notebook of ``run`` (run.json) as the index page shows it."""
    rows = []
    for n in run.get("notebooks") or []:
        checks = n.get("checks") or {}
        rows.append({"notebook": n["notebook"], "status": n.get("status", ""),
                     "duration": f"{n['duration_s']:.1f} s" if "duration_s" in n else "",
                     "planned": n.get("planned", 0), "applied": n.get("applied", 0),
                     "checks ok": checks.get("ok", 0), "checks failed": checks.get("failed", 0),
                     "mutating calls": n.get("mutating_calls", 0),
                     "findings": ", ".join(f"{k} {sev}" for sev in ("error", "warning", "info")
                                           if (k := (n.get("findings") or {}).get(sev))),
                     "report": f"{n['notebook']}.html" if n.get("report") else "",
                     "error": n.get("error")})
    return rows


def render_index(run: dict) -> str:
    """The run's ``index.html``: when, which falkit (version, commit), lab, target, parameters and each
    notebook's status and counts, linking each notebook's HTML report (pure: run.json in, HTML out)."""
    t = run.get("totals") or {}
    build = run.get("falkit") or {}
    title = f"falkit run {run.get('id', '')}: {run.get('lab', '')} on the {run.get('target', '')}"
    status = run.get("status", "")
    facts = [("status", f"<span class='status-{escape(status)}'>{escape(status)}</span>"),
             ("started", escape(_human_time(run.get("started")))),
             ("finished", escape(_human_time(run.get("finished"))) or "—"),
             ("falkit", escape(f"{build.get('version', 'unknown')} (commit {build.get('commit', 'unknown')})")),
             ("lab", escape(str(run.get("lab", "")))), ("target", escape(str(run.get("target", "")))),
             ("parameters", escape(str(run.get("params", "")))),
             ("apply", "on" if run.get("apply") else "off (dry run)"),
             ("options", escape(", ".join(f"{k}={v}" for k, v in (run.get("options") or {}).items()) or "defaults"))]
    if run.get("resumed"):
        facts.append(("resumed", escape(", ".join(_human_time(x) for x in run["resumed"]))))
    if run.get("failed"):
        f = run["failed"]
        facts.append(("failed at", escape(f"{f.get('notebook')}: {f.get('ename')}: {str(f.get('evalue', ''))[:300]}")))
        facts.append(("to resume", f"<code>{escape(str(run.get('resume', '')))}</code>"))
    if run.get("remaining") and status != "ok":
        facts.append(("not run yet", escape(", ".join(run["remaining"]))))
    head = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts)
    th = "".join(f"<th class='{c}'>{escape(name)}</th>" for name, c in _INDEX_COLUMNS)
    body = []
    for r in index_rows(run):
        cells = []
        for name, cls in _INDEX_COLUMNS:
            v = r[name]
            if name == "report":
                cell = f"<a href='{escape(v)}'>{escape(v)}</a>" if v else "—"
            elif name == "status":
                cell = f"<span class='status-{escape(str(v))}'>{escape(str(v))}</span>"
            else:
                cell = escape(str(v))
            cells.append(f"<td class='{cls}'>{cell}</td>")
        body.append(f"<tr class='{escape(str(r['status']))}'>{''.join(cells)}</tr>")
    totals = (f"{t.get('notebooks_ok', 0)} notebook(s) ok, {t.get('notebooks_failed', 0)} failed; "
              f"{t.get('planned_changes', 0)} change(s) planned; {applied_text(t)}; "
              f"checks {t.get('checks_ok', 0)} ok, {t.get('checks_failed', 0)} failed; "
              f"{t.get('mutating_calls', 0)} mutating API call(s) (journal.jsonl); "
              f"{t.get('duration_s', 0):.1f} s")
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>{INDEX_STYLE}"
            f"</head><body><h1>{escape(title)}</h1><table class='falkit-run'>{head}</table>"
            f"<h2>Notebooks</h2><table class='falkit-notebooks'><tr>{th}</tr>{''.join(body)}</table>"
            f"<p class='falkit-totals'>{escape(totals)}</p>"
            "<p>Also here: <a href='run.json'>run.json</a> (this page as data), <a href='journal.jsonl'>journal.jsonl</a> "
            "(every mutating API call), each notebook's <code>.ipynb</code> and <code>.result.json</code>.</p>"
            "</body></html>\n")


def report_banner(run: dict, notebook: str) -> str:
    """The strip at the top of a notebook's HTML report: which run, lab, target and falkit, and the way back."""
    build = run.get("falkit") or {}
    text = (f"{notebook} · {run.get('lab', '')} on the {run.get('target', '')} · run {run.get('id', '')} started "
            f"{_human_time(run.get('started'))} · falkit {build.get('version', 'unknown')} ({build.get('commit', 'unknown')})")
    return (f"<div class='falkit-banner' style='font-family: system-ui, sans-serif; font-size: 14px; padding: 6px 12px; "
            f"background: #f3f3f3; border-bottom: 1px solid #ccc'>{escape(text)} · "
            f"<a href='index.html'>all notebooks of this run</a></div>")


def applied_text(t: dict[str, Any]) -> str:
    """The summary's "5 change(s) applied" — and, after a failure, what the failed notebook changed
    besides (so a notebook cut off while applying never reads as "0 change(s) applied")."""
    partly = t.get("partly_applied") or []
    if not partly:
        return f"{t.get('applied_changes', 0)} change(s) applied"
    parts = [f"{p['notebook']}" + (f" ({', '.join(p['steps'])})" if p["steps"] else "")
             + f" partly, {p['mutating_calls']} mutating API call(s) before it failed" for p in partly]
    return f"changes applied: {t.get('applied_changes', 0)} by completed steps, " + "; ".join(parts)


def _write_run(run: dict, run_dir: Path) -> None:
    """run.json, and index.html from it (written together, so the page is never behind the data)."""
    run["totals"] = _totals(run, run_dir)
    for name, text in (("run.json", json.dumps(run, indent=2, default=str) + "\n"), ("index.html", render_index(run))):
        tmp = run_dir / f"{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, run_dir / name)


class _Scrubber:
    """Secrets out of the run archive after every notebook (:mod:`falkit.model.scrub`), incrementally
    (issue 17: rescanning every file after every notebook cost ~12 s of a quiet-machine run, the
    HTML reports with plotly.js being MBs each). A file is scrubbed with every secret known now
    when it is new or changed since its last scrub (inode, mtime, size); an unchanged file only
    with the secrets that became known since (30-talos, for instance, creates the cluster's) —
    so every archived file has been scrubbed with every secret known at each scrub, as before."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.spec = cfg.spec  # loaded once, by prepare
        self.done: dict[Path, tuple[tuple[int, int, int], frozenset[str]]] = {}

    def __call__(self, run_dir: Path) -> int:
        from ..clients.target import private_dir_for, twin_connection  # noqa: PLC0415 - the `falkit run` process stays small: kernels do the work (issue 17, benchmarks/bench_memory.py)

        conn = twin_connection() if self.cfg.target == "twin" else None
        secrets = frozenset(s for s in collect_secrets(spec=self.spec, private_dir=private_dir_for(self.spec.lab, self.cfg.target),
                                                       connection=conn) if s and len(s) >= MIN_SECRET_LEN)
        changed = 0
        for path in sorted(run_dir.rglob("*")):
            if path.suffix.lower() not in TEXT_SUFFIXES or not path.is_file():
                continue
            key = self._key(path)
            stamp, known = self.done.get(path, (None, frozenset()))
            todo = secrets if stamp != key else secrets - known
            if stamp == key and not todo:
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            new = scrub_text(text, todo)
            if new != text:
                path.write_text(new, encoding="utf-8")
                changed += 1
            self.done[path] = (self._key(path), secrets | (known if stamp == key else frozenset()))
        return changed

    @staticmethod
    def _key(path: Path) -> tuple[int, int, int]:
        st = path.stat()
        return (st.st_ino, st.st_mtime_ns, st.st_size)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------- running


def execute(cfg: RunConfig, run_dir: Path, run: dict) -> int:
    """Run ``cfg.notebooks`` into ``run_dir``; updates and writes ``run`` (run.json). 0 ok, 1 failed."""
    import papermill as pm  # noqa: PLC0415 - the `falkit run` process stays small: kernels do the work (issue 17, benchmarks/bench_memory.py)
    from papermill.exceptions import PapermillExecutionError  # noqa: PLC0415 - the `falkit run` process stays small: kernels do the work (issue 17, benchmarks/bench_memory.py)

    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    parameters = {"params": str(cfg.params), "target": cfg.target, "apply": cfg.apply, "options": cfg.options}
    nb_dir = cfg.notebooks[0].parent
    total = len(cfg.notebooks)
    kernels = _Kernels(nb_dir, len(cfg.notebooks))
    exports = _Exports()
    _scrub = _Scrubber(cfg)
    with env_override(FALKIT_RUN_DIR=str(run_dir), PYTHONPATH=pythonpath), kernels, exports:
        for i, nb in enumerate(cfg.notebooks, start=1):
            name = nb.stem
            exports.collect()  # reports of earlier notebooks finished meanwhile: into run.json now
            print(f"[{i}/{total}] {name} …", flush=True)
            entry: dict[str, Any] = {"notebook": name, "status": "running", "started": _now()}
            run["notebooks"] = [n for n in run["notebooks"] if n["notebook"] != name] + [entry]
            run["remaining"] = [p.name for p in cfg.notebooks[i - 1:]]
            _write_run(run, run_dir)
            (run_dir / f"{name}.result.json").unlink(missing_ok=True)
            out = run_dir / nb.name
            t0 = time.monotonic()
            error: dict[str, Any] | None = None
            km = kernels.take()  # started while the previous notebook ran (falkit imported in it)
            kernels.start_next()  # and the next notebook's, while this one runs
            try:
                pm.execute_notebook(str(nb), str(out), parameters=parameters, cwd=str(nb_dir), kernel_name="python3",
                                    progress_bar=False, stdout_file=_Echo(), shutdown_kernel="immediate",
                                    config=ipc_kernel_config(), km=km)
            except PapermillExecutionError as exc:
                first = (exc.source or "").strip().splitlines()[:1]
                error = {"cell": exc.cell_index, "exec_count": exc.exec_count, "source": first[0] if first else "",
                         "ename": exc.ename, "evalue": exc.evalue}
            except Exception as exc:  # kernel died, notebook unreadable, ...: still archived and reported
                error = {"cell": None, "exec_count": None, "source": "", "ename": type(exc).__name__, "evalue": str(exc)}
                error.update(_last_cell(out))  # papermill saved the notebook after each cell: where it stopped
            finally:
                kernels.stop(km)
            entry["duration_s"] = round(time.monotonic() - t0, 3)
            result_file = run_dir / f"{name}.result.json"
            result = json.loads(result_file.read_text()) if result_file.exists() else None
            entry.update(_summ(result))
            entry["status"] = "failed" if error else "ok"
            if out.exists():  # exported in the background while the next notebook runs
                exports.submit(entry, out, run_dir / f"{name}.html", report_title(name, run.get("lab", ""), entry["started"]),
                               report_banner(run, name))
            if error:
                exports.wait()  # the failed notebook's report belongs to the archive it points at
                entry["error"] = error
                resume = f"falkit run --resume {run_dir}"
                run.update(status="failed", failed={"notebook": name, **error}, resume=resume, finished=_now())
                _write_run(run, run_dir)
                _scrub(run_dir)  # after run.json/index.html: they quote the error
                cell = f"cell {error['cell']} (In [{error['exec_count']}]: {error['source']})" if error["cell"] is not None else "before any cell ran"
                done = _applied_so_far(entry, result, run_dir)
                print(f"falkit: {name} failed at {cell}\n  {error['ename']}: {_brief(str(error['evalue']))}{done}\n"
                      f"  archived in {run_dir}\n  to resume: {resume}", file=sys.stderr, flush=True)
                return 1
            print(f"    ok in {entry['duration_s']:.1f} s: {entry['planned']} planned, {entry['applied']} applied, "
                  f"{entry['mutating_calls']} mutating call(s), checks {entry['checks']['ok']} ok/"
                  f"{entry['checks']['failed']} failed", flush=True)
            _scrub(run_dir)
        exports.wait()
    run.update(status="ok", remaining=[], finished=_now())
    run.pop("failed", None)
    run.pop("resume", None)
    _write_run(run, run_dir)
    _scrub(run_dir)
    return 0


class _Kernels:
    """Kernels started one notebook ahead (issue 17): while notebook N runs, notebook N+1's kernel
    starts and imports falkit's stack (:mod:`falkit.runbook.prewarm`, as a kernel start-up line: no
    history, no output). Each notebook still gets its own fresh kernel, started the way papermill
    starts one (``python3`` kernel spec, the IPC transport of :func:`~falkit.runbook.jupyter.ipc_kernel_config`,
    cwd = the notebooks directory, the runner's environment); papermill/nbclient use it through their
    ``km`` argument and it is shut down (immediately, as ``shutdown_kernel="immediate"``) after its
    notebook. ``FALKIT_PREWARM=0`` turns this off (papermill starts each kernel itself)."""

    def __init__(self, cwd: Path, count: int) -> None:
        self.cwd, self.left = cwd, count
        self.enabled = os.environ.get("FALKIT_PREWARM", "1") != "0"
        self.next: Any = None
        self.started = 0

    def __enter__(self) -> _Kernels:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop(self.next)
        self.next = None

    def _start(self) -> Any:
        from jupyter_client.manager import AsyncKernelManager  # noqa: PLC0415 - the `falkit run` process stays small: kernels do the work (issue 17, benchmarks/bench_memory.py)
        from jupyter_core.utils import run_sync  # noqa: PLC0415 - the `falkit run` process stays small: kernels do the work (issue 17, benchmarks/bench_memory.py)


        self.started += 1
        config = ipc_kernel_config()
        # IPC "ports" are picked by checking which socket files exist: two kernels starting at once
        # would pick the same ones (a client then talks to the wrong kernel: "Invalid Signature").
        config.KernelManager.ip = f"{config.KernelManager.ip}-k{self.started}"
        km = AsyncKernelManager(kernel_name="python3", config=config)
        try:
            run_sync(km.start_kernel)(cwd=str(self.cwd), extra_arguments=[f"--IPKernelApp.exec_lines={EXEC_LINE}"])
        except Exception:  # noqa: BLE001 - papermill then starts the kernel itself (and says why if it cannot)
            return None
        return km

    def take(self) -> Any:
        """The kernel for the notebook about to run (None: papermill starts one)."""
        km, self.next = self.next, None
        self.left -= 1
        if km is None and self.enabled:
            km = self._start()
        return km

    def start_next(self) -> None:
        if self.enabled and self.left > 0 and self.next is None:
            self.next = self._start()

    @staticmethod
    def stop(km: Any) -> None:
        if km is None:
            return
        from jupyter_core.utils import run_sync  # noqa: PLC0415 - the `falkit run` process stays small: kernels do the work (issue 17, benchmarks/bench_memory.py)

        with contextlib.suppress(Exception):
            run_sync(km.shutdown_kernel)(now=True)
        with contextlib.suppress(Exception):
            run_sync(km.cleanup_resources)()


class _Exports:
    """HTML reports exported in a background thread (issue 17: off the critical path, in parallel
    with the next notebook). ``collect()`` copies finished exports' results into their run.json
    entries (in the runner's thread: run.json is only written there); ``wait()`` finishes them all.
    A report appears complete or not at all (written as ``.part``, then renamed), so the runner's
    scrub after each notebook never rewrites a half-written file; the scrub after ``wait()`` covers
    every report."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="falkit-export")
        self.pending: list[tuple[dict, Any]] = []

    def __enter__(self) -> _Exports:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wait()
        self.pool.shutdown(wait=True)

    def submit(self, entry: dict, ipynb: Path, html_path: Path, title: str, banner: str) -> None:
        html_path.unlink(missing_ok=True)  # a resumed notebook's old report
        part = html_path.with_name(html_path.name + ".part")  # not scanned by the scrubber while half-written

        def job() -> dict:
            try:
                export_html(ipynb, part, title=title, banner=banner)
                os.replace(part, html_path)  # complete or absent when the runner's scrub looks at it
                return {"report": html_path.name}
            except Exception as exc:  # noqa: BLE001 - an export problem must not hide the run's own result
                return {"html_error": f"{type(exc).__name__}: {exc}"}
        self.pending.append((entry, self.pool.submit(job)))

    def collect(self, wait: bool = False) -> None:
        keep = []
        for entry, fut in self.pending:
            if wait or fut.done():
                entry.update(fut.result())
            else:
                keep.append((entry, fut))
        self.pending = keep

    def wait(self) -> None:
        self.collect(wait=True)


def _applied_so_far(entry: dict, result: dict | None, run_dir: Path) -> str:
    """What the failed notebook had changed: steps applied, a step cut off while applying, and the
    mutating API calls the run's journal holds since the notebook started ('' when nothing)."""

    parts = [f"{n}: {len(c)} change(s) applied" for n, c in (entry.get("applied_changes") or {}).items() if c]
    for n, st in ((result or {}).get("steps") or {}).items():
        if st.get("status") == "applying":
            parts.append(f"{n}: was applying {len(st.get('planned') or [])} planned change(s) when it stopped")
    calls = [j for j in read_journal(run_dir / "journal.jsonl") if str(j.get("t", "")) >= str(entry.get("started", ""))]
    if calls:
        parts.append(f"{len(calls)} mutating API call(s) (journal.jsonl), the last {calls[-1].get('method')} "
                     f"{calls[-1].get('path')}")
    return ("\n  applied before it stopped: " + "; ".join(parts)) if parts else ""


def _last_cell(out: Path) -> dict[str, Any]:
    """Where a notebook stopped when the kernel died: the last code cell papermill started (its
    ``metadata.papermill.start_time``; papermill marks every cell "completed" after a dead kernel,
    so the status says nothing), from the output notebook it saves after every cell. {} if unknown."""
    try:
        import nbformat  # noqa: PLC0415 - the `falkit run` process stays small: kernels do the work (issue 17, benchmarks/bench_memory.py)

        nb = nbformat.read(str(out), as_version=4)
    except Exception:  # noqa: BLE001 - no notebook written yet
        return {}
    last = None
    for i, cell in enumerate(nb.cells):
        if cell.get("cell_type") == "code" and ((cell.get("metadata") or {}).get("papermill") or {}).get("start_time"):
            last = i
    if last is None:
        return {}
    cell = nb.cells[last]
    first = (cell.get("source") or "").strip().splitlines()[:1]
    return {"cell": last, "exec_count": cell.get("execution_count") or "?", "source": first[0] if first else ""}


def pid_alive(pid: Any) -> bool:
    """Whether process ``pid`` (of this machine) still exists."""
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True


def _status(r: dict) -> str:
    """A run's status; "running" whose runner process is gone is "interrupted" (killed, crashed)."""
    status = r.get("status")
    if status == "running" and r.get("pid") and r.get("host") == _host() and not pid_alive(r["pid"]):
        return "interrupted"
    return status


def _host() -> str:
    return socket.gethostname()


def _run_dir_for(resume: str, outputs: Path) -> Path:
    p = Path(resume)
    for cand in (p, outputs / resume):
        if (cand / "run.json").is_file():
            return cand.resolve()
    raise ParameterError(f"--resume {resume}: no run.json in {p} or {outputs / resume}")


def run(args: Any) -> int:
    """The body of ``falkit run`` (see the module docstring)."""
    from ..clients.target import private_dir_for  # noqa: PLC0415 - the `falkit run` process stays small: kernels do the work (issue 17, benchmarks/bench_memory.py)

    stored = None
    run_dir = None
    if getattr(args, "resume", None):
        run_dir = _run_dir_for(args.resume, Path(args.outputs))
        stored = json.loads((run_dir / "run.json").read_text())
        if stored.get("status") == "ok":
            print(f"{run_dir} finished ok; nothing to resume")
            return 0
    cfg = prepare(args, stored)
    for note in cfg.notes:
        print(note)
    spec = cfg.spec
    with RunLock(private_dir_for(spec.lab, cfg.target), what=f"falkit run --target {cfg.target} ({cfg.params})") as lock:
        if lock.took_over:
            print(f"note: took over a stale lock of pid {lock.took_over.get('pid')} ({lock.took_over.get('time')})")
        if cfg.target == "twin":
            _ensure_twin(cfg)
        if run_dir is None:
            stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
            run_dir = (cfg.outputs / f"{stamp}-{cfg.target}").resolve()
            n = 1
            while run_dir.exists():
                n += 1
                run_dir = (cfg.outputs / f"{stamp}-{cfg.target}-{n}").resolve()
            run_dir.mkdir(parents=True)
            run_info = {"id": run_dir.name, "lab": spec.lab, "target": cfg.target, "params": str(cfg.params),
                        "apply": cfg.apply, "options": cfg.options, "started": _now(), "finished": None,
                        "status": "running", "notebooks": [], "remaining": [p.name for p in cfg.notebooks],
                        "resumed": [], "falkit": falkit_build(), "pid": os.getpid(), "host": _host()}
        else:
            run_info = dict(stored, status="running", options=cfg.options, pid=os.getpid(), host=_host())
            run_info.setdefault("falkit", falkit_build())
            run_info.setdefault("resumed", []).append(_now())
            print(f"resuming {run_dir.name} from {cfg.notebooks[0].stem}")
        print(f"falkit run: {spec.lab} on the {cfg.target}, apply={'on' if cfg.apply else 'off'}, "
              f"{len(cfg.notebooks)} notebook(s) -> {run_dir}", flush=True)
        rc = execute(cfg, run_dir, run_info)
        t = run_info["totals"]
        print(f"falkit run: {run_info['status']}: {t['notebooks_ok']} notebook(s) ok, {t['notebooks_failed']} failed, "
              f"{applied_text(t)}, {t['mutating_calls']} mutating API call(s); archive {run_dir}, "
              f"report {run_dir / 'index.html'}")
        return rc


def _ensure_twin(cfg: RunConfig) -> None:
    from ..clients.target import twin_connection  # noqa: PLC0415 - the `falkit run` process stays small: kernels do the work (issue 17, benchmarks/bench_memory.py)
    from ..twin import supervisor  # noqa: PLC0415 - the `falkit run` process stays small: kernels do the work (issue 17, benchmarks/bench_memory.py)

    if twin_connection() is None:
        print("starting the twin (the spec's 'before' state; a bare host when it has no 'previous') …", flush=True)
        supervisor.up(cfg.params, state="auto", state_dir=supervisor.state_root(),
                      time_factor=float(cfg.options.get("time_factor", 0.0)))


def _brief(text: str, lines: int = 8) -> str:
    """The cause without the client's dump (HTTP headers, tracebacks): what an operator reads."""
    for cut in ("\nHTTP response headers:", "\nOriginal traceback:"):
        text = text.split(cut, 1)[0]
    out = [line for line in text.splitlines() if not line.strip().startswith("to resume:")]  # the runner says it once
    return "\n".join(out[:lines] + ([f"  … ({len(out) - lines} more line(s) in the archived notebook)"] if len(out) > lines else []))


def main_run(args: Any) -> int:
    try:
        rc = run(args)
    except ParameterError as exc:
        print(f"falkit run: {exc}\nnothing was run.", file=sys.stderr)
        return 2
    except FalkitError:
        raise
    if (getattr(args, "target", None) or "twin") == "twin":
        twin_left_running()
    return rc


def twin_left_running() -> None:
    """Say that the twin is still up and how to stop it. ``falkit run`` leaves the twin running, as
    ``kind``/``minikube`` leave a cluster they made: the rehearsed lab stays there to look at
    (kubectl, the Proxmox API), and a re-run or ``--resume`` uses it. Idle, it costs ~0% CPU
    (event-driven controllers, issue 17) but ~150-200 MiB of memory until ``falkit twin down``."""
    from ..twin import supervisor  # noqa: PLC0415 - the `falkit run` process stays small: kernels do the work (issue 17, benchmarks/bench_memory.py)

    try:
        st = supervisor.status(supervisor.state_root())
    except Exception:  # noqa: BLE001 - a status problem must not change the run's exit code
        return
    if st.get("up"):
        pids = ", ".join(f"{n} {p['pid']}" for n, p in sorted((st.get("processes") or {}).items()))
        print(f"falkit run: the twin is still running ({pids}; idle it uses ~0% CPU); "
              f"stop it with `falkit twin down`", flush=True)


def list_runs(outputs: Path) -> list[dict[str, Any]]:
    rows = []
    for d in sorted(outputs.glob("*/run.json")):
        try:
            r = json.loads(d.read_text())
        except ValueError:
            continue
        if r.get("status") == "running" and _status(r) == "interrupted":  # say so in run.json too, once
            at = next((n["notebook"] for n in r.get("notebooks") or [] if n.get("status") == "running"), None)
            r.update(status="interrupted", failed={"notebook": at, "ename": "interrupted",
                                                   "evalue": f"the runner (pid {r.get('pid')}) ended without finishing"},
                     resume=f"falkit run --resume {d.parent}")
            _write_run(r, d.parent)
        t = r.get("totals") or {}
        rows.append({"run": d.parent.name, "started": r.get("started"), "target": r.get("target"), "lab": r.get("lab"),
                     "status": _status(r), "ok": t.get("notebooks_ok", 0), "failed": t.get("notebooks_failed", 0),
                     "mutating calls": t.get("mutating_calls", 0),
                     "where": (r.get("failed") or {}).get("notebook", "")})
    return rows


def main_runs(args: Any) -> int:

    rows = list_runs(Path(args.outputs))
    if not rows:
        print(f"no runs in {args.outputs}")
        return 0
    print(text_table(rows, ["run", "started", "target", "lab", "status", "ok", "failed", "mutating calls", "where"]))
    return 0
