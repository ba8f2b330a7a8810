"""dcsim observe and calibrate against a real server process (tests/fake_server.py: its own
continuous-batching timing model, on 127.0.0.1)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from sim.cli import main

ROOT = Path(__file__).resolve().parents[1]

SCENARIO = """
name = "fake"
seed = 3
[workload]
arrival = "{arrival}"
{load}
num_requests = {n}
prompt_tokens = {{ dist = "lognormal", mean = 400, cv = 0.5, max = 2000 }}
output_tokens = {{ dist = "fixed", value = {out} }}
[[pools]]
hardware = "{hw}"
model = "llama-3.1-8b"
replicas = 1
[pools.scheduler]
max_batch_size = 64
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("srv")
    log = d / "log.jsonl"
    p = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_server.py"), "--log", str(log)],
                         stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()  # type: ignore[union-attr]
    assert line.startswith("PORT"), line
    yield f"http://127.0.0.1:{line.split()[1]}", log
    p.kill()
    p.wait()


def _scenario(d: Path, name: str, hw: str = "h100-sxm", arrival: str = "poisson", load: str = "rate_per_s = 10",
              n: int = 60, out: int = 32, extra: str = "") -> Path:
    p = d / f"{name}.toml"
    p.write_text(extra + SCENARIO.format(arrival=arrival, load=load, n=n, out=out, hw=hw))
    return p


def _observe(sc: Path, url: str, out: Path, *more: str) -> dict:
    assert main(["observe", str(sc), "--url", url, "--out", str(out), *more]) == 0
    return json.loads((out / "summary.json").read_text())


def test_observe_times_every_token_as_the_server_sent_it(server, tmp_path):
    url, log = server
    sc = _scenario(tmp_path, "closed", arrival="closed", load="concurrency = 200", n=400, out=16)
    s = _observe(sc, url, tmp_path / "run")
    assert s["measured"] and s["complete"] and s["requests_completed"] == 400 and s["clients"] == 200
    t = pq.read_table(tmp_path / "run" / "requests.parquet").to_pydict()
    assert t["output_tokens"] == t["requested_output_tokens"]  # token counts exactly
    srv = {}
    for line in log.read_text().splitlines():
        r = json.loads(line)
        srv[r["rid"]] = r["times"]
    first, last = [], []
    for j, (f, e) in enumerate(zip(t["first_token_s"], t["finish_s"], strict=True)):
        times = np.asarray(srv[f"dcsim-{j}"]) - s["clock_origin_perf_counter_s"]
        assert len(times) == t["output_tokens"][j]
        first.append(f - times[0])
        last.append(e - times[-1])
    lag = np.abs(np.array(first + last))
    # measured on a 2-core machine, client and server sharing it: median 1.1-1.3 ms, p99 2.3-3.3 ms;
    # on the same kind of VM on 2026-12-07: median 1.7-2.4 ms, p99 4.8-7.0 ms, more inside a long
    # pytest session (the client shares the test process). A token timed a step late (the fake
    # server's step is ~29 ms at this load) fails the median if systematic, the p99 if in 1%
    print("lag p50 p99 max ms", np.round(np.percentile(lag, [50, 99, 100]) * 1e3, 2))
    p50, p99 = np.percentile(lag, [50, 99])
    assert p50 < 0.005 and p99 < 0.015 and np.max(lag) < 0.05, np.percentile(lag, [50, 99, 100])
    gaps = t["itl_s"][0]
    assert len(gaps) == 15 and all(g > 0 for g in gaps)
    assert "measured" in (tmp_path / "run" / "report.html").read_text()


@pytest.mark.slow
def test_calibrate_on_two_loads_predicts_a_third(server, tmp_path, capsys):
    url, _ = server
    for rate in (8, 24, 16):
        _observe(_scenario(tmp_path, f"r{rate}", load=f"rate_per_s = {rate}"), url, tmp_path / f"r{rate}")
    prof = tmp_path / "prof.toml"
    assert main(["calibrate", str(tmp_path / "r8"), str(tmp_path / "r24"), "--hardware", "mygpu", "--like", "h100-sxm",
                 "--out", str(prof)]) == 0
    text = prof.read_text()
    assert 'calibration_status = "measured"' in text and "r8" in text and "r24" in text
    sc = _scenario(tmp_path, "held", hw="mygpu", load="rate_per_s = 16", extra='catalog = "prof.toml"\n')
    capsys.readouterr()
    assert main(["run", str(sc), "--out", str(tmp_path / "sim16")]) == 0
    err_text = capsys.readouterr().err
    assert "mygpu: constants measured (dcsim calibrate" in err_text and "borrowed" not in err_text
    assert "Constants measured" in (tmp_path / "sim16" / "report.html").read_text()
    sim = json.loads((tmp_path / "sim16" / "summary.json").read_text())
    meas = json.loads((tmp_path / "r16" / "summary.json").read_text())
    assert sim["calibration_status"] == {"mygpu": "measured"}
    err = {k: sim[k] / meas[k] - 1 for k in ("throughput_output_tok_per_s", "tpot_mean_s", "ttft_mean_s")}
    print("held-out errors", err)
    assert abs(err["throughput_output_tok_per_s"]) < 0.05, err
    assert abs(err["tpot_mean_s"]) < 0.10, err
    assert abs(err["ttft_mean_s"]) < 0.15, err
    assert main(["validate", "--profile", str(prof), "--data", str(tmp_path / "r16")]) == 0


