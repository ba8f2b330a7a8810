"""The facility's host on either driver: its SimPy processes (sim/engine/facility_procs.py:
turbine trips and repairs, scheduled trips, node failures and repairs, commissioning, the power
manager with any manager policy, plug-ins included, the autoscalers) act on replicas through
one narrow interface (`FastReplica`: fail, repair, drain, undrain, commissioning, cap, the
autoscaler's scale_*), which changes the kernel's state only through the Kernel's named
transitions (sim/engine/arrays.py).

On the fast driver the processes run on a SimPy environment that holds only facility events.
Before each one, at time T, the compiled loop runs every arrival, step end and client deadline
up to T and brings every replica to T (a barrier: facility events come after the other events
of their instant, as in the per-step driver, sim/engine/events.py); the ledger then takes the
replicas' power changes since the last barrier in time order; then the event acts. On the
per-step driver they share its environment (`host`). So both drivers make the same facility
decisions from the same state.
"""

from __future__ import annotations

import heapq
import math
from typing import Any

import numpy as np
import simpy
from simpy.events import NORMAL

from sim.engine.events import FACILITY, Later, then
from sim.engine.kernel.layout import (CAP, DF_NOW, DOWN, DRN, IDLE, OUTREQ, PW_T, QG, REST_W, RGRP,
                                      RS_NODE, SHED, ST)
from sim.engine.recorder import COMPLETED, FAILED, IN_FLIGHT


class FastReplica:
    """A replica as the facility sees it: its narrow interface (either driver)."""

    def __init__(self, drv: "FacilityDriver", r: int, pool: Any, host_w: float, on_w: float) -> None:
        self._d, self._k = drv, drv.kernel
        self.rid = self.index = r
        self.pool = pool
        self.host_w = host_w
        self._on_w = on_w  # idle draw while on (accelerators and hosts idle)
        self._commissioning = False

    @property
    def commissioning(self) -> bool:
        return self._commissioning

    @commissioning.setter
    def commissioning(self, on: bool) -> None:
        self._commissioning = on
        self._d._comm[self.rid] = on

    @property
    def drained(self) -> bool:
        return bool(self._k.S[self.rid, DRN])

    @property
    def down(self) -> bool:
        return bool(self._k.S[self.rid, DOWN])

    @property
    def available(self) -> bool:
        return not self.down and not self.drained

    @property
    def idle(self) -> bool:
        return int(self._k.S[self.rid, ST]) == IDLE

    @property
    def p_now(self) -> float:
        return float(self._d.ledger.rep_w[self.rid])

    @property
    def cap_w(self) -> float | None:
        c = float(self._k.F[self.rid, CAP])
        return None if math.isnan(c) else c

    @cap_w.setter
    def cap_w(self, w: float | None) -> None:
        self._k.set_cap(self.rid, w)

    def _rest(self, watts: float) -> None:
        """Draw `watts` when not stepping, from now; at once if idle."""
        now = self._d.env.now
        if self._k.set_rest(self.rid, now, watts):
            self._d.ledger.set_power(self.rid, watts, now)

    def drain(self) -> None:
        if not self.drained:
            self._k.set_flag(self.rid, DRN, True)
            self._rest(0.0)

    def undrain(self) -> None:
        if self.drained:
            self._k.set_flag(self.rid, DRN, False)
            if not self.down:
                self._rest(self._on_w)
                self._k.wake(self.rid, self._d.env.now)
                self._d.poke(self.rid)

    def begin_commissioning(self) -> None:
        self._k.set_flag(self.rid, DRN, True)
        self.commissioning = True
        self._k.set_rest(self.rid, self._d.env.now, 0.0)
        self._d.ledger.set_power(self.rid, 0.0, self._d.env.now)

    def end_commissioning(self) -> None:
        self.commissioning = False
        self._k.set_flag(self.rid, DRN, False)
        w = 0.0 if self.down else self._on_w
        self._k.set_rest(self.rid, self._d.env.now, w)
        self._d.ledger.set_power(self.rid, w, self._d.env.now)
        self._k.wake(self.rid, self._d.env.now)
        self._d.poke(self.rid)

    # --- the autoscaler's (sim/engine/autoscale.py): hidden from the power manager while not serving
    def scale_off(self) -> None:
        """Take no new requests, finish what it holds, draw nothing once idle."""
        self._k.set_flag(self.rid, DRN, True)
        self.commissioning = True
        self._rest(0.0)

    def scale_standby(self) -> None:
        """Cold start: idle draw while the weights load (still taking nothing)."""
        if not self.down:
            self._rest(self._on_w)

    def scale_on(self) -> None:
        """Serve (after a cold start, or again while draining)."""
        self.commissioning = False
        self._k.set_flag(self.rid, DRN, False)
        self._rest(0.0 if self.down else self._on_w)
        self._k.wake(self.rid, self._d.env.now)
        self._d.poke(self.rid)

    def fail(self) -> None:
        if not self.down:
            self._d.fail(self)

    def repair(self) -> None:
        if self.down:
            self._k.set_flag(self.rid, DOWN, False)
            w = 0.0 if self.drained else self._on_w
            now = self._d.env.now
            self._k.set_rest(self.rid, now, w)
            self._d.ledger.set_power(self.rid, w, now)
            self._k.wake(self.rid, now)
            self._d.poke(self.rid)


