"""Traffic over the day (issue 14, part 6): a time-varying arrival rate, drawn as a
nonhomogeneous Poisson process by thinning from the seeded streams (workload.diurnal,
workload.rate_profile). Checked against the process's closed form: counts in a window are
Poisson with mean the integral of the rate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sim.scenario.config import parse
from sim.workload.generate import build_workload

REPO = Path(__file__).resolve().parents[1]


def _raw(**wl):
    w = {"arrival": "poisson", "prompt_tokens": 100, "output_tokens": 10}
    w.update(wl)
    return {"workload": w, "pools": [{"hardware": "h100-sxm", "model": "llama-3.1-8b"}]}


def test_diurnal_counts_follow_the_rate_over_the_day():
    peak, trough, hour = 20.0, 5.0, 15.0
    sc = parse(_raw(duration_s=86400.0, diurnal={"peak_rate_per_s": peak, "trough_rate_per_s": trough,
                                                  "peak_hour": hour}))
    arr = build_workload(sc.workload, 3, sc.base_dir).arrival_s
    assert np.all(np.diff(arr) >= 0) and arr[0] >= 0 and arr[-1] < 86400
    # each hour's count: Poisson with mean the integral of the rate over the hour (the rate is
    # linear between 5-minute points); within 4 standard deviations, and the dispersion ~ 1
    edges = np.arange(25) * 3600.0
    counts = np.histogram(arr, bins=edges)[0]
    fine = np.arange(0.0, 86400.0 + 1.0, 1.0)
    pts = np.array(sc.workload.rate_points)
    lam = np.interp(fine, pts[:, 0], pts[:, 1])
    seg = [lam[int(a):int(b) + 1] for a, b in zip(edges[:-1], edges[1:], strict=False)]
    mean = np.array([0.5 * float(np.sum(x[:-1] + x[1:])) for x in seg])  # the trapezoid rule, 1 s steps
    z = (counts - mean) / np.sqrt(mean)
    assert np.all(np.abs(z) < 4.0)
    assert 0.4 < np.var(z) < 2.0
    assert counts.argmax() in (14, 15) and counts.argmin() in (2, 3)  # peak at 15:00, trough 12 h away


def test_a_rate_profile_file_is_linear_between_its_points(tmp_path):
    f = tmp_path / "profile.csv"
    f.write_text("t_s,rps\n0,10\n1000,10\n1000.5,0\n2000,0\n2000.5,40\n")
    sc = parse(_raw(duration_s=3000.0, rate_profile={"file": str(f), "column": "rps"}), tmp_path)
    arr = build_workload(sc.workload, 1, sc.base_dir).arrival_s
    a = np.sum(arr < 1000)
    b = np.sum((arr > 1000.5) & (arr < 2000))
    c = np.sum(arr > 2000.5)  # the last rate holds to the end: 40/s for 999.5 s
    assert abs(a - 10_000) < 4 * 100 and b == 0 and abs(c - 39_980) < 4 * 200
    # drawn from the seeded streams: the same seed, the same arrivals
    again = build_workload(sc.workload, 1, sc.base_dir).arrival_s
    np.testing.assert_array_equal(arr, again)


@pytest.mark.parametrize("rows,what", [("t_s,rps\n0,10\n10,-1\n", "rate -1"), ("t_s,rps\n0,10\n10,\n", "a gap"),
                                       ("t_s,rps\n5,10\n", "t_s 5"), ("t_s,rps\n0,1\n10,2\n5,3\n", "t_s 5")])
def test_a_bad_rate_profile_is_one_line(rows, what, tmp_path):
    import tomli_w
    (tmp_path / "p.csv").write_text(rows)
    sc = tmp_path / "s.toml"
    sc.write_bytes(tomli_w.dumps(_raw(duration_s=60.0, rate_profile={"file": "p.csv", "column": "rps"})).encode())
    r = subprocess.run([sys.executable, "-m", "sim", "run", str(sc)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "workload.rate_profile" in r.stderr and what in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_a_time_varying_rate_needs_poisson_arrivals_over_a_duration(tmp_path):
    import tomli_w
    for extra in ({"arrival": "gamma", "duration_s": 60.0}, {"num_requests": 100}):
        raw = _raw(diurnal={"peak_rate_per_s": 5.0, "trough_rate_per_s": 1.0}, **extra)
        sc = tmp_path / "s.toml"
        sc.write_bytes(tomli_w.dumps(raw).encode())
        r = subprocess.run([sys.executable, "-m", "sim", "run", str(sc)], capture_output=True, text=True, cwd=REPO)
        assert r.returncode == 2 and "workload.diurnal" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_the_effective_scenario_keeps_the_profile():
    import tomllib

    import tomli_w
    sc = parse(_raw(duration_s=7200.0, diurnal={"peak_rate_per_s": 5.0, "trough_rate_per_s": 1.0, "peak_hour": 12}))
    again = parse(tomllib.loads(tomli_w.dumps(sc.raw)))
    assert again.workload.rate_points == sc.workload.rate_points
