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
import os
from pathlib import Path
from typing import Any

import numpy as np

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _texts(fig) -> list[tuple[str, Any]]:
    """(name, window bbox) of every drawn text of a figure: tick labels, axis labels, titles,
    annotations, legends (as boxes) and figure-level texts."""
    r = fig.canvas.get_renderer()
    out: list[tuple[str, Any]] = []
    seen: set[int] = set()

    def add(name: str, art: Any) -> None:
        if art is None or id(art) in seen:  # (the suptitle is among the figure's texts too)
            return
        seen.add(id(art))
        if art.get_visible() and (not hasattr(art, "get_text") or art.get_text().strip()):
            bb = art.get_window_extent(r)
            if bb.width > 0 and bb.height > 0:
                out.append((name, bb))

    for k, ax in enumerate(fig.axes):
        if not ax.get_visible() or not ax.axison:
            continue
        for axis, nm in ((ax.xaxis, "x"), (ax.yaxis, "y")):
            if not axis.get_visible():  # (a twin's shared axis)
                continue
            for tick in axis._update_ticks():  # the ticks drawn (within the view limits)
                for lab in (tick.label1, tick.label2):
                    add(f"axes {k} {nm} tick '{lab.get_text()}'", lab)
            add(f"axes {k} {nm} label", axis.label)
            add(f"axes {k} {nm} offset", axis.get_offset_text())
        for t in (ax.title, ax._left_title, ax._right_title):
            add(f"axes {k} title", t)
        for t in ax.texts:
            add(f"axes {k} text '{t.get_text()[:30]}'", t)
        add(f"axes {k} legend", ax.get_legend())
    add("suptitle", fig._suptitle)
    for t in fig.texts:
        add(f"figure text '{t.get_text()[:30]}'", t)
    for lg in fig.legends:
        add("figure legend", lg)
    return out


def overlaps(fig) -> list[str]:
    """What a reader could not read in a figure: pairs of texts (tick labels, labels, titles,
    annotations, legends) whose boxes overlap by more than a pixel each way, texts running off the
    canvas, and legends drawn over plotted points. Empty when the figure is clean."""
    fig.canvas.draw()
    items = _texts(fig)
    out = []
    W, H = fig.canvas.get_width_height()
    for name, bb in items:
        if bb.x0 < -1 or bb.y0 < -1 or bb.x1 > W + 1 or bb.y1 > H + 1:
            out.append(f"{name} runs off the figure")
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            (n1, a), (n2, b) = items[i], items[j]
            w = min(a.x1, b.x1) - max(a.x0, b.x0)
            h = min(a.y1, b.y1) - max(a.y0, b.y0)
            if w > 1 and h > 1:
                out.append(f"{n1} overlaps {n2}")
    for k, ax in enumerate(fig.axes):
        lg = ax.get_legend()
        if lg is None or not lg.get_visible():
            continue
        bb = lg.get_window_extent(fig.canvas.get_renderer())
        for line in ax.lines:
            xy = np.column_stack([np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)])
            if not xy.size or line.get_transform() != ax.transData:  # (axhline and friends span the axes)
                continue
            xy = xy[np.isfinite(xy).all(axis=1)]
            p = ax.transData.transform(xy)
            inside = (p[:, 0] > bb.x0) & (p[:, 0] < bb.x1) & (p[:, 1] > bb.y0) & (p[:, 1] < bb.y1)
            if inside.any():
                out.append(f"axes {k} legend covers {int(inside.sum())} point(s) of '{line.get_label()}'")
    return out


class LayoutError(RuntimeError):
    """A figure failed its readability check (DCSIM_CHECK_LAYOUT=1)."""


def _save(fig, path: Path, data: dict[str, Any], layout: bool = True) -> Path:
    """Write the PNG and its numbers (JSON); with DCSIM_CHECK_LAYOUT=1 in the environment, first
    refuse a figure with overlapping texts or a legend over data (tests and scripts' checks)."""
    if layout:
        fig.tight_layout()
    if os.environ.get("DCSIM_CHECK_LAYOUT") == "1":
        bad = overlaps(fig)
        if bad:
            plt.close(fig)
            raise LayoutError(
                f"{path.name}: " + "; ".join(bad[:8]) + (f" (+{len(bad) - 8} more)" if len(bad) > 8 else "")
            )
    fig.savefig(path, dpi=110)
    plt.close(fig)
    path.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    return path


