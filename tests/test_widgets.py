"""falkit.ui.widgets (approval gate, progress) and falkit.runbook.dashboard, in-process, clicking real ipywidgets.

Covers: the gate applies nothing until Apply is clicked, then hides its buttons and says
"converged"; destructive and disruptive changes need a second click (Confirm), Cancel applies
nothing; a failing apply shows the error and can be retried; an apply that does not converge says
so; while applying, the gate refreshes the lab dashboard from a background thread and stops it
afterwards; through the runbook (step ``t-desc`` on the twin) nothing reaches Proxmox before the
click; interactive progress bars; the dashboard on the twin (text, summary, HTML, widget with
auto-refresh), before Talos bootstrap (no kubeconfig) and with a Kubernetes API that does not answer
(fails fast, VMs still shown); a gate given no dashboard refreshes the last one shown in the kernel
(falkit.ui.widgets keeps it: widgets does not import falkit.runbook.dashboard, issue 18).
"""

from __future__ import annotations

import time
from html import escape

import pytest
from test_runbook_support import FAL, set_value, value_of

from falkit import runbook
from falkit.runbook import dashboard
from falkit.ui import widgets

pytest_plugins = ("test_runbook_support",)  # the session twin and state_env fixtures


class Recorder:
    """An ``on_apply`` that records its calls and returns/raises what it is told."""

    def __init__(self, result=True, fail: Exception | None = None):
        self.calls = 0
        self.result = result
        self.fail = fail

    def __call__(self) -> bool:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        return self.result


def test_gate_applies_only_on_click_then_hides_buttons():
    rec = Recorder()
    gate = widgets.ApprovalGate("apply 2 change(s) of vms", rec)
    assert rec.calls == 0 and gate.state == "waiting" and not gate.needs_confirmation
    assert "nothing is applied until you press Apply" in gate.heading.value
    gate.apply_button.click()
    assert rec.calls == 1 and gate.done and gate.state == "converged"
    assert gate.apply_button.layout.display == "none" and gate.buttons.layout.display == "none"
    assert "applied and converged" in gate.status.value
    gate.apply_button.click()  # a stale click after convergence does nothing
    assert rec.calls == 1


@pytest.mark.parametrize("kind", ["destructive", "disruptive"])
def test_risky_changes_need_confirmation_and_cancel_applies_nothing(kind):
    rec = Recorder()
    change = "- vm talos-worker-03" if kind == "destructive" else "~ vm-config 201 net0: 52:54:00:10:30:11 -> 52:54:00:10:10:11"
    gate = widgets.ApprovalGate("apply", rec, **{kind: [change]})
    assert gate.needs_confirmation and gate.confirm_button.layout.display == "none"
    gate.apply_button.click()
    assert rec.calls == 0 and gate.state == "confirming"
    assert gate.confirm_button.layout.display == "" and f"1 {kind}" in gate.confirm_button.description
    assert escape(change) in gate.warning.value and kind in gate.warning.value
    assert gate.apply_button.disabled
    gate.cancel_button.click()
    assert rec.calls == 0 and gate.state == "waiting" and not gate.apply_button.disabled
    assert gate.confirm_button.layout.display == "none" and "nothing applied" in gate.status.value
    gate.confirm_button.click()  # hidden and not confirming: ignored
    assert rec.calls == 0
    gate.apply_button.click()
    gate.confirm_button.click()
    assert rec.calls == 1 and gate.done


def test_destructive_and_disruptive_listed_once_each():
    gate = widgets.ApprovalGate("apply", Recorder(), destructive=["- vm a"], disruptive=["- vm a", "~ vm b net0"])
    assert gate.disruptive == ["~ vm b net0"]
    assert gate.confirm_button.description == "Confirm 1 destructive + 1 disruptive change(s)"


def test_failed_apply_is_shown_and_can_be_retried():
    rec = Recorder(fail=RuntimeError("task UPID:fal:1 failed: storage helford full"))
    gate = widgets.ApprovalGate("apply", rec)
    gate.apply_button.click()
    assert gate.state == "failed" and "storage helford full" in gate.status.value
    assert not gate.apply_button.disabled and gate.apply_button.layout.display != "none"
    rec.fail = None
    gate.apply_button.click()
    assert rec.calls == 2 and gate.done


def test_not_converged_keeps_apply():
    gate = widgets.ApprovalGate("apply", Recorder(result=False))
    gate.apply_button.click()
    assert gate.state == "not converged" and not gate.apply_button.disabled


def test_gate_refreshes_dashboard_while_applying(state_env):
    lab = runbook.open(FAL, notebook="t-gate-dash")
    dash = dashboard.Dashboard(lab.target).refresh()
    seen = {}

    def slow_apply() -> bool:
        seen["running"] = dash.running
        before = dash.refreshes
        deadline = time.monotonic() + 10
        while dash.refreshes < before + 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        seen["background_refreshes"] = dash.refreshes - before
        return True

    gate = widgets.ApprovalGate("apply", slow_apply, dashboard=dash, refresh_s=0.1)
    gate.apply_button.click()
    assert seen["running"] is True and seen["background_refreshes"] >= 2
    assert gate.done and not dash.running


