"""The fast driver: the kernel (sim/engine/kernel.py) run as one compiled loop, for runs of
millions of requests; and what both drivers share around the kernel: which kernel a run uses
(compiled, or interpreted while numba's cache is cold), the kernel's arrays for a run
(`prepare`), and the Result of a run that has ended (`finish`).

Both drivers give every request the same first-token, start and finish times, status and
preemption count (tests/test_differential.py, bit for bit): they call the same transitions and
differ only in when; the time series differ (one sample per planned step here, per step there)
and the energy bins' float rounding. What the fast driver does not host (plug-ins in plain
Python, `run.fast_forward = false`) runs on the per-step driver; `supported()` says why.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from sim.engine import kernel as K
from sim.engine.kernel import (  # the kernel's field names, read by the Python around it
    AGE, AH, AT, BIN_W, BS, BUSY, CAP, EEND, EIDLE, ESTEP, FAC, GRP, HOST_W, IDLE, IDLE_SINCE, LAG, LH, LT, MAXB,
    MAXT, N_F, N_QA, N_RQ, N_S, NAV, NUMBA_ERROR, OWN, P_ANALYTIC, P_PRIORITY, P_SJF, PB, PB_N, PH, PIDX, POL, PT,
    EF, EK, EQ, EW, HOH, HOT, JD, JP, JSEED, KVB, NIC, NLAT, QG, QH, QKEY, QROW, QT, REST_W, RGRP, RLOC, ROLE, RS_NO_CAPACITY, RS_NO_POOL, RS_NODE,
    RS_POWER, PUB, SHARED, ST, STEP, TOT, TP, TS_N, VLO,
    WA, WDEC, WEND, WSTEP, WT)
from sim.engine.recorder import COMPLETED, FAILED, IN_FLIGHT, REJECTED, TimeSeries
from sim.errors import ScenarioError
from sim.perf.roofline import F_MAX, IDLE_W, N_PC
from sim.registry import ROUTERS, SCHEDULERS


def supported(sc: Any, wl: Any) -> list[str]:
    """Why this scenario needs the per-step driver (empty: the fast driver can run it)."""
    why = []
    if NUMBA_ERROR is not None:
        why.append(f"numba cannot be imported ({NUMBA_ERROR})")
    if sc.router.policy not in ROUTERS.compiled_names() and sc.router.policy != "central_queue":
        kind = "a plug-in in plain Python" if ROUTERS.is_plugin(sc.router.policy) else "not compiled"
        why.append(f"router.policy = {sc.router.policy!r} ({kind}; compiled: {', '.join(ROUTERS.compiled_names())})")
    if not sc.run.fast_forward:
        why.append("run.fast_forward = false (the per-iteration reference mode)")
    delays = set()
    for p in sc.pools:
        if p.service is not None:
            delays.add(0.0)  # analytic service has no front end
            continue
        s = p.scheduler
        if s.policy not in SCHEDULERS.compiled_names():
            why.append(f"pools.{p.name}.scheduler.policy = {s.policy!r} (compiled: {', '.join(SCHEDULERS.compiled_names())})")
        delays.add(p.hardware.request_overhead_s)
    if len(delays) > 1:
        why.append("pools with different hardware request_overhead_s")
    return why


# --- driver -----------------------------------------------------------------------------------

COMPILE_NOTICE = "compiling the simulation engine for this machine (once; a minute or two)..."


ENTRY_POINTS = ("_run", "_run_shared", "_scratch", "_in_system", "_bin_energy", "_evacuate", "_enqueue",
                "_set_rest", "_wake", "_ledger_walk",  # the fast driver's calls from Python
                "_commit", "_plan", "_sleep", "_idle_until", "_cancel", "_to_shared", "_grow_ts",
                "_buffers_full",  # the per-step driver's
                "_plan_policy", "_launch", "_q_head", "_peek_hits", "_admit", "_grow")  # a plug-in scheduler's


_FOUND = False  # the cache was found complete in this process (it stays so: no need to look again)


def _cached() -> bool:
    """Whether numba has every entry point of this engine compiled on disk for this source
    (next to this file, or in the user cache where the package folder is read-only)."""
    global _FOUND
    if _FOUND or NUMBA_ERROR is not None:
        return True  # (without numba there is nothing to compile)
    g = vars(K)
    try:
        _FOUND = all(len(g[f]._cache._cache_file._load_index()) > 0 for f in ENTRY_POINTS)  # numba internals
    except AttributeError:  # another numba: look for the index files
        where = Path(K.__file__).parent / "__pycache__"
        _FOUND = any(where.glob("kernel._run-*.nbi"))
    return _FOUND


# A cold cache: small runs interpret the kernel (these same functions, run as Python: the same
# results bit for bit, tests/test_kernel_bounds.py) while a background process builds it.
INTERPRET_MAX_REQUESTS = 20_000
_PLAIN: Any = None


def plain() -> Any:
    """The kernel module loaded a second time with numba's JIT off: the kernel as plain Python."""
    global _PLAIN
    if NUMBA_ERROR is not None:
        return K  # already plain Python
    if _PLAIN is None:
        import importlib.util

        import numba

        spec = importlib.util.spec_from_file_location("sim.engine._kernel_as_python", K.__file__)
        mod = importlib.util.module_from_spec(spec)
        old = numba.config.DISABLE_JIT
        numba.config.DISABLE_JIT = True
        try:
            spec.loader.exec_module(mod)
        finally:
            numba.config.DISABLE_JIT = old
        _PLAIN = mod
    return _PLAIN


