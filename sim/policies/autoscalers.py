"""Autoscaling policies: every `autoscaler.interval_s`, how many replicas a pool should have.
Registered by name in sim/registry.py; a user's policy has the same interface.

Interface: `desired(self, pool) -> int`, where `pool` (sim/engine/autoscale.py PoolView) reads
the pool now: `now_s`, `serving`, `starting` (cold starts in progress), `draining`, `current`
(serving + starting), `outstanding` (requests at its serving replicas, queued or running),
`queued`, `kv_used_frac` (mean share of KV blocks in use over the serving replicas),
`ttft_p90_s` (p90 TTFT of the requests that arrived in the last interval; those still waiting
count their wait so far), `arrivals_per_s` (the last interval's), `target` (the scenario's
`autoscaler.target`, None if unset), `min_replicas`, `max_replicas`, `interval_s` and `pool`
(its PoolConfig). The driver clips the answer to [min_replicas, max_replicas], scales up at once
(each new replica serves after its cold start) and scales down to the highest answer of the
last `scale_down_delay_s` (draining: no request is lost).

The built-ins follow the Kubernetes Horizontal Pod Autoscaler's rule (kubernetes.io, "Horizontal
Pod Autoscaling", algorithm details): desired = ceil(current x metric / target), no change while
metric / target is within 10% of 1, and a scale-down stabilisation window (its default 300 s is
our `scale_down_delay_s` default).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sim.policies.interfaces import AutoscaledPool

TOLERANCE = 0.1  # the HPA's default: no change while metric / target is within 10% of 1


def hpa(current: int, metric: float, target: float) -> int:
    """The HPA rule: ceil(current x metric / target), unchanged within the tolerance."""
    if current <= 0:
        return 1
    ratio = metric / target
    if abs(ratio - 1.0) <= TOLERANCE:
        return current
    return max(1, math.ceil(current * ratio - 1e-9))


class Autoscaler:
    """Base class of autoscaling policies (a plug-in need not subclass it)."""

    default_target = 1.0

    def target(self, pool: AutoscaledPool) -> float:
        return pool.target if pool.target is not None else self.default_target

    def desired(self, pool: AutoscaledPool) -> int:  # pragma: no cover - interface
        raise NotImplementedError


class QueuePolicy(Autoscaler):
    """Outstanding requests (queued + running) per serving replica against `target` (default:
    a quarter of the pool's max_batch_size: ASSUMED, a batch large enough to be efficient with
    room for bursts)."""

    def target(self, pool: AutoscaledPool) -> float:
        return pool.target if pool.target is not None else max(1.0, pool.pool.scheduler.max_batch_size / 4)

    def desired(self, pool: AutoscaledPool) -> int:
        # replicas still starting count as carrying none of the load, as the HPA assumes of pods
        # not yet ready when it scales up (so a burst during a cold start does not overshoot)
        per = pool.outstanding / max(pool.current, 1)
        return hpa(pool.current, per, self.target(pool))


class KVPolicy(Autoscaler):
    """Mean share of KV-cache blocks in use over the serving replicas against `target`
    (default 0.7: ASSUMED, headroom before preemption)."""

    default_target = 0.7

    def desired(self, pool: AutoscaledPool) -> int:
        share = pool.kv_used_frac * pool.serving / max(pool.current, 1)  # starting ones: none in use
        return hpa(pool.current, share, self.target(pool))


class SLOPolicy(Autoscaler):
    """p90 TTFT of the last interval's arrivals against `target` (default: the scenario's
    slo.ttft_s, else 1 s)."""

    def target(self, pool: AutoscaledPool) -> float:
        if pool.target is not None:
            return pool.target
        return pool.slo_ttft_s if pool.slo_ttft_s is not None else 1.0

    def desired(self, pool: AutoscaledPool) -> int:
        if pool.ttft_p90_s != pool.ttft_p90_s:  # NaN: no arrivals in the interval
            return pool.current
        return hpa(pool.current, pool.ttft_p90_s, self.target(pool))
