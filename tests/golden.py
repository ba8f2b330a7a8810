"""The golden reference: what every shipped scenario and every example of the differential suite
gives, as digests, recorded once (tests/data/golden.json) so that a restructuring of the engine
can show it changed nothing, bit for bit.

    python tests/golden.py record     # (re)write the reference from the code as it is
    python tests/golden.py check      # compare the code as it is with the reference

A case's digest covers the per-request columns (what requests.parquet holds), the summary
(every value but the wall time), the time series, the facility ledger's samples and the
autoscaler's log. tests/test_golden.py checks the same cases; `record` also keeps the SHA-256 of
each run's requests.parquet and the pyarrow version that wrote it, which `check` compares when
the installed pyarrow is the same one.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "data" / "golden.json"
SLOW_CASES = ("scenario:day_fleet.toml", "fleet:fleet_30t.toml", "fleet:tent_200mw.toml")  # > 5 s each


def _feed(h: Any, name: str, a: Any) -> None:
    h.update(name.encode())
    arr = np.asarray(a)
    if arr.dtype == object or arr.dtype.kind in "US":
        h.update(json.dumps([str(x) for x in arr.tolist()]).encode())
    else:
        h.update(arr.dtype.str.encode())
        h.update(np.ascontiguousarray(arr).tobytes())


def _columns_digest(cols: dict[str, Any]) -> str:
    h = hashlib.sha256()
    for k in sorted(cols):
        _feed(h, k, cols[k])
    return h.hexdigest()


def _plain(v: Any) -> Any:
    """A summary value as JSON keeps it exactly (floats by repr; NaN as a string)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.ndarray):
        return _plain(v.tolist())
    return v


def digest(res: Any) -> dict[str, Any]:
    """The digest of one run's Result."""
    from sim.analysis.metrics import request_columns, summarize

    s = summarize(res)
    s.pop("wall_time_s", None)
    out: dict[str, Any] = {"requests": _columns_digest(request_columns(res)), "summary": _plain(s),
                           "timeseries": _columns_digest(res.timeseries.columns())}
    led = res.ledger
    if led is not None and led.samples["t_s"]:
        cols = {k: np.asarray(v, dtype=float) for k, v in led.samples.items()}
        cols["tents"] = np.asarray(led.tent_samples, dtype=float)
        cols["sources"] = np.asarray(led.source_samples, dtype=float)
        out["facility"] = _columns_digest(cols)
    if res.autoscale is not None:
        out["autoscale"] = _columns_digest(res.autoscale.columns())
    return out


def _parquet_sha(res: Any) -> str:
    from sim.analysis.metrics import summarize
    from sim.analysis.output import write_run

    with tempfile.TemporaryDirectory() as d:
        write_run(res, summarize(res), d)
        return hashlib.sha256((Path(d) / "requests.parquet").read_bytes()).hexdigest()


def scenario_cases() -> list[str]:
    """Every scenario file shipped: scenarios/*.toml (fleets as fleets) and scenarios/validation/."""
    from sim.scenario.config import read_toml

    out = []
    for p in sorted((ROOT / "scenarios").glob("*.toml")):
        out.append(("fleet:" if "fleet" in read_toml(p) else "scenario:") + p.name)
    out += ["validation:" + p.name for p in sorted((ROOT / "scenarios" / "validation").glob("*.toml"))]
    return out


def differential_examples() -> list[dict[str, Any]]:
    """The scenario dicts the differential suite's derandomized test draws (and its explicit
    examples), collected by running it with its check replaced."""
    sys.path.insert(0, str(ROOT / "tests"))
    import test_differential as td

    seen: list[dict[str, Any]] = []
    orig = td._check
    td._check = lambda d: seen.append(json.loads(json.dumps(d)))
    try:
        td.test_compiled_equals_simpy_on_drawn_scenarios()
    finally:
        td._check = orig
    return seen


def run_case(case: str, parquet: bool = False) -> dict[str, Any]:
    """Run one case; its digest (and the requests.parquet hash with `parquet`)."""
    from sim.engine.simulation import Simulation
    from sim.scenario.config import load

    kind, name = case.split(":", 1)
    if kind == "fleet":
        from sim.studies.fleet import run_fleet

        rep = _plain(run_fleet(ROOT / "scenarios" / name, workers=1, quiet=True))
        # The report names its scenario by absolute path; the clone's place is not a result.
        rep["scenario"] = str(Path(rep["scenario"]).relative_to(ROOT))
        return {"fleet": rep}
    folder = ROOT / "scenarios" / ("validation" if kind == "validation" else "")
    res = Simulation(load(folder / name)).run()
    out = digest(res)
    if parquet:
        out["parquet"] = _parquet_sha(res)
    return out


def run_differential(d: dict[str, Any]) -> dict[str, Any]:
    """Both drivers on one differential example: their digests."""
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers import differential_scenario as _scenario

    from sim.engine.simulation import Simulation
    from sim.scenario.config import parse

    raw = _scenario(d)
    out = {}
    for engine in ("compiled", "simpy"):
        res = Simulation(parse(dict(raw, run=dict(raw["run"], engine=engine)))).run()
        out[engine] = digest(res)
    return out


def record() -> None:
    import pyarrow

    cases = {c: run_case(c, parquet=True) for c in scenario_cases()}
    diff = [{"scenario": d, "digest": run_differential(d)} for d in differential_examples()]
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    REFERENCE.write_text(json.dumps({"pyarrow": pyarrow.__version__, "cases": cases, "differential": diff},
                                    indent=1, sort_keys=True) + "\n")
    print(f"recorded {len(cases)} scenarios and {len(diff)} differential examples in {REFERENCE}")


def check() -> int:
    import pyarrow

    ref = json.loads(REFERENCE.read_text())
    same_arrow = ref["pyarrow"] == pyarrow.__version__
    bad = 0
    for case, want in ref["cases"].items():
        got = run_case(case, parquet=same_arrow and "parquet" in want)
        if not same_arrow:
            want = {k: v for k, v in want.items() if k != "parquet"}
        ok = got == want
        bad += not ok
        print(("ok   " if ok else "DIFF ") + case + ("" if ok else f": {[k for k in want if got.get(k) != want[k]]}"))
    for k, ex in enumerate(ref["differential"]):
        ok = run_differential(ex["scenario"]) == ex["digest"]
        bad += not ok
        print(("ok   " if ok else "DIFF ") + f"differential example {k}")
    print(f"{bad} differ" + ("" if same_arrow else f" (parquet bytes not compared: pyarrow {pyarrow.__version__}, "
                                                     f"the reference's {ref['pyarrow']})"))
    return 1 if bad else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["record"]:
        record()
    elif sys.argv[1:] == ["check"]:
        sys.exit(check())
    else:
        print(__doc__)
        sys.exit(2)
