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

import numpy as np

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _save(fig, path: Path, data: dict[str, Any]) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    path.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    return path


def _cdf(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.sort(np.asarray(x, dtype=float))
    x = x[np.isfinite(x)]
    return x, (np.arange(1, x.size + 1) / x.size if x.size else x)


def _log_ticks(ax) -> None:
    """Readable log-x ticks: 1-2-5 steps as plain decimals (no 10^k labels running together)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=8))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def latency_cdf(curves: dict[str, dict[str, list[float]]], path: Path, title: str = "",
                slo: dict[str, float] | None = None) -> Path:
    """How long did requests take? CDFs of TTFT, TPOT and E2E per curve (label -> {"ttft_s": [...],
    "tpot_s": [...], "e2e_s": [...]}), p50/p90/p99 marked, the SLO as a dashed line."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    data: dict[str, Any] = {}
    slo = slo or {}
    for ax, key, name in zip(axes, ("ttft_s", "tpot_s", "e2e_s"),
                             ("time to first token (s)", "time per output token (s)", "end-to-end latency (s)")):
        for k, (lab, c) in enumerate(curves.items()):
            x, y = _cdf(c.get(key, []))
            if not x.size:
                continue
            ax.plot(x, y, label=lab if len(curves) > 1 else None, color=f"C{k}")
            q = np.quantile(x, [0.5, 0.9, 0.99]).tolist()
            data.setdefault(lab, {})[key] = {"p50": q[0], "p90": q[1], "p99": q[2], "n": int(x.size)}
            ax.plot(q, [0.5, 0.9, 0.99], "o", ms=3.5, color=f"C{k}")
            if len(curves) == 1:  # (with several curves the markers say enough)
                for v, f in zip(q, (0.5, 0.9, 0.99)):
                    ax.annotate(f"p{round(f * 100)} {v:.3g}", (v, f), xytext=(6, -10), textcoords="offset points",
                                fontsize=7, color="0.25")
        limit = slo.get(key)
        if limit:
            ax.axvline(limit, color="k", ls="--", lw=0.9, label=f"SLO {limit:g} s")
        ax.set_xlabel(name)
        ax.set_ylabel("fraction of requests")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        xs = [v for c in curves.values() for v in c.get(key, []) if v == v and v > 0]
        if key != "tpot_s" and xs and max(xs) / min(xs) > 20:  # a log axis only where the data span decades
            ax.set_xscale("log")
            _log_ticks(ax)
        if len(curves) > 1 or limit:
            ax.legend(fontsize=7, loc="lower right")
    n = max((v.get("e2e_s", {}).get("n", 0) for v in data.values()), default=0)
    fig.suptitle(title or f"How long did the {n:,} completed requests take? (latency CDFs; dots: p50, p90, p99)")
    return _save(fig, path, data)


def _on_grid(t: np.ndarray, v: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """A step series (value from each time on) read at the grid's times (0 before its first)."""
    k = np.searchsorted(t, grid, side="right") - 1
    return np.where(k >= 0, v[np.maximum(k, 0)], 0.0)


def timeseries(ts: dict[str, np.ndarray], total_blocks: dict[int, int], path: Path, title: str = "",
               max_batch: int | None = None) -> Path:
    """How full were the replicas? Batch size, KV cache used and queue length over time: the
    fleet's median and its 10-90th percentile band across replicas, and the busiest replica
    (the highest mean queue, then KV) drawn on its own."""
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(3, 1, figsize=(11, 7.5), sharex=True)
    data: dict[str, Any] = {}
    reps = [int(r) for r in np.unique(ts["replica"])] if ts["t_s"].size else []
    t_end = float(ts["t_s"].max()) if ts["t_s"].size else 1.0
    grid = np.linspace(0.0, t_end, 600)
    series: dict[str, list[np.ndarray]] = {"batch": [], "kv": [], "queue": []}
    for r in reps:
        m = ts["replica"] == r
        t = ts["t_s"][m]
        kv = ts["kv_blocks_used"][m] / max(1, total_blocks.get(r, 1)) * 100
        series["batch"].append(_on_grid(t, ts["batch_size"][m].astype(float), grid))
        series["kv"].append(_on_grid(t, kv, grid))
        series["queue"].append(_on_grid(t, ts["queue_len"][m].astype(float), grid))
        data[str(r)] = {"batch_size_mean": float(np.mean(ts["batch_size"][m])),
                        "batch_size_max": int(np.max(ts["batch_size"][m])),
                        "kv_used_pct_max": float(np.max(kv)), "queue_len_max": int(np.max(ts["queue_len"][m]))}
    if reps:
        worst = max(range(len(reps)), key=lambda k: (series["queue"][k].mean(), series["kv"][k].mean()))
        for ax, key in zip(axes, ("batch", "kv", "queue")):
            x = np.vstack(series[key])
            if len(reps) > 1:
                ax.fill_between(grid, np.percentile(x, 10, axis=0), np.percentile(x, 90, axis=0), step="post",
                                color="C0", alpha=0.25, lw=0, label="10-90th percentile of replicas")
                ax.step(grid, np.median(x, axis=0), where="post", color="C0", lw=1.2, label="median replica")
            ax.step(grid, x[worst], where="post", color="C3", lw=0.8,
                    label=f"busiest replica ({reps[worst]})" if len(reps) > 1 else f"replica {reps[worst]}")
    peak = max((v["batch_size_max"] for v in data.values()), default=0)
    if max_batch and peak >= 0.25 * max_batch:
        axes[0].axhline(max_batch, color="k", ls="--", lw=0.8, label=f"max_batch_size {max_batch}")
    elif max_batch:  # a line far above the data would flatten it
        axes[0].text(0.01, 0.95, f"max_batch_size {max_batch} (the largest step ran {peak})",
                     transform=axes[0].transAxes, va="top", fontsize=8, color="0.3")
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
    return _save(fig, path, data)


NAMES = {"ttft_mean_s": "mean TTFT (s)", "ttft_p99_s": "p99 TTFT (s)", "tpot_mean_s": "mean TPOT (s)",
         "tpot_p99_s": "p99 TPOT (s)", "e2e_mean_s": "mean E2E latency (s)", "e2e_p99_s": "p99 E2E latency (s)",
         "throughput_output_tok_per_s": "output throughput (tokens/s)",
         "goodput_req_per_s": "goodput (requests/s within SLO)"}


def comparison_bars(rep: dict[str, Any], path: Path) -> Path:
    metrics = [m for m in ("ttft_mean_s", "ttft_p99_s", "tpot_mean_s", "tpot_p99_s", "e2e_mean_s", "e2e_p99_s",
                           "throughput_output_tok_per_s", "goodput_req_per_s") if m in rep["metrics"]]
    labels = list(rep["variants"])
    cols = 4
    rows = (len(metrics) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.9 * rows), squeeze=False)
    data: dict[str, Any] = {}
    for ax, m in zip(axes.flat, metrics):
        means = [rep["variants"][lab]["metrics"][m]["mean"] for lab in labels]
        lo = [rep["variants"][lab]["metrics"][m]["ci_low"] for lab in labels]
        hi = [rep["variants"][lab]["metrics"][m]["ci_high"] for lab in labels]
        # one replication has no interval (None): no error bar
        err = np.array([[a - (b if b is not None else a) for a, b in zip(means, lo)],
                        [(c if c is not None else a) - a for a, c in zip(means, hi)]])
        ax.bar(range(len(labels)), means, yerr=err, capsize=4, color=[f"C{i}" for i in range(len(labels))])
        ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
        ax.set_title(NAMES.get(m, m), fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        data[m] = {lab: {"mean": a, "ci_low": b, "ci_high": c} for lab, a, b, c in zip(labels, means, lo, hi)}
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle(f"Policy comparison: mean and 95% CI over {rep['replications']} replications")
    return _save(fig, path, data)


def _band(ax, x, pts, m, label, color, ls="-"):
    mean = np.array([p["metrics"][m]["mean"] if m in p["metrics"] else np.nan for p in pts])
    lo = np.array([p["metrics"][m]["ci_low"] if m in p["metrics"] else np.nan for p in pts])
    hi = np.array([p["metrics"][m]["ci_high"] if m in p["metrics"] else np.nan for p in pts])
    ax.plot(x, mean, ls, color=color, marker="o", ms=3, label=label)
    ax.fill_between(x, lo, hi, color=color, alpha=0.15)
    return {"mean": mean.tolist(), "ci_low": lo.tolist(), "ci_high": hi.tolist()}


def _mark_unstable(ax, x, pts, m, label) -> None:
    """A red x on each point whose runs reached no steady state (summary `stable` false)."""
    bad = [(xv, p["metrics"][m]["mean"]) for xv, p in zip(x, pts) if p.get("stable") is False and m in p["metrics"]]
    if bad:
        ax.plot(*zip(*bad), "x", color="red", ms=9, mew=2, label="no steady state" if label else None, zorder=5)


def sweep_plots(rep: dict[str, Any], out: Path) -> list[Path]:
    key = rep["key"]
    xlabel = "offered load (requests/s)" if key.endswith("rate_per_s") else key
    files = []
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    data: dict[str, Any] = {"x": rep["values"], "xlabel": xlabel, "variants": {}}
    for i, (lab, v) in enumerate(rep["variants"].items()):
        x = [p["value"] for p in v["points"]]
        d = data["variants"][lab] = {}
        for ax, base, name in zip(axes, ("ttft", "tpot", "e2e"), ("TTFT (s)", "TPOT (s)", "E2E latency (s)")):
            d[f"{base}_p50_s"] = _band(ax, x, v["points"], f"{base}_p50_s", f"{lab} p50", f"C{i}", "--")
            d[f"{base}_p99_s"] = _band(ax, x, v["points"], f"{base}_p99_s", f"{lab} p99", f"C{i}", "-")
            _mark_unstable(ax, x, v["points"], f"{base}_p99_s", lab if base == "ttft" and i == 0 else None)
            ax.set_ylabel(name)
        d["unstable"] = [p["value"] for p in v["points"] if p.get("stable") is False]
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    fig.suptitle("Latency against load: p50 (dashed) and p99 (solid), 95% CI bands; x: no steady state")
    files.append(_save(fig, out / "latency_vs_load.png", data))

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    data2: dict[str, Any] = {}
    for i, (lab, v) in enumerate(rep["variants"].items()):
        thr = [p["metrics"].get("throughput_output_tok_per_s", {}).get("mean", np.nan) for p in v["points"]]
        p99 = [p["metrics"].get("tpot_p99_s", {}).get("mean", np.nan) for p in v["points"]]
        ax.plot(thr, p99, "-o", ms=3, color=f"C{i}", label=lab)
        bad = [k for k, p in enumerate(v["points"]) if p.get("stable") is False]
        ax.plot([thr[k] for k in bad], [p99[k] for k in bad], "x", color="red", ms=9, mew=2,
                label="no steady state" if i == 0 and bad else None)
        data2[lab] = {"throughput_output_tok_per_s": thr, "tpot_p99_s": p99}
    ax.set_xlabel("output throughput (tokens/s)")
    ax.set_ylabel("p99 time per output token (s)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title("Throughput against latency")
    files.append(_save(fig, out / "throughput_vs_latency.png", data2))

    if all(v["slo_defined"] for v in rep["variants"].values()):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        data3: dict[str, Any] = {}
        for i, (lab, v) in enumerate(rep["variants"].items()):
            x = [p["value"] for p in v["points"]]
            for ax, m in zip(axes, ("goodput_req_per_s", "slo_attainment")):
                _mark_unstable(ax, x, v["points"], m, lab if i == 0 and m == "goodput_req_per_s" else None)
            data3[lab] = {"goodput_req_per_s": _band(axes[0], x, v["points"], "goodput_req_per_s", lab, f"C{i}"),
                          "slo_attainment": _band(axes[1], x, v["points"], "slo_attainment", lab, f"C{i}"),
                          "max_value_meeting_slo": v["max_value_meeting_slo"]}
            if v["max_value_meeting_slo"] is not None:
                axes[1].axvline(v["max_value_meeting_slo"], color=f"C{i}", ls=":", lw=1)
        axes[0].set_ylabel("goodput (requests/s meeting the SLO)")
        axes[1].set_ylabel("SLO attainment (fraction)")
        axes[1].axhline(rep["attainment_target"], color="k", ls="--", lw=0.8)
        for ax in axes:
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle("Goodput and SLO attainment against load (dotted: max load meeting the SLO)")
        files.append(_save(fig, out / "goodput_vs_load.png", data3))
    return files


def facility(cols: dict[str, np.ndarray], events: dict[str, list[float]], path: Path) -> Path:
    """Facility draw against the live supply limit, clock caps and drained replicas, turbines up,
    PUE and per-tent IT power over time, with turbine trips and node failures marked."""
    t = cols["t_s"]
    fig, axes = plt.subplots(5, 1, figsize=(11, 11), sharex=True)
    ax = axes[0]
    ax.plot(t, cols["facility_w"] / 1e3, label="facility draw (IT x PUE)")
    ax.plot(t, cols["it_w"] / 1e3, lw=0.8, label="IT draw")
    ax.step(t, cols["supply_w"] / 1e3, where="post", color="k", ls="--", label="live supply limit")
    ax.set_ylabel("power (kW)")
    ax.legend(fontsize=8)
    axes[1].plot(t, cols["clock_cap_w"], color="C3", label="lowest clock cap (W per accelerator)")
    axes[1].set_ylabel("cap (W)")
    ax2 = axes[1].twinx()
    ax2.step(t, cols["drained"], where="post", color="C4", lw=0.8)
    ax2.set_ylabel("drained replicas", color="C4")
    axes[2].step(t, cols["turbines_up"], where="post", color="C2")
    axes[2].set_ylabel("turbine units up")
    axes[3].plot(t, cols["pue"], color="C5")
    axes[3].set_ylabel("PUE")
    for k in [c for c in cols if c.startswith("tent_it_w:")]:
        axes[4].plot(t, cols[k] / 1e3, label=k.split(":", 1)[1])
    axes[4].set_ylabel("tent IT power (kW)")
    axes[4].legend(fontsize=8)
    axes[4].set_xlabel("simulated time (s)")
    for a in axes:
        a.grid(alpha=0.3)
        for x in events.get("turbine_trips_s", []):
            a.axvline(x, color="r", lw=1, ls=":")
        for x in events.get("node_failures_s", []):
            a.axvline(x, color="m", lw=0.8, ls="-.")
    fig.suptitle("Facility power (red dotted: turbine trips; magenta: node failures)")
    data = {"t_s": t.tolist(), "facility_w": cols["facility_w"].tolist(), "supply_w": cols["supply_w"].tolist(),
            "turbines_up": cols["turbines_up"].tolist(), "events": events}
    return _save(fig, path, data)


WHY_ZERO = {"accelerators": "no price: [cost] usd_per_accel_hour", "energy": "no price: [cost] usd_per_mwh",
            "facility": "none: [cost] facility_usd_per_hour", "cooling and losses": "none: PUE 1 (no [facility])"}


def _label_bars(ax, names: list[str], vals: list[float], fmt) -> None:
    """Each bar's value above it; a zero bar says why it is empty."""
    top = max(vals) if vals and max(vals) > 0 else 1.0
    for k, (n, v) in enumerate(zip(names, vals)):
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
    return _save(fig, path, {"cost_breakdown_usd": br, "energy_it_j": e_it, "energy_j": e_fac})


def autoscale(cols: dict[str, np.ndarray], hourly: list[dict[str, Any]], path: Path) -> Path:
    """Does the fleet follow its load? Per autoscaled pool: replicas serving, starting and the
    policy's answer against the arrival rate at each decision; below, each hour's SLO attainment
    and accelerator $/Mtoken (summary "hourly")."""
    from matplotlib.ticker import MaxNLocator

    pools = list(dict.fromkeys(cols["pool"].tolist()))
    n = len(pools) + (1 if hourly else 0)
    fig, axes = plt.subplots(n, 1, figsize=(11, 3.2 * n), squeeze=False)
    axes = axes[:, 0]
    t_h = np.asarray(cols["t_s"], float) / 3600.0
    data: dict[str, Any] = {}
    for ax, pool in zip(axes, pools):
        m = cols["pool"] == pool
        ax.step(t_h[m], cols["serving"][m], where="post", color="C0", label="serving")
        ax.step(t_h[m], cols["serving"][m] + cols["starting"][m], where="post", color="C0", ls=":",
                label="serving + cold starts")
        ax.step(t_h[m], cols["desired"][m], where="post", color="C2", lw=0.7, alpha=0.7, label="policy's answer")
        ax.set_ylabel("replicas")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(bottom=0)
        ax2 = ax.twinx()
        ax2.plot(t_h[m], cols["arrivals_per_s"][m], color="C1", lw=0.6, alpha=0.6, label="arrivals (req/s)")
        ax2.set_ylabel("arrivals (req/s)", color="C1")
        ax2.set_ylim(bottom=0)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left", bbox_to_anchor=(1.07, 1.0))
        ax.set_title(f"pool {pool}: replicas against load", fontsize=10)
        ax.grid(alpha=0.3)
        data[pool] = {k: np.asarray(cols[k])[m].tolist() for k in ("t_s", "serving", "starting", "desired",
                                                                   "arrivals_per_s")}
    if hourly:
        ax = axes[-1]
        hrs = [h["hour"] for h in hourly]
        slo = [h["slo_attainment"] for h in hourly]
        usd = [h["accelerator_usd_per_mtok"] for h in hourly]
        if any(v is not None for v in slo):
            ax.bar(hrs, [100 * v if v is not None else np.nan for v in slo], color="C0", alpha=0.6,
                   label="SLO attainment (%)")
            ax.set_ylim(0, 105)
            ax.set_ylabel("SLO attainment (%)")
        ax.set_xlabel("hour of the run")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax2 = ax.twinx()
        ax2.plot(hrs, [v if v is not None else np.nan for v in usd], "o-", color="C3", ms=3,
                 label="accelerators, USD per million output tokens")
        ax2.set_ylabel("USD / Mtoken", color="C3")
        ax2.set_ylim(bottom=0)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left", bbox_to_anchor=(1.07, 1.0))
        ax.set_title("each hour: SLO attainment and accelerator cost", fontsize=10)
        ax.grid(alpha=0.3)
        data["hourly"] = hourly
    for ax in axes[:len(pools)]:
        ax.set_xlabel("simulated time (h)")
    fig.suptitle("Autoscaling: do replicas follow the load, and what does each hour cost?")
    return _save(fig, path, data)


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

        req = pq.read_table(d / "requests.parquet").to_pydict()
        done = np.array(req["status"]) == "completed"
        curves = {"run": {k: np.array(req[k], dtype=float)[done].tolist() for k in ("ttft_s", "tpot_s", "e2e_s")}}
        files = [latency_cdf(curves, d / "latency_cdf.png", slo=_slo(d))]
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
            files.append(facility(cols, ev, d / "facility.png"))
        return files
    from sim.errors import ScenarioError
    raise ScenarioError("RUN_DIR", f"{d} holds no requests.parquet, compare.json or sweep.json",
                        "point at a folder written by dcsim run/compare/sweep --out")