def build_in_background() -> bool:
    """Start a detached process that compiles the engine into numba's cache (once: a lock file
    that is less than 10 minutes old means one is running). True if one was started."""
    import os
    import subprocess
    import sys

    try:
        where = Path(K._run._cache._cache_path)
    except AttributeError:
        where = Path(K.__file__).parent / "__pycache__"
    lock = where / "dcsim-build.lock"
    try:
        where.mkdir(parents=True, exist_ok=True)
        if lock.exists() and time.time() - lock.stat().st_mtime < 600:
            return False
        lock.write_text(str(os.getpid()))
        code = ("import pathlib\n"
                "from sim.engine.simulation import build_compiled\n"
                f"try:\n    build_compiled()\nfinally:\n    pathlib.Path({str(lock)!r}).unlink(missing_ok=True)\n")
        subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True, env=dict(os.environ, DCSIM_KERNEL="compiled"))
        return True
    except OSError:
        return False


def kernel_mode(n_requests: int) -> str:
    """"compiled" or "interpreted" for a run of n requests: DCSIM_KERNEL forces one; otherwise
    the compiled kernel if it is on disk or the run is large, else the interpreted one."""
    import os

    forced = os.environ.get("DCSIM_KERNEL", "")
    if forced in ("compiled", "interpreted"):
        return forced
    return "compiled" if (n_requests > INTERPRET_MAX_REQUESTS or _cached()) else "interpreted"


INTERPRET_NOTICE = ("the simulation engine is not compiled for this machine yet: this small run interprets it "
                    "(the same results), while a background process compiles it (a minute or two) for the next runs")


