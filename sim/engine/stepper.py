"""The per-step driver: one SimPy process per replica, one event per batch step, over the one
replica kernel (sim/engine/kernel.py).

It is the driver to read, teach and debug with, and the one that runs policies written in plain
Python: a router's `choose` is called at each arrival, a scheduler plug-in's `plan` before each
step (over `CoreView`, the kernel's state of one replica). Every transition (queue order,
admission, paged KV, preemption, prefix caching, the step's time and power under its cap,
commit, cancel, evacuation) is the kernel's function, the very one the fast driver calls; the
two drivers differ only in when they call them. Each replica's process loops:
`commit` (or wake) -> `plan` -> `yield timeout(step)`, and sleeps on a wake-up event when there
is nothing to run. Arrivals, client deadlines and the facility are processes of the same
environment; ties at an instant follow sim/engine/events.py.
"""

from __future__ import annotations

import numbers
import time
from collections import deque
from typing import Any

import numpy as np
import simpy

from sim.errors import ScenarioError
from sim.engine.events import FACILITY, LATE, Later, delay_to
from sim.policies.routers import JSQ, make_router
from sim.registry import ROUTERS
from sim.policies.schedulers import BUILTIN, Plan

WAITING, PREFILL, DECODE, GONE = 0, 1, 2, -1  # a request's state as a scheduler plug-in sees it


class _Env(simpy.Environment):
    """An environment that brings the facility's ledger up to each facility event, and to the end
    of the run, before the facility's processes act on it (what the fast driver's barriers do)."""

    sync: Any = None
    end: Any = None

    def step(self) -> None:
        q = self._queue
        if self.sync is not None and q and (q[0][1] == FACILITY or q[0][3] is self.end):
            self.sync(q[0][0])
        super().step()


class RouterRequest:
    """What a router sees of an arriving request."""

    __slots__ = ("request_id", "arrival_s", "prompt_tokens", "output_tokens", "session", "priority")

    def __init__(self, i: int, arrival_s: float, prompt: int, output: int, session: int, priority: int) -> None:
        self.request_id, self.arrival_s, self.prompt_tokens, self.output_tokens = i, arrival_s, prompt, output
        self.session, self.priority = session, priority


class ReplicaView:
    """What a router sees of a replica: live, read-only figures from the kernel's state."""

    __slots__ = ("_k", "_m", "_spec", "index")

    def __init__(self, k: Any, spec: Any) -> None:
        self._k, self._m, self._spec, self.index = k, k.m, spec, spec.rid

    @property
    def pool(self) -> str:
        return self._spec.pool.name

    @property
    def hardware(self) -> Any:
        return self._spec.pool.hardware

    @property
    def queue_len(self) -> int:
        S, m = self._k.S, self._m
        return int(S[S[self.index, m.QROW], m.QLEN])

    @property
    def running(self) -> int:
        return int(self._k.S[self.index, self._m.NRUN])

    @property
    def free_kv_blocks(self) -> int:
        S, m = self._k.S, self._m
        return int(S[self.index, m.TOT] - S[self.index, m.USED])

    @property
    def outstanding_requests(self) -> int:
        return int(self._k.S[self.index, self._m.OUTREQ])

    @property
    def outstanding_tokens(self) -> int:
        return int(self._k.S[self.index, self._m.OUTTOK])

    @property
    def token_s(self) -> float:
        return float(self._k.F[self.index, self._m.TOKS])

    def cached_prefix_tokens(self, request: Any) -> int:
        """The request's prompt tokens this replica's prefix cache holds now."""
        k, m = self._k, self._m
        j = request.request_id
        hits = m._peek_hits(self.index, j, int(k.prompt[j] + k.RQ[j, m.GEN]), k.S, k.RQ, k.KC)[0]
        return int(hits * k.S[self.index, m.BS])


