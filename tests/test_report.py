"""report.html in a real browser (headless Chromium: no console error, no network request, the
headline and key numbers on the page), reports of compare, sweep and plan folders, and the
image-level readability check of the matplotlib figures on the shipped scenarios."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sim.analysis.browser import check_page, find_chromium
from sim.analysis.report_html import pct, secs

REPO = Path(__file__).resolve().parents[1]
QUICK = str(REPO / "scenarios" / "quickstart.toml")
CHECKED = {**os.environ, "DCSIM_CHECK_LAYOUT": "1"}  # every PNG drawn must pass figure.overlaps


def dcsim(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sim", *args], capture_output=True, text=True, cwd=REPO,
                          env=env or CHECKED)


def browser(path: Path):
    assert find_chromium(), "headless Chromium is needed: apt-get install chromium (.ci/run installs it)"
    return check_page(path)


@pytest.fixture(scope="module")
def tent(tmp_path_factory):
    """The issue's acceptance commands: dcsim run scenarios/tent_trip.toml --out D && dcsim report D."""
    out = tmp_path_factory.mktemp("tent")
    r = dcsim("run", "scenarios/tent_trip.toml", "--out", str(out), "--quiet", "--no-report")
    assert r.returncode == 0, r.stderr
    assert not (out / "report.html").exists()
    r = dcsim("report", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("report.html")
    return out, json.loads((out / "summary.json").read_text()), browser(out / "report.html")


@pytest.mark.slow
def test_tent_report_loads_offline_with_no_error_and_no_request(tent):
    out, _, page = tent
    assert page.console_errors == []
    assert page.network_requests == []
    assert page.plots >= 3  # latency CDFs, fleet over time, facility power: drawn, not just declared
    html = re.sub(r"<script[^>]*>.*?</script>", "<script></script>", (out / "report.html").read_text(), flags=re.S)
    # nothing fetched from elsewhere: no external script, stylesheet, image or font in the page's own markup
    # (plotly.js, inlined, carries URLs in its code; the browser check above sees whether it asks for any)
    assert "<script src" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert not re.search(r"""@import|url\(\s*["']?(https?:)?//""", html)


@pytest.mark.slow
def test_tent_report_headline_gives_the_answer_with_its_interval(tent):
    _, s, page = tent
    head = page.headline
    pi = s["prediction_interval"]
    assert f"{pct(s['slo_attainment'])} of requests meet the SLO" in head
    assert f"p99 time to first token {secs(s['ttft_p99_s'])} (90% interval {secs(pi['ttft_p99_s'][0])} to " \
           f"{secs(pi['ttft_p99_s'][1])})" in head
    assert "borrowed" in head  # h200's constants are borrowed from h100-sxm: the headline says so
    assert "16 x llama-3.1-70b" in head


def test_tent_report_key_numbers_are_on_the_page(tent):
    _, s, page = tent
    text = page.text
    for key in ("ttft_mean_s", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "tpot_p99_s", "e2e_p99_s"):
        assert secs(s[key]) in text, key
    assert f"{s['throughput_output_tok_per_s']:,.0f} tok/s" in text
    assert f"{s['energy_j'] / 3.6e6:.3g} kWh" in text
    assert f"USD {s['cost_per_mtok_usd']:.3g} / Mtok" in text
    assert f"{s['power_limit_exceeded_s']:.3g} s" in text  # time over the power supply
    assert "interactive" in text and "batch" in text  # per-class rows
    assert "h200: constants borrowed" in text  # the calibration warning
    assert "[workload]" in (tent[0] / "report.html").read_text()  # the effective scenario


def test_report_screenshot_is_a_real_picture(tent):
    import matplotlib.image as mpimg
    import io

    img = mpimg.imread(io.BytesIO(tent[2].screenshot_png), format="png")
    assert img.shape[1] == 1280 and img.shape[0] > 1500  # the whole page, not the first screen
    assert img[..., :3].std() > 0.05


@pytest.mark.slow
def test_the_browser_check_catches_errors_and_requests(tmp_path):
    """The check can fail: a page that logs an error, throws and asks the network is caught."""
    p = tmp_path / "bad.html"
    p.write_text("<html><body><p id='headline'>x</p><img src='http://192.0.2.1/a.png'>"
                 "<script>console.error('boom'); null.x;</script></body></html>")
    page = browser(p)
    assert any("boom" in e for e in page.console_errors)
    assert any("TypeError" in e for e in page.console_errors)
    assert any(u.startswith("http://192.0.2.1/") for u in page.network_requests)


def test_tent_pngs_pass_the_layout_check_and_show_the_trip(tent):
    out = tent[0]
    fac = json.loads((out / "facility.json").read_text())
    assert fac["events"]["turbine_trips_s"]  # the trip is marked
    assert fac["samples_over_supply"] >= 1 and fac["power_limit_exceeded_s"] > 0
    assert "cap" in fac["panels"] and "turbines" in fac["panels"]
    for f in ("latency_cdf.png", "timeseries.png", "cost_breakdown.png", "facility.png"):
        assert (out / f).stat().st_size > 5000  # drawn under DCSIM_CHECK_LAYOUT=1: no overlaps
    cdf = json.loads((out / "latency_cdf.json").read_text())
    assert set(cdf) == {"all requests", "class interactive", "class batch"}  # per-class curves


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    r = dcsim("compare", QUICK, "--vary", "pools.scheduler.policy=static,chunked", "--replications", "3",
              "--set", "workload.num_requests=300", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    return out, json.loads((out / "compare.json").read_text())


@pytest.mark.slow
def test_compare_report_marks_significant_differences(compared):
    out, rep = compared
    sig = [m for m, d in rep["variants"]["chunked"]["metrics"].items() if d.get("significant")]
    assert sig  # static batching against chunked prefill: some metric differs for sure
    page = browser(out / "report.html")
    assert page.console_errors == [] and page.network_requests == []
    assert page.plots == 2
    assert "Against the baseline static over 3 paired replications: chunked" in page.headline
    assert "95% interval of the difference" in page.headline
    assert "★ significant (its 95% interval excludes zero" in page.text  # the key, then one star per metric
    assert page.text.count("★") - 1 == len([m for m in sig if m in _drawn_metrics()])
    assert "n.s." in page.text or len(sig) == len(rep["metrics"])
    bars = json.loads((out / "comparison.json").read_text())
    for m, d in bars["metrics"].items():  # the PNG's marks are the report's significance
        assert d["chunked"]["significant"] == rep["variants"]["chunked"]["metrics"][m]["significant"]


def _drawn_metrics() -> set[str]:
    from sim.analysis.study_plots import METRIC_WORDS
    return set(METRIC_WORDS)


@pytest.mark.slow
def test_sweep_report_marks_unstable_points(tmp_path):
    r = dcsim("sweep", QUICK, "--range", "workload.rate_per_s=20:140:60", "--set", "workload.num_requests=600",
              "--set", "slo.ttft_s=0.5", "--set", "slo.tpot_s=0.05", "--replications", "2", "--out", str(tmp_path),
              "--vary", "pools.scheduler.policy=chunked", "--quiet")
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "sweep.json").read_text())
    bad = [p["value"] for p in rep["variants"]["chunked"]["points"] if p["stable"] is False]
    assert bad and bad[0] > 20  # beyond 4 H100s' capacity the queue grows
    page = browser(tmp_path / "report.html")
    assert page.console_errors == [] and page.network_requests == []
    assert page.plots == 2
    for v in bad:
        assert f"chunked at workload.rate_per_s = {v:g}: no steady state" in page.text
    assert page.text.count("NO: ") == len(bad)
    assert "Largest load at which at least 90% of requests meet the SLO" in page.headline
    assert "(2 replications per point)" in page.headline
    drawn = json.loads((tmp_path / "latency_vs_load.json").read_text())  # PNG passed the layout check
    assert drawn["variants"]["chunked"]["unstable"] == bad and drawn["slo"] == {"ttft_s": 0.5, "tpot_s": 0.05}


