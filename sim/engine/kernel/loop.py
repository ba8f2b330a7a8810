"""The fast driver's event loop (`run_until`): arrivals in order, each routed after what its
router reads has been brought to its time, merged with the client deadlines (`expire`) and the
hand-offs of disaggregated models; replicas are advanced lazily and independently. Resumable:
at a barrier (a facility event at T) every event at or before T has happened, every replica is
at T, and the loop's position is kept in Clock (D, Df) for the next call."""

from __future__ import annotations

import numpy as np

from sim.engine.kernel.advance import advance, before
from sim.engine.kernel.handoff import collect, until
from sim.engine.kernel.jit import kernel
from sim.engine.kernel.layout import (D_DEADLINE, D_ENTERED, D_NEXT, D_STARTED, DF_NOW, EEND, FIT_OK, HOH, IDLE,
                                      NAV, NXT, PD, QG, R_GONE, RS_NO_CAPACITY, RST, ST, TS_FULL)
from sim.engine.kernel.lifecycle import client_free, enqueue, give_up
from sim.engine.kernel.route import (R_JSQ, R_POWER_OF_TWO, R_ROUND_ROBIN, arrival_check, assign, build_trees,
                                     choose, fix_tree, fresh_session, group_available, keeps, read, unchoose)
from sim.engine.recorder import IN_FLIGHT, REJECTED


@kernel(inline=True)
def reject(j, why, t, rq):
    """Request j is turned away on arrival at t (why: RS_*; RS_NONE: it needs more KV than a
    replica holds)."""
    rq.STATUS[j] = REJECTED
    rq.RSN[j] = why
    client_free(j, t, rq)


@kernel(inline=True)
def keep(D, Df, i, started, dj, entered, now):
    """The event loop's position, for the next call to resume from: next arrival, started
    (central_queue), next deadline, arrivals processed, the arrival clock."""
    D[D_NEXT] = i
    D[D_STARTED] = started
    D[D_DEADLINE] = dj
    D[D_ENTERED] = entered
    Df[DF_NOW] = now


@kernel(inline=True)
def _pause(D, Df, i, started, dj, entered, now):
    """run_until stops for its buffers to grow: the position to resume from (arrival i again)."""
    keep(D, Df, i, started, dj, entered, now)
    return TS_FULL


@kernel(inline=True)
def expire(j, td, st):
    """Request j's client gives up at td (a calendar event): its replica is advanced to td (the
    instant's step ends and plans come first) and j, if still live, is cancelled and fails.
    0: done; TS_FULL: grow the buffers and call again (nothing was cancelled)."""
    rq = st.rq
    k = np.int64(rq.REP[j])
    if k < 0 or rq.STATUS[j] != IN_FLIGHT:
        return 0  # (completed: its replica delivered it before td, up to which it has been run)
    if advance(k, td, td, st.rp, rq, st.run) == TS_FULL:
        return TS_FULL
    if rq.RQ[j, RST] != R_GONE:
        give_up(k, j, td, st.rp, rq)
    return 0


@kernel(inline=True)
def _route(j, now, st, fb, tree):
    """Request j, arrived at now: turned away, or routed and in its replica's queue. 0, or
    TS_FULL (nothing changed: route it again after growing the buffers)."""
    rq, rp = st.rq, st.rp
    why = arrival_check(j, st)
    if why != FIT_OK:
        reject(j, why, now, rq)
        return 0
    g = rq.RQ[j, QG]
    if not group_available(g, st, fb):
        reject(j, RS_NO_CAPACITY, now, rq)
        return 0
    fresh = fresh_session(j, st)
    if read(g, j, now, st, fb) == TS_FULL:
        return TS_FULL
    k = choose(g, j, st, fb)
    # the target must be exactly at this time before the request joins its queue
    if advance(k, now, before(now), rp, rq, st.run) == TS_FULL:
        unchoose(g, j, st, fb, fresh)
        return TS_FULL
    assign(k, j, rp.S, rq)
    enqueue(k, j, now, rp, rq)
    if tree:
        fix_tree(st.rt, k, fb, rp.S, rp.F)
    return 0


@kernel(inline=True)
def start(st):
    """What a call of an event loop reads once (the replicas change only between calls): (fb:
    some replicas are down, drained or commissioning, so a load-reading router chooses among the
    rest and any other falls back to fewest outstanding requests, as the per-step driver does;
    pd: disaggregated; tree: the routers' trees are kept, built here). Hand-offs a barrier's
    actions left (a failed node's lagged output) join the events."""
    rt, S, F = st.rt, st.rp.S, st.rp.F
    R = S.shape[0]
    fb = st.run.GI[NAV] < R
    eff = rt.router if (not fb or keeps(rt.router)) else R_JSQ
    pd = st.run.GI[PD] != 0  # disaggregated: prefilled requests are handed to decode replicas
    # routing reads loads, or prefill replicas are advanced as they may hand off: the trees
    tree = R > 1 and ((eff != R_ROUND_ROBIN and eff != R_POWER_OF_TWO) or pd)
    if tree:
        build_trees(rt, fb, S, F)
    if pd:
        for r in range(R):
            if S[r, HOH] >= 0:
                collect(r, st)
    return fb, pd, tree


