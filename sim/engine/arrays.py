"""What both drivers share around the kernel: its arrays for a run (`prepare`: the named groups
of sim/engine/kernel/layout.py, filled from the run's replica specs, workload and router), the
`Kernel` a driver holds (the groups, and the named transitions through which Python changes
kernel state: no driver writes a column itself), and the Result of a run that has ended
(`finish`: the request table's reasons, the client's view of late deliveries, the last step's
time and energy cut at the end, the ledger or the energy bins' peak, the time series)."""

from __future__ import annotations

import math
import time
from operator import attrgetter
from collections.abc import Callable
from typing import Any

import numpy as np

from sim.engine.kernel import layout as L
from sim.engine.kernel.layout import (BIN_W, Clock, Handoff, Network, Replicas, Requests, Routing, Run, State)
from sim.engine.recorder import COMPLETED, FAILED, IN_FLIGHT, REJECTED, TimeSeries
from sim.errors import ScenarioError
from sim.perf.roofline import F_MAX, IDLE_W, N_PC
from sim.registry import ROUTERS


class Kernel:
    """A run's kernel state (`st`, the named groups) in kernel `m` (compiled or interpreted), and
    the transitions drivers and the facility make through it."""

    def __init__(self, st: State, m: Any, central: bool, batch_full: int | None = None) -> None:
        self.st, self.m, self.central = st, m, central
        # the facility's ledger taking the power rows no replica can precede any more, when their
        # buffer is full between barriers (sim/engine/drivers/facility.py); None: the buffer grows
        self.rows_full: Callable[[], None] | None = None
        self._at: float | None = None  # a barrier reached, with no replica woken since
        # the widest batch the run can reach: the batch arrays widen up to it (default: as wide already)
        self.batch_full = int(st.rp.FH.shape[1]) if batch_full is None else batch_full

    # --- the groups, and the arrays Python reads most ---
    @property
    def rp(self) -> Replicas:
        return self.st.rp

    @property
    def rq(self) -> Requests:
        return self.st.rq

    @property
    def run(self) -> Run:
        return self.st.run

    @property
    def S(self) -> np.ndarray:
        return self.st.rp.S

    @property
    def F(self) -> np.ndarray:
        return self.st.rp.F

    @property
    def R(self) -> int:
        return int(self.st.rp.S.shape[0])

    @property
    def fb(self) -> bool:
        """Some replicas are unavailable (down, drained or commissioning)."""
        return int(self.st.run.GI[L.NAV]) < self.R

    # --- the loop ---
    def grow(self) -> None:
        """The time series and power rows, those near full twice as long; full power rows go to
        the ledger first where a driver takes them (`rows_full`), growing only if that left
        more than half."""
        run = self.st.run
        tsf, tsi, PW = run.tsf, run.tsi, run.PW
        if run.GI[L.TS_N] + 8 > tsf.shape[0]:
            tsf = np.concatenate([tsf, np.empty_like(tsf)])
            tsi = np.concatenate([tsi, np.empty_like(tsi)])
        full = run.GI[L.PB_N] + 64 > PW.shape[0]
        if full and self.rows_full is not None:
            self.rows_full()  # (in place: the rows left move to the buffer's start)
            full = run.GI[L.PB_N] + 64 > PW.shape[0] or run.GI[L.PB_N] > PW.shape[0] // 2
        if full:
            PW = np.concatenate([PW, np.empty_like(PW)])
        if self.kc_low():  # the prefix index: twice the entries
            self.st = self.st._replace(rp=self.st.rp._replace(KC=grown_index(self.st.rp.KC, self.m.kc_rehash)))
        self.st = self.st._replace(run=run._replace(tsf=tsf, tsi=tsi, PW=PW))
        self._widen()

    def _room(self) -> tuple[tuple[np.ndarray, ...], int]:
        """What grow() can change: the growing buffers (compared by identity) and the power rows
        held (the ledger takes rows in place: their count falls)."""
        run, rp = self.st.run, self.st.rp
        return (run.tsf, run.PW, rp.KC.E, rp.FH), int(run.GI[L.PB_N])

    def _widen(self) -> None:
        """The batch arrays at least twice as wide when some replica's next plan may need more
        slots than they have (the kernel's plan.batch_low, over every replica), up to the widest
        batch of the run."""
        rp = self.st.rp
        S, cap = rp.S, int(rp.FH.shape[1])
        if cap >= self.batch_full:
            return
        reach = int(np.minimum(S[:, L.MAXB], S[:, L.NRUN] + S[S[:, L.QROW], L.QLEN]).max())
        if reach <= cap:
            return
        w = min(self.batch_full, max(2 * cap, reach))

        def wider(a: np.ndarray) -> np.ndarray:
            out = np.zeros((a.shape[0], w) + a.shape[2:], a.dtype)
            out[:, :cap] = a
            return out

        self.st = self.st._replace(rp=rp._replace(CH=wider(rp.CH), FH=wider(rp.FH), PFIRST=wider(rp.PFIRST),
                                                  PDONE=wider(rp.PDONE), tmp=np.zeros(w, np.int64)))

    def room(self) -> None:
        """Room in the growing buffers for the rows a plan or a sleep writes."""
        if self.m.buffers_full(self.st.run) or self.kc_low():
            self.grow()

    def kc_low(self) -> bool:
        """The kernel's kc_low, read here (a compiled call from Python costs more than the test:
        room() runs at every transition the drivers make from Python)."""
        N = self.st.rp.KC.N
        return bool(N[L.K_NFREE] < N[L.K_ROOM])

    def run_until(self, T: float) -> None:
        """Every event up to a barrier at T (inf, or the horizon: to the end), growing the
        buffers whenever the loop stops for them. Again at the same T with no replica woken
        since (the facility's many events at one instant) there is nothing to do."""
        if T == self._at:
            return
        loop = self.m.run_shared if self.central else self.m.run_closed if self.closed else self.m.run_until
        while loop(T, self.st) == L.TS_FULL:
            bufs, rows = self._room()
            self.grow()
            bufs_now, rows_now = self._room()
            if rows_now == rows and all(a is b for a, b in zip(bufs_now, bufs, strict=True)):  # (none made: spins)
                raise RuntimeError("internal error: the kernel's loop stopped for room its driver did not make")
        self._at = T

    # --- the facility's narrow interface and the drivers' transitions ---
    def evacuate(self, r: int, t: float) -> np.ndarray:
        self._at = None
        return self.m.evacuate(r, t, self.rp, self.rq, self.run)

    def enqueue(self, k: int, j: int, t: float) -> None:
        self._at = None
        self.m.enqueue(k, j, t, self.rp, self.rq)

    def set_rest(self, r: int, t: float, watts: float) -> bool:
        self._at = None
        return bool(self.m.set_rest(r, t, watts, self.rp, self.run))

    def wake(self, r: int, t: float) -> None:
        self._at = None
        self.m.wake(r, t, self.S, self.F, self.st.clk.D)

    def to_shared(self, j: int, t: float) -> int:
        """central_queue: request j joins the shared queue at t; the replica it woke, or -1."""
        self._at = None
        return int(self.m.to_shared(j, t, self.st))

    def set_flag(self, r: int, col: int, on: bool) -> None:
        """Replica r's DOWN or DRN flag, and the count of available replicas with it."""
        S, GI = self.S, self.st.run.GI
        before = not (S[r, L.DOWN] or S[r, L.DRN])
        S[r, col] = 1 if on else 0
        after = not (S[r, L.DOWN] or S[r, L.DRN])
        if after != before:
            GI[L.NAV] += 1 if after else -1

    def set_cap(self, r: int, w: float | None) -> None:
        """Replica r's power cap per accelerator (None: none)."""
        self.F[r, L.CAP] = np.nan if w is None else float(w)

    def set_shedding(self, on: bool) -> None:
        self.st.run.GI[L.SHED] = 1 if on else 0

    def reject(self, j: int, why: int, t: float) -> None:
        """Request j is turned away on arrival at t (why: RS_*)."""
        self.m.reject(j, why, t, self.rq)

    @property
    def closed(self) -> bool:
        """Closed-loop clients send the requests (sim/engine/kernel/clients.py)."""
        return self.rq.think.shape[0] > 0

    def sent(self) -> int:
        """Requests sent so far."""
        return int(self.st.clk.D[L.D_NEXT])

    def sending_over(self) -> bool:
        """No request is left to send: all sent, or every closed-loop client waits to send at or
        after workload.duration_s."""
        rq, n = self.rq, len(self.rq.arr)
        if self.sent() >= n:
            return True
        c = len(rq.CK) if self.closed else 0
        return bool(c and int(rq.CN[0]) == c and rq.CK[0] >= self.st.clk.stop)

    def fail(self, j: int, t: float, why: int) -> None:
        """Request j fails at t (why: RS_*)."""
        self.m.fail(j, t, why, self.rq)

    def assign(self, k: int, j: int) -> None:
        """Request j is routed to replica k (its outstanding work counts there)."""
        self.m.assign(k, j, self.S, self.rq)

    def unassign(self, k: int, j: int) -> None:
        self.m.unassign(k, j, self.S, self.rq)

    def in_transit(self, j: int) -> None:
        """Request j is on its way to its replica (in no queue yet)."""
        self.rq.RQ[j, L.RST] = L.R_TRANSIT

    def gone(self, j: int) -> None:
        """Request j left (its deadline finds nothing to cancel)."""
        self.rq.RQ[j, L.RST] = L.R_GONE

    def arrived(self, j: int, t: float) -> None:
        """The per-step driver's arrival process reached request j at t (the loop's position)."""
        self.st.clk.Df[L.DF_NOW] = t
        self.st.clk.D[L.D_NEXT] = j + 1

    def unblock(self, r: int) -> None:
        """Replica r's next plan is not known to be stable (a scheduler plug-in planned it)."""
        self.S[r, L.QBLK] = 0

    def set_chunk(self, r: int, c: int, j: int, tokens: int) -> None:
        """Prefill chunk c of replica r's next step: `tokens` of request j (a plug-in's plan)."""
        self.rp.CH[r, c, L.CH_REQ] = j
        self.rp.CH[r, c, L.CH_TOK] = tokens

    def take_handoffs(self, r: int) -> list[int]:
        """Prefill replica r's hand-off list (requests prefilled, in order), emptied."""
        out = []
        i = int(self.S[r, L.HOH])
        while i >= 0:
            out.append(i)
            i = int(self.rq.RQ[i, L.NXT])
        self.S[r, L.HOH] = self.S[r, L.HOT] = -1
        return out

    def power_rows(self) -> tuple[np.ndarray, int]:
        return self.st.run.PW, int(self.st.run.GI[L.PB_N])

    def keep_rows(self, rest: np.ndarray) -> None:
        """After the ledger took the rows it could: `rest` are the ones left, in time order."""
        PW = self.st.run.PW
        PW[:len(rest)] = rest
        self.st.run.GI[L.PB_N] = len(rest)