def save_figure(fig, path: str | Path, data: dict[str, Any] | None = None, layout: bool = True) -> Path:
    """The scripts' way to write a figure: the same checks and JSON beside it as dcsim's own plots."""
    return _save(fig, Path(path), data if data is not None else {}, layout)


def _cdf(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.sort(np.asarray(x, dtype=float))
    x = x[np.isfinite(x)]
    return x, (np.arange(1, x.size + 1) / x.size if x.size else x)


def _log_ticks(ax, axis: str = "x") -> None:
    """Readable log ticks: 1-2-5 steps as plain decimals (no 10^k labels running together)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    a = ax.xaxis if axis == "x" else ax.yaxis
    a.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=8))
    a.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    a.set_minor_formatter(NullFormatter())


def _maybe_log(ax, values: list[float], axis: str = "y") -> None:
    """A log axis with readable ticks only where the positive values span more than 20x."""
    v = [x for x in values if x is not None and np.isfinite(x) and x > 0]
    if v and max(v) / min(v) > 20:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
        _log_ticks(ax, axis)


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
            x, y = _cdf(c.get(key, []))
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
            _log_ticks(ax)
        else:  # few enough ticks that long decimals (0.00675) do not run together
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(nbins=5))
        if len(curves) > 1 or limit:
            ax.legend(fontsize=7, loc="lower right")
    n = max((v.get("e2e_s", {}).get("n", 0) for v in data.values()), default=0)
    fig.suptitle(title or f"How long did the {n:,} completed requests take? (latency CDFs; dots: p50, p90, p99)")
    return _save(fig, path, data)


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
    return _save(fig, path, data)


METRIC_WORDS = {  # metric -> (words, unit, +1 if higher is better / -1 if lower is)
    "ttft_mean_s": ("mean TTFT", "s", -1),
    "ttft_p99_s": ("p99 TTFT", "s", -1),
    "tpot_mean_s": ("mean TPOT", "s", -1),
    "tpot_p99_s": ("p99 TPOT", "s", -1),
    "e2e_mean_s": ("mean E2E latency", "s", -1),
    "e2e_p99_s": ("p99 E2E latency", "s", -1),
    "queue_mean_s": ("mean queueing delay", "s", -1),
    "throughput_output_tok_per_s": ("output throughput", "tok/s", 1),
    "throughput_req_per_s": ("throughput", "req/s", 1),
    "goodput_req_per_s": ("goodput", "req/s", 1),
    "slo_attainment": ("SLO attainment", "", 1),
    "utilization_mean": ("utilisation", "", 1),
    "cost_per_mtok_usd": ("cost", "USD/Mtok", -1),
    "energy_per_output_tok_j": ("energy per output token", "J", -1),
    "preemptions_total": ("preemptions", "", -1),
    "facility_power_peak_w": ("peak facility power", "W", -1),
    "power_limit_exceeded_s": ("time over the power supply", "s", -1),
    "prefix_cache_hit_rate": ("prefix-cache hit rate", "", 1),
}


def comparison_bars(rep: dict[str, Any], path: Path) -> Path:
    """How does each variant differ from the baseline? One row per metric: the paired difference in %
    of the baseline's mean with its 95% interval (filled and starred: significant), the baseline's
    value and unit in the row's label. Differences of 1-2% stay visible (bars from zero hid them)."""
    b = rep["baseline"]
    others = [lab for lab in rep["variants"] if lab != b]
    metrics = [m for m in ("ttft_mean_s", "ttft_p99_s", "tpot_mean_s", "tpot_p99_s", "e2e_mean_s", "e2e_p99_s",
                           "queue_mean_s", "throughput_output_tok_per_s", "goodput_req_per_s", "slo_attainment",
                           "energy_per_output_tok_j", "cost_per_mtok_usd") if m in rep["metrics"]]
    base = {m: rep["variants"][b]["metrics"][m]["mean"] for m in metrics}
    zero = [m for m in metrics if not base[m]]
    metrics = [m for m in metrics if base[m]]
    n_rep = rep["replications"]
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.42 * len(metrics) * max(1, len(others)) ** 0.5))
    data: dict[str, Any] = {"baseline": b, "replications": n_rep, "metrics": {}}
    ylabels = []
    for m in metrics:
        words, unit, sense = METRIC_WORDS[m]
        val = f"{base[m]:,.0f}" if abs(base[m]) >= 1000 else f"{base[m]:.3g}"
        ylabels.append(f"{words}, {'higher' if sense > 0 else 'lower'} is better\n"
                       f"(baseline {val}{' ' + unit if unit else ''})")
    span = 0.6 / max(1, len(others))
    for k, lab in enumerate(others):
        for i, m in enumerate(metrics):
            d = rep["variants"][lab]["metrics"][m]
            y = i + (k - (len(others) - 1) / 2) * span
            rel = 100 * d["diff_mean"] / abs(base[m])
            lo = 100 * d["diff_ci_low"] / abs(base[m]) if d.get("diff_ci_low") is not None else None
            hi = 100 * d["diff_ci_high"] / abs(base[m]) if d.get("diff_ci_high") is not None else None
            sig = bool(d.get("significant"))
            if lo is not None:
                ax.plot([lo, hi], [y, y], color=f"C{k}", lw=1.6)
            ax.plot([rel], [y], "o", color=f"C{k}", mfc=f"C{k}" if sig else "white", ms=7, mew=1.6,
                    label=lab if i == 0 else None)
            if sig:
                ax.annotate("*", (hi if hi is not None else rel, y), xytext=(4, -4), textcoords="offset points",
                            fontsize=12, color=f"C{k}", fontweight="bold")
            data["metrics"].setdefault(m, {})[lab] = {"diff_pct": rel, "ci_low_pct": lo, "ci_high_pct": hi,
                                                      "significant": sig, "baseline": base[m]}
    ax.axvline(0, color="k", lw=0.9)
    ax.set_yticks(range(len(metrics)), ylabels, fontsize=8)
    ax.set_ylim(len(metrics) - 0.5, -0.5)
    ax.set_xlabel(f"difference to {b} (% of its mean)")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _p: f"{v:+g}%" if v else "0"))
    ax.grid(axis="x", alpha=0.3)
    if others:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="variant", title_fontsize=8)
    how = (f"paired difference over {n_rep} replications, 95% interval; filled and *: significant"
           if n_rep > 1 else "1 replication: no interval and no significance test")
    scen = Path(str(rep.get("scenario", ""))).stem
    fig.suptitle(f"{scen}: how do the variants differ from {b}?\n({how})", fontsize=10)
    if zero:
        fig.text(0.01, 0.005, "not drawn (zero at the baseline): " + ", ".join(zero), fontsize=7, color="0.4")
    return _save(fig, path, data)