class Kernel:
    """The compiled loop's arrays and position, for a driver that stops it at barriers."""

    def __init__(self, args: tuple, ts: tuple, D: np.ndarray, Df: np.ndarray, m: Any) -> None:
        self.args, self.ts, self.D, self.Df, self.m = args, ts, D, Df, m  # m: this module, compiled or not
        (self.arr, self.prompt, self.output, self.d0, self.grp, self.router, self.pairs, self.sess, self.home,
         self.S, self.F, self.PC, self.RQ, self.RA, self.QA, self.FIRST, self.START, self.FIN, self.STATUS, self.REP,
         self.PRE, self.RSN, self.ts_on, self.horizon, self.timeout, self.KC, self.SV, self.W) = args
        (self.CH, self.FH, self.CNT, self.PFIRST, self.PDONE, self.tmp, self.bins, self.G, self.GI, _, _) = self.W
        self._at: float | None = None  # a barrier reached, with no replica woken since

    def run_until(self, T: float) -> None:
        """Every event up to a barrier at T (inf, or the horizon: to the end), growing the
        buffers whenever the loop stops for them. Again at the same T with no replica woken
        since (the facility's many events at one instant) there is nothing to do."""
        if T == self._at:
            return
        if self.central:
            self.ts = self.m._run_shared(T, self.arr, self.prompt, self.output, self.d0, self.grp, self.S, self.F,
                                         self.PC, self.RQ, self.RA, self.QA, self.FIRST, self.START, self.FIN,
                                         self.STATUS, self.REP, self.PRE, self.RSN, self.ts_on, self.horizon,
                                         self.timeout, self.KC, self.SV, self.W, self.ts, self.D, self.Df)
        else:
            while self.m._run(T, *self.args, self.ts, self.D, self.Df) == K.TS_FULL:
                self.ts = self.m._grow_ts(self.ts, self.GI)
        self._at = T

    def evacuate(self, r: int, t: float) -> np.ndarray:
        self._at = None
        return self.m._evacuate(r, t, self.S, self.F, self.RQ, self.RA, self.CH, self.FH, self.CNT, self.PFIRST, self.PDONE,
                         self.FIRST, self.FIN, self.STATUS, self.prompt, self.output, self.QA, self.KC, self.bins,
                         self.G, self.GI)

    def enqueue(self, k: int, j: int, t: float) -> None:
        self._at = None
        self.m._enqueue(k, j, t, self.S, self.F, self.RQ, self.QA, self.prompt)

    def set_rest(self, r: int, t: float, watts: float) -> bool:
        self._at = None
        return bool(self.m._set_rest(r, t, watts, self.S, self.F, self.bins, self.G))

    def wake(self, r: int, t: float) -> None:
        self._at = None
        self.m._wake(r, t, self.S, self.F, self.D)

    def to_shared(self, j: int, t: float) -> int:
        """central_queue: request j joins the shared queue at t; the replica it woke, or -1."""
        self._at = None
        return int(self.m._to_shared(j, t, self.S, self.F, self.RQ, self.QA, self.prompt, self.D))

    def power_rows(self) -> tuple[np.ndarray, int]:
        return self.ts[2], int(self.GI[PB_N])

    def keep_rows(self, rest: np.ndarray) -> None:
        """After the ledger took the rows it could: `rest` are the ones left, in time order."""
        PW = self.ts[2]
        PW[:len(rest)] = rest
        self.GI[PB_N] = len(rest)


def _network_arrays(sc: Any, reps: list, S: np.ndarray, n: int) -> tuple:
    """The kernel's view of [network] (grp[14:], _xfer_s): each replica's node (S[:, RNODE]),
    the links on the fewest-microseconds path between every two nodes (networkx), its latency,
    each link's bytes/s and room for the end times of the transfers on it."""
    net = sc.network
    if not net.nodes:
        return (np.full((1, 1, 1), -1, np.int64), np.zeros((1, 1)), np.ones(1), np.zeros((1, 1)),
                np.zeros((1, 1), np.int64), np.zeros((1, 2), np.int64))
    import networkx as nx

    names = [nd for nd, _ in net.nodes]
    where = {p: names.index(nd) for nd, ps in net.nodes for p in ps}
    for r, rep in enumerate(reps):
        S[r, K.RNODE] = where.get(rep.pool.name, 0)
    g = net.graph()
    ids = {(min(ln.a, ln.b), max(ln.a, ln.b)): i for i, ln in enumerate(net.links)}
    N, L = len(names), len(net.links)
    paths = {}
    for a in names:
        for b, path in nx.single_source_dijkstra_path(g, a, weight="latency_us").items():
            paths[(a, b)] = [ids[(min(u, v), max(u, v))] for u, v in zip(path, path[1:])]
    K_ = max([len(p) for p in paths.values()] + [1])
    PATH = np.full((N, N, K_), -1, np.int64)
    PLAT = np.zeros((N, N))
    for (a, b), links in paths.items():
        ia, ib = names.index(a), names.index(b)
        PATH[ia, ib, :len(links)] = links
        PLAT[ia, ib] = sum(net.links[i].latency_us for i in links) * 1e-6
    LBW = np.array([ln.gbps * 1e9 / 8.0 for ln in net.links])
    return (PATH, PLAT, LBW, np.zeros((L, max(n, 1))), np.zeros((L, max(n, 1)), np.int64),
            np.zeros((L, 2), np.int64))


