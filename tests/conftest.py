import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sim.scenario.config import parse
from sim.analysis.metrics import summarize, time_average_in_system
from sim.engine.recorder import COMPLETED, FAILED
from sim.engine.simulation import Simulation


def analytic(rate: float, n: int, seed: int, dist: str = "exponential", replicas: int = 1,
             router: str = "central_queue", mean_s: float = 1.0):
    return parse({
        "seed": seed,
        "workload": {"arrival": "poisson", "rate_per_s": rate, "num_requests": n,
                     "prompt_tokens": 1, "output_tokens": 1},
        "pools": [{"name": "m", "hardware": "h100-sxm", "model": "llama-3.1-8b", "replicas": replicas,
                   "service": {"dist": dist, "mean_s": mean_s}}],
        "router": {"policy": router}, "run": {"timeseries": False},
    })


def small(policy: str = "chunked", **over):
    """A small engine scenario: Llama-3.1-8B on H100, lognormal prompts."""
    raw = {
        "seed": over.pop("seed", 3),
        "hardware": over.pop("hardware_tables", {}),
        "workload": {"arrival": "poisson", "rate_per_s": over.pop("rate", 8.0),
                     "num_requests": over.pop("n", 300),
                     "prompt_tokens": over.pop("prompt", {"dist": "lognormal", "mean": 800, "cv": 1.0, "max": 6000}),
                     "output_tokens": over.pop("output", {"dist": "uniform", "min": 2, "max": 200})},
        "pools": [{"name": "p", "hardware": over.pop("hardware", "h100-sxm"), "model": over.pop("model", "llama-3.1-8b"),
                   "replicas": over.pop("replicas", 2), "tp": over.pop("tp", 1),
                   "scheduler": {"policy": policy, **over.pop("scheduler", {})}}],
        "router": {"policy": over.pop("router", "round_robin")},
    }
    assert not over, over
    return parse(raw)


def check_invariants(res) -> dict:
    """Invariants every run must satisfy; returns the summary."""
    s = summarize(res)
    assert s["requests_total"] == (s["requests_completed"] + s["requests_rejected"]
                                   + s["requests_failed"] + s["requests_in_flight"])
    tb, wl = res.requests, res.workload
    done = tb.status == COMPLETED
    arr = wl.arrival_s
    assert np.all(np.diff(arr) >= 0)
    assert np.all(tb.start_s[done] >= arr[done] - 1e-12)
    assert np.all(tb.first_token_s[done] >= tb.start_s[done] - 1e-12)
    assert np.all(tb.finish_s[done] >= tb.first_token_s[done] - 1e-12)
    ts = res.timeseries.columns()
    if ts["t_s"].size:
        for rep in res.replicas:
            m = ts["replica"] == rep.rid
            if rep.total_blocks:
                assert np.all(ts["kv_blocks_used"][m] <= rep.total_blocks)
            assert np.all(np.diff(ts["t_s"][m]) >= 0)
    # Little's law: time-average number in system (integrated from the recorded step function)
    # equals throughput x mean time in system, over a run that starts empty and drains.
    left = done | (tb.status == FAILED)
    if s["requests_in_flight"] == 0 and done.any():
        t_end = res.sim_time_s
        L = time_average_in_system(res, t_end)
        lam = left.sum() / t_end
        W = float(np.mean(tb.finish_s[left] - arr[left]))
        assert L == pytest.approx(lam * W, rel=1e-9)
        assert s["littles_law_rel_err"] < 1e-9
    return s


def run(sc):
    return Simulation(sc).run()


def pytest_sessionstart(session):
    """Compile the engine once, in the foreground, before the tests (a cold cache would otherwise
    run small runs on the interpreted kernel while a background process compiles it: correct, but
    the suite's timing would depend on that race). Its own tests force each kernel."""
    from sim.engine.warmup import warm_up

    warm_up()


# A small scenario's workload, for the bad-input tests of each feature (a pool follows)
TINY_WORKLOAD = """
[workload]
arrival = "poisson"
rate_per_s = 2.0
num_requests = 20
prompt_tokens = 100
output_tokens = 10
"""


def assert_run_fails_in_one_line(tmp_path, toml_text: str, field: str) -> None:
    """`dcsim run` of the scenario text exits 2 with one line on stderr naming `field`, no traceback."""
    p = tmp_path / "s.toml"
    p.write_text(toml_text)
    r = subprocess.run([sys.executable, "-m", "sim", "run", str(p), "--no-plots"], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0] and "Traceback" not in r.stderr, r.stderr