class RequestView:
    """A request as a scheduler plug-in sees it (read-only; change it through CoreView)."""

    __slots__ = ("_c", "idx")

    def __init__(self, core: "CoreView", i: int) -> None:
        self._c, self.idx = core, i

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RequestView) and other.idx == self.idx

    def __hash__(self) -> int:
        return self.idx

    @property
    def arrival(self) -> float:
        return float(self._c._k.arr[self.idx])

    @property
    def prompt(self) -> int:
        return int(self._c._k.prompt[self.idx])

    @property
    def output(self) -> int:
        return int(self._c._k.output[self.idx])

    @property
    def priority(self) -> int:
        return int(self._c._prio[self.idx]) if self._c._prio is not None else 0

    @property
    def state(self) -> int:
        m = self._c._m
        st = int(self._c._k.RQ[self.idx, m.RST])
        return {m.R_WAITING: WAITING, m.R_PREFILL: PREFILL, m.R_DECODE: DECODE}.get(st, GONE)

    @property
    def generated(self) -> int:
        """Output tokens produced so far."""
        c, m = self._c, self._c._m
        k, i = c._k, self.idx
        g = int(k.RQ[i, m.GEN])
        if k.RQ[i, m.RST] == m.R_DECODE:
            g += int(k.S[c.r, m.DIT] - (k.prompt[i] + g - 1 - k.RA[i]))
        return g

    @property
    def target(self) -> int:
        """Tokens to prefill: the prompt, plus the tokens generated before a preemption."""
        return self.prompt + int(self._c._k.RQ[self.idx, self._c._m.GEN])

    @property
    def done(self) -> int:
        """Tokens of `target` in KV (computed or prefix-cache hits)."""
        return int(self._c._k.RQ[self.idx, self._c._m.DONE])


class _Waiting:
    """The replica's queue as a scheduler sees it: its length and its head, `[0]`."""

    def __init__(self, core: "CoreView") -> None:
        self._c = core

    def __len__(self) -> int:
        c = self._c
        S, m = c._k.S, c._m
        return int(S[S[c.r, m.QROW], m.QLEN])

    def __bool__(self) -> bool:
        return len(self) > 0

    def __getitem__(self, k: int) -> RequestView:
        if k != 0 or not self:
            raise IndexError("a scheduler reads the head of the queue, [0], and only when it is not empty")
        c = self._c
        K, m = c._k, c._m
        S = K.S
        i = m._q_head(c.r, c.now, float(K.F[S[c.r, m.QROW], m.AGE]), S, K.QA, K.arr, K.RQ)
        return RequestView(c, int(i))


