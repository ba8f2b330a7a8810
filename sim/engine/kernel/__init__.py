"""The replica kernel: every replica semantics of dcsim, written once as functions over named
array state in the subset of Python that numba compiles. Both drivers call these functions (the
fast driver's loop `loop.run_until` / `shared.run_shared`, sim/engine/drivers/fast.py; the
per-step SimPy driver, sim/engine/drivers/step.py); sim/engine/jit.py can load the package a
second time with the JIT off, so the same functions run as plain Python on a cold cache.

The modules, lowest first (each imports only those above it):

| module | what it is |
|---|---|
| `jit` | how the kernel is compiled, and the cache it drops when a source changes |
| `layout` | the state: every table's named columns, the value codes, the named groups |
| `heap` | the one binary min-heap (finish heaps, hand-off events, link transfers) |
| `cache_index` | the prefix cache's sparse index: a hash table over every replica's cached blocks |
| `step` | a step's time and power from the one step formula, variability, what a step records |
| `queues` | queue disciplines: FIFO, class-priority and shortest-first skew heaps |
| `kv` | paged KV, prefix caching, the KV tier, block growth and preemption |
| `lifecycle` | commit, cancel, enqueue, rest and wake-up, node failure |
| `plan` | the schedulers' planners and the start of a step |
| `advance` | one replica run forward on its own (the stable decode loop) |
| `route` | the routers: trees over each group's replicas and the one decision |
| `handoff` | prefill/decode hand-offs and KV transfers |
| `loop` | the fast driver's event loop: arrivals, deadlines, barriers |
| `clients` | closed-loop clients: their sends merged with the replicas' events and deadlines |
| `shared` | central_queue's loop in SimPy's event order |
| `tally` | the ledger's walk over power rows, requests in the system |
| `verify` | speculative decoding's verify steps drawn per sequence per step (at build) |

Units: seconds, watts, joules, tokens, KV blocks.
"""

from sim.engine.kernel.jit import drop_stale_cache

if not __name__.startswith("sim.engine._kernel_as_python"):  # (not in the plain-Python copy)
    drop_stale_cache()
