"""A replica's next step: its scheduler plans it (`plan_policy`: the planners of chunked,
priority and sjf; continuous; static and fcfs) and `launch` starts it, its time and power from
the one step formula under the replica's cap (`plan` does both; `serve` is analytic service).
Admission takes the queue's head with its prefix-cache hits (`admit`)."""

from __future__ import annotations

from sim.engine.kernel.jit import kernel
from sim.engine.kernel.kv import acquire_hits, cdiv, grow, make_room, peek_hits, preempt, take, take_for, victim
from sim.engine.kernel.layout import (ADMT, AGE, BS, CAP, CH_REQ, CH_TOK, CTXB, DIT, DONE, DTU, GEN, HELD,
                                      HITT, HOST_W, MAXB, MAXT, RSV, NCH, NDEC, NPF, NRUN, NXT, OWN, P_ANALYTIC,
                                      P_CHUNKED, P_CONTINUOUS, P_PRIORITY, P_SJF, PH, PIDX, PLNDEC, POL, PT, QBLK, QLEN,
                                      QROW, R_GONE, R_PREFILL, REST_W, RST, SWP, THIT, TOT, TP, TPEND, TSB, TSWP,
                                      USED, VLO)
from sim.engine.kernel.queues import append, fifo_head, q_head, q_pop
from sim.perf.roofline import F_MAX
from sim.engine.kernel.step import perf_row, start_step, step_capped, step_uncapped, ts_add, vary


@kernel(inline=True)
def admit(r, i, hits, need, rp, rq):
    """Move the head of the queue, request i, to the prefilling list with `hits` prefix-cache
    blocks and `need` new blocks."""
    S, RQ = rp.S, rq.RQ
    S[r, HITT] += hits * S[r, BS]
    S[r, ADMT] += rq.prompt[i] + RQ[i, GEN]
    q_pop(r, i, S, RQ, rq.QA)
    append(r, i, PH, PT, S, RQ)
    S[r, NPF] += 1
    S[r, NRUN] += 1
    RQ[i, RST] = R_PREFILL
    RQ[i, OWN] = r
    if RQ[i, SWP]:  # swapped out when preempted: its KV comes back from the tier
        S[r, TSWP] -= RQ[i, SWP]
        S[r, TPEND] += RQ[i, SWP]
        S[r, THIT] += RQ[i, SWP]
        RQ[i, SWP] = 0
    if hits:
        acquire_hits(r, i, hits, S, RQ, rp.KC)
    RQ[i, HELD] = hits + need
    take(r, need, S, rp.KC)


@kernel(inline=True)
def _whole(r, i, hits, S, rq):
    """The new blocks request i reserves at admission where the replica reserves whole sequences
    (RSV: static batching, engine trtllm): its prompt's and output's, less its prefix-cache hits."""
    return cdiv(rq.prompt[i] + rq.output[i], S[r, BS]) - hits


@kernel(inline=True)
def _plan_chunked(r, now, age, rp, rq):
    """chunked (and priority, sjf): decode every running sequence, then prompt chunks in arrival
    order up to the token budget. Returns (chunks, decode sequences, stable): stable when a
    waiting request cannot start until something finishes."""
    S, RQ, CH, tmp, prompt = rp.S, rq.RQ, rp.CH, rp.tmp, rq.prompt
    bs = S[r, BS]
    preempted = False
    if S[r, NDEC]:
        preempted = grow(r, rp, rq)
    grown = 1  # decoding sequences now hold the blocks of this step
    budget = S[r, MAXT] - S[r, NDEC]
    slots = S[r, MAXB] - S[r, NRUN]
    nch = 0
    # the prefilling list as it stands (preemptions below may shorten it)
    m = 0
    i = S[r, PH]
    while i >= 0:
        tmp[m] = i
        m += 1
        i = RQ[i, NXT]
    for k in range(m):
        if budget <= 0:
            break
        i = tmp[k]
        if RQ[i, RST] != R_PREFILL:
            continue  # preempted by an earlier allocation in this loop
        done = RQ[i, DONE]
        c = min(prompt[i] + RQ[i, GEN] - done, budget)
        need = cdiv(done + c, bs) - RQ[i, HELD]
        if need > 0:
            ok = True
            while S[r, TOT] - S[r, USED] < need:
                v = victim(r, S, RQ, rp.FH, rq.QA)
                preempt(r, v, grown, S, rp.FH, rp.CNT, rp.KC, RQ, rq.RA, rq.QA, rq.PRE, prompt)
                preempted = True
                if v == i:
                    ok = False
                    break
            if not ok:
                continue
            take_for(r, i, need, S, RQ, rp.KC)
        CH[r, nch, CH_REQ] = i
        CH[r, nch, CH_TOK] = c
        nch += 1
        budget -= c
    # vLLM v1 admits no new request in a step that had to preempt
    while budget > 0 and slots > 0 and S[S[r, QROW], QLEN] > 0 and not preempted:
        i = q_head(r, now, age, S, rq.QA, rq.arr, RQ)
        target = prompt[i] + RQ[i, GEN]
        hits, idle = peek_hits(r, i, target, S, RQ, rp.KC)
        cached = hits * bs
        if RQ[i, DONE] > cached:  # handed over with its KV (disaggregation): only the rest to compute
            cached = RQ[i, DONE]
        c = min(target - cached, budget)
        need = _whole(r, i, hits, S, rq) if S[r, RSV] else cdiv(cached + c, bs) - hits
        if need > S[r, TOT] - S[r, USED] - idle:
            if S[r, POL] == P_PRIORITY and make_room(r, i, need + idle, rp, rq):
                continue  # the head may have changed (preempted requests rejoin the queue)
            break
        admit(r, i, hits, need, rp, rq)
        CH[r, nch, CH_REQ] = i
        CH[r, nch, CH_TOK] = c
        nch += 1
        budget -= c
        slots -= 1
    # an sjf queue's head can change with time alone (ageing)
    return nch, S[r, NDEC], S[S[r, QROW], QLEN] > 0 and not preempted and S[S[r, QROW], POL] != P_SJF


