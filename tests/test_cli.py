"""Command line: outputs, overrides, and one-line errors (exit 2, no traceback) on bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
QUICK = REPO / "scenarios" / "quickstart.toml"


def dcsim(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "sim", *map(str, args)], capture_output=True, text=True, cwd=cwd)


@pytest.mark.slow
def test_run_json_and_out_dir(tmp_path):
    r = dcsim("run", QUICK, "--set", "workload.num_requests=300", "--out", tmp_path / "run", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    keys = ["requests_total", "requests_completed", "requests_rejected", "requests_failed", "requests_in_flight",
            "ttft_mean_s", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "tpot_mean_s", "tpot_p50_s", "tpot_p99_s",
            "e2e_mean_s", "e2e_p50_s", "e2e_p99_s", "queue_mean_s", "throughput_output_tok_per_s",
            "throughput_req_per_s", "utilization_mean", "sim_time_s", "wall_time_s"]
    assert all(k in s for k in keys)
    assert s["requests_total"] == 300
    run = tmp_path / "run"
    req = pq.read_table(run / "requests.parquet")
    assert req.num_rows == 300
    for col in ["arrival_s", "first_token_s", "finish_s", "prompt_tokens", "output_tokens", "replica",
                "status", "reason", "preemptions"]:
        assert col in req.column_names
    ts = pq.read_table(run / "timeseries.parquet")
    assert {"t_s", "replica", "batch_size", "kv_blocks_used", "busy"} <= set(ts.column_names)
    assert json.loads((run / "summary.json").read_text())["requests_total"] == 300
    # the saved effective scenario reruns to the same result
    r2 = dcsim("run", run / "scenario.toml", "--json")
    s2 = json.loads(r2.stdout)
    s.pop("wall_time_s"), s2.pop("wall_time_s")
    assert s == s2


@pytest.mark.slow
def test_run_table_and_seed_override():
    r = dcsim("run", QUICK, "--set", "workload.num_requests=100", "--seed", "9")
    assert r.returncode == 0 and "TTFT" in r.stdout and "seed 9" in r.stdout


def test_set_reaches_pools_by_name_and_all():
    from sim.scenario.config import apply_overrides, read_toml
    raw = read_toml(QUICK)
    a = apply_overrides(
        raw, ["pools.scheduler.policy=continuous", "pools.main.replicas=2", "router.policy=least_loaded"]
    )
    assert a["pools"][0]["scheduler"]["policy"] == "continuous" and a["pools"][0]["replicas"] == 2
    assert a["router"]["policy"] == "least_loaded"


def test_perf_calculator_json():
    r = dcsim("perf", "--hardware", "h100-sxm", "--model", "llama-3.1-8b", "--tp", "1", "--batch", "32",
              "--context", "2048", "--prompt", "1024", "--dtype", "bf16", "--json")
    assert r.returncode == 0, r.stderr
    o = json.loads(r.stdout)
    for k in ["decode_step_s", "prefill_s", "decode_tokens_per_s", "bound", "weights_bytes",
              "kv_bytes_per_token", "max_sequences_in_kv"]:
        assert k in o
    assert o["bound"] in ("memory", "compute")
    assert o["decode_tokens_per_s"] == pytest.approx(32 / o["decode_step_s"])
    assert o["kv_bytes_per_token"] == 131072
    assert o["max_sequences_in_kv"] == int((80e9 * 0.9 - o["weights_bytes"]) / 131072 // 16) // 128


def test_catalog_lists_required_ids():
    r = dcsim("catalog", "--json")
    o = json.loads(r.stdout)
    for h in ["a100-80g", "h100-sxm", "h200", "b200", "gb300", "mi300x", "mi325x", "gaudi3", "l40s", "crescent-island"]:
        assert h in o["hardware"]
    for m in ["llama-2-7b", "llama-2-70b", "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "qwen2.5-7b",
              "qwen3-32b", "mistral-nemo-12b", "yi-34b", "mixtral-8x7b"]:
        assert m in o["models"]


@pytest.mark.slow
def test_inline_hardware_and_model(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text("""
[workload]
rate_per_s = 2.0
num_requests = 20
prompt_tokens = 100
output_tokens = 10
[hardware.myacc]
name = "mine"
memory_gb = 64
mem_bw_tbps = 2.0
tflops = { bf16 = 500 }
tdp_w = 500
idle_w = 80
scaleup_gbps_bidir = 400
[models.tiny]
layers = 4
hidden = 512
heads = 8
kv_heads = 8
head_dim = 64
ffn = 1024
vocab = 1000
max_context_tokens = 4096
[[pools]]
hardware = "myacc"
model = "tiny"
""")
    r = dcsim("run", p, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["requests_completed"] == 20


BAD = {
    "unknown hardware": ("pools[0].hardware", "[[pools]]\nhardware = 'h900'\nmodel = 'llama-3.1-8b'\n"),
    "unknown model": ("pools[0].model", "[[pools]]\nhardware = 'h100-sxm'\nmodel = 'llama-9'\n"),
    "does not fit": ("pools[0].tp", "[[pools]]\nhardware = 'h100-sxm'\nmodel = 'llama-3.1-405b'\ntp = 2\n"),
    "mistyped field": ("pools[0].replica", "[[pools]]\nhardware = 'h100-sxm'\nmodel = 'llama-3.1-8b'\nreplica = 2\n"),
    "wrong type": ("pools[0].replicas", "[[pools]]\nhardware = 'h100-sxm'\nmodel = 'llama-3.1-8b'\nreplicas = 'two'\n"),
    "bad policy": ("pools[0].scheduler.policy",
                   "[[pools]]\nhardware = 'h100-sxm'\nmodel = 'llama-3.1-8b'\n[pools.scheduler]\npolicy = 'magic'\n"),
}
WL = "[workload]\nrate_per_s = 1.0\nnum_requests = 5\nprompt_tokens = 10\noutput_tokens = 5\n"


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_scenarios_exit_2_with_one_line(tmp_path, case):
    field, body = BAD[case]
    p = tmp_path / "bad.toml"
    p.write_text(WL + body)
    r = dcsim("run", p)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0] and "fix:" in lines[0]


@pytest.mark.slow
@pytest.mark.parametrize(
    "text,field",
    [
        (
            "[workload]\nrate_per_s = -3.0\nnum_requests = 5\nprompt_tokens = 10\noutput_tokens = 5\n",
            "workload.rate_per_s",
        ),
        ("[workload]\nrate_per_s = 3.0\nprompt_tokens = 10\noutput_tokens = 5\n", "workload.num_requests"),
        (
            "[workload]\nrate_per_s = 3.0\nnum_requests = 5\nprompt_tokens = { dist = 'normal', mean = 3 }\n"
            "output_tokens = 5\n",
            "workload.prompt_tokens.dist",
        ),
        ("[workload\nrate = 1", "scenario"),
    ],
)
def test_bad_workload_fields(tmp_path, text, field):
    p = tmp_path / "bad.toml"
    p.write_text(
        text + ("\n[[pools]]\nhardware = 'h100-sxm'\nmodel = 'llama-3.1-8b'\n" if "[workload]" in text else "")
    )
    r = dcsim("run", p)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert field in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_missing_file_and_bad_perf_args():
    r = dcsim("run", "nope.toml")
    assert r.returncode == 2 and "not found" in r.stderr and "Traceback" not in r.stderr
    r = dcsim("perf", "--hardware", "h100-sxm", "--model", "gpt-9")
    assert r.returncode == 2 and "--model" in r.stderr and "Traceback" not in r.stderr
    r = dcsim("perf", "--hardware", "h100-sxm", "--model", "llama-3.1-8b", "--batch", "0")
    assert r.returncode == 2 and "--batch" in r.stderr
    r = dcsim("run", QUICK, "--set", "workload.rate_per_s")
    assert r.returncode == 2 and "--set" in r.stderr


def test_python_module_and_console_script_agree():
    r = dcsim("catalog")
    assert r.returncode == 0 and "h100-sxm" in r.stdout


def test_the_effective_scenario_keeps_every_pool_setting():
    """clock_lock, variability and role survive the scenario saved beside a run (a rerun of
    OUT/scenario.toml is the same run)."""
    import tomllib

    import tomli_w

    from sim.scenario.config import parse
    raw = {"name": "x", "workload": {"arrival": "poisson", "rate_per_s": 1.0, "num_requests": 10,
                                     "prompt_tokens": 100, "output_tokens": 10},
           "pools": [{"name": "p", "hardware": "h100-sxm", "model": "llama-3.1-8b", "clock_lock": 0.8,
                      "variability": {"jitter": 0.1}, "role": "prefill"},
                     {"name": "d", "hardware": "h100-sxm", "model": "llama-3.1-8b", "role": "decode"}],
           "router": {"policy": "jsq", "decode_policy": "jsq"}}
    sc = parse(raw)
    again = parse(tomllib.loads(tomli_w.dumps(sc.raw)))
    assert again.pools == sc.pools and again.router == sc.router