class FacilityDriver:
    """Runs a [facility] scenario on the compiled kernel: the facility's SimPy processes on an
    environment of their own, the kernel run to each of their events first."""

    def __init__(self, sim: Any, kernel: Any, host: Any = None) -> None:
        self.kernel = kernel
        self.sim = sim
        self.sc, self.fac, self.graph = sim.sc, sim.fac, sim.graph
        # host: the per-step driver (sim/engine/drivers/step.py), whose environment the facility's
        # processes share; None: the fast driver, with barriers (run)
        self.host = host
        self.env = host.env if host is not None else simpy.Environment()
        self.end = self.env.event()
        self.units_up = dict(sim.units_up)
        self.supply_drops = 0
        self.trip_marks: list[float] = []
        self.failures = 0
        self.fail_marks: list[float] = []
        self.node_failed: dict[int, tuple[int, int]] = {}  # request -> (failed replica, re-queues)
        led = sim.ledger
        R = len(sim.replicas)
        led.rep_w = np.zeros(R)  # arrays here: the compiled walk updates them in place
        led.tent_it_w = np.zeros(len(led.pue_of))
        self.ledger = led
        self._tent_of = np.asarray(led.tent_of, dtype=np.int64)
        self._sorted = (np.empty(0), np.empty(0, np.int64), np.empty(0), np.empty(1, np.int64))
        self._comm = np.zeros(R, bool)  # commissioning (FastReplica.commissioning)
        self._host_w = [rep.host_w for rep in sim.replicas]
        self.replicas = [FastReplica(self, r, rep.pool, rep.host_w, float(kernel.F[r, REST_W]))
                         for r, rep in enumerate(sim.replicas)]
        self._retries = np.zeros(len(kernel.rq.arr), np.int64)
        self.autoscale: Any = None  # sim/engine/autoscale.py's log, when a pool is autoscaled
        self._live_from = 0  # requests before this index have all left (or never entered)
        self._floor = -math.inf  # no power row may be written before this any more (_take_rows)
        if host is None and not kernel.central and not kernel.closed:
            kernel.rows_full = self._take_rows  # (the other loops' clocks are their own: the buffer grows)

    @property
    def shedding(self) -> bool:
        return bool(self.kernel.run.GI[SHED])

    @shedding.setter
    def shedding(self, on: bool) -> None:
        self.kernel.set_shedding(on)

    # --- what the power manager reads (sim/engine/facility_procs.py), over the arrays ---------
    def live_replicas(self) -> list[FastReplica]:
        """Replicas that can serve now: not failed, commissioned."""
        live = (self.kernel.S[:, DOWN] == 0) & ~self._comm
        return [self.replicas[i] for i in np.flatnonzero(live).tolist()]

    def hosts_on_w(self) -> float:
        """What the hosts of the replicas that draw power now draw, W."""
        h = self._host_w
        return sum(h[i] for i in np.flatnonzero(self.ledger.rep_w > 0).tolist())

    def min_cap_w(self) -> float:
        """The lowest per-accelerator cap (NaN: none capped)."""
        c = self.kernel.F[:, CAP]
        return float(np.nanmin(c)) if not np.isnan(c).all() else math.nan

    def drained_count(self) -> int:
        """Replicas drained by the manager (not those commissioning)."""
        return int(np.count_nonzero((self.kernel.S[:, DRN] != 0) & ~self._comm))

    # --- the ledger --------------------------------------------------------------------------
    def _walk(self, t_max: float) -> None:
        """The replicas' power changes up to t_max, into the ledger in time order."""
        PW, n = self.kernel.power_rows()
        if n == 0:
            return
        first = PW[:n, PW_T].min() if self._floor > -math.inf else math.inf  # (no rows taken early: no check)
        if first < self._floor:  # (row_floor was wrong: the walk would be out of order)
            raise RuntimeError(f"internal: a power row at {first!r} s, after the ledger took every row before "
                               f"{self._floor!r} s")
        led = self.ledger
        if len(self._sorted[0]) < n:  # the walk's scratch, kept (fresh pages cost a tent's run ~5%)
            m = max(n, len(PW))
            self._sorted = (np.empty(m), np.empty(m, np.int64), np.empty(m), np.empty(2 * m + 1, np.int64))
        rest = self.kernel.m.ledger_walk(PW, n, t_max, led.L, led.rep_w, self._tent_of, led.tent_it_w,
                                         np.asarray(led.pue_of, dtype=np.float64), *self._sorted)
        self.kernel.keep_rows(rest)

    def _take_rows(self) -> None:
        """The power rows' buffer is full between barriers: the ledger takes every row before the
        earliest time a row can still be written (the kernel's row_floor), so the buffer holds
        the rows near the replicas' clocks, not the whole interval's (a site's replicas write
        millions a second). The same rows in the same order as at the barrier: the same bits."""
        w = float(self.kernel.m.row_floor(self.kernel.st))
        if w > self._floor:
            self._walk(math.nextafter(w, -math.inf))
            self._floor = w

    # --- node failures -----------------------------------------------------------------------
    def fail(self, rep: FastReplica) -> None:
        """The node under `rep` failed (the step driver's replica failing): its requests are taken off and routed
        again, or fail after `failures.retry_limit` re-queues."""
        k, now = self.kernel, self.env.now
        out = k.evacuate(rep.rid, now)  # (the kernel marks it down: one replica fewer available)
        self.ledger.set_power(rep.rid, 0.0, now)
        self.failures += 1
        self.fail_marks.append(now)
        if self.host is not None:
            self.host.on_fail(rep.rid)
        avail = np.flatnonzero((k.S[:, DOWN] == 0) & (k.S[:, DRN] == 0))
        # the routers' fallback while some replicas are unavailable: fewest outstanding requests,
        # ties to the lowest index; each request routed changes only its target's count, so a
        # heap over the available replicas gives each one's choice in O(log R)
        # (per routing group: a request goes only to a replica serving its model)
        heaps: dict[int, list] = {}
        for j in out.tolist():
            g = int(k.rq.RQ[j, QG])
            heap = heaps.get(g)
            if heap is None:
                mine = avail[k.S[avail, RGRP] == g]
                heap = heaps[g] = list(zip(k.S[mine, OUTREQ].tolist(), mine.tolist(), strict=True))
                heapq.heapify(heap)
            self._requeue(j, rep.rid, now, heap)
        if self.host is not None:
            self.host._maybe_end()  # the failure may have ended the last requests (found by fuzzing)

    def _requeue(self, j: int, failed: int, now: float, heap: list) -> None:
        k = self.kernel
        self._retries[j] += 1
        limit = self.fac.failures.retry_limit
        if self._retries[j] > limit or not heap:
            k.fail(j, now, RS_NODE)
            self.node_failed[j] = (failed, int(self._retries[j]) - 1)
            return
        if k.central:  # back into the shared queue
            r = k.to_shared(j, now)
            if r >= 0:
                self.poke(r)
            return
        n_out, t = heap[0]
        heapq.heapreplace(heap, (n_out + 1, t))
        k.assign(t, j)
        k.in_transit(j)
        delay = self.sim.replicas[t].delay_s  # its front end again
        if delay > 0:
            then(Later(self.env, delay, FACILITY), self._deliver, t, j)
        else:
            self._deliver(t, j)

    def _deliver(self, t: int, j: int) -> None:
        self.kernel.enqueue(t, j, self.env.now)
        self.poke(t)

    def poke(self, r: int) -> None:
        """Replica r may have been woken in the kernel: the per-step driver resumes its process."""
        if self.host is not None:
            self.host.poke(r)

    # --- the run ------------------------------------------------------------------------------
    def _ended(self, clock: bool = True) -> float | None:
        """If every request has arrived and left: when the last one left (the run ends then; with
        `clock`, not before the kernel's clock)."""
        k = self.kernel
        n = len(k.rq.arr)
        if not k.sending_over():
            return None
        st, rep = k.rq.STATUS, k.rq.REP
        lo = self._live_from
        step = 4096
        while lo < n:
            hi = min(n, lo + step)
            live = np.flatnonzero((st[lo:hi] == IN_FLIGHT) & (rep[lo:hi] >= 0))
            if len(live):
                self._live_from = lo + int(live[0])
                return None
            lo = hi
            step *= 2
        self._live_from = n
        gone = (st == COMPLETED) | (st == FAILED)
        t_last = float(k.rq.FIN[gone].max()) if gone.any() else 0.0
        return max(float(k.st.clk.Df[DF_NOW]), t_last) if clock else t_last

    def run(self) -> None:
        from sim.engine.facility_procs import start_facility

        k, env = self.kernel, self.env
        hz = k.st.clk.horizon
        for r in range(len(self.replicas)):  # as the per-step driver: every replica at rest power from 0
            self.ledger.set_power(r, float(k.F[r, REST_W]), 0.0)
        start_facility(self)
        self._end_t = None
        while True:
            T = env.peek()
            last = T >= hz or T == math.inf
            k.run_until(hz if last else T)  # the last: everything up to the horizon (or the end)
            if self._end_t is None:
                t_end = self._ended()
                if t_end is not None and t_end < hz:
                    # the last request left: the run ends then (the facility's processes see it)
                    self._end_t = t_end
                    self._walk(t_end)
                    self.end._ok, self.end._value = True, None
                    env.schedule(self.end, NORMAL, max(0.0, t_end - env.now))
                    continue
            if last:
                break
            self._walk(T)
            env.step()
            if self.end.processed and hz == math.inf:
                return  # as env.run(until=end): the facility's processes see no more events

    def close(self, sim_time: float) -> tuple[Any, Any]:
        from sim.engine.result import FacilityEvents

        self._walk(sim_time)
        self.ledger.close(sim_time)
        events = FacilityEvents(self.failures, self.fail_marks, self.supply_drops, self.trip_marks,
                                list(self.sim.tent_names), self.graph)
        return self.ledger, events