def kernel_module(sim: Any) -> Any:
    """The kernel a run of `sim` uses: this module compiled, or interpreted on a cold cache for a
    small run (saying so through the run's reporter, and starting the background build)."""
    cached = _cached()
    if kernel_mode(len(sim.wl)) == "interpreted":
        if not cached:  # (not when DCSIM_KERNEL forces the interpreter on a warm cache)
            sim.report.notice(INTERPRET_NOTICE)
            build_in_background()
        return plain()
    if not cached:
        sim.report.notice(COMPILE_NOTICE)
    return K


def prepare(sim: Any, m: Any) -> Kernel:
    """The kernel's arrays for a run of `sim` (its replica specs, workload and router), in module
    m's kernel (compiled or interpreted): every replica idle, nothing routed."""
    sc, wl = sim.sc, sim.wl
    reps = sim.replicas
    R = len(reps)
    n = len(wl)
    S = np.zeros((R, N_S), np.int64)
    F = np.zeros((R, N_F), np.float64)
    PC = np.zeros((R, N_PC), np.float64)
    pools = [p.name for p in sc.pools]
    SV = np.zeros((len(pools), max(n, 1)), np.float64)
    for name, draws in sim.service_s.items():
        SV[pools.index(name), :n] = draws
    for r, rep in enumerate(reps):
        sch = rep.pool.scheduler
        S[r, PIDX] = pools.index(rep.pool.name)
        S[r, QROW] = r
        S[r, [QH, QT, PH, PT]] = -1
        S[r, BS] = rep.block_size
        S[r, TOT] = rep.total_blocks
        S[r, MAXB] = rep.max_batch_size
        S[r, POL] = rep.policy_code
        S[r, [AH, AT, LH, LT]] = -1
        S[r, PB] = rep.prefix_blocks
        S[r, K.TCAP] = rep.tier_blocks
        S[r, [K.TLH, K.TLT]] = -1
        F[r, K.TSB] = rep.tier_block_s
        S[r, PUB] = int(wl.history and rep.prefix_blocks > 0)
        F[r, AGE] = sch.ageing_s
        S[r, MAXT] = sch.max_batched_tokens
        S[r, LAG] = rep.lag
        S[r, TP] = rep.pool.accels
        if rep.service is not None:
            S[r, POL] = P_ANALYTIC
            S[r, MAXB] = 1
            PC[r, IDLE_W] = rep.pool.hardware.idle_w
            PC[r, F_MAX] = 1.0
        else:
            PC[r] = rep.perf.constants
        F[r, HOST_W] = rep.host_w
        v = rep.pool.variability
        F[r, WT], F[r, JP], F[r, VLO], F[r, EK], F[r, WDEC] = 1.0, 1.0, 1.0, -1.0, 1.0
        if rep.service is None and v.on:
            F[r, WA], F[r, WT], F[r, JD], F[r, JP] = v.warmup_factor, v.warmup_s, v.jitter, v.jitter_prob
            F[r, WDEC] = v.warmup_decode
            F[r, EW], F[r, EQ], F[r, EF] = v.episode_s, v.episode_share, v.episode_stretch
            F[r, VLO] = v.floor
            if v.warmup_factor > 0:  # (BORN = 0) the term is below 1e-6 from here on
                F[r, WEND] = v.warmup_s * math.log(v.warmup_factor * 1e6) if v.warmup_factor * 1e6 > 1 else 0.0
        # the replica's key for its draws (kernel _vary): seed and replica, hashed
        mix = getattr(K._mix32, "py_func", K._mix32)
        S[r, JSEED] = mix(mix((sc.seed ^ (sc.seed >> 32)) & 0xFFFFFFFF) ^ (r & 0xFFFFFFFF))
        F[r, REST_W] = PC[r, IDLE_W] * S[r, TP] + rep.host_w
    F[:, CAP] = np.nan
    cap = max(1, min(int(S[:, MAXB].max()), n))  # no batch holds more sequences than the run has requests
    bsmax = int(S[:, BS].max())
    gr = sim.groups
    NG = np.array([len(x) for x in gr.replicas], np.int64)
    GR = np.full((len(NG), max(1, int(NG.max()))), -1, np.int64)
    FIT = np.zeros(len(NG), np.int64)
    for g, members in enumerate(gr.replicas):
        GR[g, :len(members)] = members
        FIT[g] = min(reps[r].total_blocks * reps[r].block_size for r in members.tolist())
        S[members, RGRP] = g
        S[members, RLOC] = np.arange(len(members))
    # each group's router: arrivals by router.policy, a disaggregated model's decode group by
    # router.decode_policy; RTJ: the router while some replicas are unavailable (itself if it
    # reads a load, kernel._keeps; else jsq)
    keeps = getattr(K._keeps, "py_func", K._keeps)
    rcode = ROUTERS.code(sc.router.policy) if sc.router.policy in ROUTERS.compiled_names() else -1
    RT = np.array([ROUTERS.code(sc.router.decode_policy) if gr.roles[g] == "decode" else rcode
                   for g in range(len(NG))], np.int64)
    DEC = np.array(gr.decode_of, np.int64)
    out0 = (sim.engine_output if sim.engine_output is not None else wl.output_tokens).astype(np.int64)
    HT = np.zeros(max(n, 1), np.float64)
    grp = (FIT, GR, NG, np.zeros(len(NG), np.int64), RT, np.where([keeps(c) for c in RT.tolist()], RT, K.R_JSQ), DEC, out0,
           np.full(n, -1, np.int64), np.zeros(n, np.float64), HT, np.zeros(max(n, 1), np.int64),
           np.zeros(max(n, 1), np.int64), np.zeros(2, np.int64)) + _network_arrays(sc, reps, S, n)
    for r, rep in enumerate(reps):  # disaggregation: prefill replicas hand off; KV transfers
        S[r, HOH] = S[r, HOT] = -1
        if rep.pool.role == "prefill":
            S[r, ROLE] = K.ROLE_PREFILL
        net = sc.network
        F[r, NIC] = rep.pool.accels * net.gbps * 1e9 / 8.0
        F[r, NLAT] = net.latency_us * 1e-6
        F[r, KVB] = rep.perf.kv_bytes_per_token if rep.perf is not None else 0.0
        F[r, K.TOKS] = rep.token_s
    d0 = min(r.delay_s for r in reps)
    tb = sim.table  # the Simulation's table (all -1 / 0 before a run)
    pairs = getattr(sim.router, "pairs", None)
    if pairs is None:
        pairs = np.zeros((1, 2), np.int64)
    if sc.router.policy == "session_affinity" and wl.session is not None:
        rs = sim.route_session
        ids, sess = np.unique(rs, return_inverse=True)  # dense session numbers
        sess = np.where(rs < 0, -1, sess).astype(np.int64)
        n_sess = len(ids)
    else:
        sess, n_sess = np.full(n, -1, np.int64), 0
    if any(rep.policy_code in (P_PRIORITY, P_SJF) for rep in reps):
        QA = np.full((n, N_QA), -1, np.int64)
        prio = np.asarray(sim._prio if sim._prio is not None else np.zeros(n), dtype=np.int64)
        QA[:, QKEY] = ((prio - (prio.min() if n else 0)) << 32) | np.arange(n, dtype=np.int64)
    else:
        QA = np.zeros((1, N_QA), np.int64)
    central = sc.router.policy == "central_queue"  # one shared queue: row 0's
    rname = "round_robin" if central else sc.router.policy
    router = ROUTERS.code(rname) if rname in ROUTERS.compiled_names() else -1  # -1: the per-step driver calls it
    if central:
        S[:, QROW] = 0
    RQ = np.zeros((n, N_RQ), np.int32)
    groups = 0
    if wl.prefix_group is not None and S[:, PB].max() > 0:
        ids, dense = np.unique(wl.prefix_group, return_inverse=True)  # labels only: cache rows for the groups used
        RQ[:, GRP] = np.where(wl.prefix_group < 0, -1, dense - int((ids < 0).sum()))
        groups = int(RQ[:, GRP].max()) + 1
        index_bytes = R * groups * int(S[:, PB].max()) * 3 * 8
        if index_bytes > 4e9:  # the prefix cache's index (KC) would not fit
            raise ScenarioError("workload.multi_turn" if wl.history else "workload.shared_prefix",
                                f"the prefix cache's index for {groups} prefixes of up to {int(S[:, PB].max())} blocks "
                                f"on {R} replicas needs {index_bytes / 1e9:.0f} GB",
                                "fewer sessions (or groups), a lower max_history_tokens, or a larger block_size")
    else:
        RQ[:, GRP] = -1
    RQ[:, QG] = gr.of_request
    KC = np.full((R, max(1, groups * int(S[:, PB].max())), 3), -1, np.int64)  # nothing cached yet
    ts_on = bool(sc.run.timeseries)
    horizon = sc.run.horizon_s
    timeout = float(sc.workload.timeout_s) if sc.workload.timeout_s is not None else np.inf
    prompt = wl.prompt_tokens.astype(np.int64, copy=False)
    output = (sim.engine_output if sim.engine_output is not None else wl.output_tokens).astype(np.int64, copy=False)
    if gr.disaggregated:  # a request holds 1 output token while on a prefill replica (_begin_transfer)
        output = output.copy()
        output[np.isin(gr.of_request, np.flatnonzero(DEC >= 0))] = 1
    hz = float(horizon) if horizon is not None else np.inf
    ts_cap = n + 64 * R if ts_on else 0  # grows x2
    fac = sc.facility
    W, ts = m._scratch(R, cap, bsmax, ts_cap, 64 * R if fac is not None else 0, len(NG))
    RSN = np.zeros(n, np.int8)
    home = np.full(max(n_sess, 1), -1, np.int64)  # session_affinity: each session's replica
    D = np.zeros(6, np.int64)  # the event loop's position (_run, _run_shared)
    Df = np.zeros(2, np.float64)
    W[8][NAV] = R
    W[8][SHARED] = 1 if central else 0
    W[8][K.PD] = 1 if gr.disaggregated else 0
    if fac is not None:
        W[8][FAC] = 1
    args = (wl.arrival_s, prompt, output, float(d0), grp, router, np.ascontiguousarray(pairs, dtype=np.int64),
            sess, home, S, F, PC, RQ, np.zeros(n, np.int64), QA, tb.first_token_s, tb.start_s, tb.finish_s,
            tb.status, tb.replica, tb.preemptions, RSN, ts_on, hz, timeout, KC, SV, W)
    k = Kernel(args, ts, D, Df, m)
    k.central = central
    return k


