"""A coupled site: every cell of a fleet on one power bus (`[fleet] power_bus = "shared"`),
advanced in lockstep windows, with one site-level facility acting on their summed draw.

Each window [T - w, T] (w: `[fleet] window_s`, by default the power manager's interval):
1. every cell runs to T where it lives (sim/engine/drivers/cell.py; a block of cells in this
   process, a local worker process or a Dask actor: sim/studies/blocks.py) and reports its IT
   draw over the window in bins of `[fleet] bin_s`, per tent, and its replicas' state;
2. the site (`Site`) feeds the summed bins to its one ledger (every turbine and its ramp, the
   battery, each tent's PUE: sim/facility/ledger.py) with its own events in time order (each
   unit's random trips drawn once for the site, scheduled trips), then at T runs the power
   manager, any policy, plug-ins included, over a view of every cell's replicas (`SiteView`);
3. the manager's decisions (per replica: cap, drain, undrain; shedding) go back to the cells,
   which apply them at T before their next window.
Only bins, replica states and decisions cross between the site and the cells. A cell's results
depend only on its scenario, its seed and the decisions it was given, and the site sums the
cells' bins in cell order: the same bits on any executor and worker count.

What the figures rest on: energy is the cells' exact integrals; the site's peak, its time over
the supply and its ramps see the draw averaged over a bin, and the manager decides on what the
site saw. The coupling is exact in the limit: one cell coupled against the same cell run alone
gives the same energy to 1e-9 at 0.0002 s bins; at the default 0.001 s, mean power within 0.3%,
peak and battery energy within about 1% (a cap decided on a bin's mean moves later events);
at 0.01 s the battery's energy is 12% short (tests/test_site.py, benchmarks/bench_site.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from sim.engine.drivers.cell import DRAIN, UNDRAIN, window_bins
from sim.engine.facility_procs import cap_value, live_supply_w, replica_index, start_sources
from sim.engine.kernel.layout import PW_R, PW_T, PW_W
from sim.facility.ledger import Ledger, apply_rows
from sim.registry import MANAGERS


@dataclass
class Decisions:
    """A window's decisions for a run of replicas (the site's, or a block's slice), applied at `t`."""

    t: float
    cap_set: np.ndarray  # bool per replica: its cap was set
    cap_w: np.ndarray  # the cap per accelerator (NaN: none)
    drain: np.ndarray  # int8 per replica: KEEP, DRAIN or UNDRAIN (the last called)
    shed: bool | None  # shedding on/off (None: not called)

    def part(self, lo: int, hi: int) -> "Decisions":
        return Decisions(self.t, self.cap_set[lo:hi], self.cap_w[lo:hi], self.drain[lo:hi], self.shed)


class _Replica:
    """A replica of the site as a manager sees it (its index: the site's numbering)."""

    __slots__ = ("_v", "index", "pool")

    def __init__(self, view: "SiteView", index: int, pool: Any) -> None:
        self._v, self.index, self.pool = view, index, pool

    @property
    def drained(self) -> bool:
        return bool(self._v.drained[self.index])

    @property
    def cap_w(self) -> float | None:
        c = float(self._v.cap[self.index])
        return None if math.isnan(c) else c


