"""Prefill/decode disaggregation: a request prefilled on a prefill replica is handed to a
decode replica, written once for both drivers. `prefilled` (it leaves the prefill replica; one
that wanted a single token is complete there), `handoff_route` (its decode replica, by
router.decode_policy; it fails when none can take it), `begin_transfer` (its KV on its way over
the network: `transfer_s`) and `handoff_arrive` (its KV arrived: the replica whose queue it
joins, re-routed if that one went down or was drained meanwhile). The fast driver handles them
as events in time order (`until`); the per-step driver at its SimPy events."""

from __future__ import annotations

import numpy as np

from sim.engine.kernel import heap
from sim.engine.kernel.advance import advance, before
from sim.engine.kernel.jit import kernel
from sim.engine.kernel.layout import (DONE, DOWN, DRN, GEN, H_DELIVER, H_ROUTE, HELD, HOH, HOT, KVB,
                                      NIC, NLAT, NSH, NXT, QG, R_GONE, R_TRANSIT, RGRP, RNODE, RS_NO_CAPACITY, RST,
                                      TS_FULL)
from sim.engine.kernel.lifecycle import client_free, enqueue
from sim.engine.kernel.route import (advance_group, assign, build_trees, choose_decode, decode_reads, fix_tree,
                                     tree_next, unassign)
from sim.engine.recorder import COMPLETED, FAILED


@kernel(inline=True)
def fail(j, t, why, rq):
    """Request j fails at t (why: RS_*), wherever it was."""
    rq.STATUS[j] = FAILED
    rq.RSN[j] = why
    rq.FIN[j] = t
    rq.RQ[j, RST] = R_GONE
    client_free(j, t, rq)


@kernel(inline=True)
def prefilled(i, r, st):
    """Request i, prefilled on replica r, leaves it: True if it goes on to a decode replica
    (one that wanted a single token is complete)."""
    st.ho.PREP[i] = r
    if st.ho.OUT0[i] <= 1:
        st.rq.STATUS[i] = COMPLETED
        client_free(i, st.rq.FIN[i], st.rq)
        return False
    return True


@kernel
def transfer_s(j, p, d, t, st):
    """KV transfer time of request j's prompt from prefill replica p to decode replica d,
    starting at t: the ports' latency plus the links' on the path between their nodes (fewest
    microseconds), and bytes over the narrowest of the slower side's ports (each side's
    accelerators send and receive their shards in parallel) and each link's share: a link's
    bandwidth split equally among the transfers crossing it when this one starts, this one
    included, kept for its duration (fair share at the start: a simplification of max-min
    sharing; a transfer that starts later does not slow one in flight)."""
    F, S, net = st.rp.F, st.rp.S, st.net
    bw = F[p, NIC] if F[p, NIC] < F[d, NIC] else F[d, NIC]
    lat = F[p, NLAT] if F[p, NLAT] > F[d, NLAT] else F[d, NLAT]
    a = S[p, RNODE]
    b = S[d, RNODE]
    lat += net.PLAT[a, b]
    for k in range(net.PATH.shape[2]):
        ln = net.PATH[a, b, k]
        if ln < 0:
            break
        while net.LN[ln, 0] > 0 and net.LQ[ln, 0] <= t:  # the transfers on it that have ended
            heap.pop(net.LQ[ln], net.LQI[ln], net.LQI[ln], net.LN[ln, 0])
            net.LN[ln, 0] -= 1
        share = net.LBW[ln] / (net.LN[ln, 0] + 1)
        if share < bw:
            bw = share
    x = lat + st.rq.prompt[j] * F[p, KVB] / bw
    for k in range(net.PATH.shape[2]):
        ln = net.PATH[a, b, k]
        if ln < 0:
            break
        heap.push(net.LQ[ln], net.LQI[ln], net.LQI[ln], net.LN[ln, 0], t + x, 0, 0)  # (end times only)
        net.LN[ln, 0] += 1
    return x


@kernel
def begin_transfer(j, d, t, st):
    """Request j, prefilled, goes to decode replica d from t: its KV is on its way (it arrives
    with the prompt computed and the first token generated); returns when it arrives."""
    RQ, ho = st.rq.RQ, st.ho
    st.rq.output[j] = ho.OUT0[j]
    assign(d, j, st.rp.S, st.rq)
    RQ[j, QG] = st.rp.S[d, RGRP]
    RQ[j, RST] = R_TRANSIT
    RQ[j, DONE] = st.rq.prompt[j]
    RQ[j, GEN] = 1
    RQ[j, HELD] = 0
    RQ[j, NSH] = 0
    x = transfer_s(j, ho.PREP[j], d, t, st)
    ho.XFER[j] = x
    return t + x


@kernel(inline=True)
def _decode_group_ok(dg, st, fb):
    return st.rt.NG[dg] > 0 and not (fb and st.rt.TL[dg, 1] == np.inf)


@kernel(inline=True)
def decode_group(j, st, arriving):
    """The decode group prefilled request j is routed in: its prefill group's (routed now), or
    the one it was routed to (`arriving`: re-routed when its KV arrives)."""
    g = st.rq.RQ[j, QG]
    return g if arriving else st.rt.DEC[g]