def run(sim: Any) -> Any:
    """Run a Simulation (sim/engine/simulation.py) on the compiled (fast) driver; its Result."""
    wall0 = time.perf_counter()
    k = prepare(sim, kernel_module(sim))
    drv = None
    if sim.fac is None:
        k.run_until(np.inf)
    else:
        from sim.engine.fast_facility import FacilityDriver
        drv = FacilityDriver(sim, k)
        drv.run()
    return finish(sim, k, float(k.Df[0]), drv, "compiled", wall0)


def _placement(sim: Any, k: Kernel, tb: Any, RSN: np.ndarray) -> None:
    """Where each request was prefilled and decoded, and its KV transfer time (disaggregation);
    co-located, both are its replica."""
    if not sim.groups.disaggregated:
        tb.prefill_replica[:] = tb.replica
        tb.decode_replica[:] = tb.replica
        return
    prep, xfer = k.grp[8], k.grp[9]
    role = np.array([r.pool.role for r in sim.replicas] + ["none"])
    rep_role = role[np.where(tb.replica >= 0, tb.replica, len(sim.replicas))]
    tb.prefill_replica[:] = np.where(prep >= 0, prep, np.where(rep_role != "decode", tb.replica, -1))
    tb.decode_replica[:] = np.where(rep_role == "decode", tb.replica, np.where(rep_role == "mixed", tb.replica, -1))
    tb.kv_transfer_s[:] = xfer
    tb.finish_s[tb.status == IN_FLIGHT] = -1.0  # (a hand-off's time is no finish)
    for i in np.flatnonzero((tb.status == FAILED) & (RSN == RS_NO_CAPACITY)).tolist():
        tb.reason[i] = "no_capacity: no decode replica could take the prefilled request (all down or drained)"


