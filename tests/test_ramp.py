"""Generators that ramp (sim/facility/ramp.py): the closed form of one interval, and a load step
beyond a turbine's ramp rate, short of power without a battery and covered with one, with the
energy accounting still exact and both drivers equal."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sim.analysis.metrics import summarize
from sim.engine.simulation import Simulation
from sim.facility.ramp import ramp_step
from sim.scenario.config import apply_overrides, parse, read_toml

REPO = Path(__file__).resolve().parents[1]


def test_one_interval_by_hand():
    # load 100 W, output 40 W, 5 W/s, a 20 W step taken at once: short while 100 - 40 - 20 - 5 t > 0, 8 s
    g, bj, used, short = ramp_step(10.0, 100.0, 40.0, 5.0, 20.0, 1e9, 0.0, 0.0, 0.0)
    assert (g, bj, used, short) == (90.0, 0.0, 0.0, 8.0)
    # a battery of 50 W / 1000 J covers the 40 x 8 - 5 x 8^2 / 2 = 160 J short
    g, bj, used, short = ramp_step(10.0, 100.0, 40.0, 5.0, 20.0, 1e9, 0.0, 50.0, 1000.0)
    assert (g, bj, used, short) == (90.0, 840.0, 160.0, 0.0)
    # too little battery power: nothing drawn, the time counts
    assert ramp_step(10.0, 100.0, 40.0, 5.0, 20.0, 1e9, 0.0, 30.0, 1000.0)[1:] == (1000.0, 0.0, 8.0)
    # output follows a falling load at once; the grid (base) serves first; capacity bounds the target
    assert ramp_step(1.0, 50.0, 80.0, 5.0, 0.0, 1e9, 0.0, 0.0, 0.0)[0] == 50.0
    assert ramp_step(1.0, 100.0, 60.0, 5.0, 0.0, 1e9, 50.0, 0.0, 0.0) == (50.0, 0.0, 0.0, 0.0)
    assert ramp_step(100.0, 100.0, 0.0, 5.0, 0.0, 70.0, 0.0, 0.0, 0.0) == (70.0, 0.0, 0.0, 14.0)
    assert ramp_step(1.0, 100.0, math.nan, 5.0, 0.0, 1e9, 0.0, 0.0, 0.0)[0] == 100.0  # started synchronised


def _step_scenario(sets=(), battery=False):
    raw = read_toml(REPO / "scenarios" / "tent_trip.toml")
    raw["workload"].pop("rate_per_s", None)
    raw["workload"].pop("duration_s", None)
    raw["workload"]["stages"] = [{"rate_per_s": 2.0, "duration_s": 60.0}, {"rate_per_s": 30.0, "duration_s": 60.0}]
    raw["facility"]["sources"][0].pop("trip_at_s")
    raw["facility"]["sources"][0]["units"] = 4
    raw["facility"]["sources"][0]["ramp_mw_per_s"] = 0.0002  # 0.2 kW/s a unit: the step takes minutes
    raw["facility"]["sources"][0]["step_load_frac"] = 0.05
    raw["facility"]["manager"]["policy"] = "none"
    raw["failures"] = {}
    if battery:  # 100 kW / 50 kWh
        raw["facility"]["sources"].append({"name": "bess", "kind": "battery", "mw": 0.1, "mwh": 0.05})
    return parse(apply_overrides(raw, list(sets)))


@pytest.mark.parametrize("engine", ["compiled", "simpy"])
def test_a_load_step_beyond_the_ramp_is_short_without_a_battery_and_covered_with_one(engine):
    base = _step_scenario([f'run.engine="{engine}"'])
    res = Simulation(base).run()
    s = summarize(res)
    assert s["ramp_limit_exceeded_s"] > 1.0 and s["power_limit_exceeded_s"] == 0.0
    assert s["max_ramp_mw_per_s"] > 0.0
    led = res.ledger
    assert led.energy_it_j == pytest.approx(led.step_energy_j, rel=1e-9)  # accounting still exact
    gen = np.asarray(led.samples["generation_w"], float)
    fac = np.asarray(led.samples["facility_w"], float)
    ok = ~np.isnan(gen)  # (the first sample precedes any interval)
    assert np.any(gen[ok] < fac[ok] - 1000.0)  # the output lags the load while it ramps ...
    assert np.all(gen[ok] <= np.maximum.accumulate(fac[ok]) + 1e-6)  # ... and never leads it

    res_b = Simulation(_step_scenario([f'run.engine="{engine}"'], battery=True)).run()
    sb = summarize(res_b)
    assert sb["ramp_limit_exceeded_s"] == 0.0 and sb["battery_used_j"] > 0.0
    soc = np.asarray(res_b.ledger.samples["battery_soc"], float)
    assert soc[0] == pytest.approx(1.0) and 0.0 < soc[-1] < 1.0 and np.all(np.diff(soc) <= 1e-12)
    assert res_b.ledger.energy_it_j == pytest.approx(res_b.ledger.step_energy_j, rel=1e-9)


def test_both_drivers_count_the_same_ramp():
    a = summarize(Simulation(_step_scenario(['run.engine="compiled"'])).run())
    b = summarize(Simulation(_step_scenario(['run.engine="simpy"'])).run())
    for k in ("ramp_limit_exceeded_s", "battery_used_j", "energy_j", "max_ramp_mw_per_s"):
        assert a[k] == b[k], k


@pytest.mark.parametrize("key,value", [("ramp_mw_per_s", "-0.1"), ("ramp_mw_per_s", "0"), ("step_load_frac", "1.5"),
                                       ("step_load_frac", "-1")])
def test_bad_ramp_or_step_is_one_line_naming_the_field(key, value):
    r = subprocess.run([sys.executable, "-m", "sim", "run", "scenarios/tent_trip.toml", "--set",
                        f"facility.sources.{key}={value}"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and key in r.stderr and "Traceback" not in r.stderr
