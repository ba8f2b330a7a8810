"""Validation on SemiAnalysis InferenceX (data/validation/hardware/inferencex_dsr1.csv: DeepSeek-R1 on
8-GPU nodes; provenance in that folder's README): closed-loop serving benchmarks (`--max-concurrency
CONC`, 10 x CONC prompts, `--random-range-ratio 0.8`: lengths uniform in [0.8, 1] x nominal,
`--ignore-eos`) on H200, B200, MI300X and MI355X with SGLang and TensorRT-LLM, FP8 and FP4.

Each single-node row without speculative decoding runs as closed-loop clients (concurrency = CONC,
num_requests = 10 x CONC, the same length ranges) on one replica of the row's 8 accelerators:
`ep` = decode_ep (experts split over them), attention data-parallel when the row says
dp_attention (tp 1), else tensor-parallel over the 8; the row's engine profile (sglang, or trtllm
for trt); KV cache in fp8 (ASSUMED: the engines' FP8 checkpoints keep an FP8 cache; the rows do not
say); the schedulers' defaults otherwise, with room for CONC sequences. Compared: output tokens per
second per GPU over the run and the median time per output token. Left out and counted: rows
with speculative decoding (MTP), disaggregated and multi-node rows, other engines (ATOM), and the
one row the file flags (Little's-law ratio below 0.5).
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sim.validation.hardware import run_row, table

ROOT = Path(__file__).resolve().parents[2]
INFERENCEX = ROOT / "data" / "validation" / "hardware" / "inferencex_dsr1.csv"
PARTS = {"h100": "h100-sxm", "h200": "h200", "b200": "b200", "gb200": "gb200", "mi300x": "mi300x",
         "mi355x": "mi355x"}
ENGINES = {"sglang": "sglang", "trt": "trtllm"}


@dataclass(frozen=True)
class ServingRow:
    """One measured closed-loop point."""

    hardware: str
    engine: str
    precision: str
    gpus: int
    tp: int
    ep: int
    isl: int
    osl: int
    conc: int
    measured_out_tok_s_per_gpu: float
    measured_tpot_s: float  # median


def serving_rows(path: Path = INFERENCEX) -> tuple[list[ServingRow], dict[str, int]]:
    """The usable rows, and how many were left out, by reason."""
    skipped = {"speculative decoding": 0, "disaggregated or multi-node": 0, "other engine": 0, "other part": 0,
               "flagged": 0}
    out = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r["spec_method"] != "none":
                skipped["speculative decoding"] += 1
            elif r["disagg"] == "True" or r["is_multinode"] == "True":
                skipped["disaggregated or multi-node"] += 1
            elif r["framework"] not in ENGINES:
                skipped["other engine"] += 1
            elif r["hardware"] not in PARTS:
                skipped["other part"] += 1
            elif r["qa_littles_law_ratio"] and float(r["qa_littles_law_ratio"]) < 0.5:
                skipped["flagged"] += 1
            else:
                gpus, ep = int(r["num_gpus"]), int(r["decode_ep"] or 1)
                tp = 1 if (r["decode_dp_attention"] == "True" and ep > 1) else int(r["decode_tp"])
                out.append(ServingRow(PARTS[r["hardware"]], ENGINES[r["framework"]], r["precision"], gpus, tp, ep,
                                      int(r["isl"]), int(r["osl"]), int(r["conc"]),
                                      float(r["output_tput_per_gpu"]), float(r["median_tpot_ms"]) / 1e3))
    return out, skipped


def scenario(row: ServingRow) -> dict[str, Any]:
    """The scenario dict of one row: CONC clients sending 10 x CONC requests."""
    pool: dict[str, Any] = {"hardware": row.hardware, "model": "deepseek-r1", "dtype": row.precision,
                            "kv_dtype": "fp8", "tp": row.tp, "engine": row.engine,
                            "scheduler": {"max_batch_size": max(256, row.conc)}}
    if row.ep > 1:
        pool["ep"] = row.ep
    return {
        "seed": 1,
        "workload": {"arrival": "closed", "concurrency": row.conc, "num_requests": 10 * row.conc,
                     "prompt_tokens": {"dist": "uniform", "min": int(0.8 * row.isl), "max": row.isl},
                     "output_tokens": {"dist": "uniform", "min": int(0.8 * row.osl), "max": row.osl}},
        "pools": [pool],
        "run": {"timeseries": False},
    }


def predict(row: ServingRow) -> tuple[float, float]:
    """dcsim's output tokens/s per GPU and median TPOT on the row (nan: it does not fit)."""
    from sim.analysis.metrics import summarize

    res = run_row(scenario(row))
    if res is None:
        return float("nan"), float("nan")
    s = summarize(res)
    if not s["requests_completed"]:
        return float("nan"), float("nan")
    return s["throughput_output_tok_per_s"] / row.gpus, s["tpot_p50_s"]


def check(path: Path = INFERENCEX) -> dict[str, Any]:
    """Every usable row predicted; median errors per part and engine, for throughput and TPOT."""
    rows, skipped = serving_rows(path)
    errs = []
    for r in rows:
        thr, tpot = predict(r)
        errs.append({**asdict(r), "predicted_out_tok_s_per_gpu": thr, "predicted_tpot_s": tpot,
                     "error": thr / r.measured_out_tok_s_per_gpu - 1, "tpot_error": tpot / r.measured_tpot_s - 1})
    tp_errs = [dict(e, error=e["tpot_error"]) for e in errs]
    ok = [abs(e["error"]) for e in errs if e["error"] == e["error"]]
    return {"source": str(path), "rows": errs, "skipped": skipped,
            "throughput": table(errs, ("hardware", "engine", "precision")),
            "tpot": table(tp_errs, ("hardware", "engine", "precision")),
            "throughput_by_accelerator": table(errs, ("hardware",)),
            "tpot_by_accelerator": table(tp_errs, ("hardware",)),
            "overall_median_abs_error": statistics.median(ok) if ok else float("nan")}


def format_check(rep: dict[str, Any]) -> str:
    """The per-accelerator tables as text."""
    out = ["closed-loop serving (DeepSeek-R1, 8 GPUs), dcsim vs InferenceX: output tok/s per GPU | median TPOT",
           f"{'hardware':<9} {'engine':<7} {'prec':<5} {'rows':>5} {'tok/s |err|':>12} {'signed':>8} "
           f"{'TPOT |err|':>11} {'signed':>8}"]
    for g, t in zip(rep["throughput"], rep["tpot"], strict=True):
        out.append(f"{g['hardware']:<9} {g['engine']:<7} {g['precision']:<5} {g['rows']:>5} "
                   f"{g['median_abs_error']:>11.1%} {g['median_signed_error']:>+8.1%} "
                   f"{t['median_abs_error']:>10.1%} {t['median_signed_error']:>+8.1%}")
    out.append(f"all rows: throughput median |error| {rep['overall_median_abs_error']:.1%}")
    out.append("left out: " + ", ".join(f"{k} {v}" for k, v in rep["skipped"].items() if v))
    return "\n".join(out)
