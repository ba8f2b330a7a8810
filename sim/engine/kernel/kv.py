"""The paged KV cache of one replica and what makes room in it: blocks taken and released,
automatic prefix caching (shared blocks with holder counts, an LRU list of cached blocks no one
holds, evicted before anything is preempted), a KV tier below HBM (`[pools.kv_offload]`: a second
LRU list over the same index, filled by evictions and by preempted requests' swapped-out KV), the
growth of decoding sequences block by block, and recompute preemption of the latest arrival (of
the lowest class under `priority`).

Prefix cache: PB full blocks per shared prefix; block j of group g is slot g x PB + j of its
replica's cache, an entry of the sparse index KC (kc_find: a hash table over every replica's
cached blocks, so memory follows the blocks cached, not replicas x prefixes x blocks). USED
counts every block running requests hold once (shared ones too); NLRU cached blocks no one
holds, oldest first from LH: free = TOT - USED - NLRU."""

from __future__ import annotations

from sim.engine.kernel import heap
from sim.engine.kernel.jit import kernel
from sim.engine.kernel.cache_index import kc_add, kc_del, kc_find, kc_ref
from sim.engine.kernel.layout import (BS, CTXB, DIT, DONE, FHLEN, GEN, GRP, HELD, KNEXT, KPREV, KREF, LH, LT, NDEC,
                                      NLRU, NPF, NRUN, NSH, NXT, P_PRIORITY, PB, PH, POL, PT, QKEY, QROW, RSV,
                                      R_DECODE, R_WAITING, RST, SWP, TCAP, THIT, TLH, TLT, TN, TOFF, TOT, TPEND, TSWP,
                                      USED)
from sim.engine.kernel.queues import q_push, queue_key