def _network(sc: Any, reps: list, S: np.ndarray, n: int) -> Network:
    """The kernel's view of [network]: each replica's node (S RNODE), the links on the
    fewest-microseconds path between every two nodes (networkx), its latency, each link's
    bytes/s and room for the end times of the transfers on it."""
    net = sc.network
    if not net.nodes:
        return Network(np.full((1, 1, 1), -1, np.int64), np.zeros((1, 1)), np.ones(1), np.zeros((1, 1)),
                       np.zeros((1, 1), np.int64), np.zeros((1, 2), np.int64))
    import networkx as nx

    names = [nd for nd, _ in net.nodes]
    where = {p: names.index(nd) for nd, ps in net.nodes for p in ps}
    for r, rep in enumerate(reps):
        S[r, L.RNODE] = where.get(rep.pool.name, 0)
    g = net.graph()
    ids = {(min(ln.a, ln.b), max(ln.a, ln.b)): i for i, ln in enumerate(net.links)}
    N, nl = len(names), len(net.links)
    paths = {}
    for a in names:
        for b, path in nx.single_source_dijkstra_path(g, a, weight="latency_us").items():
            paths[(a, b)] = [ids[(min(u, v), max(u, v))] for u, v in zip(path, path[1:], strict=False)]
    hops = max([len(p) for p in paths.values()] + [1])
    PATH = np.full((N, N, hops), -1, np.int64)
    PLAT = np.zeros((N, N))
    for (a, b), links in paths.items():
        ia, ib = names.index(a), names.index(b)
        PATH[ia, ib, :len(links)] = links
        PLAT[ia, ib] = sum(net.links[i].latency_us for i in links) * 1e-6
    LBW = np.array([ln.gbps * 1e9 / 8.0 for ln in net.links])
    return Network(PATH, PLAT, LBW, np.zeros((nl, max(n, 1))), np.zeros((nl, max(n, 1)), np.int64),
                   np.zeros((nl, 2), np.int64))