def _band(ax, x, pts, m, label, color, ls="-", ci: bool = True):
    """A metric's means against x, with its 95% CI as a band when there are replications."""
    mean = np.array([p["metrics"][m]["mean"] if m in p["metrics"] else np.nan for p in pts], dtype=float)
    lo = np.array([p["metrics"][m]["ci_low"] if m in p["metrics"] else np.nan for p in pts], dtype=float)
    hi = np.array([p["metrics"][m]["ci_high"] if m in p["metrics"] else np.nan for p in pts], dtype=float)
    ax.plot(x, mean, ls, color=color, marker="o", ms=3, label=label)
    if ci:
        ax.fill_between(x, lo, hi, color=color, alpha=0.15, lw=0)
    return {"mean": mean.tolist(), "ci_low": lo.tolist() if ci else [], "ci_high": hi.tolist() if ci else []}


def _mark_unstable(ax, x, pts, m, label) -> None:
    """A red x on each point whose runs reached no steady state (summary `stable` false)."""
    bad = [
        (xv, p["metrics"][m]["mean"])
        for xv, p in zip(x, pts, strict=False)
        if p.get("stable") is False and m in p["metrics"]
    ]
    if bad:
        ax.plot(
            *zip(*bad, strict=False),
            "x",
            color="red",
            ms=9,
            mew=2,
            label="no steady state" if label else None,
            zorder=5,
        )


def _close_groups(x: list[float], y: list[float], rel: float = 0.03) -> list[tuple[int, int]]:
    """Runs of consecutive points within `rel` of the run's first point in x and y: (start, end)
    index pairs, so points that land on one spot get one label instead of a pile."""
    out: list[tuple[int, int]] = []
    k = 0
    while k < len(x):
        j = k + 1
        while j < len(x) and all(abs(a[j] - a[k]) <= rel * max(abs(a[k]), 1e-12) for a in (x, y)):
            j += 1
        out.append((k, j))
        k = j
    return out


