"""Standard plots (matplotlib, PNG). Every figure is written with a JSON file of the numbers it
was drawn from beside it (same name, .json), so plots can be checked and redrawn.

- run folder: timeseries.png (per-replica batch size, KV blocks used, queue length over time),
  latency_cdf.png.
- compare folder: latency_cdf.png (one curve per variant, first replication), comparison.png
  (bar chart of key metrics with 95% CIs).
- sweep folder: latency_vs_load.png (p50/p99 TTFT, TPOT, E2E against the swept value, CI bands),
  throughput_vs_latency.png, goodput_vs_load.png.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sim.analysis.figure import cdf, log_ticks, save_png
from sim.analysis.study_plots import comparison_bars, sweep_plots


def latency_cdf(curves: dict[str, dict[str, Any]], path: Path, title: str = "",
                slo: dict[str, float] | None = None) -> Path:
    """How long did requests take? CDFs of TTFT, TPOT and E2E per curve (label -> {"ttft_s": [...],
    "tpot_s": [...], "e2e_s": [...]}), p50/p90/p99 marked, the SLO as a dashed line."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    data: dict[str, Any] = {}
    slo = slo or {}
    for ax, key, name in zip(
        axes,
        ("ttft_s", "tpot_s", "e2e_s"),
        ("time to first token (s)", "time per output token (s)", "end-to-end latency (s)"),
        strict=False,
    ):
        for k, (lab, c) in enumerate(curves.items()):
            x, y = cdf(c.get(key, []))
            if not x.size:
                continue
            ax.plot(x, y, label=lab if len(curves) > 1 else None, color=f"C{k}")
            q = np.quantile(x, [0.5, 0.9, 0.99]).tolist()
            data.setdefault(lab, {})[key] = {"p50": q[0], "p90": q[1], "p99": q[2], "n": int(x.size)}
            ax.plot(q, [0.5, 0.9, 0.99], "o", ms=3.5, color=f"C{k}")
            if len(curves) == 1:  # (with several curves the markers say enough)
                for v, f in zip(q, (0.5, 0.9, 0.99), strict=False):
                    ax.annotate(f"p{round(f * 100)} {v:.3g} s", (v, f), xytext=(6, -10), textcoords="offset points",
                                fontsize=7, color="0.25")
        limit = slo.get(key)
        if limit:
            ax.axvline(limit, color="k", ls="--", lw=0.9, label=f"SLO {limit:g} s")
        ax.set_xlabel(name)
        ax.set_ylabel("fraction of requests")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        xs = np.concatenate([np.asarray(c.get(key, []), dtype=float) for c in curves.values()] or [np.zeros(0)])
        xs = xs[np.isfinite(xs) & (xs > 0)]
        if key != "tpot_s" and xs.size and xs.max() / xs.min() > 20:  # a log axis only where the data span decades
            ax.set_xscale("log")
            log_ticks(ax)
        else:  # few enough ticks that long decimals (0.00675) do not run together
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(nbins=5))
        if len(curves) > 1 or limit:
            ax.legend(fontsize=7, loc="lower right")
    n = max((v.get("e2e_s", {}).get("n", 0) for v in data.values()), default=0)
    fig.suptitle(title or f"How long did the {n:,} completed requests take? (latency CDFs; dots: p50, p90, p99)")
    return save_png(fig, path, data)


