"""What the notebooks show of the lab's results beyond plans and checks, built from
:mod:`falkit.ui.widgets`' tables: the benchmark report, the validation chart, the hand-off tables and
the rollback's before/after table. The domain modules compute (benchmark results and claims,
validation areas, hand-off rows, the before/after comparison); this module only displays, and the
notebooks reach it through the facade (``lab.benchmark_report()``, ``lab.validation_chart(checks)``,
``lab.handoff()``, ``lab.before_after()``: :class:`falkit.runbook.Lab`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from ..bench.charts import METRIC_TITLES, comparison_chart, mb_s, trend_chart
from ..model.spec import LabSpec
from ..steps import benchmarks, handoff
from ..steps.base import Check, StepOptions
from ..steps.probes import rows as validation_rows
from ..steps.probes import summary_counts
from ..ui import widgets

# ---------------------------------------------------------------------------------------------- benchmarks


def benchmark_report(target: Any, spec: LabSpec, options: StepOptions, outputs: str | Path | None = None) -> dict[str, Any]:
    """50-mayastor's benchmark display: the results table (bandwidth in MB/s, like the seed's claims:
    :mod:`falkit.bench.charts`), per engine the claims table, one chart with Longhorn and Mayastor
    side by side ("modelled (twin)" or "measured"), and the trend across archived runs. Returns the
    frames and figures (``charts["comparison"]``, ``charts["trend"]``)."""
    rdir = benchmarks.results_dir(target)
    df = benchmarks.current_results(benchmarks.observe(target, spec, options))
    out: dict[str, Any] = {"results": df, "comparisons": {}, "charts": {}}
    if not len(df):
        widgets.show("no benchmark results yet (apply the benchmarks step)")
        return out
    shown = df.assign(read_mb_s=df["read_mib_s"].map(mb_s), write_mb_s=df["write_mib_s"].map(mb_s))
    cols = ["target", "job", "read_mb_s", "write_mb_s", "iops", "clat_mean_ms", "clat_p99_ms", "source", "run"]
    widgets.show(widgets.Table(shown[cols].rename(columns={"read_mb_s": "read MB/s", "write_mb_s": "write MB/s",
                                                          "clat_mean_ms": "mean latency ms", "clat_p99_ms": "p99 latency ms"})
                               .to_dict("records"), title="fio results (bandwidth in MB/s = 10^6 bytes/s)"))
    for t in ("longhorn", "mayastor"):
        cmp = benchmarks.comparison(spec, df, t)
        if len(cmp):
            out["comparisons"][t] = cmp
            rows = [{"metric": METRIC_TITLES.get(r["metric"], r["metric"]), "claim": r["claim"], "ceiling": r["ceiling"],
                     "result": r["result"], "verdict": r["verdict"]} for r in cmp.to_dict("records")]
            widgets.show(widgets.Table(rows, title=f"{t}: the seed's claims vs physical ceilings vs results"))
    if out["comparisons"]:
        out["charts"]["comparison"] = comparison_chart(out["comparisons"])
        widgets.show(out["charts"]["comparison"])
    base = Path(outputs) if outputs else (rdir.parent.parent if os.environ.get("FALKIT_RUN_DIR") else None)
    runs = benchmarks.trend(base) if base and base.is_dir() else []
    if runs:
        out["charts"]["trend"] = trend_chart(runs)
        widgets.show(out["charts"]["trend"])
    return out


# ---------------------------------------------------------------------------------------------- validation


def validation_table(checks: list[Check]) -> pd.DataFrame:
    """The checks as one pandas DataFrame (area, check, subject, expected, observed, ok, fix)."""
    return pd.DataFrame(validation_rows(checks), columns=["area", "check", "subject", "expected", "observed", "ok", "fix"])


def validation_chart(checks: list[Check], title: str = "Validation: checks per area") -> go.Figure:
    """A plotly stacked bar chart: ok (green) and failed (red) checks per area."""
    data = summary_counts(checks)
    areas = [d["area"] for d in data]
    fig = go.Figure([go.Bar(name="ok", x=areas, y=[d["ok"] for d in data], marker_color="#2ca02c"),
                     go.Bar(name="failed", x=areas, y=[d["failed"] for d in data], marker_color="#d62728")])
    failed = sum(d["failed"] for d in data)
    fig.update_layout(barmode="stack", title=f"{title} ({failed} failed of {len(checks)})", yaxis_title="checks",
                      template="plotly_white")
    return fig


# ---------------------------------------------------------------------------------------------- hand-off


def handoff_tables(spec: LabSpec, plan: Any, observed: dict[tuple[str, str], str | None] | None = None,
                   ) -> list[widgets.Table]:
    """The three hand-off tables: DHCP reservations, DNS records, Cloudflare tunnel endpoints
    (``plan``: the lab's design, ``lab.design``, as :mod:`falkit.steps.handoff` takes it)."""
    return [widgets.Table(handoff.dhcp_rows(spec, plan), handoff.DHCP_COLUMNS, title="Hand-off: DHCP reservations"),
            widgets.Table(handoff.dns_rows(spec, plan, observed), handoff.DNS_COLUMNS, title="Hand-off: DNS records"),
            widgets.Table(handoff.tunnel_rows(spec, plan, observed), handoff.TUNNEL_COLUMNS,
                          title="Hand-off: Cloudflare tunnel endpoints", empty="(no tunnel endpoint changes)")]


def show_handoff(spec: LabSpec, plan: Any, target: Any = None) -> dict[str, Path]:
    """Display the hand-off tables (service IPs observed through ``target`` when given) and write
    the CSVs into ``$FALKIT_RUN_DIR`` when set. Returns the written paths ({} when not written)."""
    observed = handoff.observe_service_ips(target.kube(), spec) if target is not None else None
    for t in handoff_tables(spec, plan, observed):
        widgets.show(t)
    return handoff.write_handoff(None, spec, observed) if os.environ.get("FALKIT_RUN_DIR") else {}


# ---------------------------------------------------------------------------------------------- rollback

BEFORE_AFTER_COLUMNS = ["area", "subject", "field", "before", "after", "result"]


def before_after_table(table: list[dict[str, Any]] | None) -> pd.DataFrame:
    """The before/after comparison (step ``rollback``'s checks) as a table: area, subject, field,
    before, after, result (``equal``, ``kept (<option>)``, ``differs``) — the differing rows first,
    after a line with the counts. ``None`` (not compared yet): a note and an empty table."""
    if not table:
        print("no before/after comparison yet: it is made by the rollback's checks, when applied (rollback=True) "
              "with a recorded before-state")
        return pd.DataFrame([], columns=BEFORE_AFTER_COLUMNS)
    order = {"differs": 0, "equal": 2}
    rows = sorted(table, key=lambda r: order.get(r["result"], 1))
    counts: dict[str, int] = {}
    for r in rows:
        k = "kept" if r["result"].startswith("kept") else r["result"]
        counts[k] = counts.get(k, 0) + 1
    print(f"before/after: {len(rows)} field(s) compared — " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    return pd.DataFrame(rows, columns=BEFORE_AFTER_COLUMNS)