@kernel
def handoff_route(j, t, st, fb, rebuild):
    """Prefilled request j's decode replica at t, over current replicas (rebuild: the per-step
    driver's trees are rebuilt first; the fast driver keeps its own current). -1: none can take
    it (j fails)."""
    if rebuild:
        build_trees(st.rt, fb, st.rp.S, st.rp.F)
    dg = decode_group(j, st, False)
    if not _decode_group_ok(dg, st, fb):
        fail(j, t, RS_NO_CAPACITY, st.rq)
        return -1
    return choose_decode(dg, j, st, fb)


@kernel
def handoff_arrive(j, t, st, fb, rebuild):
    """Request j's KV reaches its decode replica at t: the replica whose queue it joins now
    (re-routed at once, over current replicas, if that one went down or was drained on the way).
    -1: it is gone (its client gave up on the way) or failed (no decode replica can take it)."""
    RQ, S = st.rq.RQ, st.rp.S
    if RQ[j, RST] != R_TRANSIT:
        return -1  # its client gave up on the way
    d = np.int64(st.rq.REP[j])
    if not (S[d, DOWN] or S[d, DRN]):
        return d
    if rebuild:
        build_trees(st.rt, fb, S, st.rp.F)
    unassign(d, j, S, st.rq)
    dg = decode_group(j, st, True)
    if not _decode_group_ok(dg, st, fb):
        fail(j, t, RS_NO_CAPACITY, st.rq)
        return -1
    k = choose_decode(dg, j, st, fb)
    assign(k, j, S, st.rq)
    return k


@kernel(inline=True)
def _rerouted(j, st):
    """Whether request j's KV arrives at a replica that went down or was drained on the way."""
    d = st.rq.REP[j]
    return st.rq.RQ[j, RST] == R_TRANSIT and (st.rp.S[d, DOWN] or st.rp.S[d, DRN])


@kernel
def collect(r, st):
    """Prefill replica r's hand-off list into the events: each request is routed to a decode
    replica when it was prefilled (FIN)."""
    ho, RQ = st.ho, st.rq.RQ
    i = st.rp.S[r, HOH]
    while i >= 0:
        nxt = RQ[i, NXT]
        if prefilled(i, r, st):
            heap.push(ho.HT, ho.HS, ho.HI, ho.HN[0], st.rq.FIN[i], ho.HN[1], 2 * i + H_ROUTE)
            ho.HN[0] += 1
            ho.HN[1] += 1
        i = nxt
    st.rp.S[r, HOH] = -1
    st.rp.S[r, HOT] = -1


@kernel
def until(x, st, fb):
    """The fast driver's hand-offs up to x, in time order: first every prefill replica with a
    step ending by x is advanced to x (collecting what it prefilled; nothing before x can change
    a prefill replica but arrivals and deadlines, which the caller handles after this), then the
    events: a prefilled request routed (handoff_route) when it was prefilled and its KV sent
    (begin_transfer), and delivered into the decode replica's queue when it arrives
    (handoff_arrive). 0, or TS_FULL (grow and call again: an event is handled whole or put back)."""
    rt, ho, rp = st.rt, st.ho, st.rp
    while True:
        for g in range(rt.NG.shape[0]):
            if rt.DEC[g] < 0:
                continue
            q = tree_next(rt.TA[g], 0, x)
            while 0 <= q < rt.NG[g]:  # (x = inf at the end: the padding's +inf leaves match too)
                r = rt.GR[g, q]
                if advance(r, x, before(x), rp, st.rq, st.run) == TS_FULL:
                    return TS_FULL
                if rp.S[r, HOH] >= 0:
                    collect(r, st)
                fix_tree(rt, r, fb, rp.S, rp.F)
                q = tree_next(rt.TA[g], q + 1, x)
        if ho.HN[0] == 0 or ho.HT[0] > x:
            return 0
        t, seq, v = heap.pop(ho.HT, ho.HS, ho.HI, ho.HN[0])
        ho.HN[0] -= 1
        j = v >> 1
        route = (v & 1) == H_ROUTE
        if route or _rerouted(j, st):  # the decode router reads its group: advanced to t first
            dg = decode_group(j, st, not route)
            if decode_reads(dg, st, fb) and advance_group(dg, t, st, fb) == TS_FULL:
                heap.push(ho.HT, ho.HS, ho.HI, ho.HN[0], t, seq, v)  # (put back)
                ho.HN[0] += 1
                return TS_FULL
        if route:
            k = handoff_route(j, t, st, fb, False)
            if k < 0:
                continue
            heap.push(ho.HT, ho.HS, ho.HI, ho.HN[0], begin_transfer(j, k, t, st), ho.HN[1], 2 * j + H_DELIVER)
            ho.HN[0] += 1
            ho.HN[1] += 1
            fix_tree(rt, k, fb, rp.S, rp.F)
            continue
        d = handoff_arrive(j, t, st, fb, False)
        if d < 0:
            continue
        if advance(d, t, before(t), rp, st.rq, st.run) == TS_FULL:
            heap.push(ho.HT, ho.HS, ho.HI, ho.HN[0], t, seq, v)  # (put back)
            ho.HN[0] += 1
            return TS_FULL
        enqueue(d, j, t, rp, st.rq)
        fix_tree(rt, d, fb, rp.S, rp.F)
