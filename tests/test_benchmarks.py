"""The benchmark scripts still run (small sizes; the figures themselves are measured by hand)."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("bench_scale", REPO / "benchmarks" / "bench_scale.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_scale_small():
    b = _load()
    q = b.quickstart(3000)
    assert q["completed"] == 3000 and q["engine"] == "compiled" and q["sim_requests_per_wall_s"] > 0
    f = b.fleet70b(2, 0.02, 0.8)
    assert f["requests"] > 0 and f["engine"] == "compiled" and f["ttft_p99_s"] > 0
    # 80% of the measured capacity: the fleet keeps up (the tail stays bounded)
    assert f["ttft_p99_s"] < 5.0
    # columnar state: ~150 B per request measured at 20k-1M requests (README); an object or a
    # list per request would add hundreds
    m = b.memory(20000)
    assert 0 < m["bytes_per_request"] < 300