class SiteView:
    """The manager's narrow interface over every cell's replicas, numbered as one monolithic run
    numbers them: per replica (PowerControl, any policy, plug-ins included) and as arrays
    (PowerArrays: the built-in managers' act_arrays, one call for a site of 70,000 replicas).
    What it is told to do is collected as Decisions."""

    def __init__(self, site: "Site", reps: list[Any], supply_w: float, bridge_w: float) -> None:
        self._site = site
        self._supply_w, self._bridge_w = supply_w, bridge_w
        self.live = np.concatenate([r.live for r in reps])
        self.drained = np.concatenate([r.drained for r in reps])
        self.cap = np.concatenate([r.cap_w for r in reps])
        self._hosts_w = sum(r.hosts_on_uw for r in reps) * 1e-6
        self._draw_w = sum(r.draw_uw for r in reps) * 1e-6
        n = len(self.live)
        self._set = np.zeros(n, bool)
        self._drain = np.zeros(n, np.int8)
        self._shed: bool | None = None
        self._live: list[_Replica] | None = None
        self.index = np.flatnonzero(self.live)  # PowerArrays: the live replicas' columns
        self.priority, self.floor_w = site.priority[self.index], site.floor_w[self.index]
        self.full_w, self.accels = site.full_w[self.index], site.accels[self.index]

    @property
    def replicas(self) -> list[_Replica]:
        """Replicas that can serve now (not failed, commissioned), in the site's replica order."""
        if self._live is None:
            pools = self._site.pool_of
            self._live = [_Replica(self, i, pools[i]) for i in self.index.tolist()]
        return self._live

    @property
    def draw_w(self) -> float:
        return self._draw_w

    @property
    def bridge_w(self) -> float:
        return self._bridge_w

    @property
    def over_supply(self) -> bool:
        return self._draw_w > self._supply_w + self._bridge_w

    def budget_w(self) -> float:
        led, fac = self._site.ledger, self._site.fac
        pue = max(led.pue_of) if led.pue_of else 1.0
        return min(self._supply_w / pue, sum(t.it_limit_w for t in fac.tents)) - self._hosts_w

    def set_cap(self, index: int, w_per_accel: float | None) -> None:
        i = replica_index(index, len(self.live), "set_cap")
        w = cap_value(w_per_accel)
        self._set[i] = True
        self.cap[i] = math.nan if w is None else w

    def set_caps(self, index: np.ndarray, w_per_accel: np.ndarray) -> None:
        """PowerArrays: caps per accelerator for these replicas (NaN: none), in one call."""
        self._set[index] = True
        self.cap[index] = w_per_accel

    def drain(self, index: int) -> None:
        i = replica_index(index, len(self.live), "drain")
        self._drain[i] = DRAIN
        self.drained[i] = True

    def undrain(self, index: int) -> None:
        i = replica_index(index, len(self.live), "undrain")
        self._drain[i] = UNDRAIN
        self.drained[i] = False

    def shed(self, on: bool) -> None:
        self._shed = bool(on)

    def decisions(self, t: float) -> Decisions:
        return Decisions(t, self._set, self.cap, self._drain, self._shed)


def _compiled() -> Any:
    """The compiled engine's namespace (its ledger walk), or None without numba."""
    from sim.engine.kernel.jit import NUMBA_ERROR

    if NUMBA_ERROR is not None:
        return None
    from sim.engine.compilation import compiled

    return compiled()


def _min_cap(cap: np.ndarray) -> float:
    """The lowest per-accelerator cap (NaN: none capped)."""
    return float(np.nanmin(cap)) if len(cap) and not np.isnan(cap).all() else math.nan


