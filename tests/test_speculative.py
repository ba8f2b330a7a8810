"""Speculative decoding (issue 14, part 1): tokens per step against the acceptance process drawn
from a seeded stream, the step formula by hand, the literature's crossover (a large TPOT gain at
batch 1 that shrinks and reverses once the step is compute-bound) on full simulations, both
drivers equal, and bad input."""

from __future__ import annotations


import numpy as np
import pytest

from sim.analysis.metrics import summarize
from sim.engine.simulation import Simulation
from sim.perf.catalog import builtin_catalog
from sim.perf.roofline import (BW, F_ATTN, F_SEQ, F_TOK, FLOPS, KV_TOK, OVH, OVH_SEQ, W_FIXED, PerfModel,
                               Speculative)
from sim.rng import stream
from helpers import TINY_WORKLOAD, assert_run_fails_in_one_line
from sim.scenario.config import parse

CAT = builtin_catalog()
DRAFT = {"method": "draft", "num_tokens": 4, "acceptance_rate": 0.8, "draft_model": "llama-3.2-1b"}
EAGLE = {"method": "eagle", "num_tokens": 4, "acceptance_rate": 0.8}


@pytest.mark.parametrize("a,k", [(0.8, 4), (0.5, 2), (0.0, 3), (0.95, 8)])
def test_tokens_per_step_is_the_acceptance_process_mean(a, k):
    """Each of k drafted tokens is kept while every one before it was accepted (probability a
    each); the target adds one of its own: drawn per sequence per step, 200,000 times."""
    u = stream(3, "spec-check").random((200_000, k))
    accepted = np.argmin(np.concatenate([u < a, np.zeros((len(u), 1), bool)], axis=1), axis=1)  # leading run
    emitted = accepted + 1
    g = Speculative(method="ngram", num_tokens=k, acceptance_rate=a).tokens_per_step
    assert g == pytest.approx(emitted.mean(), rel=0.01)
    assert g == pytest.approx(sum(a ** i for i in range(k + 1)), rel=1e-12)


def test_a_decode_step_by_hand():
    """ngram (no drafter on the GPU): the target verifies k + 1 tokens per sequence over its
    context; the engine's step (one token per sequence) costs 1/g of that."""
    hw, m = CAT.hardware["h100-sxm"], CAT.models["llama-3.1-8b"]
    sp = Speculative(method="ngram", num_tokens=4, acceptance_rate=0.8)
    pm = PerfModel(hw, m, 1, speculative=sp)
    pc = pm.constants
    b, ctx = 16, 16 * 1500.0
    tok = b * 5  # k + 1 per sequence
    mem = (pc[W_FIXED] + pc[KV_TOK] * (ctx + b * 4)) / pc[BW]
    comp = (pc[F_TOK] * tok + pc[F_SEQ] * tok + pc[F_ATTN] * (ctx + 4 * ctx)) / pc[FLOPS]
    verify = max(mem, comp) + pc[OVH] + pc[OVH_SEQ] * tok
    assert pm.step_time(b, ctx, n_seq=b) == pytest.approx(verify / sp.tokens_per_step, rel=1e-12)


def test_prefill_chunks_keep_their_whole_marginal_cost():
    """A step with a prefill chunk: plain(prefill + verify) - (1 - 1/g) verify, so a chunk costs
    what it adds to a verify step and the decoders' share is 1/g of it."""
    hw, m = CAT.hardware["h100-sxm"], CAT.models["llama-3.1-8b"]
    sp = Speculative(method="ngram", num_tokens=4, acceptance_rate=0.8)
    pm, base = PerfModel(hw, m, 1, speculative=sp), PerfModel(hw, m, 1)
    b, ctx, c = 8, 8 * 1000.0, 512
    pairs = c * (c + 1) / 2.0
    mixed = pm.step_time(b, ctx, c, 0.0, pairs, b + 1)
    alone = pm.step_time(b, ctx, n_seq=b)
    # the chunk's marginal cost on the plain formula, verify included (memory-bound: weights once)
    whole = base.step_time(b, ctx, c + 4 * b, 0.0, pairs + 4 * ctx, b + 1 + 4 * b)
    verify = base.step_time(b, ctx, 4 * b, 0.0, 4 * ctx, 5 * b)
    assert mixed == pytest.approx(whole - verify + alone, rel=1e-9)
    assert mixed > alone


def _raw(spec: dict | None, engine: str = "compiled", batch: int = 1, rate: float = 0.2, n: int = 30,
         prompt: int = 512, output: int = 256, model: str = "llama-3.1-70b", tp: int = 4) -> dict:
    pool = {"name": "m", "hardware": "h100-sxm", "model": model, "tp": tp,
            "scheduler": {"max_batch_size": batch, "max_batched_tokens": 8192}}
    if spec:
        pool["speculative"] = spec
    return {"seed": 1, "workload": {"arrival": "poisson", "rate_per_s": rate, "num_requests": n,
                                    "prompt_tokens": prompt, "output_tokens": output},
            "pools": [pool], "run": {"engine": engine}}


