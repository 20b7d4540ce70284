"""plotly figures of the benchmarks (falkit.bench.charts), as data: claims vs ceiling vs result with
Longhorn and Mayastor side by side, and trends across runs.

Covers: one unit system (MB/s: fio's MiB/s results converted, so a modelled 524.5 MiB/s read is 550
on the chart as in the claims table); subplot titles in words with the unit once (no
``seq_read_mb_s (MB/s)``); numbers on bars and in hovers formatted (``166.7``, never
``166.66666666666666``); one colour per role (claim, ceiling, floor, result) in every subplot, an
impossible claim hatched and labelled but the same colour; one legend entry per role; results named
by their source (modelled (twin) / measured); trend lines per (target, source) in MB/s.
The rendered SVG is checked in Chromium by tests/browser/test_report_charts.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from falkit.bench.charts import COLORS, METRIC_TITLES, claims_chart, comparison_chart, mb_s, trend_chart
from falkit.bench.fio import parse_fio_json
from falkit.bench.model import SEED_CLAIMS, ceilings, compare_with_claims, fio_json_from_model, the_fal

FIXTURE = Path(__file__).parent / "data" / "fio-3.33-quick-libaio-ext4.json"


def both_engines():
    env, lh = the_fal(), the_fal(replicas=1)  # Longhorn on The Fal: one replica (one old worker)
    return {"longhorn": compare_with_claims(SEED_CLAIMS["longhorn"], ceilings(lh),
                                            parse_fio_json(fio_json_from_model("longhorn", env=lh))),
            "mayastor": compare_with_claims(SEED_CLAIMS["mayastor"], ceilings(env),
                                            parse_fio_json(fio_json_from_model("mayastor", env=env)))}


def test_longhorn_and_mayastor_side_by_side_with_one_colour_per_role():
    fig = comparison_chart(both_engines())
    assert [a.text for a in fig.layout.annotations] == [
        "Sequential read (MB/s)", "Sequential write (MB/s)", "4k random read (IOPS)", "4k random write (IOPS)",
        "4k QD1 read latency (ms, lower is better)"]
    assert all("_" not in a.text for a in fig.layout.annotations)
    assert {tuple(t.x) for t in fig.data} == {("Longhorn", "Mayastor")}
    roles = {t.name: set() for t in fig.data}
    for t in fig.data:
        roles[t.name].add(t.marker.color)
    assert roles == {"seed claim": {COLORS["seed claim"]}, "physical ceiling": {COLORS["physical ceiling"]},
                     "physical floor": {COLORS["physical floor"]}, "result: modelled (twin)": {COLORS["result"]}}
    assert len(set(COLORS.values())) == 4  # claim, ceiling, floor and result never share a colour
    legend = [t.name for t in fig.data if t.showlegend]
    assert sorted(legend) == sorted(roles)  # each role once in the legend
    per_subplot = {}
    for t in fig.data:
        per_subplot.setdefault(t.xaxis, []).append(t.name)
    assert len(per_subplot) == 5 and all(len(v) == 3 for v in per_subplot.values())


def test_one_unit_system_and_formatted_numbers():
    cmp = both_engines()
    fig = comparison_chart(cmp)
    seq_read = {t.name: t for t in fig.data if t.xaxis == "x"}
    result = seq_read["result: modelled (twin)"]
    raw = parse_fio_json(fio_json_from_model("mayastor", env=the_fal()))
    mib = float(raw[raw["job"] == "seq_read"]["read_mib_s"].iloc[0])
    assert round(mib, 1) == 524.5  # fio's unit …
    assert result.y[1] == pytest.approx(mb_s(mib)) and round(result.y[1]) == 550  # … drawn in MB/s
    assert list(result.text) == ["550", "550"]
    assert cmp["mayastor"].set_index("metric").loc["seq_read_mb_s", "result"] == pytest.approx(result.y[1])  # table = chart
    seq_write = {t.name: t for t in fig.data if t.xaxis == "x2"}
    assert list(seq_write["physical ceiling"].text) == ["500", "166.7"]
    texts = [x for t in fig.data for x in (t.text or ())] + [h for t in fig.data for h in (t.hovertemplate or ())]
    assert not any("6666" in x for x in texts)
    claims = seq_write["seed claim"]
    assert list(claims.text) == ["150", "600 impossible"] and list(claims.marker.pattern.shape) == ["", "/"]
    assert claims.marker.color == COLORS["seed claim"]  # impossible: hatched, not another colour


def test_one_engine_measured_and_no_result():
    measured = parse_fio_json(FIXTURE.read_text())
    fig = claims_chart(compare_with_claims({"seq_read_mb_s": 800}, ceilings(), measured), target="mayastor")
    assert [t.name for t in fig.data] == ["seed claim", "physical ceiling", "result: measured"]
    assert list(fig.data[0].x) == ["Mayastor"]
    fig = claims_chart(compare_with_claims({"seq_read_mb_s": 800}, ceilings(), None))
    assert [t.name for t in fig.data] == ["seed claim", "physical ceiling"]
    with pytest.raises(ValueError):
        claims_chart(compare_with_claims({}, ceilings(), None))
    assert set(METRIC_TITLES) >= {"seq_read_mb_s", "latency_ms"}


def test_trend_chart_series_per_target_and_source_in_mb_s():
    env = the_fal()
    runs = [
        ("run-1", parse_fio_json(fio_json_from_model("mayastor", env=env))),
        ("run-2", parse_fio_json(fio_json_from_model("mayastor", env=the_fal(replicas=2)))),
        ("run-3", parse_fio_json(FIXTURE.read_text())),
    ]
    fig = trend_chart(runs)
    assert [a.text for a in fig.layout.annotations][:2] == ["Sequential read (MB/s)", "Sequential write (MB/s)"]
    series = {t.name for t in fig.data}
    assert series == {"mayastor · modelled (twin)", "local · measured"}
    maya = [t for t in fig.data if t.name == "mayastor · modelled (twin)"]
    assert len(maya) == 6 and all(list(t.x) == ["run-1", "run-2"] for t in maya)
    assert sum(bool(t.showlegend) for t in maya) == 1
    assert round(maya[0].y[0]) == 550  # MB/s, as in the comparison chart (524.5 MiB/s)
    seq_write = maya[1]
    assert seq_write.y[1] > seq_write.y[0]  # 2 replicas on one disk write faster than 3
    measured = [t for t in fig.data if t.name == "local · measured"]
    assert all(list(t.x) == ["run-3"] for t in measured)
    with pytest.raises(ValueError):
        trend_chart([])
