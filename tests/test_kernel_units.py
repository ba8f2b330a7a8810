"""The kernel's own data structures and bounds, without an event loop: the routers' trees, the
ledger's time sort, and the bound on step times under a power cap that lets capped replicas be
skipped between arrivals."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.engine.kernel import route, tally
from sim.perf.catalog import builtin_catalog
from sim.perf.power import MIN_CLOCK, at_clock, capped
from sim.perf.roofline import CLK_FRAC, DYN_W, IDLE_W, MEM_FRAC, PerfModel, roofline_terms

values = st.lists(st.sampled_from([0.0, 1.0, 2.0, 2.5, 7.0, np.inf]), min_size=1, max_size=40)


def tree(vals):
    P = 1
    while P < len(vals):
        P *= 2
    T = np.full(2 * P, np.inf)
    for r, v in enumerate(vals):
        route._tree_set(T, r, v)
    return T


@settings(max_examples=200, deadline=None)
@given(values, st.integers(0, 45), st.sampled_from([0.0, 1.0, 2.0, 6.9, 7.0, 1e300]))
def test_tree_next_is_the_first_index_at_or_after_lo_at_or_below_x(vals, lo, x):  # x: a time, finite
    want = next((r for r in range(lo, len(vals)) if vals[r] <= x), -1)
    assert route.tree_next(tree(vals), lo, x) == want


@settings(max_examples=200, deadline=None)
@given(values, st.lists(st.tuples(st.integers(0, 39), st.floats(-5, 5)), max_size=10))
def test_tree_argmin_is_the_lowest_index_of_the_least_value_after_updates(vals, updates):
    T = tree(vals)
    vals = list(vals)
    for r, v in updates:
        if r < len(vals):
            vals[r] = v
            route._tree_set(T, r, v)
    if min(vals) < np.inf:
        assert route._tree_argmin(T) == vals.index(min(vals))
    assert T[1] == min(vals)


def sort_case(times):
    n = len(times)
    PW = np.zeros((n + 5, 3))
    PW[:n, 0] = times
    PW[:n, 1] = np.arange(n)
    PW[:n, 2] = np.arange(n) * 0.5
    ts, rs, ws, fill = np.empty(n), np.empty(n, np.int64), np.empty(n), np.empty(2 * n + 1, np.int64)
    tally.time_sorted(PW, n, ts, rs, ws, fill)
    ref = np.argsort(np.asarray(times, float), kind="stable")
    return ts, rs, ws, ref, PW


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.sampled_from([0.0, 1.0, 3.5]), st.floats(0, 100)), max_size=300))
def test_time_sort_is_the_stable_argsort(times):
    ts, rs, ws, ref, PW = sort_case(times)
    assert (rs == ref).all()  # equal times keep the order written
    assert (ts == PW[ref, 0]).all() and (ws == PW[ref, 2]).all()


def test_time_sort_of_a_crowded_spread_nearly_sorted_rows_and_a_subnormal_span():
    rng = np.random.default_rng(3)
    crowded = np.concatenate([np.zeros(500), rng.exponential(size=500) ** 4])  # one bucket holds most
    nearly = np.sort(rng.random(5000)) + rng.random(5000) * 1e-3  # a step's row per replica, jittered
    tiny = np.array([0.0, 5e-324, 0.0, 1e-310])  # a span too small to divide by
    for times in (crowded, nearly, tiny):
        ts, rs, ws, ref, PW = sort_case(times)
        assert (rs == ref).all()


def test_no_capped_step_is_faster_than_at_full_clock():
    """_next_delivery_bound bounds later steps of a capped replica by the in-flight step's time at
    full clock (DTU): that rests on a step never being faster at a lower clock, whatever the cap."""
    cat = builtin_catalog()
    rng = np.random.default_rng(0)
    for hw, model, tp in (("h200", "llama-3.1-70b", 4), ("h100-sxm", "llama-3.1-8b", 1)):
        pm = PerfModel(cat.hardware[hw], cat.models[model], tp=tp)
        pc = pm.constants
        for _ in range(300):
            n_dec = int(rng.integers(1, 256))
            ctx = float(n_dec * rng.integers(1, 8192))
            p_tok = int(rng.choice([0, int(rng.integers(1, 8192))]))
            terms = roofline_terms(pc, n_dec, ctx, p_tok, 0.0, 0.0, n_dec + (p_tok > 0), True)
            t_full, _ = at_clock(*terms, 1.0, pc[IDLE_W], pc[DYN_W], pc[MEM_FRAC], pc[CLK_FRAC])
            for cap in (1.0, 150.0, 300.0, 450.0, 700.0):
                t, _, f = capped(*terms, pc[IDLE_W], pc[DYN_W], pc[MEM_FRAC], pc[CLK_FRAC], cap, 1.0)
                assert MIN_CLOCK <= f <= 1.0
                assert t >= t_full
            for f in (MIN_CLOCK, 0.5, 0.8, 0.99):
                assert at_clock(*terms, f, pc[IDLE_W], pc[DYN_W], pc[MEM_FRAC], pc[CLK_FRAC])[0] >= t_full
