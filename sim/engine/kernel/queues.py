"""Queue disciplines over a queue row (a replica's own, or row 0 for central_queue's shared
queue): a FIFO list with lazy removal (fcfs, static, continuous, chunked), a class-priority skew
heap (priority) and a shortest-first skew heap with an arrival-order list for its ageing bound
(sjf). `q_push` (back: an arrival; front: a preempted request), `q_head(now)`, `q_pop`."""

from __future__ import annotations

from sim.engine.kernel.jit import kernel
from sim.engine.kernel.layout import (AH, ANEXT, APREV, AT, GEN, NXT, P_PRIORITY, P_SJF, POL, QH, QKEY, QLEFT, QLEN,
                                      QPAR, QRIGHT, QROW, QT, R_GONE, RST)


@kernel
def skew_merge(a, b, QA):
    """Merge two skew heaps (roots a, b; -1 = empty) of requests keyed by QA[:, QKEY]; keeps
    parent links (QPAR) so that any request can be deleted. The new root's parent is -1."""
    if a < 0:
        if b >= 0:
            QA[b, QPAR] = -1
        return b
    if b < 0:
        QA[a, QPAR] = -1
        return a
    if QA[b, QKEY] < QA[a, QKEY]:
        a, b = b, a
    root = a
    QA[root, QPAR] = -1
    p = a
    a = QA[p, QRIGHT]  # merge p's right subtree with b into p's left; p's left moves right
    QA[p, QRIGHT] = QA[p, QLEFT]
    while a >= 0:
        if QA[b, QKEY] < QA[a, QKEY]:
            a, b = b, a
        QA[p, QLEFT] = a
        QA[a, QPAR] = p
        p = a
        a = QA[p, QRIGHT]
        QA[p, QRIGHT] = QA[p, QLEFT]
    QA[p, QLEFT] = b
    QA[b, QPAR] = p
    return root


@kernel
def append(r, i, head, tail, S, RQ):
    """Append request i to a singly linked list of replica r (RQ[:, NXT]; ends S[r, head/tail])."""
    RQ[i, NXT] = -1
    if S[r, tail] >= 0:
        RQ[S[r, tail], NXT] = i
    else:
        S[r, head] = i
    S[r, tail] = i


@kernel(inline=True)
def queue_key(k, j, S, RQ, QA, prompt):
    """Request j's key in replica k's queue (its queue row's discipline; the shared queue is
    row 0): class priority and arrival for `priority`; tokens to prefill (the prompt and what it
    generated before a preemption) and arrival for `sjf`; unused by the FIFO disciplines."""
    if S[S[k, QROW], POL] == P_PRIORITY:
        return QA[j, QKEY]
    return ((prompt[j] + RQ[j, GEN]) << 32) | j


@kernel
def q_push(r, i, front, key, S, RQ, QA):
    """Queue request i at replica r: at the back (an arrival) or the front (a preempted
    request); by `key` in a heap for the priority and sjf schedulers (sjf also keeps arrival
    order, with preempted requests in front, for its ageing bound)."""
    q = S[r, QROW]
    pol = S[q, POL]
    if pol == P_PRIORITY or pol == P_SJF:
        QA[i, QKEY] = key
        QA[i, QLEFT] = -1
        QA[i, QRIGHT] = -1
        S[q, QH] = skew_merge(S[q, QH], i, QA)
        if pol == P_SJF:  # the arrival-order list: push at its head (front) or its tail
            near, far = (AH, AT) if front else (AT, AH)
            inward, outward = (ANEXT, APREV) if front else (APREV, ANEXT)
            QA[i, outward] = -1
            QA[i, inward] = S[q, near]
            if S[q, near] >= 0:
                QA[S[q, near], outward] = i
            else:
                S[q, far] = i
            S[q, near] = i
    elif front:
        RQ[i, NXT] = S[q, QH]
        S[q, QH] = i
        if S[q, QT] < 0:
            S[q, QT] = i
    else:
        append(q, i, QH, QT, S, RQ)
    S[q, QLEN] += 1


@kernel
def fifo_head(r, S, RQ):
    """The head of replica r's FIFO queue, dropping cancelled entries left in it (a client's
    timeout takes a request off a FIFO queue lazily: the entry stays until it reaches the head)."""
    q = S[r, QROW]
    i = S[q, QH]
    while i >= 0 and RQ[i, RST] == R_GONE:
        i = RQ[i, NXT]
    S[q, QH] = i
    if i < 0:
        S[q, QT] = -1
    return i


@kernel
def q_head(r, now, age, S, QA, arr, RQ):
    """The request replica r's queue serves next (sjf: the oldest once it has waited `age` s,
    else the shortest)."""
    q = S[r, QROW]
    pol = S[q, POL]
    if pol == P_SJF:
        old = S[q, AH]
        if old >= 0 and now - arr[old] >= age:
            return old
    if pol != P_PRIORITY and pol != P_SJF:
        return fifo_head(r, S, RQ)
    return S[q, QH]


@kernel
def q_pop(r, i, S, RQ, QA):
    """Take request i, the head of replica r's queue, off it."""
    q = S[r, QROW]
    pol = S[q, POL]
    if pol == P_PRIORITY or pol == P_SJF:
        left = QA[i, QLEFT]
        right = QA[i, QRIGHT]
        sub = skew_merge(left, right, QA)
        par = QA[i, QPAR]
        if par < 0:
            S[q, QH] = sub
        else:  # sjf's aged head need not be the heap's root
            if QA[par, QLEFT] == i:
                QA[par, QLEFT] = sub
            else:
                QA[par, QRIGHT] = sub
            if sub >= 0:
                QA[sub, QPAR] = par
        if pol == P_SJF:
            pv = QA[i, APREV]
            nx = QA[i, ANEXT]
            if pv >= 0:
                QA[pv, ANEXT] = nx
            else:
                S[q, AH] = nx
            if nx >= 0:
                QA[nx, APREV] = pv
            else:
                S[q, AT] = pv
    else:
        S[q, QH] = RQ[i, NXT]
        if S[q, QT] == i:
            S[q, QT] = -1
    S[q, QLEN] -= 1


@kernel(inline=True)
def is_heap(S, r):
    """Whether replica r's queue is a skew heap (priority, sjf) rather than a FIFO list."""
    pol = S[S[r, QROW], POL]
    return pol == P_PRIORITY or pol == P_SJF
