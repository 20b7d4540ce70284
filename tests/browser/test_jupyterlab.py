"""The runbook in a real JupyterLab, driven by Debian's Chromium through Playwright, against the twin.

Covers (fixtures in conftest.py: twin in the "before" state, JupyterLab on loopback with isolated
state, Chromium with every non-loopback request aborted):

- 00-preflight: Run → Run All Cells; the kernel goes idle with every code cell executed and no
  traceback; the plan/findings tables and the host-budget plotly chart (``.js-plotly-plot``, drawn
  by JupyterLab's plotly mimetype renderer with no CDN) are rendered.
- 20-vms (after the network step, applied headlessly as 10-network would; ``allow_disruptive`` on
  in the copy: the before state's MACs change): after Run All the
  plan table, the approval gate's Apply button and the lab dashboard are rendered, the notebook
  waits for the click, and the twin is unchanged (same VMs and configs, the vms plan still not
  empty); pressing Apply (and Confirm, when the gate asks for it) applies: progress bars
  (``.widget-hprogress``) appear, the gate says "applied and converged" and its Apply button is
  gone, the deferred checks table appears, and a fresh plan of the vms step is empty.
- No request left loopback; no JavaScript error on the pages. Screenshots in ``outputs/browser/``.
"""

from __future__ import annotations

import re
import time

from helpers import FAL

RUN_ALL = '.lm-Menu-item[data-command="runmenu:run-all"]'  # Run → Run All Cells


# ---------------------------------------------------------------------------------------------- helpers


def kernel_state(jupyter, path: str) -> str | None:
    for s in jupyter.api("api/sessions"):
        if s.get("path") == path and s.get("kernel"):
            return s["kernel"].get("execution_state")
    return None


def pause(page, seconds: float) -> None:
    """Wait while Playwright keeps serving the route handler (``time.sleep`` would stall every request)."""
    page.wait_for_timeout(seconds * 1000)


def wait_kernel_idle(page, jupyter, path: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    state = None
    while time.monotonic() < deadline:
        state = kernel_state(jupyter, path)
        if state == "idle":
            return
        pause(page, 0.5)
    raise AssertionError(f"the kernel of {path} is not idle after {timeout_s} s (state {state})")


def open_notebook(page, jupyter, path: str) -> None:
    page.goto(jupyter.lab_url(path))
    page.wait_for_selector(".jp-NotebookPanel .jp-CodeCell", timeout=120_000)  # first load: 20-40 s
    wait_kernel_idle(page, jupyter, path)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)


def run_all_and_wait(page, jupyter, path: str, timeout_s: float = 240) -> list[str]:
    """Run → Run All Cells, then wait until every code cell has an execution count and the kernel is idle."""
    page.locator("li.lm-MenuBar-item").filter(has_text=re.compile(r"^\s*Run\s*$")).click()
    page.locator(RUN_ALL).click()
    deadline = time.monotonic() + timeout_s
    prompts: list[str] = []
    while time.monotonic() < deadline:
        prompts = page.locator(".jp-CodeCell .jp-InputArea-prompt").all_inner_texts()
        if prompts and all(re.fullmatch(r"\s*\[\d+\]:\s*", p) for p in prompts) and kernel_state(jupyter, path) == "idle":
            return prompts
        pause(page, 0.5)
    raise AssertionError(f"{path}: cells not all executed after {timeout_s} s: prompts {prompts}")


def outputs_text(page) -> str:
    return "\n".join(page.locator(".jp-OutputArea-output").all_inner_texts())


def shot(page, shots, name: str, locator=None) -> str:
    path = shots / f"{name}.png"
    if locator is not None:
        locator.scroll_into_view_if_needed()
        locator.screenshot(path=str(path))
    else:
        page.screenshot(path=str(path))
    print(f"screenshot: {path}")
    return str(path)


def vms_state(base):
    """The twin's VMs and their configs, and the vms step's fresh plan (read through falkit's clients)."""
    from falkit.clients.target import connect
    from falkit.model.spec import load_spec
    from falkit.steps.base import StepOptions
    from falkit.steps.registry import get_step

    spec = load_spec(FAL)
    target = connect(spec, "twin", state_dir=base, start_twin=False)
    node = target.pve.nodes(target.node)
    vms = {v["vmid"]: node.qemu(v["vmid"]).config.get() for v in node.qemu.get()}
    for cfg in vms.values():
        cfg.pop("digest", None)
    step = get_step("vms")
    opts = StepOptions(allow_disruptive=True)
    plan = step.plan(spec, step.observe(target, spec, opts), opts)
    return vms, plan


