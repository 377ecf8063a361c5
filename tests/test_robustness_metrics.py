"""CE, mCE and relative mCE against tables computed by hand."""

import math

import pandas as pd
import pytest

from robustflow.robustness_metrics import corruption_errors, mean_corruption_errors

# Errors E(model, corruption, severity) for a baseline "base" and a model "f".
ERRORS = pd.DataFrame(
    [
        ("base", "noise", 1, 0.2), ("base", "noise", 2, 0.4),
        ("base", "blur", 1, 0.1), ("base", "blur", 2, 0.3),
        ("f", "noise", 1, 0.3), ("f", "noise", 2, 0.3),
        ("f", "blur", 1, 0.2), ("f", "blur", 2, 0.4),
    ],
    columns=["model", "corruption", "severity", "error"],
)
CLEAN = {"base": 0.1, "f": 0.05}


def _row(table: pd.DataFrame, **keys) -> pd.Series:
    mask = pd.Series(True, index=table.index)
    for key, value in keys.items():
        mask &= table[key] == value
    assert mask.sum() == 1
    return table[mask].iloc[0]


def test_corruption_errors_match_hand_computation():
    table = corruption_errors(ERRORS, CLEAN, baseline="base")
    # CE(f, noise) = (0.3 + 0.3) / (0.2 + 0.4) = 1; CE(f, blur) = (0.2 + 0.4) / (0.1 + 0.3) = 1.5
    assert _row(table, model="f", corruption="noise")["ce"] == pytest.approx(1.0)
    assert _row(table, model="f", corruption="blur")["ce"] == pytest.approx(1.5)
    # relative: noise (0.25 + 0.25) / (0.1 + 0.3) = 1.25; blur (0.15 + 0.35) / (0.0 + 0.2) = 2.5
    assert _row(table, model="f", corruption="noise")["relative_ce"] == pytest.approx(1.25)
    assert _row(table, model="f", corruption="blur")["relative_ce"] == pytest.approx(2.5)
    assert _row(table, model="f", corruption="blur")["mean_error"] == pytest.approx(0.3)
    base = table[table["model"] == "base"]
    assert base["ce"].tolist() == pytest.approx([1.0, 1.0])
    assert base["relative_ce"].tolist() == pytest.approx([1.0, 1.0])


def test_mean_corruption_errors_match_hand_computation():
    summary = mean_corruption_errors(ERRORS, CLEAN, baseline="base").set_index("model")
    assert summary.loc["f", "mce"] == pytest.approx(1.25)
    assert summary.loc["f", "relative_mce"] == pytest.approx(1.875)
    assert summary.loc["f", "mean_error"] == pytest.approx(0.3)
    assert summary.loc["f", "mean_accuracy"] == pytest.approx(0.7)
    assert summary.loc["f", "clean_error"] == pytest.approx(0.05)
    assert summary.loc["base", "mean_error"] == pytest.approx(0.25)
    assert summary.loc["f", "n_corruptions"] == 2
    assert summary.loc["f", "n_corruptions_relative"] == 2


def test_undefined_ce_is_nan_and_left_out_of_the_mean():
    errors = ERRORS.copy()
    errors.loc[(errors["model"] == "base") & (errors["corruption"] == "blur"), "error"] = 0.0
    per_corruption = corruption_errors(errors, CLEAN, baseline="base")
    assert math.isnan(_row(per_corruption, model="f", corruption="blur")["ce"])
    summary = mean_corruption_errors(errors, CLEAN, baseline="base").set_index("model")
    assert summary.loc["f", "mce"] == pytest.approx(1.0)  # the noise CE only
    assert summary.loc["f", "n_corruptions"] == 1


def test_relative_ce_treats_a_rounding_level_denominator_as_zero():
    errors = ERRORS.copy()
    base_blur = (errors["model"] == "base") & (errors["corruption"] == "blur")
    errors.loc[base_blur, "error"] = [0.1 + 0.2, 0.3]  # the baseline loses nothing beyond its clean error
    errors.loc[(errors["model"] == "base") & (errors["corruption"] == "noise"), "error"] = [0.5, 0.5]
    table = corruption_errors(errors, {"base": 0.3, "f": 0.05}, baseline="base")
    assert math.isnan(_row(table, model="f", corruption="blur")["relative_ce"])
    assert _row(table, model="f", corruption="blur")["ce"] == pytest.approx(0.6 / 0.6)
    summary = mean_corruption_errors(errors, {"base": 0.3, "f": 0.05}, "base").set_index("model")
    # noise only: (0.25 + 0.25) / (0.2 + 0.2)
    assert summary.loc["f", "relative_mce"] == pytest.approx(1.25)
    assert summary.loc["f", "n_corruptions_relative"] == 1 and summary.loc["f", "n_corruptions"] == 2


def test_mce_is_independent_of_row_order():
    shuffled = ERRORS.sample(frac=1.0, random_state=3)
    a = mean_corruption_errors(ERRORS, CLEAN, "base").set_index("model").sort_index()
    b = mean_corruption_errors(shuffled, CLEAN, "base").set_index("model").sort_index()
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize(
    "errors, clean, baseline, message",
    [
        (ERRORS, CLEAN, "alexnet", "baseline 'alexnet'"),
        (ERRORS, {"base": 0.1}, "base", "clean_errors"),
        (ERRORS[~((ERRORS["model"] == "f") & (ERRORS["severity"] == 2))], CLEAN, "base", "model 'f'"),
        (ERRORS.assign(error=ERRORS["error"] * 10), CLEAN, "base", "error rates in \\[0, 1\\]"),
        (ERRORS.drop(columns="severity"), CLEAN, "base", "severity"),
        (pd.concat([ERRORS, ERRORS.iloc[:1]]), CLEAN, "base", "more than one row"),
    ],
)
def test_bad_input_names_the_problem(errors, clean, baseline, message):
    with pytest.raises(ValueError, match=message):
        corruption_errors(errors, clean, baseline)