@kernel(inline=True)
def _plan_continuous(r, rp, rq):
    """continuous (Orca, vLLM v0): whole prompts of admitted requests first, in a step of their
    own; otherwise decode every running sequence."""
    S, RQ, CH = rp.S, rq.RQ, rp.CH
    budget = S[r, MAXT]
    slots = S[r, MAXB] - S[r, NRUN]
    nch = 0
    while S[S[r, QROW], QLEN] > 0 and slots > 0:
        i = fifo_head(r, S, RQ)
        target = rq.prompt[i] + RQ[i, GEN]
        hits, idle = peek_hits(r, i, target, S, RQ, rp.KC)
        c = target - max(hits * S[r, BS], RQ[i, DONE])  # (DONE > 0: handed over with its KV)
        if nch and c > budget:
            break
        need = _whole(r, i, hits, S, rq) if S[r, RSV] else cdiv(target, S[r, BS]) - hits
        if need > S[r, TOT] - S[r, USED] - idle:
            break
        admit(r, i, hits, need, rp, rq)
        CH[r, nch, CH_REQ] = i
        CH[r, nch, CH_TOK] = c
        nch += 1
        budget -= c
        slots -= 1
        if budget <= 0:
            break
    if nch:
        return nch, 0, False
    preempted = False
    if S[r, NDEC]:
        preempted = grow(r, rp, rq)
    return 0, S[r, NDEC], S[S[r, QROW], QLEN] > 0 and not preempted


@kernel(inline=True)
def _plan_static(r, rp, rq):
    """static and fcfs (request-level batching): a batch forms only on an idle replica, reserving
    each sequence's whole KV up front; nothing joins it until its last request finishes."""
    S, RQ, CH, prompt = rp.S, rq.RQ, rp.CH, rq.prompt
    if S[r, NRUN]:
        return 0, S[r, NDEC], True
    nch = 0
    while S[S[r, QROW], QLEN] > 0 and nch < S[r, MAXB]:
        i = fifo_head(r, S, RQ)
        hits, idle = peek_hits(r, i, prompt[i], S, RQ, rp.KC)
        need = _whole(r, i, hits, S, rq)
        if need > S[r, TOT] - S[r, USED] - idle:
            break
        admit(r, i, hits, need, rp, rq)
        CH[r, nch, CH_REQ] = i
        CH[r, nch, CH_TOK] = prompt[i] + RQ[i, GEN] - RQ[i, DONE]  # a request back from a failed node recomputes
        nch += 1
    return nch, 0, False


@kernel(inline=True)
def plan_policy(r, now, rp, rq):
    """The replica's scheduler plans the next step at `now` into CH[r]: (prefill chunks, decode
    sequences, stable: nothing waiting can start until something finishes)."""
    pol = rp.S[r, POL]
    if pol == P_CHUNKED or pol == P_PRIORITY or pol == P_SJF:
        return _plan_chunked(r, now, rp.F[rp.S[r, QROW], AGE], rp, rq)
    if pol == P_CONTINUOUS:
        return _plan_continuous(r, rp, rq)
    return _plan_static(r, rp, rq)


@kernel
def plan_limited(r, now, max_batch, max_tokens, rp, rq):
    """plan_policy with these batch limits instead of the replica's (a scheduler plug-in that
    runs a built-in's planner with its own limits)."""
    S = rp.S
    old_b = S[r, MAXB]
    old_t = S[r, MAXT]
    S[r, MAXB] = max_batch
    S[r, MAXT] = max_tokens
    nch, ndec, _stable = plan_policy(r, now, rp, rq)
    S[r, MAXB] = old_b
    S[r, MAXT] = old_t
    return nch, ndec