# ---------------------------------------------------------------------------------------------- tests


def test_preflight_renders_tables_and_plotly_chart(page, jupyter, shots):
    path = "notebooks/00-preflight.ipynb"
    open_notebook(page, jupyter, path)
    run_all_and_wait(page, jupyter, path)
    text = outputs_text(page)
    assert "Traceback" not in text, text[-3000:]
    chart = page.locator(".jp-RenderedPlotly.js-plotly-plot").first  # the plotly mimetype renderer
    chart.wait_for(state="visible", timeout=60_000)
    assert page.locator(".js-plotly-plot g.point").count() >= 10  # bars were drawn
    assert page.locator("table.falkit-table").count() >= 3  # header, plan, services, findings
    assert "Plan: machines" in text and "Findings" in text
    shot(page, shots, "00-preflight-top")
    shot(page, shots, "00-preflight-chart", chart)
    assert page.blocked == [], page.blocked
    assert page.errors == [], page.errors


def apply_network_headless(base, monkeypatch) -> None:
    """What 10-network does before 20-vms in the runbook (vmbr1 must exist for the workers' net1)."""
    from falkit import runbook

    monkeypatch.setenv("FALKIT_STATE_DIR", str(base))
    monkeypatch.setenv("FALKIT_HEADLESS", "1")
    monkeypatch.delenv("FALKIT_RUN_DIR", raising=False)
    lab = runbook.open(FAL, target="twin", apply=True, notebook="10-network", allow_disruptive=True)
    assert lab.step("network").apply().converged


def test_vms_gate_applies_only_on_click(page, jupyter, browser_twin, shots, monkeypatch):
    base, _conn = browser_twin
    path = "notebooks/20-vms.ipynb"
    apply_network_headless(base, monkeypatch)
    vms_before, plan_before = vms_state(base)
    assert not plan_before.empty  # the before state differs from the plan (MACs, missing VMs)

    open_notebook(page, jupyter, path)
    run_all_and_wait(page, jupyter, path)
    text = outputs_text(page)
    assert "Traceback" not in text, text[-3000:]

    plan = page.locator("table.falkit-plan").first
    plan.wait_for(state="visible")
    assert plan.locator("tr").count() == len(plan_before.changes) + 1  # header + one row per change
    gate = page.locator(".falkit-approval").first
    apply_button = gate.locator("button", has_text="Apply")
    apply_button.wait_for(state="visible")
    dash = page.locator(".falkit-dashboard").first
    dash.wait_for(state="visible")
    assert "VMs and containers" in dash.inner_text() and "Lab dashboard" in dash.inner_text()
    assert "talos-worker-01" in dash.inner_text() and "talos-worker-03" not in dash.inner_text()
    assert "waiting for approval" in gate.inner_text()
    assert page.locator(".falkit-dashboard").count() == 1  # shown once, not again as the cell's value
    shot(page, shots, "20-vms-dashboard-before", dash)
    gate.scroll_into_view_if_needed()
    shot(page, shots, "20-vms-plan-and-gate")

    pause(page, 2)  # nothing may happen without the click
    vms_waiting, plan_waiting = vms_state(base)
    assert vms_waiting == vms_before and plan_waiting == plan_before

    apply_button.click()
    confirm = gate.locator("button", has_text="Confirm")
    status = gate.locator(".widget-html").filter(has_text=re.compile("applied and converged|failed|waiting for confirmation"))
    status.first.wait_for(timeout=180_000)
    if "waiting for confirmation" in gate.inner_text():  # disruptive/destructive changes: the second click
        shot(page, shots, "20-vms-confirm", gate)
        assert vms_state(base)[0] == vms_before  # still nothing applied
        confirm.click()
    gate.get_by_text("applied and converged").wait_for(timeout=300_000)
    assert not apply_button.is_visible()
    bars = page.locator(".widget-hprogress")
    assert bars.count() >= 1 and bars.first.is_visible()
    page.get_by_text(re.compile(r"Checks of vms: \d+ ok, 0 failed")).wait_for(timeout=120_000)
    wait_kernel_idle(page, jupyter, path)
    shot(page, shots, "20-vms-gate-after-apply", gate)
    shot(page, shots, "20-vms-dashboard-after", dash)
    assert "talos-worker-03" in dash.inner_text()  # refreshed by the gate after applying
    gate.scroll_into_view_if_needed()
    shot(page, shots, "20-vms-after-apply")

    vms_after, plan_after = vms_state(base)
    assert plan_after.empty, str(plan_after)
    assert vms_after != vms_before
    assert page.blocked == [], page.blocked
    assert page.errors == [], page.errors