def _slo_of(rep: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in (rep.get("slo") or {}).items() if k in ("ttft_s", "tpot_s")}


def sweep_plots(rep: dict[str, Any], out: Path) -> list[Path]:
    """How does latency grow with load, what throughput does it buy, and up to which load does the
    SLO hold? Bands are 95% CIs only where there are replications; red x: no steady state."""
    key = rep["key"]
    xlabel = "offered load (requests/s)" if key.endswith("rate_per_s") else key
    n_rep = rep.get("replications", 1)
    slo = _slo_of(rep)
    files = []
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.6))
    data: dict[str, Any] = {"x": rep["values"], "xlabel": xlabel, "replications": n_rep, "slo": slo, "variants": {}}
    any_bad = False
    for i, (lab, v) in enumerate(rep["variants"].items()):
        pts = [p for p in v["points"] if not p.get("failed")]
        x = [p["value"] for p in pts]
        d = data["variants"][lab] = {}
        for ax, base in zip(axes, ("ttft", "tpot", "e2e"), strict=False):
            d[f"{base}_p50_s"] = _band(ax, x, pts, f"{base}_p50_s", f"{lab} p50", f"C{i}", "--", n_rep > 1)
            d[f"{base}_p99_s"] = _band(ax, x, pts, f"{base}_p99_s", f"{lab} p99", f"C{i}", "-", n_rep > 1)
            _mark_unstable(ax, x, pts, f"{base}_p99_s", None)
        d["unstable"] = [p["value"] for p in pts if p.get("stable") is False]
        any_bad = any_bad or bool(d["unstable"])
    for ax, base, name in zip(axes, ("ttft", "tpot", "e2e"), ("time to first token (s)", "time per output token (s)",
                                                              "end-to-end latency (s)"), strict=False):
        ys = [y for dv in data["variants"].values() for q in ("p50", "p99") for k in ("mean", "ci_low", "ci_high")
              for y in dv[f"{base}_{q}_s"][k]]
        if f"{base}_s" in slo:
            ax.axhline(slo[f"{base}_s"], color="k", ls=":", lw=1.1)
            ys.append(slo[f"{base}_s"])
        _maybe_log(ax, ys)
        ax.set_ylabel(name)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3, which="major")
    handles, labels = axes[0].get_legend_handles_labels()
    from matplotlib.lines import Line2D
    if any_bad:
        handles.append(Line2D([], [], marker="x", color="red", ls="", ms=9, mew=2))
        labels.append("no steady state")
    if slo:
        handles.append(Line2D([], [], color="k", ls=":", lw=1.1))
        labels.append("SLO")
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8, frameon=False)
    band = f"bands: 95% CI over {n_rep} replications" if n_rep > 1 else "one replication per point: no interval"
    fig.suptitle(f"How does latency grow with {xlabel.split(' (')[0]}? p50 dashed, p99 solid ({band})")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    files.append(_save(fig, out / "latency_vs_load.png", data, layout=False))

    fig, ax = plt.subplots(figsize=(8, 5))
    data2: dict[str, Any] = {}
    keyed = False  # the red x's legend entry, once
    for i, (lab, v) in enumerate(rep["variants"].items()):
        pts = [p for p in v["points"] if not p.get("failed")]
        thr = [p["metrics"].get("throughput_output_tok_per_s", {}).get("mean", np.nan) for p in pts]
        p99 = [p["metrics"].get("tpot_p99_s", {}).get("mean", np.nan) for p in pts]
        ax.plot(thr, p99, "-o", ms=4, color=f"C{i}", label=lab)
        for k0, k1 in _close_groups(thr, p99):  # each point's load, so a curve folding back reads right
            lab_ = f"{pts[k0]['value']:g}" + (f"-{pts[k1 - 1]['value']:g}" if k1 - 1 > k0 else "")
            ax.annotate(lab_, (thr[k0], p99[k0]), xytext=(5, 4 if i % 2 == 0 else -11),
                        textcoords="offset points", fontsize=7, color=f"C{i}")
        bad = [k for k, p in enumerate(pts) if p.get("stable") is False]
        ax.plot([thr[k] for k in bad], [p99[k] for k in bad], "x", color="red", ms=9, mew=2,
                label="no steady state" if bad and not keyed else None)
        keyed = keyed or bool(bad)
        data2[lab] = {"value": [p["value"] for p in pts], "throughput_output_tok_per_s": thr, "tpot_p99_s": p99}
    if "tpot_s" in slo:
        ax.axhline(slo["tpot_s"], color="k", ls=":", lw=1.1, label=f"TPOT SLO {slo['tpot_s']:g} s")
    _maybe_log(
        ax, [y for dv in data2.values() for y in dv["tpot_p99_s"]] + ([slo["tpot_s"]] if "tpot_s" in slo else [])
    )
    ax.set_xlabel("output throughput (tokens/s)")
    ax.set_ylabel("p99 time per output token (s)")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"What throughput at what token latency?\n(each point labelled with its {xlabel})", fontsize=10)
    files.append(_save(fig, out / "throughput_vs_latency.png", data2))

    if all(v["slo_defined"] for v in rep["variants"].values()):
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
        data3: dict[str, Any] = {}
        for i, (lab, v) in enumerate(rep["variants"].items()):
            pts = [p for p in v["points"] if not p.get("failed")]
            x = [p["value"] for p in pts]
            for ax, m in zip(axes, ("goodput_req_per_s", "slo_attainment"), strict=False):
                _mark_unstable(ax, x, pts, m, None)
            data3[lab] = {
                "goodput_req_per_s": _band(axes[0], x, pts, "goodput_req_per_s", lab, f"C{i}", "-", n_rep > 1),
                "slo_attainment": _band(axes[1], x, pts, "slo_attainment", lab, f"C{i}", "-", n_rep > 1),
                "max_value_meeting_slo": v["max_value_meeting_slo"],
            }
            if v["max_value_meeting_slo"] is not None:
                axes[1].axvline(v["max_value_meeting_slo"], color=f"C{i}", ls=":", lw=1)
        axes[0].set_ylabel("goodput (requests/s meeting the SLO)")
        axes[0].set_ylim(bottom=0)
        axes[1].set_ylabel("SLO attainment (fraction)")
        axes[1].set_ylim(0, 1.05)
        axes[1].axhline(rep["attainment_target"], color="k", ls="--", lw=0.8,
                        label=f"target {rep['attainment_target']:.0%}")
        for ax in axes:
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
        handles, labels = axes[0].get_legend_handles_labels()
        h2, l2 = axes[1].get_legend_handles_labels()
        fig.legend(handles + h2[-1:], labels + l2[-1:], loc="lower center", ncol=6, fontsize=8, frameon=False)
        fig.suptitle("Up to which load does the SLO hold? (dotted: the largest load meeting the target; "
                     "red x: no steady state)", fontsize=10)
        fig.tight_layout(rect=(0, 0.08, 1, 1))
        files.append(_save(fig, out / "goodput_vs_load.png", data3, layout=False))
    return files


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) index pairs of the True runs of `mask` (end exclusive)."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(np.diff(m.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=False))


def over_supply(cols: dict[str, np.ndarray]) -> np.ndarray:
    """Which facility samples drew more than the live supply (beyond rounding)."""
    return cols["facility_w"] > cols["supply_w"] * (1 + 1e-9)


def _power_unit(peak_w: float) -> tuple[float, str]:
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
    scale, unit = _power_unit(peak)
    ax = ax_of["power"]
    ax.plot(t, cols["facility_w"] / scale, color="C0", label="facility draw (IT x PUE)")
    ax.plot(t, cols["it_w"] / scale, color="C1", lw=0.9, label="IT draw")
    ax.step(t, cols["supply_w"] / scale, where="post", color="k", ls="--", lw=1.1, label="live supply limit")
    over = over_supply(cols)
    if over.any():
        ax.plot(
            t[over], cols["facility_w"][over] / scale, "x", color="red", ms=8, mew=2, label="sample over the supply"
        )
        for a, b in _runs(over):
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
    return _save(fig, path, data)


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
    return _save(fig, path, {"cost_breakdown_usd": br, "energy_it_j": e_it, "energy_j": e_fac})


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
    return _save(fig, path, data, layout=False)


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