@kernel(inline=True)
def batch_low(r, rp):
    """Whether replica r's batch arrays (CH, FH, PFIRST, PDONE, tmp: FH.shape[1] slots a replica)
    may lack room for its next plan: the batch it can reach, max_batch_size or its running and
    waiting requests if fewer, is more. The fast loops stop then (TS_FULL) and the driver widens
    them (Kernel.grow): sized by the batches reached, not max_batch_size, a replica's arrays fit
    in a page or two (100,000 replicas at max_batch_size 256 touched 1 GB of them)."""
    S = rp.S
    return min(S[r, MAXB], S[r, NRUN] + S[S[r, QROW], QLEN]) > rp.FH.shape[1]


@kernel
def plan(r, now, rp, rq, run):
    """Plan the next step at `now` with the replica's scheduler and start it. 1: a step is in
    flight; 0: nothing to run."""
    S = rp.S
    if S[r, POL] == P_ANALYTIC:
        return serve(r, now, rp, rq, run)
    nch, ndec, stable = plan_policy(r, now, rp, rq)
    # a decode-only step that repeats until something finishes (the tight loop of advance)
    S[r, QBLK] = 1 if stable else 0
    if ndec == 0 and nch == 0:
        return 0
    return launch(r, now, nch, ndec, rp, rq, run)


@kernel(inline=True)
def launch(r, now, nch, ndec, rp, rq, run):
    """Start the planned step (prefill chunks CH[r, :nch] and ndec decoding sequences) at `now`:
    its time and power from the one step formula under the replica's cap. Returns 1."""
    S, F, CH, RQ, START = rp.S, rp.F, rp.CH, rq.RQ, rq.START
    # a chunk whose request was preempted later in the plan still runs, but its `done` is 0 by now
    p_tok = 0
    p_read = 0
    p_attn = 0.0
    for k in range(nch):
        j = CH[r, k, CH_REQ]
        c = CH[r, k, CH_TOK]
        if START[j] < 0:
            START[j] = now
        done = RQ[j, DONE]
        p_tok += c
        p_read += done
        p_attn += c * (done + (c + 1) * 0.5)
    n_seq = ndec + nch
    ctx = S[r, CTXB] + ndec * (S[r, DIT] + 1) if ndec else 0
    cap_w = F[r, CAP]
    pool = S[r, PIDX]  # (the perf constants are the pool's)
    if cap_w == cap_w or rp.PC[pool, F_MAX] < 1.0:  # a power cap (NaN: none) or a locked clock
        dt, pw, dtu = step_capped(perf_row(rp.PC, pool), ndec, ctx, p_tok, p_read, p_attn, n_seq, cap_w)
    else:
        dt, pw = step_uncapped(perf_row(rp.PC, pool), ndec, ctx, p_tok, p_read, p_attn, n_seq)
        dtu = dt
    dt *= vary(r, now, S, F, p_tok > 0)
    if S[r, TPEND]:  # KV blocks loaded from the tier for requests admitted now (not clocked)
        dt += S[r, TPEND] * F[r, TSB]
        dtu += S[r, TPEND] * F[r, TSB]
        S[r, TPEND] = 0
    watts = pw * S[r, TP] + F[r, HOST_W]
    if run.ts_on:
        ts_add(run, now, r, n_seq, S[r, USED], S[S[r, QROW], QLEN], 1)
    start_step(r, now, dt, watts, S, F, run, True)
    F[r, DTU] = dtu * F[r, VLO]  # no variability factor is below VLO
    S[r, PLNDEC] = ndec
    S[r, NCH] = nch
    return 1


@kernel
def serve(r, now, rp, rq, run):
    """Analytic service ([pools.service]): the head of the queue is served whole, one at a time,
    for its drawn service time; a client deadline does not interrupt it. The replica draws its
    idle power throughout."""
    S, F, RQ = rp.S, rp.F, rq.RQ
    if S[S[r, QROW], QLEN] == 0:
        return 0
    i = q_head(r, now, 0.0, S, rq.QA, rq.arr, RQ)
    q_pop(r, i, S, RQ, rq.QA)
    RQ[i, RST] = R_GONE  # in service
    RQ[i, OWN] = r
    rq.START[i] = now
    dt = rq.SV[S[r, PIDX], i]
    if run.ts_on:
        ts_add(run, now, r, 1, 0, S[S[r, QROW], QLEN], 1)
    # no power row: the draw stays what it was (the accelerators' idle power)
    start_step(r, now, dt, F[r, REST_W], S, F, run, False)
    rp.CH[r, 0, CH_REQ] = i
    S[r, NCH] = 1
    S[r, PLNDEC] = 0
    S[r, NRUN] = 1
    return 1
