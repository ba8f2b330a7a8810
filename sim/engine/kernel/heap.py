"""The kernel's one binary min-heap, over three parallel arrays: `key` (int64 or float64),
`tie` (int64: equal keys pop in order of it) and `val` (int64, carried along). A heap whose key
says everything passes its key array three times (the finish heaps: (step << 32) | request);
entries move as whole triples, so the aliases stay consistent. Used for each replica's finish
heap, the hand-off events (time, insertion count, 2 x request + kind) and the transfers on
each network link (their end times)."""

from __future__ import annotations

from sim.engine.kernel.jit import kernel


@kernel(inline=True)
def _less(key, tie, a, b):
    return key[a] < key[b] or (key[a] == key[b] and tie[a] < tie[b])


@kernel(inline=True)
def _swap(key, tie, val, a, b):
    ka, ta, va = key[a], tie[a], val[a]
    kb, tb, vb = key[b], tie[b], val[b]
    key[a], tie[a], val[a] = kb, tb, vb
    key[b], tie[b], val[b] = ka, ta, va


@kernel
def sift_up(key, tie, val, k):
    """Restore the heap order from entry k towards the root; returns where it ends."""
    while k > 0:
        p = (k - 1) >> 1
        if not _less(key, tie, k, p):
            break
        _swap(key, tie, val, k, p)
        k = p
    return k


@kernel
def sift_down(key, tie, val, n, k):
    """Restore the heap order of the first n entries from entry k towards the leaves."""
    while True:
        a = 2 * k + 1
        if a >= n:
            break
        b = a + 1
        c = b if (b < n and _less(key, tie, b, a)) else a
        if not _less(key, tie, c, k):
            break
        _swap(key, tie, val, c, k)
        k = c


@kernel
def push(key, tie, val, n, k, t, v):
    """Add (k, t, v) to the heap of n entries (it then has n + 1)."""
    key[n], tie[n], val[n] = k, t, v
    sift_up(key, tie, val, n)


@kernel
def pop(key, tie, val, n):
    """Remove the least entry of the heap of n >= 1 (then n - 1): its (key, tie, val)."""
    k, t, v = key[0], tie[0], val[0]
    m = n - 1
    kl, tl, vl = key[m], tie[m], val[m]
    key[0], tie[0], val[0] = kl, tl, vl
    sift_down(key, tie, val, m, 0)
    return k, t, v


@kernel
def remove(key, tie, val, n, k):
    """Remove entry k of the heap of n >= 1 (then n - 1)."""
    n -= 1
    if k == n:
        return
    kl, tl, vl = key[n], tie[n], val[n]
    key[k], tie[k], val[k] = kl, tl, vl
    sift_down(key, tie, val, n, sift_up(key, tie, val, k))
