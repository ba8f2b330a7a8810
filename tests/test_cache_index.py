"""The prefix cache's sparse index (sim/engine/kernel/cache_index.py): a hash table over every
replica's cached blocks, against a dict under random adds, deletions and growth; and the memory
it takes on a run with many sessions (O(blocks cached), not replicas x sessions x blocks)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.engine import arrays
from sim.engine import compilation
from sim.engine.kernel import layout as L
from sim.engine.simulation import Simulation
from sim.scenario.config import parse

M = compilation.compiled()


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5), st.integers(0, 63)), max_size=400),
       st.sampled_from([1, 4, 64]))
def test_index_is_a_map(ops, room):
    """Adds (growing the index when it runs low, as the drivers do) and deletions in any order:
    every key found where the dict has it, nowhere else; free entries counted exactly."""
    KC = arrays.prefix_index(64, room)
    ref: dict[tuple[int, int], int] = {}
    for add, r, s in ops:
        if add and (r, s) not in ref:
            if KC.N[L.K_NFREE] < KC.N[L.K_ROOM]:  # (the drivers' Kernel.kc_low)
                KC = arrays.grown_index(KC, M.kc_rehash)
            e = M.kc_add(KC, r, s)
            KC.E[e, L.KREF] = 1
            assert e not in ref.values()
            ref[(r, s)] = e
        elif not add and (r, s) in ref:
            M.kc_del(KC, ref.pop((r, s)))
        for (r2, s2), e in ref.items():
            assert M.kc_find(KC, r2, s2) == e  # (entry numbers survive growth: LRU lists link them)
        assert M.kc_find(KC, r, s) == ref.get((r, s), -1)
        assert KC.N[L.K_NFREE] == KC.E.shape[0] - len(ref)
    for r in range(6):  # a failed node's cache is cleared, the others' kept
        M.kc_clear(KC, r)
        ref = {k: e for k, e in ref.items() if k[0] != r}
        assert all(M.kc_find(KC, *k) == e for k, e in ref.items())
    assert KC.N[L.K_NFREE] == KC.E.shape[0] and (KC.H == -1).all()


def test_many_sessions_take_memory_by_blocks_cached():
    """20,000 multi-turn sessions with prefix caching on 8 replicas: the dense index this
    replaced (replicas x sessions x max history blocks x 24 B: 334 MB here, growing with every
    session) against the sparse one, which holds at most every replica's KV blocks (and the
    tier's) at ~48 B each, and takes a tenth of that here."""
    raw = {"name": "sessions", "seed": 1,
           "workload": {"arrival": "poisson", "rate_per_s": 200.0, "duration_s": 100, "prompt_tokens": 200,
                        "output_tokens": 100, "multi_turn": {"turns": 5, "think_time_s": 5.0}},
           "pools": [{"hardware": "h100-sxm", "model": "llama-3.1-8b", "replicas": 8,
                      "scheduler": {"prefix_caching": True}}],
           "router": {"policy": "session_affinity"}, "run": {"timeseries": False, "engine": "compiled"}}
    sim = Simulation(parse(raw))
    k = arrays.prepare(sim, M)
    k.run_until(np.inf)
    S = k.st.rp.S
    groups = int(k.st.rq.RQ[:, L.GRP].max()) + 1
    assert groups > 19_000
    dense = len(S) * groups * int(S[:, L.PB].max()) * 24
    assert dense > 3e8
    KC = k.st.rp.KC
    live = int((KC.E[:, L.KKEY] >= 0).sum())
    assert 0 < live <= int(S[:, L.TOT].sum() + S[:, L.TCAP].sum())
    assert KC.E.nbytes + KC.H.nbytes < min(dense / 10, 4 * 48 * int(S[:, L.TOT].sum()))
