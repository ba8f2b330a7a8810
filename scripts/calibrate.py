"""Fit the perf-model constants on data/validation/vllm-measured and print them; with --write,
store them in sim/data/hardware.toml. The method is in sim/calibrate.py and docs/validation.md.

Usage: python scripts/calibrate.py [--data DIR] [--write]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path


from sim.validation.calibrate import PARAMS, fit, serving_rows
from sim.validation.validate import DEFAULT_DATA

HW_FILE = Path(__file__).resolve().parents[1] / "sim" / "data" / "hardware.toml"


def set_section(text: str, hid: str, vals: dict) -> str:
    head = re.search(rf'^\[{re.escape(hid)}\]\s*$', text, re.M) or re.search(rf'^\["{re.escape(hid)}"\]\s*$', text, re.M)
    assert head, hid
    nxt = re.search(r"^\[", text[head.end():], re.M)
    end = head.end() + (nxt.start() if nxt else len(text) - head.end())
    body = text[head.end():end]
    for k, v in vals.items():
        lit = json.dumps(v) if isinstance(v, str) else repr(v)
        body, n = re.subn(rf"^{k} = .*$", f"{k} = {lit}", body, flags=re.M)
        if n != 1:
            raise SystemExit(f"{HW_FILE}: [{hid}] needs exactly one '{k} = ...' line")
    return text[:head.end()] + body + text[end:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    rows = serving_rows(Path(args.data))
    fitted = fit(rows)
    for hid, vals in fitted.items():
        print(hid, json.dumps({k: vals[k] for k in PARAMS}), "|", vals["calibration_status"], "|", vals["calibration"])
    if args.write:
        text = HW_FILE.read_text()
        for hid, vals in fitted.items():
            text = set_section(text, hid, vals)
        HW_FILE.write_text(text)
        print(f"wrote {HW_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
