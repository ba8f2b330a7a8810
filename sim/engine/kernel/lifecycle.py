"""A request's life on a replica after the plan: a step's commit (decode tokens, finished
prefills, completions, output delivered a step late where the engine lags), a client's cancel,
arrival in a queue (`enqueue`), and a replica's rest, wake-up and node failure (`evacuate`): the
transitions the facility's narrow interface and the drivers call."""

from __future__ import annotations

import numpy as np

from sim.engine.kernel import heap
from sim.engine.kernel.jit import kernel, njit
from sim.engine.kernel.cache_index import kc_clear
from sim.engine.kernel.kv import cdiv, drop, register, release, unlink_prefill
from sim.engine.kernel.layout import (AH, AT, BS, BUSY, CH_REQ, CH_TOK, CTXB, D_SEQ, DIT, DONE, DOWN, EEND, ESTEP,
                                      FHLEN, DRN, GEN, GRP, HELD, HOH, HOT, IDLE, IDLE_SINCE, LAG, LH, LT, NAV, NB, NCH,
                                      NDEC, NLRU, NPDONE, NPF, NPFIRST, NRUN, NSH, NXT, OUTREQ, OUTTOK, P_ANALYTIC,
                                      P_PRIORITY, P_SJF, POL, PB, PH, PLNDEC, PT, PUB, QBLK, QH, QLEN, QLEFT,
                                      QRIGHT, QROW, QT, R_DECODE, R_GONE, R_PREFILL, R_TRANSIT, R_WAITING, REST_W, ROLE,
                                      ROLE_PREFILL, RST, RSV, SEQ, SHARED, ST, STEP, SWP, TLH, TLT, TN, TPEND, TSWP,
                                      USED, WAKE, WSTEP)
from sim.engine.kernel.queues import is_heap, q_pop, q_push, queue_key
from sim.engine.kernel.step import bin_energy, idle_until, power_row, ts_add
from sim.engine.recorder import COMPLETED, FAILED


@kernel(inline=True)
def client_free(j, t, rq):
    """Request j ended at t (completed, rejected or failed): with closed-loop clients, its
    client sends its next request after its think time (onto the clients' heap, ties in order
    of the request that ended). Nothing for open-loop arrivals."""
    if rq.think.shape[0] == 0:
        return
    n = rq.CN[0]
    heap.push(rq.CK, rq.CT, rq.CV, n, t + rq.think[j], j, rq.CLI[j])
    rq.CN[0] = n + 1


@kernel(inline=True)
def complete(r, i, t, S, rq):
    """Request i's last token reaches its client at t; on a prefill replica it joins the
    hand-off list instead (prefilled: a decode replica takes it on)."""
    S[r, OUTREQ] -= 1
    S[r, OUTTOK] -= rq.prompt[i] + rq.output[i]
    rq.FIN[i] = t  # (prefilled: when it was ready; the decode replica's finish overwrites it)
    if S[r, ROLE] == ROLE_PREFILL:
        RQ = rq.RQ
        RQ[i, NXT] = -1
        if S[r, HOT] >= 0:
            RQ[S[r, HOT], NXT] = i
        else:
            S[r, HOH] = i
        S[r, HOT] = i
        return
    rq.STATUS[i] = COMPLETED
    client_free(i, t, rq)


@kernel
def flush(r, t, rp, rq):
    """Deliver the previous step's lagged tokens at t."""
    S = rp.S
    for k in range(S[r, NPFIRST]):
        rq.FIRST[rp.PFIRST[r, k]] = t
    S[r, NPFIRST] = 0
    for k in range(S[r, NPDONE]):
        complete(r, rp.PDONE[r, k], t, S, rq)
    S[r, NPDONE] = 0


