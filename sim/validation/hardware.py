"""Validation across hardware: dcsim against measured offline maximum throughput off the H100
(data/validation/hardware/trtllm_perf_overview.csv: TensorRT-LLM's `trtllm-bench throughput`
tables, every request queued at once, uniform ISL/OSL; provenance in that folder's README).

Each usable row becomes a scenario: one replica of the row's part, model, precision and TP, with
TensorRT-LLM's admission (`engine = "trtllm"`: each request's whole KV reserved, never evicted)
and its defaults as far as a row gives them (`kv_cache_free_gpu_mem_fraction` 0.95,
max_num_tokens 8192, batch up to 2048: ASSUMED from trtllm-bench's defaults; the tables do not
print the tuned values), and a few thousand requests of the row's lengths arriving within
milliseconds. The prediction is the output tokens per second per accelerator over the run (first
arrival to last completion). Rows of models or parts dcsim's catalog lacks, and rows with
attention data parallelism (DEP), are left out and counted. `table` groups the errors per
accelerator and precision: the median |error| and the signed median (dcsim optimistic > 0).
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TRTLLM = ROOT / "data" / "validation" / "hardware" / "trtllm_perf_overview.csv"

# the tables' model names -> dcsim's catalog (Llama 3 and 3.3 70B share 3.1 70B's shape)
MODELS = {
    "LLaMA v3.1 70B": "llama-3.1-70b", "LLaMA v3 70B": "llama-3.1-70b", "Llama-3.3-70B": "llama-3.1-70b",
    "LLaMA v3.1 8B": "llama-3.1-8b", "Llama-3.1-8B": "llama-3.1-8b",
    "LLaMA v3.1 405B": "llama-3.1-405b", "Llama-3.1-405B": "llama-3.1-405b",
    "Mistral 7B": "mistral-7b", "Mixtral 8x7B": "mixtral-8x7b", "Mixtral 8x22B": "mixtral-8x22b",
    "Llama-4-Maverick-17B-128E": "llama-4-maverick-17b-128e", "GPT-OSS-120B": "gpt-oss-120b",
    "Qwen3-235B-A22B": "qwen3-235b-a22b", "Qwen3-30B-A3B": "qwen3-30b-a3b", "DeepSeek-R1-0528": "deepseek-r1",
}
# the tables' precision -> (weights, KV cache): TensorRT-LLM's quantised checkpoints keep an FP8 KV
# cache (ASSUMED for FP4 too); FP16 rows run as bf16 (the same bytes and peak)
PRECISION = {"FP8": ("fp8", "fp8"), "FP4": ("fp4", "fp8"), "FP16": ("bf16", "bf16")}
# parts the tables name that the file's own dcsim_hw column leaves empty (added to the catalog since)
PARTS = {"GB200": "gb200"}
MAX_REQUESTS = 3000  # per row: the run is steady well before (batch <= 2048)


@dataclass(frozen=True)
class Row:
    """One measured offline throughput point."""

    source: str
    model: str
    hardware: str
    precision: str
    tp: int
    isl: int
    osl: int
    measured_tok_s_per_accel: float


def offline_rows(path: Path = TRTLLM) -> tuple[list[Row], dict[str, int]]:
    """The usable offline rows, and how many of each kind were left out (and why)."""
    from sim.perf.catalog import builtin_catalog

    cat = builtin_catalog()
    rows, skipped = [], {"no part in the catalog": 0, "no model in the catalog": 0, "attention DP / EP": 0,
                         "no per-accelerator figure": 0}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if "offline" not in r["scenario"]:
                continue
            hw = r["dcsim_hw"] or PARTS.get(r["gpu"], "")
            if not hw or hw not in cat.hardware:
                skipped["no part in the catalog"] += 1
            elif MODELS.get(r["model"]) not in cat.models:
                skipped["no model in the catalog"] += 1
            elif not r["parallel"].startswith("TP"):
                skipped["attention DP / EP"] += 1
            elif not r["output_tok_s_per_gpu"]:
                skipped["no per-accelerator figure"] += 1
            else:
                rows.append(Row(r["doc_version"], MODELS[r["model"]], hw, r["precision"], int(r["tp"]),
                                int(r["isl"]), int(r["osl"]), float(r["output_tok_s_per_gpu"])))
    return rows, skipped


def scenario(row: Row, n: int = MAX_REQUESTS) -> dict[str, Any]:
    """The scenario dict of one row (offline: every request within milliseconds)."""
    dtype, kv = PRECISION[row.precision]
    return {
        "seed": 1,
        "workload": {"arrival": "constant", "rate_per_s": 1e6, "num_requests": n,
                     "prompt_tokens": row.isl, "output_tokens": row.osl},
        "pools": [{"hardware": row.hardware, "model": row.model, "dtype": dtype, "kv_dtype": kv, "tp": row.tp,
                   "engine": "trtllm",
                   "scheduler": {"max_batch_size": 2048, "max_batched_tokens": 8192, "kv_memory_fraction": 0.95}}],
        "run": {"timeseries": False},
    }


def run_row(raw: dict[str, Any]) -> Any:
    """A validation row's scenario dict run: its Result, or None when the row cannot run (its
    model does not fit: a ScenarioError)."""
    from sim.engine.simulation import Simulation
    from sim.errors import ScenarioError
    from sim.scenario.config import parse

    try:
        return Simulation(parse(raw)).run()
    except ScenarioError:
        return None


def predict(row: Row, n: int = MAX_REQUESTS) -> float:
    """dcsim's output tokens per second per accelerator on the row (nan when nothing completes:
    the model does not fit)."""
    import numpy as np

    from sim.engine.recorder import COMPLETED

    res = run_row(scenario(row, n))
    if res is None:
        return float("nan")

    req, wl = res.requests, res.workload
    done = req.status == COMPLETED
    if not done.any():
        return float("nan")
    span = float(np.max(req.finish_s[done]) - np.min(wl.arrival_s))
    return float(np.sum(wl.output_tokens[done])) / span / row.tp


def errors(rows: list[Row], n: int = MAX_REQUESTS) -> list[dict[str, Any]]:
    """Each row with its prediction and signed relative error (predicted / measured - 1)."""
    out = []
    for r in rows:
        p = predict(r, n)
        out.append({**asdict(r), "predicted_tok_s_per_accel": p, "error": p / r.measured_tok_s_per_accel - 1})
    return out


def table(errs: list[dict[str, Any]], by: tuple[str, ...] = ("hardware", "precision")) -> list[dict[str, Any]]:
    """Median |error| and signed median per group (rows that did not fit are counted apart)."""
    groups: dict[tuple, list[float]] = {}
    unfit: dict[tuple, int] = {}
    for e in errs:
        k = tuple(e[b] for b in by)
        if e["error"] == e["error"]:
            groups.setdefault(k, []).append(e["error"])
        else:
            unfit[k] = unfit.get(k, 0) + 1
    return [{**dict(zip(by, k, strict=True)), "rows": len(v), "median_abs_error": statistics.median(abs(x) for x in v),
             "median_signed_error": statistics.median(v), "did_not_fit": unfit.get(k, 0)}
            for k, v in sorted(groups.items())]


def ratios(errs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The throughput ratio between two parts (each in its own precision) on the same model,
    lengths and TP in one source document, predicted against measured: per pair of parts, the
    median |predicted ratio / measured ratio - 1| over the matched rows."""
    by: dict[tuple, dict[str, dict[str, Any]]] = {}
    for e in errs:
        if e["error"] == e["error"]:
            by.setdefault((e["source"], e["model"], e["isl"], e["osl"], e["tp"]), {})[
                f"{e['hardware']} {e['precision']}"] = e
    pairs: dict[tuple[str, str], list[float]] = {}
    for rows in by.values():
        names = sorted(rows)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                ea, eb = rows[a], rows[b]
                pred = ea["predicted_tok_s_per_accel"] / eb["predicted_tok_s_per_accel"]
                meas = ea["measured_tok_s_per_accel"] / eb["measured_tok_s_per_accel"]
                pairs.setdefault((a, b), []).append(pred / meas - 1)
    return [{"parts": f"{a} / {b}", "rows": len(v), "median_abs_error": statistics.median(abs(x) for x in v),
             "median_signed_error": statistics.median(v)} for (a, b), v in sorted(pairs.items())]


