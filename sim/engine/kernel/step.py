"""A step's time and power, and what a step or a rest records: the one roofline step formula of
sim/perf compiled (`step_uncapped`, `step_capped` under a power cap or a locked clock), the
step-time variability factor (`vary`), the energy bins, the power rows the facility's ledger
reads and the time-series rows; starting a step (`start_step`) and counting a rest
(`idle_until`)."""

from __future__ import annotations

import numpy as np

from sim.engine.kernel.jit import kernel, njit
from sim.engine.kernel.layout import (BIN_W, BORN, BUSY, DTF, DTU, EEND, EF, EIDLE, EK, EM, EQ, ESTEP, EW, FAC,
                                      IDLE_SINCE, JD, JP, JSEED, NSTP, PB_N, PW_R, PW_T, PW_W, REST_W, ST, STEP,
                                      TS_BATCH, TS_BUSY, TS_KV, TS_N, TS_QUEUE, TS_REPLICA, WA, WDEC, WEND, WSTEP, WT)
from sim.perf.power import _capped_with, at_clock
from sim.perf.roofline import CLK_FRAC, DYN_W, F_MAX, IDLE_W, MEM_FRAC, plain_terms, with_speculation

# the one step formula (sim/perf), compiled; inlined into the step loop
_terms = njit(cache=True, inline="always")(with_speculation(njit(cache=True, inline="always")(plain_terms)))
_at_clock = njit(cache=True, inline="always")(at_clock)
_capped = njit(cache=True)(_capped_with(_at_clock))  # the one bisection, over the compiled at_clock


@kernel(inline=True)
def perf_row(PC, r):
    """Row r of the perf constants (a pool's: a replica's is row S PIDX) as a tuple: a value, so
    passing it costs no reference counting (an array view would, on every step). (The row's 29
    columns, sim/perf/roofline.py PERF.)"""
    return (
        PC[r, 0],
        PC[r, 1],
        PC[r, 2],
        PC[r, 3],
        PC[r, 4],
        PC[r, 5],
        PC[r, 6],
        PC[r, 7],
        PC[r, 8],
        PC[r, 9],
        PC[r, 10],
        PC[r, 11],
        PC[r, 12],
        PC[r, 13],
        PC[r, 14],
        PC[r, 15],
        PC[r, 16],
        PC[r, 17],
        PC[r, 18],
        PC[r, 19],
        PC[r, 20],
        PC[r, 21],
        PC[r, 22],
        PC[r, 23],
        PC[r, 24],
        PC[r, 25],
        PC[r, 26],
        PC[r, 27],
        PC[r, 28],
    )


@kernel(inline=True)  # a call per step passed 20 floats: ~40% of a run
def step_uncapped(pc, n_dec, ctx_dec, p_tok, p_read, p_attn, n_seq):
    """(seconds, watts per accelerator) of one uncapped step: PerfModel.step_power's functions,
    compiled. pc: the tuple from perf_row."""
    m1, c1, m2, c2, fixed = _terms(pc, n_dec, ctx_dec, p_tok, p_read, p_attn, n_seq, False)
    return _at_clock(m1, c1, m2, c2, fixed, 1.0, pc[IDLE_W], pc[DYN_W], pc[MEM_FRAC], pc[CLK_FRAC])


@kernel
def step_capped(pc, n_dec, ctx_dec, p_tok, p_read, p_attn, n_seq, cap_w):
    """One step under a per-accelerator power cap (NaN: none) at the replica's clock lock
    (PerfModel.step_power with cap_w): (seconds, watts per accelerator, seconds at full clock:
    the bound on later steps that the routers' delivery bound uses)."""
    m1, c1, m2, c2, fixed = _terms(pc, n_dec, ctx_dec, p_tok, p_read, p_attn, n_seq, True)
    t, pw, _f = _capped(m1, c1, m2, c2, fixed, pc[IDLE_W], pc[DYN_W], pc[MEM_FRAC], pc[CLK_FRAC], cap_w, pc[F_MAX])
    return t, pw, _at_clock(m1, c1, m2, c2, fixed, 1.0, pc[IDLE_W], pc[DYN_W], pc[MEM_FRAC], pc[CLK_FRAC])[0]


@kernel(inline=True)
def mix32(x):
    """lowbias32 (C. Wellons' integer hash): 32-bit in and out. Products wrap in int64 under numba
    and grow in plain Python; the masked low 32 bits agree, so both kernels draw alike."""
    x = int(x)  # (a Python int in the plain kernel: numpy's int64 would warn on the wrap)
    x = (x ^ (x >> 16)) & 0xFFFFFFFF
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


