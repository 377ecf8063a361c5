import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from robustflow.stats import is_proportion, mean_ci, proportion_ci, proportion_interval, summarise, t_interval

SAMPLE = [2.1, 3.4, 1.9, 5.0, 4.2]


@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_mean_ci_matches_scipy(confidence):
    mean = np.mean(SAMPLE)
    low, high = stats.t.interval(confidence, df=len(SAMPLE) - 1, loc=mean, scale=stats.sem(SAMPLE))
    assert mean_ci(SAMPLE, confidence) == pytest.approx((mean, low, high))


def test_mean_ci_by_hand():
    # [1, 2, 3]: mean 2, sd 1, t_{0.975, 2} = 4.302652729911275.
    half_width = 4.302652729911275 / math.sqrt(3)
    assert mean_ci([1.0, 2.0, 3.0]) == pytest.approx((2.0, 2.0 - half_width, 2.0 + half_width))


def test_nans_are_ignored():
    assert mean_ci([math.nan, *SAMPLE, math.nan]) == pytest.approx(mean_ci(SAMPLE))
    assert mean_ci(pd.Series([*SAMPLE, None])) == pytest.approx(mean_ci(SAMPLE))


def test_small_samples():
    mean, low, high = mean_ci([4.5])
    assert mean == 4.5 and math.isnan(low) and math.isnan(high)
    assert all(math.isnan(v) for v in mean_ci([]))
    assert all(math.isnan(v) for v in mean_ci([math.nan, math.nan]))
    assert mean_ci([3.0, 3.0, 3.0]) == (3.0, 3.0, 3.0)


def test_t_interval_is_the_bounds_of_mean_ci():
    assert t_interval(np.array(SAMPLE)) == pytest.approx(mean_ci(SAMPLE)[1:])


def test_t_interval_works_as_seaborn_errorbar():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    frame = pd.DataFrame({"x": [0, 0, 0, 1, 1, 1], "y": [1.0, 2.0, 3.0, 2.0, 2.5, 3.0]})
    fig, ax = plt.subplots()
    sns.lineplot(data=frame, x="x", y="y", errorbar=t_interval, ax=ax)
    band = ax.collections[0].get_paths()[0].vertices
    plt.close(fig)
    low, high = t_interval([1.0, 2.0, 3.0])
    assert band[:, 1].min() == pytest.approx(min(low, t_interval([2.0, 2.5, 3.0])[0]))
    assert band[:, 1].max() == pytest.approx(max(high, t_interval([2.0, 2.5, 3.0])[1]))


def test_invalid_confidence():
    with pytest.raises(ValueError, match="confidence"):
        mean_ci(SAMPLE, confidence=95)


def test_summarise_groups_and_columns():
    frame = pd.DataFrame({
        "loss": ["ce", "ce", "ce", "margin", "margin", "margin"],
        "margin_lambda": [np.nan, np.nan, np.nan, 10.0, 10.0, 1.0],
        "top1": [0.5, 0.6, 0.7, 0.9, 1.0, 0.8],
        "snr": [1.0, 2.0, 3.0, 5.0, np.nan, 7.0],
    })
    summary = summarise(frame, by=["loss", "margin_lambda"], values=["top1", "snr"])
    assert list(summary.columns) == ["loss", "margin_lambda", "n",
                                     "top1_mean", "top1_ci_low", "top1_ci_high",
                                     "snr_mean", "snr_ci_low", "snr_ci_high"]
    assert len(summary) == 3  # the CE group with a NaN lambda is kept

    ce = summary[summary["loss"] == "ce"].iloc[0]
    assert ce["n"] == 3 and math.isnan(ce["margin_lambda"])
    assert (ce["snr_mean"], ce["snr_ci_low"], ce["snr_ci_high"]) == pytest.approx(mean_ci([1.0, 2.0, 3.0]))
    assert ce["top1_mean"] == pytest.approx(0.6)

    lam10 = summary[summary["margin_lambda"] == 10.0].iloc[0]
    assert lam10["n"] == 2
    assert lam10["snr_mean"] == 5.0 and math.isnan(lam10["snr_ci_low"])  # one non-NaN value
    # top1 is a proportion: its t-interval [0.315, 1.585] is clipped to [0.315, 1].
    assert (lam10["top1_ci_low"], lam10["top1_ci_high"]) == pytest.approx(proportion_interval([0.9, 1.0]))
    assert lam10["top1_ci_high"] == 1.0 and t_interval([0.9, 1.0])[1] > 1.0

    lam1 = summary[summary["margin_lambda"] == 1.0].iloc[0]
    assert lam1["n"] == 1 and lam1["top1_mean"] == 0.8 and math.isnan(lam1["top1_ci_high"])


def test_proportion_ci_by_hand():
    # [0.9, 1.0]: mean 0.95, sd 0.1 / sqrt(2), t_{0.975, 1} = 12.706204736174698: half width 0.6353.
    half_width = 12.706204736174698 * (0.1 / math.sqrt(2)) / math.sqrt(2)
    assert proportion_ci([0.9, 1.0]) == pytest.approx((0.95, 0.95 - half_width, 1.0))
    # [0.0, 0.1]: the low bound is clipped to 0; [0.4, 0.5, 0.6] stays inside and equals the t-interval.
    assert proportion_ci([0.0, 0.1]) == pytest.approx((0.05, 0.0, 0.05 + half_width))
    assert proportion_ci([0.4, 0.5, 0.6]) == pytest.approx(mean_ci([0.4, 0.5, 0.6]))
    assert math.isnan(proportion_ci([0.7])[1]) and proportion_ci([1.0, 1.0]) == (1.0, 1.0, 1.0)


def test_proportions_are_recognised_by_name_and_differences_are_not():
    for name in ["top1", "test_top5", "accuracy", "mean_flip_probability", "fg_share", "mean_corruption_error"]:
        assert is_proportion(name), name
    for name in ["gap_original_minus_mixed_rand", "gap_original_minus_mixed_rand_top5", "top1_improvement",
                 "finetune_gain_same_images", "mce", "margin_snr", "output_ratio"]:
        assert not is_proportion(name), name


def test_summarise_confidence_changes_width():
    frame = pd.DataFrame({"g": ["a"] * 4, "v": [1.0, 2.0, 4.0, 8.0]})
    wide = summarise(frame, by=["g"], values=["v"], confidence=0.99).iloc[0]
    narrow = summarise(frame, by=["g"], values=["v"], confidence=0.8).iloc[0]
    assert wide["v_ci_high"] - wide["v_ci_low"] > narrow["v_ci_high"] - narrow["v_ci_low"]


def test_summarise_missing_column():
    with pytest.raises(ValueError, match="seed"):
        summarise(pd.DataFrame({"a": [1]}), by=["seed"], values=["a"])