@pytest.mark.parametrize("spec", [DRAFT, EAGLE], ids=["draft", "eagle"])
def test_batch_one_tpot_falls_at_least_1_8x(spec):
    """Llama-3.1-70B on 4 H100s, one request at a time, a = 0.8, k = 4, drafter cost included
    (Llama-3.2-1B as a draft model, or an EAGLE head): TPOT at least 1.8x lower, on both drivers."""
    off = summarize(Simulation(parse(_raw(None))).run())
    on = Simulation(parse(_raw(spec))).run()
    ref = Simulation(parse(_raw(spec, "simpy"))).run()
    assert np.array_equal(on.requests.finish_s, ref.requests.finish_s)
    s = summarize(on)
    assert off["tpot_mean_s"] / s["tpot_mean_s"] >= 1.8, (off["tpot_mean_s"], s["tpot_mean_s"])
    assert s["requests_completed"] == 30


def test_a_compute_bound_batch_gains_under_1_1x():
    """Llama-3.1-8B on one H100, 512 short sequences at a time (saturated): the plain step is
    compute-bound there, and speculation's k + 1 verified tokens cost more than its g tokens save."""
    hw, m = CAT.hardware["h100-sxm"], CAT.models["llama-3.1-8b"]
    assert PerfModel(hw, m, 1).decode_cost(512, 100).bound == "compute"
    kw = dict(batch=512, rate=2000.0, n=3000, prompt=32, output=128, model="llama-3.1-8b", tp=1)
    off = summarize(Simulation(parse(_raw(None, **kw))).run())
    on = summarize(Simulation(parse(_raw(EAGLE, **kw))).run())
    assert off["tpot_mean_s"] / on["tpot_mean_s"] < 1.1, (off["tpot_mean_s"], on["tpot_mean_s"])


def test_the_gain_shrinks_then_reverses_with_batch():
    """The curve in docs/speculative.md: TPOT gain of one decode step against batch size."""
    hw, m = CAT.hardware["h100-sxm"], CAT.models["llama-3.1-8b"]
    base = PerfModel(hw, m, 1)
    pm = PerfModel(hw, m, 1, speculative=Speculative(method="eagle", num_tokens=4, acceptance_rate=0.8))
    batches = (1, 16, 64, 128, 256, 512, 1024)
    gain = [base.decode_cost(b, 256).t_s / pm.decode_cost(b, 256).t_s for b in batches]
    assert gain[0] > 1.8 and gain[-1] < 1.0, gain
    assert all(x > y for x, y in zip(gain[2:], gain[3:], strict=False)), gain  # past 64 it only shrinks
    for b, g in zip(batches, gain, strict=False):  # wherever the plain step is compute-bound: under 1.1x
        if base.decode_cost(b, 256).bound == "compute":
            assert g < 1.1, (b, g)


