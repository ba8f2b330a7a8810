"""Several models in one scenario (issue 13, part 4): a request names its model through its
class; routers choose among the pools serving it only; a model no pool serves is rejected with
reason no_pool_for_model; pools of several models with requests that name none is an error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sim.analysis.metrics import summarize
from sim.engine.simulation import Simulation
from sim.registry import ROUTERS
from sim.scenario.config import parse

REPO = Path(__file__).resolve().parents[1]


def _raw(router: str = "least_loaded", classes: list | None = None) -> dict:
    return {
        "name": "two-models", "seed": 5,
        "workload": {"arrival": "poisson", "rate_per_s": 40.0, "num_requests": 600,
                     "prompt_tokens": {"dist": "lognormal", "mean": 800, "cv": 1.0, "max": 4000},
                     "output_tokens": {"dist": "lognormal", "mean": 120, "cv": 0.8, "max": 1000},
                     "classes": classes if classes is not None else [
                         {"name": "chat", "share": 0.5, "model": "llama-3.1-8b"},
                         {"name": "code", "share": 0.4, "model": "qwen3-8b"},
                         {"name": "big", "share": 0.1, "model": "llama-3.1-70b"}]},
        "pools": [{"name": "llama-a", "hardware": "h100-sxm", "model": "llama-3.1-8b", "replicas": 2},
                  {"name": "qwen", "hardware": "h100-sxm", "model": "qwen3-8b", "replicas": 3},
                  {"name": "llama-b", "hardware": "h200", "model": "llama-3.1-8b", "replicas": 1}],
        "router": {"policy": router},
        "run": {"timeseries": False},
    }


@pytest.mark.slow
@pytest.mark.parametrize("router", [r for r in ROUTERS.compiled_names() if r != "central_queue"])
def test_no_request_is_served_by_a_pool_of_another_model(router, tmp_path):
    raw = _raw(router)
    out = tmp_path / "run"
    path = tmp_path / "s.toml"
    import tomli_w
    path.write_bytes(tomli_w.dumps(raw).encode())
    r = subprocess.run([sys.executable, "-m", "sim", "run", str(path), "--out", str(out), "--no-plots", "--json"],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    t = pq.read_table(out / "requests.parquet").to_pydict()
    serves = {"llama-a": "llama-3.1-8b", "qwen": "qwen3-8b", "llama-b": "llama-3.1-8b"}
    served = [(m, p) for m, p, s in zip(t["model"], t["pool"], t["status"], strict=False) if s == "completed"]
    assert served and all(serves[p] == m for m, p in served)
    assert {m for m, _ in served} == {"llama-3.1-8b", "qwen3-8b"}  # both models' requests were served
    # the model no pool serves: rejected with its reason, and the counts add up
    big = [(s, why) for m, s, why in zip(t["model"], t["status"], t["reason"], strict=False) if m == "llama-3.1-70b"]
    assert big and all(s == "rejected" and why.startswith("no_pool_for_model") for s, why in big)
    assert "no pool serves 'llama-3.1-70b'" in r.stderr  # said once, as a warning
    n = len(t["status"])
    assert sum(t["status"].count(k) for k in ("completed", "rejected", "failed")) == n


@pytest.mark.parametrize("router", ["round_robin", "jsq", "power_of_two", "least_kv", "session_affinity"])
def test_both_drivers_agree_with_two_models(router):
    from helpers import same as _same
    raw = _raw(router)
    raw["workload"]["sessions"] = 20
    fast = Simulation(parse(dict(raw, run=dict(raw["run"], engine="compiled")))).run()
    ref = Simulation(parse(dict(raw, run=dict(raw["run"], engine="simpy")))).run()
    _same(fast, ref)


def test_round_robin_takes_turns_within_each_model():
    res = Simulation(parse(_raw("round_robin"))).run()
    rep, cls = res.requests.replica, res.workload.cls
    for c, members in ((0, [0, 1, 5]), (1, [2, 3, 4])):  # llama: replicas 0, 1 (pool a) and 5 (pool b)
        seq = rep[(cls == c) & (rep >= 0)]
        assert list(seq[:6]) == (members * 2)[:6]


def test_one_model_scenarios_are_unchanged_by_the_groups():
    raw = _raw("least_loaded", [{"name": "x", "share": 1.0}])
    raw["pools"] = [raw["pools"][0], raw["pools"][2]]  # both llama: one routing group
    a = summarize(Simulation(parse(raw)).run())
    raw["workload"]["classes"][0]["model"] = "llama-3.1-8b"
    b = summarize(Simulation(parse(raw)).run())
    assert a["ttft_p99_s"] == b["ttft_p99_s"] and a["requests_completed"] == b["requests_completed"] == 600


def _cli(tmp_path, raw) -> subprocess.CompletedProcess:
    import tomli_w
    path = tmp_path / "s.toml"
    path.write_bytes(tomli_w.dumps(raw).encode())
    return subprocess.run([sys.executable, "-m", "sim", "run", str(path)], capture_output=True, text=True, cwd=REPO)


@pytest.mark.parametrize("case,field", [
    ("no classes", "workload.classes"),
    ("a class without a model", "workload.classes[1].model"),
    ("an unknown model", "workload.classes[0].model"),
    ("central_queue", "router.policy"),
])
def test_bad_multi_model_input_is_one_line(case, field, tmp_path):
    raw = _raw()
    if case == "no classes":
        del raw["workload"]["classes"]
    elif case == "a class without a model":
        del raw["workload"]["classes"][1]["model"]
    elif case == "an unknown model":
        raw["workload"]["classes"][0]["model"] = "llama-9"
    else:
        raw["router"]["policy"] = "central_queue"
    r = _cli(tmp_path, raw)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if "warning" not in ln]
    assert len(lines) == 1 and field in lines[0] and "Traceback" not in r.stderr, r.stderr


def test_the_context_window_is_checked_against_the_requests_own_model():
    raw = _raw(classes=[{"name": "chat", "share": 0.5, "model": "llama-3.1-8b"},
                        {"name": "code", "share": 0.5, "model": "qwen3-8b"}])
    from sim.perf.catalog import builtin_catalog
    cat = builtin_catalog().models
    lo, hi = sorted([cat["llama-3.1-8b"].max_context_tokens, cat["qwen3-8b"].max_context_tokens])
    assert lo < hi  # (the catalog's: 128k for Llama-3.1, 40,960 for Qwen3-8B)
    long_model = "llama-3.1-8b" if cat["llama-3.1-8b"].max_context_tokens == hi else "qwen3-8b"
    raw["workload"]["classes"][0]["model"] = long_model
    raw["workload"]["classes"][1]["model"] = long_model
    raw["workload"]["classes"][1]["prompt_tokens"] = {"dist": "fixed", "value": lo + 10}
    raw["workload"]["classes"][1]["output_tokens"] = {"dist": "fixed", "value": 10}
    raw["pools"] = [p for p in raw["pools"] if p["model"] == long_model] + [
        p for p in raw["pools"] if p["model"] != long_model]
    raw["workload"]["num_requests"] = 50
    s = summarize(Simulation(parse(raw)).run())  # the long prompts are the long model's: they fit
    assert s["requests_completed"] + s["requests_rejected"] == 50