def _on_grid(t: np.ndarray, v: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """A step series (value from each time on) read at the grid's times (0 before its first)."""
    k = np.searchsorted(t, grid, side="right") - 1
    return np.where(k >= 0, v[np.maximum(k, 0)], 0.0)


def replica_series(ts: dict[str, np.ndarray], total_blocks: dict[int, int], n_grid: int
                   ) -> tuple[list[int], np.ndarray, dict[str, np.ndarray], int, dict[str, Any]]:
    """Each replica's batch size, KV used (% of its blocks) and queue length read on a common time
    grid (rows: replicas), the busiest replica's row (highest mean queue, then KV), and per-replica
    figures (mean/max batch, max KV %, max queue): what the fleet-over-time plots draw."""
    reps = [int(r) for r in np.unique(ts["replica"])] if ts["t_s"].size else []
    grid = np.linspace(0.0, float(ts["t_s"].max()) if ts["t_s"].size else 1.0, n_grid)
    rows: dict[str, list[np.ndarray]] = {"batch": [], "kv": [], "queue": []}
    stats: dict[str, Any] = {}
    for r in reps:
        m = ts["replica"] == r
        t = ts["t_s"][m]
        kv = ts["kv_blocks_used"][m] / max(1, total_blocks.get(r, 1)) * 100
        rows["batch"].append(_on_grid(t, ts["batch_size"][m].astype(float), grid))
        rows["kv"].append(_on_grid(t, kv, grid))
        rows["queue"].append(_on_grid(t, ts["queue_len"][m].astype(float), grid))
        stats[str(r)] = {"batch_size_mean": float(np.mean(ts["batch_size"][m])),
                         "batch_size_max": int(np.max(ts["batch_size"][m])),
                         "kv_used_pct_max": float(np.max(kv)), "queue_len_max": int(np.max(ts["queue_len"][m]))}
    series = {k: np.vstack(v) if v else np.zeros((0, n_grid)) for k, v in rows.items()}
    worst = max(range(len(reps)), key=lambda k: (series["queue"][k].mean(), series["kv"][k].mean())) if reps else -1
    return reps, grid, series, worst, stats


def timeseries(ts: dict[str, np.ndarray], total_blocks: dict[int, int], path: Path, title: str = "",
               max_batch: int | None = None) -> Path:
    """How full were the replicas? Batch size, KV cache used and queue length over time: the
    fleet's median and its 10-90th percentile band across replicas, and the busiest replica
    (the highest mean queue, then KV) drawn on its own."""
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(3, 1, figsize=(11, 7.5), sharex=True)
    reps, grid, series, worst, data = replica_series(ts, total_blocks, 600)
    if reps:
        for ax, key in zip(axes, ("batch", "kv", "queue"), strict=False):
            x = series[key]
            if len(reps) > 1:
                ax.fill_between(grid, np.percentile(x, 10, axis=0), np.percentile(x, 90, axis=0), step="post",
                                color="C0", alpha=0.25, lw=0, label="10-90th percentile of replicas")
                ax.step(grid, np.median(x, axis=0), where="post", color="C0", lw=1.2, label="median replica")
            ax.step(grid, x[worst], where="post", color="C3", lw=0.8,
                    label=f"busiest replica ({reps[worst]})" if len(reps) > 1 else f"replica {reps[worst]}")
    peak = max((v["batch_size_max"] for v in data.values()), default=0)
    if max_batch and peak >= 0.25 * max_batch:
        axes[0].axhline(max_batch, color="k", ls="--", lw=0.8, label=f"max_batch_size {max_batch}")
    elif max_batch:  # a line far above the data would flatten it: said above the panel instead
        axes[0].set_title(f"max_batch_size {max_batch} (the largest step ran {peak})", loc="left", fontsize=8,
                          color="0.3")
    kv_peak = max((v["kv_used_pct_max"] for v in data.values()), default=0.0)
    axes[1].set_title(f"peak {kv_peak:.3g}% of any replica's KV blocks", loc="left", fontsize=8, color="0.3")
    axes[0].set_ylabel("batch size (sequences)")
    axes[1].set_ylabel("KV cache used (%)")
    axes[1].set_ylim(0, 105)
    axes[2].set_ylabel("queue length (requests)")
    axes[2].set_xlabel("simulated time (s)")
    for ax in (axes[0], axes[2]):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(bottom=0)
    if not any(v["queue_len_max"] for v in data.values()):
        axes[2].set_ylim(0, 1)
        axes[2].text(0.5, 0.5, "no request waited in a queue", transform=axes[2].transAxes, ha="center",
                     va="center", color="0.4")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(title or f"How full were the {len(reps)} replicas? (batch, KV cache and queue over time)")
    return save_png(fig, path, data)


def true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) index pairs of the True runs of `mask` (end exclusive)."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(np.diff(m.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=False))


def over_supply(cols: dict[str, np.ndarray]) -> np.ndarray:
    """Which facility samples drew more than the live supply (beyond rounding)."""
    return cols["facility_w"] > cols["supply_w"] * (1 + 1e-9)


def power_unit(peak_w: float) -> tuple[float, str]:
    """A scale and unit that keep a power axis's numbers short (W, kW, MW, GW)."""
    for scale, unit in ((1e9, "GW"), (1e6, "MW"), (1e3, "kW")):
        if peak_w >= 2 * scale:
            return scale, unit
    return 1.0, "W"


