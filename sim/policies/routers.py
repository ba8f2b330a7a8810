"""Routers: pick the replica for each arriving request (registered by name in sim/registry.py).
The built-ins' decisions are the engine's kernel (sim/engine/kernel/route.py `choose`, written
once for both drivers); the classes here name and document them, draw what they draw at build
(power_of_two's pairs) and are the interface a user's router implements.

Interface: `choose(self, request, replicas) -> int`, an index into `replicas` (the replicas that
can take work now and serve the request's model: with several models, only those of its pools).
`request` has `request_id`, `arrival_s`, `prompt_tokens`, `output_tokens`, `session` (-1: none) and
`priority`; each replica view has `index` (the replica's id), `pool` (its pool's name), `hardware`
(its accelerator's spec), `queue_len`, `running`, `free_kv_blocks`, `outstanding_requests` (routed
there and not yet done), `outstanding_tokens` (their prompt + output tokens), `token_s` (its
seconds per token of work: least_time) and `cached_prefix_tokens(request)` (the request's prompt
tokens its prefix cache holds). `setup(self, n_requests, n_replicas, rng)` is called once before
the run (draw random choices there, from `rng`, for reproducibility). Ties go to the lowest index.
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

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from sim.registry import ROUTERS

if TYPE_CHECKING:
    from sim.policies.interfaces import RouterReplica, RouterRequest


PREFIX_WEIGHT = 2.0  # prefix_aware: the cached share of the prompt's weight against the load's (1)


class Router:
    """Base class of routers (a plug-in need not subclass it: `choose` is what counts)."""

    shared_queue = False

    def setup(self, n_requests: int, n_replicas: int, rng: np.random.Generator) -> None:
        """Called once before the run."""

    def choose(self, request: RouterRequest, replicas: Sequence[RouterReplica]) -> int:
        raise NotImplementedError(f"{type(self).__name__} is a built-in router: the engine's kernel chooses for it "
                                  "(sim/engine/kernel/route.py); a plug-in implements choose()")


class RoundRobin(Router):
    """Replicas in turn (a count per routing group)."""


class LeastLoaded(Router):
    """Fewest outstanding tokens."""


class JSQ(Router):
    """Fewest outstanding requests."""


class PowerOfTwo(Router):
    """The one with fewer outstanding requests of two drawn at random (pairs drawn at build)."""

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


class LeastTime(Router):
    """Fewest seconds of outstanding work at each replica's own speed."""


class PrefixAware(Router):
    """The longest cached prefix traded against the load (PREFIX_WEIGHT : 1)."""


class LeastKV(Router):
    """Most free KV blocks."""


class SessionAffinity(Router):
    """A session's requests to its first request's replica; new sessions by jsq."""


class CentralQueue(Router):
    """One shared FIFO queue every replica pulls from."""

    shared_queue = True


def make_router(policy: str, n_requests: int = 0, n_replicas: int = 1,
                rng: np.random.Generator | None = None, sizes: np.ndarray | None = None) -> Any:
    """The router named `policy` (a registered name or a plug-in spec), set up for a run;
    `sizes` (several models): how many replicas each request chooses among."""
    router = ROUTERS.make(policy)
    setup = getattr(router, "setup", None)
    rng = rng if rng is not None else np.random.default_rng(0)
    if callable(setup):
        if sizes is not None and isinstance(router, PowerOfTwo):
            setup(n_requests, n_replicas, rng, sizes)
        else:
            setup(n_requests, n_replicas, rng)
    return router
