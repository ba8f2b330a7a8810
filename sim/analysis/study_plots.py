"""The compare and sweep folders' plots: comparison.png (bars of key metrics with 95% CIs) and
the sweep's latency_vs_load.png, throughput_vs_latency.png and goodput_vs_load.png (CI bands,
unstable points marked), with `METRIC_WORDS` (a metric's words, unit and which way is better)
that the HTML report shares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sim.analysis.figure import maybe_log, save_png

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
    return save_png(fig, path, data)


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


def close_groups(x: list[float], y: list[float], rel: float = 0.03) -> list[tuple[int, int]]:
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


def slo_of(rep: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in (rep.get("slo") or {}).items() if k in ("ttft_s", "tpot_s")}


def sweep_plots(rep: dict[str, Any], out: Path) -> list[Path]:
    """How does latency grow with load, what throughput does it buy, and up to which load does the
    SLO hold? Bands are 95% CIs only where there are replications; red x: no steady state."""
    key = rep["key"]
    xlabel = "offered load (requests/s)" if key.endswith("rate_per_s") else key
    n_rep = rep.get("replications", 1)
    slo = slo_of(rep)
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
        maybe_log(ax, ys)
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
    files.append(save_png(fig, out / "latency_vs_load.png", data, layout=False))

    fig, ax = plt.subplots(figsize=(8, 5))
    data2: dict[str, Any] = {}
    keyed = False  # the red x's legend entry, once
    for i, (lab, v) in enumerate(rep["variants"].items()):
        pts = [p for p in v["points"] if not p.get("failed")]
        thr = [p["metrics"].get("throughput_output_tok_per_s", {}).get("mean", np.nan) for p in pts]
        p99 = [p["metrics"].get("tpot_p99_s", {}).get("mean", np.nan) for p in pts]
        ax.plot(thr, p99, "-o", ms=4, color=f"C{i}", label=lab)
        for k0, k1 in close_groups(thr, p99):  # each point's load, so a curve folding back reads right
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
    maybe_log(
        ax, [y for dv in data2.values() for y in dv["tpot_p99_s"]] + ([slo["tpot_s"]] if "tpot_s" in slo else [])
    )
    ax.set_xlabel("output throughput (tokens/s)")
    ax.set_ylabel("p99 time per output token (s)")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"What throughput at what token latency?\n(each point labelled with its {xlabel})", fontsize=10)
    files.append(save_png(fig, out / "throughput_vs_latency.png", data2))

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
        files.append(save_png(fig, out / "goodput_vs_load.png", data3, layout=False))
    return files