def _replica_rows(sim: Any, S: np.ndarray, F: np.ndarray, PC: np.ndarray, mix: Any) -> None:
    """Each replica's rows of S and F from its spec, and its pool's row of PC (the perf constants)."""
    sc, wl = sim.sc, sim.wl
    pools = [p.name for p in sc.pools]
    net = sc.network
    seed_key = mix((sc.seed ^ (sc.seed >> 32)) & 0xFFFFFFFF)
    for r, rep in enumerate(sim.replicas):
        # the replica's key for its draws (kernel step.vary): seed and replica, hashed
        jseed = mix(seed_key ^ (r & 0xFFFFFFFF))
        if r and rep.pool is sim.replicas[r - 1].pool:  # a pool's replicas differ only in these
            S[r], F[r] = S[r - 1], F[r - 1]
            S[r, L.QROW] = r
            S[r, L.JSEED] = jseed
            continue
        S[r, L.PIDX] = p = pools.index(rep.pool.name)
        S[r, L.QROW] = r
        S[r, [L.QH, L.QT, L.PH, L.PT, L.AH, L.AT, L.LH, L.LT, L.TLH, L.TLT, L.HOH, L.HOT]] = -1
        S[r, L.BS] = rep.block_size
        S[r, L.TOT] = rep.total_blocks
        S[r, L.MAXB] = rep.max_batch_size
        S[r, L.POL] = rep.policy_code
        S[r, L.PB] = rep.prefix_blocks
        S[r, L.TCAP] = rep.tier_blocks
        F[r, L.TSB] = rep.tier_block_s
        S[r, L.PUB] = int(wl.history and rep.prefix_blocks > 0)
        S[r, L.LAG] = rep.lag
        for table, arr in ((L.REPLICA, S), (L.REPLICA_F, F)):  # columns read from the pool's configuration
            for col, src in table.sources:
                arr[r, col] = attrgetter(src)(rep.pool)
        if S[r, L.POL] == L.P_STATIC:  # static batching reserves whole sequences, as engine trtllm does
            S[r, L.RSV] = 1
        if rep.service is not None:
            S[r, L.POL] = L.P_ANALYTIC
            S[r, L.MAXB] = 1
            PC[p, IDLE_W] = rep.pool.hardware.idle_w
            PC[p, F_MAX] = 1.0
        else:
            PC[p] = rep.perf.constants
        F[r, L.HOST_W] = rep.host_w
        v = rep.pool.variability
        F[r, L.WT], F[r, L.JP], F[r, L.VLO], F[r, L.EK], F[r, L.WDEC] = 1.0, 1.0, 1.0, -1.0, 1.0
        if rep.service is None and v.on:
            F[r, L.WA], F[r, L.WT], F[r, L.JD], F[r, L.JP] = v.warmup_factor, v.warmup_s, v.jitter, v.jitter_prob
            F[r, L.WDEC] = v.warmup_decode
            F[r, L.EW], F[r, L.EQ], F[r, L.EF] = v.episode_s, v.episode_share, v.episode_stretch
            F[r, L.VLO] = v.floor
            if v.warmup_factor > 0:  # (BORN = 0) the term is below 1e-6 from here on
                F[r, L.WEND] = v.warmup_s * math.log(v.warmup_factor * 1e6) if v.warmup_factor * 1e6 > 1 else 0.0
        S[r, L.JSEED] = jseed
        F[r, L.REST_W] = PC[p, IDLE_W] * S[r, L.TP] + rep.host_idle_w
        if rep.pool.role == "prefill":  # disaggregation: prefill replicas hand off; KV transfers
            S[r, L.ROLE] = L.ROLE_PREFILL
        F[r, L.NIC] = rep.pool.accels * net.gbps * 1e9 / 8.0
        F[r, L.NLAT] = net.latency_us * 1e-6
        F[r, L.KVB] = rep.perf.kv_bytes_per_token if rep.perf is not None else 0.0
        F[r, L.TOKS] = rep.token_s
    F[:, L.CAP] = np.nan


