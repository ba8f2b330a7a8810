"""Prediction intervals (sim/analysis/intervals.py): in every summary, wider for borrowed
constants, none for analytic service; the shipped bounds are those of the shipped
cross-validated report, and they cover at least 85% of the measured stage means with each
model left out of its own bounds; plan --headroom and --replications."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sim.analysis.intervals import METRICS, WIDEN, fit, table
from sim.analysis.metrics import summarize
from sim.engine.simulation import Simulation
from sim.errors import ScenarioError
from sim.scenario.config import apply_overrides, parse, read_toml
from sim.studies.plan import plan

REPO = Path(__file__).resolve().parents[1]
CV_REPORT = REPO / "docs" / "validation_cv.json"  # written with docs/validation.md


def _summary(sets, path="scenarios/quickstart.toml"):
    raw = apply_overrides(read_toml(REPO / path), ["workload.num_requests=800"] + sets)
    return summarize(Simulation(parse(raw)).run())


def test_every_metric_has_an_interval_around_its_prediction():
    s = _summary([])
    pi = s["prediction_interval"]
    assert set(pi) == {f"{m}_s" for m in METRICS}
    for m in METRICS:
        lo, hi = pi[f"{m}_s"]
        assert 0 < lo < hi
        q05, q95 = table()["log_residual"].get(m, table()["log_residual"][m.replace("p99", "mean")])
        if q05 <= 0 <= q95:  # the prediction itself is a plausible measurement
            assert lo <= s[f"{m}_s"] <= hi
    assert s["prediction_interval_basis"]["hardware_status"] == "measured"


def test_borrowed_constants_widen_the_interval():
    a = _summary([])
    b = _summary(['pools.hardware="h200"'])
    assert b["prediction_interval_basis"]["hardware_status"] == "borrowed"
    for m in ("ttft_mean_s", "e2e_p99_s"):
        wa = math.log(a["prediction_interval"][m][1] / a["prediction_interval"][m][0])
        wb = math.log(b["prediction_interval"][m][1] / b["prediction_interval"][m][0])
        assert wb == pytest.approx(wa * WIDEN["borrowed"], rel=1e-9)


def test_analytic_service_has_no_roofline_interval():
    raw = {
        "name": "mm1",
        "seed": 1,
        "workload": {
            "arrival": "poisson",
            "rate_per_s": 5.0,
            "num_requests": 300,
            "prompt_tokens": {"dist": "fixed", "value": 10},
            "output_tokens": {"dist": "fixed", "value": 10},
        },
        "pools": [{"hardware": "h100-sxm", "model": "llama-3.1-8b", "service": {"dist": "exponential", "mean_s": 0.1}}],
    }
    s = summarize(Simulation(parse(raw)).run())
    assert all(v is None for v in s["prediction_interval"].values())
    assert "service times" in s["prediction_interval_basis"]["note"]


def test_shipped_bounds_are_the_reports_and_cover_85_percent_leaving_each_model_out():
    rep = json.loads(CV_REPORT.read_text())
    assert rep["mode"].startswith("leave-one-model-out")
    out = fit(rep["experiments"])
    for k, q in out["log_residual"].items():
        assert table()["log_residual"][k] == pytest.approx(list(q), abs=1e-12), k
    assert out["coverage_means"] >= 0.85
    assert table()["stages"] == out["stages"] >= 30


def test_plan_headroom_and_replications_need_at_least_as_much():
    kw = dict(target_rate=150, slo={"ttft_s": 0.25, "tpot_s": 0.05}, sets=["workload.num_requests=1500"])
    base = plan(REPO / "scenarios/quickstart.toml", **kw)["plan"]
    safe = plan(REPO / "scenarios/quickstart.toml", headroom=True, replications=2, **kw)["plan"]
    assert base and safe
    assert safe["replicas"] >= base["replicas"]
    assert safe["slo_attainment_pessimistic"] >= 0.9
    with pytest.raises(ScenarioError, match="--replications"):
        plan(REPO / "scenarios/quickstart.toml", replications=0, **kw)
