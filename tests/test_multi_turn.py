"""Multi-turn sessions (issue 14, part 5): each arrival starts a session whose turns extend its
history; the prefix cache reuses the history (the previous turns' prompts and responses) on
both drivers, checked against the hit tokens computed by hand from the workload."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sim.analysis.metrics import summarize
from sim.engine.recorder import COMPLETED
from sim.engine.simulation import Simulation
from helpers import TINY_WORKLOAD, assert_run_fails_in_one_line
from sim.scenario.config import parse
from sim.workload.generate import build_workload

REPO = Path(__file__).resolve().parents[1]


def _raw(prefix_caching: bool = True, router: str = "session_affinity", engine: str = "compiled", **mt) -> dict:
    multi = {"turns": {"dist": "uniform", "min": 2, "max": 6}, "think_time_s": {"dist": "exponential", "mean": 40.0}}
    multi.update(mt)
    return {"seed": 5, "workload": {"arrival": "poisson", "rate_per_s": 0.5, "num_requests": 60,
                                    "prompt_tokens": {"dist": "lognormal", "mean": 300, "cv": 1.0, "max": 3000},
                                    "output_tokens": {"dist": "lognormal", "mean": 150, "cv": 0.8, "max": 800},
                                    "multi_turn": multi},
            "pools": [{"name": "m", "hardware": "h100-sxm", "model": "llama-3.1-8b", "replicas": 3,
                       "scheduler": {"prefix_caching": prefix_caching, "block_size": 16}}],
            "router": {"policy": router}, "run": {"engine": engine}}


def test_each_turn_extends_its_sessions_history():
    sc = parse(_raw(max_history_tokens=6000))
    wl = build_workload(sc.workload, sc.seed, sc.base_dir)
    assert wl.history and np.array_equal(wl.prefix_group, wl.session)
    assert np.all(np.diff(wl.arrival_s) >= 0)
    assert len(np.unique(wl.session)) == 60
    for s in np.unique(wl.session):
        m = wl.session == s
        p, o = wl.prompt_tokens[m], wl.output_tokens[m]
        assert 1 <= m.sum() <= 6
        assert np.all(p[1:] > p[:-1] + o[:-1])  # the history, and a new message of at least a token
        assert np.all(p[1:] + o[1:] <= 6000)  # the cap (a first turn always runs)


def test_turns_follow_their_distribution_and_the_cap_ends_sessions():
    sc = parse(_raw(turns=3, think_time_s=10.0, max_history_tokens=10**6))
    wl = build_workload(sc.workload, sc.seed, sc.base_dir)
    _, counts = np.unique(wl.session, return_counts=True)
    assert np.all(counts == 3)
    for s in np.unique(wl.session):  # think time 10 s, fixed: arrivals 10 s apart
        assert np.allclose(np.diff(wl.arrival_s[wl.session == s]), 10.0)
    short = build_workload(parse(_raw(turns=3, max_history_tokens=900)).workload, 5, REPO)
    _, c2 = np.unique(short.session, return_counts=True)
    assert c2.min() >= 1 and c2.sum() < 180


@pytest.mark.parametrize("engine", ["compiled", "simpy"])
def test_the_cache_holds_each_sessions_history_by_hand(engine):
    """session_affinity keeps a session on one replica; turns are 20-60 s apart, far longer than
    a response, and the KV cache is far larger than the sessions: every turn after
    the first finds the full blocks of the previous turn's prompt and response (capped so its
    last prompt token is computed), and nothing else."""
    res = Simulation(parse(_raw(engine=engine, think_time_s={"dist": "uniform", "min": 20.0, "max": 60.0}))).run()
    wl, tb = res.workload, res.requests
    assert np.all(tb.status == COMPLETED) and res.requests.preemptions.sum() == 0
    want = 0
    for s in np.unique(wl.session):
        idx = np.flatnonzero(wl.session == s)
        for a, b in zip(idx, idx[1:], strict=False):
            assert tb.finish_s[a] < wl.arrival_s[b]  # the previous turn had finished
            hist = (wl.prompt_tokens[a] + wl.output_tokens[a] - 1) // 16
            want += min(hist, (wl.prompt_tokens[b] - 1) // 16) * 16
    got = sum(r.prefix_hit_tokens for r in res.replicas)
    assert got == want


def test_history_reuse_lowers_ttft_and_both_drivers_agree():
    on = Simulation(parse(_raw(router="prefix_aware"))).run()
    off = summarize(Simulation(parse(_raw(prefix_caching=False, router="prefix_aware"))).run())
    ref = Simulation(parse(_raw(router="prefix_aware", engine="simpy"))).run()
    assert np.array_equal(on.requests.first_token_s, ref.requests.first_token_s)
    assert np.array_equal(on.requests.finish_s, ref.requests.finish_s)
    s = summarize(on)
    assert s["prefix_cache_hit_rate"] > 0.5
    assert s["ttft_mean_s"] < 0.8 * off["ttft_mean_s"]


BASE = TINY_WORKLOAD + """{extra}
[[pools]]
hardware = "h100-sxm"
model = "llama-3.1-8b"
"""


@pytest.mark.slow
@pytest.mark.parametrize("extra,field", [
    ("sessions = 4\nmulti_turn = { turns = 3, think_time_s = 5.0 }", "workload.multi_turn"),
    ("shared_prefix = { groups = 2, tokens = 50 }\nmulti_turn = { turns = 3, think_time_s = 5.0 }",
     "workload.multi_turn"),
    ("multi_turn = { turns = 0, think_time_s = 5.0 }", "workload.multi_turn.turns"),
    ("multi_turn = { turns = 3, think_time_s = -1.0 }", "workload.multi_turn.think_time_s"),
    ("multi_turn = { turns = 3, think_time_s = { dist = \"exponential\", mean = 0 } }",
     "workload.multi_turn.think_time_s.mean"),
    ("multi_turn = { turns = 3 }", "workload.multi_turn.think_time_s"),
])
def test_bad_multi_turn_input_is_one_line_exit_2(tmp_path, extra, field):
    assert_run_fails_in_one_line(tmp_path, BASE.format(extra=extra), field)
