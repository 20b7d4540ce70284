"""falkit.runbook (the notebook facade) against the twin, headless, with the test step ``t-desc``.

Covers: option validation (unknown, ill-typed, step-declared options; before anything connects);
refusal of disruptive/destructive plans unless allowed (and the lab unchanged); apply -> converge
-> checks -> finish with the notebook's result.json (planned/applied changes, checks, journal
counts; it reads back into the typed ``NotebookResult``; the step options are frozen); dry runs change nothing and skip checks; a failing apply and a plan that never converges
raise StepError with a resume hint; a failed check makes finish raise after recording all checks;
params resolved against the cwd; headless progress lines; the interactive approval gate (a second
confirmation for destructive changes) applied by clicking; the dashboard reads VMs and Kubernetes
objects from the twin, and says why a section is not available (no kubeconfig yet). The lab
holds the apply flag once (``lab.apply`` reads ``step_options``) and the spec's one design.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from test_runbook_support import FAL, ROOT, set_value, value_of

from falkit import runbook
from falkit.model.design import design_of
from falkit.model.errors import ParameterError, RefusedError, StepError
from falkit.runbook import dashboard
from falkit.ui import widgets

pytest_plugins = ("test_runbook_support",)  # the session twin and state_env fixtures


def _value(lab, vmid=200) -> int:
    return value_of(lab.target, vmid)


def _set(lab, n, vmid=200) -> None:
    set_value(lab.target, n, vmid)


def test_unknown_and_illtyped_options_rejected_before_connecting(tmp_path, monkeypatch):
    monkeypatch.setenv("FALKIT_STATE_DIR", str(tmp_path))
    with pytest.raises(ParameterError) as exc:
        runbook.open(FAL, target="twin", notebook="t", allow_disruptve=True, wait_timeout_s="soon", t_value=1.5)
    msg = str(exc.value)
    assert "unknown option 'allow_disruptve'" in msg
    assert "'wait_timeout_s' must be a number" in msg and "'t_value' must be an integer" in msg
    assert not (tmp_path / "twin").exists()  # nothing was started or connected
    with pytest.raises(ParameterError, match="target must be one of"):
        runbook.open(FAL, target="prod")
    with pytest.raises(ParameterError, match="apply must be true or false"):
        runbook.open(FAL, apply="yes")


def test_validate_options_types_and_defaults():
    opts = runbook.validate_options({"wait_timeout_s": 5, "t_value": 6})
    assert opts["wait_timeout_s"] == 5.0 and isinstance(opts["wait_timeout_s"], float)
    assert opts["allow_disruptive"] is False and opts["t_value"] == 6
    with pytest.raises(ParameterError, match="must be true or false"):
        runbook.validate_options({"allow_destructive": 1})
    with pytest.raises(ParameterError, match="must be an integer"):
        runbook.validate_options({"t_value": True})


def test_params_resolved_against_cwd(monkeypatch):
    monkeypatch.chdir(ROOT / "notebooks")
    assert runbook.resolve_params("../parameters/fal.yaml") == FAL.resolve()
    assert runbook.resolve_params(str(FAL)) == FAL


def test_disruptive_refused_then_allowed_applies_and_records(state_env, tmp_path, monkeypatch):
    monkeypatch.setenv("FALKIT_RUN_DIR", str(tmp_path))
    lab = runbook.open(FAL, apply=True, notebook="t-refuse", t_value=2, t_disruptive=True)
    _set(lab, 1)
    s = lab.step("t-desc")
    assert [c.field for c in s.plan.changes] == ["description"]
    with pytest.raises(RefusedError) as exc:
        s.apply()
    assert "allow_disruptive" in str(exc.value) and "vm-config 200 description" in str(exc.value)
    assert _value(lab) == 1  # nothing applied
    assert json.loads((tmp_path / "t-refuse.result.json").read_text())["status"] == "failed"

    lab = runbook.open(FAL, apply=True, notebook="t-allow", t_value=2, t_disruptive=True, allow_disruptive=True)
    s = lab.step("t-desc")
    s.apply()
    assert s.converged and _value(lab) == 2
    checks = lab.checks("t-desc")
    assert [c.ok for c in checks] == [True]
    lab.finish()
    r = json.loads((tmp_path / "t-allow.result.json").read_text())
    assert r["status"] == "ok" and r["options"]["allow_disruptive"] is True
    step = r["steps"]["t-desc"]
    assert step["planned"][0]["new"] == "2" and step["applied"] == step["planned"] and step["converged"] is True
    assert r["checks"][0]["step"] == "t-desc" and r["checks"][0]["ok"] is True
    assert r["journal"]["mutating_calls"] == 1 and r["journal"]["by_api"] == {"pve": 1}
    assert {"plan_s", "apply_s", "converge_s", "checks_s"} <= set(step["timings"])
    # the archive is a typed value: result.json reads back into the NotebookResult the lab recorded
    assert runbook.NotebookResult.from_json(r) == lab.archive and lab.archive.steps["t-desc"].status == "applied"
    # the options every step received were validated once and are frozen, extra included
    assert lab.step_options.extra["t_value"] == 2
    with pytest.raises(TypeError):
        lab.step_options.extra["t_value"] = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        lab.step_options.allow_disruptive = False


def test_destructive_needs_its_own_option(state_env):
    lab = runbook.open(FAL, apply=True, notebook="t", t_value=3, t_destructive=True, allow_disruptive=True)
    _set(lab, 1)
    s = lab.step("t-desc")
    with pytest.raises(RefusedError, match="allow_destructive"):
        s.apply()
    assert _value(lab) == 1


def test_dry_run_changes_nothing_and_skips_checks(state_env, capsys):
    lab = runbook.open(FAL, apply=False, notebook="t-dry", t_value=4)
    assert lab.apply is False is lab.step_options.apply
    with pytest.raises(AttributeError):  # one flag (issue 18): lab.apply reads step_options
        lab.apply = True
    assert lab.design is design_of(lab.spec)  # the notebook's design, the one its steps read
    _set(lab, 1)
    s = lab.step("t-desc").apply()
    assert not s.converged and _value(lab) == 1
    assert lab.checks("t-desc") == []
    lab.finish()
    assert lab.result["steps"]["t-desc"]["checks"] == "skipped"
    assert lab.result["journal"]["mutating_calls"] == 1  # only the test's own _set
    assert "not applied: apply=False" in capsys.readouterr().out


def test_noop_plan(state_env):
    lab = runbook.open(FAL, apply=True, notebook="t", t_value=1)
    _set(lab, 1)
    mark = lab.target.journal.mark()
    s = lab.step("t-desc").apply()
    assert s.plan.empty and s.converged and lab.target.journal.count(mark) == 0
    assert lab.result["steps"]["t-desc"]["noops"][0]["reason"] == "description is value-1"


def test_failing_apply_raises_step_error_with_resume(state_env, tmp_path, monkeypatch):
    monkeypatch.setenv("FALKIT_RUN_DIR", str(tmp_path))
    lab = runbook.open(FAL, apply=True, notebook="t-fail", t_value=5, t_fail_apply=True)
    _set(lab, 1)
    with pytest.raises(StepError) as exc:
        lab.step("t-desc").apply()
    assert exc.value.step == "t-desc" and "planted failure" in str(exc.value)
    assert f"falkit run --resume {tmp_path}" in exc.value.resume
    r = json.loads((tmp_path / "t-fail.result.json").read_text())
    assert r["status"] == "failed" and "planted failure" in r["error"]


def test_not_converged_times_out(state_env):
    lab = runbook.open(FAL, apply=True, notebook="t", t_value=5, t_skip_apply=True, wait_timeout_s=0.3)
    _set(lab, 1)
    with pytest.raises(StepError, match=r"not converged after 0.3 s: 1 change\(s\) remain"):
        lab.step("t-desc").apply()
    assert lab.result["steps"]["t-desc"]["converged"] is False


def test_failed_check_makes_finish_raise(state_env, tmp_path, monkeypatch):
    monkeypatch.setenv("FALKIT_RUN_DIR", str(tmp_path))
    lab = runbook.open(FAL, apply=True, notebook="t-check", t_value=1)
    _set(lab, 6)  # drift behind the runbook's back
    checks = lab.checks("t-desc")
    assert [c.ok for c in checks] == [False]
    with pytest.raises(StepError, match="1 check\\(s\\) failed"):
        lab.finish()
    r = json.loads((tmp_path / "t-check.result.json").read_text())
    assert r["status"] == "failed" and r["checks"][0]["observed"] == "value-6"
    _set(lab, 1)


def test_progress_headless_lines(capsys):
    p = widgets.Progress("20-vms", interactive_mode=False)
    update = p.task("create talos-worker-02", total=100)
    for done, msg in ((0, "cloning"), (5, "cloning"), (40, "cloning"), (41, "cloning"), (100, "started")):
        update(done, msg)
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["[20-vms] create talos-worker-02: 0% cloning", "[20-vms] create talos-worker-02: 40% cloning",
                     "[20-vms] create talos-worker-02: 100% started"]


def test_interactive_gate_applies_on_click_with_destructive_confirm(state_env):
    lab = runbook.open(FAL, apply=False, notebook="t-gate", t_value=2, t_destructive=True,
                       allow_destructive=True)
    _set(lab, 1)
    lab.interactive = True  # as in a JupyterLab kernel; apply=False does not matter there
    s = lab.step("t-desc").apply()
    assert s.gate is not None and not s.converged
    assert lab.checks("t-desc") == []  # deferred until the step converged
    s.gate.apply_button.click()
    assert _value(lab) == 1 and not s.gate.done  # destructive: waits for the confirmation
    assert s.gate.confirm_button.layout.display == ""
    s.gate.confirm_button.click()
    assert s.gate.done and s.converged and _value(lab) == 2, repr(s.gate.error)
    assert s.gate.apply_button.layout.display == "none"
    assert [c["ok"] for c in lab.result["checks"]] == [True]  # the deferred checks ran
    _set(lab, 1)


def test_dashboard_reads_the_twin(state_env):
    from kubernetes import client

    lab = runbook.open(FAL, notebook="t-dash")
    core = client.CoreV1Api(lab.target.kube())
    svc = client.V1Service(metadata=client.V1ObjectMeta(name="dash-lb", namespace="default"),
                           spec=client.V1ServiceSpec(type="LoadBalancer", ports=[client.V1ServicePort(port=80)]))
    core.create_namespaced_service("default", svc)
    try:
        d = dashboard.Dashboard(lab.target).refresh()
        vms = {r["vmid"]: r for r in d.data["vms"]}
        assert vms[200]["name"] == "talos-cp-01" and vms[200]["status"] in ("running", "stopped")
        assert isinstance(d.data["nodes"], list) and isinstance(d.data["pods_not_ready"], list)
        assert "default/dash-lb" in [r["service"] for r in d.data["loadbalancers"]]
        text = d.text()
        assert "VMs and containers" in text and "talos-cp-01" in text and "default/dash-lb" in text
        assert d.html().count("<table") >= 2
    finally:
        core.delete_namespaced_service("dash-lb", "default")


def test_dashboard_without_kubeconfig_says_why(state_env, tmp_path, monkeypatch):
    import shutil

    from helpers import patched, write_yaml

    from falkit.clients.target import connect, private_dir_for

    base, conn = state_env
    px = conn["proxmox"]
    spec = write_yaml(tmp_path, patched({"secrets.proxmox_url": f"https://{px['host']}:{px['port']}",
                                         "secrets.proxmox_token": {"env": "FALKIT_TEST_PVE_TOKEN"}}))
    monkeypatch.setenv("FALKIT_TEST_PVE_TOKEN", open(px["token_file"]).read().strip())
    ca = private_dir_for("the-fal", "live", base) / "pve-ca.pem"
    shutil.copy(px["ca_file"], ca)
    try:
        d = dashboard.Dashboard(connect(spec, "live")).refresh()
    finally:
        ca.unlink()
    assert isinstance(d.data["vms"], list) and d.data["vms"]
    assert d.data["nodes"].startswith("not available: no kubeconfig")


def test_a_notebook_derives_its_design_once(state_env, monkeypatch):
    """Issue 18, "one derived design": a notebook's lab derives the design from its spec once, and
    the preflight, the dashboard and every step's observe/plan read that one value."""
    from falkit.model import design as design_mod

    calls: list[int] = []
    real = design_mod.derive_design
    monkeypatch.setattr(design_mod, "derive_design", lambda spec: calls.append(id(spec)) or real(spec))
    lab = runbook.open(FAL, apply=False, notebook="t-design")
    lab.preflight()
    for name in ("network", "vms", "talos", "cilium", "mayastor", "truenas_plex", "validation"):
        lab.plan_step(name)
    lab.dashboard()
    lab.finish()
    assert calls == [id(lab.spec)]
