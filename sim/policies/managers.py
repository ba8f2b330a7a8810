"""Power-manager policies: every control interval, keep the facility's draw (IT x PUE) within the
live supply by capping clocks, draining replicas or shedding arrivals. Registered by name in
sim/registry.py; a user's manager has the same interface.

Interface: `act(self, fac, supply_w)`, called every `facility.manager.interval_s` with the live
supply (W: what the sources sustain, the turbines as fast as they can follow; a battery is not
in it: it bridges a shortfall while the manager acts, `fac.bridge_w`). `fac` is the facility's
narrow interface:
- `fac.replicas`: the replicas that can serve now (not failed, commissioned), each with `index`,
  `pool` (its PoolConfig: `name`, `priority`, `tp`, `hardware`), `drained`, `cap_w` (per
  accelerator, None = uncapped);
- `fac.budget_w()`: what the accelerators may draw at full activity (supply / PUE, bounded by
  the tents' IT limits, less what the hosts draw);
- `fac.draw_w`: the facility's draw now (IT x PUE, W); `fac.bridge_w`: what the battery can add
  now; `fac.over_supply`: whether the draw is above the supply and the bridge together;
- `fac.set_cap(index, w_per_accelerator | None)`, `fac.drain(index)`, `fac.undrain(index)`,
  `fac.shed(on)` (reject new requests while on).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sim.perf.catalog import Hardware
    from sim.policies.interfaces import PowerArrays, PowerControl, PowerReplica


def min_cap_w(hw: Hardware) -> float:
    """Lowest per-accelerator power limit a part accepts (about 30% of TDP on current GPUs,
    e.g. 200 W of an H100 SXM's 700 W in nvidia-smi's range)."""
    return max(hw.idle_w, 0.3 * hw.tdp_w)


@lru_cache(maxsize=64)
def _limits_w(idle_w: float, tdp_w: float, tp: int) -> tuple[float, float]:
    """(floor, full) of a replica, W for all its accelerators (a manager reads them for every
    replica at every interval: from this cache, not the config's attributes)."""
    return max(idle_w, 0.3 * tdp_w) * tp, tdp_w * tp


def _floor_w(r: PowerReplica) -> float:
    hw = r.pool.hardware
    return _limits_w(hw.idle_w, hw.tdp_w, r.pool.accels)[0]


def _full_w(r: PowerReplica) -> float:
    hw = r.pool.hardware
    return _limits_w(hw.idle_w, hw.tdp_w, r.pool.accels)[1]


class Manager:
    """Base class of power-manager policies (a plug-in need not subclass it)."""

    def act(self, fac: PowerControl, supply_w: float) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class NoManager(Manager):
    def act(self, fac: PowerControl, supply_w: float) -> None:
        return None


def _cap_all(fac: PowerControl, caps_w: dict[int, float]) -> None:
    """Caps per replica (W for all its accelerators); full power means no cap."""
    for r in fac.replicas:
        c = caps_w[r.index]
        fac.set_cap(r.index, None if c >= _full_w(r) - 1e-9 else c / r.pool.accels)


def _caps_arrays(fac: PowerArrays, caps_w: np.ndarray) -> None:
    """_cap_all over arrays: per-accelerator caps, NaN (none) at full power."""
    fac.set_caps(fac.index, np.where(caps_w >= fac.full_w - 1e-9, np.nan, caps_w / fac.accels))


class CapUniform(Manager):
    """One per-accelerator cap: the budget shared evenly, within each part's range."""

    def act(self, fac: PowerControl, supply_w: float) -> None:
        live = fac.replicas
        if not live:
            return
        per = fac.budget_w() / sum(r.pool.accels for r in live)
        _cap_all(fac, {r.index: min(_full_w(r), max(_floor_w(r), per * r.pool.accels)) for r in live})

    def act_arrays(self, fac: PowerArrays, supply_w: float) -> None:
        """act over a site's arrays (the same caps to rounding)."""
        if not len(fac.index):
            return
        per = fac.budget_w() / float(fac.accels.sum())
        _caps_arrays(fac, np.minimum(fac.full_w, np.maximum(fac.floor_w, per * fac.accels)))


class Shed(CapUniform):
    """cap_uniform, and reject new requests while the draw is over the supply."""

    def act(self, fac: PowerControl, supply_w: float) -> None:
        if not fac.replicas:
            return
        over = fac.over_supply
        super().act(fac, supply_w)
        fac.shed(over)

    def act_arrays(self, fac: PowerArrays, supply_w: float) -> None:
        if not len(fac.index):
            return
        over = fac.over_supply
        super().act_arrays(fac, supply_w)
        fac.shed(over)


class CapPriority(Manager):
    """Water-filling: everyone at its floor, then the most important pools (lowest priority
    value) raised to full power first; batch pools are the ones left capped."""

    def act(self, fac: PowerControl, supply_w: float) -> None:
        live = fac.replicas
        if not live:
            return
        caps = {r.index: _floor_w(r) for r in live}
        left = fac.budget_w() - sum(caps.values())
        for r in sorted(live, key=lambda r: (r.pool.priority, r.index)):
            add = min(max(left, 0.0), _full_w(r) - _floor_w(r))
            caps[r.index] += add
            left -= add
        _cap_all(fac, caps)

    def act_arrays(self, fac: PowerArrays, supply_w: float) -> None:
        """act over a site's arrays: each replica in (priority, index) order gets what is left
        after those before it, up to its room (the same caps to rounding)."""
        if not len(fac.index):
            return
        order = np.lexsort((fac.index, fac.priority))
        room = (fac.full_w - fac.floor_w)[order]
        left = fac.budget_w() - float(fac.floor_w.sum())
        before = np.cumsum(room) - room  # the room of those served first
        add = np.empty_like(room)
        add[order] = np.clip(left - before, 0.0, room)
        _caps_arrays(fac, fac.floor_w + add)


class Drain(Manager):
    """Keep as many replicas at full power as the budget allows, most important first, while
    the drained ones finish what they have at their lowest power limit (their draw counts until
    they switch off)."""

    def act(self, fac: PowerControl, supply_w: float) -> None:
        live = fac.replicas
        if not live:
            return
        budget = fac.budget_w()
        used = sum(_floor_w(r) for r in live)
        for r in sorted(live, key=lambda r: (r.pool.priority, r.index)):
            if used - _floor_w(r) + _full_w(r) <= budget + 1e-6:
                used += _full_w(r) - _floor_w(r)
                fac.set_cap(r.index, None)
                fac.undrain(r.index)
            else:
                fac.set_cap(r.index, _floor_w(r) / r.pool.accels)
                fac.drain(r.index)
