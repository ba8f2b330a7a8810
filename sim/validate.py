"""`dcsim validate`: rerun real vLLM serving experiments in the simulator and compare.

Each experiment of `experiments.csv` (vllm-measured layout) becomes a scenario with the same
model, GPU, TP, data-parallel replicas, vLLM settings (max_num_seqs, max_num_batched_tokens,
gpu_memory_utilization, block size, prefix caching), constant-rate load stages, shared-prefix
prompts and fixed output lengths (the runs used ignore_eos). The client timeout is 300 s
(aiohttp's default total timeout, which inference-perf leaves in place; the longest measured
E2E is 297 s). Measured and predicted TTFT, E2E and per-token decode time are compared per
experiment and stage.
"""

from __future__ import annotations

import csv
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .perfcheck import HW_IDS, _model_id

DEFAULT_DATA = Path(__file__).resolve().parents[1] / "data" / "validation" / "vllm-measured"
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
        from .errors import ScenarioError
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


def _simulate(args: tuple[dict[str, Any], dict[str, Any] | None]) -> dict[str, Any]:
    from .config import parse
    from .metrics import summarize
    from .simulation import Simulation

    raw, hw_override = args
    raw = dict(raw)
    if hw_override:
        raw["hardware"] = hw_override
    res = Simulation(parse(raw)).run()
    return summarize(res)


def predicted_saturated(st: dict[str, Any]) -> bool:
    """A stage is saturated when the engine cannot keep up: clients time out, or requests
    wait seconds for their first token."""
    failed = st["failed"] / max(1, st["requests"])
    return failed > 0.01 or (st["ttft_mean_s"] or 0.0) > 5.0