class CoreView:
    """One replica's kernel state as a scheduler plans over it (docs/policies.md): the queue,
    the running set, the KV cache and the transitions a plan may make. Every method is a kernel
    function, so a plug-in's plan keeps the kernel's invariants."""

    def __init__(self, drv: "StepDriver", r: int, now: float) -> None:
        self._d, self._k, self._m, self.r, self.now = drv, drv.k, drv.m, r, now
        self._prio = drv.prio
        self._grown = 0  # decoding sequences hold the block of this step (after grow_decodes)
        self.preempted_this_step = False
        self.waiting = _Waiting(self)

    # --- what a plan reads ---
    @property
    def block_size(self) -> int:
        return int(self._k.S[self.r, self._m.BS])

    @property
    def total_blocks(self) -> int:
        return int(self._k.S[self.r, self._m.TOT])

    @property
    def free_blocks(self) -> int:
        """Blocks an allocation can get: free ones and evictable cached ones."""
        S, m = self._k.S, self._m
        return int(S[self.r, m.TOT] - S[self.r, m.USED])

    @property
    def n_dec(self) -> int:
        return int(self._k.S[self.r, self._m.NDEC])

    @property
    def prefilling(self) -> list[RequestView]:
        """Requests admitted and still prefilling, in admission order."""
        K, m = self._k, self._m
        out = []
        j = int(K.S[self.r, m.PH])
        while j >= 0:
            out.append(RequestView(self, j))
            j = int(K.RQ[j, m.NXT])
        return out

    @property
    def running(self) -> dict[int, RequestView]:
        """Prefilling and decoding requests by index."""
        K, m = self._k, self._m
        out = {v.idx: v for v in self.prefilling}
        for k in range(int(K.S[self.r, m.FHLEN])):
            j = int(K.FH[self.r, k] & 0xFFFFFFFF)
            out[j] = RequestView(self, j)
        return out

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    def held(self, req: RequestView) -> int:
        """KV blocks the request holds (shared prefix blocks included)."""
        K, m = self._k, self._m
        if K.RQ[req.idx, m.RST] == m.R_DECODE:
            return self.blocks_for(int(K.RA[req.idx] + K.S[self.r, m.DIT]) + self._grown)
        return int(K.RQ[req.idx, m.HELD])

    def peek_hits(self, req: RequestView) -> tuple[int, int]:
        """(cached leading blocks of the request's prompt, how many of them are evictable now)."""
        K, m = self._k, self._m
        h, idle = m._peek_hits(self.r, req.idx, req.target, K.S, K.RQ, K.KC)
        return int(h), int(idle)

    # --- transitions ---
    def admit_with(self, req: RequestView, hits: int, need: int) -> None:
        """Admit the head of the queue with `hits` prefix-cache blocks and `need` new blocks."""
        K, m = self._k, self._m
        if need > self.free_blocks - self.peek_hits(req)[1]:
            raise ScenarioError("pools.scheduler.policy", f"plan() admitted request {req.idx} with {need} blocks "
                                f"when {self.free_blocks} can be allocated", "check free_blocks before admit_with")
        m._admit(self.r, req.idx, hits, need, K.S, K.RQ, K.QA, K.KC, K.prompt)

    def take(self, req: RequestView, n: int) -> None:
        """Give a prefilling request n more blocks (evicting cached blocks if needed)."""
        K, m = self._k, self._m
        if n <= 0:
            return
        m._take(self.r, n, K.S, K.KC)
        K.RQ[req.idx, m.HELD] += n

    def preempt(self, req: RequestView) -> None:
        """Recompute preemption: the request's KV is freed and it rejoins the queue's front."""
        K, m = self._k, self._m
        m._preempt(self.r, req.idx, self._grown, K.S, K.RQ, K.RA, K.FH, K.CNT, K.PRE, K.prompt, K.QA, K.KC)
        self.preempted_this_step = True

    def ensure_blocks(self, req: RequestView, need: int) -> bool:
        """Make `need` blocks available, preempting the kernel's victims (latest arrival; lowest
        class first under the priority queue). False if `req` itself was preempted."""
        K, m = self._k, self._m
        while self.free_blocks < need:
            v = int(m._victim(self.r, K.S, K.RQ, K.FH, K.QA))
            self.preempt(RequestView(self, v))
            if v == req.idx:
                return False
        return True

    def grow_decodes(self) -> None:
        """Before a decode step: a block for every sequence whose next token opens one
        (preempting when the cache is full)."""
        K, m = self._k, self._m
        if m._grow(self.r, K.S, K.RQ, K.RA, K.FH, K.CNT, K.PRE, K.prompt, K.tmp, K.QA, K.KC):
            self.preempted_this_step = True
        self._grown = 1

    def plan_builtin(self, sched: Any) -> Any:
        """The kernel's own planner for this replica, with the scheduler's current batch limits."""
        K, m = self._k, self._m
        S, r = K.S, self.r
        old = int(S[r, m.MAXB]), int(S[r, m.MAXT])
        S[r, m.MAXB] = min(int(sched.max_batch_size), K.CH.shape[1])
        S[r, m.MAXT] = int(sched.max_batched_tokens)
        try:
            nch, ndec, _stable = m._plan_policy(r, self.now, S, K.F, K.RQ, K.RA, K.CH, K.FH, K.CNT, K.PRE,
                                                K.prompt, K.output, K.tmp, K.QA, K.arr, K.KC)
        finally:
            S[r, m.MAXB], S[r, m.MAXT] = old
        self._planned = (int(nch), int(ndec))
        return BUILTIN


