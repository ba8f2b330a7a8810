"""`dcsim validate --power`: per-accelerator serving power, measured (data/validation/power:
ML.ENERGY Benchmark v3 on H100 and B200) against the power model (sim/perf/power.py), and the
fit of its two activity constants (clock_power_frac, memory_power_frac) per accelerator.

Each ML.ENERGY row is a vLLM server in steady state at `max_num_seqs` = B: continuous batching
with the prefills of newly admitted requests interleaved. dcsim's picture of it is the average
engine step: B decode sequences at context input + output / 2, carrying B x input / output
prefill tokens (each finished request is replaced by a new one, whose prompt is prefilled in
the steps of the others' decode). Its power at full clock is compared with the measured per-GPU
power. The prompts' lengths are not in the data: INPUT_TOK per task is an assumption.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sim.perf.catalog import Hardware, builtin_catalog
from sim.perf.power import at_clock
from sim.perf.roofline import PerfModel, roofline_terms

DATA = Path(__file__).resolve().parents[2] / "data" / "validation" / "power" / "power_calibration.csv"
MODELS = {  # ML.ENERGY model names -> catalog ids (the rows whose model the catalog has)
    "Qwen/Qwen3-8B": "qwen3-8b", "Qwen/Qwen3-14B": "qwen3-14b", "Qwen/Qwen3-32B": "qwen3-32b",
    "Qwen/Qwen3-30B-A3B-Instruct-2507": "qwen3-30b-a3b", "Qwen/Qwen3-30B-A3B-Thinking-2507": "qwen3-30b-a3b",
    "Qwen/Qwen3-Coder-30B-A3B-Instruct": "qwen3-30b-a3b", "meta-llama/Llama-3.1-8B-Instruct": "llama-3.1-8b",
}
HARDWARE = {"H100": "h100-sxm", "B200": "b200"}
REFERENCE = "h100-sxm"  # parts without power measurements borrow its constants
# Mean prompt tokens per task: ASSUMED (ML.ENERGY publishes output lengths, not prompt lengths):
# LMArena chat turns are short, GPQA questions a few hundred tokens with their choices, and
# Sourcegraph fill-in-the-middle prompts carry file context.
INPUT_TOK = {"lm-arena-chat": 500, "gpqa": 300, "sourcegraph-fim": 2000}
GRID_CLOCK = np.round(np.arange(0.0, 0.8001, 0.01), 2)
GRID_MEMORY = np.round(np.arange(0.05, 1.0001, 0.01), 2)


@dataclass(frozen=True)
class PowerRow:
    hardware: str
    model: str
    task: str
    tp: int
    batch: float  # the run's average batch
    output_tok: float
    measured_w: float  # per GPU
    source: str


def _note(notes: str, key: str) -> float | None:
    m = re.search(rf"{key}=([\d.]+)", notes)
    return float(m.group(1)) if m else None


def power_rows(path: Path = DATA) -> list[PowerRow]:
    """The measured steady-state per-GPU power rows whose model and accelerator dcsim has."""
    out = []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            if r["metric"] != "gpu_power_w" or r["phase"] != "mixed_steady_state":
                continue
            model, hw = MODELS.get(r["model"]), HARDWARE.get(r["accelerator"])
            task = r["source"].rsplit("__", 1)[-1].removesuffix(".json")
            tp, batch = _note(r["notes"], "TP"), _note(r["notes"], "avg_batch")
            if model is None or hw is None or task not in INPUT_TOK or not tp or not batch:
                continue
            out.append(PowerRow(hw, model, task, int(tp), batch, float(r["output_len"]), float(r["value"]),
                                r["source"]))
    return out


def _average_step(row: PowerRow, hw: Hardware) -> tuple[PerfModel, tuple]:
    """The row's average engine step (module docstring): its PerfModel and step_power arguments."""
    pm = PerfModel(hw, builtin_catalog().models[row.model], row.tp)
    b = max(1, int(round(row.batch)))
    inp = INPUT_TOK[row.task]
    p_tok = max(0, int(round(b * inp / row.output_tok)))
    return pm, (b, b * (inp + row.output_tok / 2), p_tok, 0.0, p_tok * (inp / 2.0), b + (1 if p_tok else 0))


def predict_w(row: PowerRow, hw: Hardware) -> float:
    """dcsim's per-GPU power for the row's average step, at full clock."""
    pm, step = _average_step(row, hw)
    return pm.step_power(*step).power_w


def _median_abs(e: list[float]) -> float:
    return float(np.median(np.abs(e))) if e else float("nan")


