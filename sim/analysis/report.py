"""report.html: the one page a planner opens first, for a run, compare, sweep, plan or fleet folder.

The headline answer in a sentence with its interval and calibration status, the key numbers
against the SLO, interactive plots (plotly: zoom and hover), warnings, and the effective scenario.
Self-contained: plotly.js and every figure's data are inlined, so the page opens offline and asks
the network for nothing (tests/test_report.py checks this in headless Chromium).
"""

from __future__ import annotations

import html
import json
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from sim.analysis.plots import METRIC_WORDS, _cdf, _close_groups, _slo_of, latency_curves
from sim.errors import ScenarioError

_CONFIG = {"displaylogo": False, "responsive": True}
_CDF_POINTS = 400  # points per CDF curve: the page stays small (hover still reads each quantile)

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:20px 28px 60px}
h1{font-size:1.35rem;margin:.2rem 0 .6rem}
h2{font-size:1.1rem;margin:1.8rem 0 .6rem;border-bottom:1px solid #d8dce3;padding-bottom:4px}
.headline{font-size:1.12rem;line-height:1.55;background:#fff;border-left:5px solid #2b6cb0;padding:14px 18px;
  margin:10px 0 18px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:10px}
.card{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:10px 12px}
.card .k{font-size:.78rem;color:#5a6472;text-transform:uppercase;letter-spacing:.03em}
.card .v{font-size:1.3rem;font-weight:600;margin-top:2px} .card .s{font-size:.8rem;color:#5a6472;margin-top:2px}
table{border-collapse:collapse;background:#fff;font-size:.88rem;margin:6px 0}
th,td{border:1px solid #dde1e7;padding:4px 9px;text-align:right} th{background:#eef1f5} td.l,th.l{text-align:left}
.ok{color:#1f7a3a;font-weight:600} .bad{color:#b42318;font-weight:600} .dim{color:#8a93a0}
.warn{background:#fff8e6;border:1px solid #f0c36d;border-radius:6px;padding:8px 12px;margin:6px 0;font-size:.9rem}
.note{font-size:.85rem;color:#5a6472}
pre{background:#fff;border:1px solid #dde1e7;padding:10px;overflow:auto;font-size:.8rem}
.plot{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:10px 0;padding:4px}
"""


# ----------------------------------------------------------------------------------------------
# formatting


def _num(v: Any, unit: str = "") -> str:
    """A number as a person reads it: 3 significant figures, thousands separated, with its unit."""
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    v = float(v)
    if v == 0:
        s = "0"
    elif abs(v) >= 1000:
        s = f"{v:,.0f}"
    elif abs(v) >= 1:
        s = f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    else:
        s = f"{v:.3g}"
    return f"{s} {unit}".strip()


def _big(v: Any, unit: str = "") -> str:
    """Large counts in words a planner reads aloud: 347 million, 30.0 trillion."""
    if v is None:
        return "–"
    for scale, word in ((1e12, "trillion"), (1e9, "billion"), (1e6, "million")):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {word} {unit}".strip()
    return _num(v, unit)


def _secs(v: Any) -> str:
    """Seconds, in ms below one second."""
    if v is None:
        return "–"
    return _num(v * 1e3, "ms") if abs(v) < 1 else _num(v, "s")


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def _e(s: Any) -> str:
    return html.escape(str(s))


def _card(key: str, value: str, sub: str = "") -> str:
    return (f'<div class="card"><div class="k">{_e(key)}</div><div class="v">{_e(value)}</div>'
            + (f'<div class="s">{_e(sub)}</div>' if sub else "") + "</div>")


def _table(head: list[str], rows: list[list[str]], left: int = 1) -> str:
    """An HTML table; the first `left` columns left-aligned; cells are HTML already."""
    th = "".join(f'<th class="{"l" if i < left else ""}">{_e(h)}</th>' for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{c}</td>' for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


class _Figures:
    """Plotly figures as inlined divs with stable ids (the same folder gives the same page)."""

    def __init__(self) -> None:
        self.n = 0

    def html(self, fig: Any, height: int = 420) -> str:
        import plotly.io as pio

        self.n += 1
        fig.update_layout(height=height, margin=dict(l=60, r=20, t=60, b=50), template="plotly_white",
                          hoverlabel=dict(namelength=-1), legend=dict(font=dict(size=11)))
        div = pio.to_html(fig, include_plotlyjs=False, full_html=False, config=_CONFIG, div_id=f"fig{self.n}")
        return f'<div class="plot">{div}</div>'


def _page(title: str, headline: str, body: list[str]) -> str:
    from plotly.offline import get_plotlyjs

    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style>"
            f"<script type=\"text/javascript\">{get_plotlyjs()}</script></head><body><main>"
            f"<h1>{_e(title)}</h1><div class=\"headline\" id=\"headline\">{headline}</div>"
            + "\n".join(body)
            + "<p class=\"note\">Written by dcsim report. Everything on this page is inlined: it opens offline.</p>"
            "</main></body></html>\n")


def _scenario_raw(d: Path) -> dict[str, Any]:
    try:
        return tomllib.loads((d / "scenario.toml").read_text())
    except (OSError, ValueError):
        return {}


def _scenario_section(d: Path) -> str:
    p = d / "scenario.toml"
    if not p.exists():
        return ""
    return ("<h2>Effective scenario</h2><p class=\"note\">The scenario as run (defaults filled in, overrides "
            f"applied): scenario.toml in this folder.</p><details><summary>show</summary><pre>{_e(p.read_text())}"
            "</pre></details>")


def _warnings_html(items: list[str], none: str = "None.") -> str:
    if not items:
        return f"<h2>Warnings</h2><p class=\"note\">{_e(none)}</p>"
    return "<h2>Warnings</h2>" + "".join(f'<div class="warn">{_e(w)}</div>' for w in items)


def _saved_warnings(d: Path) -> list[str]:
    p = d / "warnings.json"
    try:
        return [str(w) for w in json.loads(p.read_text())] if p.exists() else []
    except ValueError:
        return []


def _calibration_warnings(status: dict[str, str]) -> list[str]:
    """One line per part whose numbers rest on borrowed or assumed constants (catalog's own words)."""
    from sim.perf import catalog

    out = []
    for hid, st in (status or {}).items():
        if st == "measured":
            continue
        try:
            note = catalog.builtin_catalog().get_hardware(hid).calibration_note()
        except (ScenarioError, KeyError):
            note = None
        out.append(note or f"{hid}: constants {st}; its latencies and throughput are estimates")
    return out


# ----------------------------------------------------------------------------------------------
# plots


def _cdf_xy(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The empirical CDF, thinned to about _CDF_POINTS points (every tail point of the last 50 kept)."""
    x, f = _cdf(x)
    if x.size > _CDF_POINTS:  # quantiles at even steps plus the tail's last points
        k = np.unique(np.concatenate([np.linspace(0, x.size - 1, _CDF_POINTS).astype(int),
                                      np.arange(max(0, x.size - 50), x.size)]))
        x, f = x[k], f[k]
    return x, f


def _latency_cdf_fig(curves: dict[str, dict[str, np.ndarray]], slo: dict[str, float]) -> Any:
    from plotly.subplots import make_subplots
    import plotly.graph_objects as go

    names = (("ttft_s", "time to first token (s)"), ("tpot_s", "time per output token (s)"),
             ("e2e_s", "end-to-end latency (s)"))
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.07)
    for c, (key, name) in enumerate(names, start=1):
        vals = []
        for k, (lab, cur) in enumerate(curves.items()):
            x, f = _cdf_xy(cur.get(key, np.array([])))
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
                    line=dict(color=_color(k)),
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
        if key != "tpot_s":
            _log_if_wide(fig.update_xaxes, np.concatenate(vals) if vals else [], row=1, col=c)
        fig.update_xaxes(title_text=name, row=1, col=c)
    fig.update_yaxes(title_text="fraction of requests", range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(range=[0, 1.02])
    fig.update_layout(title="How long did requests take? Latency CDFs (hover for values; drag to zoom)",
                      legend=dict(orientation="h", y=-0.2))
    return fig


def _log_if_wide(update: Any, values: Any, **where: Any) -> None:
    """A log axis with 1-2-5 decimal ticks only where the positive values span more than 20x
    (`update`: the figure's update_xaxes or update_yaxes; `where`: its row and col)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if v.size and v.max() / v.min() > 20:
        tv = _log_tickvals(float(v.min()), float(v.max()))
        update(type="log", tickvals=tv, ticktext=[f"{t:g}" for t in tv], **where)


def _log_tickvals(lo: float, hi: float) -> list[float]:
    """1-2-5 steps across [lo, hi] (1 and 10 only where they span many decades), as plain decimals."""
    a, b = int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi)))
    subs = (1.0, 2.0, 5.0) if b - a <= 4 else (1.0,)
    vals = [float(f"{m * 10.0 ** k:.12g}") for k in range(a, b + 1) for m in subs]
    inside = [v for v in vals if lo / 1.5 <= v <= hi * 1.5]
    return inside if len(inside) >= 2 else vals


def _color(k: int) -> str:
    return ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf"][k % 10]


def _fleet_fig(d: Path, total_blocks: dict[int, int]) -> Any | None:
    """Batch size, KV used and queue over time: the fleet's median, 10-90th band and busiest replica."""
    import pyarrow.parquet as pq
    from plotly.subplots import make_subplots
    import plotly.graph_objects as go

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


def _facility_fig(d: Path) -> Any | None:
    """Facility draw against the live supply, over-supply shaded, trips and failures marked."""
    import pyarrow.parquet as pq
    import plotly.graph_objects as go

    from sim.analysis.plots import _power_unit, _runs, over_supply

    if not (d / "facility.parquet").exists():
        return None
    c = {k: np.asarray(v, dtype=float) for k, v in pq.read_table(d / "facility.parquet").to_pydict().items()}
    ev = json.loads((d / "facility_events.json").read_text()) if (d / "facility_events.json").exists() else {}
    t = c["t_s"]
    scale, unit = _power_unit(float(np.nanmax(np.concatenate([c["facility_w"], c["supply_w"]]))))
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
        for a, b in _runs(over):
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


def _autoscale_fig(d: Path) -> tuple[Any, int] | None:
    """Replicas serving (and starting) against the arrival rate, a panel per pool; with the pools' count."""
    import pyarrow.parquet as pq
    import plotly.graph_objects as go
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


# ----------------------------------------------------------------------------------------------
# a run


def _fleet_words(raw: dict[str, Any]) -> str:
    """'16 x llama-3.1-70b (TP4 on h200) in 2 pools': pools of one shape counted together."""
    groups: dict[str, list[int | str]] = {}
    for p in raw.get("pools", []):
        par = f"TP{p.get('tp', 1)}" + (f", EP{p['ep']}" if p.get("ep") else "")
        role = f", {p['role']}" if p.get("role") and p["role"] != "both" else ""
        a = p.get("autoscaler")
        if isinstance(a, dict):  # an autoscaled pool: its range, not its starting count
            groups.setdefault(
                f"{p.get('model', '?')} ({par} on {p.get('hardware', '?')}{role}, autoscaled)", []
            ).append(f"{a.get('min_replicas', 1)}-{a.get('max_replicas', '?')}")
            continue
        groups.setdefault(f"{p.get('model', '?')} ({par} on {p.get('hardware', '?')}{role})", []).append(
            int(p.get("replicas", 1)))
    def count(n: list[int | str]) -> str:
        ints = [x for x in n if isinstance(x, int)]
        return str(sum(ints)) if len(ints) == len(n) else ", ".join(map(str, n))

    return "; ".join(count(n) + f" x {k}"
                     + (f" in {len(n)} pools" if len(n) > 1 else "") for k, n in groups.items()) or "the fleet"


def _interval(pi: dict[str, Any], key: str) -> str:
    iv = (pi or {}).get(key)
    return f" (90% interval {_secs(iv[0])} to {_secs(iv[1])})" if iv else ""


def _status_words(s: dict[str, Any]) -> str:
    st = s.get("calibration_status") or {}
    if not st:
        return "Calibration status: not recorded."
    bad = {h: v for h, v in st.items() if v != "measured"}
    if not bad:
        return "Constants calibrated on measured vLLM runs (" + ", ".join(st) + ")."
    return ("Constants " + ", ".join(f"{v} for {h}" for h, v in bad.items())
            + ": estimates outside the error measured on h100-sxm.")


def run_headline(s: dict[str, Any], raw: dict[str, Any]) -> str:
    """The run's answer in one sentence: load, fleet, SLO attainment, p99 TTFT and mean TPOT with
    their 90% intervals, and what the constants rest on."""
    rate = (raw.get("workload") or {}).get("rate_per_s")
    load = f"{_num(rate)} req/s offered" if isinstance(rate, (int, float)) and (raw.get("workload") or {}).get(
        "arrival", "poisson") != "trace" else f"{_num(s.get('throughput_req_per_s'))} req/s served"
    pi = s.get("prediction_interval") or {}
    lat = (f"p99 time to first token <b>{_secs(s.get('ttft_p99_s'))}</b>{_interval(pi, 'ttft_p99_s')}, "
           f"mean time per output token <b>{_secs(s.get('tpot_mean_s'))}</b>{_interval(pi, 'tpot_mean_s')}")
    if s.get("slo_attainment") is not None:
        lims = ", ".join(f"{n} ≤ {_secs(s.get(k))}" for n, k in (("TTFT", "slo_ttft_s"), ("TPOT", "slo_tpot_s"))
                         if s.get(k) is not None)
        worst = s.get("slo_attainment_pessimistic")
        ans = (f"<b>{_pct(s['slo_attainment'])}</b> of requests meet the SLO ({_e(lims)})"
               + (f", {_pct(worst)} at the intervals' pessimistic end" if worst is not None else ""))
    else:
        ans = f"it serves <b>{_num(s.get('throughput_output_tok_per_s'), 'output tokens/s')}</b> (no SLO set)"
    money = f"; <b>USD {_num(s['cost_per_mtok_usd'])}</b> per million output tokens" \
        if s.get("cost_per_mtok_usd") else ""
    return (f"{_e(_fleet_words(raw))}, at {load}: {ans}; {lat}{money}. "
            f"<span class=\"note\">{_e(_status_words(s))}</span>")


def _run_warnings(s: dict[str, Any], d: Path) -> list[str]:
    w = []
    if s.get("stable") is False:
        w.append(f"No steady state: {s.get('instability')}. Means and percentiles describe a growing queue, "
                 "not a service level; lower the load or add replicas.")
    w += _calibration_warnings(s.get("calibration_status") or {})
    lost = {k: v for k, v in (s.get("reasons") or {}).items() if v}
    if lost:
        w.append(f"{s.get('requests_rejected', 0)} rejected and {s.get('requests_failed', 0)} failed requests: "
                 + ", ".join(f"{k} {v}" for k, v in lost.items()) + ".")
    if s.get("requests_in_flight"):
        w.append(f"{s['requests_in_flight']} requests were still in flight when the run ended (not in the latencies).")
    if (s.get("power_limit_exceeded_s") or 0) > 0:
        w.append(f"The facility drew more than its live supply for {_num(s['power_limit_exceeded_s'])} s.")
    if (s.get("ramp_limit_exceeded_s") or 0) > 0:
        w.append(f"Load changed faster than the generators ramp for {_num(s['ramp_limit_exceeded_s'])} s.")
    if (s.get("littles_law_rel_err") or 0) > 0.02:
        w.append(
            f"Little's law holds only to {_pct(s['littles_law_rel_err'])} on this run (requests in flight at the end)."
        )
    return w + [x for x in _saved_warnings(d) if x not in w]


def _run_key_numbers(s: dict[str, Any], raw: dict[str, Any]) -> str:
    rows = []
    for name, key, slo_key in (
        ("time to first token", "ttft", "slo_ttft_s"),
        ("time per output token", "tpot", "slo_tpot_s"),
        ("end-to-end latency", "e2e", None),
        ("queueing delay", "queue", None),
    ):
        lim = s.get(slo_key) if slo_key else None
        cells = [_e(name)]
        for q in ("mean", "p50", "p90", "p99"):
            v = s.get(f"{key}_{q}_s")
            cls = "" if lim is None or v is None else (' class="ok"' if v <= lim else ' class="bad"')
            cells.append(f"<span{cls}>{_e(_secs(v))}</span>" if v is not None else "–")
        pi = (s.get("prediction_interval") or {})
        iv = [pi.get(f"{key}_mean_s"), pi.get(f"{key}_p99_s")]
        cells.append(_e(" / ".join(f"{_secs(a)}–{_secs(b)}" for a, b in [x for x in iv if x]) or "–"))
        cells.append(_e(_secs(lim)) if lim is not None else '<span class="dim">none</span>')
        rows.append(cells)
    lat = _table(["latency", "mean", "p50", "p90", "p99", "90% interval (mean / p99)", "SLO"], rows)
    cards = [_card("requests", f"{s['requests_completed']:,} completed",
                   f"{s['requests_total']:,} total; {s['requests_rejected']} rejected, {s['requests_failed']} failed"),
             _card("throughput", _num(s.get("throughput_output_tok_per_s"), "tok/s"),
                   f"{_num(s.get('throughput_req_per_s'))} requests/s")]
    if s.get("slo_attainment") is not None:
        cards.append(_card("SLO attainment", _pct(s["slo_attainment"]),
                           f"goodput {_num(s.get('goodput_req_per_s'))} req/s"
                           + (f"; worst case {_pct(s['slo_attainment_pessimistic'])}"
                              if s.get("slo_attainment_pessimistic") is not None else "")))
    cards.append(_card("utilisation", _pct(s.get("utilization_mean")), f"{s.get('replicas', '?')} replicas; "
                       f"{s.get('preemptions_total', 0)} preemptions"))
    if s.get("energy_j"):
        cards.append(_card("energy", _num(s["energy_j"] / 3.6e6, "kWh"),
                           f"{_num(s.get('energy_per_output_tok_j'))} J per output token"))
    if s.get("cost_per_mtok_usd"):
        cards.append(
            _card("cost", f"USD {_num(s['cost_per_mtok_usd'])} / Mtok", f"USD {_num(s.get('cost_usd'))} in all")
        )
    if "power_limit_exceeded_s" in s and (raw.get("facility") or {}).get("sources"):  # (a supply to exceed)
        cards.append(_card("time over the power supply", _num(s["power_limit_exceeded_s"], "s"),
                           f"peak draw {_num((s.get('facility_power_peak_w') or 0) / 1e3, 'kW')}"))
    if s.get("replica_hours"):
        cards.append(_card("replica-hours", _num(sum(s["replica_hours"].values())),
                           ", ".join(f"{k} {_num(v)}" for k, v in s["replica_hours"].items())))
    cards.append(_card("simulated", _num(s.get("sim_time_s"), "s"), f"in {_num(s.get('wall_time_s'))} s of wall time; "
                       f"{s.get('engine', '')} engine"))
    out = [lat, f'<div class="cards">{"".join(cards)}</div>']
    if s.get("classes"):
        rows = [
            [
                _e(c["name"]),
                f"{c.get('completed', 0):,} / {c.get('requests', 0):,}",
                _e(_secs(c.get("ttft_mean_s"))),
                _e(_secs(c.get("ttft_p99_s"))),
                _e(_secs(c.get("tpot_mean_s"))),
                _e(_secs(c.get("e2e_p99_s"))),
                _e(_pct(c.get("slo_attainment"))),
            ]
            for c in s["classes"]
        ]
        out.append("<h2>Per request class</h2>" + _table(
            ["class", "completed", "mean TTFT", "p99 TTFT", "mean TPOT", "p99 E2E", "SLO attainment"], rows))
    if s.get("hourly"):
        rows = [[_e(h["hour"]), f"{h['requests']:,}", _e(_pct(h.get("slo_attainment"))), _e(_secs(h.get("ttft_p90_s"))),
                 _e(_num(h.get("replicas_mean"))), _e(_num(h.get("accelerator_usd_per_mtok")))] for h in s["hourly"]]
        out.append("<h2>Each hour</h2>" + _table(["hour", "requests", "SLO met", "p90 TTFT", "replicas (mean)",
                                                  "accelerators USD / Mtok"], rows))
    return "\n".join(out)


def _class_slo(raw: dict[str, Any]) -> dict[str, dict[str, float]]:
    out = {}
    for c in (raw.get("workload") or {}).get("classes", []) or []:
        if isinstance(c, dict) and isinstance(c.get("slo"), dict):
            out[str(c.get("name"))] = {k: float(v) for k, v in c["slo"].items() if k in ("ttft_s", "tpot_s")}
    return out


def _run_report(d: Path) -> tuple[str, str, list[str]]:
    s = json.loads((d / "summary.json").read_text())
    raw = _scenario_raw(d)
    figs = _Figures()
    body = [
        "<h2>Key numbers</h2>",
        _run_key_numbers(s, raw),
        _warnings_html(
            _run_warnings(s, d),
            "None: a steady state was reached, no request was lost, and no input was truncated or ignored.",
        ),
        "<h2>Plots</h2>",
    ]
    slo = {k: s[f"slo_{k}"] for k in ("ttft_s", "tpot_s") if s.get(f"slo_{k}") is not None}
    curves = latency_curves(d)
    body.append(figs.html(_latency_cdf_fig(curves, slo)))
    cs = _class_slo(raw)
    if cs:
        body.append('<p class="note">Class SLOs: ' + _e("; ".join(
            f"{c}: " + ", ".join(f"{k[:-2].upper()} ≤ {v:g} s" for k, v in v2.items()) for c, v2 in cs.items()))
            + " (the dashed lines are the run's [slo]).</p>")
    f = _fleet_fig(d, {int(k): v for k, v in (s.get("kv_blocks_total") or {}).items()})
    if f is not None:
        body.append(figs.html(f, 640))
    f = _facility_fig(d)
    if f is not None:
        body.append(figs.html(f, 440))
    scaled = _autoscale_fig(d)
    if scaled is not None:
        body.append(figs.html(scaled[0], 300 * scaled[1]))
    body.append(_pngs(d))
    body.append(_scenario_section(d))
    return f"dcsim run: {raw.get('name', d.name)} (seed {raw.get('seed', '?')})", run_headline(s, raw), body


def _pngs(d: Path) -> str:
    files = sorted(p.name for p in d.glob("*.png"))
    if not files:
        return ""
    return ("<p class=\"note\">Static figures in this folder (matplotlib, for papers and slides): "
            + ", ".join(_e(f) for f in files) + ".</p>")


# ----------------------------------------------------------------------------------------------
# compare


def _mval(m: str, v: Any, diff: bool = False) -> str:
    unit = METRIC_WORDS.get(m, (m, "", 0))[1]
    if v is None:
        return "–"
    if unit == "s":
        return _secs(v)
    if m in ("slo_attainment", "utilization_mean", "prefix_cache_hit_rate"):
        return f"{100 * v:.1f} points" if diff else _pct(v)
    return _num(v, unit)


def _nsig(v: dict[str, Any]) -> int:
    return sum(1 for d in v["metrics"].values() if d.get("significant"))


def compare_headline(rep: dict[str, Any]) -> str:
    """Which variants differ from the baseline, on what, by how much, with the 95% interval."""
    b = rep["baseline"]
    n = rep["replications"]
    parts = []
    for lab, v in rep["variants"].items():
        if lab == b:
            continue
        sig = [(m, d) for m, d in v["metrics"].items() if d.get("significant") and m in METRIC_WORDS
               and m not in ("utilization_mean", "throughput_req_per_s")]  # (busier is not better or worse)
        if not sig:
            continue
        # the largest relative change among the significant ones
        m, d = max(
            sig, key=lambda md: abs(md[1]["diff_mean"]) / max(1e-12, abs(rep["variants"][b]["metrics"][md[0]]["mean"]))
        )
        base = rep["variants"][b]["metrics"][m]["mean"]
        better = (d["diff_mean"] * METRIC_WORDS[m][2]) > 0
        rel = d["diff_mean"] / base if base else None
        parts.append(
            f"<b>{_e(lab)}</b> {'improves' if better else 'worsens'} {METRIC_WORDS[m][0]} by "
            f"<b>{_mval(m, abs(d['diff_mean']), True)}</b>"
            + (f" ({abs(rel):.1%})" if rel is not None else "")
            + f" (95% interval of the difference {_mval(m, d['diff_ci_low'], True)} to "
            + f"{_mval(m, d['diff_ci_high'], True)}), "
            f"{_nsig(v)} of {len(v['metrics'])} metrics differ significantly"
        )
    if n < 2:
        return (f"One replication: no interval and no significance test; the differences below are single runs. "
                f"Rerun with --replications 3 or more to tell a real difference from noise (baseline {_e(b)}).")
    if not parts:
        return (f"No variant differs significantly from the baseline <b>{_e(b)}</b> on any metric over {n} "
                "replications (paired 95% intervals all contain zero).")
    return f"Against the baseline <b>{_e(b)}</b> over {n} paired replications: " + "; ".join(parts) + "."


def _compare_report(d: Path) -> tuple[str, str, list[str]]:
    rep = json.loads((d / "compare.json").read_text())
    b = rep["baseline"]
    labels = list(rep["variants"])
    metrics = [m for m in rep["metrics"] if m in METRIC_WORDS]
    rows = []
    for m in metrics:
        cells = [_e(f"{METRIC_WORDS[m][0]}")]
        for lab in labels:
            d_ = rep["variants"][lab]["metrics"][m]
            ci = f" [{_mval(m, d_['ci_low'])}, {_mval(m, d_['ci_high'])}]" if d_.get("ci_low") is not None else ""
            cell = _e(_mval(m, d_["mean"]) + ci)
            if lab != b and d_.get("diff_mean") is not None:
                good = d_["diff_mean"] * METRIC_WORDS[m][2] > 0
                cls = ("ok" if good else "bad") if d_.get("significant") else "dim"
                sign = "+" if d_["diff_mean"] >= 0 else "−"
                mark = " ★" if d_.get("significant") else " (n.s.)"
                cell += f'<br><span class="{cls}">{sign}{_e(_mval(m, abs(d_["diff_mean"]), True))}{mark}</span>'
            cells.append(cell)
        rows.append(cells)
    head = [
        f"{lab}{' (baseline)' if lab == b else ''}"
        + (" ⚠ no steady state" if rep["variants"][lab].get("unstable") else "")
        for lab in labels
    ]
    body = ["<h2>Variants</h2>", _table(["metric"] + head, rows),
            f'<p class="note">Mean [95% CI] over {rep["replications"]} replications on the same seeds; below it the '
            "paired difference to the baseline: ★ significant (its 95% interval excludes zero; green better, red "
            "worse), n.s. not significant.</p>"]
    variants = "".join(f"<li><b>{_e(lab)}</b>: {_e(' '.join(v.get('sets', [])) or 'the scenario as is')}</li>"
                       for lab, v in rep["variants"].items())
    body.append(f"<h2>What each variant changes</h2><ul>{variants}</ul>")
    figs = _Figures()
    others = [lab for lab in labels if lab != b]
    if others:
        zero = [METRIC_WORDS[m][0] for m in metrics if not rep["variants"][b]["metrics"][m]["mean"]]
        body += [
            "<h2>Differences to the baseline</h2>",
            figs.html(_forest_fig(rep, metrics, others), 110 + 34 * len(metrics) * max(1, len(others)) ** 0.5),
        ]
        if zero:
            body.append(f'<p class="note">Not drawn (zero at the baseline, so no percentage): {_e(", ".join(zero))}; '
                        "their differences are in the table.</p>")
    curves = {lab: {k: np.asarray(v["latencies_seed0"].get(k, []), float) for k in ("ttft_s", "tpot_s", "e2e_s")}
              for lab, v in rep["variants"].items() if "latencies_seed0" in v}
    if curves:
        slo = _slo_of(rep)
        body += ["<h2>Latency distributions (first replication)</h2>", figs.html(_latency_cdf_fig(curves, slo))]
    w = _saved_warnings(d)
    for lab, v in rep["variants"].items():
        for u in v.get("unstable", []):
            w.append(f"{lab}, seed {u['seed']}: no steady state ({u['instability']}); its means describe a growing "
                     "queue, not a service level.")
    if rep["replications"] < 2:
        w.insert(0, "One replication: no confidence interval and no significance test.")
    body.append(_warnings_html(w))
    body.append(_pngs(d))
    return f"dcsim compare: {Path(rep['scenario']).name}", compare_headline(rep), body


def _forest_fig(rep: dict[str, Any], metrics: list[str], others: list[str]) -> Any:
    """Each variant's paired difference to the baseline, in % of the baseline's mean, with its 95%
    interval: one row per metric on one axis (filled marker: significant)."""
    import plotly.graph_objects as go

    b = rep["baseline"]
    metrics = [m for m in metrics if rep["variants"][b]["metrics"][m]["mean"]]  # (no % of a zero baseline)
    fig = go.Figure()
    rows = [f"{METRIC_WORDS[m][0]} ({'lower' if METRIC_WORDS[m][2] < 0 else 'higher'} is better)" for m in metrics]
    for k, lab in enumerate(others):
        xs, lo, hi, sym, hov = [], [], [], [], []
        for m in metrics:
            d_ = rep["variants"][lab]["metrics"][m]
            base = rep["variants"][b]["metrics"][m]["mean"]
            rel = (lambda v, base=base: 100 * v / abs(base) if base and v is not None else None)  # noqa: E731
            xs.append(rel(d_["diff_mean"]))
            lo.append(rel(d_.get("diff_ci_low")))
            hi.append(rel(d_.get("diff_ci_high")))
            sym.append("circle" if d_.get("significant") else "circle-open")
            hov.append(f"{lab} vs {b}: {_mval(m, d_['diff_mean'])}"
                       + (f" [{_mval(m, d_['diff_ci_low'])}, {_mval(m, d_['diff_ci_high'])}]"
                          if d_.get("diff_ci_low") is not None else "")
                       + (" significant" if d_.get("significant") else " not significant"))
        err = dict(
            type="data",
            symmetric=False,
            array=[(h - x) if h is not None and x is not None else 0 for x, h in zip(xs, hi, strict=False)],
            arrayminus=[(x - lo_) if lo_ is not None and x is not None else 0 for x, lo_ in zip(xs, lo, strict=False)],
        )
        fig.add_trace(go.Scatter(x=xs, y=rows, error_x=err, mode="markers", name=lab, hovertext=hov,
                                 hovertemplate="%{hovertext}<br>%{x:.3g}% of the baseline<extra></extra>",
                                 marker=dict(color=_color(k + 1), symbol=sym, size=10, line=dict(width=2))))
    fig.add_vline(x=0, line_color="black", line_width=1)
    fig.update_xaxes(title_text=f"difference to {b} (% of its mean)", zeroline=False, ticksuffix="%")
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=f"How does each variant differ from {b}? Paired difference, 95% interval "
                            "(filled: significant; open: not)", legend=dict(orientation="h", y=-0.12),
                      margin=dict(l=260))
    return fig


# ----------------------------------------------------------------------------------------------
# sweep


def sweep_headline(rep: dict[str, Any]) -> str:
    key = rep["key"]
    what = "load" if key.endswith("rate_per_s") else key
    unit = " req/s" if key.endswith("rate_per_s") else ""
    parts = []
    for lab, v in rep["variants"].items():
        pts = [p for p in v["points"] if not p.get("failed")]
        uns = [p["value"] for p in pts if p.get("stable") is False]
        if v.get("slo_defined"):
            best = v.get("max_value_meeting_slo")
            s = (f"<b>{_e(lab)}</b>: up to <b>{_num(best)}{unit}</b>" if best is not None
                 else f"<b>{_e(lab)}</b>: <b>none</b> of the swept values")
        else:
            p99 = [p["metrics"].get("ttft_p99_s", {}).get("mean") for p in pts]
            s = f"<b>{_e(lab)}</b>: p99 TTFT {_secs(p99[0])} to {_secs(p99[-1])}" if p99 else f"{_e(lab)}: no point ran"
        if uns:
            s += f" (no steady state from {_num(min(uns))}{unit})"
        parts.append(s)
    n = rep.get("replications", 1)
    head = (f"Largest {what} at which at least {rep['attainment_target']:.0%} of requests meet the SLO"
            if all(v.get("slo_defined") for v in rep["variants"].values())
            else f"p99 time to first token over {what} {_num(rep['values'][0])} to {_num(rep['values'][-1])}{unit}")
    return head + ": " + "; ".join(parts) + (f" ({n} replications per point)." if n > 1 else
                                             " (one replication per point: no interval).")


def _sweep_report(d: Path) -> tuple[str, str, list[str]]:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rep = json.loads((d / "sweep.json").read_text())
    key = rep["key"]
    xlabel = "offered load (requests/s)" if key.endswith("rate_per_s") else key
    figs = _Figures()
    body = ["<h2>Points</h2>"]
    for lab, v in rep["variants"].items():
        rows = []
        for p in v["points"]:
            m = p["metrics"]
            g = lambda k, m=m: m.get(k, {}).get("mean")  # noqa: E731
            st = ('<span class="bad">failed</span>' if p.get("failed") else
                  '<span class="bad">NO: ' + _e(p.get("instability") or "") + "</span>" if p.get("stable") is False
                  else '<span class="ok">yes</span>')
            rows.append([_e(_num(p["value"])), _e(_secs(g("ttft_p50_s"))), _e(_secs(g("ttft_p99_s"))),
                         _e(_secs(g("tpot_p99_s"))), _e(_num(g("throughput_output_tok_per_s")))]
                        + ([_e(_pct(g("slo_attainment")))] if v.get("slo_defined") else []) + [st])
        body += [f"<h3>{_e(lab)}</h3>" if len(rep["variants"]) > 1 else "",
                 _table([key, "p50 TTFT", "p99 TTFT", "p99 TPOT", "tok/s"]
                        + (["SLO attainment"] if v.get("slo_defined") else []) + ["steady state"], rows)]
    slo = _slo_of(rep)
    ci = rep.get("replications", 1) > 1
    keyed = False
    fig = make_subplots(rows=1, cols=3, subplot_titles=("time to first token (s)", "time per output token (s)",
                                                        "end-to-end latency (s)"), horizontal_spacing=0.07)
    for k, (lab, v) in enumerate(rep["variants"].items()):
        pts = [p for p in v["points"] if not p.get("failed")]
        x = [p["value"] for p in pts]
        for c, base in enumerate(("ttft", "tpot", "e2e"), start=1):
            for q, dash in (("p50", "dash"), ("p99", "solid")):
                m = f"{base}_{q}_s"
                y = [p["metrics"].get(m, {}).get("mean") for p in pts]
                if ci:
                    lo = [p["metrics"].get(m, {}).get("ci_low") for p in pts]
                    hi = [p["metrics"].get(m, {}).get("ci_high") for p in pts]
                    fig.add_trace(go.Scatter(x=x + x[::-1], y=hi + lo[::-1], fill="toself", fillcolor=_rgba(k, 0.12),
                                             mode="lines",
                                             line=dict(width=0), hoverinfo="skip", showlegend=False), row=1, col=c)
                fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", line=dict(color=_color(k), dash=dash),
                                         name=f"{lab} {q}", legendgroup=f"{lab}{q}", showlegend=c == 1,
                                         hovertemplate=f"{lab} {q}<br>{xlabel}: %{{x}}<br>%{{y:.4g}} s<extra></extra>"),
                              row=1, col=c)
            bad = [
                (p["value"], p["metrics"].get(f"{base}_p99_s", {}).get("mean")) for p in pts if p.get("stable") is False
            ]
            if bad:
                fig.add_trace(go.Scatter(x=[a for a, _ in bad], y=[b for _, b in bad], mode="markers",
                                         marker=dict(symbol="x", color="red", size=11), name="no steady state",
                                         legendgroup="unstable", showlegend=not keyed,
                                         hovertext=[p.get("instability") for p in pts if p.get("stable") is False]),
                              row=1, col=c)
                keyed = True  # (the red x's legend entry once, whichever variant has it first)
            if f"{base}_s" in slo:
                fig.add_hline(y=slo[f"{base}_s"], line_dash="dot", line_color="black", row=1, col=c,
                              annotation_text=f"SLO {slo[base + '_s']:g} s")
    for c, base in enumerate(("ttft", "tpot", "e2e"), start=1):
        ys = [p["metrics"].get(f"{base}_{q}_s", {}).get(w) for v in rep["variants"].values() for p in v["points"]
              for q in ("p50", "p99") for w in (("mean", "ci_low", "ci_high") if ci else ("mean",))]
        ys = [y for y in ys if y is not None] + ([slo[f"{base}_s"]] if f"{base}_s" in slo else [])
        _log_if_wide(fig.update_yaxes, ys, row=1, col=c)
    fig.update_xaxes(title_text=xlabel)
    band = "shaded: 95% CI over the replications" if ci else "one replication per point: no interval"
    fig.update_layout(title=f"How does latency grow with {xlabel}?", legend=dict(orientation="h", y=-0.25))
    body += ["<h2>Latency against " + _e(xlabel) + "</h2>", figs.html(fig, 460),
             f'<p class="note">Dashed: p50; solid: p99 ({band}); red x: no steady state at that point'
             + ("; dotted: the scenario's SLO" if slo else "") + ".</p>"]
    fig = go.Figure()
    all_p99 = []
    for k, (lab, v) in enumerate(rep["variants"].items()):
        pts = [p for p in v["points"] if not p.get("failed")]
        p99 = [p["metrics"].get("tpot_p99_s", {}).get("mean") for p in pts]
        thr = [p["metrics"].get("throughput_output_tok_per_s", {}).get("mean") for p in pts]
        all_p99 += [y for y in p99 if y is not None]
        labels = [""] * len(pts)  # points on one spot share one label ("10-50"), as on the PNG
        for k0, k1 in _close_groups([x or 0.0 for x in thr], [y or 0.0 for y in p99]):
            labels[k0] = _num(pts[k0]["value"]) + (f"-{_num(pts[k1 - 1]['value'])}" if k1 - 1 > k0 else "")
        fig.add_trace(
            go.Scatter(
                x=thr,
                y=p99,
                text=labels,
                customdata=[_num(p["value"]) for p in pts],
                mode="lines+markers+text",
                textposition="top center",
                name=lab,
                line=dict(color=_color(k)),
                marker=dict(
                    symbol=["x" if p.get("stable") is False else "circle" for p in pts],
                    size=[11 if p.get("stable") is False else 7 for p in pts],
                ),
                hovertemplate=f"{lab}<br>{key} %{{customdata}}<br>%{{x:.4g}} tok/s<br>p99 TPOT %{{y:.4g}} s"
                "<extra></extra>",
            )
        )
    fig.update_xaxes(title_text="output throughput (tokens/s)")
    fig.update_yaxes(title_text="p99 time per output token (s)")
    _log_if_wide(fig.update_yaxes, all_p99)
    fig.update_layout(title=f"What throughput at what latency? (labels: {xlabel}; x: no steady state)")
    body += [figs.html(fig, 440)]
    w = _saved_warnings(d)
    for lab, v in rep["variants"].items():
        for p in v["points"]:
            if p.get("stable") is False:
                w.append(f"{lab} at {key} = {_num(p['value'])}: no steady state ({p.get('instability')}).")
    for f in rep.get("failed_runs", []):
        w.append(f"{f['variant']} {f['config']}: {f['error']}")
    body.append(_warnings_html(w))
    body.append(_pngs(d))
    return f"dcsim sweep: {Path(rep['scenario']).name} over {key}", sweep_headline(rep), body


def _rgba(k: int, a: float) -> str:
    h = _color(k).lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{a})"


# ----------------------------------------------------------------------------------------------
# plan and fleet


def plan_headline(rep: dict[str, Any]) -> str:
    slo = ", ".join(f"{k[:-2].upper()} ≤ {v:g} s" for k, v in rep["slo"].items())
    b = rep.get("plan")
    if not b:
        return (f"<b>No configuration</b> met the SLO ({_e(slo)}) at {rep['attainment']:.0%} attainment and "
                f"{_num(rep['target_rate_per_s'])} req/s within the candidates tried ({rep['evaluations']} runs).")
    iv = b.get("ttft_p99_interval_s")
    return (f"Cheapest fleet for {_num(rep['target_rate_per_s'])} req/s at {rep['attainment']:.0%} SLO attainment "
            f"({_e(slo)}): <b>{b['replicas']} x {_e(b['hardware'])}</b> (TP{b['tp']}, {_e(b['scheduler'])}), "
            f"{b['accelerators']} accelerators at <b>USD {_num(b['usd_per_hour'])}/h</b>; attainment "
            f"{_pct(b['slo_attainment'])}, p99 TTFT {_secs(b['ttft_p99_s'])}"
            + (f" (90% interval {_secs(iv[0])} to {_secs(iv[1])})" if iv else "") + ".")


def _plan_report(d: Path) -> tuple[str, str, list[str]]:
    import plotly.graph_objects as go

    rep = json.loads((d / "plan.json").read_text())
    rows = [[_e(f["hardware"]), _e(f["tp"]), _e(f["scheduler"]), _e(f["replicas"]), _e(f["accelerators"]),
             _e(_num(f["usd_per_hour"])), _e(_pct(f["slo_attainment"])), _e(_pct(f.get("slo_attainment_pessimistic"))),
             _e(_secs(f["ttft_p99_s"])), _e(_secs(f["tpot_p99_s"]))] for f in rep["frontier"]]
    body = ["<h2>Candidates meeting the SLO, cheapest first</h2>",
            _table(["hardware", "TP", "scheduler", "replicas", "accelerators", "USD/h", "attainment", "worst case",
                    "p99 TTFT", "p99 TPOT"], rows, left=3)]
    if rep.get("verify"):
        body.append(f"<p class=\"note\">Check the answer: <code>{_e(rep['verify'])}</code></p>")
    figs = _Figures()
    if rep["frontier"]:
        fig = go.Figure(go.Scatter(
            x=[f["usd_per_hour"] for f in rep["frontier"]], y=[f["ttft_p99_s"] for f in rep["frontier"]],
            mode="markers+text", text=[f"{f['replicas']}x {f['hardware']} TP{f['tp']}" for f in rep["frontier"]],
            textposition="top center", marker=dict(size=10),
            hovertemplate="%{text}<br>USD %{x:.2f}/h<br>p99 TTFT %{y:.3g} s<extra></extra>"))
        if "ttft_s" in rep["slo"]:
            fig.add_hline(y=rep["slo"]["ttft_s"], line_dash="dash", annotation_text="TTFT SLO")
        fig.update_xaxes(title_text="cost (USD per hour)", rangemode="tozero")
        fig.update_yaxes(title_text="p99 time to first token (s)", rangemode="tozero")
        fig.update_layout(title="What does each configuration cost, and how fast is it?")
        body.append(figs.html(fig, 420))
    w = [f"skipped {s['hardware']} TP{s['tp']} {s['scheduler']}: {s['why']}" for s in rep.get("skipped", [])]
    body.append(_warnings_html(w + _saved_warnings(d)))
    return f"dcsim plan: {Path(rep['scenario']).name}", plan_headline(rep), body


def _fleet_report(d: Path) -> tuple[str, str, list[str]]:
    rep = json.loads((d / "fleet.json").read_text())
    att = rep.get("fleet_slo_attainment")
    head = (
        f"{rep['cells_total']:,} cells ({rep['cells_simulated']} simulated): <b>{_big(rep['fleet_output_tok_per_s'])} "
        f"output tokens/s</b> ({_big(rep['fleet_output_tokens_per_day'])} a day), p99 TTFT "
        f"<b>{_secs(rep.get('ttft_p99_s'))}</b>"
        + (f", <b>{_pct(att)}</b> of requests within the SLO" if att is not None else "")
        + (
            f", USD {_num(rep['fleet_usd_per_mtok'])} per million output tokens"
            if rep.get("fleet_usd_per_mtok")
            else ""
        )
        + f". <span class=\"note\">{_e(rep.get('inference', ''))}</span>"
    )
    cards = [
        _card(
            "fleet throughput", _big(rep["fleet_output_tok_per_s"], "tok/s"), f"{_big(rep['fleet_req_per_s'])} req/s"
        ),
        _card("p50 / p99 TTFT", f"{_secs(rep.get('ttft_p50_s'))} / {_secs(rep.get('ttft_p99_s'))}"),
        _card("p50 / p99 TPOT", f"{_secs(rep.get('tpot_p50_s'))} / {_secs(rep.get('tpot_p99_s'))}"),
    ]
    if rep.get("fleet_usd_per_hour"):
        cards.append(
            _card(
                "cost", f"USD {_num(rep['fleet_usd_per_hour'])}/h", f"USD {_num(rep.get('fleet_usd_per_mtok'))} / Mtok"
            )
        )
    if rep.get("fleet_energy_j"):
        cards.append(_card("facility power", _num(rep["fleet_facility_power_mean_w"] / 1e6, "MW"),
                           f"peak {_num(rep['fleet_facility_power_peak_w'] / 1e6)} MW; over the supply "
                           f"{_num(rep.get('power_limit_exceeded_s'))} s"))
    rows = [[_e(k["name"]), _e(k["count"]), _e(k["simulated"]), _e(_num(k["per_cell_output_tok_per_s"])),
             _e(_num(k["per_cell_req_per_s"])), f"{k['completed_simulated']:,} / {k['requests_simulated']:,}"]
            for k in rep["kinds"]]
    body = ["<h2>Key numbers</h2>", f'<div class="cards">{"".join(cards)}</div>', "<h2>Cell kinds</h2>",
            _table(["kind", "cells", "simulated", "tok/s per cell", "req/s per cell", "completed (simulated)"], rows)]
    if (d / "requests.parquet").exists():
        body.append(_Figures().html(_latency_cdf_fig(latency_curves(d), {})))
    body.append(_warnings_html(_saved_warnings(d)))
    return f"dcsim fleet: {Path(rep['scenario']).name}", head, body


# ----------------------------------------------------------------------------------------------


def write_report(d: str | Path) -> Path:
    """report.html in folder `d` (a run, compare, sweep, plan or fleet folder); returns its path."""
    d = Path(d)
    if (d / "compare.json").exists():
        title, head, body = _compare_report(d)
    elif (d / "sweep.json").exists():
        title, head, body = _sweep_report(d)
    elif (d / "plan.json").exists():
        title, head, body = _plan_report(d)
    elif (d / "fleet.json").exists():
        title, head, body = _fleet_report(d)
    elif (d / "summary.json").exists():
        title, head, body = _run_report(d)
    else:
        raise ScenarioError("RUN_DIR", f"{d} holds no summary.json, compare.json, sweep.json, plan.json or fleet.json",
                            "point at a folder written by dcsim run/compare/sweep/plan --out")
    out = d / "report.html"
    out.write_text(_page(title, head, body), encoding="utf-8")
    return out
