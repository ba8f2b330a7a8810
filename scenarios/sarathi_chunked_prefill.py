"""Reproduce Sarathi-Serve's qualitative result (Agrawal et al., OSDI 2024): chunked prefill
lowers tail time-per-output-token against prefill-prioritising continuous batching at high load,
and raises the load a replica sustains within an SLO.

Continuous batching (vLLM v0) runs a new request's whole prefill as its own step, so every
running decode stalls for it ("generation stalls"); chunked prefill (Sarathi-Serve, vLLM v1)
piggybacks bounded prefill chunks on decode steps.

Usage: python scenarios/sarathi_chunked_prefill.py [--out runs/sarathi] [--requests 4000]
Writes sarathi_tpot.png (p99 TPOT and p99 TTFT against load for both policies) and
sarathi.json (the numbers drawn), and prints the table. A few seconds once the engine is compiled.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import sim.api as dc
from sim.analysis.figure import log_ticks, save_figure

HERE = Path(__file__).resolve().parent
SLO_TTFT_S, SLO_TPOT_S = 0.5, 0.05


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/sarathi")
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--range", default="workload.rate_per_s=25:250:25")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rep = dc.sweep(HERE / "quickstart.toml", args.range, vary=["pools.scheduler.policy=continuous,chunked"],
                   set=[f"workload.num_requests={args.requests}", f"slo.ttft_s={SLO_TTFT_S}", f"slo.tpot_s={SLO_TPOT_S}"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    data = {}
    for i, (lab, v) in enumerate(rep["variants"].items()):
        x = [p["value"] for p in v["points"]]
        tpot = [p["metrics"]["tpot_p99_s"]["mean"] * 1e3 for p in v["points"]]
        ttft = [p["metrics"]["ttft_p99_s"]["mean"] for p in v["points"]]
        axes[0].plot(x, tpot, "-o", ms=3, color=f"C{i}", label=lab)
        axes[1].plot(x, ttft, "-o", ms=3, color=f"C{i}", label=lab)
        best = v["max_value_meeting_slo"]
        if best is not None:  # the largest load within the SLO, on both panels
            for ax in axes:
                ax.axvline(best, color=f"C{i}", ls=":", lw=1)
        data[lab] = {"rate_per_s": x, "tpot_p99_ms": tpot, "ttft_p99_s": ttft, "max_rate_meeting_slo": best}
    axes[0].axhline(SLO_TPOT_S * 1e3, color="k", ls="--", lw=0.9, label=f"SLO {SLO_TPOT_S * 1e3:g} ms")
    axes[1].axhline(SLO_TTFT_S, color="k", ls="--", lw=0.9, label=f"SLO {SLO_TTFT_S:g} s")
    axes[0].set_ylabel("p99 time per output token (ms)")
    axes[0].set_ylim(bottom=0)
    axes[1].set_ylabel("p99 time to first token (s)")
    axes[1].set_yscale("log")
    log_ticks(axes[1], "y")
    for ax in axes:
        ax.set_xlabel("offered load (requests/s), Llama-3.1-8B on 4 x H100")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("Does chunked prefill hold the token-latency SLO to a higher load than continuous batching?\n"
                 "(cf. Sarathi-Serve, OSDI'24; dotted: each policy's largest load meeting the SLO at 90%)", fontsize=10)
    save_figure(fig, out / "sarathi_tpot.png", data)
    (out / "sarathi.json").write_text(json.dumps(data, indent=1) + "\n")
    print(f"{'rate/s':>7} {'p99 TPOT continuous':>20} {'p99 TPOT chunked':>17}")
    c, k = data["continuous"], data["chunked"]
    for x, a, b in zip(c["rate_per_s"], c["tpot_p99_ms"], k["tpot_p99_ms"]):
        print(f"{x:>7g} {a:>17.1f} ms {b:>14.1f} ms")
    print(f"max load within the SLO (TTFT 0.5 s, TPOT 50 ms, 90%): continuous {c['max_rate_meeting_slo']}, "
          f"chunked {k['max_rate_meeting_slo']} req/s")
    print(f"wrote {out / 'sarathi_tpot.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
