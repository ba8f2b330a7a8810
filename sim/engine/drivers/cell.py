"""A cell of a coupled site on the fast driver: the facility driver run window by window.

A coupled site (sim/studies/site.py) advances its cells in lockstep windows. Each window a cell
runs every event up to the window's end T (`advance`), reports what the site's facility reads
(`report`: its IT draw binned over the window, per tent, and its replicas' state for the power
manager), and takes the manager's decisions at T (`apply`: caps, drains, shedding). The cell's
own facility processes are its nodes' failures, commissioning and autoscalers; its sources and
manager are the site's (start_facility(site=False)). Its ledger integrates its own energy at
an unbounded supply; the supply side (turbines, ramps, battery) is the site's ledger, fed the
sum of every cell's bins.

The bins are exact integrals of the cell's IT draw (a step function): each power row the ledger
walk applies is kept as (time, tent, change), and each bin's energy is the integral between its
edges, so the site's energy is the cells' to rounding; the site's peak and ramps see the draw
averaged over a bin (`[fleet] bin_s`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim.engine.drivers.facility import FacilityDriver
from sim.engine.kernel.layout import CAP, DOWN, DRN, REST_W

# a replica's decision of a window (apply): no change, drain, undrain
KEEP, DRAIN, UNDRAIN = 0, 1, 2


@dataclass
class CellReport:
    """What one cell tells the site at a window's end T."""

    it_uj: np.ndarray | None  # (tents, bins): IT energy of each bin, integer microjoules (sums in any order
    #                           are exact: a block of cells sends their sum, the same bits however blocked)
    it_uw: np.ndarray  # (tents,): IT draw now, integer microwatts
    live: np.ndarray  # bool per replica: can serve (not failed, commissioned)
    drained: np.ndarray  # bool per replica
    comm: np.ndarray  # bool per replica: commissioning (or scaled off)
    cap_w: np.ndarray  # per-accelerator cap per replica (NaN: none)
    hosts_on_uw: int  # what the hosts of replicas drawing power draw now, integer microwatts
    draw_uw: int  # the cell's facility draw now (IT x PUE), integer microwatts
    done_at: float | None  # when its last request left (None: some still to come or in flight)


def window_bins(t0: float, t1: float, bin_s: float) -> np.ndarray:
    """The bin edges of a window [t0, t1]: every bin_s from t0, the last one shorter."""
    nb = max(1, int(math.ceil((t1 - t0) / bin_s - 1e-9)))
    edges = t0 + bin_s * np.arange(nb + 1, dtype=np.float64)
    edges[-1] = t1
    return edges


