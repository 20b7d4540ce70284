"""fio results are reused per storage fingerprint, not per outputs folder (issue 16 item 9).

Covers, through 50-mayastor's facade calls on the twin (`runbook.open(...).step("benchmarks")`):
a run archived under one ``--outputs`` folder measures the storage (a fio Job runs in the twin's
Kubernetes); a later run archived under *another* outputs folder, same lab and same storage, plans
no fio Job, says which run measured it, creates no Job in the lab, and its checks use that result.
"""

from __future__ import annotations

from test_runbook_support import FAL

from falkit import runbook

pytest_plugins = ("test_runbook_support",)


def _jobs(lab) -> list[str]:
    from falkit.clients.kube import klist

    return sorted(j["metadata"]["name"] for j in klist(lab.target.kube(), "batch/v1", "Job", "falkit-bench"))


def test_another_outputs_folder_reuses_the_measurement(state_env, tmp_path, monkeypatch):
    first = tmp_path / "outputs-a" / "20261201T1000Z-twin"
    monkeypatch.setenv("FALKIT_RUN_DIR", str(first))
    lab = runbook.open(FAL, target="twin", apply=True, notebook="50-mayastor", bench_profile="quick")
    run = lab.step("benchmarks")
    measured = [c.name for c in run.plan.changes if c.kind == "fio"]
    assert measured, run.plan.rows()
    run.apply()
    assert all((first / "bench" / f"{t}.json").is_file() for t in measured)
    jobs_before = _jobs(lab)
    assert jobs_before

    second = tmp_path / "outputs-b" / "20261201T1100Z-twin"
    monkeypatch.setenv("FALKIT_RUN_DIR", str(second))
    lab2 = runbook.open(FAL, target="twin", apply=True, notebook="50-mayastor", bench_profile="quick")
    again = lab2.step("benchmarks")
    assert not [c for c in again.plan.changes if c.kind == "fio"], again.plan.rows()
    reasons = {n.name: n.reason for n in again.plan.noops if n.kind == "fio"}
    for t in measured:
        assert "run 20261201T1000Z-twin measured this storage" in reasons[t]
    again.apply()
    assert _jobs(lab2) == jobs_before  # no new fio Job in the lab
    lab2.save()
    assert lab2.result["journal"]["mutating_calls"] == 0, lab2.result["journal"]
    assert not (second / "bench").exists() or not any((second / "bench").glob("*.json"))
