"""The tie rule of both drivers at one instant, as SimPy event priorities: step ends, wake-ups
and arrivals (SimPy's NORMAL, 1), then closed-loop clients' sends (CLIENT, all of an instant's
at once), then client deadlines (LATE), then the facility's events
(FACILITY: control ticks, trips, failures and repairs, commissioning, re-routed requests
reaching their replica), in the order they were scheduled. The compiled driver's barriers follow
the same rule (sim/engine/drivers/facility.py)."""

from __future__ import annotations

import math
from typing import Any, Callable

import simpy
from simpy.events import EventPriority

CLIENT = EventPriority(2)  # closed-loop clients' sends: after the step ends, wake-ups and arrivals (NORMAL, 1)
LATE = EventPriority(3)  # client deadlines: after the step ends, arrivals and sends of an instant
FACILITY = EventPriority(4)  # facility events: after everything else at their instant


class Later(simpy.events.Event):
    """A timeout with an event priority of its own (SimPy orders events by time, priority, id)."""

    def __init__(self, env: simpy.Environment, delay: float, priority: EventPriority) -> None:
        super().__init__(env)
        self._ok = True
        self._value = None
        env.schedule(self, priority, delay)


def then(event: simpy.events.Event, fn: Callable[..., Any], *args: Any) -> None:
    """Call fn(*args) when `event` is processed."""
    event.callbacks.append(lambda _event: fn(*args))


def delay_to(now: float, target: float) -> float:
    """The delay that takes SimPy's clock (now + delay) to exactly `target` >= now. Plain
    `target - now` can land an ulp off when now is small against the delay, and a window's steps
    must end exactly where stepping one by one would have (now + dt, then + dt, ...)."""
    d = target - now
    while now + d < target:
        d = math.nextafter(d, math.inf)
    while now + d > target:
        d = math.nextafter(d, -math.inf)
    return d


def wait_or_end(env, sim, dt: float):
    """A facility process's wait: dt, or the end of the run, whichever first; True if the run ended."""
    t = Later(env, dt, FACILITY)
    res = yield t | sim.end
    return sim.end in res
