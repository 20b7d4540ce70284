"""The benchmark chart and a plan as a person sees them: an HTML report (``falkit.runbook.runner.export_html``,
what ``falkit run`` archives) opened in Debian's Chromium through Playwright, offline. Assertions are
on the rendered SVG's text and styles, not on pixels.

Covers: the report's title (notebook · lab · time) and its banner back to index.html; the comparison
chart with Longhorn and Mayastor side by side (x ticks), five subplot titles in words with one unit
each that do not overlap on the page, the legend with one entry per role (seed claim, physical
ceiling, physical floor, result: modelled (twin)) in the same colour as that role's bars in every
subplot, the bar labels in MB/s and formatted (550, 166.7, "600 impossible"; no 166.666…, no
``mb_s``, no MiB); the plan's summary line and its left-aligned cells; no request leaves the page.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from falkit.bench.charts import COLORS, comparison_chart
from falkit.bench.fio import parse_fio_json
from falkit.bench.model import SEED_CLAIMS, ceilings, compare_with_claims, fio_json_from_model, the_fal
from falkit.plan.diff import Change, Plan
from falkit.runbook.runner import export_html, report_banner, report_title

TITLES = ["Sequential read (MB/s)", "Sequential write (MB/s)", "4k random read (IOPS)", "4k random write (IOPS)",
          "4k QD1 read latency (ms, lower is better)"]


def _rgb(hex_color: str) -> str:
    h = hex_color.lstrip("#")
    return "rgb({}, {}, {})".format(*(int(h[i:i + 2], 16) for i in (0, 2, 4)))


def _report(tmp_path: Path) -> Path:
    env, lh = the_fal(), the_fal(replicas=1)
    fig = comparison_chart({
        "longhorn": compare_with_claims(SEED_CLAIMS["longhorn"], ceilings(lh), parse_fio_json(fio_json_from_model("longhorn", env=lh))),
        "mayastor": compare_with_claims(SEED_CLAIMS["mayastor"], ceilings(env), parse_fio_json(fio_json_from_model("mayastor", env=env))),
    })
    plan = Plan("network", (Change("create", "bridge", "vmbr1", new="10.11.0.1/24", reason="the storage network, "
                                   "a bridge of its own so replication traffic stays off vmbr0 and its 2.5 GbE uplink"),
                            Change("update", "bridge", "vmbr0", "address", "10.30.0.1/24", "10.10.0.1/24", disruptive=True)))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('lab.step("network")', outputs=[nbformat.v4.new_output(
                    "display_data", data={"text/html": plan._repr_html_(), "text/plain": str(plan)})]),
                nbformat.v4.new_code_cell("bench = lab.benchmark_report()", outputs=[nbformat.v4.new_output(
                    "display_data", data={"application/vnd.plotly.v1+json": json.loads(fig.to_json()),
                                          "text/plain": "Figure"})])]
    ipynb = tmp_path / "50-mayastor.ipynb"
    nbformat.write(nb, ipynb)
    run = {"id": "20261203T090000Z-twin", "lab": "the-fal", "target": "twin", "started": "2026-12-03T09:00:00+00:00",
           "falkit": {"version": "0.1.0", "commit": "abc123"}}
    html = tmp_path / "50-mayastor.html"
    export_html(ipynb, html, title=report_title("50-mayastor", "the-fal", "2026-12-03T09:01:02+00:00"),
                banner=report_banner(run, "50-mayastor"))
    return html


def test_benchmark_chart_and_plan_in_the_html_report(chromium, tmp_path, shots):
    from playwright.sync_api import sync_playwright

    from falkit.runbook.jupyter import isolated_env

    html = _report(tmp_path)
    requested, errors = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--no-proxy-server"], env=isolated_env(tmp_path))
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})

            def route(r):
                if r.request.url.startswith(("file://", "data:")):
                    r.continue_()
                else:
                    requested.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(html.as_uri())
            page.wait_for_selector(".falkit-plotly .main-svg", timeout=30_000)
            page.screenshot(path=str(shots / "report-benchmark-chart.png"), full_page=True)
            title = page.title()
            banner = page.locator(".falkit-banner").inner_text()
            svg = page.evaluate("""() => {
                const plot = document.querySelector('.falkit-plotly');
                const box = e => { const b = e.getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom]; };
                const rgb = p => getComputedStyle(p).fill;
                return {
                  titles: [...plot.querySelectorAll('.annotation-text')].map(e => [e.textContent, box(e)]),
                  legendBox: box(plot.querySelector('.legend .bg')),
                  legend: [...plot.querySelectorAll('.legend .traces')].map(g => [
                      g.querySelector('.legendtext').textContent,
                      rgb(g.querySelector('.legendpoints path'))]),
                  bars: [...plot.querySelectorAll('.barlayer g.trace.bars')].map(g => [
                      g.__data__[0].trace.name, [...g.querySelectorAll('g.point path')].map(rgb)]),
                  barText: [...plot.querySelectorAll('.bartext')].map(e => e.textContent),
                  xticks: [...plot.querySelectorAll('.xaxislayer-above text')].map(e => e.textContent),
                  all: plot.textContent,
                };
            }""")
            plan_cells = page.evaluate("""() => [...document.querySelectorAll('table.falkit-plan td')]
                .map(td => [td.textContent, getComputedStyle(td).textAlign])""")
            plan_head = page.locator("text=/change\\(s\\):/").first.inner_text()
        finally:
            browser.close()
    assert errors == [] and requested == []
    assert title == "50-mayastor · the-fal · 2026-12-03 09:01:02 UTC"
    assert "run 20261203T090000Z-twin" in banner and "falkit 0.1.0 (abc123)" in banner

    assert [t for t, _ in svg["titles"]] == TITLES
    boxes = [b for _, b in svg["titles"]]
    for i, a in enumerate(boxes):  # no two subplot titles overlap on the page
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)

    lb = svg["legendBox"]
    for a in boxes:  # nor does the legend overlap them
        assert a[2] <= lb[0] or lb[2] <= a[0] or a[3] <= lb[1] or lb[3] <= a[1], (a, lb)
    legend = dict(svg["legend"])
    assert set(legend) == {"seed claim", "physical ceiling", "physical floor", "result: modelled (twin)"}
    assert len(svg["legend"]) == 4  # each role once
    roles = {"seed claim": "seed claim", "physical ceiling": "physical ceiling", "physical floor": "physical floor",
             "result: modelled (twin)": "result"}
    for name, role in roles.items():
        assert legend[name] == _rgb(COLORS[role]), name
        fills = {f for n, fs in svg["bars"] if n == name for f in fs if not f.startswith("url(")}
        assert fills == {_rgb(COLORS[role])}, (name, fills)  # the same colour in every subplot

    assert {"550", "166.7", "600 impossible", "800 impossible", "90k", "26.7k"} <= set(svg["barText"])
    assert not any("6666" in t for t in svg["barText"])
    assert svg["xticks"].count("Longhorn") == 5 and svg["xticks"].count("Mayastor") == 5
    assert "mb_s" not in svg["all"] and "MiB" not in svg["all"] and "524.5" not in svg["all"]

    assert plan_head.endswith("1 to add, 1 to change, 0 to destroy")
    assert all(align in ("left", "start") for _, align in plan_cells)
    assert any("its 2.5 GbE uplink" in text for text, _ in plan_cells)  # the reason in full


@pytest.fixture(scope="module")
def shots() -> Path:  # this module's screenshots, next to the JupyterLab test's
    from helpers import ROOT

    d = ROOT / "outputs" / "browser"
    d.mkdir(parents=True, exist_ok=True)
    return d
