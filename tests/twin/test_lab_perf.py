"""The twin's fio (falkit.twin.lab.perf) against real fio: for the job file real fio 3.33 ran
(tests/bench/data/quick-libaio.fio) the twin reports the same jobs, the same ``global options`` and
``job options`` and only keys real fio's JSON has; the figures follow the lab's device (a read is
served by one replica; writes of three replicas on one disk share it; the io-engine's cores cap
4k IOPS) and parse with falkit's parser as modelled, never as measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from falkit.bench.fio import parse_fio_json
from falkit.twin.lab.perf import PER_CORE_IOPS, Storage, fio_output

DATA = Path(__file__).resolve().parents[1] / "bench" / "data"
REAL = json.loads((DATA / "fio-3.33-quick-libaio-ext4.json").read_text())
JOBFILE = (DATA / "quick-libaio.fio").read_text()
SATA = dict(seq_read_mb_s=550, seq_write_mb_s=500, rand_read_iops=90_000, rand_write_iops=80_000, latency_ms=0.1)


def test_the_twin_prints_what_real_fio_prints_for_the_same_job_file():
    twin = json.loads(fio_output(JOBFILE, Storage("local", **SATA)))
    assert twin["global options"] == REAL["global options"]
    assert [j["jobname"] for j in twin["jobs"]] == [j["jobname"] for j in REAL["jobs"]]
    for mine, real in zip(twin["jobs"], REAL["jobs"], strict=True):
        assert mine["job options"] == real["job options"]
        for side in ("read", "write"):
            assert set(mine[side]) <= set(real[side]), side
            assert set(mine[side].get("clat_ns", {}).get("percentile", {})) <= set(real[side]["clat_ns"].get("percentile", {}))
    df = parse_fio_json(json.dumps(twin))
    assert set(df["source"]) == {"modelled"}


def test_replicas_on_one_disk_share_its_writes_and_cores_cap_iops():
    one = parse_fio_json(fio_output(JOBFILE, Storage("mayastor", **SATA, replicas=1, cores=1))).set_index("job")
    three = parse_fio_json(fio_output(JOBFILE, Storage("mayastor", **SATA, replicas=3, cores=1))).set_index("job")
    assert three.loc["seq_write", "write_mib_s"] == pytest.approx(one.loc["seq_write", "write_mib_s"] / 3)
    assert three.loc["seq_read", "read_mib_s"] == pytest.approx(one.loc["seq_read", "read_mib_s"])
    fast = dict(SATA, rand_read_iops=2_000_000)
    capped = parse_fio_json(fio_output(JOBFILE, Storage("mayastor", **fast, replicas=3, cores=1))).set_index("job")
    assert capped.loc["rand_read_iops", "read_iops"] <= PER_CORE_IOPS
