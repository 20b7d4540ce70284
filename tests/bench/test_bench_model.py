"""The twin's performance model: replica/shared-disk write division, off-host network cap, QD1
overheads, Longhorn vs Mayastor, the physical ceilings, the verdicts on the seed's claims, and
modelled fio JSON that the parser labels ``modelled``."""

from __future__ import annotations

import json

import pytest

from falkit.bench.fio import MIB, FioJob, parse_fio_json
from falkit.bench.model import (
    MB,
    SEED_CLAIMS,
    Device,
    ModelEnv,
    ceilings,
    compare_with_claims,
    fio_json_from_model,
    predict,
    predict_all,
    the_fal,
)

FAL = the_fal()


def mb_s(res) -> float:
    return res.bandwidth_mib_s * MIB / MB


def test_defaults_describe_the_fal():
    assert FAL.replicas == 3 and FAL.replicas_share_disk and not FAL.off_host
    assert FAL.device.name == "helford" and FAL.device.seq_read_mb_s == 550 and FAL.device.seq_write_mb_s == 500
    assert FAL.path.name.startswith("host bridge")


def test_shared_disk_divides_write_ceiling_by_replicas():
    assert ceilings(FAL)["seq_write_mb_s"] == pytest.approx(500 / 3)
    assert ceilings(the_fal(replicas=2))["seq_write_mb_s"] == pytest.approx(250)
    assert mb_s(predict("mayastor", "seq_write", FAL)) == pytest.approx(500 / 3, rel=1e-6)
    assert ceilings(FAL)["rand_write_iops"] == pytest.approx(80_000 / 3)


def test_separate_disks_do_not_divide_write():
    sep = the_fal(replicas_share_disk=False)
    assert ceilings(sep)["seq_write_mb_s"] == pytest.approx(500)
    assert mb_s(predict("mayastor", "seq_write", sep)) == pytest.approx(500, rel=1e-6)


def test_reads_come_from_one_replica_up_to_device_read():
    for env in (FAL, the_fal(replicas_share_disk=False), the_fal(replicas=1)):
        assert ceilings(env)["seq_read_mb_s"] == pytest.approx(550)


def test_network_cap_applies_only_off_host():
    sep = the_fal(replicas_share_disk=False)
    on_host = predict("mayastor", "seq_write", sep)
    off = predict("mayastor", "seq_write", the_fal(replicas_share_disk=False, off_host=True))
    assert mb_s(on_host) == pytest.approx(500, rel=1e-6)  # disk-bound: the bridge does not bind
    assert mb_s(off) == pytest.approx(295 / 2, rel=1e-6)  # the nexus sends 2 copies over 2.5 GbE
    assert "2.5 GbE" in off.limited_by
    assert ceilings(the_fal(off_host=True))["seq_read_mb_s"] == pytest.approx(295)
    assert ceilings(the_fal(replicas=1, off_host=True))["seq_write_mb_s"] == pytest.approx(500 / 1)


def test_qd1_latency_adds_engine_and_network_overhead():
    dev_ms = FAL.device.latency_ms
    local = predict("local-path", "lat_read", FAL)
    maya = predict("mayastor", "lat_read", FAL)
    assert local.clat_mean_ms == pytest.approx(dev_ms + FAL.local_overhead_ms + 4096 / (550 * MB) * 1e3)
    rtt = FAL.host_bridge.rtt_ms * 2 / 3
    assert maya.clat_mean_ms == pytest.approx(dev_ms + FAL.mayastor_overhead_ms + rtt + 4096 / (550 * MB) * 1e3)
    assert maya.clat_mean_ms - local.clat_mean_ms >= 0.1
    # QD1: IOPS is exactly 1 / latency
    assert maya.iops == pytest.approx(1000 / maya.clat_mean_ms)
    more = predict("mayastor", "lat_read", the_fal(mayastor_overhead_ms=0.3))
    assert more.clat_mean_ms == pytest.approx(maya.clat_mean_ms + 0.15)


def test_deep_queue_reaches_the_ceiling_and_waits_longer():
    r = predict("mayastor", "rand_write_iops", FAL)
    assert r.iops == pytest.approx(80_000 / 3) and "3 replicas on one disk" in r.limited_by
    assert r.clat_mean_ms == pytest.approx(64 / r.iops * 1000)  # Little's law
    assert r.clat_mean_ms > r.qd1_latency_ms
    assert r.clat_p99_ms > r.clat_p50_ms


def test_io_engine_cores_cap_iops_on_fast_devices():
    nvme = Device("nvme", 7000, 5000, 1_000_000, 800_000, 0.02)
    env1 = the_fal(device=nvme, replicas_share_disk=False)
    env2 = the_fal(device=nvme, replicas_share_disk=False, io_engine_cores=2)
    one = predict("mayastor", "rand_read_iops", env1)
    assert one.iops == pytest.approx(250_000) and "core" in one.limited_by
    assert ceilings(env2)["rand_read_iops"] == pytest.approx(500_000)
    # with 2 cores QD64 no longer reaches the ceiling: Little's law (64 / per-IO latency) binds
    two = predict("mayastor", "rand_read_iops", env2)
    assert two.iops == pytest.approx(64 / (two.qd1_latency_ms / 1000)) and "queue depth" in two.limited_by
    deep = predict("mayastor", FioJob("deep", "randread", 4096, 256, metric="iops"), env2)
    assert deep.iops == pytest.approx(500_000)


