import math

import pandas as pd
import pytest
from scipy import stats as scipy_stats

from robustflow.claims import (
    COLUMNS,
    NOT_TESTABLE,
    Claim,
    better_than_chance,
    converged,
    judge,
    verdict_table,
)
from robustflow.stats import mean_ci
from robustflow.studies.learning_rule.claims import CLAIMS

# The source's own (magnitude) claims; the directional ones are judged on any task.
LEARNING_RULE_CLAIMS = tuple(item.claim for item in CLAIMS if not item.directional)


def _claim(kind="value", claimed=274.17, rel_tol=None):
    return Claim("c1", "source 000", "a statement", "output_ratio", claimed, kind, rel_tol)


def test_interval_is_the_student_t_interval():
    row = judge(_claim(claimed=2.5), [1.0, 2.0, 3.0, 4.0], comparable=True)
    lo, hi = scipy_stats.t.interval(0.95, 3, loc=2.5, scale=scipy_stats.sem([1, 2, 3, 4]))
    assert row["measured_mean"] == pytest.approx(2.5)
    assert row["ci_low"] == pytest.approx(lo) and row["ci_high"] == pytest.approx(hi)
    assert row["n"] == 4
    assert set(row) == set(COLUMNS)


def test_value_inside_interval_is_reproduced():
    row = judge(_claim(), [250.0, 300.0, 270.0], comparable=True)
    assert row["verdict"] == "reproduced"
    assert "inside the interval" in row["reason"]


def test_value_within_rel_tol_of_mean_is_reproduced_even_outside_a_narrow_interval():
    row = judge(_claim(claimed=110.0), [100.0, 100.1, 99.9], comparable=True)
    assert not row["ci_low"] <= 110.0 <= row["ci_high"]
    assert row["verdict"] == "reproduced"
    assert "within 25%" in row["reason"]


def test_value_far_from_mean_is_not_reproduced_and_reason_gives_interval():
    row = judge(_claim(claimed=274.17), [2.0, 2.1, 1.9], comparable=True)
    assert row["verdict"] == "not reproduced"
    assert "274.2" in row["reason"] and "95% CI [" in row["reason"] and "n=3" in row["reason"]


def test_rel_tol_argument_and_claim_override():
    measured = [0.9, 0.91, 0.89]
    assert judge(_claim(claimed=1.0), measured, comparable=True)["verdict"] == "reproduced"
    assert judge(_claim(claimed=1.0), measured, comparable=True, rel_tol=0.05)["verdict"] == "not reproduced"
    tight = _claim(claimed=1.0, rel_tol=0.02)
    assert judge(tight, measured, comparable=True, rel_tol=0.5)["verdict"] == "not reproduced"


@pytest.mark.parametrize("kind", ["ratio", "relative_change"])
def test_ratio_and_relative_change_follow_the_value_rule(kind):
    claim = _claim(kind=kind, claimed=-0.383)
    assert judge(claim, [-0.40, -0.37, -0.39], comparable=True)["verdict"] == "reproduced"
    assert judge(claim, [0.10, 0.12, 0.11], comparable=True)["verdict"] == "not reproduced"


def test_at_least_needs_the_whole_interval_above_the_claim():
    measured = [0.90, 0.95, 0.92]
    assert judge(_claim("at_least", 0.8), measured, comparable=True)["verdict"] == "reproduced"
    # The mean 0.923 is above 0.9 but the interval reaches below it.
    row = judge(_claim("at_least", 0.9), measured, comparable=True)
    assert row["ci_low"] < 0.9 < row["measured_mean"]
    assert row["verdict"] == "not reproduced"
    assert "does not lie entirely at or above" in row["reason"]


def test_above_is_strict_so_no_effect_is_not_an_effect():
    assert judge(_claim("above", 0.0), [0.03, 0.02, 0.04], comparable=True)["verdict"] == "reproduced"
    row = judge(_claim("above", 0.0), [0.0, 0.0, 0.0], comparable=True)
    assert row["ci_low"] == 0.0 and row["verdict"] == "not reproduced"
    assert judge(_claim("at_least", 0.0), [0.0, 0.0, 0.0], comparable=True)["verdict"] == "reproduced"


def test_at_most_needs_the_whole_interval_below_the_claim():
    measured = [0.10, 0.12, 0.11]
    assert judge(_claim("at_most", 0.2), measured, comparable=True)["verdict"] == "reproduced"
    assert judge(_claim("at_most", 0.115), measured, comparable=True)["verdict"] == "not reproduced"


