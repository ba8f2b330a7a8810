"""The HTML report's interactive figures (plotly): latency CDFs against the SLO, the fleet's
busiest replicas, the facility's power against its supply, the autoscaler's pools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from sim.analysis.figure import cdf
from sim.analysis.report_html import CDF_POINTS

# ----------------------------------------------------------------------------------------------
# plots


def cdf_xy(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The empirical CDF, thinned to about CDF_POINTS points (every tail point of the last 50 kept)."""
    x, f = cdf(x)
    if x.size > CDF_POINTS:  # quantiles at even steps plus the tail's last points
        k = np.unique(np.concatenate([np.linspace(0, x.size - 1, CDF_POINTS).astype(int),
                                      np.arange(max(0, x.size - 50), x.size)]))
        x, f = x[k], f[k]
    return x, f


def latency_cdf_fig(curves: dict[str, dict[str, np.ndarray]], slo: dict[str, float],
                    class_slo: dict[str, dict[str, float]] | None = None) -> Any:
    """Latency CDFs, with the run's SLO (dashed) and each class's own (dotted, named)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = (("ttft_s", "time to first token (s)"), ("tpot_s", "time per output token (s)"),
             ("e2e_s", "end-to-end latency (s)"))
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.07)
    for c, (key, name) in enumerate(names, start=1):
        vals = []
        for k, (lab, cur) in enumerate(curves.items()):
            x, f = cdf_xy(cur.get(key, np.array([])))
            if not x.size:
                continue
            vals.append(x)
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=f,
                    mode="lines",
                    name=lab,
                    legendgroup=lab,
                    showlegend=c == 1,
                    line=dict(color=series_color(k)),
                    hovertemplate=f"{lab}<br>{name}: %{{x:.4g}}<br>fraction: %{{y:.3f}}<extra></extra>",
                ),
                row=1,
                col=c,
            )
        if key in slo:  # a trace, not a shape: its label goes in the legend and it works on log axes
            fig.add_trace(go.Scatter(x=[slo[key], slo[key]], y=[0, 1.02], mode="lines", name=f"SLO {slo[key]:g} s",
                                     line=dict(color="black", dash="dash", width=1.2), legendgroup=f"slo{key}",
                                     hovertemplate=f"SLO {slo[key]:g} s<extra></extra>"), row=1, col=c)
            vals.append(np.array([slo[key]]))
        for j, (cname, lim) in enumerate((class_slo or {}).items()):
            if key in lim:
                fig.add_trace(go.Scatter(x=[lim[key], lim[key]], y=[0, 1.02], mode="lines",
                                         name=f"{cname} SLO {lim[key]:g} s",
                                         line=dict(color=series_color(j + 3), dash="dot", width=1.2),
                                         legendgroup=f"slo{cname}{key}",
                                         hovertemplate=f"{cname} SLO {lim[key]:g} s<extra></extra>"), row=1, col=c)
                vals.append(np.array([lim[key]]))
        if key != "tpot_s":
            log_if_wide(fig.update_xaxes, np.concatenate(vals) if vals else [], row=1, col=c)
        fig.update_xaxes(title_text=name, row=1, col=c)
    fig.update_yaxes(title_text="fraction of requests", range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(range=[0, 1.02])
    fig.update_layout(title="How long did requests take? Latency CDFs (hover for values; drag to zoom)",
                      legend=dict(orientation="h", y=-0.2))
    return fig


def log_if_wide(update: Any, values: Any, **where: Any) -> None:
    """A log axis with 1-2-5 decimal ticks only where the positive values span more than 20x
    (`update`: the figure's update_xaxes or update_yaxes; `where`: its row and col)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if v.size and v.max() / v.min() > 20:
        tv = log_tickvals(float(v.min()), float(v.max()))
        update(type="log", tickvals=tv, ticktext=[f"{t:g}" for t in tv], **where)


def log_tickvals(lo: float, hi: float) -> list[float]:
    """1-2-5 steps across [lo, hi] (1 and 10 only where they span many decades), as plain decimals."""
    a, b = int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi)))
    subs = (1.0, 2.0, 5.0) if b - a <= 4 else (1.0,)
    vals = [float(f"{m * 10.0 ** k:.12g}") for k in range(a, b + 1) for m in subs]
    inside = [v for v in vals if lo / 1.5 <= v <= hi * 1.5]
    return inside if len(inside) >= 2 else vals


def series_color(k: int) -> str:
    return ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf"][k % 10]


