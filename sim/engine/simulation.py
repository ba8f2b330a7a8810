"""Assembles and runs one simulation: workload -> router -> replicas (SimPy) -> recorder.

This is the only module besides the replica loop that touches SimPy. One SimPy process feeds
arrivals; one process per replica runs batch iterations (one timeout per step) and sleeps on a
wake-up event when idle (no polling).
"""

from __future__ import annotations

import numbers
import time
from array import array
from collections import deque
from typing import Any

import numpy as np
import simpy

from sim.errors import ScenarioError
from sim.registry import SCHEDULERS, Registry
from sim.scenario.config import PoolConfig, Scenario
from sim.perf.roofline import PerfModel
from sim.engine.build import Model, build
from sim.engine.events import FACILITY, LATE, Later, delay_to
from sim.engine.result import FacilityEvents, ReplicaInfo, Result
from sim.engine.recorder import COMPLETED, FAILED, REJECTED, RequestTable, TimeSeries
from sim.kernel.replica import GONE, WAITING, Plan, ReplicaCore, Request
from sim.progress import Reporter
from sim.kernel.queues import make_queue
from sim.policies.routers import JSQ
from sim.policies.schedulers import make_scheduler
from sim.workload.generate import Workload


FF_MAX_STEPS = 1024  # longest fast-forward window (steps)


class ReplicaView:
    """What a router sees of a replica: live, read-only figures (sim/policies/routers.py)."""

    __slots__ = ("_r",)

    def __init__(self, rep: "_Replica") -> None:
        self._r = rep

    @property
    def index(self) -> int:
        return self._r.rid

    @property
    def pool(self) -> str:
        return self._r.pool.name

    @property
    def hardware(self) -> Any:
        return self._r.pool.hardware

    @property
    def queue_len(self) -> int:
        return len(self._r.core.waiting)

    @property
    def running(self) -> int:
        return len(self._r.core.running)

    @property
    def free_kv_blocks(self) -> int:
        return self._r.core.free_blocks

    @property
    def outstanding_requests(self) -> int:
        return self._r.outstanding_req

    @property
    def outstanding_tokens(self) -> int:
        return self._r.outstanding_tok


def _queue_for(policy: str) -> str:
    return getattr(SCHEDULERS.load(policy), "queue", "fifo")


