"""plotly figures for benchmark results: claims vs physics vs results, and trends across runs.

Every result trace says where its numbers come from: ``modelled (twin)`` or ``measured``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["claims_chart", "source_label", "trend_chart"]

_TREND_METRICS = (
    # (title, job, column)
    ("seq read MiB/s", "seq_read", "read_mib_s"),
    ("seq write MiB/s", "seq_write", "write_mib_s"),
    ("4k rand read IOPS", "rand_read_iops", "read_iops"),
    ("4k rand write IOPS", "rand_write_iops", "write_iops"),
    ("QD1 read latency ms", "lat_read", "clat_mean_ms"),
    ("QD1 write latency ms", "lat_write", "clat_mean_ms"),
)


def source_label(source: str | None) -> str:
    """``modelled`` -> ``modelled (twin)``; anything else (``measured``) unchanged."""
    if source == "modelled":
        return "modelled (twin)"
    return source or "no result"


def claims_chart(compare_df: pd.DataFrame, title: str = "Seed claims vs The Fal's physics") -> go.Figure:
    """One subplot per metric (units differ) with three bars: the seed's claim, the physical
    ceiling (a floor for latency) and the result, the latter named by its source. Claims that are
    impossible on the hardware are drawn red. Input: ``model.compare_with_claims`` output."""
    n = len(compare_df)
    if n == 0:
        raise ValueError("nothing to chart: empty comparison")
    fig = make_subplots(rows=1, cols=n, subplot_titles=[f"{r.metric} ({r.unit})" for r in compare_df.itertuples()])
    shown: set[str] = set()

    def bar(name: str, x: str, y, col: int, color: str, text: str | None = None) -> None:
        fig.add_trace(
            go.Bar(name=name, x=[x], y=[y], marker_color=color, legendgroup=name,
                   showlegend=name not in shown, text=[text] if text else None,
                   hovertemplate=f"{name}: %{{y:,.2f}}<extra></extra>"),
            row=1, col=col,
        )  # fmt: skip
        shown.add(name)

    for i, r in enumerate(compare_df.itertuples(), start=1):
        bar("seed claim", "claim", r.claim, i, "#d62728" if not r.possible else "#7f7f7f",
            None if r.possible else "impossible")  # fmt: skip
        if r.ceiling is not None and not pd.isna(r.ceiling):
            name = "physical floor" if r.unit == "ms" else "physical ceiling"
            bar(name, "floor" if r.unit == "ms" else "ceiling", r.ceiling, i, "#1f77b4")
        if r.result is not None and not pd.isna(r.result):
            label = source_label(r.source)
            bar(label, "result", r.result, i, "#2ca02c" if r.source == "measured" else "#ff7f0e")
    fig.update_layout(title=title, barmode="group", height=420, legend_title_text="")
    return fig


def trend_chart(run_results: Sequence[tuple[str, pd.DataFrame]], title: str = "Benchmark trend across runs") -> go.Figure:
    """One subplot per kbench metric, x = run id (in the given order), one line per
    (target, source) so modelled and measured results are never joined into one line."""
    if not run_results:
        raise ValueError("nothing to chart: no runs")
    rows = []
    for run_id, df in run_results:
        for metric, job, col in _TREND_METRICS:
            hit = df[df["job"] == job]
            for r in hit.itertuples():
                target = getattr(r, "target", None)
                rows.append({"run": str(run_id), "metric": metric, "value": float(getattr(r, col)),
                             "series": f"{target or 'local'} · {source_label(getattr(r, 'source', 'measured'))}"})  # fmt: skip
    long = pd.DataFrame(rows, columns=["run", "metric", "value", "series"])
    metrics = [m for m, _, _ in _TREND_METRICS]
    fig = make_subplots(rows=2, cols=3, subplot_titles=metrics)
    order = [str(r) for r, _ in run_results]
    for series, part in long.groupby("series", sort=True):
        legend = True
        for k, metric in enumerate(metrics):
            # mean if one run holds the same job twice for the same series
            pts = part[part["metric"] == metric].groupby("run")["value"].mean().reindex(order).dropna()
            if pts.empty:
                continue
            fig.add_trace(
                go.Scatter(x=list(pts.index), y=list(pts.values), mode="lines+markers", name=series,
                           legendgroup=series, showlegend=legend),
                row=k // 3 + 1, col=k % 3 + 1,
            )  # fmt: skip
            legend = False
    fig.update_xaxes(categoryorder="array", categoryarray=order)
    fig.update_layout(title=title, height=560)
    return fig
