"""Accelerator power and clock under a power cap (pure functions over a PerfModel step).

Power: P = P_idle + (TDP - P_idle) x activity, with activity = u_c x f^3 + m x u_m, clipped to 1:
- u_c = compute-busy fraction of the step, u_m = memory-busy fraction (time each roofline term
  takes over the step's length); m = `memory_power_frac`, the share of the dynamic range a
  bandwidth-saturated, compute-idle accelerator draws. Splitwise's measured table
  (data/validation/splitwise) shows it: A100 TP2 token-phase runs average 0.74 x TDP while
  prompt phases peak at 1.0 x TDP.
- f = clock factor (1 = full clock). Dynamic power of the compute units scales as f V^2 with V
  roughly proportional to f in the DVFS range, so as f^3 (the standard CMOS model).
Under a per-accelerator cap W the clock drops to the largest f with P(f) <= W. Compute-bound
work (prefill) slows as 1/f; memory-bound decode barely changes, because HBM bandwidth does not
follow the core clock and its compute share is small: the effect Splitwise (Patel et al., ISCA
2024) and POLCA (Patel et al., ASPLOS 2024) measured (prompt phase slows under a cap, token phase
is nearly unaffected). Only deep caps (clock below BW_KNEE) slow decode, with memory bandwidth
and memory power falling in proportion. Energy of a step = P x t x tp.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_CLOCK = 0.3  # DVFS floor: below this, a cap cannot be met by clocks alone
# Below this clock factor the cores can no longer keep HBM saturated: memory-bound throughput
# (and memory power) fall in proportion. An assumption consistent with POLCA's finding that
# decode tolerates moderate caps but not deep ones.
BW_KNEE = 0.5


@dataclass(frozen=True)
class StepPower:
    t_s: float  # step time at clock f
    power_w: float  # per accelerator
    clock: float


def step_power(m1: float, c1: float, m2: float, c2: float, fixed_s: float, idle_w: float, tdp_w: float,
               mem_frac: float, cap_w: float | None = None) -> StepPower:
    """Time, per-accelerator power and clock of one step from its roofline terms (s at full
    clock): main (m1 memory, c1 compute), routed experts (m2, c2), and `fixed_s` (communication
    and CPU overhead, unaffected by the clock)."""

    def at(f: float) -> StepPower:
        b = min(1.0, f / BW_KNEE)  # achievable fraction of the memory bandwidth
        t = max(m1 / b, c1 / f) + max(m2 / b, c2 / f) + fixed_s
        if t <= 0:
            return StepPower(0.0, idle_w, f)
        u_c = min(1.0, (c1 + c2) / f / t)
        u_m = min(1.0, (m1 + m2) / b / t)
        act = min(1.0, u_c * f ** 3 + mem_frac * b * u_m)
        return StepPower(t, idle_w + (tdp_w - idle_w) * act, f)

    full = at(1.0)
    if cap_w is None or full.power_w <= cap_w:
        return full
    lo, hi = MIN_CLOCK, 1.0
    if at(lo).power_w > cap_w:
        return at(lo)  # the cap is below what clocks can reach; power stays above it
    for _ in range(14):
        mid = 0.5 * (lo + hi)
        if at(mid).power_w <= cap_w:
            lo = mid
        else:
            hi = mid
    return at(lo)
