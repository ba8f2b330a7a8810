"""dcsim plan: the answer meets the SLO, the next cheaper configuration does not."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import sim.api as dc

REPO = Path(__file__).resolve().parents[1]
QUICK = REPO / "scenarios" / "quickstart.toml"


@pytest.mark.slow
def test_plan_cheapest_meets_slo_and_one_fewer_does_not():
    r = subprocess.run([sys.executable, "-m", "sim", "plan", str(QUICK), "--target-rate", "60", "--slo",
                        "ttft_s=0.5,tpot_s=0.05", "--hardware", "h100-sxm,a100-80g", "--tp", "1,2", "--json"],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    best = rep["plan"]
    assert best is not None and rep["frontier"][0] == best
    assert all(f["usd_per_hour"] >= best["usd_per_hour"] for f in rep["frontier"])

    def attain(replicas):
        sc = dc.load(QUICK, set=["workload.rate_per_s=60", f'pools.hardware="{best["hardware"]}"',
                                 f"pools.tp={best['tp']}", f'pools.scheduler.policy="{best["scheduler"]}"',
                                 f"pools.replicas={replicas}", "slo.ttft_s=0.5", "slo.tpot_s=0.05"])
        return dc.summary(dc.run(sc))["slo_attainment"]

    assert attain(best["replicas"]) >= 0.9
    # the next cheaper configuration: one replica fewer of the cheapest combination (60 req/s needs
    # several); every other combination's cheapest passing count already costs at least as much
    assert best["replicas"] > 1
    assert attain(best["replicas"] - 1) < 0.9
    for f in rep["frontier"]:
        if f["one_fewer_attainment"] is not None:
            assert f["one_fewer_attainment"] < 0.9
