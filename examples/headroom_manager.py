"""A power-manager plug-in: cap on the facility's actual draw rather than on the worst case.
cap_uniform caps whenever the accelerators *could* draw more than the supply at full activity;
this one leaves every clock at full speed while the measured draw stays `margin` below the
supply, and caps uniformly to the budget only once it does not. It keeps full clocks more of
the time, and pays for it with more time over the supply (each cap comes an interval late).

    [facility.manager]
    policy = "examples/headroom_manager.py:Headroom"
"""


class Headroom:
    margin = 0.05  # fraction of the supply kept in reserve

    def act(self, fac, supply_w: float) -> None:
        live = fac.replicas
        if not live:
            return
        if fac.draw_w < supply_w * (1.0 - self.margin):
            for r in live:
                fac.set_cap(r.index, None)
            return
        per_accel = fac.budget_w() / sum(r.pool.accels for r in live)  # accelerators per replica (tp, or ep)
        for r in live:
            hw = r.pool.hardware
            w = min(hw.tdp_w, max(hw.idle_w, 0.3 * hw.tdp_w, per_accel))
            fac.set_cap(r.index, None if w >= hw.tdp_w else w)
