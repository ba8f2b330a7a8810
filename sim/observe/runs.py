"""Observed runs read back for calibration and validation: a folder written by `dcsim observe`
(its scenario and measured summary), or a vLLM `bench serve --save-result --save-detailed` JSON
(its load and lengths turned into a scenario: closed loop at `max_concurrency` when the rate is
unbounded, else Poisson (gamma with `burstiness` != 1) at `request_rate`; lengths fixed when they
all agree, else lognormal with their mean and spread, capped at their maximum)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.errors import ScenarioError
from sim.observe.record import MEASURED_KEYS


@dataclass(frozen=True)
class ObservedRun:
    """One measured run: the scenario that reproduces its requests, and its measured figures."""

    name: str
    raw: dict[str, Any]  # the scenario (TOML structure)
    base_dir: Path
    measured: dict[str, float]  # the MEASURED_KEYS the run measured (a table may lack TTFT)


def _lengths(xs: list[Any], field: str, path: Path) -> dict[str, Any]:
    vals = [int(x) for x in xs if isinstance(x, (int, float)) and x >= 1]
    if not vals:
        raise ScenarioError(str(path), f"its {field} list is empty", "save the run with --save-detailed")
    if min(vals) == max(vals):
        return {"dist": "fixed", "value": vals[0]}
    mean = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
    return {"dist": "lognormal", "mean": mean, "cv": sd / mean, "max": max(vals)}


def _vllm_bench(path: Path, d: dict[str, Any]) -> ObservedRun:
    """A vLLM `bench serve` result (times in ms in its own keys)."""
    need = ("mean_ttft_ms", "mean_tpot_ms", "output_throughput", "input_lens", "output_lens", "num_prompts")
    missing = [k for k in need if k not in d]
    if missing:
        raise ScenarioError(str(path), f"not a vLLM bench serve result with details (no {missing[0]})",
                            "save it with `vllm bench serve --save-result --save-detailed`, or point at a "
                            "dcsim observe folder")
    rate = d.get("request_rate", "inf")
    rate = float("inf") if rate in ("inf", None) else float(rate)
    conc = d.get("max_concurrency")
    n = int(d.get("completed") or d["num_prompts"])
    w: dict[str, Any] = {"num_requests": n, "prompt_tokens": _lengths(d["input_lens"], "input_lens", path),
                         "output_tokens": _lengths(d["output_lens"], "output_lens", path)}
    if math.isinf(rate):
        w.update(arrival="closed", concurrency=int(conc or n))
    else:
        burst = float(d.get("burstiness") or 1.0)
        w.update(arrival="poisson" if burst == 1.0 else "gamma", rate_per_s=rate)
        if burst != 1.0:
            w["cv"] = 1.0 / math.sqrt(burst)
    raw = {"name": path.stem, "seed": 0, "workload": w,
           "pools": [{"hardware": "h100-sxm", "model": "llama-3.1-8b", "replicas": 1}]}
    meas = {"ttft_mean_s": d["mean_ttft_ms"] / 1e3, "tpot_mean_s": d["mean_tpot_ms"] / 1e3,
            "throughput_output_tok_per_s": float(d["output_throughput"])}
    return ObservedRun(path.stem, raw, path.parent, meas)


def _observe_folder(path: Path) -> ObservedRun:
    import tomllib

    if (path / ".incomplete").exists():
        raise ScenarioError(str(path), "was not finished (dcsim observe was stopped while writing it)",
                            "observe again into a new folder")
    s = json.loads((path / "summary.json").read_text())
    if not s.get("measured"):
        raise ScenarioError(str(path), "holds a simulated run, not a measured one",
                            "point at a folder written by dcsim observe")
    raw = tomllib.loads((path / "scenario.toml").read_text())
    # calibrate fits the whole run's throughput (as bench tools report it: predict's definition)
    meas = {k: s.get("run_" + k, s.get(k)) if k.startswith("throughput") else s.get(k) for k in MEASURED_KEYS}
    if any(v is None or not v > 0 for v in meas.values()):
        raise ScenarioError(str(path), "has no completed request to calibrate on", "observe a run that completes")
    return ObservedRun(path.name, raw, path, {k: float(v) for k, v in meas.items() if v is not None})


def load_run(p: str | Path) -> ObservedRun:
    """An observe folder or a vLLM bench JSON; anything else: one ScenarioError naming it."""
    path = Path(p)
    if path.is_dir():
        if (path / "summary.json").exists() and (path / "scenario.toml").exists():
            return _observe_folder(path)
        raise ScenarioError(str(path), "is not a dcsim observe folder (no summary.json and scenario.toml)",
                            "point at a folder written by dcsim observe --out, or a vLLM bench serve JSON")
    if not path.exists():
        raise ScenarioError(str(path), "does not exist", "give an observe folder or a vLLM bench serve JSON")
    try:
        d = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ScenarioError(str(path), "is not JSON", "give an observe folder or a vLLM bench serve JSON") from None
    if not isinstance(d, dict):
        raise ScenarioError(str(path), "is JSON of another format", "give a vLLM bench serve --save-result JSON")
    return _vllm_bench(path, d)


MAX_TABLE_ROWS = 12  # rows of a table used at most (spread over its concurrencies): each is a simulation per trial


def _inferencex(path: Path, like: str, engine: str | None) -> list[ObservedRun]:
    """The rows of an InferenceX-format CSV measured on the `like` part (and `engine`): each a
    closed-loop run as `dcsim validate --hardware --source inferencex` replays it; measured
    throughput per replica (per-GPU output x the replica's GPUs), mean TPOT, mean TTFT where given."""
    import csv

    from sim.validation import inferencex

    rows, _ = inferencex.serving_rows(path)
    rows = [r for r in rows if r.hardware == like and (engine is None or r.engine == engine)]
    if not rows:
        raise ScenarioError(str(path), f"has no usable row measured on {like}" + (f" with {engine}" if engine else ""),
                            "give --like the part the table measured (and --engine its framework)")
    rows.sort(key=lambda r: (r.engine, r.tp, r.ep, r.isl, r.osl, r.conc))
    if len(rows) > MAX_TABLE_ROWS:
        step = len(rows) / MAX_TABLE_ROWS
        rows = [rows[int(i * step)] for i in range(MAX_TABLE_ROWS)]
    ttft = {}
    with open(path, newline="") as f:  # mean TTFT and TPOT: serving_rows keeps the medians only
        for c in csv.DictReader(f):
            ttft[(inferencex.PARTS.get(c["hardware"]), inferencex.ENGINES.get(c["framework"]), c["precision"],
                  int(c["isl"]), int(c["osl"]), int(c["conc"]))] = (c["mean_ttft_ms"], c["mean_tpot_ms"])
    out = []
    for r in rows:
        raw = inferencex.scenario(r)
        accels = r.ep if r.ep > 1 else r.tp
        meas = {"throughput_output_tok_per_s": r.measured_out_tok_s_per_gpu * accels}
        t_ms, p_ms = ttft.get((r.hardware, r.engine, r.precision, r.isl, r.osl, r.conc), ("", ""))
        meas["tpot_mean_s"] = float(p_ms) / 1e3 if p_ms else r.measured_tpot_s
        if t_ms:
            meas["ttft_mean_s"] = float(t_ms) / 1e3
        name = f"{path.stem}:{r.engine}-{r.precision}-tp{r.tp}-ep{r.ep}-{r.isl}x{r.osl}-c{r.conc}"
        out.append(ObservedRun(name, raw, path.parent, meas))
    return out


def load_runs(p: str | Path, like: str, engine: str | None = None) -> list[ObservedRun]:
    """What a calibrate argument names: one run (an observe folder, a vLLM bench JSON) or a
    table's runs (an InferenceX-format CSV)."""
    path = Path(p)
    if path.suffix.lower() == ".csv" and path.is_file():
        with open(path, newline="") as f:
            head = f.readline()
        if "output_tput_per_gpu" not in head or "conc" not in head:
            raise ScenarioError(str(path), "is not an InferenceX-format CSV (no output_tput_per_gpu, conc columns)",
                                "give an observe folder, a vLLM bench serve JSON, or an InferenceX CSV")
        return _inferencex(path, like, engine)
    return [load_run(path)]
