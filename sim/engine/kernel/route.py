"""Routing: which replica of its group an arriving request (or a prefilled one, to a decode
replica) goes to, written once for both drivers. `choose` is the routers' decision over
replicas that are current (round robin's count, a session's home, power_of_two's pair, the
prefix score, or the least loaded by the group's tree, ties to the lowest index, unavailable
replicas never while some are down or drained); the fast driver first brings what the router
reads up to the arrival's time (`read`, through the trees below), the per-step driver, whose
replicas are always current, rebuilds the trees (`build_trees`).

The routers' trees: a load-reading router needs, at each arrival, every replica that may have
changed what it reads advanced to the arrival's time, then the least loaded one. Both come from
min-trees over each group's replicas (leaf q at P + q, P a power of two; padding +inf): TA, when
each must next be advanced; TL, the load its router minimises. O(log R) per replica touched
instead of a scan of all R per arrival."""

from __future__ import annotations

import numpy as np

from sim.engine.kernel.advance import advance, before
from sim.engine.kernel.jit import kernel
from sim.engine.kernel.kv import peek_hits
from sim.engine.kernel.layout import (BS, DOWN, DRN, EEND, FIT_OK, GEN, IDLE, NAV, NB, OUTREQ, OUTTOK, QG, RGRP, RLOC,
                                      RS_NO_POOL, RS_NONE, RS_POWER, SHED, ST, TOKS, TOT, TS_FULL, USED)
from sim.policies.routers import PREFIX_WEIGHT
from sim.registry import ROUTERS

# the compiled routers' codes (sim/registry.py; Routing.router, RT)
R_ROUND_ROBIN, R_LEAST_LOADED, R_JSQ, R_POWER_OF_TWO, R_LEAST_KV, R_AFFINITY, R_LEAST_TIME, R_PREFIX = (
    ROUTERS.code(n) for n in ("round_robin", "least_loaded", "jsq", "power_of_two", "least_kv", "session_affinity",
                              "least_time", "prefix_aware"))


@kernel(inline=True)
def load(rt, S, F, r):
    """What a load-reading router of kind rt minimises for replica r."""
    if rt == R_LEAST_LOADED:
        return S[r, OUTTOK]
    if rt == R_LEAST_TIME:
        return S[r, OUTTOK] * F[r, TOKS]
    if rt == R_LEAST_KV:
        return -(S[r, TOT] - S[r, USED])
    return S[r, OUTREQ]  # jsq; session_affinity for a new session; the fallback


@kernel(inline=True)
def adv_key(r, rt, S, F):
    """The time from which replica r must be advanced before a router of kind rt reads it: a
    step ending (least_kv reads free blocks, which every step changes; prefix_aware the cache)
    or the bound on its next delivered completion (the others read outstanding work, which only
    completions lower)."""
    if S[r, ST] == IDLE:
        return np.inf
    e = F[r, EEND]
    if rt == R_LEAST_KV or rt == R_PREFIX:
        return e
    nb = F[r, NB]
    return nb if nb > e else e


@kernel(inline=True)
def keeps(rt):
    """A router that keeps its policy while some replicas are unavailable (it reads a load, so
    it can skip them); the others fall back to jsq then."""
    return rt == R_LEAST_LOADED or rt == R_JSQ or rt == R_LEAST_KV or rt == R_LEAST_TIME


@kernel(inline=True)
def load_key(r, rt, fb, S, F):
    """What the router minimises for replica r (fb: some replicas are unavailable; none of them
    is ever picked)."""
    if fb and (S[r, DOWN] or S[r, DRN]):
        return np.inf
    return float(load(rt, S, F, r))


@kernel(inline=True)
def _tree_pull(T, i):
    """Node i holds the lesser of its children."""
    a = T[2 * i]
    b = T[2 * i + 1]
    T[i] = a if a <= b else b


@kernel
def _tree_set(T, q, v):
    """Leaf q to v, and the nodes above it; a node whose value stays the same stops the walk
    (nothing above it can change): most updates at a large fleet end a few levels up."""
    i = T.shape[0] // 2 + q
    if T[i] == v:
        return
    T[i] = v
    i >>= 1
    while i:
        a = T[2 * i]
        b = T[2 * i + 1]
        m = a if a <= b else b
        if T[i] == m:
            return
        T[i] = m
        i >>= 1


@kernel
def build_trees(rt, fb, S, F):
    """Each routing group's two trees (rows of TA and TL), over its replicas, keyed for the
    group's router (RTJ's while some replicas are unavailable)."""
    P = rt.TA.shape[1] // 2
    RTX = rt.RTJ if fb else rt.RT
    for g in range(rt.NG.shape[0]):
        A = rt.TA[g]
        L = rt.TL[g]
        for q in range(rt.NG[g]):
            r = rt.GR[g, q]
            A[P + q] = adv_key(r, RTX[g], S, F)
            L[P + q] = load_key(r, RTX[g], fb, S, F)
        for i in range(P - 1, 0, -1):
            _tree_pull(A, i)
            _tree_pull(L, i)


