"""Step benchmarks (in 50-mayastor): kbench-style fio Jobs on Mayastor, Longhorn and local-path.

- **observe**: which storage is there — the Mayastor StorageClass (``spec.mayastor.storage_class``),
  a Longhorn one (provisioner ``driver.longhorn.io`` or ``spec.previous.longhorn_storage_class``),
  a local-path one (provisioner ``rancher.io/local-path``) — and which results this run already has.
- **plan** (pure): per present target a PVC ``falkit-bench/fio-<target>`` big enough for the
  profile's file, and one fio run (``falkit.bench.fio.k8s_job_manifest``). A measurement is made
  once per *storage fingerprint* (:func:`fingerprint`: target kind, profile, the StorageClass's
  provisioner and parameters, the Nodes, and for Mayastor the DiskPools' nodes and disks): a target
  whose result with that fingerprint is in this run's directory, or in an earlier archived run
  (``outputs/*/bench``, or any archive this lab's results were written to — the target's private
  dir keeps their paths in ``bench-results.txt``, so a run with another ``--outputs`` finds them;
  newest first), is a noop — so a re-run of the migration runs no fio Job and
  makes no API change. Option ``rebench=True`` measures again anyway; a changed StorageClass, a new
  worker or a new pool changes the fingerprint and is measured.
- **apply**: creates the namespace and PVCs, runs the Jobs one after another (they share one disk
  on The Fal: running them together would measure contention), reads each pod log, parses it
  (``parse_fio_json``) and writes ``<results>/<target>.json`` = ``{"target", "profile", "fio"}``
  (fio's own JSON text, so the archive keeps the raw result) and ``fingerprint``.
- **checks**: a parsed result per present target (this run's, or the reused one, named).

Typed payloads (issue 18): the namespace and each claim are a :class:`BenchCreate` (created as
planned), each measurement a :class:`FioRun`; apply creates them all, then runs the measurements.

Results directory: ``$FALKIT_RUN_DIR/bench`` when the runner set it (the run archive), else
``<target.private_dir>/bench``. :func:`trend` reads ``outputs/*/bench/*.json`` across runs: a run
that reused a result adds no point to the trend (it measured nothing).

On the twin every fio log is written by the performance model (``falkit.bench.model``): the parser
labels those rows ``modelled`` and every chart says "modelled (twin)". Live, they are ``measured``.
Option ``bench_profile``: ``full`` (kbench: ramp 5 s, 20 s per job, a ~15 GiB file; default) or
``quick`` (1 s per job, 64 MiB: a smoke test whose numbers mean nothing).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd  # annotations; imported where used (issue 17: ~30 MiB in every kernel and the CLI)

from ..bench.fio import k8s_job_manifest, parse_fio_json, profile_settings
from ..bench.model import compare_with_claims
from ..clients.kube import JobFailedError, kcreate, kget, klist, run_job
from ..model.ceilings import ceilings_for_spec, longhorn_replicas
from ..model.errors import StepError
from ..model.spec import LabSpec
from ..plan.diff import Change, Noop, Plan
from ..plan.payloads import payload
from .base import Check, Progress, StepOptions, register
from .executors import Apply, execute, executes

STEP = "benchmarks"
NAMESPACE = "falkit-bench"
LONGHORN = "driver.longhorn.io"
LOCAL_PATH = "rancher.io/local-path"
TARGETS = ("mayastor", "longhorn", "local-path")


@payload
@dataclass(frozen=True)
class BenchCreate:
    """Create ``object`` (the benchmark namespace, a claim for fio) as planned."""

    object: dict


@payload
@dataclass(frozen=True)
class FioRun:
    """The kbench fio Job on claim ``pvc`` (in the benchmark namespace) for bench target ``target``
    with fio profile ``profile``; its result is saved with the storage's ``fingerprint``."""

    target: str
    pvc: str
    profile: str
    fingerprint: str = ""


@dataclass(frozen=True)
class BenchFacts:
    storage_classes: dict[str, str]  # bench target -> StorageClass name
    namespace: bool
    pvcs: dict[str, str] = field(default_factory=dict)  # pvc name -> phase
    done: tuple[str, ...] = ()  # targets with a result of their fingerprint in this run's directory
    results_dir: str = ""
    reusable: dict[str, str] = field(default_factory=dict)  # target -> an earlier run's result file, same fingerprint
    fingerprints: dict[str, str] = field(default_factory=dict)  # target -> fingerprint of the storage now


