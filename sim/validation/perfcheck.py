"""Perf model against measured step times: the rows behind docs/validation.md and calibration.

Two sources (copied under data/validation/):
- vllm-measured: vLLM 0.15.1 serving runs. For the lowest-load stage of each experiment, the
  decode batch is estimated by Little's law (rate x (E2E - TTFT)), the context as prompt +
  output/2; measured per-token decode time (`tpot_gen_len_mean_ms`) is compared with
  `decode_step_s`, and measured TTFT with `prefill_s` of the uncached part of the prompt (the
  shared system prompt is prefix-cached in whole 16-token blocks). TTFT also holds the wait for
  the step in progress and the HTTP/tokenizer path, so prefill_s is expected to under-predict.
- Splitwise perf_model.csv: direct prompt_time (whole batch prefilled at once) and token_time
  (mean decode iteration over `token_size` tokens) for Llama-2-70B on A100/H100, 2023 stack.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from sim.perf.catalog import Catalog, Hardware, builtin_catalog
from sim.perf.roofline import PerfModel

REPO = Path(__file__).resolve().parents[2]
VLLM_CSV = REPO / "data" / "validation" / "vllm-measured" / "experiments.csv"
SPLITWISE_CSV = REPO / "data" / "validation" / "splitwise" / "perf_model.csv"

HW_IDS = {"H100": "h100-sxm", "A100-80GB": "a100-80g", "A100": "a100-80g", "L40S": "l40s", "H200": "h200",
          "a100-80gb": "a100-80g", "h100-80gb": "h100-sxm"}
MODEL_IDS = {
    "meta-llama/Llama-2-7b-hf": "llama-2-7b", "meta-llama/Llama-2-70b-hf": "llama-2-70b",
    "codellama/CodeLlama-34b-Instruct-hf": "codellama-34b", "meta-llama/Llama-3.1-8B-Instruct": "llama-3.1-8b",
    "meta-llama/Llama-3.1-70B-Instruct": "llama-3.1-70b", "mistralai/Mistral-Nemo-Instruct-2407": "mistral-nemo-12b",
    "Qwen/Qwen2.5-7B-Instruct": "qwen2.5-7b", "01-ai/Yi-34B-Chat": "yi-34b", "Qwen/Qwen3-14B": "qwen3-14b",
    "mistralai/Mixtral-8x7B-Instruct-v0.1": "mixtral-8x7b", "mistralai/Mixtral-8x22B-Instruct-v0.1": "mixtral-8x22b",
    "meta-llama/Llama-4-Scout-17B-16E-Instruct": "llama-4-scout-17b-16e",
    "RedHatAI/Llama-4-Scout-17B-16E-Instruct-FP8-dynamic": "llama-4-scout-17b-16e",
    "mistralai/Mixtral-8x7B-v0.1": "mixtral-8x7b", "01-ai/Yi-34B": "yi-34b",
    "llama2-70b": "llama-2-70b",
}


@dataclass(frozen=True)
class DecodeRow:
    source: str  # "vllm" or "splitwise"
    label: str
    hardware: str
    model: str
    tp: int
    dtype: str
    batch: float
    context: float
    measured_s: float
    kv_dtype: str = "bf16"


@dataclass(frozen=True)
class PrefillRow:
    source: str
    label: str
    hardware: str
    model: str
    tp: int
    dtype: str
    prompt: int
    batch: int
    measured_s: float
    kv_dtype: str = "bf16"


@dataclass(frozen=True)
class Skipped:
    label: str
    why: str


def _model_id(name: str) -> str | None:
    """Catalog id of a Hugging Face model name: the table above, else the name without its
    organisation and release suffixes (Instruct, Chat, hf, FP8-dynamic, v0.1, dates)."""
    if name in MODEL_IDS:
        return MODEL_IDS[name]
    low = name.lower()
    for k, v in MODEL_IDS.items():
        if k.lower() == low:
            return v
    from sim.perf.catalog import builtin_catalog
    import re
    base = low.rsplit("/", 1)[-1]
    base = re.sub(r"-(instruct|chat|hf|it|base|fp8-dynamic|fp8|v\d+(\.\d+)*|\d{4})(?=-|$)", "", base)
    base = re.sub(r"-(instruct|chat|hf|it|base|fp8-dynamic|fp8|v\d+(\.\d+)*|\d{4})(?=-|$)", "", base)
    ids = builtin_catalog().models
    if base in ids:
        return base
    return None


def vllm_rows(path: Path = VLLM_CSV) -> tuple[list[DecodeRow], list[PrefillRow], list[Skipped]]:
    """Lowest-load stage (stage 0) of every experiment that was not saturated there."""
    dec, pre, skip = [], [], []
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["stage_index"] == "0"]
    for r in rows:
        label = r["exp_id"]
        model = _model_id(r["model_hf"])
        hw = HW_IDS.get(r["hardware"])
        if model is None or hw is None:
            skip.append(Skipped(label, f"model {r['model_hf']} or hardware {r['hardware']} not in the catalog"))
            continue
        if r["saturation_hint"] == "True":
            skip.append(Skipped(label, "saturated at its lowest load (no steady-state step time)"))
            continue
        if not r["spec_rate_rps"] or not r["spec_output_len"]:
            skip.append(Skipped(label, "arrival rate not published: decode batch unknown"))
            continue
        dtype = "fp8" if r["precision"].upper().startswith("FP8") else "bf16"
        rate = float(r["spec_rate_rps"])
        ttft = float(r["ttft_mean_ms"]) / 1e3
        e2e = float(r["e2e_mean_ms"]) / 1e3
        sys_len = int(float(r["spec_system_prompt_len"] or 0))
        q_len = int(float(r["spec_question_len"]))
        out_len = int(float(r["spec_output_len"]))
        prompt = sys_len + q_len
        tpot = r["tpot_gen_len_mean_ms"] or r["tpot_s2r_mean_ms"]
        tp = int(r["tp"])
        dp = int(float(r["dp"] or 1))  # data-parallel replicas share the load
        batch = max(1.0, rate * (e2e - ttft) / dp)
        dec.append(DecodeRow("vllm", label, hw, model, tp, dtype, batch, prompt + out_len / 2, float(tpot) / 1e3))
        cached = (sys_len // 16) * 16 if r["enable_prefix_caching"] == "True" else 0
        pre.append(PrefillRow("vllm", label, hw, model, tp, dtype, prompt - cached, 1, ttft))
    return dec, pre, skip


def splitwise_rows(path: Path = SPLITWISE_CSV) -> tuple[list[DecodeRow], list[PrefillRow]]:
    """Mean over repeated measurements of each (model, hardware, TP, prompt, batch, tokens)."""
    acc: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            if r["hardware"] not in HW_IDS or _model_id(r["model"]) is None:
                continue  # power-capped rows are modelled, not measured; BLOOM is not in the catalog
            key = (r["model"], r["hardware"], int(r["tensor_parallel"]), int(r["prompt_size"]),
                   int(r["batch_size"]), int(r["token_size"]))
            acc[key].append((float(r["prompt_time"]) / 1e3, float(r["token_time"]) / 1e3))
    dec, pre = [], []
    for (m, h, tp, p, b, t), v in sorted(acc.items()):
        label = f"{m} {h} tp{tp} p{p} b{b} o{t}"
        pt = sum(x for x, _ in v) / len(v)
        tt = sum(y for _, y in v) / len(v)
        mid = _model_id(m)
        assert mid is not None  # (rows of other models were skipped above)
        dec.append(DecodeRow("splitwise", label, HW_IDS[h], mid, tp, "bf16", b, p + t / 2, tt))
        pre.append(PrefillRow("splitwise", label, HW_IDS[h], mid, tp, "bf16", p, b, pt))
    return dec, pre


def perf_for(cat: Catalog, hw: str | Hardware, model: str, tp: int, dtype: str, kv_dtype: str = "bf16") -> PerfModel:
    """KV cache stays 16-bit as in the measured runs (vLLM's kv_cache_dtype=auto), even for fp8 weights."""
    h = cat.hardware[hw] if isinstance(hw, str) else hw
    return PerfModel(h, cat.models[model], tp, dtype, kv_dtype)


def predict_decode(row: DecodeRow, cat: Catalog | None = None, hw: Hardware | None = None) -> float:
    cat = cat or builtin_catalog()
    pm = perf_for(cat, hw or row.hardware, row.model, row.tp, row.dtype, row.kv_dtype)
    n = row.batch
    return pm.step_time(1, 0, 0) if n <= 0 else pm.cost(n, n * row.context, n_seq=int(round(n))).t_s


def predict_prefill(row: PrefillRow, cat: Catalog | None = None, hw: Hardware | None = None) -> float:
    cat = cat or builtin_catalog()
    pm = perf_for(cat, hw or row.hardware, row.model, row.tp, row.dtype, row.kv_dtype)
    return pm.prefill_cost(row.prompt, row.batch).t_s


def rel_err(pred: float, meas: float) -> float:
    return (pred - meas) / meas


def median(xs: Iterable[float]) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    k = len(s) // 2
    return s[k] if len(s) % 2 else (s[k - 1] + s[k]) / 2


def physically_impossible(row: PrefillRow, cat: Catalog | None = None) -> bool:
    """A measured prefill faster than the model's FLOPs at 100% of peak (the Splitwise table's
    known glitch: some batch-64 rows at TP2)."""
    cat = cat or builtin_catalog()
    pm = perf_for(cat, row.hardware, row.model, row.tp, row.dtype, row.kv_dtype)
    c = pm.prefill_cost(row.prompt, row.batch)
    return row.measured_s < c.flops / pm.hardware.peak_flops(row.dtype)
