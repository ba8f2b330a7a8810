"""report.html: the one page a planner opens first, for a run, compare, sweep, plan or fleet folder.

The headline answer in a sentence with its interval and calibration status, the key numbers
against the SLO, interactive plots (plotly: zoom and hover), warnings, and the effective scenario.
Self-contained: plotly.js and every figure's data are inlined, so the page opens offline and asks
the network for nothing (tests/test_report.py checks this in headless Chromium).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sim.analysis.plots import latency_curves
from sim.analysis.report_figures import autoscale_fig, battery_fig, facility_fig, fleet_fig, latency_cdf_fig
from sim.analysis.report_html import (
    Figures,
    big,
    calibration_warnings,
    card_html,
    esc,
    html_table,
    num,
    page_html,
    pct,
    pngs_html,
    saved_warnings,
    scenario_raw,
    scenario_section,
    secs,
    warnings_html,
)
from sim.analysis.report_studies import compare_report, sweep_report
from sim.errors import ScenarioError

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
    return f" (90% interval {secs(iv[0])} to {secs(iv[1])})" if iv else ""


def _status_words(s: dict[str, Any]) -> str:
    st = s.get("calibration_status") or {}
    if not st:
        return "Calibration status: not recorded."
    bad = {h: v for h, v in st.items() if v != "measured"}
    if not bad:
        return "Constants measured: fitted on measured runs (" + ", ".join(st) + ")."
    return ("Constants " + ", ".join(f"{v} for {h}" for h, v in bad.items())
            + ": estimates outside the error measured on h100-sxm.")


def run_headline(s: dict[str, Any], raw: dict[str, Any]) -> str:
    """The run's answer in one sentence: load, fleet, SLO attainment, p99 TTFT and mean TPOT with
    their 90% intervals, and what the constants rest on."""
    w = raw.get("workload") or {}
    rate = w.get("rate_per_s")
    if w.get("arrival") == "closed":
        load = (f"{num(w.get('concurrency'))} closed-loop clients ({num(s.get('throughput_req_per_s'))} req/s "
                "served)")
    elif isinstance(rate, (int, float)) and w.get("arrival", "poisson") != "trace":
        load = f"{num(rate)} req/s offered"
    else:
        load = f"{num(s.get('throughput_req_per_s'))} req/s served"
    pi = s.get("prediction_interval") or {}
    lat = (f"p99 time to first token <b>{secs(s.get('ttft_p99_s'))}</b>{_interval(pi, 'ttft_p99_s')}, "
           f"mean time per output token <b>{secs(s.get('tpot_mean_s'))}</b>{_interval(pi, 'tpot_mean_s')}")
    if s.get("slo_attainment") is not None:
        lims = ", ".join(f"{n} ≤ {secs(s.get(k))}" for n, k in (("TTFT", "slo_ttft_s"), ("TPOT", "slo_tpot_s"))
                         if s.get(k) is not None)
        worst = s.get("slo_attainment_pessimistic")
        ans = (f"<b>{pct(s['slo_attainment'])}</b> of requests meet the SLO ({esc(lims)})"
               + (f", {pct(worst)} at the intervals' pessimistic end" if worst is not None else ""))
    else:
        ans = f"it serves <b>{num(s.get('throughput_output_tok_per_s'), 'output tokens/s')}</b> (no SLO set)"
    money = f"; <b>USD {num(s['cost_per_mtok_usd'])}</b> per million output tokens" \
        if s.get("cost_per_mtok_usd") else ""
    return (f"{esc(_fleet_words(raw))}, at {load}: {ans}; {lat}{money}. "
            f"<span class=\"note\">{esc(_status_words(s))}</span>")


def _run_warnings(s: dict[str, Any], d: Path) -> list[str]:
    w = []
    if s.get("stable") is False:
        w.append(f"No steady state: {s.get('instability')}. Means and percentiles describe a growing queue, "
                 "not a service level; lower the load or add replicas.")
    w += calibration_warnings(s.get("calibration_status") or {})
    lost = {k: v for k, v in (s.get("reasons") or {}).items() if v}
    if lost:
        w.append(f"{s.get('requests_rejected', 0)} rejected and {s.get('requests_failed', 0)} failed requests: "
                 + ", ".join(f"{k} {v}" for k, v in lost.items()) + ".")
    if s.get("requests_in_flight"):
        w.append(f"{s['requests_in_flight']} requests were still in flight when the run ended (not in the latencies).")
    if (s.get("power_limit_exceeded_s") or 0) > 0:
        w.append(f"The facility drew more than its live supply for {num(s['power_limit_exceeded_s'])} s.")
    if (s.get("ramp_limit_exceeded_s") or 0) > 0:
        w.append(f"Load changed faster than the generators ramp for {num(s['ramp_limit_exceeded_s'])} s.")
    if (s.get("littles_law_rel_err") or 0) > 0.02:
        w.append(
            f"Little's law holds only to {pct(s['littles_law_rel_err'])} on this run (requests in flight at the end)."
        )
    return w + [x for x in saved_warnings(d) if x not in w]


def _run_key_numbers(s: dict[str, Any], raw: dict[str, Any]) -> str:
    rows = []
    for name, key, slo_key in (
        ("time to first token", "ttft", "slo_ttft_s"),
        ("time per output token", "tpot", "slo_tpot_s"),
        ("end-to-end latency", "e2e", None),
        ("queueing delay", "queue", None),
    ):
        lim = s.get(slo_key) if slo_key else None
        cells = [esc(name)]
        for q in ("mean", "p50", "p90", "p99"):
            v = s.get(f"{key}_{q}_s")
            cls = "" if lim is None or v is None else (' class="ok"' if v <= lim else ' class="bad"')
            cells.append(f"<span{cls}>{esc(secs(v))}</span>" if v is not None else "–")
        pi = (s.get("prediction_interval") or {})
        iv = [pi.get(f"{key}_mean_s"), pi.get(f"{key}_p99_s")]
        cells.append(esc(" / ".join(f"{secs(a)}–{secs(b)}" for a, b in [x for x in iv if x]) or "–"))
        cells.append(esc(secs(lim)) if lim is not None else '<span class="dim">none</span>')
        rows.append(cells)
    lat = html_table(["latency", "mean", "p50", "p90", "p99", "90% interval (mean / p99)", "SLO"], rows)
    cards = [card_html("requests", f"{s['requests_completed']:,} completed",
                   f"{s['requests_total']:,} total; {s['requests_rejected']} rejected, {s['requests_failed']} failed"),
             card_html("throughput", num(s.get("throughput_output_tok_per_s"), "tok/s"),
                   f"{num(s.get('throughput_req_per_s'))} requests/s")]
    if s.get("slo_attainment") is not None:
        cards.append(card_html("SLO attainment", pct(s["slo_attainment"]),
                           f"goodput {num(s.get('goodput_req_per_s'))} req/s"
                           + (f"; worst case {pct(s['slo_attainment_pessimistic'])}"
                              if s.get("slo_attainment_pessimistic") is not None else "")))
    # saturation, not busy time: a replica with anything to decode is busy, however empty its batch
    kv, fill, qs = s.get("kv_used_mean"), s.get("batch_fill_mean"), s.get("queue_share_of_latency")
    if kv is not None or fill is not None:
        cards.append(card_html("saturation", f"KV {pct(kv)} · batch {pct(fill)}",
                               f"mean KV held and running sequences over their limits; queueing "
                               f"{pct(qs)} of latency; a step running {pct(s.get('utilization_mean'))} of the time "
                               f"({s.get('replicas', '?')} replicas, {s.get('preemptions_total', 0)} preemptions)"))
    else:
        cards.append(card_html("busy", pct(s.get("utilization_mean")), f"share of time a step was running; "
                               f"{s.get('replicas', '?')} replicas"))
    if s.get("energy_j"):
        cards.append(card_html("energy", num(s["energy_j"] / 3.6e6, "kWh"),
                           f"{num(s.get('energy_per_output_tok_j'))} J per output token"))
    if s.get("cost_per_mtok_usd"):
        cards.append(
            card_html("cost", f"USD {num(s['cost_per_mtok_usd'])} / Mtok", f"USD {num(s.get('cost_usd'))} in all")
        )
    if "power_limit_exceeded_s" in s and (raw.get("facility") or {}).get("sources"):  # (a supply to exceed)
        cards.append(card_html("time over the power supply", num(s["power_limit_exceeded_s"], "s"),
                           f"peak draw {num((s.get('facility_power_peak_w') or 0) / 1e3, 'kW')}"))
    if s.get("replica_hours"):
        cards.append(card_html("replica-hours", num(sum(s["replica_hours"].values())),
                           ", ".join(f"{k} {num(v)}" for k, v in s["replica_hours"].items())))
    cards.append(card_html("simulated", num(s.get("sim_time_s"), "s"),
                           f"in {num(s.get('wall_time_s'))} s of wall time; {s.get('engine', '')} engine"))
    out = [lat, f'<div class="cards">{"".join(cards)}</div>']
    if s.get("classes"):
        rows = [
            [
                esc(c["name"]),
                f"{c.get('completed', 0):,} / {c.get('requests', 0):,}",
                esc(secs(c.get("ttft_mean_s"))),
                esc(secs(c.get("ttft_p99_s"))),
                esc(secs(c.get("tpot_mean_s"))),
                esc(secs(c.get("e2e_p99_s"))),
                esc(pct(c.get("slo_attainment"))),
            ]
            for c in s["classes"]
        ]
        out.append("<h2>Per request class</h2>" + html_table(
            ["class", "completed", "mean TTFT", "p99 TTFT", "mean TPOT", "p99 E2E", "SLO attainment"], rows))
    if s.get("hourly"):
        rows = [[esc(h["hour"]), f"{h['requests']:,}", esc(pct(h.get("slo_attainment"))),
                 esc(secs(h.get("ttft_p90_s"))), esc(num(h.get("replicas_mean"))),
                 esc(num(h.get("accelerator_usd_per_mtok")))] for h in s["hourly"]]
        out.append("<h2>Each hour</h2>" + html_table(["hour", "requests", "SLO met", "p90 TTFT", "replicas (mean)",
                                                  "accelerators USD / Mtok"], rows))
    return "\n".join(out)


def class_slo(raw: dict[str, Any]) -> dict[str, dict[str, float]]:
    out = {}
    for c in (raw.get("workload") or {}).get("classes", []) or []:
        if isinstance(c, dict) and isinstance(c.get("slo"), dict):
            out[str(c.get("name"))] = {k: float(v) for k, v in c["slo"].items() if k in ("ttft_s", "tpot_s")}
    return out


def _run_report(d: Path) -> tuple[str, str, list[str]]:
    s = json.loads((d / "summary.json").read_text())
    raw = scenario_raw(d)
    figs = Figures()
    body = [
        "<h2>Key numbers</h2>",
        _run_key_numbers(s, raw),
        warnings_html(
            _run_warnings(s, d),
            "None: a steady state was reached, no request was lost, and no input was truncated or ignored.",
        ),
        "<h2>Plots</h2>",
    ]
    slo = {k: s[f"slo_{k}"] for k in ("ttft_s", "tpot_s") if s.get(f"slo_{k}") is not None}
    curves = latency_curves(d)
    cs = class_slo(raw)
    body.append(figs.html(latency_cdf_fig(curves, slo, cs)))
    if cs:
        body.append('<p class="note">Class SLOs: ' + esc("; ".join(
            f"{c}: " + ", ".join(f"{k[:-2].upper()} ≤ {v:g} s" for k, v in v2.items()) for c, v2 in cs.items()))
            + " (dotted lines; the dashed lines are the run's [slo]).</p>")
    f = fleet_fig(d, {int(k): v for k, v in (s.get("kv_blocks_total") or {}).items()})
    if f is not None:
        body.append(figs.html(f, 640))
    f = facility_fig(d)
    if f is not None:
        body.append(figs.html(f, 440))
    scaled = autoscale_fig(d)
    if scaled is not None:
        body.append(figs.html(scaled[0], 300 * scaled[1]))
    body.append(pngs_html(d))
    body.append(scenario_section(d))
    if s.get("measured"):  # written by dcsim observe: a live server's figures, not a simulation's
        head = (f"<b>Measured</b> on {esc(str(s.get('url')))} ({esc(str(s.get('model')))}) by dcsim observe, "
                f"not simulated{'' if s.get('complete', True) else ' (interrupted: partial)'}. "
                + run_headline(s, raw))
        return f"dcsim observe (measured): {raw.get('name', d.name)} (seed {raw.get('seed', '?')})", head, body
    return f"dcsim run: {raw.get('name', d.name)} (seed {raw.get('seed', '?')})", run_headline(s, raw), body


# ----------------------------------------------------------------------------------------------
# plan and fleet


def plan_headline(rep: dict[str, Any]) -> str:
    slo = ", ".join(f"{k[:-2].upper()} ≤ {v:g} s" for k, v in rep["slo"].items())
    b = rep.get("plan")
    if not b:
        return (f"<b>No configuration</b> met the SLO ({esc(slo)}) at {rep['attainment']:.0%} attainment and "
                f"{num(rep['target_rate_per_s'])} req/s within the candidates tried ({rep['evaluations']} runs).")
    iv = b.get("ttft_p99_interval_s")
    return (f"Cheapest fleet for {num(rep['target_rate_per_s'])} req/s at {rep['attainment']:.0%} SLO attainment "
            f"({esc(slo)}): <b>{esc(b.get('label') or str(b['replicas']) + ' x ' + str(b['hardware']))}</b>, "
            f"{b['accelerators']} accelerators at <b>USD {num(b['usd_per_hour'])}/h</b>; attainment "
            f"{pct(b['slo_attainment'])}, p99 TTFT {secs(b['ttft_p99_s'])}"
            + (f" (90% interval {secs(iv[0])} to {secs(iv[1])})" if iv else "") + ".")


def _plan_report(d: Path) -> tuple[str, str, list[str]]:
    import plotly.graph_objects as go

    rep = json.loads((d / "plan.json").read_text())
    rows = [[esc(f.get("label") or f["hardware"]), esc(f["accelerators"]),
             esc(num(f["usd_per_hour"])), esc(pct(f["slo_attainment"])), esc(pct(f.get("slo_attainment_pessimistic"))),
             esc(secs(f["ttft_p99_s"])), esc(secs(f["tpot_p99_s"]))] for f in rep["frontier"]]
    body = ["<h2>Candidates meeting the SLO, cheapest first</h2>",
            html_table(["configuration", "accelerators", "USD/h", "attainment", "worst case",
                        "p99 TTFT", "p99 TPOT"], rows, left=1)]
    if rep.get("search") == "local minimum":
        body.append("<p class=\"note\">Several counts were searched (" + esc(", ".join(rep.get("searched", [])))
                    + "): in each answer no single count can be lowered and still meet the SLO; another mix of "
                      "counts may cost less.</p>")
    if rep.get("verify"):
        body.append(f"<p class=\"note\">Check the answer: <code>{esc(rep['verify'])}</code></p>")
    why = (rep.get("plan") or {}).get("ttft_p99_interval_why")
    if why:
        body.append(f"<p class=\"note\">Why the p99 TTFT interval is as wide as it is: {esc(why)}</p>")
    figs = Figures()
    if rep["frontier"]:
        fr = rep["frontier"]
        usd = [f["usd_per_hour"] for f in fr]
        # labels on the points only while they can be read; hover always says what each is
        few = len(fr) <= 6
        fig = go.Figure(go.Scatter(
            x=usd, y=[f["ttft_p99_s"] for f in fr], mode="markers+text" if few else "markers",
            text=[f.get("label") or f"{f['replicas']}x {f['hardware']}" for f in fr],
            textposition=["top center" if k % 2 == 0 else "bottom center" for k in range(len(fr))],
            marker=dict(size=10), hovertemplate="%{text}<br>USD %{x:.2f}/h<br>p99 TTFT %{y:.3g} s<extra></extra>"))
        if "ttft_s" in rep["slo"]:
            fig.add_hline(y=rep["slo"]["ttft_s"], line_dash="dash", annotation_text="TTFT SLO")
        # a log axis where one outlier would squeeze the rest against the origin
        spread = max(usd) / min(usd) if min(usd) > 0 else 1.0
        fig.update_xaxes(title_text="cost (USD per hour" + (", log scale)" if spread > 10 else ")"),
                         type="log" if spread > 10 else "linear", rangemode="tozero")
        fig.update_yaxes(title_text="p99 time to first token (s)", rangemode="tozero")
        fig.update_layout(title="What does each configuration cost, and how fast is it?")
        body.append(figs.html(fig, 420))
    w = [f"skipped {s.get('label') or s['hardware']}: {s['why']}" for s in rep.get("skipped", [])]
    body.append(warnings_html(w + saved_warnings(d)))
    return f"dcsim plan: {Path(rep['scenario']).name}", plan_headline(rep), body


def _fleet_report(d: Path) -> tuple[str, str, list[str]]:
    rep = json.loads((d / "fleet.json").read_text())
    att = rep.get("fleet_slo_attainment")
    head = (
        f"{rep['cells_total']:,} cells ({rep['cells_simulated']} simulated): <b>{big(rep['fleet_output_tok_per_s'])} "
        f"output tokens/s</b> ({big(rep['fleet_output_tokens_per_day'])} a day), p99 TTFT "
        f"<b>{secs(rep.get('ttft_p99_s'))}</b>"
        + (f", <b>{pct(att)}</b> of requests within the SLO" if att is not None else "")
        + (
            f", USD {num(rep['fleet_usd_per_mtok'])} per million output tokens"
            if rep.get("fleet_usd_per_mtok")
            else ""
        )
        + f". <span class=\"note\">{esc(rep.get('inference', ''))}</span>"
    )
    cards = [
        card_html(
            "fleet throughput", big(rep["fleet_output_tok_per_s"], "tok/s"), f"{big(rep['fleet_req_per_s'])} req/s"
        ),
        card_html("p50 / p99 TTFT", f"{secs(rep.get('ttft_p50_s'))} / {secs(rep.get('ttft_p99_s'))}"),
        card_html("p50 / p99 TPOT", f"{secs(rep.get('tpot_p50_s'))} / {secs(rep.get('tpot_p99_s'))}"),
    ]
    if rep.get("fleet_usd_per_hour"):
        cards.append(
            card_html(
                "cost", f"USD {num(rep['fleet_usd_per_hour'])}/h", f"USD {num(rep.get('fleet_usd_per_mtok'))} / Mtok"
            )
        )
    warn: list[str] = []
    site = rep.get("power_bus") == "shared"  # a coupled site: the power figures are the site's own
    where = "the site" if site else "worst cell"
    if rep.get("fleet_energy_j"):
        e = rep["fleet_energy_j"]
        unit, per = next((u, v) for u, v in (("GWh", 3.6e12), ("MWh", 3.6e9), ("kWh", 3.6e6)) if e >= v or u == "kWh")
        cards.append(card_html("facility power", num(rep["fleet_facility_power_mean_w"] / 1e6, "MW"),
                               ("site peak " if site else "peak of the cells at most ")
                               + f"{num(rep['fleet_facility_power_peak_w'] / 1e6)} MW; "
                               f"energy {num(e / per, unit)}"))
        if "fleet_requests_lost_to_power" in rep:
            cards.append(card_html("power events", f"{big(rep['fleet_requests_lost_to_power'])} requests shed",
                                   f"over the supply {num(rep.get('power_limit_exceeded_s'))} s, short while the "
                                   f"turbines ramp {num(rep.get('ramp_limit_exceeded_s'))} s ({where}); battery "
                                   f"gave {num((rep.get('fleet_battery_used_j') or 0) / 3.6e9, 'MWh')}"))
        if (rep.get("fleet_requests_lost_to_power") or 0) > 0:
            warn.append(f"About {big(rep['fleet_requests_lost_to_power'])} requests were shed for power"
                        + (" (every cell simulated)." if site else " (inferred over the cells)."))
        if (rep.get("power_limit_exceeded_s") or 0) > 0:
            warn.append(("The site drew more than its live supply for " if site else
                         "A cell drew more than its share of the live supply for ")
                        + f"{num(rep['power_limit_exceeded_s'])} s.")
        if (rep.get("ramp_limit_exceeded_s") or 0) > 0:
            warn.append(f"Load changed faster than the turbines ramp for {num(rep['ramp_limit_exceeded_s'])} s "
                        f"({where}).")
    if rep.get("stable") is False:
        warn.append(f"A simulated cell did not reach a steady state: {rep.get('instability')}.")
    rows = [[esc(k["name"]), esc(k["count"]), esc(k["simulated"]), esc(num(k["per_cell_output_tok_per_s"])),
             esc(num(k["per_cell_req_per_s"])), f"{k['completed_simulated']:,} / {k['requests_simulated']:,}"]
            for k in rep["kinds"]]
    body = ["<h2>Key numbers</h2>", f'<div class="cards">{"".join(cards)}</div>', "<h2>Cell kinds</h2>",
            html_table(["kind", "cells", "simulated", "tok/s per cell", "req/s per cell", "completed (simulated)"],
                       rows)]
    if rep.get("extrapolated"):
        warn.append("Sampled cells: " + ", ".join(rep["extrapolated"][:6]) + (" ..." if len(rep["extrapolated"]) > 6
                    else "") + " are extrapolated from them (power_bus = \"shared\" simulates every cell).")
    if site:  # the site's draw against its live supply, the trips marked; what carried it; what it rests on
        body.append(f"<p class=\"note\">Every cell simulated; the site's facility acted on their summed draw every "
                    f"{num(rep.get('window_s'))} s window, the draw integrated exactly over "
                    f"{num(rep.get('bin_s'))} s bins (the peak, ramps and time over the supply at that resolution); "
                    f"latency percentiles {esc(rep.get('percentiles', ''))}.</p>")
        figs = Figures()  # (one numbering for the page's figures: their divs' ids differ)
        for fig in (facility_fig(d), battery_fig(d)):
            if fig is not None:
                body.append(figs.html(fig))
    if (d / "requests.parquet").exists():
        body.append(Figures().html(latency_cdf_fig(latency_curves(d), {})))
    body.append(warnings_html(warn + saved_warnings(d)))
    return f"dcsim fleet: {Path(rep['scenario']).name}", head, body


# ----------------------------------------------------------------------------------------------


def write_report(d: str | Path) -> Path:
    """report.html in folder `d` (a run, compare, sweep, plan or fleet folder); returns its path."""
    d = Path(d)
    if (d / "compare.json").exists():
        title, head, body = compare_report(d)
    elif (d / "sweep.json").exists():
        title, head, body = sweep_report(d)
    elif (d / "plan.json").exists():
        title, head, body = _plan_report(d)
    elif (d / "fleet.json").exists():
        title, head, body = _fleet_report(d)
    elif (d / "summary.json").exists():
        title, head, body = _run_report(d)
    else:
        raise ScenarioError("RUN_DIR", f"{d} holds no summary.json, compare.json, sweep.json, plan.json or fleet.json",
                            "point at a folder written by dcsim run/compare/sweep/plan --out")
    study = next((d / f for f in ("compare.json", "sweep.json", "plan.json", "fleet.json") if (d / f).exists()), None)
    if study is not None:  # what a study's numbers rest on, first (a run's report says it in its headline)
        notes = calibration_warnings(json.loads(study.read_text()).get("calibration_status") or {})
        if notes:
            body.insert(0, "<p class=\"note\"><b>What these numbers rest on.</b> " + " ".join(esc(n) for n in notes)
                        + "</p>")
    out = d / "report.html"
    out.write_text(page_html(title, head, body), encoding="utf-8")
    return out
