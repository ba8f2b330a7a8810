"""Routers: pick the replica for each arriving request (pure policies, registered by name in
sim/registry.py). A user's router has the same interface as these.

Interface: `choose(self, request, replicas) -> int`, an index into `replicas` (the replicas that
can take work now and serve the request's model: with several models, only those of its pools). `request` has `request_id`, `arrival_s`, `prompt_tokens`, `output_tokens`,
`session` (-1: none) and `priority`; each replica view has `index` (the replica's id), `pool`
(its pool's name), `hardware` (its accelerator's spec), `queue_len`, `running`,
`free_kv_blocks`, `outstanding_requests` (routed there and not yet done),
`outstanding_tokens` (their prompt + output tokens), `token_s` (its seconds per token of work:
least_time) and `cached_prefix_tokens(request)` (the request's prompt tokens its prefix cache holds). `setup(self, n_requests, n_replicas, rng)`
is called once before the run (draw random choices there, from `rng`, for reproducibility).
Ties go to the lowest index.
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
- least_time: fewest seconds of outstanding work, each replica's outstanding tokens at its own
  speed (`token_s`: its decode step of 64 sequences at 2,048 tokens of context, per sequence,
  from the perf model): on mixed hardware, a faster replica takes more (hardware-aware routing).
- prefix_aware: the replica holding the longest cached prefix of the prompt, traded against its
  load: score = 2 x (share of the prompt's tokens in its prefix cache) + (1 - its outstanding
  requests / the most any candidate has), highest wins. The shape is llm-d's inference
  scheduler's (a weighted sum of scorers normalised to [0, 1]: a prefix-cache scorer and a
  queue/load scorer); the weights 2 : 1 are ours.
- central_queue: no per-replica choice: every replica pulls from one shared FIFO queue, and an
  arrival wakes the first idle replica (the M/M/c discipline).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from sim.registry import ROUTERS


class Router:
    """Base class of routers (a plug-in need not subclass it: `choose` is what counts)."""

    shared_queue = False

    def setup(self, n_requests: int, n_replicas: int, rng: np.random.Generator) -> None:
        """Called once before the run."""

    def choose(self, request: Any, replicas: Sequence[Any]) -> int:  # pragma: no cover - interface
        raise NotImplementedError


def _argmin(vals: Sequence[float]) -> int:
    best, best_v = 0, vals[0]
    for k in range(1, len(vals)):
        if vals[k] < best_v:
            best, best_v = k, vals[k]
    return best


class RoundRobin(Router):
    def __init__(self) -> None:
        self._next: dict[int, int] = {}  # a count per set of replicas offered (one per model served)

    def choose(self, request: Any, replicas: Sequence[Any]) -> int:
        key = getattr(replicas[0], "index", 0)
        c = self._next.get(key, 0)
        self._next[key] = c + 1
        return c % len(replicas)


class LeastLoaded(Router):
    def choose(self, request: Any, replicas: Sequence[Any]) -> int:
        return _argmin([r.outstanding_tokens for r in replicas])


class JSQ(Router):
    def choose(self, request: Any, replicas: Sequence[Any]) -> int:
        return _argmin([r.outstanding_requests for r in replicas])


class PowerOfTwo(Router):
    def __init__(self) -> None:
        self.pairs = np.zeros((0, 2), dtype=np.int64)  # (n_requests, 2) distinct replica indices

    def setup(self, n_requests: int, n_replicas: int, rng: np.random.Generator,
              sizes: np.ndarray | None = None) -> None:
        """`sizes`: the number of replicas each request may choose from (several models: its
        model's), when not all n_replicas; the pairs then index those."""
        if sizes is not None:
            n = np.maximum(sizes, 1)
            a = rng.integers(0, n)
            b = np.where(n > 1, (a + rng.integers(1, np.maximum(n, 2))) % n, a)
            self.pairs = np.stack([a, b], axis=1).astype(np.int64)
            return
        if n_replicas < 2:
            self.pairs = np.zeros((n_requests, 2), dtype=np.int64)
            return
        a = rng.integers(0, n_replicas, size=n_requests)
        b = (a + rng.integers(1, n_replicas, size=n_requests)) % n_replicas  # distinct from a
        self.pairs = np.stack([a, b], axis=1)

    def choose(self, request: Any, replicas: Sequence[Any]) -> int:
        i = request.request_id
        a, b = int(self.pairs[i, 0]), int(self.pairs[i, 1])
        ra, rb = replicas[a].outstanding_requests, replicas[b].outstanding_requests
        return a if (ra, a) <= (rb, b) else b


class LeastTime(Router):
    def choose(self, request: Any, replicas: Sequence[Any]) -> int:
        return _argmin([r.outstanding_tokens * r.token_s for r in replicas])


class PrefixAware(Router):
    prefix_weight = 2.0  # the kernel's PREFIX_WEIGHT

    def choose(self, request: Any, replicas: Sequence[Any]) -> int:
        most = max(1, max(r.outstanding_requests for r in replicas))
        target = request.prompt_tokens
        best, best_v = 0, -np.inf
        for k, r in enumerate(replicas):
            v = self.prefix_weight * r.cached_prefix_tokens(request) / target + (1.0 - r.outstanding_requests / most)
            if v > best_v:
                best, best_v = k, v
        return best


class LeastKV(Router):
    def choose(self, request: Any, replicas: Sequence[Any]) -> int:
        return _argmin([-r.free_kv_blocks for r in replicas])


class SessionAffinity(Router):
    def __init__(self) -> None:
        self.home: dict[int, int] = {}
        self._jsq = JSQ()

    def choose(self, request: Any, replicas: Sequence[Any]) -> int:
        session = request.session
        if session < 0:
            return self._jsq.choose(request, replicas)
        k = self.home.get(session)
        if k is None:
            k = self.home[session] = self._jsq.choose(request, replicas)
        return k


class CentralQueue(Router):
    shared_queue = True

    def choose(self, request: Any, replicas: Sequence[Any]) -> int:
        return -1


def make_router(policy: str, n_requests: int = 0, n_replicas: int = 1,
                rng: np.random.Generator | None = None, sizes: np.ndarray | None = None) -> Any:
    """The router named `policy` (a registered name or a plug-in spec), set up for a run;
    `sizes` (several models): how many replicas each request chooses among."""
    router = ROUTERS.load(policy)()
    setup = getattr(router, "setup", None)
    rng = rng if rng is not None else np.random.default_rng(0)
    if callable(setup):
        if sizes is not None and isinstance(router, PowerOfTwo):
            setup(n_requests, n_replicas, rng, sizes)
        else:
            setup(n_requests, n_replicas, rng)
    return router
