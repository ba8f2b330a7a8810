"""The power model (sim/perf/power.py) against the behaviour measured on real parts: a cap lowers
the clock at little cost to memory-bound decode and slows compute-bound prefill (Splitwise, ISCA
2024, on H100); a locked clock saves decode energy at almost no throughput ("The Illusion of Power
Capping in LLM Decode"); and its fit on ML.ENERGY's measured serving power (data/validation/power)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sim.analysis.metrics import summarize
from sim.engine.simulation import Simulation
from sim.perf.catalog import builtin_catalog
from sim.perf.power import at_clock
from sim.perf.roofline import PerfModel
from sim.scenario.config import apply_overrides, parse, read_toml

REPO = Path(__file__).resolve().parents[1]


def _perf(*extra: str) -> dict:
    r = subprocess.run([sys.executable, "-m", "sim", "perf", "--hardware", "h100-sxm", "--model", "llama-3.1-70b",
                        "--tp", "4", "--batch", "16", "--context", "2048", "--prompt", "4096", "--json", *extra],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_a_350_w_cap_barely_slows_decode_and_slows_prefill():
    # the measurement: Splitwise's H100 token phase tolerates 700 -> 350 W, the prompt phase does not
    d = _perf("--power-cap-w", "350")
    assert d["power_w"] <= 350 + 1e-6 and d["prefill_power_w"] <= 350 + 1e-6
    assert d["decode_step_s"] / d["decode_step_uncapped_s"] < 1.10
    assert d["prefill_s"] / d["prefill_uncapped_s"] > 1.15
    assert d["clock_factor"] < 1  # the cap was met by lowering the clock


def test_uncapped_70b_decode_draws_what_h100s_measure():
    # ML.ENERGY's 2025 run of Llama-3.1-70B on 4 x H100 drew 440-640 W per GPU (data/validation/power README)
    assert 400 < _perf()["power_w"] < 650


def test_clock_lock_cuts_decode_energy_per_token_and_keeps_throughput():
    base = apply_overrides(read_toml(REPO / "scenarios" / "quickstart.toml"),
                           ["workload.num_requests=1500", "workload.output_tokens.dist=\"fixed\"",
                            "workload.output_tokens.value=512"])
    a = summarize(Simulation(parse(base)).run())
    b = summarize(Simulation(parse(apply_overrides(base, ["pools.clock_lock=0.8"]))).run())
    assert b["energy_per_output_tok_j"] <= 0.9 * a["energy_per_output_tok_j"]
    assert abs(b["throughput_output_tok_per_s"] / a["throughput_output_tok_per_s"] - 1) < 0.02
    assert b["tpot_mean_s"] / a["tpot_mean_s"] < 1.02  # decode is memory-bound: the clock barely shows


def test_clock_lock_in_perf_and_step_power():
    hw = builtin_catalog().hardware["h100-sxm"]
    m = builtin_catalog().models["llama-3.1-8b"]
    full, locked = PerfModel(hw, m), PerfModel(hw, m, clock_lock=0.6)
    d0, d1 = full.step_power(32, 32 * 1024.0, n_seq=32), locked.step_power(32, 32 * 1024.0, n_seq=32)
    assert d1.clock == 0.6 and d1.power_w < d0.power_w and d1.t_s / d0.t_s < 1.02
    p0 = full.step_power(0, 0.0, 4096, 0.0, 4096 * 4097 / 2, 1)
    p1 = locked.step_power(0, 0.0, 4096, 0.0, 4096 * 4097 / 2, 1)
    assert p1.t_s / p0.t_s > 1.4  # compute-bound prefill slows about as 1 / f
    assert _perf("--clock-lock", "0.8")["clock_lock"] == 0.8


def test_without_the_clock_term_the_formula_is_the_old_one():
    # k = 0: activity = u_c f^3 + m b u_m, what the model was before clock_power_frac
    m1, c1, m2, c2, fx = 0.010, 0.002, 0.0, 0.0, 0.001
    t, p = at_clock(m1, c1, m2, c2, fx, 1.0, 100.0, 600.0, 0.75, 0.0)
    assert p == pytest.approx(100 + 600 * (c1 / t + 0.75 * m1 / t))
    t, p = at_clock(m1, c1, m2, c2, fx, 0.8, 100.0, 600.0, 0.75, 0.0)
    assert p == pytest.approx(100 + 600 * (0.8 ** 3 * (c1 / 0.8) / t + 0.75 * m1 / t))
    # with it, a memory-bound step's power falls with the clock while its time does not
    t1, p1 = at_clock(m1, c1, m2, c2, fx, 1.0, 100.0, 600.0, 0.1, 0.5)
    t2, p2 = at_clock(m1, c1, m2, c2, fx, 0.7, 100.0, 600.0, 0.1, 0.5)
    assert t2 == pytest.approx(t1) and p2 < p1 - 0.5 * 600 * (1 - 0.7 ** 3) * 0.9


def test_validate_power_reports_every_row_and_the_fit_holds():
    r = subprocess.run([sys.executable, "-m", "sim", "validate", "--power", "--json"], capture_output=True, text=True,
                       cwd=REPO)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert len(rep["rows"]) >= 150 and {x["hardware"] for x in rep["rows"]} == {"h100-sxm", "b200"}
    for x in rep["rows"]:
        assert x["rel_err"] == pytest.approx(x["predicted_w"] / x["measured_w"] - 1)
    # measured figures: H100 about 6.6%, B200 about 13% (docs/power.md): the 5% is not met yet
    assert rep["median_abs_err_by_hardware"]["h100-sxm"] < 0.08
    assert rep["median_abs_err"] < 0.12


@pytest.mark.slow
@pytest.mark.parametrize("value", ["0", "1.5", "-0.2"])
def test_a_bad_clock_lock_is_one_line_naming_the_field(value):
    r = subprocess.run([sys.executable, "-m", "sim", "run", "scenarios/quickstart.toml", "--set",
                        f"pools.clock_lock={value}"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "pools[0].clock_lock" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "sim", "perf", "--hardware", "h100-sxm", "--model", "llama-3.1-8b",
                        "--clock-lock", value], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "--clock-lock" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_fitted_constants_are_the_catalogs():
    from sim.validation.power import fit, power_rows
    cat = builtin_catalog()
    rows = [r for r in power_rows() if r.hardware == "h100-sxm"]
    got = fit(rows)["h100-sxm"]
    hw = cat.hardware["h100-sxm"]
    assert (got["clock_power_frac"], got["memory_power_frac"]) == (hw.clock_power_frac, hw.memory_power_frac)
    assert dataclasses.replace(hw).power_calibration.startswith("sim/validation/power.py")
