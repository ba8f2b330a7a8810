"""Prediction intervals: how far a run's latency figures may sit from what real serving would
measure, from the cross-validated residuals of `dcsim validate --cv`.

Method. For each metric m, r = ln(predicted / measured) over the calibration set's stages on
measured hardware (H100) that neither were nor are predicted saturated, each simulated with
constants fitted without its model (leave-one-model-out). With q05 and q95 split-conformal
bounds of r at 5% and 95% (order statistics floor((n+1) 0.05) and ceil((n+1) 0.95) of the n
residuals: they cover a new exchangeable residual with probability at least 90%), a prediction y
gives the 90% interval [y exp(-q95), y exp(-q05)] for the measurement. Hardware whose constants
are borrowed from another part or assumed has no residuals of its own: the interval's log
half-width is multiplied by WIDEN (an assumption, stated in sim/data/prediction_intervals.toml).
scripts/fit_intervals.py writes the bounds and checks coverage with each model's own residuals
left out of the bounds it is judged by.
The p99 of TPOT has no measurement to compare with: it gets the TPOT mean's residuals.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parents[1] / "data" / "prediction_intervals.toml"
METRICS = ("ttft_mean", "tpot_mean", "e2e_mean", "ttft_p99", "tpot_p99", "e2e_p99")
ORDER = {"measured": 0, "borrowed": 1, "assumed": 2}
_cache: dict[str, Any] = {}
FITTED = ("ttft_mean", "tpot_mean", "e2e_mean", "ttft_p99", "e2e_p99")  # the metrics validate measures
LEVEL = 0.9
# Assumed, not measured: borrowed constants come from another part, so their errors add to the
# fit's; assumed ones have no measurement at all. The log half-width is multiplied by these.
WIDEN = {"measured": 1.0, "borrowed": 1.5, "assumed": 2.5}


def residuals(rows: list[dict], metric: str) -> list[tuple[str, float]]:
    """(model, ln(predicted / measured)) of the stages neither measured nor predicted saturated
    (a run dcsim calls saturated is marked unstable, where intervals do not apply), on hardware
    whose constants are measured (the others' errors are what WIDEN stands for)."""
    from sim.perf.catalog import builtin_catalog

    hw = builtin_catalog().hardware
    out = []
    for r in rows:
        p, m = r["predicted"][metric], r["measured"][metric]
        usable = not r["saturated_measured"] and not r["saturated_predicted"] and p and m
        if usable and hw[r["hardware"]].calibration_status == "measured":
            out.append((r["model"], math.log(p / m)))
    return out


def quantiles(x: list[float]) -> tuple[float, float]:
    """Split-conformal bounds for each tail at (1 - LEVEL) / 2: the floor((n + 1) a)-th smallest
    and ceil((n + 1) (1 - a))-th smallest of n residuals (clipped to the sample), which cover a
    new exchangeable residual with probability at least LEVEL (plain empirical quantiles of a
    few dozen points cover less, as measured: 83% leaving each model out)."""
    a = (1 - LEVEL) / 2
    v = np.sort(np.asarray(x))
    n = len(v)
    lo = max(1, int(math.floor((n + 1) * a)))
    hi = min(n, int(math.ceil((n + 1) * (1 - a))))
    return float(v[lo - 1]), float(v[hi - 1])


def fit(rows: list[dict]) -> dict[str, Any]:
    """Bounds per metric from `dcsim validate --cv` rows, and their coverage with each model's
    own residuals left out of the bounds it is judged by (nested leave-one-model-out)."""
    fitted, coverage = {}, {}
    for k in FITTED:
        res = residuals(rows, k)
        fitted[k] = quantiles([v for _, v in res])
        hit = 0
        for m, v in res:
            lo, hi = bounds(*quantiles([w for mm, w in res if mm != m]), 1.0)
            hit += lo <= math.exp(-v) <= hi  # measured / predicted inside [lo, hi]
        coverage[k] = (hit, len(res))
    means = [coverage[k] for k in ("ttft_mean", "tpot_mean", "e2e_mean")]
    return {"log_residual": fitted, "coverage_nested": {k: f"{h}/{n}" for k, (h, n) in coverage.items()},
            "coverage_means": sum(h for h, _ in means) / sum(n for _, n in means),
            "stages": len(residuals(rows, "ttft_mean"))}


def write_table(out: dict[str, Any]) -> None:
    """Store fit()'s bounds in sim/data/prediction_intervals.toml."""
    lines = ["# Prediction intervals (sim/analysis/intervals.py), written by scripts/fit_intervals.py (or",
             "# scripts/validation_report.py) from `dcsim validate --cv` (leave-one-model-out): split-conformal",
             "# 5% and 95% bounds of ln(predicted / measured) over the non-saturated stages of",
             "# data/validation/vllm-measured.",
             f"# Coverage leaving each model out: {out['coverage_nested']}; stage means {out['coverage_means']:.1%}.",
             f"level = {LEVEL}", f"stages = {out['stages']}", "", "[log_residual]"]
    lines += [f"{k} = [{q[0]!r}, {q[1]!r}]" for k, q in out["log_residual"].items()]
    lines += ["", "# assumed: the log half-width is multiplied by these for borrowed and assumed constants",
              "[widen]"] + [f"{k} = {v}" for k, v in WIDEN.items()] + [""]
    DATA.write_text("\n".join(lines))
    _cache.clear()


def table() -> dict[str, Any]:
    if "t" not in _cache:
        with open(DATA, "rb") as fh:
            _cache["t"] = tomllib.load(fh)
    return _cache["t"]


def bounds(q05: float, q95: float, widen: float) -> tuple[float, float]:
    """(low, high) factors on a prediction for log-residual quantiles q05, q95, widened."""
    c, h = (q05 + q95) / 2, (q95 - q05) / 2 * widen
    return math.exp(-(c + h)), math.exp(-(c - h))


def interval(metric: str, y: float | None, status: str) -> list[float] | None:
    """The 90% interval of metric `metric` (e.g. 'ttft_p99') predicted as y, on hardware whose
    constants are `status` (measured / borrowed / assumed)."""
    if y is None:
        return None
    t = table()
    q05, q95 = t["log_residual"][metric if metric in t["log_residual"] else metric.replace("p99", "mean")]
    lo, hi = bounds(q05, q95, float(t["widen"][status]))
    return [y * lo, y * hi]


def worst_status(statuses: dict[str, str]) -> str:
    return max(statuses.values(), key=lambda s: ORDER.get(s, 2)) if statuses else "measured"


def prediction_interval(summary: dict[str, Any]) -> tuple[dict[str, list[float] | None], dict[str, Any]]:
    """(prediction_interval, prediction_interval_basis) for a run summary: every metric of
    METRICS as `<metric>_s: [low, high]`, and what the interval rests on."""
    st = summary.get("calibration_status") or {}
    t = table()
    basis: dict[str, Any] = {"level": float(t["level"]),
                             "method": "leave-one-model-out residuals of dcsim validate --cv",
                             "calibration_stages": int(t["stages"])}
    if not st:  # analytic service only: the user gave the service times; no roofline error applies
        basis["note"] = "no roofline pool: service times are the scenario's own"
        return {f"{m}_s": None for m in METRICS}, basis
    status = worst_status(st)
    basis["hardware_status"] = status
    basis["widen"] = float(t["widen"][status])
    if summary.get("stable") is False:
        basis["note"] = "unstable run: the calibration has no residuals for transients"
    return {f"{m}_s": interval(m, summary.get(f"{m}_s"), status) for m in METRICS}, basis


def pessimistic_factors(statuses: dict[str, str]) -> tuple[float, float]:
    """Factors on every request's TTFT and TPOT at the intervals' pessimistic end (plan
    --headroom): the upper ends of the mean TTFT's and mean TPOT's intervals over the
    prediction (the level the whole distribution may sit at; the tails are the simulator's)."""
    status = worst_status(statuses)
    t = table()
    w = float(t["widen"][status])
    q_ttft, q_tpot = t["log_residual"]["ttft_mean"], t["log_residual"]["tpot_mean"]
    return bounds(q_ttft[0], q_ttft[1], w)[1], bounds(q_tpot[0], q_tpot[1], w)[1]


def why_wide(metric: str, statuses: dict[str, str]) -> str:
    """One sentence on what drives the width of `metric`'s interval (plan prints it): the
    calibration residuals it rests on and the widening for borrowed or assumed constants."""
    t = table()
    key = metric if metric in t["log_residual"] else metric.replace("p99", "mean")
    q05, q95 = t["log_residual"][key]
    status = worst_status(statuses)
    w = float(t["widen"][status])
    lo, hi = bounds(q05, q95, w)
    parts = [f"measured {metric} may be {lo:.2g}x to {hi:.2g}x the prediction: on the {t['stages']} H100 vLLM "
             f"calibration stages (leave-one-model-out) the predicted {key} ran from {math.exp(q05):.2g}x to "
             f"{math.exp(q95):.2g}x the measured one"]
    if w != 1.0:
        worse = [h for h, s in statuses.items() if s == status]
        parts.append(f"the spread widened x{w:g} in log terms because {', '.join(worse)} "
                     f"{'has' if len(worse) == 1 else 'have'} {status} constants (no residuals of its own; "
                     "dcsim calibrate on measured runs narrows it)")
    return "; ".join(parts) + "."