def facility(cols: dict[str, np.ndarray], events: dict[str, list[float]], path: Path,
             summary: dict[str, Any] | None = None) -> Path:
    """Did the load stay under the power supply? Facility and IT draw against the live supply
    limit (samples over it marked, runs of them shaded), then only the panels with something to
    show: turbine units up, clock caps, drained replicas, battery charge, tents; PUE on a fixed
    range. Turbine trips and node failures are drawn where they happened."""
    from matplotlib.ticker import MaxNLocator

    t = cols["t_s"]
    summary = summary or {}
    finite = lambda k: k in cols and np.isfinite(cols[k]).any()  # noqa: E731
    panels = ["power"]
    notes = []
    if finite("turbines_up") and cols["turbines_up"].max() > 0:
        panels.append("turbines")
    if finite("clock_cap_w"):
        panels.append("cap")
    else:
        notes.append("no clock cap was applied")
    if finite("drained") and np.nanmax(cols["drained"]) > 0:
        panels.append("drained")
    else:
        notes.append("no replica was drained")
    if finite("battery_soc") and np.nanmax(cols["battery_soc"]) > 0:
        panels.append("battery")
    tents = [c for c in cols if c.startswith("tent_it_w:")]
    if len(tents) > 1:
        panels.append("tents")
    panels.append("pue")
    heights = [2.2 if p == "power" else 1.0 for p in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 2.6 + 1.45 * len(panels)), sharex=True,
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    axes = axes[:, 0]
    ax_of = dict(zip(panels, axes, strict=False))
    peak = float(np.nanmax(np.concatenate([cols["facility_w"], cols["supply_w"]])))
    scale, unit = power_unit(peak)
    ax = ax_of["power"]
    ax.plot(t, cols["facility_w"] / scale, color="C0", label="facility draw (IT x PUE)")
    ax.plot(t, cols["it_w"] / scale, color="C1", lw=0.9, label="IT draw")
    ax.step(t, cols["supply_w"] / scale, where="post", color="k", ls="--", lw=1.1, label="live supply limit")
    over = over_supply(cols)
    if over.any():
        ax.plot(
            t[over], cols["facility_w"][over] / scale, "x", color="red", ms=8, mew=2, label="sample over the supply"
        )
        for a, b in true_runs(over):
            if b - 1 > a:
                ax.axvspan(t[a], t[b - 1], color="red", alpha=0.15, lw=0)
    ax.set_ylim(0, peak / scale * 1.12)
    ax.set_ylabel(f"power ({unit})")
    exceeded = summary.get("power_limit_exceeded_s")
    ax.set_title("over the supply for " + (f"{exceeded:.3g} s in all" if exceeded else "no time")
                 + (f" (peak draw {summary['facility_power_peak_w'] / scale:.3g} {unit})"
                    if summary.get("facility_power_peak_w") else ""), fontsize=9, loc="left")
    if "turbines" in panels:
        a = ax_of["turbines"]
        a.step(t, cols["turbines_up"], where="post", color="C2")
        a.set_ylabel("turbine units up")
        a.yaxis.set_major_locator(MaxNLocator(integer=True))
        a.set_ylim(0, cols["turbines_up"].max() + 1)
    if "cap" in panels:
        a = ax_of["cap"]
        a.step(t, cols["clock_cap_w"], where="post", color="C3")
        a.set_ylabel("lowest clock cap\n(W per accelerator)")
        a.set_ylim(0, np.nanmax(cols["clock_cap_w"]) * 1.15)
    if "drained" in panels:
        a = ax_of["drained"]
        a.step(t, cols["drained"], where="post", color="C4")
        a.set_ylabel("drained replicas")
        a.yaxis.set_major_locator(MaxNLocator(integer=True))
        a.set_ylim(0, np.nanmax(cols["drained"]) + 1)
    if "battery" in panels:
        a = ax_of["battery"]
        a.plot(t, 100 * cols["battery_soc"], color="C6")
        a.set_ylabel("battery charge (%)")
        a.set_ylim(0, 105)
    if "tents" in panels:
        a = ax_of["tents"]
        for k, c in enumerate(tents):
            a.plot(t, cols[c] / scale, color=f"C{k}", lw=0.9, label=c.split(":", 1)[1])
        a.set_ylabel(f"tent IT ({unit})")
        a.set_ylim(bottom=0)
        a.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    a = ax_of["pue"]
    pue = cols["pue"]
    a.plot(t, pue, color="C5")
    a.set_ylim(1.0, max(1.6, float(np.nanmax(pue)) * 1.05))  # a fixed range: a 0.1% drift stays flat
    a.set_ylabel("PUE")
    a.text(0.01, 0.9, f"PUE {np.nanmin(pue):.3f} to {np.nanmax(pue):.3f}", transform=a.transAxes, va="top",
           fontsize=8, color="0.3")
    axes[-1].set_xlabel("simulated time (s)")
    trips, fails = events.get("turbine_trips_s", []), events.get("node_failures_s", [])
    for a in axes:
        a.grid(alpha=0.3)
        for k, x in enumerate(trips):
            a.axvline(x, color="r", lw=1, ls=":", label="turbine trip" if a is ax and k == 0 else None)
        for k, x in enumerate(fails):
            a.axvline(x, color="m", lw=0.8, ls="-.", label="node failure" if a is ax and k == 0 else None)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    marks = ([f"{len(trips)} turbine trip{'s' if len(trips) > 1 else ''} (red dotted)"] if trips else []) + \
        ([f"{len(fails)} node failure{'s' if len(fails) > 1 else ''} (magenta)"] if fails else [])
    fig.suptitle("Did the load stay under the power supply?"
                 + (" " + "; ".join(marks) if marks else "") + (f"\n({'; '.join(notes)})" if notes else ""),
                 fontsize=11)
    data = {"t_s": t.tolist(), "facility_w": cols["facility_w"].tolist(), "supply_w": cols["supply_w"].tolist(),
            "turbines_up": cols["turbines_up"].tolist(), "events": events, "panels": panels,
            "samples_over_supply": int(over.sum()), "power_limit_exceeded_s": exceeded}
    return save_png(fig, path, data)