@pytest.mark.slow
def test_plan_writes_its_report(tmp_path):
    r = dcsim("plan", QUICK, "--target-rate", "20", "--slo", "ttft_s=0.5,tpot_s=0.05", "--hardware", "h100-sxm,h200",
              "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    plan = json.loads((tmp_path / "plan.json").read_text())
    html = (tmp_path / "report.html").read_text()
    b = plan["plan"]
    assert f"<b>{b['replicas']} x {b['hardware']} TP{b['tp']}" in html
    assert "Cheapest fleet for 20 req/s" in html


@pytest.mark.slow
def test_report_of_a_folder_without_results_is_one_line(tmp_path):
    r = dcsim("report", str(tmp_path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "RUN_DIR" in r.stderr


@pytest.mark.slow
def test_run_saves_its_warnings_for_the_report(tmp_path):
    r = dcsim("run", QUICK, "--set", "workload.num_requests=100", "--set", "workload.cv=2", "--out", str(tmp_path),
              "--quiet", "--no-plots")
    assert r.returncode == 0, r.stderr
    saved = json.loads((tmp_path / "warnings.json").read_text())
    assert any(w.startswith("workload.cv: has no effect") for w in saved)
    assert "workload.cv: has no effect" in (tmp_path / "report.html").read_text()


# ----------------------------------------------------------------------------------------------
# matplotlib figures: the image-level check itself, then the shipped scenarios' figures


def test_overlap_check_finds_overlaps_and_passes_clean_figures():
    import matplotlib.pyplot as plt

    from sim.analysis.figure import overlaps

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot(np.arange(10), np.arange(10), label="data")
    ax.legend(loc="center")  # over the line's points
    ax.text(2, 8, "first note")
    ax.text(2.1, 8, "second note")  # on top of the first
    fig.tight_layout()
    found = overlaps(fig)
    assert any("legend covers" in f for f in found)
    assert any("first note" in f and "second note" in f for f in found)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(2.5, 2))
    ax.set_xscale("log")
    ax.set_xlim(1e-3, 1e6)
    ax.xaxis.set_major_locator(__import__("matplotlib").ticker.LogLocator(subs=(1.0, 2.0, 5.0), numticks=30))
    ax.xaxis.set_major_formatter(__import__("matplotlib").ticker.FuncFormatter(lambda v, _p: f"{v:g}"))
    fig.tight_layout()
    assert any("tick" in f and "overlaps" in f for f in overlaps(fig))  # crowded log ticks, the old defect
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([0, 1], [0, 1], label="line")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_xlabel("x (s)")
    fig.tight_layout()
    assert overlaps(fig) == []
    plt.close(fig)


@pytest.mark.slow
@pytest.mark.parametrize("script,args", [
    ("capacity_vs_bandwidth.py", ["--contexts", "4096,16384,65536", "--output-tokens", "128"]),
    ("oversubscription.py", ["--counts", "32,64,96", "--duration", "20"]),
    ("sarathi_chunked_prefill.py", ["--requests", "600", "--range", "workload.rate_per_s=50:200:50"]),
])
def test_scripts_figures_pass_the_layout_check(tmp_path, script, args):
    r = subprocess.run([sys.executable, f"scenarios/{script}", "--out", str(tmp_path), *args], capture_output=True,
                       text=True, cwd=REPO, env=CHECKED)
    assert r.returncode == 0, r.stderr[-2000:]
    pngs = list(tmp_path.glob("*.png"))
    assert len(pngs) == 1 and pngs[0].stat().st_size > 20000


@pytest.mark.slow
def test_quickstart_run_figures_pass_the_layout_check(tmp_path):
    r = dcsim("run", QUICK, "--out", str(tmp_path), "--quiet")
    assert r.returncode == 0, r.stderr
    assert {p.name for p in tmp_path.glob("*.png")} >= {"latency_cdf.png", "timeseries.png"}


@pytest.mark.slow
def test_api_report_of_a_result(tmp_path):
    import sim.api as dc

    res = dc.run(dc.load(QUICK, set=["workload.num_requests=200"]), quiet=True)
    page = dc.report(res, tmp_path)
    assert page == tmp_path / "report.html"
    html = page.read_text()
    s = dc.summary(res)
    assert f"{s['requests_completed']:,} completed" in html and "latency_cdf.png" in html
    assert (tmp_path / "summary.json").exists()


def test_the_same_folder_gives_the_same_page(tent):
    from sim.analysis.report import write_report

    out = tent[0]
    first = (out / "report.html").read_bytes()
    assert write_report(out).read_bytes() == first  # stable figure ids, no timestamps