def check(path: Path = TRTLLM, n: int = MAX_REQUESTS) -> dict[str, Any]:
    """Every usable row predicted, the per-group table and what was left out."""
    rows, skipped = offline_rows(path)
    errs = errors(rows, n)
    return {"source": str(path), "requests_per_row": n, "rows": errs, "skipped": skipped,
            "by_accelerator_and_precision": table(errs), "by_accelerator": table(errs, ("hardware",)),
            "ratios": ratios(errs),
            "overall_median_abs_error": statistics.median(abs(e["error"]) for e in errs if e["error"] == e["error"])}


def format_check(rep: dict[str, Any]) -> str:
    """The per-accelerator table as text."""
    out = ["offline max throughput (output tok/s per accelerator), dcsim vs TensorRT-LLM's tables",
           f"{'hardware':<10} {'precision':<9} {'rows':>5} {'median |err|':>13} {'signed median':>14}"]
    for g in rep["by_accelerator_and_precision"]:
        out.append(f"{g['hardware']:<10} {g['precision']:<9} {g['rows']:>5} {g['median_abs_error']:>12.1%} "
                   f"{g['median_signed_error']:>+14.1%}")
    out.append(f"all rows: median |error| {rep['overall_median_abs_error']:.1%}")
    out.append("throughput ratio between parts (same model, lengths, TP, source), predicted / measured - 1:")
    for g in rep["ratios"]:
        out.append(f"  {g['parts']:<28} {g['rows']:>4} matched  median |err| {g['median_abs_error']:6.1%}  "
                   f"signed {g['median_signed_error']:+6.1%}")
    out.append("left out: " + ", ".join(f"{k} {v}" for k, v in rep["skipped"].items() if v))
    return "\n".join(out)