def test_the_drafter_takes_memory_a_prompt_lookup_does_not():
    hw, m = CAT.hardware["h100-sxm"], CAT.models["llama-3.1-8b"]
    base = PerfModel(hw, m, 1).kv_blocks(0.9, 16)
    assert (
        PerfModel(hw, m, 1, speculative=Speculative(method="ngram", num_tokens=4, acceptance_rate=0.8)).kv_blocks(
            0.9, 16
        )
        == base
    )
    d = CAT.models["llama-3.2-1b"]
    draft = PerfModel(
        hw, m, 1, speculative=Speculative(method="draft", num_tokens=4, acceptance_rate=0.8, draft_model=d)
    )
    free = hw.memory_bytes * 0.9 - m.weight_bytes("bf16") - d.weight_bytes("bf16")
    per_tok = m.kv_bytes_per_token("bf16") + d.kv_bytes_per_token("bf16")
    assert draft.kv_blocks(0.9, 16) == int(free / per_tok // 16) < base


BASE = TINY_WORKLOAD + """[[pools]]
hardware = "h100-sxm"
model = "llama-3.1-8b"
[pools.speculative]
{spec}
"""


@pytest.mark.slow
@pytest.mark.parametrize("spec,field", [
    ('method = "eagle"\nnum_tokens = 4\nacceptance_rate = 1.0', "pools[0].speculative.acceptance_rate"),
    ('method = "eagle"\nnum_tokens = 4\nacceptance_rate = -0.1', "pools[0].speculative.acceptance_rate"),
    ('method = "eagle"\nnum_tokens = 0\nacceptance_rate = 0.5', "pools[0].speculative.num_tokens"),
    ('method = "medusa"\nnum_tokens = 4\nacceptance_rate = 0.5', "pools[0].speculative.method"),
    ('method = "draft"\nnum_tokens = 4\nacceptance_rate = 0.5', "pools[0].speculative.draft_model"),
    ('method = "draft"\nnum_tokens = 4\nacceptance_rate = 0.5\ndraft_model = "llama-2-7b"',
     "pools[0].speculative.draft_model"),
    ('method = "eagle"\nnum_tokens = 4\nacceptance_rate = 0.5\ndraft_model = "llama-3.2-1b"',
     "pools[0].speculative.draft_model"),
    ('method = "eagle"\nnum_tokens = 4\nacceptance_rate = { chat = 0.5 }', "pools[0].speculative.acceptance_rate"),
])
def test_bad_speculative_input_is_one_line_exit_2(tmp_path, spec, field):
    assert_run_fails_in_one_line(tmp_path, BASE.format(spec=spec), field)


def test_verify_steps_against_the_acceptance_process():
    """a = 0: one token a step, S = output - 1 exactly; a = 0.8, k = 4: tokens over steps is g
    (the last step's extra tokens aside), per request a spread."""
    from sim.perf.roofline import tokens_per_step, verify_steps

    out = np.full(2000, 1001)
    assert np.array_equal(verify_steps(out, np.zeros(2000), 4, stream(1, "x")), np.full(2000, 1000))
    s = verify_steps(out, np.full(2000, 0.8), 4, stream(1, "x"))
    assert (1000 * 2000 / s.sum()) == pytest.approx(tokens_per_step(0.8, 4), rel=0.01)
    assert s.std() > 1.0
    assert np.array_equal(s, verify_steps(out, np.full(2000, 0.8), 4, stream(1, "x")))  # seeded


def test_the_compiled_walk_draws_the_references_counts_bit_for_bit(monkeypatch):
    """sim/engine/kernel/verify.py over chunks of the stream against the numpy reference: mixed
    rates (a = 0, tiny, near 1), outputs of 0-1 tokens (no step), steps split across chunk ends
    (tiny chunks), and a draw of exactly 0 (log 0 = -inf) for a = 0 and a > 0."""
    import sim.engine.build as build
    from sim.perf.roofline import verify_steps

    monkeypatch.setenv("DCSIM_KERNEL", "compiled")
    for seed, chunk in [(0, 7), (1, 64), (2, 1 << 16), (3, 1000)]:
        monkeypatch.setattr(build, "VERIFY_CHUNK", chunk)
        g = np.random.default_rng(seed)
        n = 3000
        out = g.integers(0, 300, n)
        rates = g.choice([0.0, 1e-300, 0.3, 0.7, 0.95, 0.999999], n)
        k = int(g.integers(1, 17))
        ref = verify_steps(out, rates, k, stream(seed, "x"))
        assert np.array_equal(build._verify_steps(out, rates, k, stream(seed, "x")), ref)
        assert ref.sum() > n  # (steps were drawn)

    class Zeros:  # a stream whose every draw is 0: log u = -inf
        def random(self, size=None, out=None):
            if out is not None:
                out[:] = 0.0
                return out
            return np.zeros(size)

    out, rates = np.full(6, 40), np.array([0.0, 0.5, 0.0, 0.9, 1e-300, 0.2])
    ref = verify_steps(out, rates, 4, Zeros())
    assert np.array_equal(build._verify_steps(out, rates, 4, Zeros()), ref)
    assert ref.tolist() == [39, 8, 39, 8, 8, 8]  # a = 0: one token a step; else k + 1 every step


def test_per_request_draws_spread_tpot_and_per_class_rates_apply():
    """One request at a time: with the draws every request's TPOT is S x step / (output - 1), so
    TPOT varies between requests; a class accepting more decodes faster."""
    raw = _raw({"method": "eagle", "num_tokens": 4, "acceptance_rate": {"code": 0.9, "chat": 0.5}}, n=60,
               output=200)
    raw["workload"]["classes"] = [{"name": "code", "share": 0.5}, {"name": "chat", "share": 0.5}]
    res = Simulation(parse(raw)).run()
    tb, wl = res.requests, res.workload
    tpot = (tb.finish_s - tb.first_token_s) / (wl.output_tokens - 1)
    code, chat = tpot[wl.cls == 0], tpot[wl.cls == 1]
    assert code.mean() < 0.8 * chat.mean()
    assert chat.std() > 0.01 * chat.mean()
    ref = Simulation(parse(dict(raw, run={"engine": "simpy"}))).run()
    assert np.array_equal(tb.finish_s, ref.requests.finish_s)
