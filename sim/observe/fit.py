"""`dcsim calibrate`: fit a hardware profile's step-time constants on observed runs.

Each run is replayed by simulation (its own scenario: the same requests, arrivals and lengths),
one replica pool on the candidate part `NEW_ID` (`LIKE_ID`'s specs and constants, with trial
values of PARAMS), the model, TP and engine given; the objective is the mean |log(predicted /
measured)| of mean TTFT, mean TPOT and output throughput over the runs. It is minimised by
Nelder-Mead in log space (the step formula is a max of linear terms and a simulation is
piecewise: no gradients). The same step formula as every
other command, so the profile means the same thing in `run`, `perf` and `plan`.

Errors are reported in sample and leave-one-run-out (each run predicted by the constants fitted
without it; with one run there is none)."""

from __future__ import annotations

import copy
import dataclasses
import math
import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim.errors import ScenarioError
from sim.observe.record import MEASURED_KEYS
from sim.observe.runs import ObservedRun
from sim.perf.catalog import Hardware, builtin_catalog, load_catalog_file

CONTINUOUS = ("bw_efficiency", "flops_efficiency", "step_overhead_s", "seq_overhead_s", "request_overhead_s")
PARAMS = CONTINUOUS + ("output_lag_steps",)
MAX_EVALS = 120  # simplex iterations per start
RESTARTS = 3
COLD_LOO = 4  # runs up to which each leave-one-out fit starts afresh
WARM_EVALS = 40
# every constant is searched as its log (no flat region for the simplex to stall in); an overhead
# of zero starts here instead (and can shrink to nothing from there)
FLOORS = {"step_overhead_s": 1e-3, "seq_overhead_s": 3e-5, "request_overhead_s": 2e-3}
BOUNDS = {"bw_efficiency": (0.02, 1.0), "flops_efficiency": (0.02, 1.0)}


@dataclass(frozen=True)
class Setup:
    """What the runs are replayed on."""

    new_id: str
    like: Hardware
    model: str | None
    tp: int | None
    engine: str | None
    dtype: str


def table(s: Setup, x: dict[str, float]) -> dict[str, Any]:
    """The `[hardware.NEW_ID]` table: the like part's fields with x's constants."""
    t = {f.name: getattr(s.like, f.name) for f in dataclasses.fields(s.like) if f.name != "id"}
    t = {k: (dict(v) if hasattr(v, "items") else v) for k, v in t.items() if v is not None}
    for k, v in x.items():
        if k == "flops_efficiency":
            t["flops_efficiency_dtype"] = {**t.get("flops_efficiency_dtype", {}), s.dtype: v}
        t[k] = v
    return t


def scenario(run: ObservedRun, s: Setup, hw: dict[str, Any]) -> dict[str, Any]:
    """The run's scenario on the candidate part."""
    raw = copy.deepcopy(run.raw)
    raw.pop("catalog", None)
    raw["hardware"] = {**raw.get("hardware", {}), s.new_id: hw}
    for p in raw.get("pools", []):
        p["hardware"] = s.new_id
        for k, v in (("model", s.model), ("tp", s.tp), ("engine", s.engine)):
            if v is not None:
                p[k] = v
    raw.setdefault("run", {})["timeseries"] = False
    return raw


def predict(run: ObservedRun, s: Setup, hw: dict[str, Any]) -> dict[str, float]:
    """The simulated MEASURED_KEYS of the run on the candidate part (summarize's definitions:
    completed requests from the warm-up on, throughput from then to the last completion)."""
    from sim.engine.recorder import COMPLETED
    from sim.engine.simulation import Simulation
    from sim.progress import Reporter
    from sim.scenario.config import parse

    sc = parse(scenario(run, s, hw), run.base_dir)
    res = Simulation(sc, report=Reporter()).run()
    from sim.analysis.metrics import latency_stats

    wl, tb, warm = res.workload, res.requests, sc.workload.warmup_s
    sel = (tb.status == COMPLETED) & (wl.arrival_s >= warm)
    if not sel.any():
        return {k: float("nan") for k in MEASURED_KEYS}
    lat = latency_stats(res, sel)  # the figures summarize reports, without the rest of the summary
    window = max(float(tb.finish_s[sel].max()) - warm, 1e-12)
    return {"ttft_mean_s": lat["ttft_mean_s"] or float("nan"), "tpot_mean_s": lat["tpot_mean_s"] or float("nan"),
            "throughput_output_tok_per_s": float(wl.output_tokens[sel].sum()) / window}


