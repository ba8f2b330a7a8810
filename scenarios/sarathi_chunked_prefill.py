"""Reproduce Sarathi-Serve's qualitative result (Agrawal et al., OSDI 2024): chunked prefill
lowers tail time-per-output-token against prefill-prioritising continuous batching at high load,
and raises the load a replica sustains within an SLO.

Continuous batching (vLLM v0) runs a new request's whole prefill as its own step, so every
running decode stalls for it ("generation stalls"); chunked prefill (Sarathi-Serve, vLLM v1)
piggybacks bounded prefill chunks on decode steps.

Usage: python scenarios/sarathi_chunked_prefill.py [--out runs/sarathi] [--requests 4000]
Writes sarathi_tpot.png (p99 TPOT and p99 TTFT against load for both policies) and
sarathi.json (the numbers drawn), and prints the table. About a minute on 2 cores.
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

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/sarathi")
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--range", default="workload.rate_per_s=25:250:25")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rep = dc.sweep(HERE / "quickstart.toml", args.range, vary=["pools.scheduler.policy=continuous,chunked"],
                   set=[f"workload.num_requests={args.requests}", "slo.ttft_s=0.5", "slo.tpot_s=0.05"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    data = {}
    for i, (lab, v) in enumerate(rep["variants"].items()):
        x = [p["value"] for p in v["points"]]
        tpot = [p["metrics"]["tpot_p99_s"]["mean"] * 1e3 for p in v["points"]]
        ttft = [p["metrics"]["ttft_p99_s"]["mean"] for p in v["points"]]
        axes[0].plot(x, tpot, "-o", ms=3, color=f"C{i}", label=lab)
        axes[1].plot(x, ttft, "-o", ms=3, color=f"C{i}", label=lab)
        data[lab] = {"rate_per_s": x, "tpot_p99_ms": tpot, "ttft_p99_s": ttft,
                     "max_rate_meeting_slo": v["max_value_meeting_slo"]}
    axes[0].set_ylabel("p99 time per output token (ms)")
    axes[1].set_ylabel("p99 time to first token (s)")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("offered load (requests/s), Llama-3.1-8B on 4 x H100")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Chunked prefill vs prefill-prioritising continuous batching (cf. Sarathi-Serve, OSDI'24)")
    fig.tight_layout()
    fig.savefig(out / "sarathi_tpot.png", dpi=110)
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