def _routing(sim: Any, S: np.ndarray, central: bool, keeps: Any, jsq: int) -> Routing:
    """The routing groups (sim/engine/build.py Groups) and the routers' state."""
    sc, wl, gr, reps = sim.sc, sim.wl, sim.groups, sim.replicas
    n = len(wl)
    NG = np.array([len(x) for x in gr.replicas], np.int64)
    GR = np.full((len(NG), max(1, int(NG.max()))), -1, np.int64)
    FIT = np.zeros(len(NG), np.int64)
    for g, members in enumerate(gr.replicas):
        GR[g, :len(members)] = members
        FIT[g] = min(reps[r].total_blocks * reps[r].block_size for r in members.tolist())
        S[members, L.RGRP] = g
        S[members, L.RLOC] = np.arange(len(members))
    # each group's router: arrivals by router.policy, a disaggregated model's decode group by
    # router.decode_policy; RTJ: the router while some replicas are unavailable (itself if it
    # reads a load, kernel route.keeps; else jsq)
    rcode = ROUTERS.code(sc.router.policy) if sc.router.policy in ROUTERS.compiled_names() else -1
    RT = np.array([ROUTERS.code(sc.router.decode_policy) if gr.roles[g] == "decode" else rcode
                   for g in range(len(NG))], np.int64)
    RTJ = np.where([keeps(c) for c in RT.tolist()], RT, jsq)
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
    rname = "round_robin" if central else sc.router.policy
    router = ROUTERS.code(rname) if rname in ROUTERS.compiled_names() else -1  # -1: the per-step driver calls it
    P = 1
    while P < len(reps):
        P *= 2
    # the routers' trees (kernel route.py), a pair per routing group: when each replica must be
    # advanced, and what a load-reading router minimises
    TA = np.full((len(NG), 2 * P), np.inf)
    TL = np.full((len(NG), 2 * P), np.inf)
    TC = np.full(2 * P, np.inf)  # closed-loop clients' tree over every replica
    return Routing(router, FIT, GR, NG, np.zeros(len(NG), np.int64), RT, RTJ, np.array(gr.decode_of, np.int64),
                   TA, TL, TC, np.ascontiguousarray(pairs, dtype=np.int64), sess, np.full(max(n_sess, 1), -1, np.int64))


