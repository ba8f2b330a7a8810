"""The measured vLLM experiments (vllm-measured layout): read experiments.csv, turn each experiment
into a scenario, and read its measured figures. Shared by validation and calibration."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.validation.perfcheck import HW_IDS, _model_id

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "data" / "validation" / "vllm-measured"
CLIENT_TIMEOUT_S = 300.0
DEFAULT_STAGE_S = 600.0  # for stages whose duration was not published (reasoning-lite)
METRICS = ("ttft_mean", "ttft_p90", "ttft_p99", "e2e_mean", "e2e_p90", "e2e_p99", "tpot_mean")


@dataclass
class Experiment:
    exp_id: str
    meta: dict[str, str]  # the stage-0 row
    stages: list[dict[str, str]]  # rows with stage_index >= 0, in order
    scenario: dict[str, Any] | None  # None when it cannot be simulated
    why_not: str = ""


def _f(x: str) -> float | None:
    return float(x) if x not in ("", None) else None


def load_experiments(data_dir: Path = DEFAULT_DATA) -> list[Experiment]:
    path = Path(data_dir) / "experiments.csv"
    if not path.exists():
        from sim.errors import ScenarioError
        raise ScenarioError("--data", f"{path} not found", "point --data at a folder holding experiments.csv")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    by: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        if int(r["stage_index"]) >= 0:
            by.setdefault(r["exp_id"], []).append(r)
    out = []
    for exp_id, st in by.items():
        st.sort(key=lambda r: int(r["stage_index"]))
        sc, why = scenario_for(st)
        out.append(Experiment(exp_id, st[0], st, sc, why))
    return out


def scenario_for(stages: list[dict[str, str]]) -> tuple[dict[str, Any] | None, str]:
    m = stages[0]
    model = _model_id(m["model_hf"])
    hw = HW_IDS.get(m["hardware"])
    if model is None:
        return None, f"model {m['model_hf']} not in the catalog"
    if hw is None:
        return None, f"hardware {m['hardware']} not in the catalog"
    st_list = []
    for r in stages:
        rate = _f(r["spec_rate_rps"])
        if rate is None:
            return None, "arrival rates not published"
        st_list.append({"rate_per_s": rate, "duration_s": _f(r["spec_duration_s"]) or DEFAULT_STAGE_S})
    out_len = _f(m["spec_output_len"])
    q_len = _f(m["spec_question_len"])
    if out_len is None or q_len is None:
        return None, "prompt/output lengths not published"
    sys_len = int(_f(m["spec_system_prompt_len"]) or 0)
    groups = int(_f(m["spec_effective_num_groups"]) or _f(m["spec_profile_num_unique_system_prompts"]) or 1)
    fp8 = m["precision"].upper().startswith("FP8")
    dp = int(_f(m["dp"]) or 1)
    wl: dict[str, Any] = {
        "arrival": "constant", "stages": st_list,
        "prompt_tokens": {"dist": "fixed", "value": sys_len + int(q_len)},
        "output_tokens": {"dist": "fixed", "value": int(out_len)},
        "timeout_s": CLIENT_TIMEOUT_S,
    }
    if sys_len:
        wl["shared_prefix"] = {"groups": groups, "tokens": sys_len}
    sc = {
        "name": m["exp_id"], "seed": 1,
        "workload": wl,
        "pools": [{
            "name": "vllm", "hardware": hw, "model": model, "dtype": "fp8" if fp8 else "bf16", "kv_dtype": "bf16",
            "replicas": dp, "tp": int(m["tp"]),
            "scheduler": {
                "policy": "chunked" if m["enable_chunked_prefill"] != "False" else "continuous",
                "max_batch_size": int(_f(m["max_num_seqs"]) or 256),
                "max_batched_tokens": int(_f(m["max_num_batched_tokens"]) or 8192),
                "kv_memory_fraction": _f(m["gpu_memory_utilization"]) or 0.9,
                "block_size": int(_f(m["block_size"]) or 16),
                "prefix_caching": m["enable_prefix_caching"] == "True",
            },
        }],
        "router": {"policy": "least_loaded" if dp > 1 else "round_robin"},
        "run": {"timeseries": False},
    }
    return sc, ""


def measured(r: dict[str, str]) -> dict[str, float | None]:
    ms = {k: _f(r[f"{k}_ms"]) for k in ("ttft_mean", "ttft_p90", "ttft_p99", "e2e_mean", "e2e_p90", "e2e_p99")}
    out = {k: (v / 1e3 if v is not None else None) for k, v in ms.items()}
    tpot = _f(r["tpot_gen_len_mean_ms"]) or _f(r["tpot_s2r_mean_ms"])
    out["tpot_mean"] = tpot / 1e3 if tpot is not None else None
    return out
