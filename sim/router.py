"""Routers: pick the replica for each arriving request (pure policies, registered by name).

- round_robin: replicas in turn.
- least_loaded: the replica with the fewest outstanding tokens (prompt + output of the
  requests it holds, queued or running); ties go to the lowest index.
- central_queue: no per-replica choice: every replica pulls from one shared FIFO queue, and an
  arrival wakes the first idle replica (the M/M/c discipline).
"""

from __future__ import annotations

from typing import Sequence


class Router:
    shared_queue = False

    def choose(self, loads: Sequence[int]) -> int:  # pragma: no cover - interface
        raise NotImplementedError


class RoundRobin(Router):
    def __init__(self) -> None:
        self._next = 0

    def choose(self, loads: Sequence[int]) -> int:
        i = self._next % len(loads)
        self._next += 1
        return i


class LeastLoaded(Router):
    def choose(self, loads: Sequence[int]) -> int:
        best, best_load = 0, loads[0]
        for i in range(1, len(loads)):
            if loads[i] < best_load:
                best, best_load = i, loads[i]
        return best


class CentralQueue(Router):
    shared_queue = True

    def choose(self, loads: Sequence[int]) -> int:
        return -1


ROUTERS: dict[str, type[Router]] = {"round_robin": RoundRobin, "least_loaded": LeastLoaded,
                                    "central_queue": CentralQueue}


def make_router(policy: str) -> Router:
    return ROUTERS[policy]()