def step_integrals(v0: float, t: np.ndarray, d: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The integral of a step function over each interval of `edges`: value v0 before the first
    change, + d[q] from t[q] on (t sorted, within [edges[0], edges[-1]])."""
    knots = np.concatenate(([edges[0]], t, [edges[-1]]))
    vals = v0 + np.concatenate(([0.0], np.cumsum(d)))  # the value from each knot to the next
    cum = np.concatenate(([0.0], np.cumsum(vals * np.diff(knots))))  # the integral up to each knot
    at = np.interp(edges, knots, cum)  # piecewise linear between knots: exact at the edges
    return np.diff(at)


class CellDriver(FacilityDriver):
    """A cell's kernel and facility processes, advanced a window at a time by the site."""

    def __init__(self, sim: Any, kernel: Any, bin_s: float) -> None:
        super().__init__(sim, kernel)
        self.bin_s = bin_s
        n_t = len(self.ledger.pue_of)
        self._t0 = 0.0  # the window's start
        self._it0 = np.zeros(n_t)  # each tent's IT draw then
        self._rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (t, tent, change) walked
        self.wall0 = time.perf_counter()

    def start(self) -> None:
        from sim.engine.facility_procs import start_facility

        for r in range(len(self.replicas)):  # as run(): every replica at rest power from 0
            self.ledger.set_power(r, float(self.kernel.F[r, REST_W]), 0.0)
        self._it0 = np.asarray(self.ledger.tent_it_w, dtype=np.float64).copy()
        start_facility(self, site=False)

    def _walk(self, t_max: float) -> None:
        """The facility driver's walk, keeping each applied row's change of its tent's draw."""
        PW, n = self.kernel.power_rows()
        if n == 0:
            return
        w0 = np.asarray(self.ledger.rep_w, dtype=np.float64).copy()
        super()._walk(t_max)
        q = n - self.kernel.power_rows()[1]
        if q == 0:
            return
        ts, rs, ws = self._sorted[0][:q].copy(), self._sorted[1][:q].copy(), self._sorted[2][:q].copy()
        # each row's change: its draw less the replica's previous row's (or its draw before)
        order = np.argsort(rs, kind="stable")  # by replica, in time order within each
        r_o, w_o = rs[order], ws[order]
        prev = np.empty(q)
        prev[1:] = w_o[:-1]
        first = np.ones(q, bool)
        first[1:] = r_o[1:] != r_o[:-1]
        prev[first] = w0[r_o[first]]
        d = np.empty(q)
        d[order] = w_o - prev
        self._rows.append((ts, self._tent_of[rs], d))

    def advance(self, T: float) -> None:
        """Every event before T, then the kernel and the ledger to T (the site's decisions at T
        come after the cell's events of times before T, as the manager's tick does)."""
        env, k = self.env, self.kernel
        hz = k.st.clk.horizon
        while env.peek() < T:
            tn = env.peek()
            k.run_until(min(tn, hz))
            self._walk(tn)
            env.step()
        k.run_until(min(T, hz))
        self._walk(T)
        if T > env.now:
            env.run(until=T)

    def report(self, T: float) -> CellReport:
        """The window [previous T, T]: its bins, and the replicas' state at T."""
        edges = window_bins(self._t0, T, self.bin_s) if T > self._t0 else np.array([T, T])
        n_t = len(self._it0)
        it_j = np.zeros((n_t, len(edges) - 1))
        if self._rows:
            ts = np.concatenate([r[0] for r in self._rows])
            tent = np.concatenate([r[1] for r in self._rows])
            d = np.concatenate([r[2] for r in self._rows])
        else:
            ts, tent, d = np.empty(0), np.empty(0, np.int64), np.empty(0)
        for k in range(n_t):
            m = tent == k
            it_j[k] = step_integrals(float(self._it0[k]), ts[m], d[m], edges)
        self._rows = []
        self._t0 = T
        self._it0 = np.asarray(self.ledger.tent_it_w, dtype=np.float64).copy()
        S, F = self.kernel.S, self.kernel.F
        return CellReport(it_uj=np.rint(it_j * 1e6).astype(np.int64), it_uw=np.rint(self._it0 * 1e6).astype(np.int64),
                          live=(S[:, DOWN] == 0) & ~self._comm, drained=S[:, DRN] != 0, comm=self._comm.copy(),
                          cap_w=F[:, CAP].copy(), hosts_on_uw=round(self.hosts_on_w() * 1e6),
                          draw_uw=round(self.ledger.draw_w() * 1e6),
                          done_at=self._ended(clock=False))

    def apply(self, T: float, cap_set: np.ndarray, cap_w: np.ndarray, drain: np.ndarray, shed: bool | None) -> None:
        """The site's decisions at T: its tents' PUE now (a function of time, as the site's), then
        per replica its cap (cap_set: NaN = none), then drain or undrain; shedding on or off."""
        for k, t in enumerate(self.fac.tents):
            self.ledger.set_pue(k, t.pue(T), T)
        for r in np.flatnonzero(cap_set).tolist():
            c = float(cap_w[r])
            self.replicas[r].cap_w = None if math.isnan(c) else c
        for r in np.flatnonzero(drain).tolist():
            if drain[r] == DRAIN:
                self.replicas[r].drain()
            else:
                self.replicas[r].undrain()
        if shed is not None:
            self.shedding = bool(shed)

    def finish(self) -> Any:
        """The cell's Result at the site's end."""
        from sim.engine.arrays import finish

        return finish(self.sim, self.kernel, self, "compiled", self.wall0)