@kernel
def cdiv(a, b):
    return -((-a) // b)


@kernel(inline=True)
def list_unlink(r, e, S, KC, H, T, N):
    """Entry e out of replica r's list whose head, tail and length are S[r, H], S[r, T], S[r, N]."""
    E = KC.E
    p = E[e, KPREV]
    n = E[e, KNEXT]
    if p >= 0:
        E[p, KNEXT] = n
    else:
        S[r, H] = n
    if n >= 0:
        E[n, KPREV] = p
    else:
        S[r, T] = p
    S[r, N] -= 1


@kernel(inline=True)
def list_push(r, e, S, KC, H, T, N):
    """Entry e to the most recently used end of that list."""
    E = KC.E
    t = S[r, T]
    E[e, KPREV] = t
    E[e, KNEXT] = -1
    if t >= 0:
        E[t, KNEXT] = e
    else:
        S[r, H] = e
    S[r, T] = e
    S[r, N] += 1


@kernel
def tier_room(r, n, S, KC):
    """Whether the KV tier can take n more blocks, dropping its least recently used prefix blocks
    to make room (blocks swapped out by preempted requests stay until they are readmitted)."""
    while S[r, TCAP] - S[r, TN] - S[r, TSWP] < n and S[r, TN] > 0:
        h = S[r, TLH]
        list_unlink(r, h, S, KC, TLH, TLT, TN)
        kc_del(KC, h)
    return S[r, TCAP] - S[r, TN] - S[r, TSWP] >= n


@kernel
def _offload(r, e, S, KC):
    """Cached block e, evicted from HBM: into the KV tier when it has (or makes) room, else
    dropped."""
    if S[r, TCAP] == 0 or not tier_room(r, 1, S, KC):
        kc_del(KC, e)
        return
    list_push(r, e, S, KC, TLH, TLT, TN)
    KC.E[e, KREF] = -2
    S[r, TOFF] += 1


@kernel(inline=True)
def take(r, n, S, KC):
    """n new private blocks: free ones, then the least recently used cached ones (evicted); the
    caller has checked that TOT - USED >= n."""
    free = S[r, TOT] - S[r, USED] - S[r, NLRU]
    while free < n:
        e = S[r, LH]
        list_unlink(r, e, S, KC, LH, LT, NLRU)
        _offload(r, e, S, KC)
        free += 1
    S[r, USED] += n


@kernel(inline=True)
def take_for(r, i, n, S, RQ, KC):
    """Prefilling request i takes n more blocks (evicting cached ones if needed)."""
    take(r, n, S, KC)
    RQ[i, HELD] += n


@kernel(inline=True)
def release(r, i, blocks, S, RQ, KC):
    """Request i lets go of its `blocks` KV blocks: private ones are freed, shared ones lose a
    holder and, at none, join the LRU end in block order."""
    nsh = RQ[i, NSH]
    S[r, USED] -= blocks - nsh
    if nsh:
        base = RQ[i, GRP] * S[r, PB]
        E = KC.E
        for j in range(nsh):
            e = kc_find(KC, r, base + j)
            E[e, KREF] -= 1
            if E[e, KREF] == 0:
                S[r, USED] -= 1
                list_push(r, e, S, KC, LH, LT, NLRU)
        RQ[i, NSH] = 0


@kernel(inline=True)
def peek_hits(r, i, target, S, RQ, KC):
    """(cached leading blocks of request i's prompt, how many of them take a block it does not
    hold now: cached ones no one holds, and those in the KV tier, loaded into fresh blocks).
    The last token is always computed."""
    pb = S[r, PB]
    g = RQ[i, GRP]
    if pb == 0 or g < 0 or RQ[i, DONE] != 0:
        return 0, 0
    k = min(pb, (target - 1) // S[r, BS])
    base = g * pb
    hits = 0
    idle = 0
    while hits < k:
        c = kc_ref(KC, r, base + hits)
        if c < 0 and c != -2:
            break
        if c <= 0:
            idle += 1
        hits += 1
    return hits, idle


@kernel
def acquire_hits(r, i, hits, S, RQ, KC):
    """Request i holds the first `hits` cached blocks of its prefix; those in the KV tier are
    loaded into fresh blocks (their time is added to the next step: TPEND)."""
    base = RQ[i, GRP] * S[r, PB]
    E = KC.E
    nt = 0
    for j in range(hits):
        e = kc_find(KC, r, base + j)
        c = E[e, KREF]
        if c == -2:  # out of the tier first (so no eviction below can drop it)
            list_unlink(r, e, S, KC, TLH, TLT, TN)
            E[e, KREF] = -3
            nt += 1
            continue
        if c == 0:
            list_unlink(r, e, S, KC, LH, LT, NLRU)
            S[r, USED] += 1
        E[e, KREF] = c + 1
    if nt:  # fresh blocks for them (evicting unheld ones, never these: they are held now)
        take(r, nt, S, KC)
        for j in range(hits):
            e = kc_find(KC, r, base + j)
            if E[e, KREF] == -3:
                E[e, KREF] = 1
        S[r, TPEND] += nt
        S[r, THIT] += nt
    RQ[i, NSH] = hits
    if hits * S[r, BS] > RQ[i, DONE]:  # (a request handed over with its KV has its prompt done)
        RQ[i, DONE] = hits * S[r, BS]


@kernel
def register(r, i, S, RQ, KC):
    """Publish request i's computed full prefix blocks: its private blocks become shared, up to
    the first one another request computed concurrently."""
    full = min(S[r, PB], RQ[i, DONE] // S[r, BS])
    nsh = RQ[i, NSH]
    base = RQ[i, GRP] * S[r, PB]
    E = KC.E
    while nsh < full:
        e = kc_find(KC, r, base + nsh)
        if e < 0:
            e = kc_add(KC, r, base + nsh)
        elif E[e, KREF] >= 0:
            break
        elif E[e, KREF] == -2:  # computed again: the tier's copy goes
            list_unlink(r, e, S, KC, TLH, TLT, TN)
        E[e, KREF] = 1
        nsh += 1
    RQ[i, NSH] = nsh


@kernel
def unlink_prefill(r, i, S, RQ):
    """Take request i out of replica r's prefilling list (usually its head)."""
    prev = -1
    j = S[r, PH]
    while j != i:
        prev = j
        j = RQ[j, NXT]
    nxt = RQ[i, NXT]
    if prev < 0:
        S[r, PH] = nxt
    else:
        RQ[prev, NXT] = nxt
    if S[r, PT] == i:
        S[r, PT] = prev
    S[r, NPF] -= 1


@kernel
def victim(r, S, RQ, FH, QA):
    """The running request to preempt: the latest arrival (highest index; requests are indexed in
    arrival order) among prefilling and decoding ones; with the priority scheduler, the lowest
    class first (highest key)."""
    prio = S[r, POL] == P_PRIORITY
    best = -1
    bkey = -1
    j = S[r, PH]
    while j >= 0:
        key = QA[j, QKEY] if prio else j
        if key > bkey:
            best = j
            bkey = key
        j = RQ[j, NXT]
    for k in range(S[r, FHLEN]):
        j = FH[r, k] & 0xFFFFFFFF
        key = QA[j, QKEY] if prio else j
        if key > bkey:
            best = j
            bkey = key
    return best


@kernel
def drop(r, v, grown, S, FH, CNT, KC, RQ, RA, prompt):
    """Take running request v off replica r and free its KV; a decoding one keeps the tokens it
    generated. `grown`: decoding sequences already hold the block of the decode step being
    planned or in flight."""
    if RQ[v, RST] == R_DECODE:
        bs = S[r, BS]
        a = RA[v]
        dit = S[r, DIT]
        RQ[v, GEN] += dit - (prompt[v] + RQ[v, GEN] - 1 - a)  # + decode steps since it began
        if S[r, RSV]:
            held = RQ[v, HELD]  # reserved for the whole sequence; no growth counted
        else:
            held = cdiv(a + dit + grown, bs)
            CNT[r, a % bs] -= 1
        S[r, CTXB] -= a
        S[r, NDEC] -= 1
        n = S[r, FHLEN]
        for k in range(n):
            if (FH[r, k] & 0xFFFFFFFF) == v:
                heap.remove(FH[r], FH[r], FH[r], n, k)
                break
        S[r, FHLEN] = n - 1
    else:
        unlink_prefill(r, v, S, RQ)
        held = RQ[v, HELD]
    S[r, NRUN] -= 1
    release(r, v, held, S, RQ, KC)


@kernel
def preempt(r, v, grown, S, FH, CNT, KC, RQ, RA, QA, PRE, prompt):
    """Preemption of request v: free its KV, keep the tokens it generated, requeue it at the
    front. Its KV is recomputed on readmission, or, with a KV tier that has room (made by
    dropping the tier's least recently used prefix blocks), swapped out to it and loaded back."""
    was_decoding = RQ[v, RST] == R_DECODE
    drop(r, v, grown, S, FH, CNT, KC, RQ, RA, prompt)
    RQ[v, RST] = R_WAITING
    kv = prompt[v] + RQ[v, GEN] - 1 if was_decoding else RQ[v, DONE]  # tokens with KV
    blocks = cdiv(kv, S[r, BS])
    RQ[v, DONE] = 0
    # (its own queue only: it comes back to r)
    if S[r, TCAP] and S[r, QROW] == r and kv > 0 and blocks <= S[r, TCAP] and tier_room(r, blocks, S, KC):
        RQ[v, DONE] = kv  # (as a handed-over request's: only the rest is computed)
        RQ[v, SWP] = blocks
        S[r, TSWP] += blocks
        S[r, TOFF] += blocks
    RQ[v, HELD] = 0
    PRE[v] += 1
    q_push(r, v, True, queue_key(r, v, S, RQ, QA, prompt), S, RQ, QA)


@kernel
def isort(a, m):
    """Sort a[:m] in place (insertion sort: m is at most a batch; numba's sorts allocate, and the
    kernel runs without reference counting)."""
    for k in range(1, m):
        v = a[k]
        j = k - 1
        while j >= 0 and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


@kernel
def _grow_slow(r, rp, rq):
    """grow when the free blocks may not cover every sequence that needs one for the next step:
    in index order, each takes a free block, or preempts the latest arrival (possibly itself).
    Returns whether anything was preempted."""
    S, FH, tmp, RQ = rp.S, rp.FH, rp.tmp, rq.RQ
    bs = S[r, BS]
    nxt = S[r, DIT] + 1
    m = 0
    for k in range(S[r, FHLEN]):
        j = FH[r, k] & 0xFFFFFFFF
        if (rq.RA[j] + nxt - 1) % bs == 0:
            tmp[m] = j
            m += 1
    isort(tmp, m)
    pre = False
    for k in range(m):
        j = tmp[k]
        if RQ[j, RST] != R_DECODE:
            continue  # preempted for an earlier one
        while S[r, TOT] - S[r, USED] < 1:
            v = victim(r, S, RQ, FH, rq.QA)
            # a victim before j in index order has had its block this round (with the priority
            # scheduler the victim need not be the latest arrival)
            preempt(r, v, 1 if v < j else 0, S, FH, rp.CNT, rp.KC, RQ, rq.RA, rq.QA, rq.PRE, rq.prompt)
            pre = True
            if v == j:
                break
        if RQ[j, RST] == R_DECODE:
            take(r, 1, S, rp.KC)
    return pre


@kernel
def make_room(r, i, need, rp, rq):
    """The priority scheduler's room for a waiting request: preempt running requests of a lower
    class (latest of the lowest class first) until `need` blocks are free; False, with nothing
    preempted, if they cannot."""
    S, FH, tmp, RQ, QA = rp.S, rp.FH, rp.tmp, rq.RQ, rq.QA
    bs = S[r, BS]
    m = 0
    j = S[r, PH]
    while j >= 0:
        if QA[j, QKEY] >> 32 > QA[i, QKEY] >> 32:
            tmp[m] = QA[j, QKEY]
            m += 1
        j = RQ[j, NXT]
    for k in range(S[r, FHLEN]):
        j = FH[r, k] & 0xFFFFFFFF
        if QA[j, QKEY] >> 32 > QA[i, QKEY] >> 32:
            tmp[m] = QA[j, QKEY]
            m += 1
    isort(tmp, m)  # read from the end: (class, arrival) descending
    held = 0
    for k in range(m):
        j = tmp[m - 1 - k] & 0xFFFFFFFF
        held += cdiv(rq.RA[j] + S[r, DIT] + 1, bs) if RQ[j, RST] == R_DECODE else RQ[j, HELD]
    if S[r, TOT] - S[r, USED] + held < need:
        return False
    for k in range(m):
        if S[r, TOT] - S[r, USED] >= need:
            break
        preempt(r, tmp[m - 1 - k] & 0xFFFFFFFF, 1, S, FH, rp.CNT, rp.KC, RQ, rq.RA, QA, rq.PRE, rq.prompt)
    return S[r, TOT] - S[r, USED] >= need


@kernel(inline=True)  # inlined into the planners (about 25% less time per run)
def grow(r, rp, rq):
    """Blocks for the next decode step; whether it preempted."""
    S = rp.S
    g = rp.CNT[r, (1 - (S[r, DIT] + 1)) % S[r, BS]]  # sequences whose next token opens a block
    if S[r, USED] + g <= S[r, TOT]:
        take(r, g, S, rp.KC)
        return False
    return _grow_slow(r, rp, rq)
