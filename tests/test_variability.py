"""Step-time variability (sim/perf/variability.py, the kernel's _vary): the jitter keeps mean
step times (what the calibration fits) and only widens tails; warm-up slows a new replica's
first steps; the draws are a function of seed, replica and step count only; bad values are
one-line errors."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from sim.engine.kernel import layout as K
from sim.engine.kernel import step
from sim.errors import ScenarioError
from sim.scenario.config import apply_overrides, parse, read_toml
from sim.engine.simulation import Simulation
from sim.perf.variability import OFF, defaults


def _run(sets, n=1500, **kw):
    raw = apply_overrides(read_toml("scenarios/quickstart.toml"), [f"workload.num_requests={n}"] + sets)
    return Simulation(parse(raw)).run()


def _factors(jd, jp, wa=0.0, wt=1.0, n=200_000, now=1e9, ew=0.0, eq=0.05, ef=0.0, wdec=1.0, prefill=True):
    """n draws of the kernel's factor (plain Python kernel functions, the compiled ones' source);
    with episodes (ew > 0) step k starts at now + k x ew / 3 (three steps a window)."""
    S = np.zeros((1, K.N_S), np.int64)
    F = np.zeros((1, K.N_F))
    S[0, K.JSEED] = 12345
    F[0, [K.JD, K.JP, K.WA, K.WT, K.EW, K.EQ, K.EF, K.EK, K.WDEC]] = jd, jp, wa, wt, ew, eq, ef, -1.0, wdec
    F[0, K.WEND] = wt * math.log(wa * 1e6) if wa > 0 else 0.0  # as prepare() sets it
    vary = step.vary.py_func if hasattr(step.vary, "py_func") else step.vary
    return np.array([vary(0, now + k * ew / 3, S, F, prefill) for k in range(n)])


def test_jitter_factor_has_mean_one_and_the_stated_floor_and_share():
    m = _factors(0.1, 0.05)
    assert abs(m.mean() - 1.0) < 0.01  # E = (1 - jd) + jd (exponential of mean jd / jp at a share jp)
    assert m.min() >= 0.9 - 1e-12
    assert abs(np.mean(m > 0.9 + 1e-12) - 0.05) < 0.003  # the share of stretched steps
    stretched = m[m > 0.9 + 1e-12] - 0.9
    assert abs(stretched.mean() - 2.0) < 0.1  # exponential with mean jd / jp = 2
    assert abs(np.median(stretched) - 2.0 * math.log(2)) < 0.1


def test_episodes_have_mean_one_their_share_and_span_whole_windows():
    m = _factors(0.0, 1.0, n=60_000, now=0.0, ew=2.0, eq=0.1, ef=0.5)
    assert abs(m.mean() - 1.0) < 0.01
    assert m.min() == pytest.approx(1 - 0.5 * 0.1)
    slow = m > 1.0
    assert abs(slow.mean() - 0.1) < 0.01
    assert np.all(m[slow] == pytest.approx(1 + 0.5 * 0.9))
    w = slow.reshape(-1, 3)  # the three steps of a window share its draw
    assert np.all(w.all(axis=1) | ~w.any(axis=1))
    from sim.perf.variability import Variability
    assert Variability(jitter=0.1, episode_s=2.0, episode_share=0.1, episode_stretch=0.5).floor == pytest.approx(
        0.9 * 0.95)


def test_warmup_factor_decays_from_its_amplitude():
    # a decode-only step gets the share warmup_decode of the warm-up
    assert _factors(0.0, 1.0, wa=3.0, wt=10.0, n=1, now=0.0, wdec=0.25, prefill=False)[0] == pytest.approx(1.75)
    assert _factors(0.0, 1.0, wa=3.0, wt=10.0, n=1, now=0.0, wdec=0.25, prefill=True)[0] == pytest.approx(4.0)
    assert _factors(0.0, 1.0, wa=3.0, wt=10.0, n=1, now=0.0)[0] == pytest.approx(4.0)
    assert _factors(0.0, 1.0, wa=3.0, wt=10.0, n=1, now=10.0)[0] == pytest.approx(1 + 3 / math.e)
    assert _factors(0.0, 1.0, wa=3.0, wt=10.0, n=1, now=1e4)[0] == 1.0
    assert _factors(0.0, 1.0, wa=3.0, wt=10.0, n=1, now=10.0 * math.log(3e6) - 1e-9)[0] - 1 == pytest.approx(1e-6)


def test_jitter_keeps_the_mean_and_widens_the_tail():
    from sim.analysis.metrics import summarize
    a = summarize(_run(["pools.variability=false"]))
    b = summarize(_run(["pools.variability.jitter=0.15", "pools.variability.jitter_prob=0.05",
                        "pools.variability.warmup_factor=0.0"]))
    assert b["tpot_mean_s"] == pytest.approx(a["tpot_mean_s"], rel=0.02)
    assert b["tpot_p99_s"] > a["tpot_p99_s"] * 1.05
    assert b["ttft_p99_s"] > a["ttft_p99_s"]


def test_warmup_slows_only_the_first_requests():
    from sim.analysis.metrics import latency_stats
    r = _run(["pools.variability.warmup_factor=4.0", "pools.variability.warmup_s=1.0",
              "pools.variability.jitter=0.0"], n=3000)
    o = _run(["pools.variability=false"], n=3000)
    early = r.workload.arrival_s < 1.0
    late = r.workload.arrival_s > 10.0
    e2e = lambda x: x.requests.finish_s - x.workload.arrival_s  # noqa: E731
    assert np.mean(e2e(r)[early]) > 1.3 * np.mean(e2e(o)[early])
    assert np.mean(e2e(r)[late]) == pytest.approx(np.mean(e2e(o)[late]), rel=0.02)
    assert latency_stats(r, late)["tpot_mean_s"] == pytest.approx(latency_stats(o, late)["tpot_mean_s"], rel=0.02)


def _fixed(seed, var):
    """A workload the seed does not change (constant arrivals, fixed lengths)."""
    return Simulation(
        parse(
            {
                "name": "fixed",
                "seed": seed,
                "workload": {
                    "arrival": "constant",
                    "rate_per_s": 20.0,
                    "num_requests": 400,
                    "prompt_tokens": {"dist": "fixed", "value": 600},
                    "output_tokens": {"dist": "fixed", "value": 100},
                },
                "pools": [{"hardware": "h100-sxm", "model": "llama-3.1-8b", "replicas": 2, "variability": var}],
                "router": {"policy": "round_robin"},
            }
        )
    ).run()


def test_same_seed_same_draws_other_seed_other_draws():
    var = {"jitter": 0.1, "jitter_prob": 0.1}
    a, b, c = _fixed(3, var), _fixed(3, var), _fixed(4, var)
    assert np.array_equal(a.requests.finish_s, b.requests.finish_s)
    assert not np.array_equal(a.requests.finish_s, c.requests.finish_s)
    assert np.array_equal(_fixed(3, False).requests.finish_s, _fixed(4, False).requests.finish_s)


def test_defaults_by_model_kind_and_off():
    sc = parse(read_toml("scenarios/quickstart.toml"))
    assert sc.pools[0].variability == OFF  # off unless asked for (the fit is not stable yet)
    assert parse(apply_overrides(read_toml("scenarios/quickstart.toml"),
                                 ["pools.variability=true"])).pools[0].variability == defaults("dense")
    assert parse(apply_overrides(read_toml("scenarios/quickstart.toml"),
                                 ['pools.model="mixtral-8x7b"', "pools.tp=2", "pools.variability=true"])
                 ).pools[0].variability == defaults("moe")


@pytest.mark.parametrize(
    "key,value",
    [
        ("jitter", 1.0),
        ("jitter_prob", 0.0),
        ("jitter_prob", 1.5),
        ("warmup_s", 0.0),
        ("warmup_decode", 1.5),
        ("warmup_decode", -0.1),
        ("warmup_factor", -1.0),
        ("warmup_factor", 1e6),
        ("episode_share", 1.5),
        ("episode_stretch", 60.0),
        ("episode_s", -1.0),
        ("bogus", 1.0),
    ],
)
def test_bad_values_name_the_field(key, value):
    with pytest.raises(ScenarioError) as ei:
        parse(apply_overrides(read_toml("scenarios/quickstart.toml"), [f"pools.variability.{key}={value}"]))
    assert f"pools[0].variability.{key}" in str(ei.value)


def test_mean_warmup_is_the_time_average_of_the_kernels_factor():
    from sim.perf.variability import Variability
    v = Variability(warmup_factor=2.0, warmup_s=5.0)
    for start, dur in ((0.0, 600.0), (0.0, 3.0), (600.0, 600.0), (2.0, 10.0)):
        t = np.linspace(start, start + dur, 200_001)
        f = _factors(0.0, 1.0, wa=2.0, wt=5.0, n=1, now=0.0)  # the kernel's factor at age 0 ...
        assert f[0] == pytest.approx(3.0)
        numeric = float(np.mean(1 + 2.0 * np.exp(-t / 5.0)))  # ... and its closed form over the stage
        assert v.mean_warmup(start, dur) == pytest.approx(numeric, rel=1e-4)
    assert Variability().mean_warmup(0.0, 600.0) == 1.0
    half = Variability(warmup_factor=2.0, warmup_s=5.0, warmup_decode=0.5)
    assert half.mean_warmup(0.0, 600.0, decode=True) - 1 == pytest.approx((v.mean_warmup(0.0, 600.0) - 1) / 2)


def test_calibration_divides_the_warmup_out_of_the_first_stage_only():
    from sim.perf.catalog import builtin_catalog
    from sim.perf.variability import Variability
    from sim.validation.calibrate import predict, serving_rows
    v = Variability(warmup_factor=2.0, warmup_s=10.0)
    plain = serving_rows()
    warm = serving_rows(variability={"dense": v, "moe": v})
    assert [(r.exp_id, r.stage) for r in plain] == [(r.exp_id, r.stage) for r in warm]
    first = [w for p, w in zip(plain, warm, strict=False) if w.stage == 0]
    later = [w for p, w in zip(plain, warm, strict=False) if w.stage > 0]
    assert first and later
    # every first stage lasts 600 s or more (one of them: 1200 s): 1 + 2 x 10 / duration
    assert all(1 + 20 / 1200 - 1e-9 <= w.warm <= 1 + 20 / 600 + 1e-9 for w in first)
    assert all(w.warm == pytest.approx(1.0, abs=1e-12) for w in later)
    hw = builtin_catalog().hardware["h100-sxm"]
    r0 = first[0]
    assert r0.warm_dec == r0.warm  # warmup_decode = 1: decode steps warm up alike
    tpot_plain, _ = predict(dataclasses.replace(r0, warm=1.0, warm_dec=1.0), hw)
    tpot_warm, _ = predict(r0, hw)
    assert tpot_warm > tpot_plain * (1 + 0.5 * (r0.warm - 1))  # the slower steps show in the prediction