@kernel(inline=True)
def end_of(T, horizon):
    """The last instant a call up to T handles: T at a barrier, else just before the horizon."""
    return T if T < horizon else (np.nextafter(horizon, -np.inf) if horizon < np.inf else np.inf)


@kernel(inline=True)
def to_barrier(T, st):
    """Every replica's steps ending by the call's end (a barrier: at T, wake-ups at T too; the
    end: before the horizon); nothing that can end a request lies before it. 0 or TS_FULL."""
    S, F = st.rp.S, st.rp.F
    wake_at_T = T < st.clk.horizon
    end = end_of(T, st.clk.horizon)
    for r in range(S.shape[0]):
        if S[r, ST] == IDLE or F[r, EEND] > end:
            continue  # nothing of it happens by then (its bound on deliveries stays a bound)
        if advance(r, end, end if wake_at_T else before(end), st.rp, st.rq, st.run) == TS_FULL:
            return TS_FULL
    return 0


@kernel
def run_until(T, st):
    """The event loop, up to a barrier at T (inf: to the end): arrivals in order, each routed
    after what its router reads has been advanced to its time, merged with the client deadlines
    (arrival + timeout; inf: none) of the requests that entered; nothing at or after the horizon
    (inf: none) happens. Returns 0, or TS_FULL when a buffer of Run is full: grow it and call
    again, and the loop resumes where it stopped (the arrival it was handling starts again:
    advancing is idempotent). Without reference counting, so no call in the loop costs atomic
    increments."""
    rp, rq, rt, clk = st.rp, st.rq, st.rt, st.clk
    arr, S, F, D, Df = rq.arr, rp.S, rp.F, clk.D, clk.Df
    horizon, timeout, d0 = clk.horizon, clk.timeout, clk.d0
    n = arr.shape[0]
    now = Df[DF_NOW]
    i = D[D_NEXT]
    started = D[D_STARTED]
    dj = D[D_DEADLINE]  # the next request whose deadline is pending
    entered = D[D_ENTERED]  # requests whose arrival was processed
    fb, pd, tree = start(st)
    while i < n:
        target = arr[i] + d0
        t_i = now + (target - now) if target > now else now  # SimPy's clock: now + delay
        if t_i >= horizon or t_i > T:
            break  # SimPy stops before the events at the horizon
        prev = now
        now = t_i
        # deadlines before this arrival (one at the same instant comes after it)
        full = False
        while dj < i and arr[dj] + timeout < now:
            td = arr[dj] + timeout
            if (pd and until(td, st, fb) == TS_FULL) or expire(dj, td, st) == TS_FULL:
                full = True
                break
            if tree and rq.REP[dj] >= 0:
                fix_tree(rt, rq.REP[dj], fb, S, F)
            dj += 1
        if full or (pd and until(now, st, fb) == TS_FULL):
            return _pause(D, Df, i, started, dj, entered, prev)
        if _route(i, now, st, fb, tree) == TS_FULL:
            return _pause(D, Df, i, started, dj, i, prev)
        i += 1
        entered = i
    keep(D, Df, i, started, dj, entered, now)  # (every arrival up to T is done: a call again resumes after them)
    while dj < entered and arr[dj] + timeout < horizon and arr[dj] + timeout <= T:
        td = arr[dj] + timeout
        if (pd and until(td, st, fb) == TS_FULL) or expire(dj, td, st) == TS_FULL:
            D[D_DEADLINE] = dj
            return TS_FULL
        if tree and rq.REP[dj] >= 0:  # (hand-offs routed after it read the trees: found by fuzzing)
            fix_tree(rt, rq.REP[dj], fb, S, F)
        dj += 1
    D[D_DEADLINE] = dj
    if pd:  # hand-offs up to the barrier (or, at the end, all of them before the horizon)
        if until(end_of(T, horizon), st, fb) == TS_FULL:
            return TS_FULL
    return to_barrier(T, st)


@kernel
def row_floor(st):
    """A time before which run_until (paused, or between barriers) writes no more power rows:
    the earliest of the arrival clock (later arrivals and pending deadlines come at or after
    it), each busy replica's step end or wake-up (its next row), the times of prefilled requests
    not yet handed on and of pending hand-off events (a decode replica they wake writes rows
    from then). The ledger can take every row before it without waiting for a barrier."""
    S, F, RQ, FIN, ho = st.rp.S, st.rp.F, st.rq.RQ, st.rq.FIN, st.ho
    w = st.clk.Df[DF_NOW]
    for r in range(S.shape[0]):
        if S[r, ST] != IDLE and F[r, EEND] < w:
            w = F[r, EEND]
        i = S[r, HOH]
        while i >= 0:
            if FIN[i] < w:
                w = FIN[i]
            i = RQ[i, NXT]
    if ho.HN[0] > 0 and ho.HT[0] < w:
        w = ho.HT[0]
    return w
