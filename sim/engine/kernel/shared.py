"""central_queue: every replica pulls from one queue (row 0's), so every plan couples the
replicas and the fast driver handles events one at a time in SimPy's order (`run_shared`);
`to_shared` puts a request in the shared queue and wakes the first idle replica."""

from __future__ import annotations

import numpy as np

from sim.engine.kernel.jit import kernel
from sim.engine.kernel.cache_index import kc_low
from sim.engine.kernel.layout import (D_ARR_SEQ, D_DEADLINE, D_ENTERED, D_NEXT, D_SEQ, D_STARTED, DF_NEXT, DF_NOW,
                                      DOWN, DRN, EEND, FAC, FIT_OK, IDLE, NAV, OWN, PB_N, R_GONE, R_WAITING,
                                      RS_NO_CAPACITY, RST, SEQ, ST, STEP, TS_FULL, TS_N, WAKE)
from sim.engine.kernel.lifecycle import commit, give_up, sleep, wake
from sim.engine.kernel.loop import keep, reject
from sim.engine.kernel.plan import batch_low, plan
from sim.engine.kernel.queues import q_push, queue_key
from sim.engine.kernel.route import arrival_check
from sim.engine.kernel.step import idle_until
from sim.engine.recorder import REJECTED


@kernel
def to_shared(j, t, st):
    """central_queue: request j joins the shared queue (at the back: an arrival, or a request
    re-routed after a node failure) and wakes the first idle replica that can take work, which
    it returns (-1: none)."""
    S, RQ = st.rp.S, st.rq.RQ
    st.rq.REP[j] = 0  # entered (the table names the replica that completes it, at the end)
    RQ[j, RST] = R_WAITING
    q_push(0, j, False, queue_key(0, j, S, RQ, st.rq.QA, st.rq.prompt), S, RQ, st.rq.QA)
    for r in range(S.shape[0]):
        if S[r, ST] == IDLE and not (S[r, DOWN] or S[r, DRN]):
            wake(r, t, S, st.rp.F, st.clk.D)
            return r
    return -1


@kernel(inline=True)
def _next_event(st, ai, n):
    """The next step end or wake-up, or the next arrival, in SimPy's order: by time, then when it
    was scheduled (S SEQ; the arrival process's next timeout has D_ARR_SEQ). (time, who): who is
    a replica, -1 (the arrival) or -2 (none)."""
    S, F, D = st.rp.S, st.rp.F, st.clk.D
    best = st.clk.Df[DF_NEXT] if ai < n else np.inf
    best_seq = D[D_ARR_SEQ]
    who = -1 if ai < n else -2
    for r in range(S.shape[0]):
        s = S[r, ST]
        if s == STEP or s == WAKE:
            e = F[r, EEND]
            if e < best or (e == best and S[r, SEQ] < best_seq):
                best = e
                best_seq = S[r, SEQ]
                who = r
    return best, who


@kernel
def run_shared(T, st):
    """central_queue's loop: events one at a time in SimPy's order: by time, then priority (step
    ends, wake-ups and arrivals before client deadlines), then when they were scheduled. An
    arrival joins the queue and wakes the first idle replica that can take work (to_shared). Up to
    a barrier at T (inf: to the end), as run_until: every event at or before T has happened, and
    the loop's position is kept in Clock (the arrival process's clock and the next arrival's time
    and insertion count), so the next call resumes it; the facility acts between calls. 0, or
    TS_FULL: grow the buffers and call again."""
    rp, rq, run, clk = st.rp, st.rq, st.run, st.clk
    arr, RQ, S, D, Df, GI = rq.arr, rq.RQ, rp.S, clk.D, clk.Df, run.GI
    horizon, timeout, d0 = clk.horizon, clk.timeout, clk.d0
    n = arr.shape[0]
    ai = D[D_NEXT]  # next arrival
    dj = D[D_DEADLINE]
    entered = D[D_ENTERED]
    a_now = Df[DF_NOW]  # the arrival process's clock
    if D[D_STARTED] == 0:  # the first call: the first arrival's timeout
        D[D_STARTED] = 1
        Df[DF_NEXT] = np.inf
        if n > 0:
            target = arr[0] + d0
            Df[DF_NEXT] = a_now + (target - a_now) if target > a_now else a_now
            D[D_ARR_SEQ] = D[D_SEQ]
            D[D_SEQ] += 1
    while True:
        if ((run.ts_on and GI[TS_N] + 4 > run.tsf.shape[0]) or (GI[FAC] != 0 and GI[PB_N] + 64 > run.PW.shape[0])
                or kc_low(rp.KC)):
            keep(D, Df, ai, D[D_STARTED], dj, entered, a_now)
            return TS_FULL
        best, who = _next_event(st, ai, n)
        # a client deadline before the next event (one at the same instant comes after it)
        if dj < entered and arr[dj] + timeout < horizon and arr[dj] + timeout < best and arr[dj] + timeout <= T:
            j = dj
            dj += 1
            if rq.STATUS[j] != REJECTED and RQ[j, RST] != R_GONE:
                k = np.int64(RQ[j, OWN]) if RQ[j, RST] != R_WAITING else 0  # queued: the shared queue
                give_up(k, j, arr[j] + timeout, rp, rq)
            continue
        if who == -2 or best >= horizon or best > T:
            break
        if who == -1:  # arrivals: this one and any at the same instant (no timeout in between)
            now = Df[DF_NEXT]
            a_now = now
            while True:
                i = ai
                ai += 1
                entered = ai
                why = arrival_check(i, st)
                if why != FIT_OK:
                    reject(i, why, now, rq)
                elif GI[NAV] == 0:
                    RQ[i, RST] = R_GONE  # its deadline finds it gone
                    reject(i, RS_NO_CAPACITY, now, rq)
                else:
                    to_shared(i, now, st)
                if ai >= n or arr[ai] + d0 > now:
                    break
            if ai < n:
                target = arr[ai] + d0
                Df[DF_NEXT] = now + (target - now)
                D[D_ARR_SEQ] = D[D_SEQ]
                D[D_SEQ] += 1
            continue
        r = who
        if batch_low(r, rp):  # (nothing changed since the loop's top: resumed here after growing)
            keep(D, Df, ai, D[D_STARTED], dj, entered, a_now)
            return TS_FULL
        if S[r, ST] == WAKE:
            idle_until(r, best, rp.F, run)
        else:
            commit(r, best, rp, rq)
        if plan(r, best, rp, rq, run) == 0:
            sleep(r, best, rp, rq, run)
        else:
            S[r, SEQ] = D[D_SEQ]
            D[D_SEQ] += 1
    keep(D, Df, ai, D[D_STARTED], dj, entered, a_now)
    return 0
