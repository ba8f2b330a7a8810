"""Workload generation: arrival processes, length distributions, trace adapters, seeding."""

from pathlib import Path

import numpy as np
import pytest

from sim.scenario.config import parse
from sim.errors import ScenarioError
from sim.rng import stream
from sim.workload.generate import arrivals, build_workload, draw_lengths, read_trace

REPO = Path(__file__).resolve().parents[1]


def test_poisson_rate_and_exponential_gaps():
    a = arrivals("poisson", 5.0, 1.0, 200_000, None, stream(1, "arrivals"))
    g = np.diff(a)
    assert 1 / g.mean() == pytest.approx(5.0, rel=0.01)
    assert g.std() / g.mean() == pytest.approx(1.0, rel=0.02)


def test_gamma_gaps_have_requested_cv():
    a = arrivals("gamma", 2.0, 3.0, 200_000, None, stream(1, "arrivals"))
    g = np.diff(a)
    assert g.mean() == pytest.approx(0.5, rel=0.03)
    assert g.std() / g.mean() == pytest.approx(3.0, rel=0.05)


def test_duration_bounds_arrivals():
    a = arrivals("poisson", 10.0, 1.0, None, 100.0, stream(2, "arrivals"))
    assert a.max() < 100.0 and abs(len(a) - 1000) < 150


def test_lognormal_mean_and_cv():
    x = draw_lengths({"dist": "lognormal", "mean": 1000, "cv": 0.5}, 200_000, stream(1, "p"), "f", REPO)
    assert x.mean() == pytest.approx(1000, rel=0.01)
    assert x.std() / x.mean() == pytest.approx(0.5, rel=0.03)
    capped = draw_lengths({"dist": "lognormal", "mean": 1000, "cv": 2, "max": 3000}, 10_000, stream(1, "p"), "f", REPO)
    assert capped.max() <= 3000 and capped.min() >= 1


def test_uniform_and_fixed():
    u = draw_lengths({"dist": "uniform", "min": 5, "max": 9}, 10_000, stream(1, "u"), "f", REPO)
    assert set(np.unique(u)) == {5, 6, 7, 8, 9}
    f = draw_lengths({"dist": "fixed", "value": 128}, 10, stream(1, "u"), "f", REPO)
    assert np.all(f == 128)


def test_empirical_resamples_file_values(tmp_path):
    p = tmp_path / "lens.csv"
    p.write_text("tokens\n10\n20\n30\n")
    x = draw_lengths({"dist": "empirical", "file": "lens.csv"}, 3000, stream(1, "e"), "f", tmp_path)
    assert set(np.unique(x)) == {10, 20, 30}


def test_csv_trace_replay(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("arrival_s,prompt_tokens,output_tokens\n0.5,20,3\n1.5,10.0,2\n")
    a, pr, o = read_trace(p, "csv")  # times as given: seconds from the run's start
    assert list(a) == [0.5, 1.5] and list(pr) == [20, 10] and list(o) == [3, 2]


@pytest.mark.parametrize("rows, line, words", [
    ("0,-3,5", 2, "prompt_tokens = '-3' is not a whole number >= 1"),
    ("0,10,0", 2, "output_tokens = '0' is not a whole number >= 1"),
    ("0,100.7,5", 2, "prompt_tokens = '100.7' is not a whole number >= 1"),
    ("0,10,5\n2,10,5\n1,10,5", 4, "comes before the previous row's '2'"),
    ("-1,10,5", 2, "arrival_s = '-1' is not a time >= 0"),
    ("0,ten,5", 2, "prompt_tokens = 'ten' is not a number"),
    ("0,10", 2, "fewer fields than the header"),
])
def test_a_bad_trace_row_is_an_error_naming_its_line(tmp_path, rows, line, words):
    p = tmp_path / "t.csv"
    p.write_text("arrival_s,prompt_tokens,output_tokens\n" + rows + "\n")
    with pytest.raises(ScenarioError) as e:
        read_trace(p, "csv")
    assert f"t.csv line {line}: " in str(e.value) and words in str(e.value), str(e.value)


def test_a_header_only_trace_is_an_error(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("arrival_s,prompt_tokens,output_tokens\n")
    with pytest.raises(ScenarioError, match="holds no requests"):
        read_trace(p, "csv")


def test_real_trace_adapters():
    a, pr, o = read_trace(REPO / "data/traces/azure_llm_2023/AzureLLMInferenceTrace_conv.csv", "azure")
    assert len(a) == 19366 and a[0] == 0.0 and np.all(np.diff(a) >= 0)
    assert 3000 < a[-1] < 4000  # about one hour
    assert pr.min() >= 1 and o.min() >= 1
    a, pr, o = read_trace(REPO / "data/traces/mooncake_fast25/conversation_trace.jsonl", "mooncake")
    assert len(a) == 12031 and a[-1] == pytest.approx(3536.999)
    assert pr.mean() == pytest.approx(12035, rel=0.01)


def test_trace_scenario_with_time_scale():
    sc = parse({"workload": {"arrival": "trace", "trace": "data/traces/azure_llm_2023/AzureLLMInferenceTrace_code.csv",
                             "trace_format": "azure", "time_scale": 10.0, "num_requests": 500},
                "pools": [{"hardware": "h100-sxm", "model": "llama-3.1-8b"}]}, REPO)
    wl = build_workload(sc.workload, sc.seed, sc.base_dir)
    assert len(wl) == 500
    a, _, _ = read_trace(REPO / "data/traces/azure_llm_2023/AzureLLMInferenceTrace_code.csv", "azure")
    assert wl.arrival_s[-1] == pytest.approx(a[499] / 10.0)


def test_missing_trace_column_is_a_clear_error(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("time,prompt\n1,2\n")
    with pytest.raises(ScenarioError, match="arrival_s"):
        read_trace(p, "csv")


def test_streams_are_independent_and_reproducible():
    a1 = stream(5, "arrivals").random(5)
    a2 = stream(5, "arrivals").random(5)
    b = stream(5, "prompt_tokens").random(5)
    assert np.array_equal(a1, a2) and not np.array_equal(a1, b)
