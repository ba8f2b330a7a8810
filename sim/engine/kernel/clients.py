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
from sim.engine.kernel.advance import advance
from sim.engine.kernel.jit import kernel
from sim.engine.kernel.handoff import collect, until
from sim.engine.kernel.layout import (D_DEADLINE, D_ENTERED, D_NEXT, D_POPPED, DF_BATCH, DF_NOW, EEND, HOH, IDLE,
                                      NB, ST, TS_FULL, WAKE)
from sim.engine.kernel.loop import _route, end_of, expire, start, to_barrier
from sim.engine.kernel.route import (_tree_argmin, _tree_pull, _tree_set,
                                     fix_tree)


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


@kernel(inline=True)
def _next_send(i, D, rq, d0, stop):
    """When the next send (request i) reaches the router: taken off the heap before a pause, else
    the heap's first (inf: none left, or every client waits past `stop`)."""
    if i >= rq.arr.shape[0]:
        return np.inf
    if i < D[D_POPPED]:
        return rq.arr[i] + d0
    if rq.CN[0] > 0 and rq.CK[0] < stop:
        return rq.CK[0] + d0
    return np.inf


@kernel(inline=True)
def _replica_event(m, st, fb, pd, tree):
    """The replica whose event comes first (at m) runs through it: steps ending at or before m,
    a wake-up at m; what it prefilled joins the hand-off events. 0 or TS_FULL."""
    rt, S, F = st.rt, st.rp.S, st.rp.F
    r = _tree_argmin(rt.TC)
    if advance(r, m, m, st.rp, st.rq, st.run) == TS_FULL:
        return TS_FULL
    if pd and S[r, HOH] >= 0:  # routed to decode replicas when it was prefilled
        collect(r, st)
    _tree_set(rt.TC, r, event_key(r, S, F))
    if tree:
        fix_tree(rt, r, fb, S, F)
    return 0


@kernel(inline=True)
def _send(i, H, st, fb, tree):
    """Request i, sent by the heap's first client, reaches the router at H (taken off the heap
    once: a pause routes it again). 0 or TS_FULL."""
    rq, D = st.rq, st.clk.D
    if i >= D[D_POPPED]:
        pop_client(rq, i)
        D[D_POPPED] = i + 1
    if _route(i, H, st, fb, tree) == TS_FULL:
        return TS_FULL
    k = rq.REP[i]
    if k >= 0:
        _tree_set(st.rt.TC, k, event_key(k, st.rp.S, st.rp.F))
    return 0


@kernel(inline=True)
def _deadline(j, td, st, fb, pd, tree):
    """Request j's client gives up at td (its hand-offs up to then first). 0 or TS_FULL."""
    if (pd and until(td, st, fb) == TS_FULL) or expire(j, td, st) == TS_FULL:
        return TS_FULL
    k = st.rq.REP[j]
    if k >= 0:
        _tree_set(st.rt.TC, k, event_key(k, st.rp.S, st.rp.F))
        if tree:
            fix_tree(st.rt, k, fb, st.rp.S, st.rp.F)
    return 0


@kernel
def run_closed(T, st):
    """The event loop of closed-loop clients up to a barrier at T (inf: to the end), as
    loop.run_until: 0, or TS_FULL to grow the buffers and call again (it resumes where it
    stopped: a send taken off the heap is kept in D_POPPED)."""
    rp, rq, rt, clk = st.rp, st.rq, st.rt, st.clk
    arr, S, F, D, Df = rq.arr, rp.S, rp.F, clk.D, clk.Df
    horizon, timeout, d0, stop = clk.horizon, clk.timeout, clk.d0, clk.stop
    now = Df[DF_NOW]
    bt = Df[DF_BATCH]
    i = D[D_NEXT]
    dj = D[D_DEADLINE]
    fb, pd, tree = start(st)
    ho = st.ho
    TC = rt.TC
    build_client_tree(TC, S, F)
    end = end_of(T, horizon)
    while True:
        H = _next_send(i, D, rq, d0, stop)
        td = arr[dj] + timeout if dj < i else np.inf
        m = TC[1] if H != bt else np.inf  # (within a batch of sends no replica event comes first)
        h = ho.HT[0] if (pd and ho.HN[0] > 0 and H != bt) else np.inf  # the next hand-off event
        x = min(m, h, H, td)
        if x > end or x == np.inf:
            break
        if h <= m and h <= H and h <= td:  # hand-offs (a replica's event at the same instant may come first)
            if until(h, st, fb) == TS_FULL:
                _keep(D, Df, i, dj, now, bt)
                return TS_FULL
            build_client_tree(TC, S, F)  # (decode replicas woken, prefill replicas advanced)
        elif m <= H and m <= td:  # a replica's event
            if _replica_event(m, st, fb, pd, tree) == TS_FULL:
                _keep(D, Df, i, dj, now, bt)
                return TS_FULL
        elif H <= td:  # a client's send reaches the router
            now = H
            bt = H
            if _send(i, H, st, fb, tree) == TS_FULL:
                _keep(D, Df, i, dj, now, bt)
                return TS_FULL
            i += 1
        else:  # a client's deadline
            if _deadline(dj, td, st, fb, pd, tree) == TS_FULL:
                _keep(D, Df, i, dj, now, bt)
                return TS_FULL
            dj += 1
            bt = -1.0  # a send its end allows at this instant comes after it (a new batch)
    _keep(D, Df, i, dj, now, bt)
    # every event that can end a request is after `end`: the rest of each replica's steps up to it
    if pd and until(end, st, fb) == TS_FULL:
        return TS_FULL
    return to_barrier(T, st)
