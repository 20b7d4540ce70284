"""plotly figures for benchmark results: claims vs physics vs results, and trends across runs.

How the charts read (the same in every figure):

- **One unit system: MB/s** (10**6 bytes per second), the unit of the seed's claims, of disk
  datasheets and of :mod:`falkit.bench.model`'s ceilings. fio reports bandwidth in bytes (and KiB)
  per second; falkit's parsed results carry MiB/s (``*_mib_s``, 2**20 bytes/s), so every bandwidth
  is converted with :func:`mb_s` before it is drawn or tabulated: a modelled sequential read of
  524.5 MiB/s is shown as 550 MB/s everywhere, never as both. IOPS and milliseconds need no
  conversion.
- Subplot titles name the measurement in words with its unit once (``Sequential read (MB/s)``),
  never a column name; the grid leaves room between titles.
- Numbers are formatted for reading (``166.7``, ``0.12``; IOPS on bars as ``26.7k``): on the bars and
  in hovers.
- **One colour per role**, in every subplot and in the legend: seed claim grey, physical ceiling
  blue, physical floor (latency: lower is better) purple, result green. A claim that is impossible
  on this hardware keeps its colour, is hatched and labelled "impossible". A result's legend entry
  says where its numbers come from: ``result: modelled (twin)`` or ``result: measured``.
- Longhorn and Mayastor are **side by side** in :func:`comparison_chart`: per metric, one group of
  bars per storage engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..ui.widgets import fmt_number
from .model import MIB_PER_MB

__all__ = ["COLORS", "METRIC_TITLES", "claims_chart", "comparison_chart", "mb_s", "source_label", "trend_chart"]

#: one colour per role, the same in every subplot and figure
COLORS = {"seed claim": "#7f7f7f", "physical ceiling": "#1f77b4", "physical floor": "#9467bd", "result": "#2ca02c"}
#: ``compare_with_claims`` metric -> subplot title (unit once, in words)
METRIC_TITLES = {
    "seq_read_mb_s": "Sequential read (MB/s)",
    "seq_write_mb_s": "Sequential write (MB/s)",
    "rand_read_iops": "4k random read (IOPS)",
    "rand_write_iops": "4k random write (IOPS)",
    "latency_ms": "4k QD1 read latency (ms, lower is better)",
    "write_latency_ms": "4k QD1 write latency (ms, lower is better)",
}
ENGINE_LABELS = {"longhorn": "Longhorn", "mayastor": "Mayastor"}

_TREND_METRICS = (
    # (title, job, column, factor to the unit in the title)
    ("Sequential read (MB/s)", "seq_read", "read_mib_s", 1 / MIB_PER_MB),
    ("Sequential write (MB/s)", "seq_write", "write_mib_s", 1 / MIB_PER_MB),
    ("4k random read (IOPS)", "rand_read_iops", "read_iops", 1.0),
    ("4k random write (IOPS)", "rand_write_iops", "write_iops", 1.0),
    ("QD1 read latency (ms)", "lat_read", "clat_mean_ms", 1.0),
    ("QD1 write latency (ms)", "lat_write", "clat_mean_ms", 1.0),
)


def mb_s(mib_s: float) -> float:
    """MiB/s (fio's parsed ``*_mib_s``) -> MB/s, the charts' unit: ``mb_s(524.52) == 550.0`` (rounded)."""
    return float(mib_s) / MIB_PER_MB


def source_label(source: str | None) -> str:
    """``modelled`` -> ``modelled (twin)``; anything else (``measured``) unchanged."""
    if source == "modelled":
        return "modelled (twin)"
    return source or "no result"


def _label(v: float, unit: str) -> str:
    """A bar's label: IOPS in thousands (``26.7k``: three bars of five digits side by side would run
    into each other), anything else :func:`~falkit.ui.widgets.fmt_number` (``166.7``, ``0.291``)."""
    if unit == "IOPS" and abs(v) >= 1000:
        return f"{v / 1000:.3g}k"
    return fmt_number(v)


def _num(v) -> float | None:
    return None if v is None or pd.isna(v) else float(v)


def _title(metric: str, unit: str) -> str:
    return METRIC_TITLES.get(metric, f"{metric.replace('_', ' ')} ({unit})")


def comparison_chart(comparisons: Mapping[str, pd.DataFrame],
                     title: str = "The seed's claims vs The Fal's physics vs the results (MB/s = 10⁶ bytes/s)") -> go.Figure:
    """Longhorn and Mayastor side by side: one subplot per metric (units differ), in each a group of
    bars per storage engine — the seed's claim, the physical ceiling (a floor for latency) and the
    result. Input: ``{engine: model.compare_with_claims(...)}`` (engines without rows are left out)."""
    comparisons = {t: df for t, df in comparisons.items() if df is not None and len(df)}
    if not comparisons:
        raise ValueError("nothing to chart: empty comparison")
    engines = list(comparisons)
    labels = [ENGINE_LABELS.get(t, t) for t in engines]
    metrics: list[tuple[str, str]] = []
    for df in comparisons.values():
        for r in df.itertuples():
            if (r.metric, r.unit) not in metrics:
                metrics.append((r.metric, r.unit))
    cols = min(3, len(metrics))
    nrows = -(-len(metrics) // cols)
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=[_title(m, u) for m, u in metrics],
                        horizontal_spacing=0.08, vertical_spacing=0.16 if nrows > 1 else 0.1)
    shown: set[str] = set()

    def bar(name: str, color: str, ys: list, row: int, col: int, unit: str, hatch: list[str] | None = None,
            texts: list[str] | None = None) -> None:
        if all(y is None for y in ys):
            return
        text = [("" if y is None else _label(y, unit)) + (f" {t}" if t else "")
                for y, t in zip(ys, texts or [""] * len(ys), strict=True)]
        marker: dict = {"color": color}
        if hatch and any(hatch):
            marker["pattern"] = {"shape": hatch, "fgcolor": "#ffffff", "solidity": 0.3}
        fig.add_trace(go.Bar(name=name, x=labels, y=ys, marker=marker, legendgroup=name, showlegend=name not in shown,
                             text=text, textposition="outside", cliponaxis=False, constraintext="none",
                             hovertemplate=[f"{lbl} · {name}: {tx} {unit}<extra></extra>" for lbl, tx in zip(labels, text, strict=True)]),
                      row=row, col=col)
        shown.add(name)

    for i, (metric, unit) in enumerate(metrics):
        row, col = i // cols + 1, i % cols + 1
        per = [df.set_index("metric").loc[metric] if metric in set(df["metric"]) else None for df in comparisons.values()]
        claims = [_num(p["claim"]) if p is not None else None for p in per]
        impossible = [p is not None and not bool(p["possible"]) for p in per]
        bar("seed claim", COLORS["seed claim"], claims, row, col, unit, hatch=["/" if x else "" for x in impossible],
            texts=["impossible" if x else "" for x in impossible])
        role = "physical floor" if unit == "ms" else "physical ceiling"
        bar(role, COLORS[role], [_num(p["ceiling"]) if p is not None else None for p in per], row, col, unit)
        by_source: dict[str, list] = {}
        for k, p in enumerate(per):
            res = _num(p["result"]) if p is not None else None
            if res is not None:
                by_source.setdefault(f"result: {source_label(p['source'])}", [None] * len(per))[k] = res
        for name, ys in by_source.items():
            bar(name, COLORS["result"], ys, row, col, unit)
        tops = [y for t in fig.data if t.xaxis == (f"x{i + 1}" if i else "x") for y in t.y if y is not None]
        fig.update_yaxes(range=[0, max(tops) * 1.25] if tops else None, tickformat="~s" if unit == "IOPS" else None,
                         separatethousands=True, row=row, col=col)
    fig.update_annotations(font_size=13)
    height = 330 * nrows + 170
    # the legend sits in the top margin, above the subplot titles (which plotly puts just above each
    # subplot): 60 px above the plotting area, the title above that
    fig.update_layout(title={"text": title, "y": 1 - 16 / height, "yanchor": "top"}, barmode="group", height=height,
                      margin={"t": 130, "b": 40},
                      legend={"orientation": "h", "y": 1 + 60 / (height - 170), "yanchor": "bottom", "x": 0},
                      template="plotly_white")
    return fig


def claims_chart(compare_df: pd.DataFrame, title: str = "Seed claims vs The Fal's physics", target: str = "") -> go.Figure:
    """:func:`comparison_chart` for one engine (``target``; the x axis names it)."""
    return comparison_chart({target or "volume": compare_df}, title=title)


def trend_chart(run_results: Sequence[tuple[str, pd.DataFrame]], title: str = "Benchmark trend across runs") -> go.Figure:
    """One subplot per kbench metric (bandwidth in MB/s), x = run id (in the given order), one line per
    (target, source) so modelled and measured results are never joined into one line."""
    if not run_results:
        raise ValueError("nothing to chart: no runs")
    rows = []
    for run_id, df in run_results:
        for metric, job, col, factor in _TREND_METRICS:
            hit = df[df["job"] == job]
            for r in hit.itertuples():
                target = getattr(r, "target", None)
                rows.append({"run": str(run_id), "metric": metric, "value": float(getattr(r, col)) * factor,
                             "series": f"{target or 'local'} · {source_label(getattr(r, 'source', 'measured'))}"})  # fmt: skip
    long = pd.DataFrame(rows, columns=["run", "metric", "value", "series"])
    metrics = [m for m, _, _, _ in _TREND_METRICS]
    fig = make_subplots(rows=2, cols=3, subplot_titles=metrics, horizontal_spacing=0.08, vertical_spacing=0.2)
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
                           legendgroup=series, showlegend=legend,
                           hovertemplate=[f"{series}: {fmt_number(v)}<extra>{metric}</extra>" for v in pts.values]),
                row=k // 3 + 1, col=k % 3 + 1,
            )  # fmt: skip
            legend = False
    fig.update_xaxes(categoryorder="array", categoryarray=order)
    fig.update_annotations(font_size=13)
    fig.update_layout(title=title, height=620, template="plotly_white")
    return fig
