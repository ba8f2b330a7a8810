"""The prefix cache's sparse index: one entry per cached block of any replica (KC.E: holders,
LRU links, key), found through an open-addressing hash table over the keys (KC.H: linear
probing, backward-shift deletion, so no tombstones), free entries on a list. Its memory follows
the blocks cached (at most every replica's KV and tier blocks), not replicas x prefix groups x
blocks. It grows between steps like the other buffers (`kc_low`; sim/engine/arrays.py
grown_index, which keeps every entry's number so the replicas' LRU lists stand)."""

from __future__ import annotations

from sim.engine.kernel.jit import kernel
from sim.engine.kernel.layout import K_FREE, K_NFREE, K_ROOM, K_W, KKEY, KNEXT, KPREV, KREF


@kernel(inline=True)
def _slot0(KC, key):
    """Where key's probe starts in the table KC.H (a multiplicative hash; any spread is correct)."""
    h = int(key) * -7046029254386353131  # (2^64 / golden ratio, signed: wraps in int64; only the spread matters)
    return (h ^ (h >> 29)) & (KC.H.shape[0] - 1)


@kernel
def kc_find(KC, r, s):
    """The entry of slot s (g x PB + j) of replica r's prefix cache; -1: not cached."""
    key = r * KC.N[K_W] + s
    H, E = KC.H, KC.E
    mask = H.shape[0] - 1
    i = _slot0(KC, key)
    while True:
        e = H[i]
        if e < 0:
            return -1
        if E[e, KKEY] == key:
            return e
        i = (i + 1) & mask


@kernel(inline=True)
def kc_ref(KC, r, s):
    """Holders of slot s of replica r (-2: in the tier; -1: not cached)."""
    e = kc_find(KC, r, s)
    return KC.E[e, KREF] if e >= 0 else -1


@kernel
def kc_add(KC, r, s):
    """A new entry for slot s of replica r (not cached now), off the free list; the caller sets
    its holders. There is always one: the index grows between steps (kc_low)."""
    E, H, N = KC.E, KC.H, KC.N
    e = N[K_FREE]
    N[K_FREE] = E[e, KNEXT]
    N[K_NFREE] -= 1
    key = r * N[K_W] + s
    E[e, KKEY] = key
    E[e, KPREV] = -1
    E[e, KNEXT] = -1
    mask = H.shape[0] - 1
    i = _slot0(KC, key)
    while H[i] >= 0:
        i = (i + 1) & mask
    H[i] = e
    return e


@kernel
def kc_del(KC, e):
    """Entry e no longer caches anything: out of the table (backward-shift deletion, so probes
    need no tombstones) and onto the free list."""
    E, H, N = KC.E, KC.H, KC.N
    mask = H.shape[0] - 1
    i = _slot0(KC, E[e, KKEY])
    while H[i] != e:
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        f = H[j]
        if f < 0:
            break
        k = _slot0(KC, E[f, KKEY])  # f may fill the hole at i if its probe started at or before i
        if (j > i and (k <= i or k > j)) or (j < i and k <= i and k > j):
            H[i] = f
            i = j
    H[i] = -1
    E[e, KREF] = -1
    E[e, KKEY] = -1
    E[e, KPREV] = -1
    E[e, KNEXT] = N[K_FREE]
    N[K_FREE] = e
    N[K_NFREE] += 1


@kernel(inline=True)
def kc_low(KC):
    """Whether the index has fewer free entries than a step may take (grow it, then go on)."""
    return KC.N[K_NFREE] < KC.N[K_ROOM]


@kernel
def kc_rehash(KC):
    """The table KC.H rebuilt from the entries that cache a block (KKEY >= 0), the others put
    on the free list in index order (after the index grew: sim/engine/arrays.py grown_index)."""
    E, H, N = KC.E, KC.H, KC.N
    mask = H.shape[0] - 1
    H[:] = -1
    head = -1
    nfree = 0
    for e in range(E.shape[0] - 1, -1, -1):
        if E[e, KKEY] >= 0:
            i = _slot0(KC, E[e, KKEY])
            while H[i] >= 0:
                i = (i + 1) & mask
            H[i] = e
        else:
            E[e, KREF] = -1
            E[e, KPREV] = -1
            E[e, KNEXT] = head
            head = e
            nfree += 1
    N[K_FREE] = head
    N[K_NFREE] = nfree


@kernel
def kc_clear(KC, r):
    """Replica r caches nothing any more (a failed node): its entries freed."""
    E = KC.E
    lo = r * KC.N[K_W]
    hi = lo + KC.N[K_W]
    for e in range(E.shape[0]):
        if lo <= E[e, KKEY] < hi:
            kc_del(KC, e)
