"""Fit the prediction intervals (sim/analysis/intervals.py) on the cross-validated residuals of
`dcsim validate --cv`, check their coverage leaving each model out, and with --write store them in
sim/data/prediction_intervals.toml.

Coverage is nested: a model's stages are judged against quantiles computed from the other
models' residuals only, so a model's own errors never widen its own interval.

Usage: dcsim validate --cv --json > cv.json; python scripts/fit_intervals.py cv.json [--write]
"""

from __future__ import annotations

import argparse
import json
import sys

from sim.analysis.intervals import fit, write_table


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", help="JSON of dcsim validate --cv --json")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    rep = json.load(open(args.report))
    if not str(rep.get("mode", "")).startswith("leave-one-model-out"):
        raise SystemExit(f"{args.report}: not a cross-validated report; run dcsim validate --cv --json")
    out = fit(rep["experiments"])
    print(json.dumps(out, indent=1))
    if args.write:
        write_table(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
