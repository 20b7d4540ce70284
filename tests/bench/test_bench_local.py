"""`run_local` and `main_bench` running real fio here (quick profile, a few seconds), the
psync/buffered fallback, and the error when fio is missing."""

from __future__ import annotations

import argparse
import json
import shutil
import time

import pytest

from falkit.bench import local
from falkit.bench.fio import FioError
from falkit.bench.local import FALLBACK_NOTE, add_bench_arguments, main_bench, run_local, supports_o_direct

needs_fio = pytest.mark.skipif(shutil.which("fio") is None, reason="fio not installed (apt-get install fio)")


@needs_fio
def test_run_local_live_quick(tmp_path):
    t0 = time.monotonic()
    df = run_local(tmp_path, profile="quick", jobs=["seq_write", "lat_read"])
    assert time.monotonic() - t0 < 10
    assert list(df["job"]) == ["seq_write", "lat_read"]
    assert set(df["source"]) == {"measured"} and df["fio_version"].iloc[0].startswith("fio-")
    assert df.loc[0, "write_mib_s"] > 0 and df.loc[1, "read_iops"] > 0 and df.loc[1, "clat_mean_ms"] > 0
    if supports_o_direct(tmp_path):
        assert df.attrs["ioengine"] == "libaio" and df.attrs["direct"] and df.attrs["note"] == ""
    assert list(tmp_path.iterdir()) == [], "data file must be removed"


@needs_fio
def test_run_local_falls_back_to_psync_when_o_direct_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(local, "supports_o_direct", lambda d: False)
    df = run_local(tmp_path, jobs=["rand_read_iops"])
    assert df.attrs["ioengine"] == "psync" and not df.attrs["direct"] and df.attrs["note"] == FALLBACK_NOTE
    assert set(df["ioengine"]) == {"psync"} and df.loc[0, "read_iops"] > 0


def test_supports_o_direct_on_a_real_directory(tmp_path):
    assert isinstance(supports_o_direct(tmp_path), bool)
    assert list(tmp_path.iterdir()) == []


def test_missing_fio_names_apt_get(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FioError, match="apt-get install fio"):
        run_local(tmp_path)
    args = add_bench_arguments(argparse.ArgumentParser()).parse_args(["--local", "--dir", str(tmp_path)])
    assert main_bench(args) == 1


def test_not_a_directory(tmp_path):
    if shutil.which("fio") is None:
        pytest.skip("fio not installed")
    with pytest.raises(FioError, match="not a directory"):
        run_local(tmp_path / "nope")


def test_main_bench_without_local_is_a_usage_error(capsys):
    assert main_bench(add_bench_arguments(argparse.ArgumentParser()).parse_args([])) == 2
    assert "--local" in capsys.readouterr().err


@needs_fio
def test_main_bench_prints_table_and_json(tmp_path, capsys, monkeypatch):
    real = local.run_local
    monkeypatch.setattr(local, "run_local", lambda d, profile, **kw: real(d, profile=profile, jobs=["seq_read"], **kw))
    parser = add_bench_arguments(argparse.ArgumentParser())
    assert main_bench(parser.parse_args(["--local", "--dir", str(tmp_path)])) == 0
    out = capsys.readouterr().out
    assert "source: measured" in out and "seq_read" in out and "clat mean ms" in out
    assert main_bench(parser.parse_args(["--local", "--dir", str(tmp_path), "--json"])) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["meta"]["profile"] == "quick" and doc["results"][0]["job"] == "seq_read"
    assert doc["results"][0]["source"] == "measured"
