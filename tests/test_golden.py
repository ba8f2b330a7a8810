"""Every shipped scenario and every example of the differential suite gives what it gave when the
reference was recorded (tests/golden.py; tests/data/golden.json): the per-request columns, the
summary, the time series, the facility's samples and the autoscaler's log, bit for bit. A change
that means to change results records the reference again (`python tests/golden.py record`) and
says why in its commit."""

from __future__ import annotations

import json

import pytest

from golden import REFERENCE, SLOW_CASES, run_case, run_differential

REF = json.loads(REFERENCE.read_text())


def _strip(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "parquet"}


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW_CASES else c
                                  for c in sorted(REF["cases"])])
def test_scenario_gives_the_recorded_results(case):
    got, want = run_case(case), _strip(REF["cases"][case])
    for k in want:
        assert got.get(k) == want[k], f"{case}: {k} differs from the reference"


@pytest.mark.parametrize("k", range(len(REF["differential"])))
def test_differential_example_gives_the_recorded_results(k):
    ex = REF["differential"][k]
    got = run_differential(ex["scenario"])
    for engine in ("compiled", "simpy"):
        for key in ex["digest"][engine]:
            assert got[engine].get(key) == ex["digest"][engine][key], f"{engine}: {key} differs from the reference"
