"""Confidence intervals for replicated runs (Student t, two-sided 95%)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

# t_{0.975, df} for df = 1..30 (standard tables); beyond 30 the normal value is within 2%.
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042]


def t975(df: float) -> float:
    if df < 1:
        return math.inf
    if df <= 30:
        k = int(math.floor(df))
        lo = _T975[k - 1]
        hi = _T975[k] if k < 30 else 1.96
        return lo + (hi - lo) * (df - k)  # linear between integer dfs (Welch gives fractional df)
    return 1.96 + 2.4 / df  # close to the exact value above 30


def mean_ci(x: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high) of a 95% t interval; a single value gives a zero-width interval."""
    a = np.asarray([v for v in x if v is not None], dtype=float)
    if a.size == 0:
        return (math.nan, math.nan, math.nan)
    m = float(a.mean())
    if a.size == 1:
        return (m, m, m)
    h = t975(a.size - 1) * float(a.std(ddof=1)) / math.sqrt(a.size)
    return (m, m - h, m + h)


def paired_diff_ci(x: Sequence[float], base: Sequence[float]) -> tuple[float, float, float]:
    """CI of the mean of per-replication differences x_r - base_r (common random numbers)."""
    return mean_ci([a - b for a, b in zip(x, base, strict=False) if a is not None and b is not None])


def welch_diff_ci(x: Sequence[float], base: Sequence[float]) -> tuple[float, float, float]:
    """CI of mean(x) - mean(base) treating the samples as independent (Welch)."""
    a = np.asarray([v for v in x if v is not None], float)
    b = np.asarray([v for v in base if v is not None], float)
    d = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return (d, d, d)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0:
        return (d, d, d)
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    h = t975(df) * se
    return (d, d - h, d + h)