def compare(exps: list[Experiment], summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for e in exps:
        if e.exp_id not in summaries:
            continue
        s = summaries[e.exp_id]
        stages = s.get("stages") or [dict(s, stage=0, requests=s["requests_total"], failed=s["requests_failed"])]
        for r, st in zip(e.stages, stages):
            meas = measured(r)
            pred = {k: st.get(f"{k}_s") for k in METRICS}
            err = {k: ((pred[k] - meas[k]) / meas[k] if (pred[k] is not None and meas[k]) else None) for k in METRICS}
            rows.append({
                "exp_id": e.exp_id, "stage": int(r["stage_index"]), "hardware": e.scenario["pools"][0]["hardware"],
                "model": e.scenario["pools"][0]["model"], "tp": e.scenario["pools"][0]["tp"],
                "rate_per_s": e.scenario["workload"]["stages"][int(r["stage_index"])]["rate_per_s"],
                "measured": meas, "predicted": pred, "rel_err": err,
                "saturated_measured": r["saturation_hint"] == "True",
                "saturated_predicted": predicted_saturated(st),
                "completed": st.get("completed"), "failed": st.get("failed"),
            })
    return rows


def error_summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    ok = [r for r in rows if not r["saturated_measured"]]
    med, p90 = {}, {}
    for k in METRICS:
        a = sorted(abs(r["rel_err"][k]) for r in ok if r["rel_err"][k] is not None)
        med[k] = (a[len(a) // 2] if len(a) % 2 else (a[len(a) // 2 - 1] + a[len(a) // 2]) / 2) if a else None
        p90[k] = a[min(len(a) - 1, int(math.ceil(0.9 * len(a))) - 1)] if a else None
    return {"median_abs_err": med, "p90_abs_err": p90}


def run_validation(data_dir: Path = DEFAULT_DATA, workers: int | None = None,
                   hw_overrides: dict[str, dict[str, Any]] | None = None,
                   only: set[str] | None = None) -> tuple[list[Experiment], dict[str, dict[str, Any]]]:
    """Simulate every experiment that can be simulated; returns (experiments, summaries by id).

    `hw_overrides[exp_id]` replaces hardware entries for that experiment (cross-validation)."""
    exps = load_experiments(data_dir)
    todo = [e for e in exps if e.scenario is not None and (only is None or e.exp_id in only)]
    jobs = [(e.scenario, (hw_overrides or {}).get(e.exp_id)) for e in todo]
    workers = workers or os.cpu_count() or 1
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            outs = list(pool.map(_simulate, jobs))
    else:
        outs = [_simulate(j) for j in jobs]
    return exps, {e.exp_id: o for e, o in zip(todo, outs)}


def cross_validated_overrides(exps: list[Experiment], data_dir: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    """Leave-one-model-out: for each model, fit the constants on every other model's rows and
    return hardware overrides for that model's experiments (and the fitted values per model)."""
    from .calibrate import fit, overrides_for, serving_rows

    rows = serving_rows(data_dir)
    models = sorted({e.scenario["pools"][0]["model"] for e in exps if e.scenario is not None})
    over: dict[str, dict] = {}
    folds: dict[str, dict] = {}
    for m in models:
        fitted = fit([r for r in rows if r.model != m])
        folds[m] = {h: fitted[h] for h in sorted({e.scenario["pools"][0]["hardware"] for e in exps
                                                  if e.scenario is not None})}
        for e in exps:
            if e.scenario is not None and e.scenario["pools"][0]["model"] == m:
                over[e.exp_id] = overrides_for(fitted, [e.scenario["pools"][0]["hardware"]])
    return over, folds


def validate(data_dir: Path = DEFAULT_DATA, cv: bool = False, workers: int | None = None,
             out_dir: Path | None = None) -> dict[str, Any]:
    """Run the validation; returns the JSON-able report (see `dcsim validate --help`)."""
    exps = load_experiments(data_dir)
    over, folds = (cross_validated_overrides(exps, data_dir) if cv else ({}, {}))
    _, sums = run_validation(data_dir, workers, over)
    rows = compare(exps, sums)
    if out_dir is not None:
        write_scenarios(exps, Path(out_dir), over)
    rep: dict[str, Any] = {
        "mode": "leave-one-model-out cross-validation" if cv else "catalog constants",
        "experiments": rows,
        **error_summary(rows),
        "saturated": [{"exp_id": r["exp_id"], "stage": r["stage"], "predicted_saturated": r["saturated_predicted"]}
                      for r in rows if r["saturated_measured"]],
        "false_saturation": [{"exp_id": r["exp_id"], "stage": r["stage"]} for r in rows
                             if r["saturated_predicted"] and not r["saturated_measured"]],
        "skipped": [{"exp_id": e.exp_id, "why": e.why_not} for e in exps if e.scenario is None],
    }
    if cv:
        rep["folds"] = folds
    return rep


def write_scenarios(exps: list[Experiment], out_dir: Path, over: dict[str, dict] | None = None) -> None:
    import tomli_w

    out_dir.mkdir(parents=True, exist_ok=True)
    for e in exps:
        if e.scenario is None:
            continue
        sc = dict(e.scenario)
        if over and e.exp_id in over:
            sc["hardware"] = over[e.exp_id]
        head = (f"# vLLM experiment {e.exp_id} as a dcsim scenario (written by `dcsim validate`).\n"
                f"# Run: dcsim run {out_dir / (e.exp_id + '.toml')}\n")
        (out_dir / f"{e.exp_id}.toml").write_text(head + tomli_w.dumps(sc))


def format_table(rep: dict[str, Any]) -> str:
    """The human-readable report."""
    def pct(x):
        return "      -" if x is None else f"{x * 100:+6.1f}%"

    def ms(x):
        return "       -" if x is None else (f"{x * 1e3:8.1f}" if x < 100 else f"{x:7.0f}s")

    lines = [f"dcsim validate ({rep['mode']})", "",
             f"{'experiment':<44} {'st':>2} {'rate':>5}  {'TTFT meas':>9} {'pred':>8} {'err':>7}  "
             f"{'E2E err':>7} {'TPOT meas':>9} {'pred':>8} {'err':>7}  {'p90 TTFT':>8} {'p99 TTFT':>8} {'p90 E2E':>7} {'p99 E2E':>7}  sat"]
    for r in rep["experiments"]:
        m, p, e = r["measured"], r["predicted"], r["rel_err"]
        sat = ("yes" if r["saturated_measured"] else "no") + "/" + ("yes" if r["saturated_predicted"] else "no")
        lines.append(f"{r['exp_id'][:44]:<44} {r['stage']:>2} {r['rate_per_s']:>5g}  {ms(m['ttft_mean'])} {ms(p['ttft_mean'])} "
                     f"{pct(e['ttft_mean'])}  {pct(e['e2e_mean'])} {ms(m['tpot_mean'])} {ms(p['tpot_mean'])} "
                     f"{pct(e['tpot_mean'])}  {pct(e['ttft_p90']):>8} {pct(e['ttft_p99']):>8} {pct(e['e2e_p90']):>7} "
                     f"{pct(e['e2e_p99']):>7}  {sat}")
    lines += ["", "times in ms; sat = saturated measured/predicted; errors = (predicted - measured) / measured", "",
              "abs error over non-saturated stages:  " + "  ".join(
                  f"{k}: median {rep['median_abs_err'][k] * 100:.1f}% p90 {rep['p90_abs_err'][k] * 100:.1f}%"
                  for k in ("ttft_mean", "e2e_mean", "tpot_mean") if rep["median_abs_err"][k] is not None)]
    sat = rep["saturated"]
    if sat:
        lines.append(f"saturated stages predicted to saturate: {sum(s['predicted_saturated'] for s in sat)} of {len(sat)}")
    if rep["false_saturation"]:
        lines.append("predicted to saturate but did not: " + ", ".join(f"{x['exp_id']} stage {x['stage']}"
                                                                       for x in rep["false_saturation"]))
    for s in rep["skipped"]:
        lines.append(f"not simulated: {s['exp_id']} ({s['why']})")
    return "\n".join(lines)
