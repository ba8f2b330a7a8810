"""Policies from the user's own code (docs/policies.md): a router, scheduler or power manager named
as "path/to/file.py:Class" or "module:Class" runs with no edit to dcsim; bad plug-ins get one
line naming the key and exit 2. The registry is the one list of names."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from sim.analysis.metrics import summarize
from sim.cli import main
from sim.engine.simulation import Simulation
from sim.registry import MANAGERS, ROUTERS, SCHEDULERS
from sim.scenario.config import load

REPO = Path(__file__).resolve().parents[1]
QUICK = REPO / "scenarios" / "quickstart.toml"
EXAMPLES = REPO / "examples"


def _write(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body))
    return path


LAST = """
class Last:
    def choose(self, request, replicas):
        assert request.prompt_tokens > 0 and request.output_tokens > 0 and request.arrival_s >= 0
        assert all(r.queue_len >= 0 and r.running >= 0 and r.free_kv_blocks > 0 for r in replicas)
        assert {r.pool for r in replicas} == {"main"}
        return len(replicas) - 1
"""


def test_router_plugin_from_a_file_outside_the_repo_runs_through_dcsim_run(tmp_path, capsys):
    plug = _write(tmp_path / "my_router.py", LAST)
    out = tmp_path / "run"
    rc = main(["run", str(QUICK), "--set", "workload.num_requests=60", "--set", f'router.policy="{plug}:Last"',
               "--out", str(out), "--no-plots", "--json"])
    err = capsys.readouterr().err
    assert rc == 0
    assert "plug-in" in err and "per-step" in err and err.count("\n") == 1  # said once
    rep = pq.read_table(out / "requests.parquet").column("replica").to_numpy()
    assert len(rep) == 60 and np.all(rep == 3)  # every choice visible: the last of 4 replicas
    # the saved scenario names the plug-in by an absolute path: it repeats from anywhere
    assert f'"{plug.resolve()}:Last"' in (out / "scenario.toml").read_text()


def test_router_plugin_relative_path_is_read_from_the_scenario_folder(tmp_path):
    _write(tmp_path / "r.py", LAST)
    sc_file = tmp_path / "s.toml"
    sc_file.write_text(QUICK.read_text().replace('policy = "round_robin"', 'policy = "r.py:Last"'))
    sc = load(sc_file, ["workload.num_requests=30"])
    res = Simulation(sc).run()
    assert res.engine == "simpy"
    assert np.all(res.requests.replica == 3)


def test_router_plugin_by_module_name(tmp_path, monkeypatch):
    _write(tmp_path / "dcsim_test_routers.py", LAST)
    monkeypatch.syspath_prepend(str(tmp_path))
    res = Simulation(load(QUICK, ["workload.num_requests=30", 'router.policy="dcsim_test_routers:Last"'])).run()
    assert np.all(res.requests.replica == 3)


@pytest.mark.parametrize("body,spec,words", [
    (None, "no_such_router", ["router.policy", "unknown router", "round_robin"]),
    (None, "missing.py:X", ["router.policy", "not found"]),
    (None, "dcsim_no_such_module_xyz:X", ["router.policy", "cannot import"]),
    ("raise RuntimeError('boom')\n", "FILE:X", ["router.policy", "cannot import", "boom"]),
    ("class Y:\n    pass\n", "FILE:X", ["router.policy", "has no 'X'"]),
    ("class X:\n    pass\n", "FILE:X", ["router.policy", "no method choose()"]),
    ("X = 3\n", "FILE:X", ["router.policy", "not a class"]),
    ("class X:\n    def choose(self, request, replicas):\n        return 7\n", "FILE:X",
     ["router.policy", "returned 7", "range(len(replicas))"]),
    ("class X:\n    def choose(self, request, replicas):\n        return None\n", "FILE:X",
     ["router.policy", "returned None"]),
])
def test_bad_router_plugins_get_one_line_and_exit_2(tmp_path, capsys, body, spec, words):
    if body is not None:
        f = _write(tmp_path / "bad.py", body)
        spec = spec.replace("FILE", str(f))
    rc = main(["run", str(QUICK), "--set", "workload.num_requests=20", "--set", f'router.policy="{spec}"', "--json"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err[-1:]) == 1 and err[-1].startswith("dcsim: error:")
    for w in words:
        assert w in err[-1], (w, err[-1])
    assert "Traceback" not in "\n".join(err)


def test_bad_scheduler_and_manager_plugins_name_their_keys(tmp_path, capsys):
    f = _write(tmp_path / "empty.py", "class E:\n    pass\n")
    rc = main(["run", str(QUICK), "--set", f'pools.scheduler.policy="{f}:E"'])
    assert rc == 2 and "pools[0].scheduler.policy" in capsys.readouterr().err and "plan()" in f.read_text() + "plan()"
    rc = main(["run", str(REPO / "scenarios" / "tent.toml"), "--set", f'facility.manager.policy="{f}:E"'])
    err = capsys.readouterr().err
    assert rc == 2 and "facility.manager.policy" in err and "no method act()" in err


def test_example_bandwidth_router_favours_the_faster_part_of_a_mixed_fleet():
    raw = load(QUICK).raw
    raw = dict(raw)
    fast = dict(raw["pools"][0], name="fast", hardware="h200", replicas=2)
    slow = dict(raw["pools"][0], name="slow", hardware="a100-80g", replicas=2)
    raw["pools"] = [fast, slow]
    raw["workload"] = dict(raw["workload"], num_requests=400, rate_per_s=20.0)
    raw["router"] = {"policy": f"{EXAMPLES / 'bandwidth_router.py'}:BandwidthWeighted"}
    from sim.scenario.config import parse
    res = Simulation(parse(raw)).run()
    per = np.bincount(res.requests.replica, minlength=4)
    assert per[:2].sum() > 1.3 * per[2:].sum()  # H200 (4.8 TB/s) over A100 (2.0 TB/s)
    assert per[2:].sum() > 0  # the slow part still serves


def test_example_prefill_capped_scheduler_trades_ttft_for_tpot():
    sets = ["workload.num_requests=600", "workload.rate_per_s=30", "pools.replicas=1"]
    f = EXAMPLES / "prefill_capped_scheduler.py"
    base = summarize(Simulation(load(QUICK, sets)).run())
    c512 = summarize(Simulation(load(QUICK, sets + [f'pools.scheduler.policy="{f}:PrefillCapped"'])).run())
    c256 = summarize(Simulation(load(QUICK, sets + [f'pools.scheduler.policy="{f}:PrefillCapped256"'])).run())
    assert base["requests_completed"] == c512["requests_completed"] == c256["requests_completed"] == 600
    assert c256["tpot_p99_s"] < c512["tpot_p99_s"] < 0.6 * base["tpot_p99_s"]
    assert c256["ttft_mean_s"] > 5 * base["ttft_mean_s"]  # prefill throughput throttled


def test_example_headroom_manager_keeps_the_tent_within_its_supply_after_a_trip():
    trip = REPO / "scenarios" / "tent_trip.toml"  # a turbine trips at 60 s: the supply drops below the draw
    sets = ["workload.duration_s=120"]
    none = Simulation(load(trip, sets + ['facility.manager.policy="none"'])).run()
    head = Simulation(
        load(trip, sets + [f'facility.manager.policy="{EXAMPLES / "headroom_manager.py"}:Headroom"'])
    ).run()
    assert head.engine == none.engine == "compiled"  # a manager plug-in runs on the fast path
    caps = np.asarray(head.ledger.samples["clock_cap_w"], float)
    assert 0.2 < np.mean(np.isnan(caps)) < 0.8  # uncapped before the trip, capped after
    over_none, over_head = summarize(none)["power_limit_exceeded_s"], summarize(head)["power_limit_exceeded_s"]
    assert over_none > 30 and over_head < 5.0  # within one 5-s control interval


def test_the_registry_is_the_one_list_of_names(tmp_path):
    from sim.engine.kernel import layout, route
    from sim.scenario.config import parse

    # the fast driver's support check reads it: a registered name without a compiled code runs on SimPy
    assert set(ROUTERS.compiled_names()) == set(ROUTERS.names())
    assert set(SCHEDULERS.names()) == {"fcfs", "static", "continuous", "chunked", "priority", "sjf"}
    assert set(MANAGERS.names()) == {"none", "cap_uniform", "cap_priority", "drain", "shed"}
    assert route.R_JSQ == ROUTERS.code("jsq") and layout.P_SJF == SCHEDULERS.code("sjf")

    # a class registered from Python is usable by name in a scenario
    class First:
        def choose(self, request, replicas):
            return 0

    ROUTERS.add("first_test_only", First, "always the first replica")
    try:
        raw = dict(load(QUICK, ["workload.num_requests=20"]).raw, router={"policy": "first_test_only"})
        res = Simulation(parse(raw)).run()
        assert np.all(res.requests.replica == 0)
    finally:
        ROUTERS._entries.pop("first_test_only")
        ROUTERS._user.pop("first_test_only")
    with pytest.raises(Exception, match="no method choose"):
        ROUTERS.add("broken", type("Broken", (), {}))


def test_docs_table_is_the_registry():
    from sim.registry import markdown_table

    text = (REPO / "docs" / "policies.md").read_text()
    s = text.index("<!-- registry table: generated by `dcsim policies` -->\n") + len(
        "<!-- registry table: generated by `dcsim policies` -->\n")
    e = text.index("<!-- end registry table -->")
    assert text[s:e] == markdown_table(), "docs/policies.md is stale: paste the output of `dcsim policies`"