def fingerprint(kind: str, profile: str, storage_class: dict, nodes: list[str], pools: list[dict]) -> str:
    """What a benchmark result depends on, hashed (pure): the target kind (twin/live), the fio
    profile, the StorageClass's provisioner and parameters, the Nodes, and the DiskPools (node,
    disks) backing it. Equal fingerprints: the same storage, measured the same way."""
    doc = {"kind": kind, "profile": profile, "provisioner": storage_class.get("provisioner"),
           "parameters": storage_class.get("parameters") or {}, "nodes": sorted(nodes),
           "pools": sorted((str((p.get("spec") or {}).get("node")), tuple((p.get("spec") or {}).get("disks") or ()))
                           for p in pools)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=list).encode()).hexdigest()[:16]


def _result_fingerprint(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("fingerprint")
    except (OSError, ValueError):
        return None


RESULTS_INDEX = "bench-results.txt"  # in the target's private dir: every result file written, one path a line


def remember_result(target: Any, path: Path) -> None:
    """Note ``path`` in the lab's index, so a run archived under another ``--outputs`` finds it."""
    index = Path(target.private_dir) / RESULTS_INDEX
    index.parent.mkdir(parents=True, exist_ok=True)
    with open(index, "a", encoding="utf-8") as fh:
        fh.write(f"{Path(path).resolve()}\n")


def known_results(target: Any) -> list[Path]:
    try:
        text = (Path(target.private_dir) / RESULTS_INDEX).read_text(encoding="utf-8")
    except OSError:
        return []
    return [Path(line) for line in dict.fromkeys(text.splitlines()) if line.strip()]


def earlier_result(outputs: Path, current: Path, target: str, fp: str, known: list[Path] = ()) -> Path | None:
    """The newest archived ``<run>/bench/<target>.json`` (other than ``current``'s) with fingerprint
    ``fp``: under ``outputs``, or among ``known`` result files (other archives; newest run id first)."""
    found = {p.resolve() for p in outputs.glob(f"*/bench/{target}.json")}
    found |= {p for p in known if p.name == f"{target}.json" and p.is_file()}
    for path in sorted(found, key=lambda p: (p.parent.parent.name, str(p)), reverse=True):
        if path.parent != Path(current).resolve() and _result_fingerprint(path) == fp:
            return path
    return None


def results_dir(target: Any) -> Path:
    run = os.environ.get("FALKIT_RUN_DIR")
    return Path(run) / "bench" if run else Path(target.private_dir) / "bench"


def bench_classes(spec: LabSpec, classes: list[dict]) -> dict[str, str]:
    """Bench target -> StorageClass name, for the storage present (pure)."""
    out: dict[str, str] = {}
    names = {c["metadata"]["name"]: c for c in classes}
    if spec.mayastor.storage_class in names:
        out["mayastor"] = spec.mayastor.storage_class
    lh = spec.previous.longhorn_storage_class if spec.previous else "longhorn"
    for c in classes:
        name, prov = c["metadata"]["name"], c.get("provisioner")
        if "longhorn" not in out and (prov == LONGHORN or name == lh):
            out["longhorn"] = name
        if "local-path" not in out and prov == LOCAL_PATH:
            out["local-path"] = name
    return out


def pvc_size(profile: str) -> str:
    """Room for fio's file plus 20 % (filesystem overhead), in whole GiB."""
    mib = profile_settings(profile).size_mib
    return f"{max(1, math.ceil(mib * 1.2 / 1024))}Gi"


def plan_benchmarks(spec: LabSpec, facts: BenchFacts, options: StepOptions) -> Plan:
    profile = str(options.extra.get("bench_profile", "full"))
    profile_settings(profile)  # unknown profile -> ValueError before anything
    changes: list[Change] = []
    noops: list[Noop] = []
    notes: list[str] = []
    if "mayastor" not in facts.storage_classes:
        notes.append(f"no StorageClass {spec.mayastor.storage_class}: run the mayastor step first")
    for t in TARGETS:
        if t not in facts.storage_classes:
            if t != "mayastor":
                notes.append(f"{t}: no StorageClass, not benchmarked")
            continue
        if t in facts.done:
            noops.append(Noop("fio", t, f"result in {facts.results_dir}"))
            continue
        if t in facts.reusable and not options.extra.get("rebench", False):
            run = Path(facts.reusable[t]).parent.parent.name
            noops.append(Noop("fio", t, f"run {run} measured this storage (fingerprint {facts.fingerprints.get(t, '')}): "
                                        "its result is used; rebench=True measures again"))
            continue
        if not facts.namespace and not any(c.kind == "namespace" for c in changes):
            changes.append(Change("create", "namespace", NAMESPACE,
                                  data=BenchCreate({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})))
        pvc = f"fio-{t}"
        if pvc not in facts.pvcs:
            changes.append(Change("create", "pvc", f"{NAMESPACE}/{pvc}", new=f"{pvc_size(profile)} on {facts.storage_classes[t]}",
                                  data=BenchCreate({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                                    "metadata": {"name": pvc, "namespace": NAMESPACE,
                                                                 "labels": {"app.kubernetes.io/managed-by": "falkit"}},
                                                    "spec": {"accessModes": ["ReadWriteOnce"],
                                                             "storageClassName": facts.storage_classes[t],
                                                             "resources": {"requests": {"storage": pvc_size(profile)}}}})))
        changes.append(Change("action", "fio", t, reason=f"kbench jobs, profile {profile}",
                              data=FioRun(t, pvc, profile, facts.fingerprints.get(t, ""))))
    return Plan(STEP, tuple(changes), tuple(noops), tuple(notes))


def observe(target: Any, spec: LabSpec, options: StepOptions) -> BenchFacts:
    api = target.kube()
    rdir = results_dir(target)
    profile = str(options.extra.get("bench_profile", "full"))
    classes = klist(api, "storage.k8s.io/v1", "StorageClass")
    present = bench_classes(spec, classes)
    nodes = [n["metadata"]["name"] for n in klist(api, "v1", "Node")]
    try:
        pools = klist(api, "openebs.io/v1beta2", "DiskPool")
    except Exception:  # noqa: BLE001 - Mayastor's CRDs not installed: no pools
        pools = []
    by_name = {c["metadata"]["name"]: c for c in classes}
    fps = {t: fingerprint(str(getattr(target, "kind", "")), profile, by_name[sc], nodes, pools if t == "mayastor" else [])
           for t, sc in present.items()}
    done = tuple(t for t in TARGETS if t in fps and _result_fingerprint(rdir / f"{t}.json") == fps[t])
    reusable: dict[str, str] = {}
    run = os.environ.get("FALKIT_RUN_DIR")
    if run:
        known = known_results(target)
        for t, fp in fps.items():
            if t not in done and (hit := earlier_result(Path(run).parent, rdir, t, fp, known)) is not None:
                reusable[t] = str(hit)
    return BenchFacts(
        storage_classes=present,
        namespace=kget(api, "v1", "Namespace", NAMESPACE) is not None,
        pvcs={p["metadata"]["name"]: (p.get("status") or {}).get("phase", "") for p in
              klist(api, "v1", "PersistentVolumeClaim", NAMESPACE)},
        done=done, results_dir=str(rdir), reusable=reusable, fingerprints=fps)


def save_result(rdir: Path, target: str, profile: str, fio_text: str, fp: str = "") -> Path:
    rdir.mkdir(parents=True, exist_ok=True)
    path = rdir / f"{target}.json"
    path.write_text(json.dumps({"target": target, "profile": profile, "fingerprint": fp, "fio": fio_text}, indent=1))
    return path


def load_results(rdir: str | Path) -> pd.DataFrame:
    """Every ``<target>.json`` in a results directory as one DataFrame (``target`` column set)."""
    return load_result_files(sorted(Path(rdir).glob("*.json")))


def load_result_files(paths: list[Path]) -> pd.DataFrame:
    """The given result files as one DataFrame; column ``run``: the archived run each came from."""
    import pandas as pd  # noqa: PLC0415 - heavy (~30 MiB, issue 17): loaded only when results are tabulated

    frames = []
    for p in paths:
        doc = json.loads(Path(p).read_text())
        df = parse_fio_json(doc["fio"])
        df["target"] = doc["target"]
        df["run"] = Path(p).parent.parent.name
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def current_results(facts: BenchFacts) -> pd.DataFrame:
    """The results that stand for the storage now: this run's where it measured, else the reused ones."""
    rdir = Path(facts.results_dir)
    paths = [rdir / f"{t}.json" if t in facts.done else Path(facts.reusable[t])
             for t in TARGETS if t in facts.done or t in facts.reusable]
    return load_result_files(paths)


def claims(spec: LabSpec, target: str) -> dict[str, float]:
    """The seed's claims for ``target`` (``spec.expectations``); "random IOPS" is compared with both
    random read and random write, "latency" with 4k QD1 read."""
    if spec.expectations is None or target not in ("mayastor", "longhorn"):
        return {}
    e = getattr(spec.expectations, target)
    return {"seq_read_mb_s": e.seq_read_mb_s, "seq_write_mb_s": e.seq_write_mb_s, "rand_read_iops": e.rand_iops,
            "rand_write_iops": e.rand_iops, "latency_ms": e.latency_ms}


def comparison(spec: LabSpec, results: pd.DataFrame, target: str = "mayastor") -> pd.DataFrame:
    """Claim vs physical ceiling vs result for ``target`` (``compare_with_claims``). The ceilings
    are those of a volume on this lab's data disk with the target's replica count: Mayastor's
    (``spec.mayastor.replicas``) or Longhorn's in the before-state (one per old worker,
    :func:`~falkit.model.ceilings.longhorn_replicas`; The Fal's single worker: 1)."""
    import pandas as pd  # noqa: PLC0415 - heavy (~30 MiB, issue 17): loaded only when results are tabulated

    rows = results[results["target"] == target] if len(results) else None
    c = claims(spec, target)
    if not c:
        return pd.DataFrame()
    ceil = ceilings_for_spec(spec, longhorn_replicas(spec) if target == "longhorn" else None)
    return compare_with_claims(c, ceil, rows if rows is not None and len(rows) else None)


def trend(outputs: str | Path = "outputs") -> list[tuple[str, pd.DataFrame]]:
    """``[(run id, results)]`` for every archived run with benchmark results, oldest first."""
    out = []
    for run in sorted(Path(outputs).glob("*/bench")):
        df = load_results(run)
        if len(df):
            out.append((run.parent.name, df))
    return out


@executes(BenchCreate)
def _bench_create(c: Change, ctx: Apply) -> None:
    kcreate(ctx.target.kube(), c.data.object)


@executes(FioRun)
def _fio_run(c: Change, ctx: Apply) -> None:
    d: FioRun = c.data
    api = ctx.target.kube()
    t, pvc, profile = d.target, d.pvc, d.profile
    prof = profile_settings(profile)
    budget = (prof.ramp_time_s + prof.runtime_s) * 6 + ctx.timeout
    bar = ctx.progress.task(f"fio on {t}", budget)
    manifest = k8s_job_manifest(f"falkit-fio-{t}", NAMESPACE, pvc, None, profile, target=t)
    try:
        text = run_job(api, manifest, budget, on_poll=lambda s, b=bar: b(s, "running"))
        df = parse_fio_json(text)
    except (JobFailedError, ValueError, RuntimeError) as e:
        raise StepError(STEP, f"fio on {t}: {e}") from e
    remember_result(ctx.target, save_result(results_dir(ctx.target), t, profile, text, d.fingerprint))
    bar(budget, f"{len(df)} jobs, {df['source'].iloc[0]}")


@register(STEP)
class BenchmarksStep:
    title = "Storage benchmarks (fio, kbench-style)"
    options = {"bench_profile": (str, "full"), "rebench": (bool, False)}

    def observe(self, target: Any, spec: LabSpec, options: StepOptions) -> BenchFacts:
        return observe(target, spec, options)

    def plan(self, spec: LabSpec, observed: BenchFacts, options: StepOptions) -> Plan:
        return plan_benchmarks(spec, observed, options)

    def apply(self, target: Any, plan: Plan, options: StepOptions, progress: Progress) -> None:
        # the namespace and every claim first, then the measurements one after another (they share
        # one disk on The Fal: running them together would measure contention)
        execute(target, [c for c in plan.changes if isinstance(c.data, BenchCreate)], progress,
                options.wait_timeout_s, step=STEP)
        execute(target, [c for c in plan.changes if isinstance(c.data, FioRun)], progress,
                options.wait_timeout_s, step=STEP)

    def checks(self, target: Any, spec: LabSpec, options: StepOptions) -> list[Check]:
        facts = observe(target, spec, options)
        df = current_results(facts)
        out = []
        for t in facts.storage_classes:
            rows = df[df["target"] == t] if len(df) else df
            src = str(rows["source"].iloc[0]) if len(rows) else ""
            run = f", run {facts.reusable[t].split(os.sep)[-3]}" if t in facts.reusable and t not in facts.done else ""
            out.append(Check("fio result", t, "6 kbench jobs parsed", f"{len(rows)} jobs ({src}{run})" if len(rows) else "none",
                             len(rows) >= 6, "re-run the benchmarks step with apply"))
        return out