@kernel(inline=True)
def fix_tree(rt, r, fb, S, F):
    """Replica r changed (advanced, or a request joined it): its leaves again."""
    g = S[r, RGRP]
    q = S[r, RLOC]
    x = rt.RTJ[g] if fb else rt.RT[g]
    _tree_set(rt.TA[g], q, adv_key(r, x, S, F))
    _tree_set(rt.TL[g], q, load_key(r, x, fb, S, F))


@kernel
def tree_next(T, lo, x):
    """The lowest leaf index >= lo whose value is <= x (finite: the padding is +inf); -1 if none."""
    P = T.shape[0] // 2
    if lo >= P:
        return -1
    i = P + lo
    while T[i] > x:
        while i & 1:  # a right child: its parent's right neighbour comes next
            i >>= 1
        if i == 0:
            return -1
        i += 1
    while i < P:  # down to the leftmost leaf at or below x
        i = 2 * i
        if T[i] > x:
            i += 1
    return i - P


@kernel(inline=True)
def _tree_argmin(T):
    """The leaf with the least value, the lowest index among equals."""
    P = T.shape[0] // 2
    i = 1
    while i < P:
        i = 2 * i
        if T[i] > T[i + 1]:
            i += 1
    return i - P


@kernel(inline=True)
def advance_group(g, now, st, fb):
    """Every replica of group g whose load may have changed before `now` advanced to it, in
    index order (the order of their energy and power rows), its leaves fixed. 0, or TS_FULL
    (grow the buffers and call again: advancing is idempotent)."""
    rt, rp, rq, run = st.rt, st.rp, st.rq, st.run
    q = tree_next(rt.TA[g], 0, now)
    while 0 <= q < rt.NG[g]:  # (now = inf at the end: the padding's +inf leaves match too)
        r = rt.GR[g, q]
        if advance(r, now, before(now), rp, rq, run) == TS_FULL:
            return TS_FULL
        fix_tree(rt, r, fb, rp.S, rp.F)
        q = tree_next(rt.TA[g], q + 1, now)
    return 0


@kernel(inline=True)
def arrival_check(j, st):
    """Why request j is turned away on arrival, before any replica is read (-1: it is not):
    RS_POWER (shed while the facility is over its supply), RS_NO_POOL (no pool serves its
    model) or RS_NONE (it needs more KV than a replica of its group holds: kv_capacity)."""
    if st.run.GI[SHED]:
        return RS_POWER
    g = st.rq.RQ[j, QG]
    if g < 0:
        return RS_NO_POOL
    if st.rq.prompt[j] + st.rq.output[j] > st.rt.FIT[g]:
        return RS_NONE
    return FIT_OK


@kernel(inline=True)
def group_available(g, st, fb):
    """Whether some replica of group g can take a request (the group's TL tree current when fb)."""
    return st.run.GI[NAV] > 0 and not (fb and st.rt.TL[g, 1] == np.inf)


@kernel
def _prefix_pick(g, j, st, fb):
    """prefix_aware in group g: the highest score PREFIX_WEIGHT x (share of the prompt cached
    there) + (1 - outstanding requests / the group's most); ties to the lowest index;
    unavailable replicas (fb) never."""
    S, GR, RQ = st.rp.S, st.rt.GR, st.rq.RQ
    most = 1
    for q in range(GR.shape[1]):
        r = GR[g, q]
        if r < 0:
            break
        if S[r, OUTREQ] > most:
            most = S[r, OUTREQ]
    best = -1
    best_v = -np.inf
    target = st.rq.prompt[j] + RQ[j, GEN]
    for q in range(GR.shape[1]):
        r = GR[g, q]
        if r < 0:
            break
        if fb and (S[r, DOWN] or S[r, DRN]):
            continue
        hits = peek_hits(r, j, target, S, RQ, st.rp.KC)[0]
        v = PREFIX_WEIGHT * (hits * S[r, BS]) / target + (1.0 - S[r, OUTREQ] / most)
        if v > best_v:
            best = r
            best_v = v
    return best


