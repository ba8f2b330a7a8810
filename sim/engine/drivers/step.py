"""The per-step driver: one SimPy process per replica, one event per batch step, over the one
replica kernel (sim/engine/kernel/).

It is the driver to read, teach and debug with, and the one that runs policies written in plain
Python: a router plug-in's `choose` is called at each arrival, a scheduler plug-in's `plan`
before each step (over `CoreView`, sim/engine/views.py). Every transition (queue order,
admission, paged KV, preemption, prefix caching, the step's time and power under its cap,
commit, cancel, evacuation), every built-in router's decision and every hand-off is the kernel's
function, the very one the fast driver calls; the two drivers differ only in when they call
them. Each replica's process loops: `commit` (or wake) -> `plan` -> `yield timeout(step)`, and
sleeps on a wake-up event when there is nothing to run. Arrivals, client deadlines and the
facility are processes of the same environment; ties at an instant follow sim/engine/events.py.
"""

from __future__ import annotations

import math
import numbers
import time
from collections import deque
from typing import Any, Generator

import numpy as np
import simpy

from sim.engine.arrays import Kernel, finish, prepare
from sim.engine.compilation import kernel_for
from sim.engine.events import CLIENT, FACILITY, LATE, Later, delay_to, then
from sim.engine.kernel.layout import (DOWN, DRN, DTF, FIT_OK, HOH, IDLE, NAV, OWN, R_GONE, R_WAITING, REST_W,
                                      RS_NO_CAPACITY, RST, ST, STEP, WAKE)
from sim.engine.recorder import REJECTED
from sim.engine.views import CoreView, ReplicaView, RequestView, RouterRequest
from sim.errors import ScenarioError
from sim.policies.interfaces import BUILTIN, Plan


def _checked_chunks(chunks: Any, core: CoreView) -> list[tuple[int, int]]:
    """A scheduler plug-in's prefill chunks, refused (one line) unless each names a request
    prefilling on this replica, once, with a whole number of tokens from 1 to what it has left
    to prefill: impossible work is never handed to the kernel (which would loop or crash)."""
    where = "pools.scheduler.policy"
    pre = {v.idx: v for v in core.prefilling}
    out, seen = [], set()
    for req, tok in chunks:
        i = req.idx if isinstance(req, RequestView) else req
        if isinstance(i, bool) or not isinstance(i, numbers.Integral) or int(i) not in pre:
            raise ScenarioError(where, f"plan() names request {i!r}, which is not prefilling on replica {core.r}",
                                "plan chunks only for core.prefilling (admit with admit_with first)")
        i = int(i)
        if i in seen:
            raise ScenarioError(where, f"plan() gives request {i} two chunks in one step", "one chunk per request")
        seen.add(i)
        left = pre[i].target - pre[i].done
        if isinstance(tok, bool) or not isinstance(tok, numbers.Integral) or not 1 <= int(tok) <= left:
            raise ScenarioError(where, f"plan() gives request {i} a chunk of {tok!r} tokens; it has {left} left to "
                                "prefill", f"give a whole number from 1 to {left}")
        out.append((i, int(tok)))
    return out


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


