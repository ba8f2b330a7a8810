"""The HTML report's pieces: number formatting, cards, tables, the page, the plotly figures' holder, the
scenario and warnings sections (sim/analysis/report.py assembles them)."""

from __future__ import annotations

import html
import json
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from sim.errors import ScenarioError

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
CDF_POINTS = 400  # points per CDF curve: the page stays small (hover still reads each quantile)

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:20px 28px 60px}
h1{font-size:1.35rem;margin:.2rem 0 .6rem}
h2{font-size:1.1rem;margin:1.8rem 0 .6rem;border-bottom:1px solid #d8dce3;padding-bottom:4px}
.headline{font-size:1.12rem;line-height:1.55;background:#fff;border-left:5px solid #2b6cb0;padding:14px 18px;
  margin:10px 0 18px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:10px}
.card{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:10px 12px}
.card .k{font-size:.78rem;color:#5a6472;text-transform:uppercase;letter-spacing:.03em}
.card .v{font-size:1.3rem;font-weight:600;margin-top:2px} .card .s{font-size:.8rem;color:#5a6472;margin-top:2px}
table{border-collapse:collapse;background:#fff;font-size:.88rem;margin:6px 0}
th,td{border:1px solid #dde1e7;padding:4px 9px;text-align:right} th{background:#eef1f5} td.l,th.l{text-align:left}
.ok{color:#1f7a3a;font-weight:600} .bad{color:#b42318;font-weight:600} .dim{color:#8a93a0}
.warn{background:#fff8e6;border:1px solid #f0c36d;border-radius:6px;padding:8px 12px;margin:6px 0;font-size:.9rem}
.note{font-size:.85rem;color:#5a6472}
pre{background:#fff;border:1px solid #dde1e7;padding:10px;overflow:auto;font-size:.8rem}
.plot{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:10px 0;padding:4px}
"""


# ----------------------------------------------------------------------------------------------
# formatting


def num(v: Any, unit: str = "") -> str:
    """A number as a person reads it: 3 significant figures, thousands separated, with its unit."""
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    v = float(v)
    if v == 0:
        s = "0"
    elif abs(v) >= 1000:
        s = f"{v:,.0f}"
    elif abs(v) >= 1:
        s = f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    else:
        s = f"{v:.3g}"
    return f"{s} {unit}".strip()


def big(v: Any, unit: str = "") -> str:
    """Large counts in words a planner reads aloud: 347 million, 30.0 trillion."""
    if v is None:
        return "–"
    for scale, word in ((1e12, "trillion"), (1e9, "billion"), (1e6, "million")):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {word} {unit}".strip()
    return num(v, unit)


def secs(v: Any) -> str:
    """Seconds, in ms below one second."""
    if v is None:
        return "–"
    return num(v * 1e3, "ms") if abs(v) < 1 else num(v, "s")


def pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def esc(s: Any) -> str:
    return html.escape(str(s))


def card_html(key: str, value: str, sub: str = "") -> str:
    return (f'<div class="card"><div class="k">{esc(key)}</div><div class="v">{esc(value)}</div>'
            + (f'<div class="s">{esc(sub)}</div>' if sub else "") + "</div>")


def html_table(head: list[str], rows: list[list[str]], left: int = 1) -> str:
    """An HTML table; the first `left` columns left-aligned; cells are HTML already."""
    th = "".join(f'<th class="{"l" if i < left else ""}">{esc(h)}</th>' for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{c}</td>' for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


class Figures:
    """Plotly figures as inlined divs with stable ids (the same folder gives the same page)."""

    def __init__(self) -> None:
        self.n = 0

    def html(self, fig: Any, height: int = 420) -> str:
        import plotly.io as pio

        self.n += 1
        fig.update_layout(height=height, margin=dict(l=60, r=20, t=60, b=50), template="plotly_white",
                          hoverlabel=dict(namelength=-1), legend=dict(font=dict(size=11)))
        div = pio.to_html(fig, include_plotlyjs=False, full_html=False, config=PLOTLY_CONFIG, div_id=f"fig{self.n}")
        return f'<div class="plot">{div}</div>'


def page_html(title: str, headline: str, body: list[str]) -> str:
    from plotly.offline import get_plotlyjs

    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{CSS}</style>"
            f"<script type=\"text/javascript\">{get_plotlyjs()}</script></head><body><main>"
            f"<h1>{esc(title)}</h1><div class=\"headline\" id=\"headline\">{headline}</div>"
            + "\n".join(body)
            + "<p class=\"note\">Written by dcsim report. Everything on this page is inlined: it opens offline.</p>"
            "</main></body></html>\n")


def scenario_raw(d: Path) -> dict[str, Any]:
    try:
        return tomllib.loads((d / "scenario.toml").read_text())
    except (OSError, ValueError):
        return {}


def scenario_section(d: Path) -> str:
    p = d / "scenario.toml"
    if not p.exists():
        return ""
    return ("<h2>Effective scenario</h2><p class=\"note\">The scenario as run (defaults filled in, overrides "
            f"applied): scenario.toml in this folder.</p><details><summary>show</summary><pre>{esc(p.read_text())}"
            "</pre></details>")


def warnings_html(items: list[str], none: str = "None.") -> str:
    if not items:
        return f"<h2>Warnings</h2><p class=\"note\">{esc(none)}</p>"
    return "<h2>Warnings</h2>" + "".join(f'<div class="warn">{esc(w)}</div>' for w in items)


def saved_warnings(d: Path) -> list[str]:
    p = d / "warnings.json"
    try:
        return [str(w) for w in json.loads(p.read_text())] if p.exists() else []
    except ValueError:
        return []


def calibration_warnings(status: dict[str, str]) -> list[str]:
    """One line per part whose numbers rest on borrowed or assumed constants (catalog's own words)."""
    from sim.perf import catalog

    out = []
    for hid, st in (status or {}).items():
        if st == "measured":
            continue
        try:
            note = catalog.builtin_catalog().get_hardware(hid).calibration_note()
        except (ScenarioError, KeyError):
            note = None
        out.append(note or f"{hid}: constants {st}; its latencies and throughput are estimates; measure your own: "
                   "dcsim observe, then dcsim calibrate (docs/calibrate.md)")
    return out


def merged_status(summaries: Any) -> dict[str, str]:
    """The parts' calibration_status over several runs' summaries (a study's)."""
    out: dict[str, str] = {}
    for s in summaries:
        out.update((s or {}).get("calibration_status") or {})
    return out


def pngs_html(d: Path) -> str:
    files = sorted(p.name for p in d.glob("*.png"))
    if not files:
        return ""
    return ("<p class=\"note\">Static figures in this folder (matplotlib, for papers and slides): "
            + ", ".join(esc(f) for f in files) + ".</p>")
