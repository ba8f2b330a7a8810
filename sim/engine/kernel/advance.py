"""Running one replica forward in time on its own (`advance`): its steps' ends and plans up to a
time, a batch that only decodes stepped in a tight loop whose per-step cost is a few float
operations (KV-block growth counted per step in O(1) from the residues of the sequences' context
lengths modulo the block size), and the earliest time it can deliver a completion
(`next_delivery_bound`), which lets load-reading routers leave it alone until then."""

from __future__ import annotations

import numpy as np

from sim.engine.kernel.jit import kernel
from sim.engine.kernel.layout import (BIN_W, BS, BUSY, CAP, CTXB, DIT, DTF, DTU, EEND, ESTEP, FAC, FHLEN,
                                      HOST_W, IDLE, NB, NCH, NDEC, NLRU, NPDONE, NPFIRST, PB_N, PIDX, RSV,
                                      PW_R, PW_T, PW_W, QBLK, QLEN, QROW, ST, TOT, TP, TS_FULL, USED, VLO, WAKE,
                                      WSTEP)
from sim.engine.kernel.cache_index import kc_low
from sim.engine.kernel.lifecycle import commit, flush, sleep
from sim.engine.kernel.plan import batch_low, plan
from sim.perf.roofline import F_MAX
from sim.engine.kernel.step import bin_energy, buffers_full, idle_until, perf_row, step_capped, step_uncapped, vary