@kernel(inline=True)
def read(g, j, now, st, fb):
    """The fast driver's lazy replicas: bring up to `now` what request j's router reads in group
    g (what `choose` reads next): nothing for round robin or a session's home, the pair for
    power_of_two, else every replica of the group whose load may have changed. 0 or TS_FULL."""
    rt, rp = st.rt, st.rp
    router = rt.router
    if not fb and (router == R_ROUND_ROBIN or rt.NG[g] == 1):
        return 0
    si = rt.sess[j] if router == R_AFFINITY else -1
    if not fb and si >= 0 and rt.home[si] >= 0:
        return 0
    eff = router if (not fb or keeps(router)) else R_JSQ
    if eff == R_POWER_OF_TWO:  # reads two replicas: advanced in index order
        a = rt.GR[g, rt.pairs[j, 0]]
        b = rt.GR[g, rt.pairs[j, 1]]
        for q in range(2 if a != b else 1):
            r = min(a, b) if q == 0 else max(a, b)
            if adv_key(r, eff, rp.S, rp.F) > now:
                continue  # what the router reads cannot have changed before this arrival
            if advance(r, now, before(now), rp, st.rq, st.run) == TS_FULL:
                return TS_FULL
        return 0
    return advance_group(g, now, st, fb)


@kernel(inline=True)
def choose(g, j, st, fb):
    """The replica request j of group g goes to, its router's state kept (round robin's count, a
    session's home), over current replicas (fb: some are unavailable; a router that does not
    read a load then falls back to jsq among the rest)."""
    rt, S = st.rt, st.rp.S
    router = rt.router
    ng = rt.NG[g]
    if not fb and (router == R_ROUND_ROBIN or ng == 1):
        k = rt.GR[g, 0] if ng == 1 else rt.GR[g, rt.RRG[g] % ng]
        rt.RRG[g] += 1
        return k
    si = rt.sess[j] if router == R_AFFINITY else -1
    if not fb and si >= 0 and rt.home[si] >= 0:
        return rt.home[si]  # the session's replica: no load is read
    if not fb and router == R_PREFIX:
        return _prefix_pick(g, j, st, fb)
    eff = router if (not fb or keeps(router)) else R_JSQ
    if eff == R_POWER_OF_TWO:
        a = rt.GR[g, rt.pairs[j, 0]]
        b = rt.GR[g, rt.pairs[j, 1]]
        ra = S[a, OUTREQ]
        rb = S[b, OUTREQ]
        return a if (ra < rb or (ra == rb and a <= b)) else b
    # the least loaded: fewest outstanding tokens, fewest outstanding requests (jsq, new
    # sessions, the fallback), most free KV blocks; ties to the lowest index
    k = rt.GR[g, _tree_argmin(rt.TL[g])]
    if si >= 0 and not fb:
        rt.home[si] = k
    return k


@kernel(inline=True)
def unchoose(g, j, st, fb, fresh):
    """Undo `choose`'s change to the router's state (the fast driver routes the request again
    after growing its buffers); `fresh`: the request's session had no home before."""
    rt = st.rt
    if not fb and (rt.router == R_ROUND_ROBIN or rt.NG[g] == 1):
        rt.RRG[g] -= 1
    if fresh:
        rt.home[rt.sess[j]] = -1


@kernel(inline=True)
def fresh_session(j, st):
    """Whether request j starts a session that has no replica yet (session_affinity)."""
    rt = st.rt
    return rt.router == R_AFFINITY and rt.sess[j] >= 0 and rt.home[rt.sess[j]] < 0


@kernel(inline=True)
def assign(k, j, S, rq):
    """Request j is routed to replica k: it counts as k's outstanding work from now."""
    S[k, OUTTOK] += rq.prompt[j] + rq.output[j]
    S[k, OUTREQ] += 1
    rq.REP[j] = k


@kernel(inline=True)
def unassign(k, j, S, rq):
    """Request j no longer goes to replica k (re-routed before it arrived there)."""
    S[k, OUTTOK] -= rq.prompt[j] + rq.output[j]
    S[k, OUTREQ] -= 1


@kernel
def route_current(j, st):
    """The per-step driver's routing of request j by a compiled router: its replicas are current,
    so the trees are rebuilt and the router chooses. -1: no replica of its group can take it."""
    rp = st.rp
    fb = st.run.GI[NAV] < rp.S.shape[0]
    build_trees(st.rt, fb, rp.S, rp.F)
    g = st.rq.RQ[j, QG]
    if not group_available(g, st, fb):
        return -1
    return choose(g, j, st, fb)


@kernel(inline=True)
def choose_decode(dg, j, st, fb):
    """The decode replica of prefilled request j in decode group dg, by router.decode_policy over
    current replicas: round robin in turn; the others the least loaded by the group's tree."""
    rt = st.rt
    if fb or rt.RT[dg] != R_ROUND_ROBIN:
        return rt.GR[dg, _tree_argmin(rt.TL[dg])]
    k = rt.GR[dg, rt.RRG[dg] % rt.NG[dg]]
    rt.RRG[dg] += 1
    return k


@kernel(inline=True)
def decode_reads(dg, st, fb):
    """Whether the decode router of group dg reads the replicas' load (else it takes turns)."""
    return fb or st.rt.RT[dg] != R_ROUND_ROBIN
