"""Input hygiene (issue 11): every bad input is one line naming the field and the fix, exit 2,
never a traceback and never a silent fix; legal but suspicious input is one warning line. Run
in-process through sim.cli.main, so an exception other than a ScenarioError fails the test."""

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.cli import main

REPO = Path(__file__).resolve().parents[1]
QUICK = str(REPO / "scenarios" / "quickstart.toml")
SMALL = ["--set", "workload.num_requests=40"]


def cli(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, [line for line in err.splitlines() if line.strip()]


def _csv(tmp_path, rows):
    p = tmp_path / "trace.csv"
    p.write_text("arrival_s,prompt_tokens,output_tokens\n" + rows)
    return p


def _trace_scenario(tmp_path, trace, extra=""):
    p = tmp_path / "s.toml"
    p.write_text(f'seed = 1\n[workload]\narrival = "trace"\ntrace = "{trace}"\n{extra}\n'
                 '[[pools]]\nhardware = "h100-sxm"\nmodel = "llama-3.1-8b"\n')
    return p


# (arguments, the field the one error line must name): every reproduction of issue 11
ERRORS = {
    "tp 3 on 32 heads": (["run", QUICK, "--set", "pools.tp=3"], "pools[0].tp"),
    "tp 1024": (["run", QUICK, "--set", "pools.tp=1024"], "pools[0].tp"),
    "perf tp 6 on 64 heads": (["perf", "--hardware", "h200", "--model", "llama-3.1-70b", "--tp", "6"], "--tp"),
    "plan tp 3": (["plan", QUICK, "--target-rate", "5", "--slo", "ttft_s=1", "--tp", "3"], "--tp"),
    "prompt past the context": (["run", QUICK, "--set", 'pools.model="llama-2-7b"',
                                 "--set", "workload.prompt_tokens=100000"], "workload.prompt_tokens"),
    "cap below the floor": (["perf", "--hardware", "h200", "--model", "llama-3.1-8b", "--power-cap-w", "50"],
                            "--power-cap-w"),
    "attainment 2 (sweep)": (["sweep", QUICK, "--range", "workload.rate_per_s=5:10:5", "--attainment", "2"],
                             "--attainment"),
    "attainment 2 (plan)": (["plan", QUICK, "--target-rate", "5", "--slo", "ttft_s=1", "--attainment", "2"],
                            "--attainment"),
    "negative sweep rates": (["sweep", QUICK, "--range", "workload.rate_per_s=-5:10:5"], "--range"),
    "warmup past the end": (["run", QUICK, *SMALL, "--set", "workload.warmup_s=1e6"], "workload.warmup_s"),
    "warmup past the duration": (["run", QUICK, "--set", "workload.num_requests=0", "--set",
                                  "workload.duration_s=10"], "workload.num_requests"),
    "class shares": (["run", QUICK, *SMALL, "--set", 'workload.classes=[{name="a", share=0.5}, {name="b", share=0.4}]'],
                     "workload.classes.share"),
    "a folder": (["run", str(REPO / "scenarios")], "scenario"),
    "10^12 requests": (["run", QUICK, "--set", "workload.num_requests=1000000000000"], "workload.num_requests"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_each_reproduction_is_one_line_naming_the_field(capsys, case):
    args, field = ERRORS[case]
    rc, _, err = cli(capsys, *args)
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith(f"dcsim: error: {field}") and "fix:" in err[0], err


@pytest.mark.parametrize("rows, words", [
    ("0,-3,5\n", "prompt_tokens = '-3'"), ("0,10,0\n", "output_tokens = '0'"), ("0,100.7,5\n", "'100.7'"),
    ("2,10,5\n1,10,5\n", "comes before"), ("-1,10,5\n", "arrival_s = '-1'"), ("", "holds no requests"),
])
def test_bad_traces_name_the_file_and_row(capsys, tmp_path, rows, words):
    rc, _, err = cli(capsys, "run", _trace_scenario(tmp_path, _csv(tmp_path, rows)), "--json")
    assert rc == 2 and len(err) == 1 and "workload.trace" in err[0] and "trace.csv" in err[0] and words in err[0], err
    if rows:
        assert " line " in err[0]


def test_a_trace_request_past_the_context_names_its_row(capsys, tmp_path):
    p = _trace_scenario(tmp_path, _csv(tmp_path, "0,10,5\n1,200000,5\n"))
    rc, _, err = cli(capsys, "run", p, "--json")
    assert rc == 2 and len(err) == 1 and "context window of 131072" in err[0] and "line 3" in err[0], err


WARNINGS = {
    "trace cut by num_requests": ("workload.num_requests", 'num_requests = 2', "replaying the trace's first 2 of 3"),
    "rate with a trace": ("workload.rate_per_s", "rate_per_s = 4.0", "no effect"),
}


@pytest.mark.parametrize("case", sorted(WARNINGS))
def test_legal_but_suspicious_input_is_one_warning_line(capsys, tmp_path, case):
    field, extra, words = WARNINGS[case]
    p = _trace_scenario(tmp_path, _csv(tmp_path, "0,10,5\n1,20,5\n2,30,5\n"), extra)
    rc, _, err = cli(capsys, "run", p, "--json")
    assert rc == 0
    assert err == [w for w in err if w.startswith("dcsim: warning: ")] and len(err) == 1, err
    assert field in err[0] and words in err[0]


@pytest.mark.slow
def test_cv_with_poisson_warns_and_the_saved_scenario_does_not(capsys, tmp_path):
    rc, _, err = cli(capsys, "run", QUICK, *SMALL, "--set", "workload.cv=2", "--out", tmp_path / "o", "--no-plots",
                     "--quiet")
    assert rc == 0 and len(err) == 1 and "workload.cv: has no effect" in err[0]
    rc, _, err = cli(capsys, "run", tmp_path / "o" / "scenario.toml", "--json")  # a rerun of the saved run
    assert rc == 0 and err == []


def test_a_saved_run_with_a_relative_trace_repeats_from_anywhere(capsys, tmp_path, monkeypatch):
    (tmp_path / "in").mkdir()
    _csv(tmp_path / "in", "0,10,5\n1,20,5\n")
    p = _trace_scenario(tmp_path / "in", "trace.csv")
    rc, first, _ = cli(capsys, "run", p, "--json", "--out", tmp_path / "out", "--no-plots")
    assert rc == 0
    monkeypatch.chdir(tmp_path)
    rc, again, err = cli(capsys, "run", tmp_path / "out" / "scenario.toml", "--json")
    assert rc == 0, err
    assert '"requests_completed": 2' in again


def test_compare_with_one_replication_says_it_has_no_interval(capsys):
    rc, out, err = cli(capsys, "compare", QUICK, *SMALL, "--vary", "pools.scheduler.policy=continuous,chunked",
                       "--replications", "1", "--quiet", "--workers", "1")
    assert rc == 0 and any("--replications" in e and "no confidence interval" in e for e in err)
    assert "[no CI: 1 replication]" in out and "[0.0" not in out


@pytest.mark.slow
def test_plot_of_a_fleet_folder(capsys, tmp_path):
    rc, _, _ = cli(capsys, "run", REPO / "scenarios" / "fleet_30t.toml", "--out", tmp_path, "--quiet")
    assert rc == 0
    rc, out, err = cli(capsys, "plot", tmp_path)
    assert rc == 0 and "latency_cdf.png" in out, err


def test_plan_validates_candidates_not_the_base(capsys):
    # the base (405B on one H100) does not fit; the candidates at TP 8 and 16 on H200 in fp8 may
    rc, out, err = cli(capsys, "plan", QUICK, "--target-rate", "2", "--slo", "ttft_s=30", "--set",
                       'pools.model="llama-3.1-405b"', "--set", 'pools.dtype="fp8"', "--set",
                       "workload.num_requests=30", "--hardware", "h200", "--tp", "8", "--max-replicas", "2")
    assert "Traceback" not in "".join(err) and rc in (0, 1), err
    assert "h200" in out and "does not fit" not in out.split("skipped")[0]


def test_plan_prices_hardware_set_in_the_scenario(capsys):
    rc, out, err = cli(capsys, "plan", QUICK, "--target-rate", "5", "--slo", "ttft_s=5", *SMALL,
                       "--set", "hardware.h100-sxm.usd_per_accel_hour=10", "--max-replicas", "4", "--json")
    import json
    rep = json.loads(out)
    assert rep["plan"] is not None, err
    assert rep["plan"]["usd_per_hour"] == pytest.approx(10.0 * rep["plan"]["accelerators"])


def test_plan_says_when_nothing_could_run(capsys):
    # bad input (no candidate can run at all): one line naming the flag, exit 2
    rc, out, err = cli(capsys, "plan", QUICK, "--target-rate", "5", "--slo", "ttft_s=5", *SMALL,
                       "--hardware", "crescent-island", "--set", 'pools.model="llama-3.1-405b"')
    assert rc == 2 and len(err) == 1 and "nothing could run" in err[0] and "--hardware" in err[0]


# Malformed scenarios, generated: any key of the default scenario (and a few more) set to junk.
KEYS = ["seed", "name", "workload.arrival", "workload.rate_per_s", "workload.num_requests", "workload.duration_s",
        "workload.cv", "workload.warmup_s", "workload.timeout_s", "workload.prompt_tokens", "workload.output_tokens",
        "workload.prompt_tokens.max", "workload.prompt_tokens.cv", "workload.prompt_tokens.dist",
        "workload.output_tokens.value", "workload.trace", "workload.classes", "workload.shared_prefix",
        "pools.hardware", "pools.model", "pools.dtype", "pools.kv_dtype", "pools.replicas", "pools.tp",
        "pools.scheduler.policy", "pools.scheduler.max_batch_size", "pools.scheduler.max_batched_tokens",
        "pools.scheduler.kv_memory_fraction", "pools.scheduler.block_size", "pools.scheduler.prefix_caching",
        "router.policy", "run.horizon_s", "run.engine", "slo.ttft_s", "cost.usd_per_accel_hour", "facility",
        "hardware.h100-sxm.memory_gb", "hardware.h100-sxm.bw_efficiency", "models.llama-3.1-8b.heads",
        "models.llama-3.1-8b.max_context_tokens"]
JUNK = st.one_of(
    st.integers(-10**13, 10**13).map(str), st.floats(allow_nan=True, allow_infinity=True).map(
        lambda x: "nan" if x != x else ("inf" if x == float("inf") else ("-inf" if x == -float("inf") else repr(x)))),
    st.sampled_from(['"x"', '""', "true", "[]", "[1, -2]", "{}", '{dist = "fixed", value = 0}',
                     '"../nope.csv"', '{name = "a", share = 2}', "0", "-1", "1e308", '"h100-sxm:Nope"']))


@pytest.mark.slow
@settings(max_examples=int(os.environ.get("DCSIM_FUZZ", 0)) + 60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(KEYS), value=JUNK)
def test_generated_bad_scenarios_never_trace_back(capsys, key, value):
    rc, _, err = cli(capsys, "run", QUICK, "--json", "--quiet", *SMALL, "--set", f"{key}={value}")
    assert rc in (0, 2)
    errors = [e for e in err if not e.startswith("dcsim: warning: ")]
    if rc == 2:
        assert len(errors) == 1 and errors[0].startswith("dcsim: error: "), err
    else:
        assert errors == [], err


ROW = st.tuples(st.one_of(st.floats(-5, 1e4).map(repr), st.sampled_from(["", "x", "nan", "1e400"])),
                st.one_of(st.integers(-3, 300000).map(str), st.sampled_from(["", "2.5", "x", "1e3"])),
                st.one_of(st.integers(-3, 3000).map(str), st.sampled_from(["", "0.5", "y"])))


@pytest.mark.slow
@settings(max_examples=int(os.environ.get("DCSIM_FUZZ", 0)) + 40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ROW, max_size=6))
def test_generated_bad_traces_never_trace_back(capsys, tmp_path, rows):
    p = _trace_scenario(tmp_path, _csv(tmp_path, "".join(",".join(r) + "\n" for r in rows)))
    rc, _, err = cli(capsys, "run", p, "--json", "--quiet")
    assert rc in (0, 2)
    if rc == 2:
        assert len(err) == 1 and err[0].startswith("dcsim: error: workload.") and "fix:" in err[0], err