def fleet_fig(d: Path, total_blocks: dict[int, int]) -> Any | None:
    """Batch size, KV used and queue over time: the fleet's median, 10-90th band and busiest replica."""
    import plotly.graph_objects as go
    import pyarrow.parquet as pq
    from plotly.subplots import make_subplots

    from sim.analysis.plots import replica_series

    if not (d / "timeseries.parquet").exists():
        return None
    ts = {k: np.asarray(v) for k, v in pq.read_table(d / "timeseries.parquet").to_pydict().items()}
    if not ts["t_s"].size:
        return None
    reps, grid, ser, worst, _ = replica_series(ts, total_blocks, 500)
    titles = ("batch size (sequences)", "KV cache used (%)", "queue length (requests)")
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, subplot_titles=titles, vertical_spacing=0.08)
    for row, key in enumerate(("batch", "kv", "queue"), start=1):
        x = ser[key]
        first = row == 1
        if len(reps) > 1:
            fig.add_trace(go.Scatter(x=grid, y=np.percentile(x, 90, axis=0), mode="lines", line=dict(width=0),
                                     line_shape="hv", showlegend=False, hoverinfo="skip", legendgroup="band"),
                          row=row, col=1)
            fig.add_trace(go.Scatter(x=grid, y=np.percentile(x, 10, axis=0), mode="lines", line=dict(width=0),
                                     line_shape="hv", fill="tonexty", fillcolor="rgba(31,119,180,0.25)",
                                     name="10-90th percentile of replicas", legendgroup="band", showlegend=first,
                                     hoverinfo="skip"), row=row, col=1)
            fig.add_trace(go.Scatter(x=grid, y=np.median(x, axis=0), mode="lines", line_shape="hv",
                                     line=dict(color="#1f77b4"), name="median replica", legendgroup="med",
                                     showlegend=first), row=row, col=1)
        fig.add_trace(go.Scatter(x=grid, y=x[worst], mode="lines", line_shape="hv", line=dict(color="#d62728", width=1),
                                 name=f"busiest replica ({reps[worst]})", legendgroup="worst", showlegend=first),
                      row=row, col=1)
    fig.update_yaxes(rangemode="tozero")
    fig.update_yaxes(range=[0, 105], row=2, col=1)
    if not ser["queue"].any():
        fig.update_yaxes(range=[0, 1], row=3, col=1)
        fig.add_annotation(text="no request waited in a queue", xref="x3 domain", yref="y3 domain", x=0.5, y=0.5,
                           showarrow=False, font=dict(color="#5a6472"))
    fig.update_xaxes(title_text="simulated time (s)", row=3, col=1)
    fig.update_layout(title=f"How full were the {len(reps)} replicas over time?", hovermode="x unified",
                      legend=dict(orientation="h", y=-0.12))
    return fig


def facility_fig(d: Path) -> Any | None:
    """Facility draw against the live supply, over-supply shaded, trips and failures marked."""
    import plotly.graph_objects as go
    import pyarrow.parquet as pq

    from sim.analysis.plots import over_supply, power_unit, true_runs

    if not (d / "facility.parquet").exists():
        return None
    c = {k: np.asarray(v, dtype=float) for k, v in pq.read_table(d / "facility.parquet").to_pydict().items()}
    ev = json.loads((d / "facility_events.json").read_text()) if (d / "facility_events.json").exists() else {}
    t = c["t_s"]
    scale, unit = power_unit(float(np.nanmax(np.concatenate([c["facility_w"], c["supply_w"]]))))
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=t, y=c["facility_w"] / scale, name="facility draw (IT x PUE)",
                             line=dict(color="#1f77b4")))
    fig.add_trace(go.Scatter(x=t, y=c["it_w"] / scale, name="IT draw", line=dict(color="#ff7f0e", width=1)))
    fig.add_trace(go.Scatter(x=t, y=c["supply_w"] / scale, name="live supply limit",
                             line=dict(color="black", dash="dash"), line_shape="hv"))
    over = over_supply(c)
    if over.any():  # each sample over the supply marked; runs of several samples shaded
        fig.add_trace(go.Scatter(x=t[over], y=c["facility_w"][over] / scale, mode="markers", name="over the supply",
                                 marker=dict(color="red", size=9, symbol="x")))
        for a, b in true_runs(over):
            if b - 1 > a:
                fig.add_vrect(x0=t[a], x1=t[b - 1], fillcolor="red", opacity=0.18, line_width=0)
    for x in ev.get("turbine_trips_s", []):
        fig.add_vline(x=x, line_color="red", line_dash="dot", annotation_text="turbine trip")
    for x in ev.get("node_failures_s", []):
        fig.add_vline(x=x, line_color="purple", line_dash="dashdot", line_width=1)
    fig.update_yaxes(title_text=f"power ({unit})", rangemode="tozero")
    fig.update_xaxes(title_text="simulated time (s)")
    fig.update_layout(title="Did the load stay under the power supply? (red: over the supply)", hovermode="x unified",
                      legend=dict(orientation="h", y=-0.18))
    return fig


