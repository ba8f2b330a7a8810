"""A router plug-in: send each request to the replica that will finish its outstanding work
soonest, weighing outstanding tokens by the replica's memory bandwidth (decode is memory-bound,
so a replica on a part with twice the bandwidth drains the same tokens in about half the time).
On a fleet of one kind of part it is least_loaded; on a mixed fleet it favours the faster parts.

Use it from a scenario (no edit to dcsim):

    [router]
    policy = "examples/bandwidth_router.py:BandwidthWeighted"   # path relative to the scenario file

or `dcsim run scenarios/quickstart.toml --set 'router.policy="examples/bandwidth_router.py:BandwidthWeighted"'`.
"""


class BandwidthWeighted:
    def choose(self, request, replicas) -> int:
        best, best_s = 0, float("inf")
        for k, r in enumerate(replicas):
            # seconds to stream the outstanding tokens' KV once per token, as a relative figure
            s = (r.outstanding_tokens + request.prompt_tokens) / r.hardware.mem_bw_bytes_per_s
            if s < best_s:
                best, best_s = k, s
        return best