class StepDriver:
    """Runs a Simulation's kernel with SimPy: arrivals, replicas, deadlines, the facility."""

    def __init__(self, sim: Any, k: Any) -> None:
        self.sim, self.k, self.m = sim, k, k.m
        self.env = _Env()
        R = k.S.shape[0]
        self.specs = sim.replicas
        self.views = [ReplicaView(k, spec) for spec in self.specs]
        # routing groups: the views a router chooses among for a request of each group
        self.group_views = [[self.views[r] for r in members.tolist()] for members in sim.groups.replicas]
        self.group = sim.groups.of_request.tolist()
        # disaggregation: a prefilled request's decode replica, by router.decode_policy
        self.pd = sim.groups.disaggregated
        self.decode_router = make_router(sim.sc.router.decode_policy) if self.pd else None
        self.wakes: list[simpy.Event | None] = [None] * R
        self.procs: list[Any] = [None] * R
        self.stepping = [False] * R
        self.prio = np.asarray(sim._prio) if sim._prio is not None else None
        self.router = sim.router
        self._fallback = JSQ()  # while some replicas are unavailable (draws nothing)
        # ... unless the router reads a load (kernel _keeps): it chooses among the available then
        keeps = getattr(self.m._keeps, "py_func", self.m._keeps)
        pol = sim.sc.router.policy  # (a plug-in chooses among the available replicas too)
        self._keeps = ROUTERS.is_plugin(pol) or (pol in ROUTERS.compiled_names() and keeps(ROUTERS.code(pol)))
        self._decode_keeps = self.pd and keeps(ROUTERS.code(sim.sc.router.decode_policy))
        self.deadlines: deque = deque()
        self._dl_wake: simpy.Event | None = None
        self.arrivals_done = False
        self.fac: Any = None  # the facility host (sim/engine/fast_facility.py), with a [facility]

    # --- small kernel calls ---
    def poke(self, r: int) -> None:
        """Replica r was woken in the kernel (a request reached it, a repair...): resume its process."""
        ev = self.wakes[r]
        if ev is not None and not ev.triggered and self.k.S[r, self.m.ST] == self.m.WAKE:
            ev.succeed()

    def _room(self) -> None:
        """Room in the growing buffers for the rows a plan or a sleep writes."""
        k, m = self.k, self.m
        tsf, _tsi, PW = k.ts
        if m._buffers_full(k.ts_on, k.GI, tsf, PW):
            k.ts = m._grow_ts(k.ts, k.GI)

    def _maybe_end(self) -> None:
        """With a facility: the run ends when every request has arrived and left."""
        fac = self.fac
        if fac is not None and self.arrivals_done and not fac.end.triggered and fac._ended() is not None:
            fac.end.succeed()

    # --- processes ---
    def _replica(self, r: int):
        env, k, m = self.env, self.k, self.m
        S, F, RQ, RA, CH, FH, CNT, PFIRST, PDONE = k.S, k.F, k.RQ, k.RA, k.CH, k.FH, k.CNT, k.PFIRST, k.PDONE
        FIRST, FIN, STATUS, START, prompt, output, KC = k.FIRST, k.FIN, k.STATUS, k.START, k.prompt, k.output, k.KC
        PRE, PC, G, GI, tmp, QA, arr, SV, ts_on = k.PRE, k.PC, k.G, k.GI, k.tmp, k.QA, k.arr, k.SV, k.ts_on
        sched = self.specs[r].scheduler
        IDLE, STEP = m.IDLE, m.STEP
        while True:
            try:
                if S[r, m.ST] == IDLE:
                    ev = self.wakes[r] = env.event()
                    yield ev
                    self.wakes[r] = None
                    continue
                now = env.now
                if S[r, m.ST] == STEP:
                    m._commit(r, now, S, RQ, RA, CH, FH, CNT, PFIRST, PDONE, FIRST, FIN, STATUS, prompt, output, KC)
                    if S[r, m.HOH] >= 0:
                        self.hand_off(r)
                    self._maybe_end()
                else:  # woken
                    m._idle_until(r, now, S, F, k.bins, G)
                self._room()
                tsf, tsi, PW = k.ts
                if sched is None:
                    go = m._plan(r, now, S, F, RQ, RA, CH, FH, CNT, PRE, PC, prompt, output, START, k.bins, G, tsf,
                                 tsi, PW, GI, ts_on, tmp, QA, arr, KC, SV)
                else:
                    go = self._plan_plugin(r, now, sched)
                if go == 0:
                    m._sleep(r, now, S, F, RQ, PFIRST, PDONE, FIRST, FIN, STATUS, prompt, output, tsf, tsi, PW, GI, ts_on)
                    if S[r, m.HOH] >= 0:
                        self.hand_off(r)
                    self._maybe_end()
                    continue
                self.stepping[r] = True
                yield env.timeout(F[r, m.DTF])
                self.stepping[r] = False
            except simpy.Interrupt:
                self.stepping[r] = False  # a node failure cut the step; the kernel evacuated the replica

    def _plan_plugin(self, r: int, now: float, sched: Any) -> int:
        """A scheduler plug-in plans the step; the kernel starts it."""
        k, m = self.k, self.m
        core = CoreView(self, r, now)
        plan = sched.plan(core)
        k.S[r, m.QBLK] = 0
        if plan is None:
            return 0
        if plan is BUILTIN:
            nch, ndec = core._planned
        elif isinstance(plan, Plan):
            nch, ndec = len(plan.chunks), int(plan.n_dec)
            if nch > k.CH.shape[1]:
                raise ScenarioError("pools.scheduler.policy", f"plan() returned {nch} prefill chunks, more than "
                                    f"max_batch_size {k.CH.shape[1]}", "plan at most max_batch_size sequences")
            if ndec not in (0, core.n_dec):
                raise ScenarioError("pools.scheduler.policy", f"plan() returned n_dec={ndec} with {core.n_dec} "
                                    "decoding", "return n_dec=core.n_dec (decode all) or 0 (a prefill-only step)")
            for c, (req, tok) in enumerate(plan.chunks):
                k.CH[r, c, 0] = req.idx if isinstance(req, RequestView) else int(req)
                k.CH[r, c, 1] = int(tok)
        else:
            raise ScenarioError("pools.scheduler.policy", f"plan() returned {type(plan).__name__}",
                                "return a sim.policies.schedulers.Plan or None")
        if nch == 0 and ndec == 0:
            return 0
        tsf, tsi, PW = k.ts
        return int(m._launch(r, now, nch, ndec, k.S, k.F, k.RQ, k.CH, k.PC, k.START, k.bins, k.G, tsf, tsi, PW,
                             k.GI, k.ts_on))

    def _arrivals(self):
        env, k, m = self.env, self.k, self.m
        arr = k.arr
        n = len(arr)
        prompt, output = k.prompt.tolist(), k.output.tolist()
        sess = self.sim.route_session
        sess = sess.tolist() if sess is not None else None
        prio = self.prio.tolist() if self.prio is not None else None
        d0, fit = k.d0, k.grp[0].tolist()
        group = self.group
        GI, STATUS, RSN, RQ = k.GI, k.STATUS, k.RSN, k.RQ
        finite = k.timeout < np.inf
        report = self.sim.report
        tick = max(1, n // 200)
        for j, t in enumerate(arr.tolist()):
            if j % tick == 0:
                report.progress(j, n)
            if t + d0 > env.now:
                yield env.timeout(t + d0 - env.now)
            k.Df[0] = env.now
            k.D[0] = j + 1
            if GI[m.SHED]:
                STATUS[j] = m.REJECTED
                RSN[j] = m.RS_POWER
                continue
            if group[j] < 0:
                STATUS[j] = m.REJECTED
                RSN[j] = m.RS_NO_POOL
                continue
            if prompt[j] + output[j] > fit[group[j]]:
                STATUS[j] = m.REJECTED
                continue
            if finite:
                self.deadlines.append(j)
                if self._dl_wake is not None and not self._dl_wake.triggered:
                    self._dl_wake.succeed()
            req = RouterRequest(j, t, prompt[j], output[j], sess[j] if sess is not None else -1,
                                prio[j] if prio is not None else 0)
            if not self._route(req):
                RQ[j, m.RST] = m.R_GONE  # its deadline finds it gone
                STATUS[j] = m.REJECTED
                RSN[j] = m.RS_NO_CAPACITY
        self.arrivals_done = True
        self._maybe_end()
        report.progress(n, n, "arrivals done; draining")

    def _route(self, req: RouterRequest) -> bool:
        """Send a request to a replica (or the shared queue). False if none can take it."""
        k, m = self.k, self.m
        S, j = k.S, req.request_id
        R = S.shape[0]
        nav = int(k.GI[m.NAV])
        if nav == 0:
            return False
        if k.central:
            k.REP[j] = 0  # entered (the table names the replica that completes it, at the end)
            self.to_shared(j)
            return True
        mine = self.group_views[self.group[j]]  # the replicas serving the request's model
        if nav < R:  # some replicas are down, drained or commissioning: the rest (kernel _keeps)
            views = [v for v in mine if not (S[v.index, m.DOWN] or S[v.index, m.DRN])]
            if not views:
                return False
            target = views[(self.router if self._keeps else self._fallback).choose(req, views)].index
        elif len(mine) == 1:
            target = mine[0].index
        else:
            c = self.router.choose(req, mine)
            if not (isinstance(c, numbers.Integral) and not isinstance(c, bool) and 0 <= c < len(mine)):
                raise ScenarioError("router.policy", f"{self.sim.sc.router.policy}: choose() returned {c!r} for "
                                    f"{len(mine)} replicas", "return an int index in range(len(replicas))")
            target = mine[int(c)].index
        S[target, m.OUTTOK] += req.prompt_tokens + req.output_tokens
        S[target, m.OUTREQ] += 1
        k.REP[j] = target
        delay = self.specs[target].delay_s - k.d0
        if delay > 0:  # a slower front end than the fastest pool's
            k.RQ[j, m.RST] = m.R_TRANSIT
            self.env.timeout(delay).callbacks.append(lambda _e, t=target, i=j: self.deliver(t, i))
        else:
            self.deliver(target, j)
        return True

    # --- disaggregation (the compiled driver's _pd_until, event by event) ---
    def hand_off(self, r: int) -> None:
        """Prefill replica r's prefilled requests (its hand-off list, in order), now: each is
        routed to a decode replica and its KV sent; one that wanted a single token is done."""
        k, m = self.k, self.m
        S, RQ = k.S, k.RQ
        out0, prep = k.grp[7], k.grp[8]
        now = self.env.now
        i = int(S[r, m.HOH])
        S[r, m.HOH] = S[r, m.HOT] = -1
        while i >= 0:
            nxt = int(RQ[i, m.NXT])
            prep[i] = r
            if out0[i] <= 1:
                k.STATUS[i] = m.COMPLETED
            else:
                d = self._decode_target(i, int(k.grp[6][RQ[i, m.QG]]))
                if d >= 0:
                    te = float(m._begin_transfer(i, d, now, S, k.F, RQ, k.REP, k.prompt, k.output, k.grp))
                    self.env.timeout(delay_to(now, te)).callbacks.append(lambda _e, j=i: self._arrive(j))
            i = nxt

    def _decode_target(self, j: int, dg: int) -> int:
        """The decode replica for request j in decode group dg, now; -1: none can take it (j fails)."""
        k, m = self.k, self.m
        S = k.S
        views = self.group_views[dg]
        req = RouterRequest(j, float(k.arr[j]), int(k.prompt[j]), int(k.output[j]), -1, 0)
        if int(k.GI[m.NAV]) < S.shape[0]:
            views = [v for v in views if not (S[v.index, m.DOWN] or S[v.index, m.DRN])]
            if views:
                return views[(self.decode_router if self._decode_keeps else self._fallback).choose(req, views)].index
        elif len(views) == 1:
            return views[0].index
        elif views:
            return views[self.decode_router.choose(req, views)].index
        k.STATUS[j] = m.FAILED
        k.RSN[j] = m.RS_NO_CAPACITY
        k.FIN[j] = self.env.now
        k.RQ[j, m.RST] = m.R_GONE
        return -1

    def _arrive(self, j: int) -> None:
        """Request j's KV has reached its decode replica: it joins the queue (re-routed at once
        if that replica went down or was drained on the way)."""
        k, m = self.k, self.m
        if k.RQ[j, m.RST] != m.R_TRANSIT:
            return  # its client gave up on the way
        d = int(k.REP[j])
        if k.S[d, m.DOWN] or k.S[d, m.DRN]:
            k.S[d, m.OUTREQ] -= 1
            k.S[d, m.OUTTOK] -= int(k.prompt[j] + k.output[j])
            d = self._decode_target(j, int(k.RQ[j, m.QG]))
            if d < 0:
                self._maybe_end()
                return
            k.S[d, m.OUTTOK] += int(k.prompt[j] + k.output[j])
            k.S[d, m.OUTREQ] += 1
            k.REP[j] = d
        self.deliver(d, j)

    def deliver(self, target: int, j: int) -> None:
        """Request j reaches replica `target`'s queue now."""
        self.k.enqueue(target, j, self.env.now)
        self.poke(target)

    def to_shared(self, j: int) -> None:
        """central_queue: request j joins the shared queue; the replica it woke resumes."""
        r = self.k.to_shared(j, self.env.now)
        if r >= 0:
            self.poke(r)

    def _deadline_proc(self):
        """Each client gives up at its deadline: the request is cancelled at that instant wherever
        it is (a step in flight still runs) and fails with reason timeout; deadlines at an instant
        come after its step ends and arrivals (LATE)."""
        env, k, m = self.env, self.k, self.m
        dl, arr, timeout = self.deadlines, k.arr, k.timeout
        while True:
            if not dl:
                if self.arrivals_done:
                    return
                self._dl_wake = env.event()
                yield self._dl_wake
                continue
            j = dl[0]
            t = arr[j] + timeout
            if t > env.now:
                yield Later(env, delay_to(env.now, t), LATE)
                continue
            dl.popleft()
            if k.STATUS[j] != m.REJECTED and k.RQ[j, m.RST] != m.R_GONE:
                r = int(k.REP[j])
                if k.central:
                    r = int(k.RQ[j, m.OWN]) if k.RQ[j, m.RST] != m.R_WAITING else 0
                m._cancel(r, j, k.S, k.F, k.RQ, k.RA, k.FH, k.CNT, k.QA, k.prompt, k.output, k.KC)
                k.STATUS[j] = m.FAILED
                k.FIN[j] = t
                self._maybe_end()

    # --- the facility's hooks (sim/engine/fast_facility.py) ---
    def on_fail(self, r: int) -> None:
        """Replica r's node failed (the kernel evacuated it): its step in flight is cut."""
        p = self.procs[r]
        if p is not None and p.is_alive and self.stepping[r]:
            p.interrupt("failure")
        if self.k.S[r, self.m.HOH] >= 0:  # its lagged output, delivered as it failed
            self.hand_off(r)

    def run(self) -> None:
        env, k = self.env, self.k
        for r in range(len(self.specs)):
            self.procs[r] = env.process(self._replica(r))
        if self.sim.fac is not None:
            from sim.engine.fast_facility import FacilityDriver
            from sim.engine.facility_procs import start_facility

            fac = self.fac = FacilityDriver(self.sim, k, host=self)
            for r in range(len(self.specs)):  # every replica at rest power from 0
                fac.ledger.set_power(r, float(k.F[r, self.m.REST_W]), 0.0)
            env.sync, env.end = fac._walk, fac.end
            start_facility(fac)
        env.process(self._arrivals())
        if k.timeout < np.inf:
            env.process(self._deadline_proc())
        horizon = self.sim.sc.run.horizon_s
        if horizon is not None:
            env.run(until=horizon)
        elif self.fac is not None:
            env.run(until=self.fac.end)  # (the facility's processes would run on)
        else:
            env.run()


def run(sim: Any) -> Any:
    """Run a Simulation (sim/engine/simulation.py) on the per-step driver; its Result."""
    from sim.engine import compiled

    wall0 = time.perf_counter()
    k = compiled.prepare(sim, compiled.kernel_module(sim))
    drv = StepDriver(sim, k)
    drv.run()
    return compiled.finish(sim, k, float(k.Df[0]), drv.fac, "simpy", wall0)
