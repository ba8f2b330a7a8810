"""One replica's kernel driven by hand: the transitions without an event loop, for unit tests of
policies and transitions, and for reading what one step does.

    b = Bench(scenario)            # the scenario's first replica, its workload not yet arrived
    b.push(0, t=0.0)               # request 0 joins the queue
    chunks, n_dec, dt = b.plan(0)  # the scheduler plans a step at t=0 and starts it (dt s)
    b.commit(dt)                   # the step ends
"""

from __future__ import annotations

from typing import Any

from sim.engine import compiled
from sim.engine.simulation import Simulation


class Bench:
    """Replica 0 of a Simulation's kernel, in the interpreted or compiled kernel (`m`)."""

    def __init__(self, scenario: Any, workload: Any = None, total_blocks: int | None = None,
                 interpreted: bool = False) -> None:
        self.sim = Simulation(scenario, workload)
        self.m = compiled.plain() if interpreted else compiled.K
        self.k = compiled.prepare(self.sim, self.m)
        if total_blocks is not None:  # a cache of this many blocks instead of what the memory holds
            self.k.S[0, self.m.TOT] = total_blocks

    # --- transitions ---
    def push(self, j: int, t: float = 0.0) -> None:
        """Request j reaches the queue at t."""
        k, m = self.k, self.m
        k.S[0, m.OUTTOK] += int(k.prompt[j] + k.output[j])
        k.S[0, m.OUTREQ] += 1
        k.REP[j] = 0
        k.enqueue(0, j, t)

    def plan(self, t: float) -> tuple[list[tuple[int, int]], int, float] | None:
        """Plan and start a step at t: (prefill chunks [(request, tokens)], decoding sequences,
        the step's duration), or None (nothing to run: the replica sleeps)."""
        k, m = self.k, self.m
        if k.S[0, m.ST] == m.WAKE:
            m._idle_until(0, t, k.S, k.F, k.bins, k.G)
        tsf, tsi, PW = k.ts
        if m._plan(0, t, k.S, k.F, k.RQ, k.RA, k.CH, k.FH, k.CNT, k.PRE, k.PC, k.prompt, k.output, k.START, k.bins,
                   k.G, tsf, tsi, PW, k.GI, False, k.tmp, k.QA, k.arr, k.KC, k.SV) == 0:
            m._sleep(0, t, k.S, k.F, k.RQ, k.PFIRST, k.PDONE, k.FIRST, k.FIN, k.STATUS, k.prompt, k.output, tsf, tsi, PW,
                     k.GI, False)
            return None
        nch = int(k.S[0, m.NCH])
        chunks = [(int(k.CH[0, c, 0]), int(k.CH[0, c, 1])) for c in range(nch)]
        return chunks, int(k.S[0, m.PLNDEC]), float(k.F[0, m.DTF])

    def commit(self, t: float) -> None:
        """The step in flight ends at t."""
        k, m = self.k, self.m
        m._commit(0, t, k.S, k.RQ, k.RA, k.CH, k.FH, k.CNT, k.PFIRST, k.PDONE, k.FIRST, k.FIN, k.STATUS, k.prompt,
                  k.output, k.KC)

    def cancel(self, j: int) -> None:
        k, m = self.k, self.m
        m._cancel(0, j, k.S, k.F, k.RQ, k.RA, k.FH, k.CNT, k.QA, k.prompt, k.output, k.KC)

    # --- state ---
    def _s(self, field: str) -> int:
        return int(self.k.S[0, getattr(self.m, field)])

    @property
    def total_blocks(self) -> int:
        return self._s("TOT")

    @property
    def used_blocks(self) -> int:
        """Blocks held by running requests (a shared prefix block counted once)."""
        return self._s("USED")

    @property
    def cached_idle_blocks(self) -> int:
        """Cached blocks no running request holds (evictable)."""
        return self._s("NLRU")

    @property
    def free_blocks(self) -> int:
        """Blocks an allocation can get: free and evictable."""
        return self._s("TOT") - self._s("USED")

    @property
    def queue_len(self) -> int:
        return self._s("QLEN")

    @property
    def n_running(self) -> int:
        return self._s("NRUN")

    @property
    def n_dec(self) -> int:
        return self._s("NDEC")

    def held(self, j: int) -> int:
        """KV blocks request j holds now (between steps; shared ones included)."""
        k, m = self.k, self.m
        if k.RQ[j, m.RST] == m.R_DECODE:
            if k.S[0, m.POL] == m.P_STATIC:
                return int(k.RQ[j, m.HELD])
            return -(-int(k.RA[j] + k.S[0, m.DIT]) // self._s("BS"))
        return int(k.RQ[j, m.HELD]) if k.RQ[j, m.RST] == m.R_PREFILL else 0

    def running(self) -> list[int]:
        """Prefilling and decoding requests."""
        k, m = self.k, self.m
        out = []
        j = int(k.S[0, m.PH])
        while j >= 0:
            out.append(j)
            j = int(k.RQ[j, m.NXT])
        out += [int(k.FH[0, c] & 0xFFFFFFFF) for c in range(self._s("FHLEN"))]
        return out

    def finished(self) -> list[int]:
        """Requests completed (delivered), in index order."""
        return [int(j) for j in (self.k.STATUS == compiled.COMPLETED).nonzero()[0]]