MEASURED_IDLE = {"h100-sxm": "measured loaded idle (gpu-parking-tax)"}  # idle_w with a measurement here


def fit(rows: list[PowerRow]) -> dict[str, dict[str, Any]]:
    """clock_power_frac and memory_power_frac per accelerator: on the grid, the pair that
    minimises the median absolute error of predicted per-GPU power (ties: the mean) for parts
    with rows; every other catalog part borrows REFERENCE's (as scripts/calibrate.py does)."""
    cat = builtin_catalog()
    label = {v: k for k, v in HARDWARE.items()}
    out: dict[str, dict[str, Any]] = {}
    for hid in sorted({r.hardware for r in rows}):
        own = [r for r in rows if r.hardware == hid]
        hw = cat.hardware[hid]
        # the roofline terms do not depend on the power constants: once per row, then only the
        # power formula (at_clock, what step_power evaluates) per grid point
        terms = [roofline_terms(pm.constants, *step, False) for pm, step in (_average_step(r, hw) for r in own)]
        meas = np.array([r.measured_w for r in own])
        best: tuple[tuple[float, float], float, float] = ((np.inf, np.inf), 0.0, 0.0)
        for k in GRID_CLOCK:
            for m in GRID_MEMORY:
                p = np.array([at_clock(t[0], t[1], t[2], t[3], t[4], 1.0, hw.idle_w, hw.tdp_w - hw.idle_w, float(m),
                                       float(k))[1] for t in terms])
                e = np.abs(p / meas - 1)
                key = (float(np.median(e)), float(np.mean(e)))
                if key < best[0]:
                    best = (key, float(k), float(m))
        out[hid] = {"clock_power_frac": best[1], "memory_power_frac": best[2], "median_abs_err": best[0][0],
                    "rows": len(own),
                    "power_calibration": f"sim/validation/power.py fit on {len(own)} ML.ENERGY v3 {label[hid]} rows "
                                         f"(data/validation/power); idle_w {MEASURED_IDLE.get(hid, 'assumed')}"}
    if REFERENCE in out:
        for hid in cat.hardware:
            if hid not in out:
                out[hid] = {"clock_power_frac": out[REFERENCE]["clock_power_frac"],
                            "memory_power_frac": out[REFERENCE]["memory_power_frac"],
                            "power_calibration": f"borrowed from {REFERENCE} (no power measurement)"}
    return out


def validate_power(path: Path = DATA) -> dict[str, Any]:
    """Measured against predicted per-GPU power, per row, with the catalog's constants."""
    cat = builtin_catalog()
    rows = power_rows(path)
    res: list[dict[str, Any]] = []
    for r in rows:
        p = predict_w(r, cat.hardware[r.hardware])
        res.append({"hardware": r.hardware, "model": r.model, "task": r.task, "tp": r.tp, "batch": r.batch,
                    "measured_w": r.measured_w, "predicted_w": p, "rel_err": p / r.measured_w - 1})
    by = {
        h: _median_abs([x["rel_err"] for x in res if x["hardware"] == h]) for h in sorted({x["hardware"] for x in res})
    }
    return {"rows": res, "median_abs_err": _median_abs([x["rel_err"] for x in res]), "median_abs_err_by_hardware": by,
            "input_tokens_assumed": INPUT_TOK}


def format_power(rep: dict[str, Any]) -> str:
    lines = [
        "dcsim validate --power: per-GPU serving power, ML.ENERGY v3 (measured) against dcsim",
        "",
        f"{'hardware':<9} {'model':<14} {'task':<16} {'tp':>2} {'batch':>6} {'measured W':>10} "
        f"{'pred W':>7} {'err':>7}",
    ]
    for x in rep["rows"]:
        lines.append(f"{x['hardware']:<9} {x['model']:<14} {x['task']:<16} {x['tp']:>2} {x['batch']:>6.1f} "
                     f"{x['measured_w']:>10.1f} {x['predicted_w']:>7.1f} {x['rel_err'] * 100:>+6.1f}%")
    lines += [
        "",
        f"median absolute error: {rep['median_abs_err'] * 100:.1f}% over {len(rep['rows'])} rows ("
        + ", ".join(f"{h} {v * 100:.1f}%" for h, v in rep["median_abs_err_by_hardware"].items())
        + ")",
        "prompt lengths per task are assumed: " + ", ".join(f"{k} {v}" for k, v in rep["input_tokens_assumed"].items()),
    ]
    return "\n".join(lines)