@pytest.mark.parametrize("measured, n", [([], 0), ([3.0], 1), ([math.nan, 2.0, math.inf], 1)])
def test_fewer_than_two_finite_measurements_is_inconclusive(measured, n):
    row = judge(_claim(claimed=2.0), measured, comparable=True)
    assert row["verdict"] == "inconclusive"
    assert row["n"] == n
    assert math.isnan(row["ci_low"]) and math.isnan(row["ci_high"])


def test_non_finite_measurements_are_dropped_before_the_interval():
    row = judge(_claim(claimed=2.0), [1.0, math.nan, 3.0], comparable=True)
    assert row["n"] == 2 and row["measured_mean"] == pytest.approx(2.0)
    assert row["verdict"] == "reproduced"


def test_not_comparable_needs_and_reports_a_reason():
    reason = "embedded default: digits, not KITTI road images"
    row = judge(_claim(), [274.0, 274.2, 274.1], comparable=False, reason=reason)
    assert row["verdict"] == "not comparable"
    assert row["reason"] == reason
    assert row["measured_mean"] == pytest.approx(274.1)  # still reported for the reader
    with pytest.raises(ValueError, match="reason"):
        judge(_claim(), [1.0, 2.0], comparable=False)


def test_caller_reason_is_kept_for_comparable_claims():
    row = judge(_claim(claimed=2.0), [1.9, 2.1], comparable=True, reason="SNR = output ratio")
    assert row["reason"].startswith("SNR = output ratio; ")


def test_claim_validation():
    with pytest.raises(ValueError, match="kind"):
        _claim(kind="roughly")
    with pytest.raises(ValueError, match="claimed"):
        _claim(claimed=math.nan)


def test_verdict_table():
    rows = [
        judge(_claim(claimed=2.0), [1.9, 2.1, 2.0], comparable=True),
        judge(Claim("c2", "source 000", "a | b", "m", 1.0, "value"), [1.0], comparable=True),
    ]
    df = verdict_table(rows)
    assert list(df.columns) == list(COLUMNS) and len(df) == 2
    assert df.loc[1, "statement"] == "a | b" and df.loc[1, "verdict"] == "inconclusive"
    with pytest.raises(ValueError, match="lacks columns"):
        verdict_table([{"claim_id": "x"}])


def test_learning_rule_claims_are_consistent_with_the_source():
    by_id = {c.claim_id: c for c in LEARNING_RULE_CLAIMS}
    assert len(by_id) == len(LEARNING_RULE_CLAIMS) == 11
    assert all(c.source == "source 000" for c in LEARNING_RULE_CLAIMS)
    hebbian = by_id["hebbian_snr"].claimed
    assert hebbian == 274.17 and by_id["sgd_mse_snr"].claimed == 2.05
    assert by_id["hebbian_vs_sgd_snr_ratio"].claimed == pytest.approx(hebbian / 2.05, rel=0.01)
    assert by_id["sgd_mse_accuracy"].claimed == 0.38 and by_id["hebbian_accuracy"].claimed == 1.0
    for name, snr in (("0_2", 245.61), ("0_1", 169.30), ("0_0p5", 93.23)):
        assert by_id[f"hebbian_constraint_{name}_snr"].claimed == snr
        change = by_id[f"hebbian_constraint_{name}_change"]
        assert change.kind == "relative_change"
        assert change.claimed == pytest.approx(snr / hebbian - 1, abs=1e-3)
    assert isinstance(verdict_table([]), pd.DataFrame)


# ----------------------------------------------------------------------------- not testable at this scale


def _histories(**val_top1_per_run) -> pd.DataFrame:
    """A per-epoch history table: run -> its validation top-1 at epochs 1..n."""
    return pd.DataFrame([{"run": run, "epoch": epoch, "val_top1": value}
                         for run, values in val_top1_per_run.items() for epoch, value in enumerate(values, 1)])


PRETRAINING_RAISES = Claim("pretraining_raises_accuracy", "source 002", "pretraining raises accuracy",
                           "top-1 pretrained - scratch", 0.0, "above", min_effect=0.02)
# Six epochs: the last two average 0.9505 and 0.953, the two before 0.945 and 0.9525.
CONVERGED = _histories(a=[0.5, 0.8, 0.94, 0.95, 0.951, 0.95], b=[0.6, 0.9, 0.95, 0.955, 0.95, 0.956])