@kernel
def finish(r, i, t, blocks, rp, rq):
    """Request i generated its last token at t: its KV (`blocks`) goes, and it completes now
    or with the next step (a lagging engine)."""
    S, RQ = rp.S, rq.RQ
    S[r, NRUN] -= 1
    if S[r, PUB] and RQ[i, GRP] >= 0:  # a session's turn: its response's full blocks are cached too
        RQ[i, DONE] = min(rq.prompt[i] + rq.output[i] - 1, blocks * S[r, BS])  # (the last token has no KV)
        register(r, i, S, RQ, rp.KC)
    release(r, i, blocks, S, RQ, rp.KC)
    if S[r, LAG]:
        rp.PDONE[r, S[r, NPDONE]] = i
        S[r, NPDONE] += 1
    else:
        complete(r, i, t, S, rq)


@kernel(inline=True)
def commit(r, e, rp, rq):
    """Apply the step in flight, which ended at e."""
    S, RQ, FH, CH, RA, FIRST = rp.S, rq.RQ, rp.FH, rp.CH, rq.RA, rq.FIRST
    prompt, output = rq.prompt, rq.output
    if S[r, POL] == P_ANALYTIC:  # the end of a service: its first token is the end
        i = CH[r, 0, CH_REQ]
        FIRST[i] = e
        S[r, NRUN] = 0
        S[r, NCH] = 0
        complete(r, i, e, S, rq)
        return
    bs = S[r, BS]
    static = S[r, RSV] != 0  # whole sequences reserved (static batching, engine trtllm): no growth
    if S[r, LAG]:
        flush(r, e, rp, rq)
    if S[r, PLNDEC]:
        S[r, DIT] += 1
        dit = S[r, DIT]
        while S[r, FHLEN] > 0 and (FH[r, 0] >> 32) <= dit:
            key, _t, _v = heap.pop(FH[r], FH[r], FH[r], S[r, FHLEN])
            S[r, FHLEN] -= 1
            i = key & 0xFFFFFFFF
            a = RA[i]
            S[r, NDEC] -= 1
            S[r, CTXB] -= a
            RQ[i, RST] = R_GONE
            if static:
                finish(r, i, e, RQ[i, HELD], rp, rq)  # reserved blocks
            else:
                rp.CNT[r, a % bs] -= 1
                finish(r, i, e, cdiv(a + dit, bs), rp, rq)
    for k in range(S[r, NCH]):
        i = CH[r, k, CH_REQ]
        if RQ[i, RST] != R_PREFILL:
            continue  # preempted while the step was planned
        RQ[i, DONE] += CH[r, k, CH_TOK]
        if S[r, PB] and RQ[i, GRP] >= 0:
            register(r, i, S, RQ, rp.KC)
        if RQ[i, DONE] >= prompt[i] + RQ[i, GEN]:
            unlink_prefill(r, i, S, RQ)
            RQ[i, GEN] += 1  # the prefill step samples the next token
            if FIRST[i] < 0:
                if S[r, LAG]:
                    FIRST[i] = 0.0  # sampled; the client time is set by the flush
                    rp.PFIRST[r, S[r, NPFIRST]] = i
                    S[r, NPFIRST] += 1
                else:
                    FIRST[i] = e
            if RQ[i, GEN] >= output[i]:
                RQ[i, RST] = R_GONE
                finish(r, i, e, RQ[i, HELD], rp, rq)
            else:
                a = prompt[i] + RQ[i, GEN] - 1 - S[r, DIT]  # tokens in KV now (base) - j0
                RA[i] = a
                RQ[i, RST] = R_DECODE
                S[r, NDEC] += 1
                S[r, CTXB] += a
                if not static:  # static batching reserved the whole sequence: no growth
                    rp.CNT[r, a % bs] += 1
                key = ((S[r, DIT] + output[i] - RQ[i, GEN]) << 32) | i
                heap.push(FH[r], FH[r], FH[r], S[r, FHLEN], key, key, key)
                S[r, FHLEN] += 1
    S[r, NCH] = 0
    S[r, PLNDEC] = 0


