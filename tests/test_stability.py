"""Stability flags (issue 11): a run at 1.5x capacity says stable = false with a reason; a
stable queue says true. Calibration status is data: every accelerator carries one, and a run on
borrowed constants says so in one line."""

import json
from pathlib import Path

import pytest

from helpers import analytic
from sim.analysis.metrics import summarize
from sim.cli import main
from sim.engine.simulation import Simulation
from sim.scenario.config import load

REPO = Path(__file__).resolve().parents[1]
QUICK = REPO / "scenarios" / "quickstart.toml"


def _quick(rate: float, n: int = 6000) -> dict:
    return summarize(Simulation(load(QUICK, [f"workload.rate_per_s={rate}", f"workload.num_requests={n}",
                                             "run.timeseries=false"])).run())


def test_a_run_at_one_and_a_half_times_capacity_is_unstable():
    capacity = _quick(2000.0, 4000)["throughput_req_per_s"]  # saturated: departures at capacity
    over = _quick(1.5 * capacity)
    assert over["stable"] is False and over["instability"].startswith("arrival rate above capacity"), over
    under = _quick(0.5 * capacity)
    assert under["stable"] is True and under["instability"] is None


@pytest.mark.parametrize("rho, stable", [(0.5, True), (0.8, True), (1.3, False)])
def test_mm1_stability_matches_theory(rho, stable):
    s = summarize(Simulation(analytic(rho, 20000, seed=4)).run())  # service mean 1 s: rho = rate
    assert s["stable"] is stable, s["instability"]


def test_every_accelerator_has_a_calibration_status(capsys):
    assert main(["catalog", "--json"]) == 0
    hw = json.loads(capsys.readouterr().out)["hardware"]
    assert {h["calibration_status"] for h in hw.values()} <= {"measured", "borrowed", "assumed"}
    assert hw["h100-sxm"]["calibration_status"] == "measured"
    assert hw["h200"]["calibration_status"] == "borrowed"
    assert hw["crescent-island"]["calibration_status"] == "assumed"


def test_a_run_on_h200_prints_the_borrowed_constants_line(capsys):
    assert main(["run", str(QUICK), "--json", "--set", 'pools.hardware="h200"', "--set",
                 "workload.num_requests=50"]) == 0
    out, err = capsys.readouterr()
    notes = [line for line in err.splitlines() if line.startswith("dcsim: note: ")]
    # (its bandwidth and GEMM efficiencies from measured operator tables, the rest from the H100)
    assert len(notes) == 1 and "h200: constants borrowed" in notes[0] and "operator tables" in notes[0]
    assert json.loads(out)["calibration_status"] == {"h200": "borrowed"}
    assert main(["run", str(QUICK), "--json", "--set", "workload.num_requests=50"]) == 0
    assert "dcsim: note:" not in capsys.readouterr().err  # h100-sxm is measured