@kernel(inline=True)
def vary(r, now, S, F, prefill):
    """The factor on replica r's step starting at `now` (sim/perf/variability.py), a product of
    - warm-up: 1 + WA exp(-(now - BORN) / WT), WA x WDEC for a step without prefill tokens;
    - jitter: (1 - JD) + X, X = 0 but at a share JP of steps, where it is exponential with mean
      JD / JP;
    - slow episodes: 1 + EF (B - EQ) over each window of EW s, B = 1 in a share EQ of windows.
    Jitter and episodes have mean 1 (the means stay calibrated); the warm-up term is dropped once
    below 1e-6 (WEND). The draws hash the replica's key with its step count (jitter) or window
    index (episodes), so they depend on nothing a driver orders differently. Never below
    VLO = (1 - JD)(1 - EF EQ): the bound the routers' delivery bound uses."""
    n = S[r, NSTP]
    S[r, NSTP] = n + 1
    m = 1.0
    jd = F[r, JD]
    if jd > 0.0:
        h = mix32(S[r, JSEED] ^ (n & 0xFFFFFFFF))  # JSEED: the replica's key, hashed already
        m = 1.0 - jd
        if h * 2.3283064365386963e-10 < F[r, JP]:
            u = mix32(h ^ 0x9E3779B9) * 2.3283064365386963e-10
            m -= jd / F[r, JP] * np.log(1.0 - u)
    ew = F[r, EW]
    if ew > 0.0:
        k = float(int(now / ew))  # this step's window
        if k != F[r, EK]:
            h = mix32(mix32(S[r, JSEED] ^ 0x5BD1E995) ^ (int(k) & 0xFFFFFFFF))
            F[r, EK] = k
            F[r, EM] = 1.0 + F[r, EF] * ((1.0 if h * 2.3283064365386963e-10 < F[r, EQ] else 0.0) - F[r, EQ])
        m *= F[r, EM]
    if now < F[r, WEND]:
        m *= 1.0 + (F[r, WA] if prefill else F[r, WA] * F[r, WDEC]) * np.exp(-(now - F[r, BORN]) / F[r, WT])
    return m


@kernel
def bin_energy(bins, G, t0, t1, watts):
    """Add watts over [t0, t1) to the energy bins, widening the bins (pairwise merge) when t1 is
    past the last one."""
    if t1 <= t0:
        return
    nb = bins.shape[0]
    while t1 >= G[BIN_W] * nb:
        for k in range(nb // 2):
            bins[k] = bins[2 * k] + bins[2 * k + 1]
        for k in range(nb // 2, nb):
            bins[k] = 0.0
        G[BIN_W] *= 2.0
    w = G[BIN_W]
    b0 = int(t0 / w)
    b1 = int(t1 / w)
    if b1 >= nb:
        b1 = nb - 1
    if b0 == b1:
        bins[b0] += watts * (t1 - t0)
        return
    bins[b0] += watts * ((b0 + 1) * w - t0)
    for b in range(b0 + 1, b1):
        bins[b] += watts * w
    bins[b1] += watts * (t1 - b1 * w)


@kernel(inline=True)
def ts_add(run, t, r, batch, kv, q, busy):
    """A time-series row."""
    n = run.GI[TS_N]
    run.tsf[n] = t
    run.tsi[n, TS_REPLICA] = r
    run.tsi[n, TS_BATCH] = batch
    run.tsi[n, TS_KV] = kv
    run.tsi[n, TS_QUEUE] = q
    run.tsi[n, TS_BUSY] = busy
    run.GI[TS_N] = n + 1


@kernel(inline=True)  # on the hot path of every run: a call here cost ~6% (measured)
def power_row(r, t, watts, run):
    """With a [facility]: replica r draws `watts` from t on (a row for the ledger, which
    integrates every replica's changes in time order at the next barrier)."""
    GI = run.GI
    if GI[FAC]:
        n = GI[PB_N]
        run.PW[n, PW_T] = t
        run.PW[n, PW_R] = r
        run.PW[n, PW_W] = watts
        GI[PB_N] = n + 1


@kernel(inline=True)
def buffers_full(run):
    """Whether the time series or the power rows lack room for what a step or a sleep writes
    (the caller grows them)."""
    return (run.ts_on and run.GI[TS_N] + 2 > run.tsf.shape[0]) or (run.GI[FAC] != 0 and
                                                                    run.GI[PB_N] + 8 >= run.PW.shape[0])


@kernel(inline=True)
def start_step(r, now, dt, watts, S, F, run, row):
    """Replica r runs a step of dt s drawing `watts` (all its accelerators and hosts) from now:
    busy time and energy are counted up front (a horizon clips them); `row`: a power row."""
    e = now + dt
    F[r, EEND] = e
    F[r, DTF] = dt
    F[r, DTU] = dt
    F[r, BUSY] += dt
    F[r, ESTEP] += watts * dt
    F[r, WSTEP] = watts
    bin_energy(run.bins, run.G, now, e, watts)
    S[r, ST] = STEP
    if row:
        power_row(r, now, watts, run)


@kernel
def idle_until(r, e, F, run):
    """Replica r's energy at rest from when it fell idle up to e (it wakes then)."""
    idle_w = F[r, REST_W]
    F[r, EIDLE] += idle_w * (e - F[r, IDLE_SINCE])
    bin_energy(run.bins, run.G, F[r, IDLE_SINCE], e, idle_w)