class StepDriver:
    """Runs a Simulation's kernel with SimPy: arrivals, replicas, deadlines, the facility."""

    def __init__(self, sim: Any, k: Kernel) -> None:
        self.sim, self.k, self.m = sim, k, k.m
        self.env = _Env()
        R = k.R
        self.specs = sim.replicas
        self.views = [ReplicaView(k, spec) for spec in self.specs]
        # routing groups: the views a router plug-in chooses among for a request of each group
        self.group_views = [[self.views[r] for r in members.tolist()] for members in sim.groups.replicas]
        self.group = sim.groups.of_request.tolist()
        self.wakes: list[simpy.Event | None] = [None] * R
        self.procs: list[Any] = [None] * R
        self.stepping = [False] * R
        self.prio = np.asarray(sim._prio) if sim._prio is not None else None
        self.router = sim.router
        self.plugin_router = k.st.rt.router < 0 and not k.central  # a router in plain Python (its choose)
        self.deadlines: deque = deque()
        self._dl_wake: simpy.Event | None = None
        self.arrivals_done = False
        self.fac: Any = None  # the facility host (sim/engine/drivers/facility.py), with a [facility]
        self.closed = k.closed  # closed-loop clients send the requests
        self._sent = 0  # ... requests sent so far
        self._send_at = math.inf  # ... the earliest send scheduled
        self._lists: tuple = ()

    # --- small kernel calls ---
    def poke(self, r: int) -> None:
        """Replica r was woken in the kernel (a request reached it, a repair...): resume its process."""
        ev = self.wakes[r]
        if ev is not None and not ev.triggered and self.k.S[r, ST] == WAKE:
            ev.succeed()

    def _maybe_end(self) -> None:
        """With a facility: the run ends when every request has arrived and left. Closed-loop
        clients whose requests ended send their next (each transition that ends a request
        comes through here)."""
        if self.closed:
            self._clients_poll()
            if not self.arrivals_done and self.k.sending_over():
                self.arrivals_done = True
                if self._dl_wake is not None and not self._dl_wake.triggered:
                    self._dl_wake.succeed()
        fac = self.fac
        if fac is not None and self.arrivals_done and not fac.end.triggered and fac._ended() is not None:
            fac.end.succeed()

    # --- processes ---
    def _replica(self, r: int) -> Generator[Any, Any, None]:
        env, k, m = self.env, self.k, self.m
        sched = self.specs[r].scheduler
        while True:
            try:
                if k.S[r, ST] == IDLE:
                    ev = self.wakes[r] = env.event()
                    yield ev
                    self.wakes[r] = None
                    continue
                now = env.now
                if k.S[r, ST] == STEP:
                    k.room()  # (the prefix index: room for the blocks the step publishes)
                    m.commit(r, now, k.rp, k.rq)
                    if k.S[r, HOH] >= 0:
                        self.hand_off(r)
                    self._maybe_end()
                else:  # woken
                    m.idle_until(r, now, k.F, k.run)
                k.room()
                go = m.plan(r, now, k.rp, k.rq, k.run) if sched is None else self._plan_plugin(r, now, sched)
                if go == 0:
                    m.sleep(r, now, k.rp, k.rq, k.run)
                    if k.S[r, HOH] >= 0:
                        self.hand_off(r)
                    self._maybe_end()
                    continue
                self.stepping[r] = True
                yield env.timeout(k.F[r, DTF])
                self.stepping[r] = False
            except simpy.Interrupt:
                self.stepping[r] = False  # a node failure cut the step; the kernel evacuated the replica

    def _plan_plugin(self, r: int, now: float, sched: Any) -> int:
        """A scheduler plug-in plans the step; the kernel starts it."""
        k, m = self.k, self.m
        core = CoreView(k, self.prio, r, now)
        plan = sched.plan(core)
        k.unblock(r)
        if plan is None:
            return 0
        if plan is BUILTIN:
            nch, ndec = core._planned
        elif isinstance(plan, Plan):
            nch, ndec = len(plan.chunks), int(plan.n_dec)
            if nch > k.rp.CH.shape[1]:
                raise ScenarioError("pools.scheduler.policy", f"plan() returned {nch} prefill chunks, more than "
                                    f"max_batch_size {k.rp.CH.shape[1]}", "plan at most max_batch_size sequences")
            if ndec not in (0, core.n_dec):
                raise ScenarioError("pools.scheduler.policy", f"plan() returned n_dec={ndec} with {core.n_dec} "
                                    "decoding", "return n_dec=core.n_dec (decode all) or 0 (a prefill-only step)")
            for c, (i, tok) in enumerate(_checked_chunks(plan.chunks, core)):
                k.set_chunk(r, c, i, tok)
        else:
            raise ScenarioError("pools.scheduler.policy", f"plan() returned {type(plan).__name__}",
                                "return a sim.policies.schedulers.Plan or None")
        if nch == 0 and ndec == 0:
            return 0
        return int(m.launch(r, now, nch, ndec, k.rp, k.rq, k.run))

    def _arrivals(self) -> Generator[Any, Any, None]:
        env, k = self.env, self.k
        arr = k.rq.arr
        n = len(arr)
        prompt, output = k.rq.prompt.tolist(), k.rq.output.tolist()
        sess = self.sim.route_session
        sess = sess.tolist() if sess is not None else None
        prio = self.prio.tolist() if self.prio is not None else None
        d0 = k.st.clk.d0
        finite = k.st.clk.timeout < np.inf
        report = self.sim.report
        tick = max(1, n // 200)
        for j, t in enumerate(arr.tolist()):
            if j % tick == 0:
                report.progress(j, n)
            if t + d0 > env.now:
                yield env.timeout(t + d0 - env.now)
            self._arrive_request(j, t, prompt, output, sess, prio, finite)
        self.arrivals_done = True
        self._maybe_end()
        report.progress(n, n, "arrivals done; draining")

    def _arrive_request(self, j: int, t: float, prompt: list, output: list, sess: list | None, prio: list | None,
                        finite: bool) -> None:
        """Request j (sent at t) reaches the router now: turned away, or routed."""
        k, now = self.k, self.env.now
        k.arrived(j, now)
        why = self.m.arrival_check(j, k.st)  # shed, no pool serves its model, too long for its group
        if why != FIT_OK:
            k.reject(j, why, now)
            return
        if finite:
            self.deadlines.append(j)
            if self._dl_wake is not None and not self._dl_wake.triggered:
                self._dl_wake.succeed()
        req = RouterRequest(j, t, prompt[j], output[j], sess[j] if sess is not None else -1,
                            prio[j] if prio is not None else 0)
        if not self._route(req):
            k.gone(j)  # its deadline finds it gone
            k.reject(j, RS_NO_CAPACITY, now)

    # --- closed-loop clients (sim/engine/kernel/clients.py: the same rules) ---
    def _clients_poll(self) -> None:
        """A client may be ready to send sooner than the send scheduled: schedule its send
        (CLIENT priority: after the instant's step ends and wake-ups, before its deadlines)."""
        k = self.k
        rq = k.rq
        if not self.closed or self._sent >= len(rq.arr) or rq.CN[0] == 0 or rq.CK[0] >= k.st.clk.stop:
            return
        t = float(rq.CK[0]) + k.st.clk.d0
        if t < self._send_at:
            self._send_at = t
            then(Later(self.env, delay_to(self.env.now, t), CLIENT), self._clients_send, t)

    def _clients_send(self, t: float) -> None:
        """Every client ready to send by now sends (in order of its heap), as one batch."""
        if t == self._send_at:
            self._send_at = math.inf
        k, m = self.k, self.m
        rq, n, d0, stop, now = k.rq, len(k.rq.arr), k.st.clk.d0, k.st.clk.stop, self.env.now
        finite = k.st.clk.timeout < np.inf
        while self._sent < n and rq.CN[0] > 0 and rq.CK[0] < stop and rq.CK[0] + d0 <= now:
            j = self._sent
            t_send = float(m.pop_client(rq, j))
            self._sent += 1
            self._arrive_request(j, t_send, self._lists[0], self._lists[1], self._lists[2], self._lists[3], finite)
        if self._sent % max(1, n // 200) == 0:
            self.sim.report.progress(self._sent, n)
        self._maybe_end()

    def _route(self, req: RouterRequest) -> bool:
        """Send a request to a replica (or the shared queue). False if none can take it."""
        k = self.k
        j = req.request_id
        if int(k.run.GI[NAV]) == 0:
            return False
        if k.central:
            self.to_shared(j)
            return True
        if not self.plugin_router:
            target = int(self.m.route_current(j, k.st))  # the kernel's router, over current replicas
            if target < 0:
                return False
        else:
            target = self._plugin_choice(req)
            if target < 0:
                return False
        k.assign(target, j)
        delay = self.specs[target].delay_s - k.st.clk.d0
        if delay > 0:  # a slower front end than the fastest pool's
            k.in_transit(j)
            then(self.env.timeout(delay), self.deliver, target, j)
        else:
            self.deliver(target, j)
        return True

    def _plugin_choice(self, req: RouterRequest) -> int:
        """A router plug-in's choice among the replicas of the request's group (those available,
        while some are down, drained or commissioning); -1: none is."""
        S = self.k.S
        mine = self.group_views[self.group[req.request_id]]  # the replicas serving the request's model
        if self.k.fb:
            mine = [v for v in mine if not (S[v.index, DOWN] or S[v.index, DRN])]
            if not mine:
                return -1
        elif len(mine) == 1:
            return mine[0].index
        c = self.router.choose(req, mine)
        if not (isinstance(c, numbers.Integral) and not isinstance(c, bool) and 0 <= int(c) < len(mine)):
            raise ScenarioError("router.policy", f"{self.sim.sc.router.policy}: choose() returned {c!r} for "
                                f"{len(mine)} replicas", "return an int index in range(len(replicas))")
        return mine[int(c)].index

    # --- disaggregation (the kernel's hand-off functions, at this driver's events) ---
    def hand_off(self, r: int) -> None:
        """Prefill replica r's prefilled requests (its hand-off list, in order), now: each is
        routed to a decode replica and its KV sent; one that wanted a single token is done."""
        k, m, now = self.k, self.m, self.env.now
        for i in k.take_handoffs(r):
            if not m.prefilled(i, r, k.st):
                continue
            d = int(m.handoff_route(i, now, k.st, k.fb, True))
            if d >= 0:
                te = float(m.begin_transfer(i, d, now, k.st))
                then(self.env.timeout(delay_to(now, te)), self._arrive, i)

    def _arrive(self, j: int) -> None:
        """Request j's KV has reached its decode replica: it joins the queue (re-routed at once
        if that replica went down or was drained on the way)."""
        k = self.k
        d = int(self.m.handoff_arrive(j, self.env.now, k.st, k.fb, True))
        if d < 0:
            self._maybe_end()
            return
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

    def _deadline_proc(self) -> Generator[Any, Any, None]:
        """Each client gives up at its deadline: the request is cancelled at that instant wherever
        it is (a step in flight still runs) and fails with reason timeout; deadlines at an instant
        come after its step ends and arrivals (LATE)."""
        env, k = self.env, self.k
        dl, arr, timeout = self.deadlines, k.rq.arr, k.st.clk.timeout
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
            RQ = k.rq.RQ
            if k.rq.STATUS[j] != REJECTED and RQ[j, RST] != R_GONE:
                r = int(k.rq.REP[j])
                if k.central:
                    r = int(RQ[j, OWN]) if RQ[j, RST] != R_WAITING else 0
                self.m.give_up(r, j, t, k.rp, k.rq)
                self._maybe_end()

    # --- the facility's hooks (sim/engine/drivers/facility.py) ---
    def on_fail(self, r: int) -> None:
        """Replica r's node failed (the kernel evacuated it): its step in flight is cut."""
        p = self.procs[r]
        if p is not None and p.is_alive and self.stepping[r]:
            p.interrupt("failure")
        if self.k.S[r, HOH] >= 0:  # its lagged output, delivered as it failed
            self.hand_off(r)

    def run(self) -> None:
        env, k = self.env, self.k
        for r in range(len(self.specs)):
            self.procs[r] = env.process(self._replica(r))
        if self.sim.fac is not None:
            from sim.engine.drivers.facility import FacilityDriver
            from sim.engine.facility_procs import start_facility

            fac = self.fac = FacilityDriver(self.sim, k, host=self)
            for r in range(len(self.specs)):  # every replica at rest power from 0
                fac.ledger.set_power(r, float(k.F[r, REST_W]), 0.0)
            env.sync, env.end = fac._walk, fac.end
            start_facility(fac)
        if self.closed:
            sess = self.sim.route_session
            self._lists = (k.rq.prompt.tolist(), k.rq.output.tolist(), sess.tolist() if sess is not None else None,
                           self.prio.tolist() if self.prio is not None else None)
            self._clients_poll()
        else:
            env.process(self._arrivals())
        if k.st.clk.timeout < np.inf:
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
    wall0 = time.perf_counter()
    k = prepare(sim, kernel_for(len(sim.wl), sim.report))
    drv = StepDriver(sim, k)
    drv.run()
    return finish(sim, k, drv.fac, "simpy", wall0)

