"""The HTML report of a compare folder (variants' differences with intervals, a forest plot) and of
a sweep folder (latency, throughput and goodput against the swept value)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from sim.analysis.report_figures import latency_cdf_fig, log_if_wide, series_color, series_rgba
from sim.analysis.report_html import Figures, esc, html_table, num, pct, pngs_html, saved_warnings, secs, warnings_html
from sim.analysis.study_plots import METRIC_WORDS, close_groups, slo_of

# ----------------------------------------------------------------------------------------------
# compare


def _mval(m: str, v: Any, diff: bool = False) -> str:
    unit = METRIC_WORDS.get(m, (m, "", 0))[1]
    if v is None:
        return "–"
    if unit == "s":
        return secs(v)
    if m in ("slo_attainment", "utilization_mean", "prefix_cache_hit_rate"):
        return f"{100 * v:.1f} points" if diff else pct(v)
    return num(v, unit)


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
            f"<b>{esc(lab)}</b> {'improves' if better else 'worsens'} {METRIC_WORDS[m][0]} by "
            f"<b>{_mval(m, abs(d['diff_mean']), True)}</b>"
            + (f" ({abs(rel):.1%})" if rel is not None else "")
            + f" (95% interval of the difference {_mval(m, d['diff_ci_low'], True)} to "
            + f"{_mval(m, d['diff_ci_high'], True)}), "
            f"{_nsig(v)} of {len(v['metrics'])} metrics differ significantly"
        )
    if n < 2:
        return (f"One replication: no interval and no significance test; the differences below are single runs. "
                f"Rerun with --replications 3 or more to tell a real difference from noise (baseline {esc(b)}).")
    if not parts:
        return (f"No variant differs significantly from the baseline <b>{esc(b)}</b> on any metric over {n} "
                "replications (paired 95% intervals all contain zero).")
    return f"Against the baseline <b>{esc(b)}</b> over {n} paired replications: " + "; ".join(parts) + "."


def compare_report(d: Path) -> tuple[str, str, list[str]]:
    rep = json.loads((d / "compare.json").read_text())
    b = rep["baseline"]
    labels = list(rep["variants"])
    metrics = [m for m in rep["metrics"] if m in METRIC_WORDS]
    rows = []
    for m in metrics:
        cells = [esc(f"{METRIC_WORDS[m][0]}")]
        for lab in labels:
            d_ = rep["variants"][lab]["metrics"][m]
            ci = f" [{_mval(m, d_['ci_low'])}, {_mval(m, d_['ci_high'])}]" if d_.get("ci_low") is not None else ""
            cell = esc(_mval(m, d_["mean"]) + ci)
            if lab != b and d_.get("diff_mean") is not None:
                good = d_["diff_mean"] * METRIC_WORDS[m][2] > 0
                cls = ("ok" if good else "bad") if d_.get("significant") else "dim"
                sign = "+" if d_["diff_mean"] >= 0 else "−"
                mark = " ★" if d_.get("significant") else " (n.s.)"
                cell += f'<br><span class="{cls}">{sign}{esc(_mval(m, abs(d_["diff_mean"]), True))}{mark}</span>'
            cells.append(cell)
        rows.append(cells)
    head = [
        f"{lab}{' (baseline)' if lab == b else ''}"
        + (" ⚠ no steady state" if rep["variants"][lab].get("unstable") else "")
        for lab in labels
    ]
    body = ["<h2>Variants</h2>", html_table(["metric"] + head, rows),
            f'<p class="note">Mean [95% CI] over {rep["replications"]} replications on the same seeds; below it the '
            "paired difference to the baseline: ★ significant (its 95% interval excludes zero; green better, red "
            "worse), n.s. not significant.</p>"]
    variants = "".join(f"<li><b>{esc(lab)}</b>: {esc(' '.join(v.get('sets', [])) or 'the scenario as is')}</li>"
                       for lab, v in rep["variants"].items())
    body.append(f"<h2>What each variant changes</h2><ul>{variants}</ul>")
    figs = Figures()
    others = [lab for lab in labels if lab != b]
    if others:
        zero = [METRIC_WORDS[m][0] for m in metrics if not rep["variants"][b]["metrics"][m]["mean"]]
        body += [
            "<h2>Differences to the baseline</h2>",
            figs.html(_forest_fig(rep, metrics, others), 110 + 34 * len(metrics) * max(1, len(others)) ** 0.5),
        ]
        if zero:
            body.append(f'<p class="note">Not drawn (zero at the baseline, so no percentage): {esc(", ".join(zero))}; '
                        "their differences are in the table.</p>")
    curves = {lab: {k: np.asarray(v["latencies_seed0"].get(k, []), float) for k in ("ttft_s", "tpot_s", "e2e_s")}
              for lab, v in rep["variants"].items() if "latencies_seed0" in v}
    if curves:
        slo = slo_of(rep)
        body += ["<h2>Latency distributions (first replication)</h2>", figs.html(latency_cdf_fig(curves, slo))]
    w = saved_warnings(d)
    for lab, v in rep["variants"].items():
        for u in v.get("unstable", []):
            w.append(f"{lab}, seed {u['seed']}: no steady state ({u['instability']}); its means describe a growing "
                     "queue, not a service level.")
    if rep["replications"] < 2:
        w.insert(0, "One replication: no confidence interval and no significance test.")
    body.append(warnings_html(w))
    body.append(pngs_html(d))
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
                                 marker=dict(color=series_color(k + 1), symbol=sym, size=10, line=dict(width=2))))
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
            s = (f"<b>{esc(lab)}</b>: up to <b>{num(best)}{unit}</b>" if best is not None
                 else f"<b>{esc(lab)}</b>: <b>none</b> of the swept values")
        else:
            p99 = [p["metrics"].get("ttft_p99_s", {}).get("mean") for p in pts]
            s = f"<b>{esc(lab)}</b>: p99 TTFT {secs(p99[0])} to {secs(p99[-1])}" if p99 else f"{esc(lab)}: no point ran"
        if uns:
            s += f" (no steady state from {num(min(uns))}{unit})"
        parts.append(s)
    n = rep.get("replications", 1)
    head = (f"Largest {what} at which at least {rep['attainment_target']:.0%} of requests meet the SLO"
            if all(v.get("slo_defined") for v in rep["variants"].values())
            else f"p99 time to first token over {what} {num(rep['values'][0])} to {num(rep['values'][-1])}{unit}")
    return head + ": " + "; ".join(parts) + (f" ({n} replications per point)." if n > 1 else
                                             " (one replication per point: no interval).")


def sweep_report(d: Path) -> tuple[str, str, list[str]]:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rep = json.loads((d / "sweep.json").read_text())
    key = rep["key"]
    xlabel = "offered load (requests/s)" if key.endswith("rate_per_s") else key
    figs = Figures()
    body = ["<h2>Points</h2>"]
    for lab, v in rep["variants"].items():
        rows = []
        for p in v["points"]:
            m = p["metrics"]
            g = lambda k, m=m: m.get(k, {}).get("mean")  # noqa: E731
            st = ('<span class="bad">failed</span>' if p.get("failed") else
                  '<span class="bad">NO: ' + esc(p.get("instability") or "") + "</span>" if p.get("stable") is False
                  else '<span class="ok">yes</span>')
            rows.append([esc(num(p["value"])), esc(secs(g("ttft_p50_s"))), esc(secs(g("ttft_p99_s"))),
                         esc(secs(g("tpot_p99_s"))), esc(num(g("throughput_output_tok_per_s")))]
                        + ([esc(pct(g("slo_attainment")))] if v.get("slo_defined") else []) + [st])
        body += [f"<h3>{esc(lab)}</h3>" if len(rep["variants"]) > 1 else "",
                 html_table([key, "p50 TTFT", "p99 TTFT", "p99 TPOT", "tok/s"]
                        + (["SLO attainment"] if v.get("slo_defined") else []) + ["steady state"], rows)]
    slo = slo_of(rep)
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
                    fig.add_trace(go.Scatter(x=x + x[::-1], y=hi + lo[::-1], fill="toself",
                                             fillcolor=series_rgba(k, 0.12), mode="lines",
                                             line=dict(width=0), hoverinfo="skip", showlegend=False), row=1, col=c)
                fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", line=dict(color=series_color(k), dash=dash),
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
        log_if_wide(fig.update_yaxes, ys, row=1, col=c)
    fig.update_xaxes(title_text=xlabel)
    band = "shaded: 95% CI over the replications" if ci else "one replication per point: no interval"
    fig.update_layout(title=f"How does latency grow with {xlabel}?", legend=dict(orientation="h", y=-0.25))
    body += ["<h2>Latency against " + esc(xlabel) + "</h2>", figs.html(fig, 460),
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
        for k0, k1 in close_groups([x or 0.0 for x in thr], [y or 0.0 for y in p99]):
            labels[k0] = num(pts[k0]["value"]) + (f"-{num(pts[k1 - 1]['value'])}" if k1 - 1 > k0 else "")
        fig.add_trace(
            go.Scatter(
                x=thr,
                y=p99,
                text=labels,
                customdata=[num(p["value"]) for p in pts],
                mode="lines+markers+text",
                textposition="top center",
                name=lab,
                line=dict(color=series_color(k)),
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
    log_if_wide(fig.update_yaxes, all_p99)
    fig.update_layout(title=f"What throughput at what latency? (labels: {xlabel}; x: no steady state)")
    body += [figs.html(fig, 440)]
    w = saved_warnings(d)
    for lab, v in rep["variants"].items():
        for p in v["points"]:
            if p.get("stable") is False:
                w.append(f"{lab} at {key} = {num(p['value'])}: no steady state ({p.get('instability')}).")
    for f in rep.get("failed_runs", []):
        w.append(f"{f['variant']} {f['config']}: {f['error']}")
    body.append(warnings_html(w))
    body.append(pngs_html(d))
    return f"dcsim sweep: {Path(rep['scenario']).name} over {key}", sweep_headline(rep), body
