"""Writing a matplotlib figure the project's way: its readability check (`overlaps`: texts that
overlap, legends over data; refused with DCSIM_CHECK_LAYOUT=1), the PNG with the JSON of the
numbers it was drawn from beside it (`save_png`, `save_figure` for scripts), and the small
helpers every plot shares (empirical CDF, readable log ticks)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _texts(fig) -> list[tuple[str, Any]]:
    """(name, window bbox) of every drawn text of a figure: tick labels, axis labels, titles,
    annotations, legends (as boxes) and figure-level texts."""
    r = fig.canvas.get_renderer()
    out: list[tuple[str, Any]] = []
    seen: set[int] = set()

    def add(name: str, art: Any) -> None:
        if art is None or id(art) in seen:  # (the suptitle is among the figure's texts too)
            return
        seen.add(id(art))
        if art.get_visible() and (not hasattr(art, "get_text") or art.get_text().strip()):
            bb = art.get_window_extent(r)
            if bb.width > 0 and bb.height > 0:
                out.append((name, bb))

    for k, ax in enumerate(fig.axes):
        if not ax.get_visible() or not ax.axison:
            continue
        for axis, nm in ((ax.xaxis, "x"), (ax.yaxis, "y")):
            if not axis.get_visible():  # (a twin's shared axis)
                continue
            for tick in axis._update_ticks():  # the ticks drawn (within the view limits)
                for lab in (tick.label1, tick.label2):
                    add(f"axes {k} {nm} tick '{lab.get_text()}'", lab)
            add(f"axes {k} {nm} label", axis.label)
            add(f"axes {k} {nm} offset", axis.get_offset_text())
        for t in (ax.title, ax._left_title, ax._right_title):
            add(f"axes {k} title", t)
        for t in ax.texts:
            add(f"axes {k} text '{t.get_text()[:30]}'", t)
        add(f"axes {k} legend", ax.get_legend())
    add("suptitle", fig._suptitle)
    for t in fig.texts:
        add(f"figure text '{t.get_text()[:30]}'", t)
    for lg in fig.legends:
        add("figure legend", lg)
    return out


def overlaps(fig) -> list[str]:
    """What a reader could not read in a figure: pairs of texts (tick labels, labels, titles,
    annotations, legends) whose boxes overlap by more than a pixel each way, texts running off the
    canvas, and legends drawn over plotted points. Empty when the figure is clean."""
    fig.canvas.draw()
    items = _texts(fig)
    out = []
    W, H = fig.canvas.get_width_height()
    for name, bb in items:
        if bb.x0 < -1 or bb.y0 < -1 or bb.x1 > W + 1 or bb.y1 > H + 1:
            out.append(f"{name} runs off the figure")
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            (n1, a), (n2, b) = items[i], items[j]
            w = min(a.x1, b.x1) - max(a.x0, b.x0)
            h = min(a.y1, b.y1) - max(a.y0, b.y0)
            if w > 1 and h > 1:
                out.append(f"{n1} overlaps {n2}")
    for k, ax in enumerate(fig.axes):
        lg = ax.get_legend()
        if lg is None or not lg.get_visible():
            continue
        bb = lg.get_window_extent(fig.canvas.get_renderer())
        for line in ax.lines:
            xy = np.column_stack([np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)])
            if not xy.size or line.get_transform() != ax.transData:  # (axhline and friends span the axes)
                continue
            xy = xy[np.isfinite(xy).all(axis=1)]
            p = ax.transData.transform(xy)
            inside = (p[:, 0] > bb.x0) & (p[:, 0] < bb.x1) & (p[:, 1] > bb.y0) & (p[:, 1] < bb.y1)
            if inside.any():
                out.append(f"axes {k} legend covers {int(inside.sum())} point(s) of '{line.get_label()}'")
    return out


class LayoutError(RuntimeError):
    """A figure failed its readability check (DCSIM_CHECK_LAYOUT=1)."""


def save_png(fig, path: Path, data: dict[str, Any], layout: bool = True) -> Path:
    """Write the PNG and its numbers (JSON); with DCSIM_CHECK_LAYOUT=1 in the environment, first
    refuse a figure with overlapping texts or a legend over data (tests and scripts' checks)."""
    if layout:
        fig.tight_layout()
    if os.environ.get("DCSIM_CHECK_LAYOUT") == "1":
        bad = overlaps(fig)
        if bad:
            plt.close(fig)
            raise LayoutError(
                f"{path.name}: " + "; ".join(bad[:8]) + (f" (+{len(bad) - 8} more)" if len(bad) > 8 else "")
            )
    fig.savefig(path, dpi=110)
    plt.close(fig)
    path.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    return path


def save_figure(fig, path: str | Path, data: dict[str, Any] | None = None, layout: bool = True) -> Path:
    """The scripts' way to write a figure: the same checks and JSON beside it as dcsim's own plots."""
    return save_png(fig, Path(path), data if data is not None else {}, layout)


def cdf(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.sort(np.asarray(x, dtype=float))
    x = x[np.isfinite(x)]
    return x, (np.arange(1, x.size + 1) / x.size if x.size else x)


def log_ticks(ax, axis: str = "x") -> None:
    """Readable log ticks: 1-2-5 steps as plain decimals (no 10^k labels running together)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    a = ax.xaxis if axis == "x" else ax.yaxis
    a.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=8))
    a.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    a.set_minor_formatter(NullFormatter())


def maybe_log(ax, values: list[float], axis: str = "y") -> None:
    """A log axis with readable ticks only where the positive values span more than 20x."""
    v = [x for x in values if x is not None and np.isfinite(x) and x > 0]
    if v and max(v) / min(v) > 20:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
        log_ticks(ax, axis)

