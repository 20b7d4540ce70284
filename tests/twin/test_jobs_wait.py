"""A Kubernetes Job wait (falkit.clients.kube.run_job: fio, checksum and copy Jobs) says what it waits for
at least every interval (issue 12, item 5), against the twin's Kubernetes API: a checksum Job on a
claim that does not exist never finishes; the lines name the Job and its pods' state until the
timeout, which names the Job too."""

from __future__ import annotations

import re

import pytest

from falkit.clients.kube import JobFailedError, checksum_job, run_job


def test_run_job_prints_what_it_waits_for(twin, monkeypatch, capsys):
    monkeypatch.setenv("FALKIT_WAIT_REPORT_S", "0.3")
    with pytest.raises(JobFailedError, match="checksum-missing"):
        run_job(twin.api, checksum_job("checksum-missing", "default", "no-such-claim"), timeout_s=1.5, poll_s=0.05)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) >= 3, lines
    assert all(re.fullmatch(r"waiting for Job default/checksum-missing: \d+ pod\(s\) active, 0 succeeded "
                            r"\(\d\.\d s of 1\.5 s\)", x) for x in lines), lines