def test_longhorn_is_slower_than_mayastor():
    for job in ("rand_read_iops", "rand_write_iops", "lat_read", "lat_write"):
        lh, ms = predict("longhorn", job, FAL), predict("mayastor", job, FAL)
        assert lh.iops < ms.iops and lh.clat_mean_ms > ms.clat_mean_ms, job
    for job in ("seq_read", "seq_write"):  # on The Fal both are disk-bound: never faster
        assert predict("longhorn", job, FAL).bandwidth_mib_s <= predict("mayastor", job, FAL).bandwidth_mib_s
    # with separate disks the Longhorn engine's ~290 MiB/s write cap binds and Mayastor's does not
    sep = the_fal(replicas_share_disk=False)
    assert predict("longhorn", "seq_write", sep).bandwidth_mib_s == pytest.approx(290)
    assert predict("mayastor", "seq_write", sep).bandwidth_mib_s > 290
    # the Longhorn QD1 read lands near the sizing guide's ~0.75 ms
    assert predict("longhorn", "lat_read", FAL).clat_mean_ms == pytest.approx(0.75, abs=0.05)


def test_local_path_uses_its_own_device():
    slow = Device("local-lvm", 200, 150, 20_000, 15_000, 0.2)
    assert mb_s(predict("local-path", "seq_write", the_fal(local_device=slow))) == pytest.approx(150, rel=1e-6)
    assert mb_s(predict("local-path", "seq_write", FAL)) == pytest.approx(500, rel=1e-6)


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown target"):
        predict("ceph", "seq_read", FAL)
    with pytest.raises(ValueError, match="replicas"):
        ModelEnv(replicas=0)


def test_predict_all_covers_targets_and_jobs():
    df = predict_all(env=FAL)
    assert len(df) == 18 and set(df["target"]) == {"mayastor", "longhorn", "local-path"}


# --- claims ----------------------------------------------------------------------------------


def test_seed_mayastor_claims_flagged_on_the_fal():
    modelled = parse_fio_json(fio_json_from_model("mayastor", env=FAL))
    cmp = compare_with_claims(SEED_CLAIMS["mayastor"], ceilings(FAL), modelled).set_index("metric")
    assert not cmp.loc["seq_write_mb_s", "possible"]
    assert cmp.loc["seq_write_mb_s", "ceiling"] == pytest.approx(166.67, abs=0.01)
    assert cmp.loc["seq_write_mb_s", "verdict"].startswith("impossible")
    assert "3 replicas on one disk" in cmp.loc["seq_write_mb_s", "verdict"]
    assert not cmp.loc["seq_read_mb_s", "possible"] and "550 MB/s" in cmp.loc["seq_read_mb_s", "verdict"]
    assert cmp.loc["rand_read_iops", "possible"] and cmp.loc["latency_ms", "possible"]
    assert set(cmp["source"]) == {"modelled"}
    assert "modelled (twin)" in cmp.loc["seq_write_mb_s", "verdict"]
    assert cmp.loc["seq_write_mb_s", "result"] == pytest.approx(166.67, abs=0.1)


def test_same_claims_are_possible_with_separate_fast_disks():
    nvme = Device("nvme", 3000, 2500, 500_000, 400_000, 0.03)
    env = the_fal(device=nvme, replicas_share_disk=False)
    cmp = compare_with_claims(SEED_CLAIMS["mayastor"], ceilings(env), None).set_index("metric")
    assert cmp["possible"].all()
    assert cmp["result"].isna().all() and cmp.loc["seq_write_mb_s", "verdict"].endswith("no result yet")


def test_latency_claim_below_floor_is_impossible():
    cmp = compare_with_claims({"latency_ms": 0.05}, ceilings(FAL), None)
    assert not cmp.loc[0, "possible"] and "below the physical floor" in cmp.loc[0, "verdict"]


def test_measured_results_are_labelled_measured(tmp_path):
    from pathlib import Path

    text = (Path(__file__).parent / "data" / "fio-3.33-quick-libaio-ext4.json").read_text()
    cmp = compare_with_claims({"seq_read_mb_s": 800}, ceilings(FAL), parse_fio_json(text))
    assert cmp.loc[0, "source"] == "measured" and "measured" in cmp.loc[0, "verdict"]
    with pytest.raises(ValueError, match="unknown metric"):
        compare_with_claims({"throughput": 1}, ceilings(FAL), None)


# --- modelled fio JSON -----------------------------------------------------------------------


def test_modelled_json_is_marked_and_round_trips():
    text = fio_json_from_model("longhorn", ["seq_write", "lat_read"], FAL, profile="full")
    doc = json.loads(text)
    assert doc["falkit_modelled"] is True and doc["fio version"] == "falkit-model"
    df = parse_fio_json(text)
    assert set(df["source"]) == {"modelled"} and set(df["target"]) == {"longhorn"}
    sw = predict("longhorn", "seq_write", FAL)
    assert df.loc[0, "write_mib_s"] == pytest.approx(sw.bandwidth_mib_s, rel=1e-6)
    assert df.loc[0, "write_iops"] == pytest.approx(sw.iops)
    assert df.loc[1, "clat_mean_ms"] == pytest.approx(predict("longhorn", "lat_read", FAL).clat_mean_ms)
    assert df.loc[1, "clat_p99_ms"] > df.loc[1, "clat_p50_ms"]
    assert df.loc[0, "runtime_s"] == 20 and df.loc[0, "limited_by"] == sw.limited_by


def test_measured_json_without_marker_stays_measured():
    doc = json.loads(fio_json_from_model("mayastor", ["lat_read"], FAL))
    del doc["falkit_modelled"]
    assert parse_fio_json(json.dumps(doc)).loc[0, "source"] == "measured"
    doc["falkit_modelled"] = "yes"  # only the JSON literal true counts
    assert parse_fio_json(json.dumps(doc)).loc[0, "source"] == "measured"
