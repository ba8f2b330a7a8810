"""The compiled kernel indexes its arrays without bounds checks, so an index past an array reads
or writes other memory, sometimes a crash, sometimes nothing visible. Run as plain Python
(NUMBA_DISABLE_JIT=1, in a subprocess), every index is checked by numpy: these scenarios, which
cover every transition (preemption under FIFO and heap queues, prefix caching with eviction,
timeouts, the shared queue, static batching, analytic service, the facility's caps, drains and
node failures), must run and give the SimPy
engine's per-request results."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent('''
    import numpy as np
    from sim.engine.simulation import Simulation
    from sim.scenario.config import load

    QUICK = "scenarios/quickstart.toml"
    BASE = ["workload.num_requests=60", "pools.replicas=2", "pools.scheduler.kv_memory_fraction=0.22",
            "pools.scheduler.max_batch_size=8", "pools.scheduler.max_batched_tokens=1024",
            'workload.prompt_tokens={dist="lognormal", mean=1000, cv=1.0, max=6000}',
            'workload.output_tokens={dist="lognormal", mean=300, cv=0.8, max=1200}', "workload.rate_per_s=4"]
    CASES = [
        ['pools.scheduler.policy="continuous"'],
        ['pools.scheduler.policy="chunked"', "pools.scheduler.prefix_caching=true",
         "workload.shared_prefix={groups=3, tokens=500}", "workload.timeout_s=6.0", 'router.policy="least_kv"'],
        ['pools.scheduler.policy="sjf"', 'router.policy="central_queue"', "pools.scheduler.ageing_s=0.5"],
        ['pools.scheduler.policy="priority"',
         'workload.classes=[{name="hi", share=0.3, priority=0}, {name="lo", share=0.7, priority=1}]'],
        ['pools.scheduler.policy="static"', "workload.timeout_s=5.0"],
    ]
    pre = 0
    for extra in CASES:
        runs = {e: Simulation(load(QUICK, BASE + extra + [f'run.engine="{e}"'])).run() for e in ("compiled", "simpy")}
        a, b = runs["compiled"].requests, runs["simpy"].requests
        for k in ("status", "first_token_s", "finish_s", "preemptions", "replica"):
            assert np.array_equal(getattr(a, k), getattr(b, k)), (extra, k)
        pre += int(a.preemptions.sum())
    assert pre > 0, "the cases must preempt"
    # the facility's transitions: caps after a trip, node failures (evacuate, re-queue), drains
    TRIP = "scenarios/tent_trip.toml"
    for extra in (["failures.node_mtbf_h=0.01", "failures.node_repair_h=0.005"],
                  ['facility.manager.policy="drain"', "failures.node_mtbf_h=0.02", 'pools.scheduler.policy="static"']):
        sets = ["workload.duration_s=70", "workload.rate_per_s=10"] + extra
        runs = {e: Simulation(load(TRIP, sets + [f'run.engine="{e}"'])).run() for e in ("compiled", "simpy")}
        a, b = runs["compiled"].requests, runs["simpy"].requests
        for k in ("status", "first_token_s", "finish_s", "preemptions", "replica"):
            assert np.array_equal(getattr(a, k), getattr(b, k)), (extra, k)
        assert runs["compiled"].facility.node_failures > 0
    print("kernel ok, preemptions", pre)
''')


@pytest.mark.slow  # (a whole-run integration test: the full suite runs it)
def test_kernel_as_plain_python_stays_in_bounds_and_equals_simpy():
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    r = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "kernel ok" in r.stdout
