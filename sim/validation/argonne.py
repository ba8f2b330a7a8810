"""Validation on Argonne's LLM-Inference-Bench (data/validation/hardware/
argonne_llm_inference_bench.csv; arXiv 2411.00136; provenance in that folder's README): static
batches on A100, H100 and GH200 with vLLM and TensorRT-LLM in fp16. Each row is `batch_size`
requests of `input_len` / `output_len` tokens sent at once, measured as the batch's latency
(its output tokens per second: batch x output_len / latency).

Each row runs as offline closed-loop clients (`arrival = "closed"`, concurrency = num_requests =
batch_size: every request sent at 0) on one replica of the row's part and TP (`n_accel`), with
the row's engine profile (vllm or trtllm); the prediction is the same ratio over the simulated
batch (its last completion). Rows of other parts or of models dcsim's catalog lacks are left out
and counted; so are rows whose model does not fit (reported apart, not as errors).
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sim.validation.hardware import run_row, table

ROOT = Path(__file__).resolve().parents[2]
ARGONNE = ROOT / "data" / "validation" / "hardware" / "argonne_llm_inference_bench.csv"

# the bench's model ids -> dcsim's catalog (Llama 3 shares Llama 3.1's shape, Qwen2 Qwen2.5's)
MODELS = {
    "meta-llama/Llama-2-7b-hf": "llama-2-7b", "meta-llama/Llama-2-70b-hf": "llama-2-70b",
    "meta-llama/Meta-Llama-3-8B": "llama-3.1-8b", "meta-llama/Meta-Llama-3-70B": "llama-3.1-70b",
    "mistralai/Mistral-7B-v0.1": "mistral-7b", "mistralai/Mixtral-8x7B-v0.1": "mixtral-8x7b",
    "Qwen/Qwen2-7B": "qwen2.5-7b", "Qwen/Qwen2-72B": "qwen2.5-72b",
}
# the bench's hw ids -> dcsim's catalog. "a100-80g(sxm?)" carries the bench's own doubt; its README
# reads it as the 40 GB SXM4 of ALCF Polaris, where the bench ran (4 x A100 40 GB per node), and
# the rows agree: Llama-3-70B in fp16 on 4 of them leaves almost no KV cache, and its throughput
# collapses at batch >= 32 as that predicts
PARTS = {"a100-80g(sxm?)": "a100-40g", "h100": "h100-sxm", "gh200": "gh200", "mi300x": "mi300x"}
ENGINES = {"vLLM": "vllm", "TensorRT-LLM": "trtllm"}


@dataclass(frozen=True)
class BatchRow:
    """One measured static batch."""

    model: str
    hardware: str
    engine: str
    tp: int
    isl: int
    osl: int
    batch: int
    measured_tok_s: float  # output tokens per second of the whole batch
    dtype: str = "bf16"  # weights (the bench's fp16 runs as bf16: the same bytes and peak)
    kv_dtype: str = "bf16"


def batch_rows(path: Path = ARGONNE) -> tuple[list[BatchRow], dict[str, int]]:
    """The usable rows (repeats averaged), and how many were left out, by reason."""
    skipped = {"other part": 0, "model not in the catalog": 0, "other engine": 0, "no throughput": 0}
    acc: dict[tuple, list[float]] = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r["hw_id"] not in PARTS:
                skipped["other part"] += 1
            elif r["model"] not in MODELS:
                skipped["model not in the catalog"] += 1
            elif r["framework"] not in ENGINES:
                skipped["other engine"] += 1
            elif not r["output_tok_s"]:
                skipped["no throughput"] += 1
            else:
                k = (MODELS[r["model"]], PARTS[r["hw_id"]], ENGINES[r["framework"]], int(r["n_accel"]),
                     int(r["input_len"]), int(r["output_len"]), int(r["batch_size"]))
                acc.setdefault(k, []).append(float(r["output_tok_s"]))
    return [BatchRow(m, h, e, tp, isl, osl, b, statistics.fmean(v))
            for (m, h, e, tp, isl, osl, b), v in sorted(acc.items())], skipped


def scenario(row: BatchRow, hardware: dict[str, Any] | None = None) -> dict[str, Any]:
    """The scenario dict of one row: the batch sent at once by as many closed-loop clients
    (`hardware`: catalog overrides, e.g. a fit's trial constants)."""
    return {
        "seed": 1, **({"hardware": hardware} if hardware else {}),
        "workload": {"arrival": "closed", "concurrency": row.batch, "num_requests": row.batch,
                     "prompt_tokens": row.isl, "output_tokens": row.osl},
        "pools": [{"hardware": row.hardware, "model": row.model, "dtype": row.dtype, "kv_dtype": row.kv_dtype,
                   "tp": row.tp,
                   "engine": row.engine, "scheduler": {"max_batch_size": max(256, row.batch)}}],
        "run": {"timeseries": False},
    }


def predict(row: BatchRow, hardware: dict[str, Any] | None = None) -> float:
    """dcsim's output tokens per second over the batch (nan: the model does not fit)."""
    import numpy as np

    from sim.engine.recorder import COMPLETED

    res = run_row(scenario(row, hardware))
    if res is None:
        return float("nan")
    req, wl = res.requests, res.workload
    done = req.status == COMPLETED
    if not done.all():
        return float("nan")
    return float(np.sum(wl.output_tokens)) / float(np.max(req.finish_s))


def check(path: Path = ARGONNE) -> dict[str, Any]:
    """Every usable row predicted; median errors per part and engine."""
    rows, skipped = batch_rows(path)
    errs = []
    for r in rows:
        p = predict(r)
        errs.append({**asdict(r), "precision": "fp16", "predicted_tok_s": p, "error": p / r.measured_tok_s - 1})
    ok = [abs(e["error"]) for e in errs if e["error"] == e["error"]]
    return {"source": str(path), "rows": errs, "skipped": skipped,
            "by_accelerator_and_engine": table(errs, ("hardware", "engine")),
            "by_accelerator": table(errs, ("hardware",)),
            "overall_median_abs_error": statistics.median(ok) if ok else float("nan")}


def format_check(rep: dict[str, Any]) -> str:
    """The per-accelerator table as text."""
    out = ["static batches (output tok/s of the batch), dcsim vs Argonne LLM-Inference-Bench (fp16)",
           f"{'hardware':<10} {'engine':<7} {'rows':>5} {'median |err|':>13} {'signed median':>14} {'no fit':>7}"]
    for g in rep["by_accelerator_and_engine"]:
        out.append(f"{g['hardware']:<10} {g['engine']:<7} {g['rows']:>5} {g['median_abs_error']:>12.1%} "
                   f"{g['median_signed_error']:>+14.1%} {g['did_not_fit']:>7}")
    out.append(f"all rows: median |error| {rep['overall_median_abs_error']:.1%}")
    out.append("left out: " + ", ".join(f"{k} {v}" for k, v in rep["skipped"].items() if v))
    return "\n".join(out)