def test_converged_effect_is_reproduced():
    precondition = converged(CONVERGED)
    assert precondition.holds and "converged" in precondition.reason
    row = judge(PRETRAINING_RAISES, [0.05, 0.04, 0.06], comparable=True, preconditions=[precondition])
    assert row["verdict"] == "reproduced"


def test_converged_absent_effect_with_a_narrow_interval_is_not_reproduced():
    row = judge(PRETRAINING_RAISES, [-0.004, 0.003, -0.001], comparable=True, preconditions=[converged(CONVERGED)])
    assert row["ci_high"] < PRETRAINING_RAISES.min_effect
    assert row["verdict"] == "not reproduced"


def test_a_run_still_learning_makes_the_claim_not_testable_and_names_it():
    # rising: the last two epochs average 0.65, the two before 0.45
    histories = _histories(a=[0.5, 0.8, 0.94, 0.95, 0.951, 0.95], rising=[0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    precondition = converged(histories)
    assert not precondition.holds and "+0.2 above" in precondition.reason and "(rising;" in precondition.reason
    row = judge(PRETRAINING_RAISES, [0.05, 0.04, 0.06], comparable=True, preconditions=[precondition])
    assert row["verdict"] == NOT_TESTABLE
    assert row["reason"].startswith("not converged") and "n=3" in row["reason"]


def test_one_late_dip_does_not_pass_a_run_still_rising_and_short_runs_cannot_be_checked():
    # The last epoch dips, but the last two epochs still average 0.895 against 0.5 before.
    assert not converged(_histories(a=[0.1, 0.2, 0.3, 0.7, 0.9, 0.89])).holds
    short = converged(_histories(a=[0.5, 0.9, 0.9]))
    assert not short.holds and "too few epochs" in short.reason


def test_an_interval_wider_than_the_effect_is_not_testable_not_absent():
    row = judge(PRETRAINING_RAISES, [-0.04, 0.3, 0.1], comparable=True, preconditions=[converged(CONVERGED)])
    assert row["ci_low"] < 0 < PRETRAINING_RAISES.min_effect < row["ci_high"]
    assert row["verdict"] == NOT_TESTABLE and "too wide" in row["reason"]
    # Without a stated smallest effect the same interval is judged as before.
    plain = Claim("c", "source 002", "s", "m", 0.0, "above")
    assert judge(plain, [-0.04, 0.3, 0.1], comparable=True)["verdict"] == "not reproduced"


def test_at_most_min_effect_reaches_below_the_claim():
    falls = Claim("c", "source 002", "accuracy falls", "top-1 change", 0.0, "at_most", min_effect=0.02)
    assert judge(falls, [-0.1, 0.05, -0.02], comparable=True)["verdict"] == NOT_TESTABLE
    assert judge(falls, [0.004, 0.001, 0.006], comparable=True)["verdict"] == "not reproduced"
    assert judge(falls, [-0.05, -0.04, -0.06], comparable=True)["verdict"] == "reproduced"


def test_a_source_model_at_chance_makes_the_claim_not_testable():
    at_chance = better_than_chance([0.21, 0.6], n_classes=5, what="source-task model")
    assert not at_chance.holds and "0.21" in at_chance.reason and "chance 0.2" in at_chance.reason
    assert better_than_chance([0.9, 0.6], n_classes=5, what="source-task model").holds
    # A missing accuracy fails wherever it stands (min() alone would depend on the order).
    for order in ([float("nan"), 0.9], [0.9, float("nan")]):
        missing = better_than_chance(order, n_classes=5, what="model")
        assert not missing.holds and "1 of 2 top-1 accuracies are missing" in missing.reason
    row = judge(PRETRAINING_RAISES, [0.05, 0.04, 0.06], comparable=True, preconditions=[at_chance])
    assert row["verdict"] == NOT_TESTABLE


def test_min_effect_needs_a_one_sided_kind_and_a_positive_size():
    with pytest.raises(ValueError, match="min_effect"):
        Claim("c", "s", "s", "m", 0.0, "value", min_effect=0.02)
    with pytest.raises(ValueError, match="min_effect"):
        Claim("c", "s", "s", "m", 0.0, "above", min_effect=0.0)


def test_a_proportion_claim_s_interval_stays_within_0_and_1():
    accuracy = Claim("acc", "source 000", "reaches 100% accuracy", "accuracy", 1.0, "value", proportion=True)
    row = judge(accuracy, [1.0, 0.99, 0.995], comparable=True)
    _, low, high = mean_ci([1.0, 0.99, 0.995])
    assert high > 1 and row["ci_high"] == 1.0 and row["ci_low"] == pytest.approx(low)