def _loss(runs: list[ObservedRun], s: Setup, x: dict[str, float]) -> float:
    hw = table(s, x)
    errs = []
    for r in runs:
        p = predict(r, s, hw)
        for k in r.measured:  # what the run measured (a table may lack TTFT)
            errs.append(abs(math.log(p[k] / r.measured[k])) if p[k] > 0 else 10.0)  # nan > 0 is False
    return sum(errs) / len(errs)


def start(s: Setup) -> dict[str, float]:
    h = s.like
    return {"bw_efficiency": h.bw_efficiency, "flops_efficiency": h.flops_efficiency_for(s.dtype),
            "step_overhead_s": h.step_overhead_s, "seq_overhead_s": h.seq_overhead_s,
            "request_overhead_s": h.request_overhead_s, "output_lag_steps": h.output_lag_steps}


def fit(runs: list[ObservedRun], s: Setup) -> tuple[dict[str, float], float]:
    """The constants minimising the loss on `runs`, and the loss: Nelder-Mead over the continuous
    constants in log space (they trade off along ridges: a fixed step cost against a lower
    bandwidth), from the like part's values, for each output lag in turn."""
    fits = []
    for lag in sorted({s.like.output_lag_steps, 0}):
        x, loss = _simplex(runs, s, {**start(s), "output_lag_steps": lag})
        for _ in range(RESTARTS):  # a fresh simplex at the best point: a collapsed one stalls on ridges
            x2, loss2 = _simplex(runs, s, x)
            if loss2 >= loss - 1e-4:
                break
            x, loss = x2, loss2
        fits.append((x, loss))
    return min(fits, key=lambda f: f[1])


def _to_x(z: np.ndarray, lag: int) -> dict[str, float]:
    x: dict[str, float] = {"output_lag_steps": lag}
    for k, v in zip(CONTINUOUS, z, strict=True):
        lo, hi = BOUNDS.get(k, (0.0, 10.0))
        x[k] = min(max(math.exp(v), lo), hi)
    return x


def _simplex(runs: list[ObservedRun], s: Setup, x0: dict[str, float],
             evals: int = MAX_EVALS) -> tuple[dict[str, float], float]:
    lag = int(x0["output_lag_steps"])
    z0 = np.array([math.log(max(x0[k], FLOORS.get(k, 0.0))) for k in CONTINUOUS])
    f = lambda z: _loss(runs, s, _to_x(z, lag))  # noqa: E731
    pts = [z0] + [z0 + np.eye(len(z0))[i] * math.log(3.0) for i in range(len(z0))]
    vals = [f(p) for p in pts]
    for _ in range(evals):
        order = np.argsort(vals)
        pts, vals = [pts[i] for i in order], [vals[i] for i in order]
        if vals[-1] - vals[0] < 1e-5:
            break
        c = np.mean(pts[:-1], axis=0)
        r = c + (c - pts[-1])
        fr = f(r)
        if fr < vals[0]:
            e = c + 2.0 * (c - pts[-1])
            fe = f(e)
            pts[-1], vals[-1] = (e, fe) if fe < fr else (r, fr)
        elif fr < vals[-2]:
            pts[-1], vals[-1] = r, fr
        else:
            k = c + 0.5 * (pts[-1] - c)
            fk = f(k)
            if fk < vals[-1]:
                pts[-1], vals[-1] = k, fk
            else:  # shrink towards the best
                pts = [pts[0]] + [pts[0] + 0.5 * (p - pts[0]) for p in pts[1:]]
                vals = [vals[0]] + [f(p) for p in pts[1:]]
    i = int(np.argmin(vals))
    return _to_x(pts[i], lag), float(vals[i])


