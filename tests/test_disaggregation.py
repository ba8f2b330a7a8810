"""Prefill/decode disaggregation (issue 13, part 1): a request is prefilled on a prefill replica
(its first token is produced there), its KV goes to a decode replica chosen by
router.decode_policy (latency + bytes over the slower side's ports), which admits it once the
KV has arrived and decodes the rest. Hand-computed timelines, both drivers equal, accounting."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sim.analysis.metrics import request_columns, summarize
from sim.engine.simulation import Simulation
from sim.perf.catalog import builtin_catalog
from sim.perf.roofline import PerfModel
from sim.scenario.config import parse
from sim.workload.generate import Workload
from helpers import same as _same
from helpers import PLAIN, hw_table, perf

REPO = Path(__file__).resolve().parents[1]


def _raw(n=300, rate=20.0, router="least_loaded", decode="least_kv", engine="auto", pre=2, dec=3, **extra):
    raw = {"name": "pd", "seed": 3,
           "workload": {"arrival": "poisson", "rate_per_s": rate, "num_requests": n,
                        "prompt_tokens": {"dist": "lognormal", "mean": 1500, "cv": 1.0, "max": 6000},
                        "output_tokens": {"dist": "lognormal", "mean": 200, "cv": 0.8, "max": 1000}},
           "pools": [{"name": "p", "hardware": "h100-sxm", "model": "llama-3.1-8b", "replicas": pre, "role": "prefill"},
                     {"name": "d", "hardware": "h100-sxm", "model": "llama-3.1-8b", "replicas": dec, "role": "decode"}],
           "router": {"policy": router, "decode_policy": decode}, "network": {"fabric": "ib-400g"},
           "run": {"timeseries": False, "engine": engine}}
    raw.update(extra)
    return raw


def test_one_request_by_hand():
    """TTFT = the prefill step; the second token = first + KV transfer + the decode replica's
    first step (the first token's KV, one token against the prompt's); then decode steps."""
    P, OUT = 1000, 3
    raw = {"seed": 0, "hardware": {"gpu": hw_table(**PLAIN)},
           "workload": {"arrival": "poisson", "rate_per_s": 1.0, "num_requests": 1, "prompt_tokens": 1,
                        "output_tokens": 1},
           "pools": [{"name": "p", "hardware": "gpu", "model": "llama-3.1-8b", "role": "prefill", "tp": 2},
                     {"name": "d", "hardware": "gpu", "model": "llama-3.1-8b", "role": "decode"}],
           "network": {"gbps": 100.0, "latency_us": 20.0}}
    wl = Workload(np.array([0.5]), np.array([P], np.int64), np.array([OUT], np.int64))
    for engine in ("compiled", "simpy"):
        raw["run"] = {"engine": engine}
        res = Simulation(parse(raw), wl).run()
        c = builtin_catalog()
        pre = PerfModel(dataclasses.replace(c.hardware["h100-sxm"], **PLAIN), c.models["llama-3.1-8b"], 2)  # TP 2
        dec = perf()
        t_pre = pre.step_time(0, 0, P, 0, P * (0 + (P + 1) / 2), 1)
        kv_bytes = P * c.models["llama-3.1-8b"].kv_bytes_per_token("bf16")
        xfer = 20e-6 + kv_bytes / (1 * 100e9 / 8)  # the slower side: the decode replica's one port
        t1 = dec.step_time(0, 0, 1, P, 1 * (P + 1.0), 1)  # token 1 into the KV, token 2 sampled
        t2 = dec.step_time(1, P + 2, n_seq=1)  # decode: P + 2 tokens in KV, token 3
        tb = res.requests
        assert tb.first_token_s[0] == pytest.approx(0.5 + t_pre, abs=1e-9), engine
        assert tb.kv_transfer_s[0] == pytest.approx(xfer, abs=1e-12)
        assert tb.finish_s[0] == pytest.approx(0.5 + t_pre + xfer + t1 + t2, abs=1e-9), engine
        assert tb.prefill_replica[0] == 0 and tb.decode_replica[0] == 1 and tb.replica[0] == 1


@pytest.mark.parametrize("router", ["least_loaded", "round_robin", "power_of_two", "jsq"])
@pytest.mark.parametrize("decode", ["least_kv", "jsq", "round_robin", "least_loaded"])
def test_both_drivers_agree(router, decode):
    a = Simulation(parse(_raw(router=router, decode=decode, engine="compiled"))).run()
    b = Simulation(parse(_raw(router=router, decode=decode, engine="simpy"))).run()
    _same(a, b)
    np.testing.assert_array_equal(a.requests.kv_transfer_s, b.requests.kv_transfer_s)
    np.testing.assert_array_equal(a.requests.prefill_replica, b.requests.prefill_replica)


def test_every_request_is_prefilled_on_a_prefill_replica_and_decoded_on_a_decode_one():
    res = Simulation(parse(_raw())).run()
    c = request_columns(res)
    done = c["status"] == "completed"
    assert done.all()
    multi = done & (res.workload.output_tokens > 1)
    assert set(c["prefill_replica"][done]) <= {0, 1}  # pool p: replicas 0, 1
    assert set(c["decode_replica"][multi]) <= {2, 3, 4} and set(c["pool"][multi]) == {"d"}
    # the KV moved is the prompt's, at the model's bytes per token, conserved per request
    kvb = builtin_catalog().models["llama-3.1-8b"].kv_bytes_per_token("bf16")
    bw = 400e9 / 8
    expect = 5e-6 + res.workload.prompt_tokens[multi] * kvb / bw
    np.testing.assert_allclose(c["kv_transfer_s"][multi], expect, rtol=1e-12)
    # the first token comes from the prefill replica, before the KV leaves
    assert np.all(res.requests.first_token_s[multi] <= res.requests.finish_s[multi] - c["kv_transfer_s"][multi])


def test_accounting_with_node_failures_and_timeouts():
    raw = _raw(n=600, rate=40.0, engine="compiled")
    raw["workload"]["timeout_s"] = 4.0
    raw["facility"] = {"sources": [{"name": "g", "kind": "grid", "mw": 0.05}],
                       "tents": [{"name": "t", "it_limit_mw": 0.05}],
                       "manager": {"policy": "none"}, "gpus_per_node": 1}
    raw["pools"][0]["tent"] = raw["pools"][1]["tent"] = "t"
    raw["failures"] = {"node_mtbf_h": 0.002, "node_repair_h": 0.001, "retry_limit": 1}
    a = Simulation(parse(raw)).run()
    s = summarize(a)
    assert s["node_failures"] > 0
    assert s["requests_completed"] + s["requests_rejected"] + s["requests_failed"] == 600
    b = Simulation(parse(dict(raw, run=dict(raw["run"], engine="simpy")))).run()
    _same(a, b)


def _cli(tmp_path, raw):
    import tomli_w
    p = tmp_path / "s.toml"
    p.write_bytes(tomli_w.dumps(raw).encode())
    return subprocess.run([sys.executable, "-m", "sim", "run", str(p)], capture_output=True, text=True, cwd=REPO)


@pytest.mark.parametrize("case,field", [
    ("prefill without decode", "pools[0].role"),
    ("decode without prefill", "pools[0].role"),
    ("mixed beside disaggregated", "pools[2].role"),
    ("a decode router that is not compiled", "router.decode_policy"),
    ("kv layouts that cannot move", "kv_dtype"),
    ("an unknown fabric", "network.fabric"),
    ("central_queue", "router.policy"),
])
def test_bad_disaggregation_input_is_one_line(case, field, tmp_path):
    raw = _raw()
    if case == "prefill without decode":
        raw["pools"] = raw["pools"][:1]
    elif case == "decode without prefill":
        raw["pools"] = raw["pools"][1:]
    elif case == "mixed beside disaggregated":
        raw["pools"].append({"name": "m", "hardware": "h100-sxm", "model": "llama-3.1-8b"})
    elif case == "a decode router that is not compiled":
        raw["router"]["decode_policy"] = "session_affinity"
    elif case == "kv layouts that cannot move":
        raw["pools"][1]["kv_dtype"] = "fp8"
    elif case == "an unknown fabric":
        raw["network"]["fabric"] = "carrier-pigeon"
    else:
        raw["router"]["policy"] = "central_queue"
    r = _cli(tmp_path, raw)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and field in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.slow
def test_compare_colocated_against_disaggregated_with_named_variants():
    import json
    r = subprocess.run([sys.executable, "-m", "sim", "compare", "scenarios/disagg.toml", "--variant",
                        "colocated:pools.role=mixed", "--variant", "disaggregated", "--replications", "3", "--set",
                        "workload.duration_s=60", "--json", "--workers", "1"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["baseline"] == "colocated" and set(rep["variants"]) == {"colocated", "disaggregated"}
    for m in ("ttft_mean_s", "tpot_mean_s", "goodput_req_per_s"):
        d = rep["variants"]["disaggregated"]["metrics"][m]
        assert d["ci_low"] <= d["mean"] <= d["ci_high"] and "diff_mean" in d, m
    bad = subprocess.run([sys.executable, "-m", "sim", "compare", "scenarios/disagg.toml", "--variant", "x:pools.role"],
                         capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "--variant" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_least_time_sends_more_work_to_the_faster_part():
    """Hardware-aware routing: with an H200 and a much slower Crescent Island pool co-located,
    least_time (outstanding tokens at each replica's own speed) gives the H200s a larger share
    than least_loaded (outstanding tokens alone), and both drivers agree on it."""
    def share(policy, engine="compiled"):
        raw = _raw(n=400, rate=6.0, router=policy, engine=engine)
        raw["pools"] = [{"name": "fast", "hardware": "h200", "model": "llama-3.1-8b", "replicas": 2},
                        {"name": "slow", "hardware": "crescent-island", "model": "llama-3.1-8b", "replicas": 2}]
        res = Simulation(parse(raw)).run()
        return float(np.mean(res.requests.replica < 2)), res
    lt, a = share("least_time")
    ll, _ = share("least_loaded")
    assert lt > ll + 0.05
    _same(a, share("least_time", "simpy")[1])


@pytest.mark.slow
def test_the_h200_crescent_script_prints_its_table(tmp_path):
    r = subprocess.run([sys.executable, "scenarios/disagg_h200_crescent.py", "--replications", "2", "--duration", "120",
                        "--out", str(tmp_path), "--workers", "1"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    for s in ("colocated-h200", "colocated-crescent", "h200-prefill+crescent-decode", "p99 TTFT", "goodput",
              "$ per Mtoken", "tok/s per kW"):
        assert s in r.stdout, s
    assert (tmp_path / "disagg_h200_crescent.png").stat().st_size > 10_000


@pytest.mark.slow
def test_distserve_direction_disaggregation_wins_at_a_tight_slo_and_not_at_a_loose_one():
    """scenarios/distserve_repro.toml: the largest rate meeting the SLO for 90% of requests, the
    co-located 3 replicas against 2 prefill + 1 decode (docs/disaggregation.md)."""
    from sim.studies.study import sweep

    def best(slo):
        rep = sweep(REPO / "scenarios" / "distserve_repro.toml", "workload.rate_per_s=3:51:3", (), 2, 1,
                    [f"slo.ttft_s={slo[0]}", f"slo.tpot_s={slo[1]}", "workload.duration_s=200"], quiet=True,
                    named=["colocated:pools.role=mixed", "disaggregated"])
        return {lab: v["max_value_meeting_slo"] for lab, v in rep["variants"].items()}
    tight = best((0.15, 0.03))
    loose = best((0.25, 0.1))
    assert tight["disaggregated"] >= 1.5 * tight["colocated"]  # DistServe's direction and rough size
    assert loose["disaggregated"] < loose["colocated"]


def _two_on_one_link(engine: str, link_gbps: float = 100.0, spine: dict | None = None):
    raw = {"seed": 0, "hardware": {"gpu": hw_table(**PLAIN)},
           "workload": {"arrival": "poisson", "rate_per_s": 1.0, "num_requests": 1, "prompt_tokens": 1,
                        "output_tokens": 1},
           "pools": [{"name": "p", "hardware": "gpu", "model": "llama-3.1-8b", "role": "prefill", "replicas": 2},
                     {"name": "d", "hardware": "gpu", "model": "llama-3.1-8b", "role": "decode", "replicas": 2}],
           "router": {"policy": "round_robin", "decode_policy": "round_robin"},
           "network": {"gbps": 400.0, "latency_us": 5.0,
                       "nodes": [{"name": "rack-a", "pools": ["p"]}, {"name": "spine", "pools": []},
                                 {"name": "rack-b", "pools": ["d"]}],
                       "links": [{"from": "rack-a", "to": "spine", "gbps": link_gbps, "latency_us": 2.0},
                                 {"from": "spine", "to": "rack-b", **(spine or {"fabric": "ib-400g"})}]},
           "run": {"engine": engine}}
    wl = Workload(np.array([0.0, 0.0]), np.array([1000, 1000], np.int64), np.array([5, 5], np.int64))
    return Simulation(parse(raw), wl).run()


@pytest.mark.parametrize("engine", ["compiled", pytest.param("simpy", marks=pytest.mark.slow)])
def test_a_saturated_link_slows_the_transfers_as_computed(engine):
    """Two prompts prefilled together cross one 100 Gb/s link to the other rack: the first has it
    whole, the second half of it (fair share at its start); latency = the ports' + both links'."""
    res = _two_on_one_link(engine)
    kv_bytes = 1000 * builtin_catalog().models["llama-3.1-8b"].kv_bytes_per_token("bf16")
    lat = 5e-6 + 2e-6 + 5e-6  # ports, rack-a-spine, spine-rack-b (ib-400g: 5 us)
    x = res.requests.kv_transfer_s
    assert x[0] == pytest.approx(lat + kv_bytes / (100e9 / 8), rel=1e-12)
    assert x[1] == pytest.approx(lat + kv_bytes / (50e9 / 8), rel=1e-12)
    # with links twice as fast as a port, two transfers share them and neither is slowed
    y = _two_on_one_link(engine, 800.0, {"gbps": 800.0, "latency_us": 5.0}).requests.kv_transfer_s
    assert y[0] == y[1] == pytest.approx(lat + kv_bytes / (400e9 / 8), rel=1e-12)


def test_the_network_is_a_networkx_graph():
    net = parse(_raw(network={"nodes": [{"name": "a", "pools": ["p"]}, {"name": "b", "pools": ["d"]}],
                              "links": [{"from": "a", "to": "b", "gbps": 200.0, "latency_us": 3.0}]})).network
    g = net.graph()
    assert set(g.nodes) == {"a", "b"} and g.edges["a", "b"]["gbps"] == 200.0


@pytest.mark.slow
@pytest.mark.parametrize("case,field", [
    ("a link to an unknown node", "network.links[0].to"),
    ("a pool on no node", "network.nodes"),
    ("no path between prefill and decode", "network.links"),
    ("an unknown pool on a node", "network.nodes[0].pools"),
])
def test_bad_network_input_is_one_line(case, field, tmp_path):
    nodes = [{"name": "a", "pools": ["p"]}, {"name": "b", "pools": ["d"]}]
    links = [{"from": "a", "to": "b", "gbps": 100.0}]
    if case == "a link to an unknown node":
        links[0]["to"] = "c"
    elif case == "a pool on no node":
        nodes[1]["pools"] = []
    elif case == "no path between prefill and decode":
        links = []
    else:
        nodes[0]["pools"] = ["p", "nope"]
    r = _cli(tmp_path, _raw(network={"fabric": "ib-400g", "nodes": nodes, "links": links}))
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and field in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_a_tp_group_that_spans_nodes_all_reduces_over_the_ports():
    """TP 16 on 8-GPU nodes: the ring all-reduce runs at the fabric's port speed and latency (its
    slowest hop), not NVLink's; TP 8 fits a node and is unchanged."""
    c = builtin_catalog()
    hw, m = c.hardware["h200"], c.models["llama-3.1-70b"]
    for tp, spans in ((16, True), (8, False)):
        raw = {"seed": 0, "workload": {"arrival": "poisson", "rate_per_s": 1.0, "num_requests": 1,
                                       "prompt_tokens": 100, "output_tokens": 2},
               "pools": [{"hardware": "h200", "model": "llama-3.1-70b", "tp": tp}],
               "network": {"fabric": "ib-400g"}}
        sc = parse(raw)
        rep = Simulation(sc).replicas[0]
        base = PerfModel(hw, m, tp)
        across = PerfModel(hw, m, tp, scaleout=(400e9 / 8, 5e-6))
        t = rep.perf.step_time(8, 8 * 2048.0, n_seq=8)
        assert t == pytest.approx((across if spans else base).step_time(8, 8 * 2048.0, n_seq=8), rel=1e-12)
        if spans:
            assert t > base.step_time(8, 8 * 2048.0, n_seq=8)