class _Replica:
    """SimPy side of one replica: the step loop around a ReplicaCore and a scheduler."""

    def __init__(self, sim: "Simulation", rid: int, pool: PoolConfig, waiting: deque) -> None:
        self.sim, self.env, self.rid, self.pool = sim, sim.env, rid, pool
        self.idle = False
        self.wake: simpy.Event | None = None
        self.outstanding_tok = 0
        self.outstanding_req = 0
        self.service = pool.service
        # Host-side latency (HTTP, tokenizer) before a request reaches this replica's engine.
        self.delay_s = pool.hardware.request_overhead_s if pool.service is None else 0.0
        if pool.service is None:
            self.perf = PerfModel(pool.hardware, pool.model, pool.tp, pool.dtype, pool.kv_dtype)
            sc = pool.scheduler
            blocks = self.perf.kv_blocks(sc.kv_memory_fraction, sc.block_size)
            self.sched = make_scheduler(sc.policy, sc.max_batch_size, sc.max_batched_tokens)
            bs = sc.block_size
            prefix_blocks = sim.wl.prefix_tokens // bs if sc.prefix_caching else 0
        else:
            blocks, bs, prefix_blocks = 1 << 62, 1, 0
        prio_pre = bool(getattr(self.sched, "priority_preemption", False)) if pool.service is None else False
        lag = pool.hardware.output_lag_steps if pool.service is None else 0
        self.shared_queue = waiting is sim.shared if sim.shared is not None else False

        def new_core(q) -> ReplicaCore:
            return ReplicaCore(rid, blocks, bs, q, on_finish=self._on_finish, prefix_blocks=prefix_blocks,
                               output_lag_steps=lag, priority_preemption=prio_pre)
        self._new_core = new_core
        self.core = new_core(waiting)
        self.info = ReplicaInfo(rid, pool.name, blocks if pool.service is None else 0)
        # Power state: cap per accelerator (None = none), drained (takes no new work, off once
        # idle), down (failed), and the draw of all its accelerators now.
        self.cap_w: float | None = None
        self.in_ff = False  # in a fast-forward window (arrivals interrupt it)
        self.busy_until = 0.0  # end of the step (or window) in flight: busy time is counted up front
        self.drained = False
        self.down = False
        self.commissioning = False
        self.in_service: Request | None = None  # analytic service: the request being served
        self.proc: Any = None
        self.idle_w = pool.hardware.idle_w * pool.tp
        fac = sim.sc.facility
        self.host_w = (fac.host_w_per_accel * pool.tp) if fac is not None else 0.0
        self.p_now = 0.0
        self.p_since = 0.0

    @property
    def index(self) -> int:
        return self.rid

    @property
    def available(self) -> bool:
        return not self.down and not self.drained

    def set_power(self, watts: float) -> None:
        """This replica draws `watts` from now on (energy of the interval that ends now is
        summed here as well as integrated by the ledger: the conservation check)."""
        now = self.env.now
        led = self.sim.ledger
        if watts > 0:
            watts += self.host_w  # the servers draw while the accelerators are on
        led.step_energy_j += self.p_now * (now - self.p_since)
        self.p_now, self.p_since = watts, now
        led.set_power(self.rid, watts, now)

    def rest_power(self) -> float:
        """Draw when not running a step: idle, or off when drained or down."""
        return 0.0 if (self.down or self.drained) else self.idle_w

    # The facility's narrow interface (sim/engine/facility_procs.py); the compiled driver's
    # replicas (sim/engine/fast_facility.py) have the same methods.
    def drain(self) -> None:
        """Take no new requests; switch off once idle (the queue already here is served)."""
        if not self.drained:
            self.drained = True
            if self.idle:
                self.set_power(0.0)

    def undrain(self) -> None:
        if self.drained:
            self.drained = False
            if self.idle:
                self.set_power(self.rest_power())
                self.notify()

    def begin_commissioning(self) -> None:
        """Not serving (and drawing nothing) until its tent is commissioned."""
        self.drained = True
        self.commissioning = True
        self.set_power(0.0)

    def end_commissioning(self) -> None:
        self.commissioning = False
        self.drained = False
        self.set_power(self.rest_power())
        if self.idle:
            self.notify()

    def _on_finish(self, req: Request, now: float) -> None:
        self.sim.complete(req, now, self)

    def notify(self) -> None:
        if self.idle:
            self.idle = False
            assert self.wake is not None
            self.wake.succeed()
        elif self.in_ff:
            self.in_ff = False
            self.proc.interrupt("arrival")  # end the window at the step in flight

    def _sleep(self):
        self.core.flush(self.env.now)  # no next step to wait for: deliver lagged output now
        self.set_power(self.rest_power())
        ts = self.sim.ts
        ts.add(self.env.now, self.rid, 0, self.core.used_blocks, len(self.core.waiting), 0)
        self.idle = True
        self.wake = self.env.event()
        return self.wake

    def loop(self):
        env, sim = self.env, self.sim
        start_s = sim.table.start_s
        ts = sim.ts
        perf = self.perf
        plan_fn = self.sched.plan
        info = self.info
        tp = self.pool.tp
        # least_kv reads every replica's free KV blocks on each arrival: a window grows its
        # blocks in bulk at the end, so it would read them stale
        ff = (sim.sc.run.fast_forward and sim.fac is None and sim.shared is None
              and sim.sc.router.policy != "least_kv")
        while True:
            try:
                if self.down:
                    yield self._sleep()
                    continue
                core = self.core
                plan = plan_fn(core)
                if plan is None:
                    yield self._sleep()
                    continue
                now = env.now
                p_tok = 0
                p_read = 0
                p_attn = 0.0
                for req, c in plan.chunks:
                    if start_s[req.idx] < 0:
                        start_s[req.idx] = now
                    p_tok += c
                    p_read += req.done
                    p_attn += c * (req.done + (c + 1) * 0.5)
                n_dec = plan.n_dec
                # A window needs a batch that stays as it is: no lagged output to deliver, and no
                # waiting request that the next step could admit (after a preemption vLLM admits
                # nothing for one step; an ageing queue can change its head as time passes).
                if (ff and n_dec and not plan.chunks and not core.pending_output and not core.preempted_this_step
                        and not (core.waiting and getattr(core.waiting, "time_dependent", False))):
                    k = core.window_limit(FF_MAX_STEPS)
                    if k >= 2:
                        yield from self._fast_forward(core, n_dec, k)
                        continue
                n_seq = n_dec + len(plan.chunks)
                ctx = core.decode_context() if n_dec else 0
                sp = perf.step_power(n_dec, ctx, p_tok, p_read, p_attn, n_seq, self.cap_w)
                dt = sp.t_s
                self.set_power(sp.power_w * tp)
                ts.add(now, self.rid, n_seq, core.used_blocks, len(core.waiting), 1)
                info.busy_s += dt
                self.busy_until = now + dt
                yield env.timeout(dt)
                core.commit(plan, env.now)
            except simpy.Interrupt:
                self.busy_until = min(self.busy_until, env.now)
                continue  # a failure cut the step short; fail() already moved its requests

    def _fast_forward(self, core: ReplicaCore, n: int, k: int):
        """Run k decode steps of a stable batch as one SimPy timeout (exactly: the step times are
        computed per step, vectorised). An arrival for this replica interrupts the window; the
        steps already done are committed and the step in flight finishes normally."""
        env, sim = self.env, self.sim
        now = env.now
        t, p = self.perf.decode_window(n, core.decode_context(), k)
        ends = np.cumsum(np.concatenate(([now], t)))[1:]  # same additions as stepping one by one
        if sim.deadlines is not None:
            # a window ends before the next client deadline, which cancels a request at its exact
            # time (mid-step: the per-step loop handles that, a window would not)
            nxt = sim.deadlines[0][0] if sim.deadlines else now + sim.timeout_s
            k = max(1, min(k, int(np.searchsorted(ends, nxt))))  # one step: as if stepped alone
        tp = self.pool.tp
        e_steps = p[:k] * t[:k] * tp  # energy of each step (J)
        total = float(ends[k - 1] - now)
        sim.ts.add(now, self.rid, n, core.used_blocks, len(core.waiting), 1)
        self.set_power(float(e_steps.sum()) / total if total > 0 else self.idle_w)
        self.info.busy_s += total  # counted up front, as a step is (a horizon clips it)
        self.busy_until = float(ends[k - 1])
        self.in_ff = True
        try:
            yield env.timeout(delay_to(now, float(ends[k - 1])))
            done = k
        except simpy.Interrupt:
            done = int(np.searchsorted(ends[:k], env.now, side="right"))  # steps finished by now
            done = min(done, k - 1)
        self.in_ff = False
        if done < k:
            # steps 1..done are complete; step done+1 is in flight until ends[done]
            exact = float(e_steps[:done + 1].sum())
            spent = self.p_now * (env.now - now)
            rest = float(ends[done]) - env.now
            self.set_power(max(0.0, (exact - spent) / rest) if rest > 0 else self.p_now)
        end_step = done if done == k else done + 1
        if end_step < k:  # the window ends early: the steps it will not run are not busy time
            self.info.busy_s -= total - float(ends[end_step - 1] - now)
            self.busy_until = float(ends[end_step - 1])
        core.advance_decodes(end_step)
        if core.lag and done >= 1:
            core.flush(float(ends[0]))  # the output of the step before the window
        core.dit += end_step - 1
        while env.now < ends[end_step - 1]:
            try:
                yield env.timeout(delay_to(env.now, float(ends[end_step - 1])))
            except simpy.Interrupt:
                pass  # later arrivals wait for the step in flight like any other
        core.commit(Plan([], n), env.now)

    def fail(self) -> None:
        """The node under this replica failed: requeue or fail its requests, power off."""
        if self.down:
            return
        now = self.env.now
        self.down = True
        if self.busy_until > now:  # the step in flight is cut: busy only up to now
            self.info.busy_s -= self.busy_until - now
            self.busy_until = now
        reqs = self.core.evacuate(now, own_queue=not self.shared_queue)
        if self.in_service is not None:  # analytic service: the request being served goes too
            req, self.in_service = self.in_service, None
            req.state, req.queue = WAITING, None
            reqs = sorted(reqs + [req], key=lambda r: (r.arrival, r.idx))
        self.core = self._new_core(self.sim.shared if self.shared_queue else self.core.waiting)
        self.set_power(0.0)
        self.sim.failures += 1
        self.sim.fail_marks.append(now)
        if self.proc is not None and self.proc.is_alive and not self.idle:
            self.proc.interrupt("failure")
        for req in reqs:
            self.sim.requeue(req, self)

    def repair(self) -> None:
        if not self.down:
            return
        self.down = False
        self.set_power(self.rest_power())
        if self.idle:
            self.notify()

    def analytic_loop(self, service_s: np.ndarray):
        env, sim = self.env, self.sim
        table = sim.table
        while True:
            core = self.core
            if self.down or not core.waiting:
                yield self._sleep()
                continue
            req = core.waiting.popleft()
            req.state = GONE  # in service: analytic service is not interrupted by a timeout
            now = env.now
            table.start_s[req.idx] = now
            dt = float(service_s[req.idx])
            self.sim.ts.add(now, self.rid, 1, 0, len(core.waiting), 1)
            self.info.busy_s += dt
            self.busy_until = now + dt
            self.in_service = req
            try:
                yield env.timeout(dt)
            except simpy.Interrupt:
                continue  # a node failure: fail() re-queued the request in service
            self.in_service = None
            req.first_token = env.now
            self.sim.complete(req, env.now, self)


