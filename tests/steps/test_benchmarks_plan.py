"""benchmarks (50-mayastor), pure parts and the result files: which storage is benchmarked (Mayastor;
Longhorn and local-path only when their StorageClass exists), a result already in the run archive
plans nothing, an unknown profile fails before anything; results saved and loaded; modelled fio
output (what the twin writes) is parsed, labelled modelled and compared with the seed's claims and
the physical ceilings; the chart names the result "modelled (twin)"; the trend reads
``outputs/*/bench``. Also falkit.clients.kube.jobs: the copy/checksum/write Jobs are valid Kubernetes Jobs, and
the checksum command really run by /bin/sh gives equal values for equal files, different for
different ones."""

from __future__ import annotations

import json
import subprocess

import pytest

from falkit.bench.charts import claims_chart, trend_chart
from falkit.bench.fio import validate_job_manifest
from falkit.bench.model import fio_json_from_model
from falkit.clients.kube.jobs import (
    _CHECKSUM_SH,
    ChecksumParseError,
    checksum_job,
    copy_job,
    job_name,
    parse_checksum,
    write_job,
)
from falkit.plan.diff import Plan
from falkit.plan.payloads import PAYLOADS
from falkit.steps import executors
from falkit.steps.base import StepOptions
from falkit.steps.benchmarks import (
    BenchCreate,
    BenchFacts,
    FioRun,
    bench_classes,
    comparison,
    current_results,
    earlier_result,
    fingerprint,
    load_results,
    plan_benchmarks,
    pvc_size,
    save_result,
    trend,
)

SC = [{"metadata": {"name": "mayastor-3"}, "provisioner": "io.openebs.csi-mayastor"},
      {"metadata": {"name": "longhorn"}, "provisioner": "driver.longhorn.io"},
      {"metadata": {"name": "local-path"}, "provisioner": "rancher.io/local-path"}]


@pytest.mark.parametrize(("classes", "want"), [
    (SC, {"mayastor": "mayastor-3", "longhorn": "longhorn", "local-path": "local-path"}),
    (SC[:1], {"mayastor": "mayastor-3"}),
    (SC[1:2], {"longhorn": "longhorn"}),
])
def test_bench_classes(fal, classes, want):
    assert bench_classes(fal, classes) == want


def test_plan_per_target_and_rerun(fal):
    facts = BenchFacts({"mayastor": "mayastor-3", "longhorn": "longhorn"}, namespace=False)
    plan = plan_benchmarks(fal, facts, StepOptions(extra={"bench_profile": "quick"}))
    assert [(c.op, c.kind, c.name) for c in plan.changes] == [
        ("create", "namespace", "falkit-bench"), ("create", "pvc", "falkit-bench/fio-mayastor"),
        ("action", "fio", "mayastor"), ("create", "pvc", "falkit-bench/fio-longhorn"), ("action", "fio", "longhorn")]
    assert plan.changes[1].data.object["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert any("local-path: no StorageClass" in n for n in plan.notes)
    done = BenchFacts(facts.storage_classes, True, {"fio-mayastor": "Bound"}, ("mayastor", "longhorn"), "/r")
    assert plan_benchmarks(fal, done, StepOptions()).empty
    with pytest.raises(ValueError, match="unknown fio profile"):
        plan_benchmarks(fal, facts, StepOptions(extra={"bench_profile": "huge"}))
    assert pvc_size("full") == "18Gi"  # 15000 MiB file + 20 %


def test_plan_carries_typed_payloads_and_round_trips(fal):
    """Issue 18: the namespace and claims are BenchCreate, each measurement a FioRun (with the storage's
    fingerprint); every change has an executor and the plan survives JSON equal to itself."""
    facts = BenchFacts({"mayastor": "mayastor-3", "longhorn": "longhorn"}, namespace=False,
                       fingerprints={"mayastor": "0123456789abcdef"})
    plan = plan_benchmarks(fal, facts, StepOptions(extra={"bench_profile": "quick"}))
    assert [type(c.data) for c in plan.changes] == [BenchCreate, BenchCreate, FioRun, BenchCreate, FioRun]
    assert plan.changes[2].data == FioRun("mayastor", "fio-mayastor", "quick", "0123456789abcdef")
    assert plan.changes[0].data.object == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "falkit-bench"}}
    for c in plan.changes:
        assert not isinstance(c.data, dict) and PAYLOADS.get(type(c.data).__name__) is type(c.data), c.describe()
        assert executors.executable(c), c.describe()
    back = Plan.from_json(json.loads(json.dumps(plan.to_json())))
    assert back == plan and [type(c.data) for c in back.changes] == [type(c.data) for c in plan.changes]


