"""Closed-loop clients (`[workload] arrival = "closed"`): `concurrency` clients, each sending its
next request when its last one ends (completed, rejected or failed: lifecycle.client_free)
plus its think time. The clients waiting to send are a min-heap in Requests (CK send time, CT
tie: the request that ended, CV: the client); request i is the i-th request sent.

`run_closed` is the fast driver's event loop for them. A send time is known only once every
completion before it is, so the loop merges three kinds of event in time order: a replica's
next event that may end a request (a min-tree, Routing TC, over every replica: a step ending at
or after its delivery bound, or a wake-up), the clients' sends, and the client deadlines. At an
instant the replicas' events come first, then the sends (all those at the instant, one batch:
the per-step driver's CLIENT priority), then deadlines (LATE); sim/engine/events.py. Replicas
are still advanced lazily: a replica whose batch only decodes is stepped in one run up to its
delivery bound, not event by event.
"""

from __future__ import annotations

import numpy as np

from sim.engine.kernel import heap
from sim.engine.kernel.advance import advance, before
from sim.engine.kernel.jit import kernel
from sim.engine.kernel.layout import (D_DEADLINE, D_ENTERED, D_NEXT, D_POPPED, DF_BATCH, DF_NOW, EEND, IDLE, NAV,
                                      NB, ST, TS_FULL, WAKE)
from sim.engine.kernel.loop import _route, expire
from sim.engine.kernel.route import (R_JSQ, R_POWER_OF_TWO, R_ROUND_ROBIN, _tree_argmin, _tree_pull, _tree_set,
                                     build_trees, fix_tree, keeps)


@kernel(inline=True)
def event_key(r, S, F):
    """The earliest time replica r's own events can end a request or change what comes next:
    a wake-up's plan at its time; a step in flight at its end or, in a stable decode batch,
    the bound on its next delivered completion (advance.next_delivery_bound); idle: never."""
    s = S[r, ST]
    if s == IDLE:
        return np.inf
    e = F[r, EEND]
    if s == WAKE:
        return e
    nb = F[r, NB]
    return nb if nb > e else e


@kernel
def build_client_tree(TC, S, F):
    """Routing TC over every replica (its leaves: event_key)."""
    P = TC.shape[0] // 2
    for r in range(P):
        TC[P + r] = event_key(r, S, F) if r < S.shape[0] else np.inf
    for i in range(P - 1, 0, -1):
        _tree_pull(TC, i)


@kernel
def pop_client(rq, i):
    """Request i is the next sent: its send time and client, off the clients' heap."""
    n = rq.CN[0]
    t, _tie, c = heap.pop(rq.CK, rq.CT, rq.CV, n)
    rq.CN[0] = n - 1
    rq.arr[i] = t
    rq.CLI[i] = c
    return t


@kernel(inline=True)
def _keep(D, Df, i, dj, now, bt):
    D[D_NEXT] = i
    D[D_ENTERED] = i
    D[D_DEADLINE] = dj
    Df[DF_NOW] = now
    Df[DF_BATCH] = bt


@kernel
def run_closed(T, st):
    """The event loop of closed-loop clients up to a barrier at T (inf: to the end), as
    loop.run_until: 0, or TS_FULL to grow the buffers and call again (it resumes where it
    stopped: a send taken off the heap is kept in D_POPPED)."""
    rp, rq, run, rt, clk = st.rp, st.rq, st.run, st.rt, st.clk
    arr, S, F, D, Df = rq.arr, rp.S, rp.F, clk.D, clk.Df
    horizon, timeout, d0, stop = clk.horizon, clk.timeout, clk.d0, clk.stop
    n = arr.shape[0]
    R = S.shape[0]
    now = Df[DF_NOW]
    bt = Df[DF_BATCH]
    i = D[D_NEXT]
    dj = D[D_DEADLINE]
    fb = run.GI[NAV] < R
    eff = rt.router if (not fb or keeps(rt.router)) else R_JSQ
    tree = R > 1 and eff != R_ROUND_ROBIN and eff != R_POWER_OF_TWO
    if tree:
        build_trees(rt, fb, S, F)
    TC = rt.TC
    build_client_tree(TC, S, F)
    wake_at_T = T < horizon  # a barrier: every replica at T, wake-ups at T done
    end = T if wake_at_T else (np.nextafter(horizon, -np.inf) if horizon < np.inf else np.inf)
    while True:
        if i < n and i < D[D_POPPED]:
            H = arr[i] + d0  # taken off the heap before a pause
        elif i < n and rq.CN[0] > 0 and rq.CK[0] < stop:
            H = rq.CK[0] + d0
        else:
            H = np.inf
        td = arr[dj] + timeout if dj < i else np.inf
        m = TC[1] if H != bt else np.inf  # (within a batch of sends no replica event comes first)
        x = min(m, H, td)
        if x > end or x == np.inf:
            break
        if m <= H and m <= td:  # a replica's event: steps ending at or before m, a wake-up at m
            r = _tree_argmin(TC)
            if advance(r, m, m, rp, rq, run) == TS_FULL:
                _keep(D, Df, i, dj, now, bt)
                return TS_FULL
            _tree_set(TC, r, event_key(r, S, F))
            if tree:
                fix_tree(rt, r, fb, S, F)
        elif H <= td:  # a client's send reaches the router
            if i >= D[D_POPPED]:
                pop_client(rq, i)
                D[D_POPPED] = i + 1
            now = H
            bt = H
            if _route(i, now, st, fb, tree) == TS_FULL:
                _keep(D, Df, i, dj, now, bt)
                return TS_FULL
            k = rq.REP[i]
            if k >= 0:
                _tree_set(TC, k, event_key(k, S, F))
            i += 1
        else:  # a client's deadline
            if expire(dj, td, st) == TS_FULL:
                _keep(D, Df, i, dj, now, bt)
                return TS_FULL
            k = rq.REP[dj]
            if k >= 0:
                _tree_set(TC, k, event_key(k, S, F))
                if tree:
                    fix_tree(rt, k, fb, S, F)
            dj += 1
            bt = -1.0  # a send its end allows at this instant comes after it (a new batch)
    _keep(D, Df, i, dj, now, bt)
    # every event that can end a request is after `end`: the rest of each replica's steps up to it
    for r in range(R):
        if S[r, ST] == IDLE or F[r, EEND] > end:
            continue
        if advance(r, end, end if wake_at_T else before(end), rp, rq, run) == TS_FULL:
            return TS_FULL
    return 0