WHY_ZERO = {"accelerators": "no price: [cost] usd_per_accel_hour", "energy": "no price: [cost] usd_per_mwh",
            "facility": "none: [cost] facility_usd_per_hour", "cooling and losses": "none: PUE 1 (no [facility])"}


def _label_bars(ax, names: list[str], vals: list[float], fmt) -> None:
    """Each bar's value above it; a zero bar says why it is empty."""
    top = max(vals) if vals and max(vals) > 0 else 1.0
    for k, (n, v) in enumerate(zip(names, vals, strict=False)):
        if v > 0:
            ax.text(k, v + 0.02 * top, fmt(v), ha="center", va="bottom", fontsize=8)
        else:  # upright in the empty bar's place, so neighbours' labels cannot collide
            ax.text(k, 0.02 * top, f"0: {WHY_ZERO.get(n, 'none')}", ha="center", va="bottom", fontsize=8,
                    rotation=90, color="0.35")
    ax.set_ylim(0, top * 1.15)


def cost_breakdown(summary: dict[str, Any], path: Path) -> Path:
    """What did the run cost, and where did its energy go? (USD; kWh.) Currency is written out:
    matplotlib reads a pair of dollar signs as mathematics."""
    br = summary.get("cost_breakdown_usd", {})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    names = list(br)
    vals = [float(br[k]) for k in names]
    axes[0].bar(names, vals, color=["C0", "C1", "C2"][:len(names)])
    _label_bars(axes[0], names, vals, lambda v: f"USD {v:,.2f}")
    axes[0].set_ylabel("cost over the run (USD)")
    per = summary.get("cost_per_mtok_usd")
    axes[0].set_title(f"total USD {summary.get('cost_usd', 0):,.2f}"
                      + (f"; USD {per:,.2f} per million output tokens" if per else ""), fontsize=9)
    e_it, e_fac = summary.get("energy_it_j", 0.0), summary.get("energy_j", 0.0)
    enames = ["IT", "cooling and losses"]
    evals = [e_it / 3.6e6, max(0.0, e_fac - e_it) / 3.6e6]
    axes[1].bar(enames, evals, color=["C0", "C3"])
    _label_bars(axes[1], enames, evals, lambda v: f"{v:,.3g} kWh")
    axes[1].set_ylabel("energy (kWh)")
    jpt = summary.get("energy_per_output_tok_j")
    axes[1].set_title(f"{jpt:.2f} J per output token (facility)" if jpt else "energy", fontsize=9)
    for a in axes:
        a.grid(axis="y", alpha=0.3)
    fig.suptitle("What did the run cost, and where did its energy go?")
    return save_png(fig, path, {"cost_breakdown_usd": br, "energy_it_j": e_it, "energy_j": e_fac})


