"""The README's picture of a report: run scenarios/tent_trip.toml, write its report.html and
photograph it in headless Chromium (the same check the tests make: no console error, no network
request), as docs/report.png.

Usage: python scripts/report_screenshot.py [--run-dir runs/t] [--out docs/report.png]
Needs Debian's chromium (apt-get install chromium). About 10 s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from sim.analysis.browser import check_page
from sim.analysis.report import write_report

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default="runs/t")
    ap.add_argument("--out", default="docs/report.png")
    args = ap.parse_args()
    d = Path(args.run_dir)
    if not (d / "summary.json").exists():
        subprocess.run([sys.executable, "-m", "sim", "run", str(REPO / "scenarios" / "tent_trip.toml"), "--out", str(d),
                        "--quiet"], check=True, stdout=subprocess.DEVNULL)
    page = check_page(write_report(d))
    if page.console_errors or page.network_requests:
        print(f"report.html: console errors {page.console_errors}, network requests {page.network_requests}")
        return 1
    Path(args.out).write_bytes(page.screenshot_png)
    print(f"wrote {args.out} ({page.plots} plots drawn; headline: {page.headline[:100]}...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
