"""An autoscaler plug-in: size the pool on the arrival rate instead of on a backlog. The HPA-style
built-ins react to a queue or a latency that has already grown; this one keeps enough replicas
for the last interval's arrivals at a per-replica capacity the user measured (e.g. with a
saturating `dcsim run` of one replica), plus `headroom`, so it starts replicas as the load rises
rather than after the queue does.

    [pools.autoscaler]
    policy = "examples/rate_autoscaler.py:RateAutoscaler"
    min_replicas = 1
    max_replicas = 16
"""

import math


class RateAutoscaler:
    req_per_s_per_replica = 10.0  # what one replica sustains at the SLO (measure it for your model)
    headroom = 1.2  # replicas for 20% more than the last interval's rate

    def desired(self, pool) -> int:
        # pool: sim/engine/autoscale.py PoolView (arrivals_per_s, outstanding, serving, starting, ...)
        return math.ceil(pool.arrivals_per_s * self.headroom / self.req_per_s_per_replica)