@kernel
def cancel(r, j, rp, rq):
    """The client of request j gave up: j leaves replica r's queue, or the running set with its
    KV freed; a step in flight still runs (its commit skips j)."""
    S, F, RQ = rp.S, rp.F, rq.RQ
    if RQ[j, RST] == R_TRANSIT:
        pass  # on its way to r: in no queue yet
    elif RQ[j, RST] == R_WAITING:
        if RQ[j, SWP]:  # its swapped-out KV goes
            S[r, TSWP] -= RQ[j, SWP]
            RQ[j, SWP] = 0
        if is_heap(S, r):
            q_pop(r, j, S, RQ, rq.QA)
        else:
            S[S[r, QROW], QLEN] -= 1  # the entry stays; the FIFO's head drops it
    else:
        # decoding sequences hold the block of a decode step in flight already
        drop(r, j, 1 if (S[r, ST] == STEP and S[r, PLNDEC] > 0) else 0, S, rp.FH, rp.CNT, rp.KC, RQ, rq.RA,
             rq.prompt)
    RQ[j, RST] = R_GONE
    S[r, OUTREQ] -= 1
    S[r, OUTTOK] -= rq.prompt[j] + rq.output[j]
    S[r, QBLK] = 0  # freed blocks may admit the queue's head
    if F[r, EEND] < F[r, NB]:
        F[r, NB] = F[r, EEND]  # a smaller batch may finish sooner than the bound said


@kernel
def give_up(r, j, t, rp, rq):
    """Request j's client gives up at t: cancelled on replica r (or the shared queue's row 0),
    it fails."""
    cancel(r, j, rp, rq)
    rq.STATUS[j] = FAILED
    rq.FIN[j] = t
    client_free(j, t, rq)


@kernel
def sleep(r, t, rp, rq, run):
    """Replica r has nothing to run at t: it rests (lagged output delivered first)."""
    S, F = rp.S, rp.F
    if S[r, LAG]:
        flush(r, t, rp, rq)
    S[r, ST] = IDLE
    F[r, IDLE_SINCE] = t
    power_row(r, t, F[r, REST_W], run)
    if run.ts_on:
        ts_add(run, t, r, 0, S[r, USED], S[S[r, QROW], QLEN], 0)


@kernel
def enqueue(k, j, t, rp, rq):
    """Request j reaches replica k's queue at t (unless its client left on the way: a request
    re-routed after a node failure, or behind a slower front end); k wakes if idle and up."""
    S, F, RQ = rp.S, rp.F, rq.RQ
    if RQ[j, RST] == R_GONE:
        return
    RQ[j, RST] = R_WAITING
    q_push(k, j, False, queue_key(k, j, S, RQ, rq.QA, rq.prompt), S, RQ, rq.QA)
    if S[k, POL] == P_PRIORITY or S[k, POL] == P_SJF:
        S[k, QBLK] = 0  # the new request may be the head now
    if S[k, ST] == IDLE and not S[k, DOWN]:
        S[k, ST] = WAKE
        F[k, EEND] = t
        F[k, NB] = t
    elif F[k, EEND] < F[k, NB]:
        F[k, NB] = F[k, EEND]  # the new request may change the batch at the next step


@kernel
def set_rest(r, t, watts, rp, run):
    """Replica r's draw when not stepping becomes `watts` at t (drained, undrained, repaired,
    commissioned); an idle replica's energy at rest so far is counted first. True if r is idle."""
    S, F = rp.S, rp.F
    if S[r, ST] == IDLE:
        idle_until(r, t, F, run)
        F[r, IDLE_SINCE] = t
        F[r, REST_W] = watts
        return True
    F[r, REST_W] = watts
    return False


@kernel
def wake(r, t, S, F, D):
    """An idle replica r plans at t (after a repair, an undrain, its commissioning, work in the
    shared queue), scheduled after everything scheduled so far (SEQ, for the shared-queue order)."""
    if S[r, ST] == IDLE:
        S[r, ST] = WAKE
        F[r, EEND] = t
        F[r, NB] = t
        S[r, SEQ] = D[D_SEQ]
        D[D_SEQ] += 1


