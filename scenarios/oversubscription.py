"""Oversubscription under a fixed power budget: deploy more accelerators at lower clock caps,
or fewer at full power? Sweeps the accelerator count in one tent whose gas-turbine supply is
fixed, with the power manager capping clocks (cap_uniform) to stay within it, and plots output
tokens/s, p99 latency and $/Mtoken against the count.

Setup (scenarios/tent.toml's tent): Llama-3.1-70B on H200 (TP4), a demanding Poisson load, a
fixed 90 kW of turbines, PUE 1.3, 300 W of host power per GPU, rent $3.3 per GPU-hour.

Usage: python scenarios/oversubscription.py [--out runs/oversubscription] [--counts 32,48,...]
Writes oversubscription.png and .json; a few seconds once the engine is compiled.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from sim.analysis.figure import log_ticks, save_figure
from sim.studies.study import Task, execute

BUDGET_MW = 0.09
SLO = {"ttft_s": 2.0, "tpot_s": 0.1}


def scenario(n_gpus: int, rate: float, duration: float) -> dict:
    return {
        "name": f"oversubscription-{n_gpus}", "seed": 3,
        "workload": {"arrival": "poisson", "rate_per_s": rate, "duration_s": duration,
                     "prompt_tokens": {"dist": "lognormal", "mean": 1500, "cv": 1.0, "max": 8000},
                     "output_tokens": {"dist": "lognormal", "mean": 300, "cv": 0.8, "max": 2000},
                     "timeout_s": 60.0},
        "slo": dict(SLO),
        "pools": [{"name": "main", "hardware": "h200", "model": "llama-3.1-70b", "replicas": n_gpus // 4, "tp": 4,
                   "tent": "tent"}],
        "router": {"policy": "least_loaded"},
        "facility": {"host_w_per_accel": 300,
                     "sources": [{"name": "turbines", "kind": "gas_turbine", "units": 3, "unit_mw": BUDGET_MW / 3}],
                     "tents": [{"name": "tent", "it_limit_mw": BUDGET_MW, "pue": 1.3}],
                     "manager": {"policy": "cap_uniform", "interval_s": 2.0}},
        "cost": {"usd_per_accel_hour": 3.3, "usd_per_mwh": 60.0, "facility_usd_per_hour": 40.0},
        "run": {"timeseries": False},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/oversubscription")
    ap.add_argument("--counts", default="32,48,64,80,96,112,128")
    ap.add_argument("--rate", type=float, default=200.0, help="offered load, requests/s (beyond every count's capacity)")
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    counts = [int(c) for c in args.counts.split(",")]
    full_power_gpus = BUDGET_MW * 1e6 / 1.3 / (700 + 300)
    tasks = [Task(scenario(n, args.rate, args.duration), ".", 3) for n in counts]
    res = execute(tasks, args.workers, "oversubscription")
    rows = []
    for n, r in zip(counts, res):
        s = r["summary"]
        rows.append({"gpus": n, "throughput_tok_per_s": s["throughput_output_tok_per_s"],
                     "ttft_p99_s": s["ttft_p99_s"], "tpot_p99_s": s["tpot_p99_s"], "e2e_p99_s": s["e2e_p99_s"],
                     "goodput_req_per_s": s.get("goodput_req_per_s"), "cost_per_mtok_usd": s["cost_per_mtok_usd"],
                     "facility_power_mean_w": s["facility_power_mean_w"],
                     "power_limit_exceeded_s": s["power_limit_exceeded_s"],
                     "requests_failed": s["requests_failed"], "requests_completed": s["requests_completed"]})
    x = [r["gpus"] for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.4))
    axes[0].plot(x, [r["throughput_tok_per_s"] for r in rows], "-o")
    axes[0].set_ylabel("output throughput (tokens/s)")
    axes[0].set_ylim(bottom=0)
    axes[1].plot(x, [r["tpot_p99_s"] * 1e3 for r in rows], "-o", label="p99 TPOT")
    axes[1].plot(x, [r["ttft_p99_s"] * 1e3 for r in rows], "-o", label="p99 TTFT")
    axes[1].axhline(SLO["ttft_s"] * 1e3, color="C1", ls="--", lw=0.8, label=f"TTFT SLO {SLO['ttft_s']:g} s")
    axes[1].axhline(SLO["tpot_s"] * 1e3, color="C0", ls="--", lw=0.8, label=f"TPOT SLO {SLO['tpot_s'] * 1e3:g} ms")
    axes[1].set_yscale("log")
    log_ticks(axes[1], "y")
    axes[1].set_ylabel("p99 latency (ms)")
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.2), ncol=2)
    axes[2].plot(x, [r["cost_per_mtok_usd"] for r in rows], "-o", color="C2")
    axes[2].set_ylabel("cost per million output tokens (USD)")
    axes[2].set_ylim(bottom=0)
    over = [r["power_limit_exceeded_s"] for r in rows]
    axes[3].bar(x, over, width=0.6 * (x[1] - x[0]) if len(x) > 1 else 8, color="C3")
    axes[3].set_ylabel("time over the power supply (s)")
    axes[3].set_ylim(0, max(1.0, max(over) * 1.15))
    if not any(over):
        axes[3].text(0.5, 0.5, "0 s over the supply at every count:\nthe clock caps held the draw under it",
                     transform=axes[3].transAxes, ha="center", va="center", fontsize=8, color="0.35",
                     bbox=dict(facecolor="white", edgecolor="none"))
    step = (x[1] - x[0]) / 2 if len(x) > 1 else 8
    for ax in axes:
        ax.axvline(full_power_gpus, color="k", ls=":", lw=1)
        for xv, o in zip(x, over):  # counts whose runs went over the supply: shaded on every panel
            if o > 0:
                ax.axvspan(xv - step, xv + step, color="red", alpha=0.12, lw=0)
        ax.set_xlabel(f"H200 GPUs under a fixed {BUDGET_MW * 1e3:g} kW supply")
        ax.grid(alpha=0.3)
    fig.suptitle("How many accelerators should a fixed power supply carry? More GPUs at lower clock caps\n"
                 f"(dotted: the {full_power_gpus:.0f} that fit at full power; red: counts that went over the supply)",
                 fontsize=10)
    save_figure(fig, out / "oversubscription.png", {"rows": rows, "full_power_gpus": full_power_gpus})
    print(f"{'GPUs':>5} {'tok/s':>8} {'p99 TTFT s':>10} {'p99 TPOT ms':>11} {'$/Mtok':>8} {'kW':>6} {'over s':>7}")
    for r in rows:
        print(f"{r['gpus']:>5} {r['throughput_tok_per_s']:>8.0f} {r['ttft_p99_s']:>10.2f} {r['tpot_p99_s'] * 1e3:>11.1f} "
              f"{r['cost_per_mtok_usd']:>8.2f} {r['facility_power_mean_w'] / 1e3:>6.1f} {r['power_limit_exceeded_s']:>7.1f}")
    best = max(rows, key=lambda r: r["throughput_tok_per_s"])
    cheapest = min(rows, key=lambda r: r["cost_per_mtok_usd"])
    print(f"full power fits about {full_power_gpus:.0f} GPUs; most tokens/s at {best['gpus']} GPUs, "
          f"lowest $/Mtoken at {cheapest['gpus']} GPUs")
    print(f"wrote {out / 'oversubscription.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