def battery_fig(d: Path) -> Any | None:
    """The battery's state of charge and each source's output over the run (a site's facility)."""
    import plotly.graph_objects as go
    import pyarrow.parquet as pq

    from sim.analysis.plots import power_unit

    if not (d / "facility.parquet").exists():
        return None
    c = {k: np.asarray(v, dtype=float) for k, v in pq.read_table(d / "facility.parquet").to_pydict().items()}
    soc = c.get("battery_soc")
    if soc is None or not np.isfinite(soc).any():
        return None
    t = c["t_s"]
    src = [k for k in c if k.startswith("source_w:")]
    scale, unit = power_unit(float(np.nanmax(np.abs(np.concatenate([c[k] for k in src]))))) if src else (1.0, "W")
    fig = go.Figure()
    for k in src:
        fig.add_trace(go.Scatter(x=t, y=c[k] / scale, name=f"{k.split(':', 1)[1]} output ({unit})", line_shape="hv"))
    fig.add_trace(go.Scatter(x=t, y=100 * soc, name="battery charge (%)", yaxis="y2", line=dict(color="green")))
    fig.update_layout(title="What carried the load: each source's output, and the battery's charge",
                      hovermode="x unified", legend=dict(orientation="h", y=-0.18),
                      yaxis=dict(title=f"output ({unit})"),
                      yaxis2=dict(title="battery charge (%)", overlaying="y", side="right", range=[0, 105]))
    fig.update_xaxes(title_text="simulated time (s)")
    return fig


def autoscale_fig(d: Path) -> tuple[Any, int] | None:
    """Replicas serving (and starting) against the arrival rate, a panel per pool; with the pools' count."""
    import plotly.graph_objects as go
    import pyarrow.parquet as pq
    from plotly.subplots import make_subplots

    if not (d / "autoscale.parquet").exists():
        return None
    c = {k: np.asarray(v) for k, v in pq.read_table(d / "autoscale.parquet").to_pydict().items()}
    pools = list(dict.fromkeys(c["pool"].tolist()))
    fig = make_subplots(rows=len(pools), cols=1, specs=[[{"secondary_y": True}]] * len(pools),
                        subplot_titles=[f"pool {p}" for p in pools])
    t_h = np.asarray(c["t_s"], float) / 3600
    for row, pool in enumerate(pools, start=1):
        m = c["pool"] == pool
        first = row == 1
        fig.add_trace(go.Scatter(x=t_h[m], y=c["serving"][m], name="replicas serving", line_shape="hv",
                                 line=dict(color="#1f77b4"), legendgroup="s", showlegend=first), row=row, col=1)
        fig.add_trace(go.Scatter(x=t_h[m], y=c["serving"][m] + c["starting"][m], name="serving + cold starts",
                                 line_shape="hv", line=dict(color="#1f77b4", dash="dot"), legendgroup="c",
                                 showlegend=first), row=row, col=1)
        fig.add_trace(go.Scatter(x=t_h[m], y=c["arrivals_per_s"][m], name="arrivals (req/s)",
                                 line=dict(color="#ff7f0e", width=1), legendgroup="a", showlegend=first),
                      row=row, col=1, secondary_y=True)
        fig.update_yaxes(title_text="replicas", rangemode="tozero", row=row, col=1, secondary_y=False)
        fig.update_yaxes(title_text="arrivals (req/s)", rangemode="tozero", row=row, col=1, secondary_y=True,
                         tickmode="auto", nticks=6, showgrid=False)
    fig.update_xaxes(title_text="simulated time (h)")
    fig.update_layout(
        title="Do replicas follow the load?", hovermode="x unified", legend=dict(orientation="h", y=-0.15)
    )
    return fig, len(pools)



def series_rgba(k: int, a: float) -> str:
    h = series_color(k).lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{a})"