@njit(cache=True)
def evacuate(r, t, rp, rq, run):
    """Node failure under replica r at t: lagged output is delivered, every running and queued
    request leaves r (its KV is lost, it keeps the tokens it generated and will recompute the
    rest), the step in flight is cut (its time and energy after t do not count), the prefix cache
    is emptied, and r is down, drawing nothing. Returns the requests taken off, in arrival order,
    for the driver to route again."""
    S, F, RQ, FH, QA = rp.S, rp.F, rq.RQ, rp.FH, rq.QA
    if S[r, LAG]:
        flush(r, t, rp, rq)
    qn = S[r, QLEN] if not run.GI[SHARED] else 0  # a shared queue stays for the others
    out = np.empty(S[r, NRUN] + qn, np.int64)
    m = 0
    dit = S[r, DIT]
    for k in range(S[r, FHLEN]):  # decoding: they keep the tokens of every committed step
        v = FH[r, k] & 0xFFFFFFFF
        RQ[v, GEN] += dit - (rq.prompt[v] + RQ[v, GEN] - 1 - rq.RA[v])
        out[m] = v
        m += 1
    j = S[r, PH]
    while j >= 0:  # prefilling
        out[m] = j
        m += 1
        j = RQ[j, NXT]
    if S[r, POL] == P_ANALYTIC and S[r, ST] == STEP:  # the request in (analytic) service
        out[m] = rp.CH[r, 0, CH_REQ]
        m += 1
    if qn > 0:  # its own queue (a shared one stays for the others)
        if is_heap(S, r):
            stack = np.empty(qn + 1, np.int64)
            top = 0
            if S[r, QH] >= 0:
                stack[0] = S[r, QH]
                top = 1
            while top > 0:
                top -= 1
                j = stack[top]
                out[m] = j
                m += 1
                if QA[j, QLEFT] >= 0:
                    stack[top] = QA[j, QLEFT]
                    top += 1
                if QA[j, QRIGHT] >= 0:
                    stack[top] = QA[j, QRIGHT]
                    top += 1
        else:
            j = S[r, QH]
            while j >= 0:
                if RQ[j, RST] != R_GONE:  # a cancelled entry left in the FIFO list
                    out[m] = j
                    m += 1
                j = RQ[j, NXT]
        S[r, QH] = -1
        S[r, QT] = -1
        S[r, QLEN] = 0
        S[r, AH] = -1
        S[r, AT] = -1
    out = np.sort(out[:m])
    for q in range(m):
        v = out[q]
        RQ[v, RST] = R_WAITING
        RQ[v, DONE] = 0
        RQ[v, HELD] = 0
        RQ[v, NSH] = 0
        RQ[v, SWP] = 0  # (the tier goes with the node)
        S[r, OUTREQ] -= 1
        S[r, OUTTOK] -= rq.prompt[v] + rq.output[v]
    # a fresh engine: no KV in use, nothing cached, no step counted
    for f in (NDEC, CTXB, DIT, USED, NRUN, NPF, FHLEN, NCH, PLNDEC, NPFIRST, NPDONE, QBLK, NLRU):
        S[r, f] = 0
    for f in (PH, PT, LH, LT, TLH, TLT):
        S[r, f] = -1
    S[r, TN] = 0
    S[r, TSWP] = 0
    S[r, TPEND] = 0
    rp.CNT[r, :] = 0
    kc_clear(rp.KC, r)
    if S[r, ST] == STEP:
        over = F[r, EEND] - t
        F[r, BUSY] -= over
        F[r, ESTEP] -= F[r, WSTEP] * over
        bin_energy(run.bins, run.G, t, F[r, EEND], -F[r, WSTEP])
    else:
        idle_until(r, t, F, run)
    S[r, ST] = IDLE
    F[r, IDLE_SINCE] = t
    F[r, EEND] = t
    F[r, NB] = np.inf
    F[r, REST_W] = 0.0
    if not (S[r, DOWN] or S[r, DRN]):
        run.GI[NAV] -= 1  # one replica fewer available
    S[r, DOWN] = 1
    return out