def _requests(sim: Any, S: np.ndarray, outputs: np.ndarray) -> Requests:
    """Per-request inputs and the run's request table (sim.table, all -1 / 0 before a run)."""
    sc, wl, gr, reps = sim.sc, sim.wl, sim.groups, sim.replicas
    n = len(wl)
    R = len(reps)
    pools = [p.name for p in sc.pools]
    SV = np.zeros((len(pools), max(n, 1)), np.float64)
    for name, draws in sim.service_s.items():
        SV[pools.index(name), :n] = draws
    if any(rep.policy_code in (L.P_PRIORITY, L.P_SJF) for rep in reps):
        QA = np.full((n, L.N_QA), -1, np.int64)
        prio = np.asarray(sim._prio if sim._prio is not None else np.zeros(n), dtype=np.int64)
        QA[:, L.QKEY] = ((prio - (prio.min() if n else 0)) << 32) | np.arange(n, dtype=np.int64)
    else:
        QA = np.zeros((1, L.N_QA), np.int64)
    RQ = np.zeros((n, L.N_RQ), np.int32)
    if wl.prefix_group is not None and S[:, L.PB].max() > 0:
        ids, dense = np.unique(wl.prefix_group, return_inverse=True)  # labels only: cache rows for the groups used
        RQ[:, L.GRP] = np.where(wl.prefix_group < 0, -1, dense - int((ids < 0).sum()))
        groups = int(RQ[:, L.GRP].max()) + 1
        if R * groups * int(S[:, L.PB].max()) >= 1 << 62:  # the prefix index's keys (cache_index.kc_find) overflow
            raise ScenarioError("workload.multi_turn" if wl.history else "workload.shared_prefix",
                                f"{groups} prefixes of up to {int(S[:, L.PB].max())} blocks on {R} replicas are "
                                "more cached blocks than the prefix cache's index can name",
                                "fewer sessions (or groups), a lower max_history_tokens, or a larger block_size")
    else:
        RQ[:, L.GRP] = -1
    RQ[:, L.QG] = gr.of_request
    output = outputs.astype(np.int64, copy=False)
    if gr.disaggregated:  # a request holds 1 output token while on a prefill replica (handoff.begin_transfer)
        output = output.copy()
        output[gr.requests_in(np.flatnonzero(np.asarray(gr.decode_of) >= 0))] = 1
    tb = sim.table
    return Requests(wl.arrival_s, wl.prompt_tokens.astype(np.int64, copy=False), output, RQ, np.zeros(n, np.int64),
                    QA, SV, tb.first_token_s, tb.start_s, tb.finish_s, tb.status, tb.preemptions, np.zeros(n, np.int8),
                    tb.replica, *_clients(wl, tb))


def _clients(wl: Any, tb: Any) -> tuple[np.ndarray, ...]:
    """Closed-loop clients' state (Requests think .. CN): every client waiting to send at 0, in
    client order (ties below any request's); empty arrays for open-loop arrivals."""
    c = int(wl.clients)
    if not c:
        return (np.zeros(0), np.zeros(0, np.int32), np.zeros(1), np.zeros(1, np.int64), np.zeros(1, np.int64),
                np.zeros(1, np.int64))
    n = len(wl)
    wl.arrival_s[:] = 0.0  # (each request's send time is written as it is sent)
    tb.client = np.full(n, -1, np.int32)
    return (np.asarray(wl.think_s, np.float64), tb.client, np.zeros(c),
            np.arange(c, dtype=np.int64) - c, np.arange(c, dtype=np.int64), np.array([c], np.int64))


def prefix_index(width: int, room: int, entries: int = 0) -> L.PrefixIndex:
    """An empty prefix index (kernel cache_index.py) whose keys are replica x width + slot, with room
    for `entries` (at least twice `room`, what one step may add) and every entry free."""
    n = max(2 * room, entries, 16)
    E = np.full((n, L.N_SLOT), -1, np.int64)
    E[:-1, L.KNEXT] = np.arange(1, n)  # the free list: 0, 1, ...
    N = np.zeros(L.KC_N.n, np.int64)
    N[L.K_FREE], N[L.K_NFREE], N[L.K_W], N[L.K_ROOM] = 0, n, max(width, 1), room
    return L.PrefixIndex(E, np.full(1 << int(2 * n - 1).bit_length(), -1, np.int64), N)