def test_gate_refreshes_the_last_dashboard_shown(state_env, monkeypatch):
    lab = runbook.open(FAL, notebook="t-gate-last-dash")
    monkeypatch.delenv("FALKIT_HEADLESS")
    monkeypatch.setenv("FALKIT_INTERACTIVE", "1")  # shown as a widget, as in JupyterLab
    dash = dashboard.Dashboard(lab.target).show()
    assert widgets.last_dashboard() is dash and dashboard.Dashboard.last_shown() is dash
    seen = {}

    def slow_apply() -> bool:
        seen["running"] = dash.running
        before = dash.refreshes
        deadline = time.monotonic() + 10
        while dash.refreshes < before + 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        seen["background_refreshes"] = dash.refreshes - before
        return True

    gate = widgets.ApprovalGate("apply", slow_apply, refresh_s=0.1)  # no dashboard given
    gate.apply_button.click()
    assert seen["running"] is True and seen["background_refreshes"] >= 2
    assert gate.done and not dash.running and "talos-cp-01" in dash._html.value


def test_runbook_gate_applies_nothing_before_click(state_env):
    lab = runbook.open(FAL, apply=True, notebook="t-gate-nothing", t_value=9)
    set_value(lab.target, 1)
    lab.interactive = True  # as in a JupyterLab kernel: even apply=True waits for the click
    mark = lab.target.journal.mark()
    s = lab.step("t-desc").apply()
    time.sleep(0.3)
    assert s.gate is not None and s.gate.state == "waiting"
    assert value_of(lab.target, 200) == 1 and lab.target.journal.count(mark) == 0
    assert lab.result["steps"]["t-desc"]["status"] == "waiting for approval"
    s.gate.apply_button.click()
    assert s.gate.done and s.converged and value_of(lab.target, 200) == 9
    assert lab.step("t-desc").plan.empty  # converged: a fresh plan is empty
    set_value(lab.target, 1)


def test_progress_interactive_bars():
    import ipywidgets as w

    p = widgets.Progress("20-vms", interactive_mode=True)
    assert isinstance(p._box, w.VBox) and "falkit-progress" in p._box._dom_classes
    update = p.task("create talos-worker-02", total=4)
    update(1, "cloning")
    (row,) = p._box.children
    bar, label = row.children[1], row.children[2]
    assert isinstance(bar, w.IntProgress) and bar.value == 25 and label.value == "25% cloning"
    update(4, "started")
    assert bar.value == 100 and bar.bar_style == "success"
    p.log("waiting for 1 change(s) to settle")
    assert "settle" in p._box.children[-1].value


def test_dashboard_headless_show(state_env, capsys):
    assert dashboard.DISKPOOL_VERSIONS == ("v1beta3", "v1beta2")
    lab = runbook.open(FAL, notebook="t-dash-text")
    capsys.readouterr()
    d = dashboard.Dashboard(lab.target).show()
    out = capsys.readouterr().out
    assert out.startswith("Lab dashboard (") and "VMs running" in out and "talos-cp-01" in out
    for title in dashboard.Dashboard.TITLES.values():
        assert title in out
    assert isinstance(d.data["nodes"], list) and "nodes Ready" in d.summary()
    assert d.html().startswith("<div class='falkit-dashboard'>")


def test_dashboard_widget_refresh_and_auto_refresh(state_env):
    lab = runbook.open(FAL, notebook="t-dash-widget")
    d = dashboard.Dashboard(lab.target).refresh()
    box = d.widget()
    assert d.widget() is box and "falkit-dashboard-widget" in box._dom_classes
    refresh, toggle = box.children[0].children
    n = d.refreshes
    refresh.click()
    assert d.refreshes == n + 1 and "talos-cp-01" in d._html.value
    toggle.value = True
    assert d.running
    toggle.value = False
    assert not d.running


def test_dashboard_when_kubernetes_api_does_not_answer(state_env, tmp_path):
    """A kubeconfig whose server is a closed loopback port: fast, one reason, VMs still shown."""
    from falkit.clients.kube import journaled_api_client
    from falkit.runbook.jupyter import free_port

    lab = runbook.open(FAL, notebook="t-dash-down")
    kc = tmp_path / "kubeconfig"
    kc.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{free_port()}"}}}}]
users: [{{name: u, user: {{token: x}}}}]
contexts: [{{name: c, context: {{cluster: c, user: u}}}}]
current-context: c
""")

    class DownKube:  # the real Proxmox client of the twin, a real Kubernetes client with no server
        pve, node = lab.target.pve, lab.target.node

        def kube(self):
            return journaled_api_client(kc, None)

    t0 = time.monotonic()
    d = dashboard.Dashboard(DownKube(), request_timeout_s=2).refresh()
    assert time.monotonic() - t0 < 15
    assert isinstance(d.data["vms"], list) and d.data["vms"]
    reasons = {d.data[k] for k in ("nodes", "pods_not_ready", "diskpools", "loadbalancers")}
    assert len(reasons) == 1 and reasons.pop().startswith("not available: Kubernetes API not answering")
    assert "Kubernetes not available" in d.summary()