class Site:
    """The site's facility: one ledger on the cells' summed draw, the sources' events, the manager."""

    def __init__(self, fac: Any, seed: int, bin_s: float, pools: list[Any]) -> None:
        """pools: each of the site's replicas' pool (PoolConfig), in the site's order (cell by cell)."""
        import simpy

        from sim.policies.managers import _limits_w
        from sim.registry import Registry

        self.env = simpy.Environment()
        self.end = self.env.event()
        self.fac = fac
        self.sc = SimpleNamespace(seed=seed)  # the sources' random streams: the site's seed
        self.bin_s = bin_s
        n_t = len(fac.tents)
        self.ledger = Ledger(n_t, list(range(n_t)), [t.pue(0.0) for t in fac.tents])  # a "replica" per tent
        self.ledger.attach_sources(fac)
        self.ledger.rep_w, self.ledger.tent_it_w = np.zeros(n_t), np.zeros(n_t)  # (arrays: the compiled walk's)
        self._tent_of = np.arange(n_t, dtype=np.int64)
        self._m = _compiled()
        self.units_up = {s.name: s.units for s in fac.sources if s.kind == "gas_turbine"}
        self.supply_drops = 0
        self.trip_marks: list[float] = []
        self.pool_of = pools
        self.n_replicas = len(pools)
        # each replica's pool's priority and power range (what the built-in managers read), once
        by_pool: dict[int, tuple[int, float, float, int]] = {}
        for p in pools:
            if id(p) not in by_pool:
                hw = p.hardware
                by_pool[id(p)] = (p.priority, *_limits_w(hw.idle_w, hw.tdp_w, p.accels), p.accels)
        cols = np.array([by_pool[id(p)] for p in pools], dtype=np.float64).reshape(-1, 4)
        self.priority = cols[:, 0].astype(np.int64)
        self.floor_w, self.full_w, self.accels = cols[:, 1], cols[:, 2], cols[:, 3]
        self.manager = MANAGERS.make(fac.manager_policy)
        # the built-in managers act over arrays (one call); a plug-in replica by replica
        self._arrays = not Registry.is_plugin(fac.manager_policy) and hasattr(self.manager, "act_arrays")
        self.t0 = 0.0
        start_sources(self)

    def _feed(self, rows: tuple[np.ndarray, np.ndarray, np.ndarray], q: int, t: float) -> int:
        """The bins' rows (time, tent, W) from q up to t (those at t too: power changes come
        before the facility's events of their instant), then the ledger on to t: by the compiled
        engine's ledger walk (the same arithmetic, sim/facility/ledger.py apply_rows) where numba
        is, as a window holds thousands of bins."""
        ts, rs, ws = rows
        q1 = int(np.searchsorted(ts, t, side="right"))
        led = self.ledger
        n = q1 - q
        if n and self._m is not None:
            pw = np.empty((n, 3))
            pw[:, PW_T], pw[:, PW_R], pw[:, PW_W] = ts[q:q1], rs[q:q1], ws[q:q1]
            scratch = (np.empty(n), np.empty(n, np.int64), np.empty(n), np.empty(2 * n + 1, np.int64))
            self._m.ledger_walk(pw, n, t, led.L, led.rep_w, self._tent_of, led.tent_it_w,
                                np.asarray(led.pue_of, dtype=np.float64), *scratch)
            q = q1
        apply_rows(led.L, led.rep_w, led.tent_of, led.tent_it_w, led.pue_of, ts, rs, ws, q, q1, t)
        return q1

    def window(self, T: float, reps: list[Any], t_end: float | None = None) -> Decisions | None:
        """The window ending at T from the blocks' reports (sim/studies/blocks.py BlockReport, in
        block order): their summed draw and the site's events into the ledger, then the
        manager's decisions at T for every replica (None: the run ended at t_end <= T)."""
        env = self.env
        stop = T if t_end is None else t_end
        if T > self.t0:
            edges = window_bins(self.t0, T, self.bin_s)
            it_uj = np.sum([r.it_uj for r in reps], axis=0)  # (integers: the same sum however blocked)
            w = it_uj * 1e-6 / np.diff(edges)  # (tents, bins): mean IT draw per bin, W
            n_t, nb = w.shape
            rows = (np.repeat(edges[:-1], n_t), np.tile(np.arange(n_t), nb), w.T.reshape(-1))
            q = 0
            while env.peek() <= stop:
                q = self._feed(rows, q, env.peek())
                env.step()
            self._feed(rows, q, stop)
        else:  # the run's start: every cell's draw from T on
            it_w = np.sum([r.it_uw for r in reps], axis=0) * 1e-6
            n_t = len(it_w)
            self._feed((np.full(n_t, T), np.arange(n_t), it_w), 0, T)
        self.t0 = T
        if t_end is not None:
            self.ledger.sample(t_end, self.units_up, _min_cap(np.concatenate([r.cap_w for r in reps])), 0)
            self.ledger.close(t_end)
            return None
        return self._manage(T, reps)

    def _manage(self, T: float, reps: list[Any]) -> Decisions:
        led, fac = self.ledger, self.fac
        for k, t in enumerate(fac.tents):
            led.set_pue(k, t.pue(T), T)
        supply = live_supply_w(fac, led, self.units_up)
        view = SiteView(self, reps, supply, led.battery_w * (led.battery_j > 0))
        if len(view.index):
            if self._arrays:
                self.manager.act_arrays(view, supply)
            else:
                self.manager.act(view, supply)
        comm = np.concatenate([r.comm for r in reps])
        led.sample(T, self.units_up, _min_cap(view.cap), int(np.count_nonzero(view.drained & ~comm)))
        return view.decisions(T)

    def figures(self, t_end: float) -> dict[str, Any]:
        """The site's own figures (the fleet summary's fleet_* power keys)."""
        led = self.ledger
        return {"fleet_facility_power_peak_w": led.peak_fac_w,
                "fleet_facility_power_mean_w": led.energy_fac_j / t_end if t_end > 0 else 0.0,
                "fleet_energy_j": led.energy_fac_j, "fleet_it_energy_j": led.energy_it_j,
                "fleet_battery_used_j": led.battery_used_j,
                "ramp_limit_exceeded_s": led.ramp_exceeded_s, "power_limit_exceeded_s": led.exceeded_s,
                "supply_drops": self.supply_drops, "trip_times_s": list(self.trip_marks)}