def test_results_modelled_compared_and_charted(fal, tmp_path):
    run = tmp_path / "outputs" / "20261126T1200Z-twin" / "bench"
    for t in ("mayastor", "longhorn"):
        save_result(run, t, "quick", fio_json_from_model(t, None, profile="quick"))
    df = load_results(run)
    assert set(df["target"]) == {"mayastor", "longhorn"} and set(df["source"]) == {"modelled"}
    assert len(df) == 12
    cmp = comparison(fal, df, "mayastor")
    assert list(cmp["metric"]) == ["seq_read_mb_s", "seq_write_mb_s", "rand_read_iops", "rand_write_iops", "latency_ms"]
    assert set(cmp["source"]) == {"modelled"}
    # 800 MB/s sequential read from one SATA SSD (550 MB/s) is impossible whatever the software
    assert not cmp.set_index("metric").loc["seq_read_mb_s", "possible"]
    fig = claims_chart(cmp)
    assert "result: modelled (twin)" in {t.name for t in fig.data}
    assert "result: measured" not in {t.name for t in fig.data}
    save_result(tmp_path / "outputs" / "20261127T1200Z-twin" / "bench", "mayastor", "quick",
                fio_json_from_model("mayastor", None, profile="quick"))
    runs = trend(tmp_path / "outputs")
    assert [r for r, _ in runs] == ["20261126T1200Z-twin", "20261127T1200Z-twin"]
    assert len(trend_chart(runs).data) > 0


def test_job_manifests_are_valid_jobs():
    for m in (copy_job("falkit-copy-a", "media", "a", "a-mayastor"), checksum_job("falkit-checksum-a", "media", "a"),
              write_job("falkit-write-a", "media", "a", 1024)):
        validate_job_manifest(m)
        assert m["metadata"]["labels"]["falkit.io/job"] in ("copy", "checksum", "write")
    c = copy_job("j", "media", "a", "b")
    assert c["metadata"]["annotations"] == {"falkit.io/source-pvc": "a", "falkit.io/target-pvc": "b"}
    assert write_job("j", "n", "a", 10)["metadata"]["annotations"] == {"falkit.io/pvc": "a", "falkit.io/bytes": "10"}
    assert job_name("checksum", "x" * 80).startswith("falkit-checksum-") and len(job_name("checksum", "x" * 80)) <= 63


def _run_checksum(root) -> str:
    script = _CHECKSUM_SH.replace("cd /data", f"cd {root}")
    out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, check=True).stdout
    return parse_checksum(out)


