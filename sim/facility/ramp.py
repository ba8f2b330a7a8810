"""Generation that follows the load at a finite ramp rate (gas turbines, reciprocating engines):
one pure function, used by the Python ledger (sim/facility/ledger.py) and compiled into the fast
engine's ledger walk (sim/engine/kernel.py), so both drivers count the same bits.

Over an interval of constant facility load L the ramp-limited units' output g moves toward the
target min(L - base, capacity) (base: sources that follow at once, the grid): down at once, up
at `ramp_w_s` W/s. Besides their output the units take a sudden increase of up to `step_w` (the
step-load acceptance: a governor's and the rotors' inertia), so the load goes short of power only
while target - g > step_w. A battery covers the shortfall while its power and energy allow
(all or nothing per interval, as for supply deficits); otherwise the interval's short time counts
as over the ramp limit. Units: W, J, s.
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