@kernel
def next_delivery_bound(r, e, S, F, FH):
    """Earliest time replica r can deliver a completion, its step in flight ending at e. In a
    stable decode batch (nothing admissible, no lagged output, enough free KV blocks that no
    preemption can shrink the batch) the next finish is decode step FH top, and every step
    until then lasts at least as long as the one in flight (step time grows with context);
    otherwise e. Shaded down so float rounding cannot make it late. Under a power cap the clock
    changes with the batch's mix, so capped step times need not grow; but no step is faster
    than at full clock (at_clock: time falls with the clock and bandwidth), so the in-flight
    step's time at full clock (DTU) bounds every later one, capped or not (a cap set or lifted
    later leaves the bound valid)."""
    if (S[r, NCH] == 0 and S[r, NPFIRST] == 0 and S[r, NPDONE] == 0 and S[r, FHLEN] > 0
            and (S[S[r, QROW], QLEN] == 0 or S[r, QBLK] == 1)):
        k = (FH[r, 0] >> 32) - (S[r, DIT] + 1)  # steps after the one in flight, up to the finish
        if k > 0 and (S[r, RSV] or S[r, TOT] - S[r, USED] >= S[r, NDEC] * (k // S[r, BS] + 1)):
            return e + k * F[r, DTU] * (1.0 - 1e-6)
    return e


@kernel(inline=True)
def _decode_run(r, T, rp, run):
    """The stable decode batch of replica r, its step in flight ending at F EEND, stepped while
    the steps end by T and no sequence finishes: each step's KV growth, time and power, energy
    and power rows. Returns whether a step was committed for which the general plan must run (a
    growing sequence found no free block)."""
    S, F, CNT = rp.S, rp.F, rp.CNT
    bins, G, GI, PW = run.bins, run.G, run.GI, run.PW
    bs = S[r, BS]
    e = F[r, EEND]
    top = rp.FH[r, 0] >> 32
    d = S[r, DIT]
    pc = perf_row(rp.PC, S[r, PIDX])  # (here: most calls return before any step)
    ndec = S[r, NDEC]
    ctxb = S[r, CTXB]
    used = S[r, USED]
    tot = S[r, TOT] - S[r, NLRU]  # allocatable without evicting a cached block
    tp = S[r, TP]
    host = F[r, HOST_W]
    cap_w = F[r, CAP]
    jlo = F[r, VLO]
    fac = GI[FAC] != 0  # power rows for the facility's ledger
    pb_room = PW.shape[0] - 8  # (stop before their buffer is full)
    busy = F[r, BUSY]
    est = F[r, ESTEP]
    # energy goes to the current bin until a step crosses its end
    w = G[BIN_W]
    cur = int(e / w)
    edge = (cur + 1) * w
    acc = 0.0
    res = (1 - (d + 1)) % bs  # residue class that opens a block at step d + 1
    # (the step's figures and the power rows' count stay in registers: stored once, after)
    pbn = GI[PB_N]
    dt = F[r, DTF]
    dtu = F[r, DTU]
    watts = F[r, WSTEP]
    committed = False
    while e <= T and d + 1 < top:
        if fac and pbn >= pb_room:  # advance's check returns TS_FULL then
            break  # committed up to step d; the caller grows the buffer and resumes
        d += 1  # step d is done; plan step d + 1 at e
        res = res - 1 if res > 0 else bs - 1  # (1 - (d + 1)) mod bs, without a division
        g = CNT[r, res]
        if used + g > tot:
            committed = True  # step d is committed; plan d + 1 the general way
            break
        used += g
        if cap_w == cap_w or pc[F_MAX] < 1.0:
            dt, pw, dtu = step_capped(pc, ndec, ctxb + ndec * (d + 1), 0, 0, 0.0, ndec, cap_w)
        else:
            dt, pw = step_uncapped(pc, ndec, ctxb + ndec * (d + 1), 0, 0, 0.0, ndec)
            dtu = dt
        dt *= vary(r, e, S, F, False)
        dtu *= jlo
        watts = pw * tp + host
        busy += dt
        est += watts * dt
        e1 = e + dt
        if e1 < edge:
            acc += watts * dt
        else:
            bins[cur] += acc
            acc = 0.0
            bin_energy(bins, G, e, e1, watts)
            w = G[BIN_W]
            cur = int(e1 / w)
            edge = (cur + 1) * w
        if fac:  # power_row's row
            PW[pbn, PW_T] = e
            PW[pbn, PW_R] = r
            PW[pbn, PW_W] = watts
            pbn += 1
        e = e1
    bins[cur] += acc
    GI[PB_N] = pbn
    F[r, DTF] = dt
    F[r, DTU] = dtu
    F[r, WSTEP] = watts
    S[r, DIT] = d
    S[r, USED] = used
    F[r, BUSY] = busy
    F[r, ESTEP] = est
    F[r, EEND] = e
    return committed


@kernel(inline=True)
def before(t):
    """The greatest time before t: advance's wake-up bound for an arrival at t."""
    return np.nextafter(t, -np.inf)


@kernel
def advance(r, T, T_wake, rp, rq, run):
    """Run replica r through every event before an arrival at T: steps ending at or before T,
    and a wake-up at or before T_wake: before(T) for an arrival (requests enqueued at T join the
    first plan), T itself for a deadline or a barrier (which come after the instant's plans). A
    time rather than a flag, so that the compiled function has one signature. 0: done; TS_FULL:
    grow the buffers and call again."""
    S, F = rp.S, rp.F
    while True:
        st = S[r, ST]
        if st == IDLE:
            F[r, NB] = np.inf
            return 0
        e = F[r, EEND]
        if buffers_full(run) or kc_low(rp.KC) or batch_low(r, rp):
            return TS_FULL
        if st == WAKE:
            if e > T_wake:
                F[r, NB] = e
                return 0
            idle_until(r, e, F, run)
        else:
            if e > T:
                F[r, NB] = next_delivery_bound(r, e, S, F, rp.FH)
                return 0
            # A decode-only step, no finish next, nothing admissible: the batch is stable; step
            # it in a tight loop while every growing sequence finds a free block (else the general
            # plan below preempts). Lagged output of the step before is delivered first, as commit
            # does.
            if (S[r, NCH] == 0 and S[r, FHLEN] > 0 and (S[S[r, QROW], QLEN] == 0 or S[r, QBLK] == 1)
                    and S[r, DIT] + 1 < rp.FH[r, 0] >> 32):
                if S[r, NPFIRST] or S[r, NPDONE]:
                    flush(r, e, rp, rq)
                if not _decode_run(r, T, rp, run):
                    continue
                e = F[r, EEND]  # a step committed: plan the next the general way
            else:
                commit(r, e, rp, rq)
        if plan(r, e, rp, rq, run) == 0:
            sleep(r, e, rp, rq, run)
