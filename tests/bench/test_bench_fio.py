"""fio job files (accepted by real fio), the fio JSON parser on real fio output captured on this
machine (tests/bench/data, fio-3.33), and the Kubernetes Job that runs fio on a PVC."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from falkit.bench.fio import (
    JOBS,
    MIB,
    FioError,
    fio_command,
    jobfile,
    k8s_job_manifest,
    parse_fio_json,
    profile_settings,
    validate_job_manifest,
)

DATA = Path(__file__).parent / "data"
LIBAIO = DATA / "fio-3.33-quick-libaio-ext4.json"
PSYNC = DATA / "fio-3.33-quick-psync-with-notes.json"
needs_fio = pytest.mark.skipif(shutil.which("fio") is None, reason="fio not installed (apt-get install fio)")


def _ini(text: str) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    cur = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith("["):
            cur = sections.setdefault(line.strip("[]"), {})
        else:
            k, _, v = line.partition("=")
            cur[k] = v
    return sections


# --- job definitions and job files -----------------------------------------------------------


def test_jobs_follow_kbench():
    assert (JOBS["seq_read"].rw, JOBS["seq_read"].bs_bytes, JOBS["seq_read"].iodepth) == ("read", 128 * 1024, 64)
    assert (JOBS["seq_write"].rw, JOBS["seq_write"].bs_bytes, JOBS["seq_write"].iodepth) == ("write", 128 * 1024, 64)
    assert (JOBS["rand_read_iops"].rw, JOBS["rand_read_iops"].bs_bytes, JOBS["rand_read_iops"].iodepth) == ("randread", 4096, 64)
    assert (JOBS["rand_write_iops"].rw, JOBS["rand_write_iops"].iodepth) == ("randwrite", 64)
    assert (JOBS["lat_read"].bs_bytes, JOBS["lat_read"].iodepth) == (4096, 1)
    assert (JOBS["lat_write"].rw, JOBS["lat_write"].iodepth) == ("randwrite", 1)
    assert all(j.numjobs == 1 for j in JOBS.values())


def test_full_profile_file_is_25x_bandwidth():
    p = profile_settings("full", expected_mib_s=550)
    assert (p.ramp_time_s, p.runtime_s) == (5, 20)
    assert p.size_mib >= 25 * 550
    assert profile_settings("full", expected_mib_s=1000).size_mib == 25_000
    q = profile_settings("quick")
    assert q.runtime_s <= 2 and q.size_mib <= 128
    with pytest.raises(ValueError, match="unknown fio profile"):
        profile_settings("medium")


def test_jobfile_global_and_sections():
    ini = _ini(jobfile(None, "/data/f.dat", "full", expected_mib_s=600))
    g = ini["global"]
    assert g["ioengine"] == "libaio" and g["direct"] == "1" and g["time_based"] == "1"
    assert g["group_reporting"] == "1" and g["ramp_time"] == "5" and g["runtime"] == "20"
    assert g["size"] == "15000m" and g["filename"] == "/data/f.dat"
    assert list(ini)[1:] == list(JOBS)
    for name, job in JOBS.items():
        sec = ini[name]
        assert "stonewall" in sec, "each job must run on its own, not concurrently"
        assert sec["rw"] == job.rw and int(sec["iodepth"]) == job.iodepth
    assert ini["lat_write"]["bs"] == "4k" and ini["seq_read"]["bs"] == "128k"


def test_jobfile_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown fio job"):
        jobfile(["seq_raed"], "/data/f", "quick")
    with pytest.raises(ValueError, match="filename"):
        jobfile(None, "/data/a:b", "quick")


def test_fio_command():
    assert fio_command("/tmp/j.fio") == ["fio", "--output-format=json", "/tmp/j.fio"]
    assert fio_command("j.fio", fio="/usr/bin/fio", output_path="o.json") == [
        "/usr/bin/fio", "--output-format=json", "--output=o.json", "j.fio"]  # fmt: skip


@needs_fio
@pytest.mark.parametrize("profile", ["quick", "full"])
def test_real_fio_accepts_jobfile(tmp_path, profile):
    path = tmp_path / "j.fio"
    path.write_text(jobfile(None, str(tmp_path / "data.dat"), profile))
    out = subprocess.run(["fio", "--parse-only", str(path)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "data.dat").exists(), "--parse-only must not lay out the file"


@needs_fio
def test_real_fio_rejects_a_broken_jobfile(tmp_path):
    """The check above can fail: fio --parse-only does reject a bad option."""
    path = tmp_path / "j.fio"
    path.write_text(jobfile(["lat_read"], str(tmp_path / "d"), "quick").replace("rw=randread", "rw=sideways"))
    out = subprocess.run(["fio", "--parse-only", str(path)], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0


# --- parser on real fio output ---------------------------------------------------------------


def test_parse_real_libaio_fixture():
    text = LIBAIO.read_text()
    raw = json.loads(text)
    df = parse_fio_json(text)
    assert list(df["job"]) == list(JOBS)
    assert set(df["source"]) == {"measured"} and set(df["fio_version"]) == {"fio-3.33"}
    assert set(df["ioengine"]) == {"libaio"} and df["direct"].all()
    for job, row in zip(raw["jobs"], df.itertuples(), strict=True):
        side = job["read"] if job["read"]["total_ios"] else job["write"]
        col = "read_mib_s" if side is job["read"] else "write_mib_s"
        assert getattr(row, col) == pytest.approx(side["bw_bytes"] / MIB)
        assert row.iops == pytest.approx(side["iops"])
        assert row.clat_mean_ms == pytest.approx(side["clat_ns"]["mean"] / 1e6)
        assert row.clat_p50_ms == pytest.approx(side["clat_ns"]["percentile"]["50.000000"] / 1e6)
        assert row.clat_p99_ms == pytest.approx(side["clat_ns"]["percentile"]["99.000000"] / 1e6)
        assert row.runtime_s == pytest.approx(job["job_runtime"] / 1000)
    seq = df.set_index("job")
    assert seq.loc["seq_read", "write_mib_s"] == 0 and seq.loc["seq_write", "read_mib_s"] == 0
    assert seq.loc["seq_read", "bs"] == "128k" and seq.loc["seq_read", "bs_bytes"] == 131072
    assert seq.loc["lat_read", "iodepth"] == 1 and seq.loc["rand_read_iops", "iodepth"] == 64
    # global options (ioengine, direct) are merged with each job's own options
    assert seq.loc["lat_write", "rw"] == "randwrite"
    assert (df["clat_p99_ms"] >= df["clat_p50_ms"]).all()


def test_parse_real_output_with_notes_before_json():
    text = PSYNC.read_text()
    assert text.startswith("note: both iodepth"), "fixture must keep fio's notes"
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    df = parse_fio_json(text)
    assert list(df["job"]) == ["seq_write", "rand_read_iops"]
    assert set(df["ioengine"]) == {"psync"} and not df["direct"].any()
    assert df.loc[0, "write_mib_s"] > 0 and df.loc[1, "read_iops"] > 0


def test_parse_rejects_non_fio_text_and_failed_jobs():
    with pytest.raises(FioError, match="no fio JSON"):
        parse_fio_json("fio: pid=1, err=22/file:filesetup.c:805, func=open, error=Invalid argument\n")
    doc = json.loads(LIBAIO.read_text())
    doc["jobs"][2]["error"] = 22
    with pytest.raises(FioError, match="rand_read_iops"):
        parse_fio_json(json.dumps(doc))


# --- the Kubernetes Job ----------------------------------------------------------------------


def test_job_manifest_shape_and_labels():
    m = k8s_job_manifest("fio-mayastor", "falkit-bench", "bench-pvc", ["seq_read", "lat_read"], "quick",
                         target="mayastor")  # fmt: skip
    assert (m["apiVersion"], m["kind"]) == ("batch/v1", "Job")
    assert m["metadata"]["labels"]["app.kubernetes.io/name"] == "falkit-fio"
    assert m["metadata"]["labels"]["falkit.io/bench-target"] == "mayastor"
    assert m["metadata"]["annotations"]["falkit.io/fio-jobs"] == "seq_read,lat_read"
    pod = m["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "bench-pvc"
    c = pod["containers"][0]
    assert c["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    ini = _ini(c["env"][0]["value"])
    assert ini["global"]["filename"] == "/data/falkit-fio.dat" and list(ini)[1:] == ["seq_read", "lat_read"]
    assert "--output-format=json" in c["command"][-1]
    with pytest.raises(ValueError, match="bench target"):
        k8s_job_manifest("x", "ns", "p", None, "quick", target="ceph")


@pytest.mark.parametrize("target", ["mayastor", "longhorn", "local-path"])
def test_job_manifest_validates(target):
    m = k8s_job_manifest(f"fio-{target}", "falkit-bench", "pvc", None, "full", target=target)
    assert validate_job_manifest(m)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda m: m["spec"].__setitem__("backoffLimit", "none"),
        lambda m: m["spec"]["template"]["spec"]["containers"][0].__setitem__("volumeMount", []),
        lambda m: m["spec"]["template"]["spec"].pop("containers"),
    ],
)
def test_invalid_job_manifest_is_rejected(breakage):
    m = copy.deepcopy(k8s_job_manifest("fio", "ns", "pvc", None, "quick", target="longhorn"))
    breakage(m)
    with pytest.raises(ValueError, match="invalid Job"):
        validate_job_manifest(m)


@needs_fio
def test_job_container_script_runs_fio_and_prints_parseable_json(tmp_path):
    """Run the Job's own shell command here, /data pointed at a temp dir: the pod log it would
    produce is fio JSON the parser reads."""
    m = k8s_job_manifest("fio", "ns", "pvc", ["lat_write"], "quick", target="local-path")
    c = m["spec"]["template"]["spec"]["containers"][0]
    env = {**os.environ, "FALKIT_FIO_JOBFILE": c["env"][0]["value"].replace("/data/", f"{tmp_path}/")}
    script = c["command"][-1].replace("/tmp/falkit.fio", str(tmp_path / "job.fio"))
    out = subprocess.run(c["command"][:-1] + [script], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    df = parse_fio_json(out.stdout)
    assert list(df["job"]) == ["lat_write"] and df.loc[0, "write_iops"] > 0 and df.loc[0, "source"] == "measured"