def grown_index(KC: L.PrefixIndex, rehash: Any) -> L.PrefixIndex:
    """KC with twice the entries: the cached ones kept (the same entry numbers, so the replicas'
    LRU lists stand), the others free, the table twice as wide (`rehash`: kernel kc_rehash)."""
    n = KC.E.shape[0]
    E = np.full((2 * n, L.N_SLOT), -1, np.int64)
    E[:n] = KC.E
    big = L.PrefixIndex(E, np.full(2 * KC.H.shape[0], -1, np.int64), KC.N.copy())
    rehash(big)
    return big


BATCH_ROWS = 16  # the fast driver's first batch-array width (a replica's CH row: 256 B)
# the power rows' first buffer: rows per replica, and at least ROWS_MIN (1.5 MB: the ledger takes
# the rows each time it fills, a call from Python: a few replicas would fill 64 each too often)
ROWS_PER_REPLICA, ROWS_MIN = 64, 1 << 16


def prepare(sim: Any, m: Any, batch_rows: int | None = None) -> Kernel:
    """The kernel's state for a run of `sim` (its replica specs, workload and router), in kernel
    m (compiled or interpreted): every replica idle, nothing routed. batch_rows: the batch
    arrays' first width (the fast loops widen them as batches grow: plan.batch_low); None: the
    widest batch at once (the per-step driver, whose plans are made from Python too)."""
    sc, wl, reps = sim.sc, sim.wl, sim.replicas
    R, n = len(reps), len(wl)
    central = sc.router.policy == "central_queue"  # one shared queue: row 0's
    S = np.zeros((R, L.N_S), np.int64)
    F = np.zeros((R, L.N_F), np.float64)
    PC = np.zeros((len(sc.pools), N_PC), np.float64)
    _replica_rows(sim, S, F, PC, getattr(m.mix32, "py_func", m.mix32))
    if central:
        S[:, L.QROW] = 0
    rt = _routing(sim, S, central, getattr(m.keeps, "py_func", m.keeps), m.R_JSQ)
    net = _network(sc, reps, S, n)
    outputs = sim.engine_output if sim.engine_output is not None else wl.output_tokens
    rq = _requests(sim, S, outputs)
    groups = int(rq.RQ[:, L.GRP].max()) + 1 if n and rq.RQ[:, L.GRP].max() >= 0 else 0
    full = max(1, min(int(S[:, L.MAXB].max()), n))  # no batch holds more sequences than the run has requests
    cap = full if batch_rows is None else min(full, max(1, batch_rows))
    KC = prefix_index(groups * int(S[:, L.PB].max()), int(S[:, L.TOT].max()) if groups else 0)
    rp = Replicas(S, F, PC, np.zeros((R, cap, 2), np.int64), np.zeros((R, cap), np.int64),
                  np.zeros((R, int(S[:, L.BS].max())), np.int64), np.zeros((R, cap), np.int64),
                  np.zeros((R, cap), np.int64), KC, np.zeros(cap, np.int64))
    ts_on = bool(sc.run.timeseries)
    GI = np.zeros(L.N_GI, np.int64)
    GI[L.NAV] = R
    GI[L.SHARED] = 1 if central else 0
    GI[L.PD] = 1 if sim.groups.disaggregated else 0
    GI[L.FAC] = 1 if sc.facility is not None else 0
    run = L.new_run(np.zeros(L.N_BINS), np.ones(1), GI, n + 64 * R if ts_on else 0,
                    max(ROWS_PER_REPLICA * R, ROWS_MIN) if sc.facility is not None else 0, ts_on)
    ho = Handoff(np.asarray(outputs).astype(np.int64), np.full(n, -1, np.int64), np.zeros(n, np.float64),
                 np.zeros(max(n, 1), np.float64), np.zeros(max(n, 1), np.int64), np.zeros(max(n, 1), np.int64),
                 np.zeros(2, np.int64))
    horizon = sc.run.horizon_s
    clk = Clock(np.zeros(L.POS.n, np.int64), np.zeros(L.POS_F.n, np.float64), float(min(r.delay_s for r in reps)),
                float(horizon) if horizon is not None else np.inf,
                float(sc.workload.timeout_s) if sc.workload.timeout_s is not None else np.inf,
                float(sc.workload.duration_s) if wl.clients and sc.workload.duration_s is not None else np.inf)
    clk.Df[L.DF_BATCH] = -1.0
    return Kernel(State(rp, rq, run, rt, ho, net, clk), m, central, full)


