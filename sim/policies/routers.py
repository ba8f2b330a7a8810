"""Routers: pick the replica for each arriving request (pure policies, registered by name).

Each router sees the replicas through read-only load figures: `outstanding_req` (requests
routed there and not yet done), `outstanding_tok` (their prompt + output tokens) and
`core.free_blocks` (KV blocks it can still allocate). Ties go to the lowest index.
- round_robin: replicas in turn.
- least_loaded: fewest outstanding tokens (work-aware).
- jsq: join the shortest queue, i.e. fewest outstanding requests (Winston 1977; the standard
  baseline in LLM routers such as vLLM's production stack).
- power_of_two: two replicas drawn at random, the one with fewer outstanding requests
  (Mitzenmacher 2001, "The power of two choices in randomized load balancing"). The random
  pairs are drawn up front from the run's "router" stream, so variants see the same pairs.
- least_kv: most free KV-cache blocks (KV-aware routing, as in llm-d / AIBrix).
- session_affinity: a session's requests go to the replica its first request went to (so its
  prefix cache is reused, as in SGLang's cache-aware router); new sessions go by jsq.
- central_queue: no per-replica choice: every replica pulls from one shared FIFO queue, and an
  arrival wakes the first idle replica (the M/M/c discipline).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


class Router:
    shared_queue = False

    def choose(self, i: int, session: int, reps: Sequence[Any]) -> int:  # pragma: no cover - interface
        raise NotImplementedError


def _argmin(vals: Sequence[float]) -> int:
    best, best_v = 0, vals[0]
    for k in range(1, len(vals)):
        if vals[k] < best_v:
            best, best_v = k, vals[k]
    return best


class RoundRobin(Router):
    def __init__(self) -> None:
        self._next = 0

    def choose(self, i: int, session: int, reps: Sequence[Any]) -> int:
        k = self._next % len(reps)
        self._next += 1
        return k


class LeastLoaded(Router):
    def choose(self, i: int, session: int, reps: Sequence[Any]) -> int:
        return _argmin([r.outstanding_tok for r in reps])


class JSQ(Router):
    def choose(self, i: int, session: int, reps: Sequence[Any]) -> int:
        return _argmin([r.outstanding_req for r in reps])


class PowerOfTwo(Router):
    def __init__(self, pairs: np.ndarray) -> None:
        self.pairs = pairs  # (n_requests, 2) distinct replica indices

    def choose(self, i: int, session: int, reps: Sequence[Any]) -> int:
        a, b = int(self.pairs[i, 0]), int(self.pairs[i, 1])
        ra, rb = reps[a].outstanding_req, reps[b].outstanding_req
        return a if (ra, a) <= (rb, b) else b


class LeastKV(Router):
    def choose(self, i: int, session: int, reps: Sequence[Any]) -> int:
        return _argmin([-r.core.free_blocks for r in reps])


class SessionAffinity(Router):
    def __init__(self) -> None:
        self.home: dict[int, int] = {}
        self._jsq = JSQ()

    def choose(self, i: int, session: int, reps: Sequence[Any]) -> int:
        if session < 0:
            return self._jsq.choose(i, session, reps)
        k = self.home.get(session)
        if k is None:
            k = self.home[session] = self._jsq.choose(i, session, reps)
        return k


class CentralQueue(Router):
    shared_queue = True

    def choose(self, i: int, session: int, reps: Sequence[Any]) -> int:
        return -1


ROUTERS = ("round_robin", "least_loaded", "jsq", "power_of_two", "least_kv", "session_affinity", "central_queue")


def make_router(policy: str, n_requests: int = 0, n_replicas: int = 1, rng: np.random.Generator | None = None) -> Router:
    if policy == "round_robin":
        return RoundRobin()
    if policy == "least_loaded":
        return LeastLoaded()
    if policy == "jsq":
        return JSQ()
    if policy == "power_of_two":
        assert rng is not None
        if n_replicas < 2:
            return PowerOfTwo(np.zeros((n_requests, 2), dtype=np.int64))
        a = rng.integers(0, n_replicas, size=n_requests)
        b = (a + rng.integers(1, n_replicas, size=n_requests)) % n_replicas  # distinct from a
        return PowerOfTwo(np.stack([a, b], axis=1))
    if policy == "least_kv":
        return LeastKV()
    if policy == "session_affinity":
        return SessionAffinity()
    if policy == "central_queue":
        return CentralQueue()
    raise ValueError(policy)
