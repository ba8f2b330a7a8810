"""Speculative decoding's verify steps, drawn: the loop of sim.perf.roofline.verify_steps (its
reference, in numpy) over a stream of log-uniform draws handed in by chunks. The draws are
consumed in the same order (step by step, over the requests still decoding, in request order)
and each count is computed by the same floating-point operations (the draw's log taken by numpy
on the chunk, divided by log(a), floored, capped at k), so the step counts are the reference's
bit for bit (tests/test_speculative.py), at a few nanoseconds a draw instead of one numpy pass
per step over every live request."""

from __future__ import annotations

from sim.engine.kernel.jit import kernel

# the walk's state (int64[4]): live requests, steps done, position in the step, done in the step so far
V_LIVE, V_STEP, V_AT, V_DONE = 0, 1, 2, 3
LOWEST = -1.7976931348623157e308  # the most negative float: log 0 = -inf taken as it (no -inf / -inf)


@kernel
def verify_chunk(log_u, need, log_a, live, steps, vs, k):
    """Consume the draws' logs `log_u` in order until they run out or no request is left: each
    takes the next live request's draw, keeps min(floor(log u / log a), k) drafted tokens (none
    where a = 0: log a = -inf) plus the target's own, and at the end of a step the done requests
    get their step count in `steps` (by request id, `live`) and leave the compact columns `need`,
    `log_a`, `live`. `vs`: the walk's state, carried to the next chunk. Returns the draws used."""
    n, s, j, done = vs[V_LIVE], vs[V_STEP], vs[V_AT], vs[V_DONE]
    used, total, kf = 0, log_u.shape[0], float(k)
    while used < total and n > 0:
        c = min(n - j, total - used)  # the draws of this step in this chunk: one tight loop
        for q in range(c):  # branch-free: a's row with a = 0 has log a = -inf, so r = +0
            r = max(log_u[used + q], LOWEST) / log_a[j + q]  # >= 0; huge for u = 0 (log u = -inf)
            left = need[j + q] - 1 - int(min(r, kf))  # (truncation: the floor of r >= 0)
            need[j + q] = left
            done += left <= 0
        used += c
        j += c
        if j == n:  # the step's end: the done leave, in order (the columns are only walked if any is)
            s += 1
            if done:
                m = 0
                for q in range(n):
                    if need[q] <= 0:
                        steps[live[q]] = s
                    else:
                        need[m], log_a[m], live[m] = need[q], log_a[q], live[q]
                        m += 1
                n = m
            j, done = 0, 0
    vs[V_LIVE], vs[V_STEP], vs[V_AT], vs[V_DONE] = n, s, j, done
    return used
