"""HBM against capacity, as operators would deploy them (issue 13, part 3): the same 8
accelerators and offered load of scenarios/disagg_h200_crescent.toml (Llama-3.1-70B fp8,
long-context chat) served three ways, on common random numbers:

- co-located H200 (8 mixed replicas),
- co-located Intel Crescent Island (8 mixed replicas),
- H200 prefill + Crescent Island decode (2 + 6: the scenario as it is),

compared on TTFT, TPOT, goodput, $/Mtoken and output tokens/s per kW (accelerator power), with
95% intervals over seeds. Prints the table and writes runs/disagg_h200_crescent/ (JSON, figure).

Usage: python scenarios/disagg_h200_crescent.py [--replications 3] [--rate 3.0] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sim.studies.study import compare  # noqa: E402

SCENARIO = REPO / "scenarios" / "disagg_h200_crescent.toml"
VARIANTS = [
    "colocated-h200:pools.role=mixed;pools.crescent-decode.hardware=h200;"
    "pools.crescent-decode.cost.usd_per_accel_hour=3.3",
    "colocated-crescent:pools.role=mixed;pools.h200-prefill.hardware=crescent-island-480;"
    "pools.h200-prefill.cost.usd_per_accel_hour=1.2",
    "h200-prefill+crescent-decode",
]
ROWS = [("ttft_p99_s", "p99 TTFT (s)", 1.0), ("tpot_mean_s", "mean TPOT (s)", 1.0),
        ("tpot_p99_s", "p99 TPOT (s)", 1.0), ("goodput_req_per_s", "goodput (req/s)", 1.0),
        ("throughput_output_tok_per_s", "output tok/s", 1.0), ("cost_per_mtok_usd", "$ per Mtoken", 1.0),
        ("energy_per_output_tok_j", "output tok/s per kW", None)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replications", type=int, default=3)
    ap.add_argument("--rate", type=float, default=None, help="offered load, requests/s (default: the scenario's)")
    ap.add_argument("--duration", type=float, default=None)
    ap.add_argument("--out", default="runs/disagg_h200_crescent")
    ap.add_argument("--workers", type=int, default=None)
    a = ap.parse_args()
    sets = ([f"workload.rate_per_s={a.rate}"] if a.rate else []) + (
        [f"workload.duration_s={a.duration}"] if a.duration else [])
    rep = compare(SCENARIO, (), a.replications, "colocated-h200", a.workers, sets, quiet=True, keep_latencies=False,
                  named=VARIANTS)
    labels = list(rep["variants"])
    table = {}
    print(f"{'':<22}" + "".join(f"{lab:>30}" for lab in labels))
    for key, name, _ in ROWS:
        cells, vals = [], {}
        for lab in labels:
            d = rep["variants"][lab]["metrics"].get(key)
            if d is None:
                cells.append(f"{'-':>30}")
                continue
            if key == "energy_per_output_tok_j":  # tok/s per kW = 1000 / (J per token)
                # an interval of J/token reaching zero has no upper bound in tok/s per kW
                m, lo = 1000 / d["mean"], 1000 / d["ci_high"]
                hi = 1000 / d["ci_low"] if d["ci_low"] > 0 else float("inf")
            else:
                m, lo, hi = d["mean"], d["ci_low"], d["ci_high"]
            vals[lab] = (m, lo, hi)
            cells.append(f"{m:>12.4g} [{lo:.4g}, {hi:.4g}]".rjust(30))
        table[name] = vals
        print(f"{name:<22}" + "".join(cells))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "disagg_h200_crescent.json").write_text(json.dumps(
        {"scenario": str(SCENARIO), "replications": a.replications, "seeds": rep["seeds"], "sets": sets,
         "table": {k: {lab: list(v) for lab, v in d.items()} for k, d in table.items()}}, indent=1) + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [n for _, n, _ in ROWS if n != "output tok/s"]
    from sim.scenario.config import read_toml
    rep_slo = read_toml(SCENARIO).get("slo", {})
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.6))
    colours = ["#4c72b0", "#dd8452", "#55a868"]
    for ax, name in zip(axes, names):
        vals = table[name]
        xs = range(len(labels))
        ms = [vals[lab][0] if lab in vals else 0.0 for lab in labels]
        # (an unbounded side is not drawn: the table above prints it)
        err = [[max(0.0, m - vals[lab][1]) if lab in vals else 0 for lab, m in zip(labels, ms)],
               [max(0.0, vals[lab][2] - m) if lab in vals and math.isfinite(vals[lab][2]) else 0
                for lab, m in zip(labels, ms)]]
        ax.bar(xs, ms, yerr=err, color=colours, capsize=4)
        slo = {"p99 TTFT (s)": rep_slo.get("ttft_s"), "mean TPOT (s)": rep_slo.get("tpot_s"),
               "p99 TPOT (s)": rep_slo.get("tpot_s")}.get(name)
        if slo:
            ax.axhline(slo, color="k", ls="--", lw=1)
            ax.annotate(f"SLO {slo:g} s", (0.02, slo), xycoords=("axes fraction", "data"), va="bottom", fontsize=8)
        ax.set_title(name, fontsize=10)
        ax.set_xticks(list(xs), ["H200", "Crescent", "H200 P +\nCrescent D"], fontsize=8)
    fig.suptitle("Llama-3.1-70B fp8 on 8 accelerators: which deployment? (95% CI over seeds)", fontsize=11)
    fig.tight_layout()
    fig.savefig(out / "disagg_h200_crescent.png", dpi=110)
    print(f"wrote {out}/disagg_h200_crescent.json and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
