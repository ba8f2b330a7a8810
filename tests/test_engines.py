"""Engine profiles (`[[pools]] engine`, docs/engines.md): TensorRT-LLM's guaranteed-no-evict KV
admission against vLLM's admit-and-preempt, on both drivers."""

from __future__ import annotations

import pytest

from sim.engine.simulation import Simulation
from sim.errors import ScenarioError
from sim.scenario.config import parse
from sim.validation.hardware import Row, scenario


def _long_context(engine: str, driver: str, n: int = 200) -> dict:
    # TensorRT-LLM's table: Llama-3.x-70B FP8 on one H200, 20,000 in / 2,000 out, offline: 283 tok/s
    d = scenario(Row("test", "llama-3.1-70b", "h200", "FP8", 1, 20000, 2000, 283.0), n)
    d["pools"][0]["engine"] = engine
    d["run"]["engine"] = driver
    return d


def _tok_s(res) -> float:
    done = res.requests.status == 1
    span = res.requests.finish_s[done].max() - res.workload.arrival_s.min()
    return float(res.workload.output_tokens[done].sum() / span)


@pytest.mark.parametrize("driver", ["compiled", "simpy"])
def test_no_evict_admission_never_preempts_and_does_not_thrash_at_long_context(driver):
    vllm = Simulation(parse(_long_context("vllm", driver))).run()
    trt = Simulation(parse(_long_context("trtllm", driver))).run()
    assert vllm.requests.preemptions.sum() > 100  # admitted as the prompt fits, preempted as decodes grow
    assert trt.requests.preemptions.sum() == 0
    assert (trt.requests.status == 1).all()
    # recompute thrash costs vLLM-style admission most of the throughput (measured: 283 tok/s)
    assert _tok_s(trt) > 3 * _tok_s(vllm)
    assert _tok_s(trt) == pytest.approx(283.0, rel=0.25)


def test_both_drivers_give_the_same_bits_with_no_evict_admission():
    a, b = (Simulation(parse(_long_context("trtllm", drv, n=120))).run() for drv in ("compiled", "simpy"))
    for col in ("first_token_s", "finish_s", "start_s", "status", "preemptions"):
        assert (getattr(a.requests, col) == getattr(b.requests, col)).all(), col


def test_no_evict_never_holds_more_than_the_cache_and_waits_for_room():
    d = _long_context("trtllm", "compiled", n=60)
    d["pools"][0]["scheduler"]["kv_memory_fraction"] = 0.6
    d["run"]["timeseries"] = True
    res = Simulation(parse(d)).run()
    ts = res.timeseries
    import numpy as np

    used = np.asarray(ts.kv_blocks_used)
    assert used.size > 0 and used.max() <= res.replicas[0].total_blocks
    assert (res.requests.status == 1).all() and res.requests.preemptions.sum() == 0


@pytest.mark.parametrize("change, key, words", [
    ({"engine": "tgi"}, "pools[0].engine", "vllm"),
    ({"engine": "trtllm", "scheduler": {"policy": "priority"}}, "pools[0].engine", "priority"),
])
def test_bad_engine_input_is_one_line_naming_the_key(change, key, words):
    d = _long_context("vllm", "compiled", n=10)
    pool = d["pools"][0]
    for k, v in change.items():
        if isinstance(v, dict):
            pool[k] = dict(pool[k], **v)
        else:
            pool[k] = v
    with pytest.raises(ScenarioError) as e:
        parse(d)
    msg = str(e.value)
    assert key in msg and words in msg and "\n" not in msg


def test_perf_adds_the_engines_step_constants_and_refuses_an_unknown_engine():
    import json
    import subprocess
    import sys

    from sim.perf.engines import engine_constants

    def step(*extra):
        out = subprocess.run([sys.executable, "-m", "sim", "perf", "--hardware", "h200", "--model", "llama-3.1-70b",
                              "--dtype", "fp8", "--batch", "256", "--json", *extra], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    vllm, trt = step(), step("--engine", "trtllm")
    assert vllm["engine"] == "vllm" and trt["engine"] == "trtllm"
    extra = 256 * engine_constants("trtllm").seq_overhead_s
    assert trt["decode_step_s"] - vllm["decode_step_s"] == pytest.approx(extra, rel=1e-9)
    bad = subprocess.run([sys.executable, "-m", "sim", "perf", "--hardware", "h200", "--model", "llama-3.1-70b",
                          "--engine", "tgi"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--engine" in bad.stderr and "Traceback" not in bad.stderr