def _placement(sim: Any, k: Kernel, RSN: np.ndarray) -> None:
    """Where each request was prefilled and decoded, and its KV transfer time (disaggregation);
    co-located, both are its replica."""
    tb = sim.table
    if not sim.groups.disaggregated:
        tb.prefill_replica[:] = tb.replica
        tb.decode_replica[:] = tb.replica
        return
    prep, xfer = k.st.ho.PREP, k.st.ho.XFER
    codes = {"prefill": 1, "decode": 2, "mixed": 3}  # (codes, not strings: a compare per request is cheap then)
    role = np.array([codes.get(r.pool.role, 0) for r in sim.replicas] + [0], np.int8)
    rep_role = role[np.where(tb.replica >= 0, tb.replica, len(sim.replicas))]
    tb.prefill_replica[:] = np.where(prep >= 0, prep, np.where(rep_role != 2, tb.replica, -1))
    tb.decode_replica[:] = np.where((rep_role == 2) | (rep_role == 3), tb.replica, -1)
    tb.kv_transfer_s[:] = xfer
    tb.finish_s[tb.status == IN_FLIGHT] = -1.0  # (a hand-off's time is no finish)
    for i in np.flatnonzero((tb.status == FAILED) & (RSN == L.RS_NO_CAPACITY)).tolist():
        tb.reason[i] = "no_capacity: no decode replica could take the prefilled request (all down or drained)"


def _rejections(sim: Any, k: Kernel) -> None:
    """Each rejected request's reason."""
    wl, tb, RSN = sim.wl, sim.table, k.rq.RSN
    FIT, gof = k.st.rt.FIT, sim.groups.of_request
    rej = np.flatnonzero(tb.status == REJECTED)
    tot = (wl.prompt_tokens[rej] + wl.output_tokens[rej]).tolist()
    for q, i in enumerate(rej.tolist()):
        if RSN[i] == L.RS_POWER:
            tb.reason[i] = "power: new requests shed while the facility is over its supply limit"
        elif RSN[i] == L.RS_NO_CAPACITY:
            tb.reason[i] = "no_capacity: every replica is down, drained or not yet commissioned"
        elif RSN[i] == L.RS_NO_POOL:
            tb.reason[i] = f"no_pool_for_model: no pool serves {sim.request_model(i)}"
        else:
            tb.reason[i] = f"kv_capacity: needs {int(tot[q])} tokens of KV cache, a replica holds {int(FIT[gof[i]])}"
    tb.replica[rej] = -1


def _failures(sim: Any, k: Kernel, node_failed: dict) -> None:
    """Each failed request's reason, and what its client saw of a late delivery."""
    sc, wl, tb, RSN = sim.sc, sim.wl, sim.table, k.rq.RSN
    if sc.workload.timeout_s is not None:
        timeout = k.st.clk.timeout
        # a response delivered after the client left is a timeout too
        late = (tb.status == COMPLETED) & (tb.finish_s > wl.arrival_s + timeout)
        tb.status[late] = FAILED
        tb.finish_s[late] = wl.arrival_s[late] + timeout
        failed = (tb.status == FAILED) & (RSN != L.RS_NODE) & (RSN != L.RS_NO_CAPACITY)
        why = f"timeout: no response within {sc.workload.timeout_s:g} s"
        for i in np.flatnonzero(failed).tolist():
            tb.reason[i] = why
        # a first token the client never saw (sampled, or delivered after it left) is not recorded
        unseen = failed & ((tb.first_token_s == 0.0) | (tb.first_token_s > tb.finish_s))
        tb.first_token_s[unseen] = -1.0
    for i, (rid, tries) in node_failed.items():  # requests that failed with their node
        tb.reason[i] = (f"node_failure: replica {rid} failed and the request was re-queued {tries} times "
                        f"(retry_limit {sc.facility.failures.retry_limit})")
        tb.first_token_s[i] = -1.0  # as the per-step table: not recorded for a node failure


def _cut_at_end(k: Kernel, sim_time: float) -> None:
    """Each replica's time and energy up to the end of the run: a step running on past it cut
    (the horizon, or the last request's deadline while a cancelled request's step ran on), the
    rest counted up to it."""
    m, S, F, run = k.m, k.S, k.F, k.run
    for r in range(k.R):
        if S[r, L.ST] == L.STEP or (S[r, L.ST] == L.IDLE and F[r, L.EEND] > sim_time):
            over = F[r, L.EEND] - sim_time
            F[r, L.BUSY] -= over
            F[r, L.ESTEP] -= F[r, L.WSTEP] * over
            m.bin_energy(run.bins, run.G, sim_time, F[r, L.EEND], -F[r, L.WSTEP])
        else:  # at rest up to the end of the run
            idle_w = F[r, L.REST_W]
            F[r, L.EIDLE] += idle_w * (sim_time - F[r, L.IDLE_SINCE])
            m.bin_energy(run.bins, run.G, F[r, L.IDLE_SINCE], sim_time, idle_w)