def test_checksum_command_really_runs(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        (root / "sub dir").mkdir(parents=True)
        (root / "x.txt").write_text("hello\n")
        (root / "sub dir" / "y.bin").write_bytes(bytes(range(256)))
    assert _run_checksum(a) == _run_checksum(b)
    (b / "x.txt").write_text("hello!\n")
    assert _run_checksum(a) != _run_checksum(b)


def test_parse_checksum():
    hexv = "0123456789abcdef" * 4
    assert parse_checksum(f"noise\nsha256  {hexv}\n") == hexv
    with pytest.raises(ChecksumParseError):
        parse_checksum("copied 12 bytes\n")


MAYA_SC = {"metadata": {"name": "mayastor-3"}, "provisioner": "io.openebs.csi-mayastor",
           "parameters": {"repl": "3", "protocol": "nvmf"}}
POOLS = [{"spec": {"node": f"talos-worker-0{i}", "disks": [f"aio:///dev/disk/by-id/d{i}"]}} for i in (1, 2, 3)]
NODES = ["talos-cp-01", "talos-worker-01", "talos-worker-02", "talos-worker-03"]


def test_fingerprint_follows_what_the_result_depends_on():
    fp = fingerprint("twin", "full", MAYA_SC, NODES, POOLS)
    assert fp == fingerprint("twin", "full", MAYA_SC, list(reversed(NODES)), list(reversed(POOLS)))  # order-free
    changed = [fingerprint("live", "full", MAYA_SC, NODES, POOLS),
               fingerprint("twin", "quick", MAYA_SC, NODES, POOLS),
               fingerprint("twin", "full", {**MAYA_SC, "parameters": {"repl": "2", "protocol": "nvmf"}}, NODES, POOLS),
               fingerprint("twin", "full", MAYA_SC, NODES[:3], POOLS),
               fingerprint("twin", "full", MAYA_SC, NODES, POOLS[:2])]
    assert len({fp, *changed}) == 6


def test_earlier_result_with_the_same_fingerprint_is_reused_not_remeasured(fal, tmp_path):
    outputs = tmp_path / "outputs"
    fp = fingerprint("twin", "quick", MAYA_SC, NODES, POOLS)
    old = save_result(outputs / "20261126T1000Z-twin" / "bench", "mayastor", "quick",
                      fio_json_from_model("mayastor", None, profile="quick"), fp)
    save_result(outputs / "20261126T1100Z-twin" / "bench", "mayastor", "quick",
                fio_json_from_model("mayastor", None, profile="quick"), "another-storage")
    now = outputs / "20261126T1200Z-twin" / "bench"
    assert earlier_result(outputs, now, "mayastor", fp) == old  # the newest with this fingerprint
    assert earlier_result(outputs, now, "mayastor", "nothing-like-it") is None
    assert earlier_result(outputs, old.parent, "mayastor", fp) is None  # never the current run's own
    facts = BenchFacts({"mayastor": "mayastor-3"}, True, {"fio-mayastor": "Bound"}, (), str(now),
                       reusable={"mayastor": str(old)}, fingerprints={"mayastor": fp})
    plan = plan_benchmarks(fal, facts, StepOptions(extra={"bench_profile": "quick"}))
    assert plan.empty and "run 20261126T1000Z-twin measured this storage" in plan.noops[0].reason
    again = plan_benchmarks(fal, facts, StepOptions(extra={"bench_profile": "quick", "rebench": True}))
    assert [(c.kind, c.name) for c in again.changes] == [("fio", "mayastor")]
    df = current_results(facts)
    assert len(df) == 6 and set(df["run"]) == {"20261126T1000Z-twin"}


def test_each_target_is_held_to_its_own_replica_count(fal, tmp_path):
    """Mayastor's 3 replicas share one SATA disk (write ceiling 500/3 MB/s); the old cluster's
    Longhorn had one worker, so one replica per volume (ceiling 500 MB/s): a Longhorn result above
    Mayastor's ceiling is physics, not an error of the comparison."""
    from falkit.model.ceilings import longhorn_replicas

    assert longhorn_replicas(fal) == 1 and longhorn_replicas(fal.model_copy(update={"previous": None})) == 3
    run = tmp_path / "bench"
    for t in ("mayastor", "longhorn"):
        save_result(run, t, "quick", fio_json_from_model(t, None, profile="quick"))
    df = load_results(run)
    ms = comparison(fal, df, "mayastor").set_index("metric")
    lh = comparison(fal, df, "longhorn").set_index("metric")
    assert round(ms.loc["seq_write_mb_s", "ceiling"], 1) == 166.7 and lh.loc["seq_write_mb_s", "ceiling"] == 500
    assert (lh["result"] <= lh["ceiling"])[["seq_read_mb_s", "seq_write_mb_s", "rand_read_iops"]].all()