def test_vllm_bench_json_round_trips_through_calibrate(tmp_path):
    from sim.observe.runs import load_run

    d = json.loads((ROOT / "tests" / "data" / "vllm_bench_serve.json").read_text())
    run = load_run(ROOT / "tests" / "data" / "vllm_bench_serve.json")
    assert run.raw["workload"]["arrival"] == "closed" and run.raw["workload"]["concurrency"] == d["max_concurrency"]
    assert run.measured["tpot_mean_s"] == pytest.approx(d["mean_tpot_ms"] / 1e3)
    prof = tmp_path / "p.toml"
    assert main(["calibrate", str(ROOT / "tests" / "data" / "vllm_bench_serve.json"), "--hardware", "h", "--like",
                 "h100-sxm", "--model", "llama-3.1-8b", "--out", str(prof)]) == 0
    assert 'calibration_status = "measured"' in prof.read_text()


@pytest.mark.parametrize("argv, field", [
    (["observe", "SC", "--url", "http://127.0.0.1:9", "--out", "OUT"], "--url"),
    (["observe", "SC", "--url", "ftp://x", "--out", "OUT"], "--url"),
    (["calibrate", "EMPTY", "--hardware", "n", "--like", "h100-sxm", "--out", "P"], "EMPTY"),
    (["calibrate", "FOREIGN", "--hardware", "n", "--like", "h100-sxm", "--out", "P"], "FOREIGN"),
    (["calibrate", "EMPTY", "--hardware", "n", "--like", "nope", "--out", "P"], "--like"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, argv, field):
    (tmp_path / "empty").mkdir()
    (tmp_path / "foreign.json").write_text(json.dumps({"hello": 1}))
    sub = {"SC": str(_scenario(tmp_path, "s")), "OUT": str(tmp_path / "o"), "EMPTY": str(tmp_path / "empty"),
           "FOREIGN": str(tmp_path / "foreign.json"), "P": str(tmp_path / "p.toml")}
    assert main([sub.get(a, a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and sub.get(field, field) in err[0], err


def test_an_inferencex_table_gives_one_run_per_row_of_the_part():
    from sim.observe.runs import MAX_TABLE_ROWS, load_runs

    runs = load_runs(ROOT / "data" / "validation" / "hardware" / "inferencex_dsr1.csv", "h200", "sglang")
    assert 1 <= len(runs) <= MAX_TABLE_ROWS
    for r in runs:
        assert r.raw["workload"]["arrival"] == "closed" and r.raw["pools"][0]["hardware"] == "h200"
        assert r.measured["throughput_output_tok_per_s"] > 0 and r.measured["tpot_mean_s"] > 0


def test_ctrl_c_keeps_what_was_measured(server, tmp_path):
    import signal
    import time

    url, _ = server
    sc = _scenario(tmp_path, "long", load="rate_per_s = 20", n=400, out=64)
    p = subprocess.Popen([sys.executable, "-m", "sim", "observe", str(sc), "--url", url, "--out", str(tmp_path / "o")],
                         stderr=subprocess.PIPE, text=True)
    time.sleep(6.0)  # start-up, then a few seconds of requests
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=60) == 130, p.stderr.read()  # type: ignore[union-attr]
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["complete"] is False and 0 < s["requests_completed"] < 400
    assert s["requests_completed"] + s["requests_failed"] == s["requests_total"] == 400
    t = pq.read_table(tmp_path / "o" / "requests.parquet").to_pydict()
    failed = [r for st, r in zip(t["status"], t["reason"], strict=True) if st != "completed"]
    assert all(failed)  # every one with its reason
    # all but a request being written as the client shut down (its own error, e.g. ClientOSError)
    assert sum(not r.startswith(("interrupted", "not sent: interrupted")) for r in failed) <= 2, failed
    assert not (tmp_path / "o" / ".incomplete").exists()


def test_a_server_ending_its_event_lines_in_crlf_is_read_as_well(tmp_path):
    p = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_server.py"), "--crlf"], stdout=subprocess.PIPE,
                         text=True)
    try:
        url = f"http://127.0.0.1:{p.stdout.readline().split()[1]}"  # type: ignore[union-attr]
        s = _observe(_scenario(tmp_path, "crlf", load="rate_per_s = 40", n=20, out=8), url, tmp_path / "o")
    finally:
        p.kill()
        p.wait()
    assert s["requests_completed"] == 20 and s["output_tokens_completed"] == 160
