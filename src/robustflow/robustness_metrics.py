"""Corruption errors (Hendrycks & Dietterich, ICLR 2019) from a tidy table of top-1 errors.

With E(f, s, c) the top-1 error of model f at corruption c and severity s and E_clean(f) its
clean error, for a baseline model ``base`` named by the caller:

- CE(f, c) = sum_s E(f, s, c) / sum_s E(base, s, c); mCE(f) = mean over corruptions of CE(f, c).
- relative CE(f, c) = sum_s (E(f, s, c) - E_clean(f)) / sum_s (E(base, s, c) - E_clean(base));
  relative mCE = mean over corruptions.
- mean error / mean accuracy: the unnormalised mean of E(f, s, c) (1 - E) over all cells.

ImageNet-C normalises by AlexNet; CIFAR has no such table, so the baseline is one of the
compared models (its CE is 1 by construction). A CE whose denominator is 0 (to 1e-9; the baseline makes
no error on that corruption, or, for the relative CE, no error beyond its clean error) is
undefined: it is NaN and left out of the mean, whose ``n_corruptions`` (``n_corruptions_relative``)
column says how many corruptions it averages.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

ERROR_COLUMNS = ("model", "corruption", "severity", "error")


def _check_inputs(errors: pd.DataFrame, clean_errors: Mapping[str, float], baseline: str) -> None:
    missing = [c for c in ERROR_COLUMNS if c not in errors.columns]
    if missing:
        raise ValueError(f"errors: columns {missing} missing (has {list(errors.columns)})")
    if errors.empty:
        raise ValueError("errors: the table is empty")
    values = errors["error"].to_numpy(dtype=float)
    if not np.all((values >= 0) & (values <= 1)):
        raise ValueError("errors: column 'error' must hold top-1 error rates in [0, 1]")
    if errors.duplicated(["model", "corruption", "severity"]).any():
        raise ValueError("errors: more than one row for some (model, corruption, severity)")
    models = list(dict.fromkeys(errors["model"]))
    if baseline not in models:
        raise ValueError(f"baseline {baseline!r} is not a model of the errors table (models: {models})")
    absent = [m for m in models if m not in clean_errors]
    if absent:
        raise ValueError(f"clean_errors: no clean error for models {absent}")
    cells = set(zip(errors.loc[errors["model"] == baseline, "corruption"],
                    errors.loc[errors["model"] == baseline, "severity"]))
    for model, rows in errors.groupby("model", sort=False):
        if set(zip(rows["corruption"], rows["severity"])) != cells:
            raise ValueError(
                f"errors: model {model!r} does not have the same (corruption, severity) cells as "
                f"baseline {baseline!r}"
            )


# Errors are counts over a finite test set; a denominator this small is a zero that lost
# exactness in floating point (0.1 + 0.2 - 0.3), not a real difference.
ZERO_DENOMINATOR = 1e-9


def _ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    return (numerator / denominator.where(denominator.abs() > ZERO_DENOMINATOR)).astype(float)


def corruption_errors(errors: pd.DataFrame, clean_errors: Mapping[str, float], baseline: str) -> pd.DataFrame:
    """CE and relative CE per (model, corruption), beside the mean error over severities.

    ``errors``: one row per (model, corruption, severity) with column ``error`` (top-1 error
    in [0, 1]); ``clean_errors``: model -> clean top-1 error. Every model must have the
    baseline's cells. Returns columns model, corruption, mean_error, ce, relative_ce.
    """
    _check_inputs(errors, clean_errors, baseline)
    frame = errors[list(ERROR_COLUMNS)].copy()
    frame["error_above_clean"] = frame["error"] - frame["model"].map(clean_errors).astype(float)
    sums = frame.groupby(["model", "corruption"], sort=False).agg(
        error_sum=("error", "sum"), above_sum=("error_above_clean", "sum"), mean_error=("error", "mean")
    ).reset_index()
    base = sums[sums["model"] == baseline].set_index("corruption")
    sums["ce"] = _ratio(sums["error_sum"], sums["corruption"].map(base["error_sum"]))
    sums["relative_ce"] = _ratio(sums["above_sum"], sums["corruption"].map(base["above_sum"]))
    return sums[["model", "corruption", "mean_error", "ce", "relative_ce"]]


def mean_corruption_errors(
    errors: pd.DataFrame, clean_errors: Mapping[str, float], baseline: str
) -> pd.DataFrame:
    """Per model: clean_error, mean_error and mean_accuracy over all cells, mce, relative_mce,
    and n_corruptions / n_corruptions_relative (corruptions with a defined CE / relative CE,
    which the mCE / relative mCE average)."""
    per_corruption = corruption_errors(errors, clean_errors, baseline)
    rows = []
    for model, group in per_corruption.groupby("model", sort=False):
        cells = errors.loc[errors["model"] == model, "error"].astype(float)
        rows.append({
            "model": model,
            "clean_error": float(clean_errors[model]),
            "mean_error": float(cells.mean()),
            "mean_accuracy": float(1.0 - cells.mean()),
            "mce": float(group["ce"].mean()) if group["ce"].notna().any() else float("nan"),
            "relative_mce": (float(group["relative_ce"].mean()) if group["relative_ce"].notna().any()
                             else float("nan")),
            "n_corruptions": int(group["ce"].notna().sum()),
            "n_corruptions_relative": int(group["relative_ce"].notna().sum()),
        })
    return pd.DataFrame(rows)
