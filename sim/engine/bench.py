"""One replica's kernel driven by hand: the transitions without an event loop, for unit tests of
policies and transitions, and for reading what one step does.

    b = Bench(scenario)            # the scenario's first replica, its workload not yet arrived
    b.push(0, t=0.0)               # request 0 joins the queue
    chunks, n_dec, dt = b.plan(0)  # the scheduler plans a step at t=0 and starts it (dt s)
    b.commit(dt)                   # the step ends
"""

from __future__ import annotations

from typing import Any

from sim.engine import compilation
from sim.engine.arrays import prepare
from sim.engine.kernel.layout import (BS, CH_REQ, CH_TOK, DIT, DTF, FHLEN, HELD, NCH, NDEC, NLRU, NRUN, NXT,
                                      PH, PLNDEC, QLEN, R_DECODE, R_PREFILL, RSV, RST, ST, TOT, USED,
                                      WAKE)
from sim.engine.recorder import COMPLETED
from sim.engine.simulation import Simulation


class Bench:
    """Replica 0 of a Simulation's kernel, in the interpreted or compiled kernel (`m`)."""

    def __init__(self, scenario: Any, workload: Any = None, total_blocks: int | None = None,
                 interpreted: bool = False) -> None:
        self.sim = Simulation(scenario, workload)
        self.m = compilation.plain() if interpreted else compilation.compiled()
        self.k = prepare(self.sim, self.m)
        if total_blocks is not None:  # a cache of this many blocks instead of what the memory holds
            self.k.S[0, TOT] = total_blocks

    # --- transitions ---
    def push(self, j: int, t: float = 0.0) -> None:
        """Request j reaches the queue at t."""
        self.k.assign(0, j)
        self.k.enqueue(0, j, t)

    def plan(self, t: float) -> tuple[list[tuple[int, int]], int, float] | None:
        """Plan and start a step at t: (prefill chunks [(request, tokens)], decoding sequences,
        the step's duration), or None (nothing to run: the replica sleeps)."""
        k, m = self.k, self.m
        if k.S[0, ST] == WAKE:
            m.idle_until(0, t, k.F, k.run)
        k.room()
        if m.plan(0, t, k.rp, k.rq, k.run) == 0:
            m.sleep(0, t, k.rp, k.rq, k.run)
            return None
        nch = int(k.S[0, NCH])
        chunks = [(int(k.rp.CH[0, c, CH_REQ]), int(k.rp.CH[0, c, CH_TOK])) for c in range(nch)]
        return chunks, int(k.S[0, PLNDEC]), float(k.F[0, DTF])

    def commit(self, t: float) -> None:
        """The step in flight ends at t."""
        self.k.room()
        self.m.commit(0, t, self.k.rp, self.k.rq)

    def cancel(self, j: int) -> None:
        self.m.cancel(0, j, self.k.rp, self.k.rq)

    # --- state ---
    @property
    def total_blocks(self) -> int:
        return int(self.k.S[0, TOT])

    @property
    def used_blocks(self) -> int:
        """Blocks held by running requests (a shared prefix block counted once)."""
        return int(self.k.S[0, USED])

    @property
    def cached_idle_blocks(self) -> int:
        """Cached blocks no running request holds (evictable)."""
        return int(self.k.S[0, NLRU])

    @property
    def free_blocks(self) -> int:
        """Blocks an allocation can get: free and evictable."""
        return self.total_blocks - self.used_blocks

    @property
    def queue_len(self) -> int:
        return int(self.k.S[0, QLEN])

    @property
    def n_running(self) -> int:
        return int(self.k.S[0, NRUN])

    @property
    def n_dec(self) -> int:
        return int(self.k.S[0, NDEC])

    def held(self, j: int) -> int:
        """KV blocks request j holds now (between steps; shared ones included)."""
        k = self.k
        RQ = k.rq.RQ
        if RQ[j, RST] == R_DECODE:
            if k.S[0, RSV]:
                return int(RQ[j, HELD])
            return -(-int(k.rq.RA[j] + k.S[0, DIT]) // int(k.S[0, BS]))
        return int(RQ[j, HELD]) if RQ[j, RST] == R_PREFILL else 0

    def running(self) -> list[int]:
        """Prefilling and decoding requests."""
        k = self.k
        out = []
        j = int(k.S[0, PH])
        while j >= 0:
            out.append(j)
            j = int(k.rq.RQ[j, NXT])
        out += [int(k.rp.FH[0, c] & 0xFFFFFFFF) for c in range(int(k.S[0, FHLEN]))]
        return out

    def finished(self) -> list[int]:
        """Requests completed (delivered), in index order."""
        return [int(j) for j in (self.k.rq.STATUS == COMPLETED).nonzero()[0]]


class RouterBench:
    """A scenario's replicas and the kernel's router (sim/engine/kernel/route.py), driven by
    hand: give replicas outstanding work or KV in use, then ask where a request goes."""

    def __init__(self, scenario: Any, workload: Any = None) -> None:
        self.sim = Simulation(scenario, workload)
        self.m = compilation.compiled()
        self.k = prepare(self.sim, self.m)

    def load(self, r: int, j: int) -> None:
        """Request j is outstanding at replica r (its prompt and output tokens count there)."""
        self.k.assign(r, j)

    def use_blocks(self, r: int, n: int) -> None:
        """n of replica r's KV blocks in use."""
        self.m.take(r, n, self.k.S, self.k.rp.KC)

    def route(self, j: int) -> int:
        """The replica request j goes to now (its router's own state kept: round robin's count,
        sessions' replicas)."""
        return int(self.m.route_current(j, self.k.st))
