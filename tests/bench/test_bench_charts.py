"""plotly figures: claims vs ceiling vs result (labelled modelled/measured) and trends across runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from falkit.bench.charts import claims_chart, trend_chart
from falkit.bench.fio import parse_fio_json
from falkit.bench.model import SEED_CLAIMS, ceilings, compare_with_claims, fio_json_from_model, the_fal

FIXTURE = Path(__file__).parent / "data" / "fio-3.33-quick-libaio-ext4.json"


def _names(fig) -> list[str]:
    return [t.name for t in fig.data]


def test_claims_chart_traces_and_labels():
    env = the_fal()
    cmp = compare_with_claims(SEED_CLAIMS["mayastor"], ceilings(env), parse_fio_json(fio_json_from_model("mayastor", env=env)))
    fig = claims_chart(cmp)
    names = _names(fig)
    assert names.count("seed claim") == len(cmp) == names.count("modelled (twin)")
    assert names.count("physical ceiling") == 4 and names.count("physical floor") == 1
    assert "measured" not in names
    claims = [t for t in fig.data if t.name == "seed claim"]
    assert [t.y[0] for t in claims] == list(cmp["claim"])
    impossible = {t.text[0] for t in claims if t.text is not None}
    assert impossible == {"impossible"} and sum(t.text is not None for t in claims) == 2
    assert len(fig.layout.annotations) == len(cmp)  # one subplot title per metric


def test_claims_chart_measured_and_no_result():
    measured = parse_fio_json(FIXTURE.read_text())
    fig = claims_chart(compare_with_claims({"seq_read_mb_s": 800}, ceilings(), measured))
    assert _names(fig) == ["seed claim", "physical ceiling", "measured"]
    fig = claims_chart(compare_with_claims({"seq_read_mb_s": 800}, ceilings(), None))
    assert _names(fig) == ["seed claim", "physical ceiling"]
    with pytest.raises(ValueError):
        claims_chart(compare_with_claims({}, ceilings(), None))


def test_trend_chart_series_per_target_and_source():
    env = the_fal()
    runs = [
        ("run-1", parse_fio_json(fio_json_from_model("mayastor", env=env))),
        ("run-2", parse_fio_json(fio_json_from_model("mayastor", env=the_fal(replicas=2)))),
        ("run-3", parse_fio_json(FIXTURE.read_text())),
    ]
    fig = trend_chart(runs)
    series = {t.name for t in fig.data}
    assert series == {"mayastor · modelled (twin)", "local · measured"}
    maya = [t for t in fig.data if t.name == "mayastor · modelled (twin)"]
    assert len(maya) == 6 and all(list(t.x) == ["run-1", "run-2"] for t in maya)
    assert sum(bool(t.showlegend) for t in maya) == 1
    seq_write = maya[1]
    assert seq_write.y[1] > seq_write.y[0]  # 2 replicas on one disk write faster than 3
    measured = [t for t in fig.data if t.name == "local · measured"]
    assert all(list(t.x) == ["run-3"] for t in measured)
    with pytest.raises(ValueError):
        trend_chart([])
