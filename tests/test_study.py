"""compare, sweep and plots: CRN, worker-count independence, plots with their data."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sim.analysis.stats import mean_ci, paired_diff_ci, welch_diff_ci
from sim.studies.study import compare, strip_latencies, sweep

REPO = Path(__file__).resolve().parents[1]
QUICK = str(REPO / "scenarios" / "quickstart.toml")
SMALL = ["workload.num_requests=300"]


def test_t_interval_against_textbook_values():
    m, lo, hi = mean_ci([1.0, 2.0, 3.0, 4.0])  # mean 2.5, s = 1.291, t(3) = 3.182
    assert m == 2.5 and hi - m == pytest.approx(3.182 * 1.2909944 / 2, rel=1e-4)


@pytest.mark.slow
def test_compare_cli_json_shape(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "sim",
            "compare",
            QUICK,
            "--vary",
            "pools.scheduler.policy=continuous,chunked",
            "--replications",
            "3",
            "--json",
            "--set",
            "workload.num_requests=200",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["baseline"] == "continuous"
    for lab in ("continuous", "chunked"):
        for m in ("ttft_mean_s", "tpot_p99_s", "e2e_mean_s", "throughput_output_tok_per_s"):
            d = rep["variants"][lab]["metrics"][m]
            assert d["ci_low"] <= d["mean"] <= d["ci_high"]
            if lab == "chunked":
                assert d["diff_ci_low"] <= d["diff_mean"] <= d["diff_ci_high"]
                assert isinstance(d["significant"], bool)
    for f in ("compare.json", "comparison.png", "latency_cdf.png"):
        assert (tmp_path / f).stat().st_size > 5000


def test_common_random_numbers_narrow_the_difference_ci():
    """Two near-identical policies on the same seeds: replications differ a lot from each other
    (different request streams), but each pair shares its stream, so the paired CI of the
    difference is far narrower than the unpaired (Welch) one."""
    rep = compare(QUICK, ["router.policy=round_robin,least_loaded"], replications=6, sets=SMALL,
                  workers=2, quiet=True, keep_latencies=False)
    narrower = 0
    for m in ("ttft_mean_s", "e2e_mean_s", "tpot_mean_s", "throughput_output_tok_per_s"):
        a = rep["variants"]["least_loaded"]["metrics"][m]["values"]
        b = rep["variants"]["round_robin"]["metrics"][m]["values"]
        _, plo, phi = paired_diff_ci(a, b)
        _, ulo, uhi = welch_diff_ci(a, b)
        narrower += (phi - plo) < (uhi - ulo)
        assert rep["variants"]["least_loaded"]["metrics"][m]["diff_ci_low"] == pytest.approx(plo)
    assert narrower == 4


def test_results_identical_whatever_the_worker_count():
    a = compare(QUICK, ["pools.scheduler.policy=static,chunked"], replications=2, sets=SMALL, workers=1, quiet=True)
    b = compare(QUICK, ["pools.scheduler.policy=static,chunked"], replications=2, sets=SMALL, workers=2, quiet=True)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    s1 = sweep(QUICK, "workload.rate_per_s=20:60:20", sets=SMALL, workers=1, quiet=True)
    s2 = sweep(QUICK, "workload.rate_per_s=20:60:20", sets=SMALL, workers=2, quiet=True)
    assert json.dumps(s1, sort_keys=True) == json.dumps(s2, sort_keys=True)


@pytest.fixture(scope="module")
def quick_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    r = subprocess.run([sys.executable, "-m", "sim", "sweep", QUICK, "--range", "workload.rate_per_s=25:300:25",
                        "--set", "workload.num_requests=4000", "--set", "slo.ttft_s=0.5", "--set", "slo.tpot_s=0.05",
                        "--vary", "pools.scheduler.policy=continuous,chunked",
                        "--out", str(out), "--json", "--quiet"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    return out, json.loads(r.stdout)


@pytest.mark.slow
def test_sweep_p99_ttft_rises_steeply_near_saturation(quick_sweep):
    _, rep = quick_sweep
    pts = rep["variants"]["chunked"]["points"]
    load = np.array([p["value"] for p in pts])
    thr = np.array([p["metrics"]["throughput_req_per_s"]["mean"] for p in pts])
    p99 = np.array([p["metrics"]["ttft_p99_s"]["mean"] for p in pts])
    sat = thr.max()  # the measured saturation throughput
    light = p99[load <= 0.5 * sat]
    near = p99[(load >= sat)]
    over = p99[(load >= 1.3 * sat)]
    assert light.size and near.size and over.size
    assert near.min() > 5 * light.max()  # steeply up once load reaches saturation
    assert over.min() > 20 * light.max()  # and over an order of magnitude beyond it
    assert np.all(np.diff(p99[load >= 0.5 * sat]) > 0)  # rising all the way
    # and the variant's max load meeting the SLO lies below saturation
    best = rep["variants"]["chunked"]["max_value_meeting_slo"]
    assert best is not None and best < sat * 1.05


@pytest.mark.slow
def test_plots_exist_and_their_numbers_match_the_sweep(quick_sweep):
    out, rep = quick_sweep
    import matplotlib.image as mpimg
    for f in ("latency_vs_load.png", "throughput_vs_latency.png", "goodput_vs_load.png"):
        img = mpimg.imread(out / f)
        assert img.shape[0] > 300 and img.shape[1] > 500 and img.std() > 0.01  # not blank
    drawn = json.loads((out / "latency_vs_load.json").read_text())
    for lab, v in rep["variants"].items():
        means = [p["metrics"]["ttft_p99_s"]["mean"] for p in v["points"]]
        assert drawn["variants"][lab]["ttft_p99_s"]["mean"] == pytest.approx(means)
    # dcsim plot redraws from the saved report
    (out / "latency_vs_load.png").unlink()
    r = subprocess.run([sys.executable, "-m", "sim", "plot", str(out)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and (out / "latency_vs_load.png").exists()


@pytest.mark.slow
def test_chunked_lowers_tail_tpot_against_continuous_at_high_load(quick_sweep):
    """Sarathi-Serve's result: prefill-prioritising continuous batching stalls decodes."""
    _, rep = quick_sweep
    c = {p["value"]: p["metrics"]["tpot_p99_s"]["mean"] for p in rep["variants"]["continuous"]["points"]}
    k = {p["value"]: p["metrics"]["tpot_p99_s"]["mean"] for p in rep["variants"]["chunked"]["points"]}
    hi = [v for v in c if 100 <= v <= 150]
    assert all(k[v] < c[v] for v in hi)


@pytest.mark.slow  # (a whole-run integration test: the full suite runs it)
def test_run_out_draws_timeseries_plot(tmp_path):
    r = subprocess.run([sys.executable, "-m", "sim", "run", QUICK, "--set", "workload.num_requests=200", "--out",
                        str(tmp_path), "--quiet"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "timeseries.json").read_text())
    assert set(data) == {"0", "1", "2", "3"} and all(v["batch_size_max"] >= 1 for v in data.values())
    assert (tmp_path / "latency_cdf.png").stat().st_size > 5000


def test_strip_latencies_keeps_the_numbers():
    rep = compare(QUICK, ["pools.scheduler.policy=chunked"], replications=1, sets=SMALL, workers=1, quiet=True)
    assert "latencies_seed0" in rep["variants"]["chunked"]
    assert "latencies_seed0" not in strip_latencies(rep)["variants"]["chunked"]
