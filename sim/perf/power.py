"""Accelerator power and clock under a power cap or a locked clock (pure functions over a
PerfModel step).

Power: P = P_idle + (TDP - P_idle) x activity, clipped at TDP, with
    activity = f^3 x (k + (1 - k) x u_c) + m x b x u_m
- u_c = compute-busy fraction of the step, u_m = memory-busy fraction (time each roofline term
  takes over the step's length), f = clock factor (1 = the part's maximum clock), b = the share
  of memory bandwidth the cores can still drive at f (1 above BW_KNEE);
- k = `clock_power_frac`: what the clocked, active chip draws whatever its math units do (SM
  clock trees, schedulers, caches and on-chip network issuing the step's loads): it follows the
  clock even in a memory-bound step. Its dynamic power scales as f V^2 with V roughly
  proportional to f in the DVFS range, so as f^3 (the standard CMOS model), as does the math;
- m = `memory_power_frac`: the HBM and its interface at full bandwidth, which do not follow the
  core clock.
So a cap first lowers the clock at little cost to a memory-bound decode step (its time barely
changes while its k f^3 term falls), and slows compute-bound prefill as 1/f: what Splitwise
(Patel et al., ISCA 2024) measured on H100 (the token phase tolerates 700 -> 350 W, the prompt
phase does not) and what "The Illusion of Power Capping in LLM Decode" (arXiv 2605.11999)
reports on H200 (lower SM clocks save decode energy at under 1% throughput). Only deep clocks
(below BW_KNEE) slow decode, with memory bandwidth and memory power falling in proportion.
k and m per accelerator are fitted on measured serving power (sim/validation/power.py,
docs/power.md). Energy of a step = P x t x tp.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_CLOCK = 0.3  # DVFS floor: below this, a cap cannot be met by clocks alone
# The hosts' draw (CPUs, NICs, NVSwitch, fans, power conversion) per accelerator, from the server's
# maximum power (catalog node_w_per_accel, a system spec): its headroom over the accelerators' TDP is
# what the hosts may draw at most; serving, they draw HOST_LOADED_SHARE of it, idle HOST_IDLE_SHARE.
# Both shares are ASSUMED (no node wall-power measurement is shipped): CPUs lightly loaded by an
# inference server, fans at part speed; a DGX H100 (10.2 kW for 8 x 700 W) gives 288 W per GPU
# serving and 173 W idle. A part without a system spec takes NODE_PER_TDP (the DGX H100's ratio).
HOST_LOADED_SHARE = 0.5
HOST_IDLE_SHARE = 0.3
NODE_PER_TDP = 10200.0 / 8 / 700
# Below this clock factor the cores can no longer keep HBM saturated: memory-bound throughput
# (and memory power) fall in proportion. An assumption consistent with POLCA's finding that
# decode tolerates moderate caps but not deep ones.
BW_KNEE = 0.5


@dataclass(frozen=True)
class StepPower:
    t_s: float  # step time at clock f
    power_w: float  # per accelerator
    clock: float


# The two functions below are the only statement of the step's time and power under a clock:
# PerfModel (dcsim perf, calibration, the SimPy driver) calls them as Python and the compiled
# engine compiles these same functions with numba, so they use only what numba's nopython mode
# compiles (floats, min/max, no objects).

def at_clock(m1: float, c1: float, m2: float, c2: float, fixed_s: float, f: float, idle_w: float,
             dyn_w: float, mem_frac: float, clk_frac: float) -> tuple[float, float]:
    """(time s, power W per accelerator) of one step at clock factor f from its roofline terms
    (s at full clock): main (m1 memory, c1 compute), routed experts (m2, c2), and `fixed_s`
    (communication and CPU overhead, unaffected by the clock). At f = 1 every division by f or b
    is exact, so the uncapped step costs the same bits as the plain roofline."""
    if f == 1.0:
        # full clock: the general case below with every division by f and b (both 1) left out,
        # which gives the same bits; the simulator's hot path
        t = (m1 if m1 >= c1 else c1) + (m2 if m2 >= c2 else c2) + fixed_s
        if t <= 0.0:
            return 0.0, idle_w
        inv = 1.0 / t
        act = clk_frac + (1.0 - clk_frac) * min(1.0, (c1 + c2) * inv) + mem_frac * min(1.0, (m1 + m2) * inv)
        return t, idle_w + dyn_w * min(1.0, act)
    b = min(1.0, f / BW_KNEE)  # achievable fraction of the memory bandwidth
    mb1 = m1 / b
    cf1 = c1 / f
    mb2 = m2 / b
    cf2 = c2 / f
    t = (mb1 if mb1 >= cf1 else cf1) + (mb2 if mb2 >= cf2 else cf2) + fixed_s
    if t <= 0.0:
        return 0.0, idle_w
    inv = 1.0 / t
    u_c = min(1.0, (c1 + c2) / f * inv)
    u_m = min(1.0, (m1 + m2) / b * inv)
    act = min(1.0, (f * f * f) * (clk_frac + (1.0 - clk_frac) * u_c) + mem_frac * b * u_m)
    return t, idle_w + dyn_w * act


def _capped_with(at_clock):
    """`capped` over a given at_clock: the Python one here, the compiled one in the compiled
    engine (which compiles the function this returns), so the bisection is written once."""

    def capped(m1: float, c1: float, m2: float, c2: float, fixed_s: float, idle_w: float, dyn_w: float,
               mem_frac: float, clk_frac: float, cap_w: float, f_max: float) -> tuple[float, float, float]:
        """(time s, power W per accelerator, clock factor) of one step at a clock locked at f_max
        (1: not locked) under a per-accelerator cap (cap_w <= 0 or NaN: none): the largest clock up
        to f_max whose power fits, by bisection (14 halvings of [MIN_CLOCK, f_max]); at MIN_CLOCK
        if even that draws more than the cap."""
        t, pw = at_clock(m1, c1, m2, c2, fixed_s, f_max, idle_w, dyn_w, mem_frac, clk_frac)
        if not cap_w > 0.0 or pw <= cap_w:
            return t, pw, f_max
        lo = MIN_CLOCK
        hi = f_max
        t, pw = at_clock(m1, c1, m2, c2, fixed_s, lo, idle_w, dyn_w, mem_frac, clk_frac)
        if pw > cap_w:
            return t, pw, lo  # the cap is below what clocks can reach; power stays above it
        for _ in range(14):
            mid = 0.5 * (lo + hi)
            if at_clock(m1, c1, m2, c2, fixed_s, mid, idle_w, dyn_w, mem_frac, clk_frac)[1] <= cap_w:
                lo = mid
            else:
                hi = mid
        t, pw = at_clock(m1, c1, m2, c2, fixed_s, lo, idle_w, dyn_w, mem_frac, clk_frac)
        return t, pw, lo

    return capped


capped = _capped_with(at_clock)


def host_power_w(tdp_w: float, node_w_per_accel: float | None, loaded: bool) -> float:
    """The hosts' draw per accelerator, W: a share of the server's headroom over the accelerators'
    TDP (HOST_LOADED_SHARE serving, HOST_IDLE_SHARE idle; both assumed)."""
    node = node_w_per_accel if node_w_per_accel is not None else NODE_PER_TDP * tdp_w
    return max(node - tdp_w, 0.0) * (HOST_LOADED_SHARE if loaded else HOST_IDLE_SHARE)