class Simulation:
    """One run: give it a Model (sim/engine/build.py: the workload, router and service times,
    drawn) or a Scenario (built here), then call `run()`. Assembling it reads no file and draws
    no random number beyond what the build did."""

    def __init__(self, scenario: Scenario | Model, workload: Workload | None = None,
                 report: Reporter | None = None) -> None:
        model = scenario if isinstance(scenario, Model) else build(scenario, workload)
        scenario = model.scenario
        self.sc = scenario
        self.wl = model.workload
        n = len(self.wl)
        self.env = simpy.Environment()
        self.report = report if report is not None else Reporter()  # says nothing unless the caller asks
        self.n_live = 0  # requests in the system
        self.arrivals_done = False
        self.end = self.env.event()  # all requests arrived and left
        self.table = RequestTable(n)
        self.ts = TimeSeries(scenario.run.timeseries)
        self.router = model.router
        self._fallback = JSQ()  # while some replicas are unavailable (draws nothing)
        sc0 = scenario.pools[0].scheduler
        now = lambda: self.env.now  # noqa: E731
        shared = make_queue(_queue_for(sc0.policy), sc0.ageing_s, now) if getattr(self.router, "shared_queue", False) else None
        self.shared = shared
        self.replicas: list[_Replica] = []
        for pool in scenario.pools:
            for _ in range(pool.replicas):
                q = shared if shared is not None else make_queue(_queue_for(pool.scheduler.policy), pool.scheduler.ageing_s, now)
                self.replicas.append(_Replica(self, len(self.replicas), pool, q))
        self.shared = shared
        self.views = [ReplicaView(r) for r in self.replicas]
        self.timeout_s = scenario.workload.timeout_s
        # client deadlines (arrival + timeout_s) in time order: arrivals come in order and the
        # timeout is one for all, so appending keeps the order
        self.deadlines: deque | None = deque() if self.timeout_s is not None else None
        self._dl_wake: simpy.Event | None = None
        self._target: dict[int, _Replica] = {}  # routed replica of each request in the system
        cls = self.wl.cls
        classes = scenario.workload.classes
        self._prio = ([classes[int(c)].priority for c in cls] if (cls is not None and classes) else None)
        self._sys_t = array("d")  # times at which a request entered (+1) or left (-1) the system
        self._sys_d = array("b")
        self.failures = 0
        self.fail_marks: list[float] = []
        self.shedding = False
        self.supply_drops = 0
        self.trip_marks: list[float] = []
        self.fac = scenario.facility
        self._setup_power()
        self.service_s: dict[str, np.ndarray] = model.service_s

    def _setup_power(self) -> None:
        from sim.facility.ledger import Ledger, build_graph

        fac = self.fac
        tents = [t.name for t in fac.tents] if (fac is not None and fac.tents) else ["default"]
        placement = []
        for pool in self.sc.pools:
            tn = pool.tent if pool.tent is not None else tents[0]
            placement += [tents.index(tn)] * pool.replicas
        pue = [fac.tents[k].pue(0.0) if (fac is not None and fac.tents) else 1.0 for k in range(len(tents))]
        self.ledger = Ledger(len(self.replicas), placement, pue)
        self.tent_names = tents
        self.graph = None
        if fac is not None and fac.tents:
            self.graph = build_graph(fac, self.sc.pools, [tents[k] for k in
                                                          [placement[sum(p.replicas for p in self.sc.pools[:i])]
                                                           for i in range(len(self.sc.pools))]])
            self.ledger.supply_w = fac.supply_w({})
            for s in fac.sources:
                if s.kind == "battery":
                    self.ledger.battery_w += s.unit_mw * 1e6
                    self.ledger.battery_j += s.energy_mwh * 3.6e9
        self.units_up = {s.name: s.units for s in fac.sources if s.kind == "gas_turbine"} if fac is not None else {}
        self.dynamic = fac is not None  # availability can change (drain, failures, commissioning)

    # --- bookkeeping -----------------------------------------------------------------------------
    def _in_system(self, delta: int, t: float) -> None:
        """Record a change of the number of requests in the system at client time t (events may
        be recorded late: arrivals are seen after the front end, timeouts at the next step)."""
        self._sys_t.append(t)
        self._sys_d.append(delta)
        self.n_live += delta
        if self.n_live == 0 and self.arrivals_done and not self.end.triggered:
            self.end.succeed()  # lets facility processes (turbines, manager) stop

    def _in_system_series(self) -> tuple[np.ndarray, np.ndarray]:
        t = np.frombuffer(self._sys_t, dtype=np.float64) if len(self._sys_t) else np.zeros(0)
        d = np.frombuffer(self._sys_d, dtype=np.int8).astype(np.int64) if len(self._sys_d) else np.zeros(0, np.int64)
        order = np.argsort(t, kind="stable")
        t, n = np.concatenate(([0.0], t[order])), np.concatenate(([0], np.cumsum(d[order])))
        last = np.append(t[1:] != t[:-1], True)  # keep the final count at each distinct time
        return t[last], n[last]

    def complete(self, req: Request, now: float, rep: _Replica) -> None:
        i = req.idx
        tb = self.table
        if self.timeout_s is not None and now > req.arrival + self.timeout_s:
            self._fail_timeout(req, req.arrival + self.timeout_s)  # the client left before the end
            return
        tb.finish_s[i] = now
        tb.first_token_s[i] = req.first_token
        tb.status[i] = COMPLETED
        tb.preemptions[i] = req.preemptions
        tb.replica[i] = rep.rid
        self._untarget(req)
        self._in_system(-1, now)

    def _untarget(self, req: Request) -> None:
        """The request no longer counts against the replica it was routed to."""
        tg = self._target.pop(req.idx, None)
        if tg is not None:
            tg.outstanding_tok -= req.prompt + req.output
            tg.outstanding_req -= 1

    def _fail_timeout(self, req: Request, t: float) -> None:
        i = req.idx
        tb = self.table
        tb.status[i] = FAILED
        tb.finish_s[i] = t  # when it left the system
        tb.reason[i] = f"timeout: no response within {self.timeout_s:g} s"
        tb.preemptions[i] = req.preemptions
        if 0 < req.first_token <= t:  # 0.0 marks a sampled token not yet delivered
            tb.first_token_s[i] = req.first_token
        self._untarget(req)
        self._in_system(-1, t)

    def _deadline_proc(self):
        """Each client gives up at its deadline: the request is cancelled at that instant
        wherever it is (queued, prefilling, decoding; a step in flight still runs) and fails
        with reason timeout. Deadlines at one instant go after that instant's step ends and
        arrivals (event priority), as in the compiled engine's calendar."""
        env, dl = self.env, self.deadlines
        while True:
            if not dl:
                if self.arrivals_done:
                    return
                self._dl_wake = env.event()
                yield self._dl_wake
                continue
            t, _, req = dl[0]
            if t > env.now:
                yield Later(env, delay_to(env.now, t), LATE)
                continue
            dl.popleft()
            if req.state != GONE:
                self.replicas[0].core.cancel(req)  # cancel() finds the queue or replica holding it
                self._fail_timeout(req, t)

    def reject(self, i: int, reason: str) -> None:
        self.table.status[i] = REJECTED
        self.table.reason[i] = reason

    # --- processes ----------------------------------------------------------------------------------
    def _arrivals(self):
        env = self.env
        arr = self.wl.arrival_s
        pr = self.wl.prompt_tokens.tolist()
        out = self.wl.output_tokens.tolist()
        grp = self.wl.prefix_group.tolist() if self.wl.prefix_group is not None else None
        sess = self.wl.session.tolist() if self.wl.session is not None else None
        prio = self._prio
        deadlines = self.deadlines
        timeout = self.timeout_s
        reps = self.replicas
        d0 = min(r.delay_s for r in reps)
        # the longest request a replica can ever hold (every replica must hold it with a shared
        # queue; routers send a request to any replica, so here too the smallest decides)
        fit_tokens = min(r.core.total_blocks * r.core.block_size for r in reps)
        report = self.report
        tick = max(1, len(arr) // 200)
        for i, t in enumerate(arr.tolist()):
            if i % tick == 0:
                report.progress(i, len(arr))
            if t + d0 > env.now:
                yield env.timeout(t + d0 - env.now)
            p, o = pr[i], out[i]
            if self.shedding:
                self.reject(i, "power: new requests shed while the facility is over its supply limit")
                continue
            if p + o > fit_tokens:
                self.reject(i, f"kv_capacity: needs {p + o} tokens of KV cache, a replica holds {fit_tokens}")
                continue
            req = Request(i, t, p, o, grp[i] if grp is not None else -1, prio[i] if prio is not None else 0,
                          sess[i] if sess is not None else -1)
            self._in_system(+1, t)
            if deadlines is not None:
                deadlines.append((t + timeout, i, req))
                if self._dl_wake is not None and not self._dl_wake.triggered:
                    self._dl_wake.succeed()
            if not self._route(req, d0):
                req.state = GONE  # its deadline finds it gone
                self._in_system(-1, t)
                self.reject(i, "no_capacity: every replica is down, drained or not yet commissioned")
        self.arrivals_done = True
        if self.n_live == 0 and not self.end.triggered:
            self.end.succeed()
        report.progress(len(arr), len(arr), "arrivals done; draining")

    def _route(self, req: Request, d0: float = 0.0, requeue: bool = False) -> bool:
        """Send a request to a replica (or the shared queue). False if none can take it. A
        re-queued request reaches its replica as a facility event (sim/engine/events.py)."""
        reps = self.replicas
        views = self.views
        shared = self.shared
        if self.dynamic:
            views = [v for v, r in zip(views, reps) if r.available]
            reps = [r for r in reps if r.available]
            if not reps:
                return False
        if shared is not None:
            req.queue = shared
            shared.append(req)
            for r in reps:
                if r.idle:
                    r.notify()
                    break
            return True
        i = req.idx
        if len(reps) == 1:
            target = reps[0]
        else:
            if len(reps) == len(self.replicas):
                k = self.router.choose(req, views)
                if not (isinstance(k, numbers.Integral) and not isinstance(k, bool) and 0 <= k < len(reps)):
                    raise ScenarioError("router.policy", f"{self.sc.router.policy}: choose() returned {k!r} for "
                                        f"{len(reps)} replicas", "return an int index in range(len(replicas))")
            else:
                k = self._fallback.choose(req, views)
            target = reps[int(k)]
        target.outstanding_tok += req.prompt + req.output
        target.outstanding_req += 1
        self._target[i] = target
        self.table.replica[i] = target.rid
        if target.delay_s > d0:
            ev = Later(self.env, target.delay_s - d0, FACILITY) if requeue else self.env.timeout(target.delay_s - d0)
            ev.callbacks.append(lambda _e, r=req, tg=target: self._enqueue(r, tg))
        else:
            self._enqueue(req, target)
        return True

    def requeue(self, req: Request, failed: _Replica) -> None:
        """A request evacuated from a failed replica: route it again, or fail it after
        `failures.retry_limit` re-queues."""
        i = req.idx
        self._untarget(req)
        req.retries += 1
        limit = self.fac.failures.retry_limit if self.fac is not None else 0
        now = self.env.now
        if req.retries > limit or not self._route(req, 0.0, requeue=True):
            req.state = GONE
            tb = self.table
            tb.status[i] = FAILED
            tb.finish_s[i] = now
            tb.preemptions[i] = req.preemptions
            tb.reason[i] = (f"node_failure: replica {failed.rid} failed and the request was re-queued "
                            f"{req.retries - 1} times (retry_limit {limit})")
            self._in_system(-1, now)

    @staticmethod
    def _enqueue(req: Request, target: _Replica) -> None:
        if req.state == GONE:
            return  # timed out before reaching the engine
        req.queue = target.core.waiting
        target.core.waiting.append(req)
        target.notify()

    def run(self) -> Result:
        engine = self.sc.run.engine
        if engine != "simpy":
            try:
                from sim.engine import compiled
            except ImportError as exc:  # numba missing or broken: "auto" carries on with SimPy
                compiled, why = None, [f"numba cannot be imported ({exc})"]
            else:
                why = compiled.supported(self.sc, self.wl)
            if engine == "compiled" and why:
                from sim.errors import ScenarioError
                raise ScenarioError("run.engine", "the compiled engine cannot run this: " + "; ".join(why),
                                    'set run.engine = "auto" (or "simpy")')
            if compiled is not None and not why:
                return compiled.run(self)
        return self._run_simpy()

    def _run_simpy(self) -> Result:
        wall0 = time.perf_counter()
        env = self.env
        for rep in self.replicas:
            rep.set_power(rep.rest_power())
            if rep.service is not None:
                rep.proc = env.process(rep.analytic_loop(self.service_s[rep.pool.name]))
            else:
                rep.proc = env.process(rep.loop())
        if self.fac is not None:
            from sim.engine.facility_procs import start_facility
            start_facility(self)
        env.process(self._arrivals())
        if self.deadlines is not None:
            env.process(self._deadline_proc())
        horizon = self.sc.run.horizon_s
        if horizon is not None:
            env.run(until=horizon)
        else:
            # until every request has arrived and left (facility processes would run forever)
            env.run(until=self.end)
        sim_time = float(env.now)
        for rep in self.replicas:  # a step cut by the horizon is busy only up to it
            if rep.busy_until > sim_time:
                rep.info.busy_s -= rep.busy_until - sim_time
        for rep in self.replicas:
            rep.set_power(rep.p_now - (rep.host_w if rep.p_now > 0 else 0.0))  # close energy intervals
        self.ledger.close(sim_time)
        sys_t, sys_n = self._in_system_series()
        events = FacilityEvents(self.failures, self.fail_marks, self.supply_drops, self.trip_marks, self.tent_names,
                                self.graph)
        return Result(self.sc, self.wl, self.table, self.ts, sys_t, sys_n, [r.info for r in self.replicas], sim_time,
                      time.perf_counter() - wall0, engine="simpy", ledger=self.ledger, facility=events)


WARM_UP = {"name": "warm-up", "seed": 0,
           "workload": {"arrival": "poisson", "rate_per_s": 5.0, "num_requests": 8, "prompt_tokens": 64,
                        "output_tokens": 8},
           "pools": [{"name": "p", "hardware": "h100-sxm", "model": "llama-3.1-8b", "replicas": 2}]}
# ... and with a shared queue, and with a facility whose nodes fail, are repaired and drained:
# every entry point of the compiled engine, with the argument types real runs pass
WARM_UP_FACILITY = {
    "facility": {"gpus_per_node": 1, "host_w_per_accel": 300,
                 "sources": [{"name": "g", "kind": "gas_turbine", "units": 2, "unit_mw": 0.0006}],
                 "tents": [{"name": "t", "it_limit_mw": 0.01}], "manager": {"policy": "drain", "interval_s": 1.0}},
    "failures": {"node_mtbf_h": 0.0003, "node_repair_h": 0.0002, "retry_limit": 3}}


def build_compiled() -> None:
    """Compile every entry point of the compiled engine into numba's cache."""
    import os
    from sim.scenario.config import parse

    os.environ["DCSIM_KERNEL"] = "compiled"
    Simulation(parse(WARM_UP)).run()
    Simulation(parse(dict(WARM_UP, router={"policy": "central_queue"}))).run()
    wl = dict(WARM_UP["workload"], num_requests=150, rate_per_s=15.0, prompt_tokens=400, output_tokens=200)
    pools = [dict(WARM_UP["pools"][0], tent="t")]
    Simulation(parse(dict(WARM_UP, workload=wl, pools=pools, **WARM_UP_FACILITY))).run()


def warm_up(report: Reporter | None = None) -> None:
    """Build the compiled engine now if this machine has no cached build (saying so), so that
    worker processes load it instead of each compiling it at once."""
    try:
        from sim.engine import compiled
    except ImportError:
        return
    if compiled._cached():
        return
    (report or Reporter()).notice(compiled.COMPILE_NOTICE)
    import os

    old = os.environ.get("DCSIM_KERNEL")
    try:
        build_compiled()
    finally:
        if old is None:
            os.environ.pop("DCSIM_KERNEL", None)
        else:
            os.environ["DCSIM_KERNEL"] = old


def plugin_notice(sc: Scenario) -> str | None:
    """One line saying which of the scenario's policies are plug-ins in plain Python (they run on
    the per-step SimPy driver), or None. The CLI prints it on stderr."""
    named = [("router.policy", sc.router.policy)]
    named += [(f"pools.{p.name}.scheduler.policy", p.scheduler.policy) for p in sc.pools]
    # (a power-manager plug-in acts at control ticks from Python: it runs on the compiled driver too)
    plug = [f"{k} = {v!r}" for k, v in named if Registry.is_plugin(v)]
    if not plug:
        return None
    return ("dcsim: " + ", ".join(plug) + " is a plug-in in plain Python: this run uses the per-step "
            "(SimPy) driver (docs/policies.md says how to make a policy fast)")


def run_scenario(scenario: Scenario) -> Result:
    return Simulation(scenario).run()
