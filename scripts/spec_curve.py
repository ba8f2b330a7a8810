"""The speculative-decoding crossover (issue 14, part 1): TPOT gain of speculation against batch
size, from the one step formula (sim/perf/roofline.py), for a draft model, an EAGLE head and
prompt lookup (ngram), a = 0.8, k = 4, 256 tokens of context per sequence; the same from full
simulations at batch 1 and saturated at a compute-bound batch. Prints a Markdown table (for
docs/speculative.md) and writes the figure.

Usage: python scripts/spec_curve.py [--out docs/speculative_curve.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sim.perf.catalog import builtin_catalog  # noqa: E402
from sim.perf.roofline import PerfModel, Speculative  # noqa: E402

BATCHES = (1, 4, 16, 64, 128, 256, 512, 1024)
CASES = (("llama-3.1-8b", 1, "h100-sxm"), ("llama-3.1-70b", 4, "h100-sxm"))


def curves(ctx: int = 256, a: float = 0.8, k: int = 4) -> dict[str, dict[str, list[float]]]:
    cat = builtin_catalog()
    out: dict[str, dict[str, list[float]]] = {}
    for mid, tp, hid in CASES:
        hw, m = cat.hardware[hid], cat.models[mid]
        base = PerfModel(hw, m, tp)
        rows: dict[str, list[float]] = {}
        for meth, draft in (("draft", "llama-3.2-1b"), ("eagle", None), ("ngram", None)):
            pm = PerfModel(hw, m, tp, speculative=Speculative(method=meth, num_tokens=k, acceptance_rate=a, draft_model=cat.models[draft] if draft else None))
            rows[meth] = [base.decode_cost(b, ctx).t_s / pm.decode_cost(b, ctx).t_s for b in BATCHES]
        rows["plain step bound"] = [base.decode_cost(b, ctx).bound for b in BATCHES]
        out[f"{mid} TP{tp} on {hid}"] = rows
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/speculative_curve.png")
    a = ap.parse_args()
    data = curves()
    fig, axes = plt.subplots(1, len(data), figsize=(11, 4), sharey=True)
    for ax, (name, rows) in zip(axes, data.items()):
        print(f"\n{name} (context 256, a = 0.8, k = 4): TPOT gain (off / on) by batch\n")
        print("| method | " + " | ".join(str(b) for b in BATCHES) + " |")
        print("|---|" + "---|" * len(BATCHES))
        for meth, g in rows.items():
            cells = g if meth == "plain step bound" else [f"{x:.2f}" for x in g]
            print(f"| {meth} | " + " | ".join(cells) + " |")
            if meth != "plain step bound":
                ax.plot(BATCHES, g, "o-", ms=3, label=meth)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(BATCHES, [str(b) for b in BATCHES])
        ax.set_xlabel("decode batch (sequences)")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("TPOT gain (off / on)")
    axes[0].legend(fontsize=8)
    fig.suptitle("When does speculative decoding pay? (a = 0.8, k = 4, 256 tokens of context)")
    fig.tight_layout()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=110)
    print(f"\nfigure: {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
