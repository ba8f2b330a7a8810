"""The supply side of the power ledger over one interval of constant facility load: generation
that follows the load at a finite ramp rate (gas turbines, reciprocating engines), the supply
deficit, the battery's discharge and recharge, and the turbines' minimum stable load. Pure
functions, used by the Python ledger (sim/facility/ledger.py) and compiled into the fast engine's
ledger walk (sim/engine/kernel/tally.py), so both drivers count the same bits.

Ramp: over an interval of constant load L the ramp-limited units' output g moves toward the
target min(L - base, capacity) (base: sources that follow at once, the grid): down at once, up
at `ramp_w_s` W/s. Besides their output the units take a sudden increase of up to `step_w` (the
step-load acceptance: a governor's and the rotors' inertia), so the load goes short of power only
while target - g > step_w. A battery covers the shortfall while its power and energy allow
(all or nothing per interval, as for supply deficits); otherwise the interval's short time counts
as over the ramp limit.

Recharge: in an interval the battery did not discharge in, it charges at up to its charge power
from the supply's headroom (supply - load), storing `charge_eff` of what it draws, until full.
The charger is a flexible load that takes only headroom: it is left out of the load the ramp
model follows (a BESS controller ramps its charge within what the units can follow).

Minimum load: a running turbine cannot run below `min_load_frac` of its rating; while the load
on the turbines is below what the running units' minimum adds up to, they burn fuel at their
minimum (the rest goes to a load bank or the grid) and the time and that energy are counted.
Units: W, J, s.
"""

from __future__ import annotations


def ramp_step(dt: float, load_w: float, gen_w: float, ramp_w_s: float, step_w: float, cap_w: float,
              base_w: float, bat_w: float, bat_j: float) -> tuple[float, float, float, float]:
    """(output after dt, battery energy left, battery energy used, time short of power) for
    one interval of dt s at load `load_w` starting from output `gen_w` (NaN: not started: the
    units begin at the target, synchronised before the run)."""
    target = load_w - base_w
    if target < 0.0:
        target = 0.0
    if target > cap_w:
        target = cap_w  # beyond the capacity: the ledger's supply deficit, not a ramp's
    if gen_w != gen_w or gen_w >= target:
        return target, bat_j, 0.0, 0.0
    gap0 = target - gen_w - step_w
    used = 0.0
    short = 0.0
    if gap0 > 0.0:
        t_short = gap0 / ramp_w_s if ramp_w_s > 0.0 else dt
        if t_short > dt:
            t_short = dt
        need = gap0 * t_short - 0.5 * ramp_w_s * t_short * t_short
        if bat_w >= gap0 and bat_j >= need:
            bat_j -= need
            used = need
        else:
            short = t_short
    g = gen_w + ramp_w_s * dt
    if g > target:
        g = target
    return g, bat_j, used, short


def _supply_interval_with(ramp_step):
    """`supply_interval` over a given ramp_step: the Python one here, the compiled one in the
    fast engine (which compiles the function this returns), so the interval is written once."""

    def supply_interval(dt: float, fac_w: float, sup_w: float, ramp_on: bool, gen_w: float, bat_j: float,
                        plant: tuple[float, float, float, float, float], battery: tuple[float, float, float, float]
                        ) -> tuple[float, float, float, float, float, float, float, float]:
        """One interval of dt s at facility load `fac_w` under the live supply `sup_w`: (turbine
        output after it (ramp model; NaN when off), battery energy left, battery energy discharged,
        time short of power while ramping, time over the supply, energy drawn to recharge, time below
        the turbines' minimum load, energy burnt at that minimum beyond the load). `gen_w`, `bat_j`:
        the turbines' output and the battery's energy before it; `plant` = (ramp_w_s, step_w, cap_w,
        base_w, min_w): the running turbines' ramp (W/s), the step they take at once, their
        capacity, the instant sources' W and the running turbines' minimum load W; `battery` =
        (bat_w, bat_cap_j, chg_w, chg_eff): the battery's power, capacity, charge power and
        charge efficiency."""
        ramp_w_s, step_w, cap_w, base_w, min_w = plant
        bat_w, bat_cap_j, chg_w, chg_eff = battery
        used = 0.0
        short = 0.0
        if ramp_on:
            gen_w, bat_j, used, short = ramp_step(dt, fac_w, gen_w, ramp_w_s, step_w, cap_w, base_w, bat_w, bat_j)
        over = 0.0
        deficit = fac_w - sup_w
        if deficit > 1e-6:
            cover = deficit if deficit < bat_w else bat_w
            need = cover * dt
            if bat_j >= need and cover >= deficit - 1e-6:
                bat_j -= need
                used += need
            else:
                over = dt
        charged = 0.0
        if used == 0.0 and over == 0.0 and chg_w > 0.0 and bat_j < bat_cap_j:
            head = sup_w - fac_w
            c = chg_w if chg_w < head else head
            if c > 0.0:
                store = c * dt * chg_eff
                if store > bat_cap_j - bat_j:
                    store = bat_cap_j - bat_j
                bat_j += store
                charged = store / chg_eff
        below = 0.0
        burnt = 0.0
        if min_w > 0.0:
            out = fac_w - base_w  # the turbines carry what the instant sources do not
            if out > cap_w:
                out = cap_w
            out += charged / dt
            if out < min_w:
                below = dt
                burnt = (min_w - (out if out > 0.0 else 0.0)) * dt
        return gen_w, bat_j, used, short, over, charged, below, burnt

    return supply_interval


supply_interval = _supply_interval_with(ramp_step)