def autoscale(cols: dict[str, np.ndarray], hourly: list[dict[str, Any]], path: Path) -> Path:
    """Does the fleet follow its load, and what does each hour cost? Per autoscaled pool: the
    arrival rate, then replicas serving and starting with the policy's answer at each decision, on
    a shared time axis (no twin axes); below, each hour's SLO attainment and accelerator $/Mtoken
    (summary "hourly")."""
    from matplotlib.ticker import MaxNLocator

    pools = list(dict.fromkeys(cols["pool"].tolist()))
    n_hour = (1 if hourly and any(h["slo_attainment"] is not None for h in hourly) else 0) + (1 if hourly else 0)
    n = 2 * len(pools) + n_hour
    fig = plt.figure(figsize=(11, 2.1 * n + 1.0))
    gs = fig.add_gridspec(n, 1, hspace=0.55)
    t_h = np.asarray(cols["t_s"], float) / 3600.0
    data: dict[str, Any] = {}
    first = None
    for k, pool in enumerate(pools):
        m = cols["pool"] == pool
        ax_a = fig.add_subplot(gs[2 * k], sharex=first)
        first = first or ax_a
        ax_r = fig.add_subplot(gs[2 * k + 1], sharex=first)
        ax_a.plot(t_h[m], cols["arrivals_per_s"][m], color="C1", lw=0.7)
        ax_a.set_ylabel("arrivals\n(requests/s)")
        ax_a.set_ylim(bottom=0)
        ax_a.set_title(f"pool {pool}: load, then replicas", fontsize=10, loc="left")
        ax_r.step(t_h[m], cols["desired"][m], where="post", color="C2", lw=0.5, alpha=0.45, label="policy's answer")
        ax_r.step(t_h[m], cols["serving"][m] + cols["starting"][m], where="post", color="C0", ls=":",
                  label="serving + cold starts")
        ax_r.step(t_h[m], cols["serving"][m], where="post", color="C0", label="serving")
        ax_r.set_ylabel("replicas")
        ax_r.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax_r.set_ylim(0, max(cols["serving"][m].max() + cols["starting"][m].max(), cols["desired"][m].max()) + 1)
        ax_r.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        for ax in (ax_a, ax_r):
            ax.grid(alpha=0.3)
            ax.set_xlabel("simulated time (h)")
        data[pool] = {c: np.asarray(cols[c])[m].tolist() for c in ("t_s", "serving", "starting", "desired",
                                                                  "arrivals_per_s")}
    row = 2 * len(pools)
    if hourly:
        hrs = [h["hour"] for h in hourly]
        slo = [h["slo_attainment"] for h in hourly]
        if any(v is not None for v in slo):
            ax = fig.add_subplot(gs[row])
            row += 1
            ax.bar(hrs, [100 * v if v is not None else np.nan for v in slo], color="C0", alpha=0.7)
            ax.set_ylim(0, 105)
            ax.set_ylabel("SLO attainment (%)")
            ax.set_title("each hour: requests meeting the SLO", fontsize=10, loc="left")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("hour of the run")
            ax.grid(alpha=0.3, axis="y")
        ax = fig.add_subplot(gs[row])
        usd = [h["accelerator_usd_per_mtok"] for h in hourly]
        ax.plot(hrs, [v if v is not None else np.nan for v in usd], "o-", color="C3", ms=3)
        ax.set_ylabel("USD per million\noutput tokens")
        ax.set_ylim(bottom=0)
        ax.set_title("each hour: the accelerators' cost per output token", fontsize=10, loc="left")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("hour of the run")
        ax.grid(alpha=0.3)
        data["hourly"] = hourly
    fig.suptitle("Autoscaling: do replicas follow the load, and what does each hour cost?")
    fig.subplots_adjust(left=0.09, right=0.8, top=1 - 0.55 / (2.1 * n + 1.0), bottom=0.6 / (2.1 * n + 1.0))
    return save_png(fig, path, data, layout=False)


