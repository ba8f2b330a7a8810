"""DeepSeek-V3 with wide expert parallelism (issue 14, part 3): run scenarios/deepseek_v3_ep.toml
(prefill EP32 x 6, decode EP128 on H800) and report the decode pool's steady output throughput
per node and TPOT against DeepSeek's published production figures ("DeepSeek-V3/R1 Inference
System Overview", deepseek-ai/open-infra-index, 2025-03-01: ~14.8k output tokens/s per H800 node
in decode, 20-22 tokens/s per user). Also the one step formula's decode throughput per node over
batch per GPU at 5,000 tokens of context (their reported mean KV length per output token is 4,989).

Usage: python scenarios/deepseek_v3_ep.py [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from sim.analysis.metrics import summarize
from sim.engine.recorder import COMPLETED
from sim.engine.simulation import Simulation
from sim.perf.roofline import PerfModel
from sim.scenario.config import load

HERE = Path(__file__).resolve().parent
PUBLISHED_TOK_PER_NODE = 14_800.0  # decode, average over a day (borrowed: DeepSeek's overview)
PUBLISHED_USER_TOK_S = (20.0, 22.0)


def run() -> dict:
    sc = load(HERE / "deepseek_v3_ep.toml")
    res = Simulation(sc).run()
    s = summarize(res)
    wl, tb = res.workload, res.requests
    dec = next(p for p in sc.pools if p.role == "decode")
    nodes = dec.replicas * dec.accels / sc.network.gpus_per_node
    t0, t1 = sc.workload.warmup_s, float(wl.arrival_s.max())
    done = tb.status == COMPLETED
    win = done & (tb.finish_s >= t0) & (tb.finish_s <= t1)  # steady state: completions in the window
    tok_s = float(wl.output_tokens[win].sum() - win.sum()) / (t1 - t0)  # the decode pool's tokens (first: prefill)
    tpot = (tb.finish_s - tb.first_token_s) / np.maximum(wl.output_tokens - 1, 1)
    tpot_w = float(np.mean(tpot[win & (wl.output_tokens > 1)]))
    # the step formula at the published operating point, over batch per GPU
    pm = PerfModel(dec.hardware, dec.model, dec.tp, dec.dtype, dec.kv_dtype, ep=dec.ep,
                   moe_imbalance=dec.moe_imbalance, ep_net=(sc.network.gbps * 1e9 / 8, sc.network.latency_us * 1e-6,
                                                            sc.network.gpus_per_node))
    curve = []
    for per in (16, 32, 64, 96, 128, 160):
        b = per * dec.accels
        c = pm.decode_cost(b, 5000)
        curve.append({"seqs_per_gpu": per, "tpot_s": c.t_s, "user_tok_per_s": 1 / c.t_s,
                      "tok_per_s_per_node": b / c.t_s / nodes, "mem_s": c.t_mem_s, "comp_s": c.t_comp_s,
                      "comm_s": c.t_comm_s})
    return {"decode_nodes": nodes, "decode_tok_per_s_per_node": tok_s / nodes, "decode_tpot_s": tpot_w,
            "user_tok_per_s": 1 / tpot_w, "published_tok_per_s_per_node": PUBLISHED_TOK_PER_NODE,
            "ratio_to_published": tok_s / nodes / PUBLISHED_TOK_PER_NODE, "ttft_p50_s": s["ttft_p50_s"],
            "stable": s["stable"], "requests": s["requests_total"], "step_formula": curve}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    r = run()
    if a.json:
        print(json.dumps(r, indent=1))
        return 0
    print(f"DeepSeek-V3 decode on {r['decode_nodes']:.0f} H800 nodes (EP128, fp8 weights, bf16 MLA cache), "
          f"{r['requests']} requests:")
    print(f"  simulated: {r['decode_tok_per_s_per_node']:,.0f} output tokens/s per node at "
          f"{r['user_tok_per_s']:.1f} tokens/s per user (TPOT {r['decode_tpot_s'] * 1e3:.1f} ms)")
    print(f"  published: {PUBLISHED_TOK_PER_NODE:,.0f} output tokens/s per node at "
          f"{PUBLISHED_USER_TOK_S[0]:.0f}-{PUBLISHED_USER_TOK_S[1]:.0f} tokens/s per user (a day's average)")
    print(f"  ratio {r['ratio_to_published']:.2f}")
    print("\n  step formula, 5,000 tokens of context: seqs/GPU, TPOT ms, tokens/s/user, tokens/s/node, "
          "memory / compute / all-to-all ms")
    for c in r["step_formula"]:
        print(f"  {c['seqs_per_gpu']:>5} {c['tpot_s'] * 1e3:>7.1f} {c['user_tok_per_s']:>6.1f} "
              f"{c['tok_per_s_per_node']:>8,.0f}   {c['mem_s'] * 1e3:.1f} / {c['comp_s'] * 1e3:.1f} / {c['comm_s'] * 1e3:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