def finish(sim: Any, k: Kernel, drv: Any, engine: str, wall0: float) -> Any:
    """The Result of a run that has ended (either driver): the request table's reasons and the
    client's view of late deliveries, the last step's time and energy cut at the end, the
    facility's ledger (drv: the facility host, None without a [facility]) or the energy bins'
    peak, the time series and the in-system counts."""
    from sim.engine.result import FacilityEvents, ReplicaInfo, Result
    from sim.facility.ledger import Ledger

    m, sc, wl, tb = k.m, sim.sc, sim.wl, sim.table
    S, F, run = k.S, k.F, k.run
    horizon = sc.run.horizon_s
    entered = tb.replica >= 0  # the arrivals routed (the table's replica may be cleared below)
    _rejections(sim, k)
    # the run ends with the last request to leave, seen when it happens: a late delivery is
    # recorded at its client's deadline but still ends the run when it is delivered
    gone = (tb.status == COMPLETED) | (tb.status == FAILED)
    t_last = float(tb.finish_s[gone].max()) if gone.any() else 0.0
    _failures(sim, k, drv.node_failed if drv is not None else {})
    if k.central:  # a shared queue routes to no replica: the table names the one that completed it
        tb.replica[:] = np.where(tb.status == COMPLETED, k.rq.RQ[:, L.OWN], -1)
    _placement(sim, k, k.rq.RSN)
    done = tb.status == COMPLETED
    left = done | (tb.status == FAILED)  # requests that left the system
    if horizon is None:
        sim_time = max(float(k.st.clk.Df[L.DF_NOW]), t_last)
    else:
        sim_time = float(horizon)
        # as the per-step table: first token and preemptions are recorded when a request leaves
        tb.first_token_s[~left] = -1.0
        tb.preemptions[~left] = 0
    _cut_at_end(k, sim_time)
    bins, bin_w = run.bins, float(run.G[BIN_W])
    if drv is not None:
        # the ledger has every power change in time order: energy, peak and time over the supply
        # as the per-step driver's ledger computes them
        led, events = drv.close(sim_time)
        if drv.autoscale is not None:
            drv.autoscale.close(sim_time)
        led.step_energy_j = float(F[:, L.ESTEP].sum() + F[:, L.EIDLE].sum())
        window = None
    else:
        led = Ledger(k.R, [0] * k.R, [1.0])
        led.now = sim_time
        led.energy_it_j = led.energy_fac_j = float(bins.sum())
        led.step_energy_j = float(F[:, L.ESTEP].sum() + F[:, L.EIDLE].sum())
        nb = int(math.ceil(sim_time / bin_w)) if sim_time > 0 else 0
        if nb:
            width = np.full(nb, bin_w)
            width[-1] = sim_time - (nb - 1) * bin_w
            led.peak_fac_w = float(np.max(bins[:nb] / np.maximum(width, 1e-12)))
        events = FacilityEvents(tents=list(sim.tent_names))
        window = bin_w
    ts = TimeSeries(run.ts_on)
    if run.ts_on:
        rows = int(run.GI[L.TS_N])
        ts.t_s.frombytes(run.tsf[:rows].tobytes())
        for c, col in ((L.TS_REPLICA, ts.replica), (L.TS_BATCH, ts.batch_size), (L.TS_KV, ts.kv_blocks_used),
                       (L.TS_QUEUE, ts.queue_len)):
            col.frombytes(run.tsi[:rows, c].astype(np.int32).tobytes())
        ts.busy.frombytes(run.tsi[:rows, L.TS_BUSY].astype(np.int8).tobytes())
    fin = tb.finish_s[left]
    fin.sort()
    sys_t, sys_n = m.in_system(wl.arrival_s[entered], fin)
    del fin
    infos = [ReplicaInfo(r, rep.pool.name, rep.info_blocks, float(F[r, L.BUSY]), int(S[r, L.HITT]),
                         int(S[r, L.ADMT]), int(S[r, L.THIT]), int(S[r, L.TOFF]), rep.block_bytes)
             for r, rep in enumerate(sim.replicas)]
    if k.closed and k.sent() < len(wl):  # closed-loop clients stopped (duration_s, the horizon): only what was sent
        wl, tb = wl.head(k.sent()), tb.head(k.sent())
        sim.wl, sim.table = wl, tb
    return Result(sc, wl, tb, ts, sys_t, sys_n, infos, sim_time, time.perf_counter() - wall0, engine=engine,
                  ledger=led, facility=events, power_peak_window_s=window,
                  autoscale=drv.autoscale if drv is not None else None)
