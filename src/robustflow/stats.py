"""Means with Student-t confidence intervals over seeds, and tidy per-group summaries.

The interval is mean +- t_{(1+c)/2, n-1} * sd / sqrt(n), with sd the sample standard deviation
(ddof=1) and NaNs ignored. One value gives no interval (nan bounds); none gives nan throughout.

A proportion (an accuracy, a probability, a flip rate: a value in [0, 1]) gets the same interval
clipped to [0, 1] (`proportion_ci`): its mean cannot leave [0, 1], so neither may its interval.
Clipping keeps seeds at exactly 0 or 1 (a perfect accuracy) usable, where a logit-scale interval
would be infinite; when every seed sits at 0 (or 1) the interval has zero width, which says only
that the seeds agree, not that the proportion is known exactly. `summarise` clips the columns that `is_proportion` recognises by name.
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


def proportion_ci(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): `mean_ci` with its bounds clipped to [0, 1], for a proportion."""
    mean, low, high = mean_ci(values, confidence)
    return mean, float(np.clip(low, 0.0, 1.0)), float(np.clip(high, 0.0, 1.0))


def proportion_interval(values: Iterable[float]) -> tuple[float, float]:
    """(low, high) of the 95% t-interval clipped to [0, 1]; fits seaborn's ``errorbar=`` callable."""
    _, low, high = proportion_ci(values)
    return low, high


# Column names of proportions in the studies' tables: a name that is one of these or ends with
# "_" + one of these (``test_top1``, ``mean_flip_probability``). Gaps, gains and other
# differences of proportions lie in [-1, 1]: a name holding one of `DIFFERENCE_WORDS`
# (``gap_original_minus_mixed_rand_top5``) is not a proportion.
PROPORTION_NAMES = ("top1", "top5", "accuracy", "ece", "mean_confidence", "fg_share", "flip_probability",
                    "consistency", "corruption_error", "disagreement", "same_label", "same_background")
DIFFERENCE_WORDS = ("gap", "minus", "gain", "improvement", "change", "difference")


def is_proportion(column: str) -> bool:
    """Whether ``column`` names a proportion (see `PROPORTION_NAMES` and `DIFFERENCE_WORDS`)."""
    if any(word in column for word in DIFFERENCE_WORDS):
        return False
    return any(column == name or column.endswith("_" + name) for name in PROPORTION_NAMES)


def interval_for(column: str):
    """The 95% interval for ``column``, as seaborn's ``errorbar=`` callable: clipped to [0, 1]
    for a proportion (`is_proportion`), the plain t-interval otherwise; tables and figures agree."""
    return proportion_interval if is_proportion(column) else t_interval


def summarise(df: pd.DataFrame, by: list[str], values: list[str], confidence: float = 0.95) -> pd.DataFrame:
    """One row per group of ``by``: the group keys, ``n`` (rows in the group) and, for each
    column v of ``values``, ``v_mean``, ``v_ci_low`` and ``v_ci_high``: the Student-t interval,
    clipped to [0, 1] for a proportion (`is_proportion`).

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
            interval = proportion_ci if is_proportion(value) else mean_ci
            row[f"{value}_mean"], row[f"{value}_ci_low"], row[f"{value}_ci_high"] = interval(group[value], confidence)
        rows.append(row)
    columns = [*by, "n", *(f"{v}_{s}" for v in values for s in ("mean", "ci_low", "ci_high"))]
    return pd.DataFrame(rows, columns=columns)
