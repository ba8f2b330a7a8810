"""Hostile input on the newer features (issue 33): one line and exit 2 (or a warning where legal),
no traceback, no hang, no crash, nothing silent; and the faults: concurrent writers, a reused
folder, kill -9 then plot/report, a full disk, a stale resume, a killed local worker, Ctrl-C."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.cli import main

REPO = Path(__file__).resolve().parents[1]
SC = REPO / "scenarios"
QUICK = SC / "quickstart.toml"
TRIP = SC / "tent_trip.toml"
SMALL = ["--set", "workload.num_requests=40"]


def cli(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    lines = [x for x in err.splitlines() if x.strip()]
    return rc, out, [x for x in lines if x.startswith("dcsim: error") or "Traceback" in x]


def dcsim(*args, timeout=60, **kw):
    return subprocess.run([sys.executable, "-m", "sim", *map(str, args)], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout, **kw)


def one_line(r, field):
    errs = [x for x in r.stderr.splitlines() if x.startswith("dcsim: error")]
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(errs) == 1 and field in errs[0], r.stderr


# --- keys of the newer features: refused in one line, before any work ------------------------------

BAD_KEYS = [
    (TRIP, "facility.sources.0.trip_at_s=[-5.0]", "trip_at_s"),
    (TRIP, "facility.sources.0.trip_at_s=[nan]", "trip_at_s"),
    (TRIP, "facility.manager.reserve_units=5", "reserve_units"),
    (TRIP, "facility.manager.interval_s=1e-9", "interval_s"),
    (TRIP, "facility.tents.0.pue={base=1.3,peak_hour=99}", "peak_hour"),
    (QUICK, "pools.replicas=10000000", "pools[0].replicas"),
    (QUICK, "run.horizon_s=1e13", "horizon_s"),
    (QUICK, 'pools.speculative={method="draft",num_tokens=4,acceptance_rate=0.7,draft_model="llama-3.1-70b"}',
     "draft_model"),
    (QUICK, "pools.scheduler.prefix_caching=true", None),  # legal: runs
]


@pytest.mark.parametrize("scenario,setting,field", BAD_KEYS)
def test_bad_newer_keys_are_one_line(capsys, scenario, setting, field):
    rc, _, err = cli(capsys, "run", scenario, "--quiet", "--no-plots", "--set", "workload.duration_s=20"
                     if scenario == TRIP else "workload.num_requests=40", "--set", setting)
    if field is None:
        assert rc == 0 and not err
    else:
        assert rc == 2 and len(err) == 1 and field in err[0], err


def test_duplicate_source_names_and_a_speculating_prefill_pool(tmp_path, capsys):
    text = TRIP.read_text().replace('name = "microturbines"', 'name = "bess"') + textwrap.dedent("""
        [[facility.sources]]
        name = "bess"
        kind = "battery"
        mw = 0.02
        mwh = 0.01
        """)
    p = tmp_path / "dup.toml"
    p.write_text(text)
    rc, _, err = cli(capsys, "run", p, "--quiet", "--no-plots")
    assert rc == 2 and len(err) == 1 and "facility.sources.name" in err[0]
    spec = '{method = "eagle", num_tokens = 3, acceptance_rate = 0.7}'
    rc, _, err = cli(capsys, "run", SC / "disagg.toml", "--quiet", "--no-plots", "--set", f"pools.0.speculative={spec}")
    assert rc == 2 and len(err) == 1 and "speculative" in err[0] and "prefill" in err[0], err


def test_a_kv_tier_smaller_than_a_block_is_refused(capsys):
    rc, _, err = cli(capsys, "run", QUICK, *SMALL, "--quiet", "--set", "pools.scheduler.prefix_caching=true",
                     "--set", "pools.kv_offload={capacity_gb=1e-9,gbps=400}")
    assert rc == 2 and len(err) == 1 and "capacity_gb" in err[0], err


def test_requests_after_the_horizon_are_not_counted_in_flight(capsys):
    rc, out, err = cli(capsys, "run", QUICK, "--json", "--quiet", "--set", "run.horizon_s=5")
    s = json.loads(out)
    assert rc == 0 and s["requests_total"] < 100 and s["requests_in_flight"] < 20  # (10 req/s for 5 s)
    assert s["requests_total"] == s["requests_completed"] + s["requests_in_flight"]


# --- work bounded before it starts (each of these ran without bound) -------------------------------

@pytest.mark.parametrize("args,field", [
    (["run", SC / "fleet_30t.toml", "--set", "fleet.cells.0.count=10000000000"], "count"),
    (["sweep", QUICK, "--range", "workload.rate_per_s=1:1000000000000:1"], "--range"),
    (["plan", QUICK, "--target-rate", "10", "--slo", "ttft_s=1e-9"], "--slo"),
    (["run", QUICK, "--set", "workload.multi_turn={turns=1000000000,think_time_s=1}", "--set",
      "workload.num_requests=1000", "--no-plots"], None),  # legal: the history cap ends every session
])
def test_runaway_sizes_end_quickly(args, field, tmp_path):
    t = time.monotonic()
    r = dcsim(*args, "--quiet" if args[0] != "plan" else "--json", timeout=60)
    if field is None:
        assert r.returncode == 0, r.stderr
    else:
        one_line(r, field)
    assert time.monotonic() - t < 60


@pytest.mark.parametrize("body,what", [
    (b"\x00\x01\x02garbage\xff\xfe" * 100, "not a text file"),
    (b"arrival_s,prompt_tokens,output_tokens\n1700000000,10,10\n1700000001,10,10\n", "epoch clock"),
    (b"arrival_s,prompt_tokens,output_tokens\n0,10,10\n1e300,10,10\n", "past ten years"),
])
def test_hostile_traces_are_one_line(tmp_path, capsys, body, what):
    (tmp_path / "t.csv").write_bytes(body)
    p = tmp_path / "s.toml"
    p.write_text('name = "t"\n[workload]\narrival = "trace"\ntrace = "t.csv"\n[[pools]]\nhardware = "h100-sxm"\n'
                 'model = "llama-3.1-8b"\n')
    rc, _, err = cli(capsys, "run", p, "--quiet")
    assert rc == 2 and len(err) == 1 and what in err[0], err


def test_an_azure_trace_with_nat_is_one_line(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,10,10\n"
                                    "NaT,10,10\n")
    p = tmp_path / "s.toml"
    p.write_text('name = "t"\n[workload]\narrival = "trace"\ntrace = "t.csv"\ntrace_format = "azure"\n[[pools]]\n'
                 'hardware = "h100-sxm"\nmodel = "llama-3.1-8b"\n')
    rc, _, err = cli(capsys, "run", p, "--quiet")
    assert rc == 2 and len(err) == 1 and "line 3" in err[0], err


def test_a_fleet_refuses_a_trace(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("arrival_s,prompt_tokens,output_tokens\n0,10,10\n")
    p = tmp_path / "s.toml"
    p.write_text('name = "t"\n[workload]\narrival = "trace"\ntrace = "t.csv"\n[[pools]]\nhardware = "h100-sxm"\n'
                 'model = "llama-3.1-8b"\n[fleet]\n[[fleet.cells]]\nname = "a"\ncount = 4\n')
    rc, _, err = cli(capsys, "run", p, "--quiet")
    assert rc == 2 and len(err) == 1 and "workload.arrival" in err[0], err


# --- plug-ins are untrusted ----------------------------------------------------------------------

PLUGINS = textwrap.dedent('''
    import math, sys
    from sim.policies.schedulers import Chunked, Plan

    class RaiseRouter:
        def choose(self, request, replicas):
            raise ValueError("boom")
    class ExitRouter:
        def choose(self, request, replicas):
            sys.exit(0)
    class FloatRouter:
        def choose(self, request, replicas):
            return 0.5
    class SetupRaise:
        def setup(self, n, r, rng):
            raise RuntimeError("no setup")
        def choose(self, request, replicas):
            return 0
    class GhostSched(Chunked):
        def plan(self, core):
            return Plan(chunks=[(10**7, 5)], n_dec=0)
    class HugeChunk(Chunked):
        def plan(self, core):
            if core.waiting:
                req = core.waiting[0]
                hits, _ = core.peek_hits(req)
                core.admit_with(req, hits, core.blocks_for(req.target) - hits)
            pre = core.prefilling
            return Plan(chunks=[(pre[0], 10**9)], n_dec=0) if pre else None
    class NegChunk(HugeChunk):
        def plan(self, core):
            p = super().plan(core)
            return Plan(chunks=[(p.chunks[0][0], -5)], n_dec=0) if p else None
    class ExitSched(Chunked):
        def plan(self, core):
            sys.exit(3)
    class ActRaise:
        def act(self, fac, supply_w):
            raise KeyError("x")
    class ActNanCap:
        def act(self, fac, supply_w):
            fac.set_cap(fac.replicas[0].index, float("nan"))
    class DesiredNan:
        def desired(self, pool):
            return float("nan")
    class DesiredRaise:
        def desired(self, pool):
            raise ZeroDivisionError("x")
    ''')


@pytest.mark.parametrize("key,cls,words", [
    ("router.policy", "RaiseRouter", "RaiseRouter.choose(): raised ValueError"),
    ("router.policy", "ExitRouter", "sys.exit"),
    ("router.policy", "FloatRouter", "choose() returned 0.5"),
    ("router.policy", "SetupRaise", "setup(): raised RuntimeError"),
    ("pools.scheduler.policy", "GhostSched", "not prefilling"),
    ("pools.scheduler.policy", "HugeChunk", "1000000000 tokens"),
    ("pools.scheduler.policy", "NegChunk", "-5 tokens"),
    ("pools.scheduler.policy", "ExitSched", "sys.exit(3)"),
    ("facility.manager.policy", "ActRaise", "act(): raised KeyError"),
    ("facility.manager.policy", "ActNanCap", "set_cap()"),
    ("pools.autoscaler.policy", "DesiredNan", "desired() returned nan"),
    ("pools.autoscaler.policy", "DesiredRaise", "desired(): raised ZeroDivisionError"),
])
def test_a_misbehaving_plugin_is_one_line_naming_it(tmp_path, key, cls, words):
    (tmp_path / "plugins.py").write_text(PLUGINS)
    base = TRIP if key.startswith("facility") else QUICK
    size = ["--set", "workload.duration_s=20"] if base == TRIP else ["--set", "workload.num_requests=600"]
    extra = ["--set", "pools.autoscaler.max_replicas=4"] if "autoscaler" in key else []
    r = dcsim("run", base, *size, "--set", f'{key}="{tmp_path / "plugins.py"}:{cls}"', *extra, "--no-plots",
              "--quiet")
    one_line(r, words)


# --- outputs: whole or not at all ----------------------------------------------------------------

def test_a_reused_out_folder_is_refused_unless_forced(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["run", str(TRIP), "--set", "workload.duration_s=10", "--out", str(out), "--no-plots",
                 "--quiet"]) == 0
    assert (out / "facility.parquet").exists() and (out / "complete.json").exists()
    capsys.readouterr()
    rc, _, err = cli(capsys, "run", QUICK, *SMALL, "--out", out, "--no-plots", "--quiet")
    assert rc == 2 and len(err) == 1 and "--force" in err[0]
    assert main(["run", str(QUICK), *SMALL, "--out", str(out), "--no-plots", "--quiet", "--force"]) == 0
    assert not (out / "facility.parquet").exists()  # the previous run's files are gone, not reported as this one's


def test_an_out_path_that_cannot_be_written_is_refused_before_the_run(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    rc, _, err = cli(capsys, "run", QUICK, *SMALL, "--out", tmp_path / "file", "--quiet")
    assert rc == 2 and len(err) == 1 and "--out" in err[0]
    rc, _, err = cli(capsys, "run", QUICK, *SMALL, "--out", tmp_path / "file" / "sub", "--quiet")
    assert rc == 2 and len(err) == 1 and "--out" in err[0]


def test_two_writers_of_one_folder_do_not_interleave(tmp_path):
    out = tmp_path / "o"
    args = [sys.executable, "-m", "sim", "run", str(QUICK), "--set", "workload.num_requests=20000", "--out",
            str(out), "--quiet", "--no-plots", "--no-report"]
    a = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    b = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120)
    a_err = a.communicate(timeout=120)[1]
    rcs = sorted([a.returncode, b.returncode])
    assert rcs[0] == 0, a_err + b.stderr  # one wrote; the other was refused in one line (or came after it)
    if rcs[1] != 0:
        loser = b.stderr if b.returncode else a_err
        assert rcs[1] == 2 and ("another dcsim" in loser or "already holds results" in loser), loser
    import pyarrow.parquet as pq

    assert pq.read_table(out / "requests.parquet").num_rows == 20000  # whole


def test_kill_9_leaves_no_half_folder_and_plot_report_say_so(tmp_path):
    out = tmp_path / "o"
    p = subprocess.Popen([sys.executable, "-m", "sim", "run", str(QUICK), "--set", "workload.num_requests=400000",
                          "--out", str(out), "--quiet"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(3.0)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    for cmd in ("plot", "report"):
        one_line(dcsim(cmd, out), "RUN_DIR")
    tmps = list(tmp_path.glob(".o.tmp-*"))
    for t in tmps:  # what a killed writer left is never read as results
        one_line(dcsim("report", t), "RUN_DIR")
    r = dcsim("run", QUICK, *SMALL, "--out", out, "--quiet", "--no-plots")  # the stale lock does not block
    assert r.returncode == 0, r.stderr
    assert not list(tmp_path.glob(".o.tmp-*")) and not (tmp_path / ".o.lock").exists()


def test_a_damaged_folder_is_one_line(tmp_path):
    out = tmp_path / "o"
    assert dcsim("run", QUICK, *SMALL, "--out", out, "--quiet", "--no-plots").returncode == 0
    (out / "requests.parquet").write_bytes(b"PAR1 cut short")
    one_line(dcsim("plot", out), "incomplete or damaged")
    (out / "summary.json").write_text("{")
    one_line(dcsim("report", out), "incomplete or damaged")


def test_a_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    import sim.analysis.output as output

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "o" / "requests.parquet"))

    monkeypatch.setattr(output, "write_run", full)
    rc, _, err = cli(capsys, "run", QUICK, *SMALL, "--out", tmp_path / "o", "--quiet")
    assert rc == 2 and len(err) == 1 and "No space left" in err[0] and "disk space" in err[0]
    assert not (tmp_path / "o").exists()  # nothing half-written left in place


# --- resume, workers, Ctrl-C, executors ----------------------------------------------------------

def _trace(tmp_path, scale):
    (tmp_path / "t.csv").write_text("arrival_s,prompt_tokens,output_tokens\n" + "".join(
        f"{k * 0.05:.2f},{200 * scale},{20}\n" for k in range(200)))
    p = tmp_path / "s.toml"
    p.write_text('name = "t"\nseed = 1\n[workload]\narrival = "trace"\ntrace = "t.csv"\n[[pools]]\n'
                 'hardware = "h100-sxm"\nmodel = "llama-3.1-8b"\nreplicas = 1\n')
    return p


def test_resume_reruns_what_a_changed_trace_changes(tmp_path, capsys):
    p = _trace(tmp_path, 1)
    out = tmp_path / "o"
    sw = ["sweep", p, "--range", "pools.replicas=1:2:1", "--out", out, "--workers", "1", "--quiet", "--json",
          "--no-report"]
    assert main(list(map(str, sw))) == 0
    first = json.loads(capsys.readouterr().out)
    _trace(tmp_path, 40)  # prompts 40x longer: the saved results are stale
    assert main(list(map(str, sw + ["--resume"]))) == 0
    second = json.loads(capsys.readouterr().out)
    m1 = first["variants"]["base"]["points"][0]["metrics"]["ttft_mean_s"]["mean"]
    m2 = second["variants"]["base"]["points"][0]["metrics"]["ttft_mean_s"]["mean"]
    assert m2 > 2 * m1


def test_a_fleet_resumes(tmp_path, capsys):
    f = ["run", SC / "fleet_30t.toml", "--set", "workload.duration_s=10", "--set", "pools.replicas=2", "--set",
         "fleet.simulate_per_kind=2", "--set", "workload.rate_per_s=20000", "--workers", "1", "--quiet", "--json",
         "--out", tmp_path / "f"]
    assert main(list(map(str, f))) == 0
    a = json.loads(capsys.readouterr().out)
    saved = list((tmp_path / "f" / "runs").glob("*.json"))
    assert len(saved) == 2
    assert main(list(map(str, f + ["--resume"]))) == 0
    b = json.loads(capsys.readouterr().out)
    assert a["fleet_output_tok_per_s"] == b["fleet_output_tok_per_s"]


KILLER = textwrap.dedent('''
    import os, signal
    from pathlib import Path

    class KillOnce:
        """Kills its worker process once (a marker file says it did), then joins the shortest queue."""
        def choose(self, request, replicas):
            m = Path(__file__).with_name("killed")
            if not m.exists():
                m.write_text("1")
                os.kill(os.getpid(), signal.SIGKILL)
            return min(range(len(replicas)), key=lambda k: replicas[k].queue_len)
    ''')


def test_a_killed_local_worker_loses_nothing_finished(tmp_path):
    (tmp_path / "k.py").write_text(KILLER)
    r = dcsim("sweep", QUICK, "--range", "workload.rate_per_s=5:20:5", "--set", "workload.num_requests=100",
              "--set", f'router.policy="{tmp_path / "k.py"}:KillOnce"', "--workers", "2", "--json", "--quiet",
              timeout=300)
    assert r.returncode == 0, r.stderr
    pts = json.loads(r.stdout)["variants"]["base"]["points"]
    assert len(pts) == 4 and all(not p.get("failed") for p in pts)
    assert (tmp_path / "killed").exists()


def test_ctrl_c_is_one_line(tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "sim", "sweep", str(QUICK), "--range",
                          "workload.rate_per_s=5:200:5", "--set", "workload.num_requests=200000", "--workers", "2",
                          "--quiet"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4.0)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("dcsim: note")]
    assert p.returncode == 130 and "Traceback" not in err and len(lines) == 1 and "interrupted" in lines[0], err


def test_an_unreachable_dask_scheduler_is_one_line():
    pytest.importorskip("distributed")
    t = time.monotonic()
    r = dcsim("sweep", QUICK, "--range", "workload.rate_per_s=5:10:5", *SMALL, "--executor", "tcp://127.0.0.1:9",
              "--quiet", timeout=90)
    one_line(r, "--executor")
    assert time.monotonic() - t < 45


# --- generated hostile scenarios over the newer features ---------------------------------------

NEW_KEYS = ["facility.sources.0.trip_at_s", "facility.sources.0.units", "facility.sources.0.unit_mw",
            "facility.sources.0.ramp_mw_per_s", "facility.sources.0.start_s", "facility.sources.0.step_load_frac",
            "facility.manager.interval_s", "facility.manager.reserve_units", "facility.manager.policy",
            "facility.tents.0.pue", "facility.tents.0.it_limit_mw", "workload.classes.0.pools",
            "workload.classes.0.share", "workload.timeout_s", "workload.stages", "workload.diurnal",
            "workload.multi_turn", "pools.0.speculative", "pools.0.kv_offload", "pools.0.autoscaler",
            "pools.0.ep", "pools.0.role", "pools.0.replicas", "failures.node_mtbf_h", "run.horizon_s",
            "network.fabric", "cost.capex_usd_per_accel"]
HOSTILE = st.one_of(
    st.integers(-10**12, 10**12).map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e300", "-1e-300", "0", "-1", "1e-9", '"x"', '""', "true", "[]",
                     "[nan]", "[-1.0, 1e13]", '["nosuch"]', "{}", '{policy = "nosuch"}', '{dist = "fixed", value = 0}',
                     '{peak_rate_per_s = 1e12, trough_rate_per_s = 0}', '[{rate_per_s = 1e12, duration_s = 1e9}]',
                     '{turns = 1000000000, think_time_s = 1}', '{capacity_gb = 1e-12, gbps = 1}',
                     '{method = "draft", num_tokens = 4, acceptance_rate = 0.5, draft_model = "llama-3.1-70b"}',
                     '{max_replicas = 10000000}', '"prefill"', '"decode"']))


@pytest.mark.slow
@settings(max_examples=int(os.environ.get("DCSIM_FUZZ", 0)) + 60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(NEW_KEYS), value=HOSTILE)
def test_generated_hostile_scenarios_are_handled(capsys, key, value):
    t = time.monotonic()
    rc, _, err = cli(capsys, "run", TRIP, "--json", "--quiet", "--set", "workload.duration_s=15", "--set",
                     f"{key}={value}")
    assert rc in (0, 2)
    assert not any("Traceback" in e for e in err)
    if rc == 2:
        assert len(err) == 1 and err[0].startswith("dcsim: error: "), err
    else:
        assert err == [], err
    assert time.monotonic() - t < 60


def test_force_never_deletes_what_is_not_a_results_folder(tmp_path, capsys, monkeypatch):
    (tmp_path / "mine.toml").write_text("x")
    rc, _, err = cli(capsys, "run", QUICK, *SMALL, "--out", tmp_path, "--force", "--quiet")
    assert rc == 2 and len(err) == 1 and "not a results folder" in err[0] and (tmp_path / "mine.toml").exists()
    monkeypatch.chdir(tmp_path)
    rc, _, err = cli(capsys, "run", QUICK, *SMALL, "--out", ".", "--force", "--quiet")
    assert rc == 2 and "working folder" in err[0] and (tmp_path / "mine.toml").exists()