def errors(runs: list[ObservedRun], s: Setup, x: dict[str, float]) -> list[dict[str, float]]:
    """Per run: predicted / measured - 1 of each measured key."""
    hw = table(s, x)
    out = []
    for r in runs:
        p = predict(r, s, hw)
        out.append({k: p[k] / r.measured[k] - 1.0 for k in r.measured})
    return out


def calibrate(runs: list[ObservedRun], s: Setup) -> dict[str, Any]:
    """Fit on every run; in-sample and leave-one-run-out errors per run and metric."""
    if not runs:
        raise ScenarioError("DIR", "no observed run given", "name one or more dcsim observe folders")
    x, loss = fit(runs, s)
    rep: dict[str, Any] = {"constants": x, "loss": loss, "runs": [r.name for r in runs],
                           "in_sample": errors(runs, s, x), "leave_one_out": []}
    if len(runs) > 1:
        for i, r in enumerate(runs):
            rest = runs[:i] + runs[i + 1:]
            # a whole fit without the run, up to COLD_LOO runs; beyond, one simplex from the fit on
            # every run (cheaper, and said so: the held-out run then shaped its start)
            xi = fit(rest, s)[0] if len(runs) <= COLD_LOO else _simplex(rest, s, x, WARM_EVALS)[0]
            rep["leave_one_out"].append(errors([r], s, xi)[0])
        rep["leave_one_out_start"] = "cold" if len(runs) <= COLD_LOO else "warm (from the fit on every run)"
    return rep


def median_abs(rows: list[dict[str, float]], k: str) -> float | None:
    xs = [abs(e[k]) for e in rows if k in e]
    return statistics.median(xs) if xs else None


def profile_toml(rep: dict[str, Any], s: Setup) -> dict[str, Any]:
    """The profile file: `[hardware.NEW_ID]` (calibration_status measured, naming its runs) and
    `[calibration.NEW_ID]` (what it rests on: runs, model, TP, engine, errors)."""
    basis = rep["leave_one_out"] or rep["in_sample"]
    which = "leave-one-run-out" if rep["leave_one_out"] else "in-sample (one run: no held-out check)"
    errs = ", ".join(f"{k} {median_abs(basis, k):.1%}" for k in MEASURED_KEYS if median_abs(basis, k) is not None)
    hw = table(s, rep["constants"])
    hw["calibration_status"] = "measured"
    hw["calibration"] = (f"dcsim calibrate: fitted on {len(rep['runs'])} observed run(s) ({', '.join(rep['runs'])}) "
                         f"from {s.like.id}'s constants; {which} median |error| {errs}")
    cal = {"like": s.like.id, "runs": rep["runs"], "dtype": s.dtype,
           **{k: v for k, v in (("model", s.model), ("tp", s.tp), ("engine", s.engine)) if v is not None},
           "in_sample": rep["in_sample"], "leave_one_out": rep["leave_one_out"]}
    return {"hardware": {s.new_id: hw}, "calibration": {s.new_id: cal}}


def load_profile(path: Any) -> tuple[Setup, dict[str, Any]]:
    """A profile written by calibrate: its Setup and its hardware table."""
    from pathlib import Path

    from sim.perf.catalog import load_toml

    p = Path(path)
    if not p.is_file():
        raise ScenarioError("--profile", f"{p} is not a file", "give a PROFILE.toml written by dcsim calibrate")
    raw = load_toml(p)
    cal = raw.get("calibration") or {}
    hws = raw.get("hardware") or {}
    ids = [k for k in hws if k in cal]
    if len(ids) != 1:
        raise ScenarioError("--profile", f"{p} holds no profile written by dcsim calibrate",
                            "give the PROFILE.toml that dcsim calibrate --out wrote")
    cat = builtin_catalog().copy()
    load_catalog_file(cat, p)  # checks every field
    c = cal[ids[0]]
    s = Setup(ids[0], cat.get_hardware(c.get("like", ids[0])), c.get("model"), c.get("tp"), c.get("engine"),
              c.get("dtype", "bf16"))
    return s, dict(hws[ids[0]])