def finish(sim: Any, k: Kernel, clock: float, drv: Any, engine: str, wall0: float) -> Any:
    """The Result of a run that has ended (either driver): the request table's reasons and the
    client's view of late deliveries, the last step's time and energy cut at the end, the
    facility's ledger (drv: the facility host, None without a [facility]) or the energy bins'
    peak, the time series and the in-system counts."""
    from sim.facility.ledger import Ledger
    from sim.engine.result import FacilityEvents, ReplicaInfo, Result

    m, sc, wl = k.m, sim.sc, sim.wl
    S, F, RQ, RSN, tb = k.S, k.F, k.RQ, k.RSN, sim.table
    R = S.shape[0]
    horizon, central = sc.run.horizon_s, k.central
    FIT = k.grp[0]
    gof = sim.groups.of_request
    timeout = k.timeout
    tsf, tsi, _pw = k.ts
    bins, rows = k.bins, int(k.GI[TS_N])
    node_failed = drv.node_failed if drv is not None else {}
    ts_on = bool(k.ts_on)
    entered = tb.replica >= 0  # the arrivals routed (the table's replica may be cleared below)
    rej = np.flatnonzero(tb.status == REJECTED)
    tot = (wl.prompt_tokens + wl.output_tokens)
    for i in rej.tolist():
        if RSN[i] == RS_POWER:
            tb.reason[i] = "power: new requests shed while the facility is over its supply limit"
        elif RSN[i] == RS_NO_CAPACITY:
            tb.reason[i] = "no_capacity: every replica is down, drained or not yet commissioned"
        elif RSN[i] == RS_NO_POOL:
            tb.reason[i] = f"no_pool_for_model: no pool serves {sim.request_model(i)}"
        else:
            tb.reason[i] = f"kv_capacity: needs {int(tot[i])} tokens of KV cache, a replica holds {int(FIT[gof[i]])}"
    tb.replica[rej] = -1
    # the run ends with the last request to leave, seen when it happens: a late delivery below is
    # recorded at its client's deadline but still ends the run when it is delivered
    gone = (tb.status == COMPLETED) | (tb.status == FAILED)
    t_last = float(tb.finish_s[gone].max()) if gone.any() else 0.0
    if sc.workload.timeout_s is not None:
        # a response delivered after the client left is a timeout too (Simulation.complete)
        late = (tb.status == COMPLETED) & (tb.finish_s > wl.arrival_s + timeout)
        tb.status[late] = FAILED
        tb.finish_s[late] = wl.arrival_s[late] + timeout
        failed = (tb.status == FAILED) & (RSN != RS_NODE) & (RSN != RS_NO_CAPACITY)
        why = f"timeout: no response within {sc.workload.timeout_s:g} s"
        for i in np.flatnonzero(failed).tolist():
            tb.reason[i] = why
        # a first token the client never saw (sampled, or delivered after it left) is not recorded
        unseen = failed & ((tb.first_token_s == 0.0) | (tb.first_token_s > tb.finish_s))
        tb.first_token_s[unseen] = -1.0
    for i, (rid, tries) in node_failed.items():  # requests that failed with their node
        tb.reason[i] = (f"node_failure: replica {rid} failed and the request was re-queued {tries} times "
                        f"(retry_limit {sc.facility.failures.retry_limit})")
        tb.first_token_s[i] = -1.0  # as the SimPy table: not recorded for a node failure
    if central:  # a shared queue routes to no replica: the table names the one that completed it
        tb.replica[:] = np.where(tb.status == COMPLETED, RQ[:, OWN], -1)
    _placement(sim, k, tb, RSN)
    done = tb.status == COMPLETED
    left = done | (tb.status == FAILED)  # requests that left the system
    if horizon is None:
        sim_time = max(float(clock), t_last)
    else:
        sim_time = float(horizon)
        # as the SimPy table: first token and preemptions are recorded when a request leaves
        tb.first_token_s[~left] = -1.0
        tb.preemptions[~left] = 0
    G = k.G
    for r in range(R):
        if S[r, ST] == STEP or (S[r, ST] == IDLE and F[r, EEND] > sim_time):
            # in a step at the end (the horizon, or the last request's deadline while a step of a
            # cancelled request ran on): its time and energy count up to there
            over = F[r, EEND] - sim_time
            F[r, BUSY] -= over
            F[r, ESTEP] -= F[r, WSTEP] * over
            m._bin_energy(bins, G, sim_time, F[r, EEND], -F[r, WSTEP])
        else:  # idle energy up to the end of the run
            idle_w = F[r, REST_W]
            F[r, EIDLE] += idle_w * (sim_time - F[r, IDLE_SINCE])
            m._bin_energy(bins, G, F[r, IDLE_SINCE], sim_time, idle_w)
    bin_w = float(G[BIN_W])
    if drv is not None:
        # the ledger has every power change in time order: energy, peak and time over the supply
        # as the per-step driver's ledger computes them
        led, events = drv.close(sim_time)
        if drv.autoscale is not None:
            drv.autoscale.close(sim_time)
        led.step_energy_j = float(F[:, ESTEP].sum() + F[:, EIDLE].sum())
        window = None
    else:
        led = Ledger(R, [0] * R, [1.0])
        led.now = sim_time
        led.energy_it_j = led.energy_fac_j = float(bins.sum())
        led.step_energy_j = float(F[:, ESTEP].sum() + F[:, EIDLE].sum())
        nb = int(math.ceil(sim_time / bin_w)) if sim_time > 0 else 0
        if nb:
            width = np.full(nb, bin_w)
            width[-1] = sim_time - (nb - 1) * bin_w
            led.peak_fac_w = float(np.max(bins[:nb] / np.maximum(width, 1e-12)))
        events = FacilityEvents(tents=list(sim.tent_names))
        window = bin_w
    ts = TimeSeries(ts_on)
    if ts_on:
        ts.t_s.frombytes(tsf[:rows].tobytes())
        for c, col in enumerate((ts.replica, ts.batch_size, ts.kv_blocks_used, ts.queue_len)):
            col.frombytes(tsi[:rows, c].astype(np.int32).tobytes())
        ts.busy.frombytes(tsi[:rows, 4].astype(np.int8).tobytes())
    fin = tb.finish_s[left]
    fin.sort()
    sys_t, sys_n = m._in_system(wl.arrival_s[entered], fin)
    del fin
    infos = [ReplicaInfo(r, rep.pool.name, rep.info_blocks, float(F[r, BUSY]), int(S[r, K.HITT]), int(S[r, K.ADMT]),
                         int(S[r, K.THIT]), int(S[r, K.TOFF]), rep.block_bytes)
             for r, rep in enumerate(sim.replicas)]
    return Result(sc, wl, tb, ts, sys_t, sys_n, infos, sim_time, time.perf_counter() - wall0, engine=engine,
                  ledger=led, facility=events, power_peak_window_s=window,
                  autoscale=drv.autoscale if drv is not None else None)
