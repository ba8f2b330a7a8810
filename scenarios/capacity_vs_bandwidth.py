"""H200 (141 GB HBM3e, 4.8 TB/s) against Intel Crescent Island in its 480 GB partner
configuration (LPDDR5X, ~0.86 TB/s estimated) serving Llama-3.1-70B as the context grows from 4k
to 128k tokens: how many sequences fit, output throughput per accelerator and per kW of node
power (accelerators and their hosts), and p99 time per output token, each accelerator run at
saturation. Shows where capacity beats bandwidth and where it does not.

Both serve the model in fp8 (weights and KV cache) on one accelerator (70 GB of weights fit
either). Saturation is closed-loop clients, as many as sequences fit in KV at the full context
(a benchmark's --max-concurrency), so neither part thrashes its KV cache by admitting more than it
holds. Power per kW is the run's mean node power: the accelerator's power model plus its hosts'
share (the catalog's node figures; docs/power.md: assumed shares of a system spec). Crescent
Island's bandwidth is estimated from its bus and its compute is undisclosed (the catalog marks its
TFLOP/s as assumptions); a third series uses the brief's unsourced 1.5 TB/s upper estimate to
bracket it.

Usage: python scenarios/capacity_vs_bandwidth.py [--out runs/capacity] [--output-tokens 512]
Writes capacity_vs_bandwidth.png and .json; a few seconds once the engine is compiled.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path


import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import sim.api as dc
from sim.analysis.figure import log_ticks, save_figure
from sim.perf.catalog import builtin_catalog
from sim.perf.roofline import PerfModel

CONTEXTS = [4096, 8192, 16384, 32768, 65536, 131072]
MODEL = "llama-3.1-70b"


def hardware_tables() -> dict[str, dict]:
    cat = builtin_catalog()
    out = {}
    parts = (("h200", {}), ("crescent-island-480", {}), ("crescent-island-480-1.5tbps", {"mem_bw_tbps": 1.5}))
    for hid, over in parts:
        h = cat.hardware[hid.split("-1.5")[0]]
        h = dataclasses.replace(h, **over)
        d = {f.name: getattr(h, f.name) for f in dataclasses.fields(h) if f.name != "id" and getattr(h, f.name) is not None}
        d["tflops"] = dict(h.tflops)
        out[hid] = d
    return out


def point(hw_id: str, tables: dict, ctx: int, out_tok: int) -> dict:
    cat = builtin_catalog()
    cat.add_hardware({hw_id: tables[hw_id]})
    h = cat.hardware[hw_id]
    pm = PerfModel(h, cat.models[MODEL], 1, "fp8", "fp8")
    blocks = pm.kv_blocks(0.9, 16)
    fit = blocks // math.ceil(ctx / 16)
    res = {"hardware": hw_id, "context": ctx, "sequences_fit": int(fit)}
    if fit < 1:
        return {**res, "throughput_tok_per_s": 0.0, "tpot_p99_s": None, "tok_per_s_per_kw": 0.0,
                "preemptions": 0, "requests": 0}
    n = max(24, 3 * fit)
    sc = dc.from_dict({
        "seed": 1, "hardware": {hw_id: tables[hw_id]},
        "workload": {"arrival": "closed", "concurrency": min(fit, n), "num_requests": n,
                     "prompt_tokens": ctx - out_tok, "output_tokens": out_tok},
        "pools": [{"hardware": hw_id, "model": MODEL, "dtype": "fp8", "kv_dtype": "fp8",
                   "scheduler": {"policy": "chunked", "max_batch_size": max(1024, fit), "max_batched_tokens": 8192}}],
        "run": {"timeseries": False}})
    s = dc.summary(dc.run(sc))
    thr = s["throughput_output_tok_per_s"]
    node_kw = s["it_power_mean_w"] / 1000.0  # accelerator and hosts, mean over the run
    return {**res, "throughput_tok_per_s": thr, "tpot_p99_s": s["tpot_p99_s"], "tpot_p50_s": s["tpot_p50_s"],
            "tok_per_s_per_kw": thr / node_kw, "node_power_mean_w": s["it_power_mean_w"],
            "decode_step_at_fit_s": pm.decode_cost(fit, ctx).t_s,
            "preemptions": s["preemptions_total"], "requests": s["requests_total"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/capacity")
    ap.add_argument("--output-tokens", type=int, default=512)
    ap.add_argument("--contexts", default=",".join(map(str, CONTEXTS)))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ctxs = [int(c) for c in args.contexts.split(",")]
    tables = hardware_tables()
    rows = [point(h, tables, c, args.output_tokens) for h in tables for c in ctxs]

    fig, axes = plt.subplots(1, 4, figsize=(17, 4.6))
    styles = {h: ("--", "s", 5) if "1.5" in h else ("-", "o", 6) for h in tables}
    for i, h in enumerate(tables):
        rs = [r for r in rows if r["hardware"] == h]
        x = [r["context"] / 1024 for r in rs]
        ls, mk, ms = styles[h]
        kw = dict(ls=ls, marker=mk, ms=ms, color=f"C{i}", label=h)
        if "1.5" not in h:  # the 1.5 TB/s bracket has Crescent Island's capacity: one series in panel 1
            axes[0].plot(x, [r["sequences_fit"] for r in rs], **kw)
        axes[1].plot(x, [r["throughput_tok_per_s"] for r in rs], **kw)
        axes[2].plot(x, [r["tok_per_s_per_kw"] for r in rs], **kw)
        axes[3].plot(x, [(r["tpot_p99_s"] or float("nan")) * 1e3 for r in rs], **kw)
        bad = [r for r in rs if r["preemptions"] > r["requests"]]  # KV thrash: recomputed work counted
        for ax, key in ((axes[1], "throughput_tok_per_s"), (axes[2], "tok_per_s_per_kw")):
            ax.plot([r["context"] / 1024 for r in bad], [r[key] for r in bad], "o", ms=12, mfc="none", mec="red",
                    mew=1.2, label="KV thrash (more preemptions than requests)" if i == 0 and bad else None)
    for ax, yl in zip(axes, ("sequences that fit in KV\n(1.5 TB/s variant: same capacity)",
                             "output tokens/s per accelerator", "output tokens/s per kW of node power\n"
                             "(accelerator and hosts)",
                             "p99 time per output token (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks([c / 1024 for c in ctxs], [f"{c // 1024}k" for c in ctxs])
        ax.minorticks_off()
        ax.set_yscale("log")
        log_ticks(ax, "y")
        ax.set_xlabel("context length (tokens)")
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
    handles, labels = axes[1].get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda k: labels[k].startswith("KV thrash"))  # the marker's key last
    handles, labels = [handles[k] for k in order], [labels[k] for k in order]
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
    fig.suptitle(f"Where does capacity (Crescent Island) beat bandwidth (H200)? {MODEL} in fp8, each accelerator "
                 "at saturation", fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    save_figure(fig, out / "capacity_vs_bandwidth.png", {"rows": rows}, layout=False)

    print(f"{'hardware':<24} {'context':>8} {'fit':>5} {'tok/s':>9} {'tok/s/kW':>9} {'p99 TPOT ms':>12} "
          f"{'preemptions':>16}")
    thrash = False
    for r in rows:
        p99 = f"{r['tpot_p99_s'] * 1e3:12.1f}" if r["tpot_p99_s"] else f"{'-':>12}"
        flag = " !" if r["preemptions"] > r["requests"] else ""  # more recomputes than requests: thrash
        thrash |= bool(flag)
        print(f"{r['hardware']:<24} {r['context']:>8} {r['sequences_fit']:>5} {r['throughput_tok_per_s']:>9.0f} "
              f"{r['tok_per_s_per_kw']:>9.0f} {p99} {r['preemptions']:>7} / {r['requests']:<6}{flag}")
    if thrash:
        print("! more preemptions than requests: KV thrash (recompute preemption); its tok/s includes recomputed work")
    print()
    for c in ctxs:
        a = next(r for r in rows if r["hardware"] == "h200" and r["context"] == c)
        b = next(r for r in rows if r["hardware"] == "crescent-island-480" and r["context"] == c)
        win_thr = "Crescent Island" if b["throughput_tok_per_s"] > a["throughput_tok_per_s"] else "H200"
        win_kw = "Crescent Island" if b["tok_per_s_per_kw"] > a["tok_per_s_per_kw"] else "H200"
        print(f"{c // 1024:>4}k: fits {b['sequences_fit']} vs {a['sequences_fit']} sequences "
              f"(Crescent Island vs H200); more tokens/s per accelerator: {win_thr}; per kW: {win_kw}")
    print(f"wrote {out / 'capacity_vs_bandwidth.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
