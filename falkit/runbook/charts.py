"""plotly figures of the runbook (the benchmark charts are in falkit.bench.charts).

Figures keep plotly's default renderer: ``plotly_mimetype`` stores the figure as
``application/vnd.plotly.v1+json``, which JupyterLab renders without a CDN (docs/FACTS.md, Notebook
stack); the runner's HTML export embeds plotly.js once per file so the archive renders offline.
"""

from __future__ import annotations

import json
from typing import Any

from ..model.design import LabDesign
from ..model.findings import memory_budget, storage_budget
from ..model.spec import LabSpec

OVERHEAD_COLOR = "#888888"
RESERVE_COLOR = "#bbbbbb"


def budget_rows(spec: LabSpec, design: LabDesign, node: str | None = None) -> list[dict[str, Any]]:
    """One row per (resource, consumer): RAM GB, vCPU and each storage's GB, plus capacities.

    ``{"resource", "consumer", "amount", "capacity"}``; consumers are the VMs/CTs, plus
    "Proxmox host" (RAM overhead) and "reserved" (a storage's reserve).
    """
    node = node or spec.host.node
    mem = memory_budget(spec, design, node)
    vms = [v for v in design.vms if v.node == node]
    cts = [c for c in design.containers if c.node == node]
    threads = spec.host.node_info(node).cpu.threads
    rows: list[dict[str, Any]] = []
    ram = "RAM (GB)"
    rows.append({"resource": ram, "consumer": "Proxmox host", "amount": mem["overhead_gb"], "capacity": mem["host_gb"]})
    rows += [{"resource": ram, "consumer": v.name, "amount": v.memory_gb, "capacity": mem["host_gb"]} for v in vms]
    rows += [{"resource": ram, "consumer": c.hostname, "amount": c.memory_gb, "capacity": mem["host_gb"]} for c in cts]
    cpu = "vCPU"
    rows += [{"resource": cpu, "consumer": v.name, "amount": v.cores, "capacity": threads} for v in vms]
    rows += [{"resource": cpu, "consumer": c.hostname, "amount": c.cores, "capacity": threads} for c in cts]
    for name, b in storage_budget(spec, design, node).items():
        res = f"{name} (GB)"
        if b["reserve_gb"]:
            rows.append({"resource": res, "consumer": "reserved", "amount": b["reserve_gb"], "capacity": b["size_gb"]})
        per_owner: dict[str, float] = {}
        for label, gb in b["by"].items():
            owner = label.rsplit(" ", 1)[0]
            per_owner[owner] = per_owner.get(owner, 0) + gb
        rows += [{"resource": res, "consumer": o, "amount": gb, "capacity": b["size_gb"]} for o, gb in per_owner.items()]
        if not per_owner and not b["reserve_gb"]:
            rows.append({"resource": res, "consumer": "(unused)", "amount": 0, "capacity": b["size_gb"]})
    return rows


def host_budget_chart(spec: LabSpec, design: LabDesign, node: str | None = None):
    """Stacked bars of what each VM/CT is allocated, per resource, against the capacity line.

    One subplot per resource (RAM, vCPU, each storage), since their units differ.
    """
    import plotly.graph_objects as go  # noqa: PLC0415 - plotly loaded only when a chart is drawn (heavy, display only)
    from plotly.subplots import make_subplots  # noqa: PLC0415 - plotly (heavy) only when a chart is drawn

    node = node or spec.host.node
    rows = budget_rows(spec, design, node)
    resources = list(dict.fromkeys(r["resource"] for r in rows))
    consumers = list(dict.fromkeys(r["consumer"] for r in rows))
    fig = make_subplots(rows=1, cols=len(resources), subplot_titles=resources)
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
    colors = {c: palette[i % len(palette)] for i, c in enumerate(x for x in consumers if x not in ("Proxmox host", "reserved"))}
    colors.update({"Proxmox host": OVERHEAD_COLOR, "reserved": RESERVE_COLOR})
    for col, res in enumerate(resources, start=1):
        res_rows = [r for r in rows if r["resource"] == res]
        for r in res_rows:
            fig.add_trace(go.Bar(x=[res], y=[r["amount"]], name=r["consumer"], legendgroup=r["consumer"],
                                 marker_color=colors.get(r["consumer"]), showlegend=col == _first_col(rows, resources, r["consumer"]),
                                 hovertemplate=f"{r['consumer']}: %{{y}}<extra>{res}</extra>"), row=1, col=col)
        capacity = res_rows[0]["capacity"]
        total = sum(r["amount"] for r in res_rows)
        fig.add_trace(go.Scatter(x=[res, res], y=[capacity, capacity], mode="lines+markers",
                                 line={"color": "black", "dash": "dash"}, marker={"symbol": "line-ew-open", "size": 60},
                                 name="capacity", legendgroup="capacity", showlegend=col == 1,
                                 hovertemplate=f"capacity {capacity:g}, allocated {total:g}<extra>{res}</extra>"),
                      row=1, col=col)
        fig.update_yaxes(range=[0, max(capacity, total) * 1.15], row=1, col=col)
    fig.update_xaxes(showticklabels=False)  # each subplot's title names its one bar
    fig.update_layout(barmode="stack", title=f"Host budget of {node}: allocated per VM/CT vs capacity",
                      height=420, legend={"orientation": "h", "y": -0.15}, margin={"t": 80})
    return fig


def _first_col(rows: list[dict], resources: list[str], consumer: str) -> int:
    for i, res in enumerate(resources, start=1):
        if any(r["resource"] == res and r["consumer"] == consumer for r in rows):
            return i
    return 1


# ---------------------------------------------------------------------------------------------- HTML export

PLOTLY_MIME = "application/vnd.plotly.v1+json"


def embed_plotly_outputs(nb: Any) -> int:
    """Give every plotly output of ``nb`` (in place) a ``text/html`` rendering that calls ``Plotly.newPlot``.

    nbconvert's HTML exporter drops ``application/vnd.plotly.v1+json`` (docs/FACTS.md, Notebook stack);
    with this ``text/html`` next to it the figure renders once plotly.js is on the page (see
    :func:`plotly_script`). Returns how many figures were found.
    """
    n = 0
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []) or []:
            data = out.get("data") or {}
            fig = data.get(PLOTLY_MIME)
            if fig is None:
                continue
            n += 1
            div = f"falkit-plotly-{n}"
            payload = json.dumps({"data": fig.get("data", []), "layout": fig.get("layout", {}),
                                  "config": dict(fig.get("config") or {}, responsive=True)})
            payload = payload.replace("</", "<\\/")
            height = (fig.get("layout") or {}).get("height") or 450
            data["text/html"] = (f"<div id='{div}' class='falkit-plotly' style='height:{int(height)}px;width:100%'></div>"
                                 f"<script type='text/javascript'>(function(){{var f={payload};"
                                 f"Plotly.newPlot('{div}', f.data, f.layout, f.config);}})();</script>")
    return n


def plotly_script() -> str:
    """plotly.js from the installed plotly package, inline, registered as ``window.Plotly`` even when
    require.js is on the page (plotly.js registers itself as an AMD module when ``define`` exists)."""
    from plotly.offline import get_plotlyjs  # noqa: PLC0415 - plotly loaded only for display (heavy)

    return ("<script type='text/javascript'>window.__falkitDefine = window.define; window.define = undefined;</script>\n"
            f"<script type='text/javascript'>{get_plotlyjs()}</script>\n"
            "<script type='text/javascript'>window.define = window.__falkitDefine;</script>\n")