def _slo(d: Path) -> dict[str, float]:
    """The run's [slo] (ttft_s, tpot_s) from its saved scenario, if any."""
    import tomllib

    try:
        slo = tomllib.loads((d / "scenario.toml").read_text()).get("slo", {})
        return {k: float(v) for k, v in slo.items() if k in ("ttft_s", "tpot_s") and isinstance(v, (int, float))}
    except (OSError, ValueError, AttributeError):
        return {}


def _max_batch(d: Path) -> int | None:
    """The largest max_batch_size of the run's pools (from its saved scenario), if readable."""
    import tomllib

    try:
        pools = tomllib.loads((d / "scenario.toml").read_text()).get("pools", [])
        sizes = [p.get("scheduler", {}).get("max_batch_size") for p in pools]
        return max(x for x in sizes if isinstance(x, int)) if any(isinstance(x, int) for x in sizes) else None
    except (OSError, ValueError, AttributeError):
        return None


def latency_curves(d: Path) -> dict[str, dict[str, np.ndarray]]:
    """TTFT, TPOT and E2E of a folder's completed requests: "all requests", then one curve per
    request class where there are several."""
    import pyarrow.parquet as pq

    cols = ["ttft_s", "tpot_s", "e2e_s", "status"]
    if "class" in pq.read_schema(d / "requests.parquet").names:
        cols.append("class")
    req = pq.read_table(d / "requests.parquet", columns=cols).to_pydict()
    done = np.asarray(req["status"]) == "completed"
    lat = {k: np.asarray(req[k], dtype=float)[done] for k in ("ttft_s", "tpot_s", "e2e_s")}
    curves = {"all requests": lat}
    cls = np.asarray(req["class"], dtype=object)[done] if "class" in req else np.array([], dtype=object)
    labels = list(dict.fromkeys(cls.tolist()))
    if len(labels) > 1:
        for c in labels:
            curves[f"class {c}"] = {k: v[cls == c] for k, v in lat.items()}
    return curves


def plot_dir(d: str | Path) -> list[Path]:
    """(Re)draw the standard plots of a run, compare or sweep folder."""
    d = Path(d)
    if (d / "compare.json").exists():
        rep = json.loads((d / "compare.json").read_text())
        curves = {lab: v["latencies_seed0"] for lab, v in rep["variants"].items() if "latencies_seed0" in v}
        files = [comparison_bars(rep, d / "comparison.png")]
        if curves:
            files.append(latency_cdf(curves, d / "latency_cdf.png", "Latency CDFs per variant (first replication)"))
        return files
    if (d / "sweep.json").exists():
        return sweep_plots(json.loads((d / "sweep.json").read_text()), d)
    if (d / "requests.parquet").exists():
        import pyarrow.parquet as pq

        files = [latency_cdf(latency_curves(d), d / "latency_cdf.png", slo=_slo(d))]
        # a fleet's folder (fleet.json) has the merged requests but no one run's summary
        summ = json.loads((d / "summary.json").read_text()) if (d / "summary.json").exists() else {}
        if (d / "timeseries.parquet").exists():
            ts = {k: np.asarray(v) for k, v in pq.read_table(d / "timeseries.parquet").to_pydict().items()}
            files.append(timeseries(ts, {int(k): v for k, v in summ.get("kv_blocks_total", {}).items()},
                                    d / "timeseries.png", max_batch=_max_batch(d)))
        if "cost_breakdown_usd" in summ:
            files.append(cost_breakdown(summ, d / "cost_breakdown.png"))
        if (d / "autoscale.parquet").exists():
            cols = {k: np.asarray(v) for k, v in pq.read_table(d / "autoscale.parquet").to_pydict().items()}
            files.append(autoscale(cols, summ.get("hourly") or [], d / "autoscale.png"))
        if (d / "facility.parquet").exists():
            cols = {k: np.asarray(v, dtype=float) for k, v in pq.read_table(d / "facility.parquet").to_pydict().items()}
            ev = json.loads((d / "facility_events.json").read_text()) if (d / "facility_events.json").exists() else {}
            files.append(facility(cols, ev, d / "facility.png", summ))
        return files
    from sim.errors import ScenarioError
    raise ScenarioError("RUN_DIR", f"{d} holds no requests.parquet, compare.json or sweep.json",
                        "point at a folder written by dcsim run/compare/sweep --out")
