"""Means with Student-t confidence intervals over seeds, and tidy per-group summaries.

The interval is mean +- t_{(1+c)/2, n-1} * sd / sqrt(n), with sd the sample standard deviation
(ddof=1) and NaNs ignored. One value gives no interval (nan bounds); none gives nan throughout.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the Student-t interval of the non-NaN ``values``."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    sample = np.asarray(list(values), dtype=float).ravel()
    sample = sample[~np.isnan(sample)]
    n = len(sample)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = float(sample.mean())
    if n == 1:
        return mean, math.nan, math.nan
    from scipy import stats  # imported here: it costs ~1 s, and only aggregation jobs need it

    half_width = stats.t.ppf((1.0 + confidence) / 2.0, n - 1) * sample.std(ddof=1) / math.sqrt(n)
    return mean, float(mean - half_width), float(mean + half_width)


def t_interval(values: Iterable[float]) -> tuple[float, float]:
    """(low, high) of the 95% t-interval; fits seaborn's ``errorbar=`` callable."""
    _, low, high = mean_ci(values)
    return low, high


def summarise(df: pd.DataFrame, by: list[str], values: list[str], confidence: float = 0.95) -> pd.DataFrame:
    """One row per group of ``by``: the group keys, ``n`` (rows in the group) and, for each
    column v of ``values``, ``v_mean``, ``v_ci_low`` and ``v_ci_high``.

    Groups with NaN keys (for example a margin lambda that a CE run lacks) are kept.
    """
    missing = [c for c in [*by, *values] if c not in df.columns]
    if missing:
        raise ValueError(f"summarise: columns {missing} not in the table (has {list(df.columns)})")
    rows = []
    for keys, group in df.groupby(by, sort=True, dropna=False):
        row = dict(zip(by, keys))
        row["n"] = len(group)
        for value in values:
            row[f"{value}_mean"], row[f"{value}_ci_low"], row[f"{value}_ci_high"] = mean_ci(
                group[value], confidence)
        rows.append(row)
    columns = [*by, "n", *(f"{v}_{s}" for v in values for s in ("mean", "ci_low", "ci_high"))]
    return pd.DataFrame(rows, columns=columns)
