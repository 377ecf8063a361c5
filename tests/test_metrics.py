import math

import pytest
import torch

from robustflow.metrics import classification_metrics, expected_calibration_error, logit_margin

KEYS = {"top1", "top5", "nll", "ece", "mean_confidence", "margin_mean", "margin_std", "margin_snr",
        "normalized_margin", "output_ratio"}

# Signed logits, 3 samples x 3 classes; predictions 0, 1, 1 against labels 0, 1, 0.
SIGNED = [[2.0, 0.0, -1.0], [0.0, 3.0, 1.0], [1.0, 2.0, 0.0]]
SIGNED_TARGET = [0, 1, 0]


def _softmax(row):
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def test_logit_margin_by_hand():
    margin = logit_margin(torch.tensor(SIGNED), torch.tensor(SIGNED_TARGET))
    assert margin.tolist() == [2.0, 2.0, -1.0]


def test_every_key_by_hand_on_signed_logits():
    metrics = classification_metrics(torch.tensor(SIGNED), torch.tensor(SIGNED_TARGET))
    assert set(metrics) == KEYS
    assert all(type(v) is float for v in metrics.values())

    probs = [_softmax(row) for row in SIGNED]
    assert metrics["top1"] == pytest.approx(2 / 3)
    assert metrics["top5"] == 1.0  # C = 3: top-3 always holds the label
    nll = -sum(math.log(p[y]) for p, y in zip(probs, SIGNED_TARGET)) / 3
    assert metrics["nll"] == pytest.approx(nll)
    confidences = [max(p) for p in probs]
    assert metrics["mean_confidence"] == pytest.approx(sum(confidences) / 3)

    # Rows 0 and 1 are shifts of [2, 0, -1]: equal confidence, one bin, both correct.
    # Row 2 is wrong and sits in a lower bin.
    assert confidences[0] == pytest.approx(confidences[1])
    assert math.floor(confidences[0] * 15) != math.floor(confidences[2] * 15)
    ece = 2 / 3 * (1 - confidences[0]) + 1 / 3 * confidences[2]
    assert metrics["ece"] == pytest.approx(ece)

    # Margins 2, 2, -1: mean 1, population variance (1 + 1 + 4) / 3 = 2.
    assert metrics["margin_mean"] == pytest.approx(1.0)
    assert metrics["margin_std"] == pytest.approx(math.sqrt(2))
    assert metrics["margin_snr"] == pytest.approx(1 / math.sqrt(2))
    normalized = (2 / math.sqrt(5) + 2 / math.sqrt(10) - 1 / math.sqrt(5)) / 3
    assert metrics["normalized_margin"] == pytest.approx(normalized)
    assert math.isnan(metrics["output_ratio"])


def test_output_ratio_is_a_ratio_of_means_on_non_negative_logits():
    logits = torch.tensor([[3.0, 1.0, 0.0], [1.0, 2.0, 2.0], [0.0, 4.0, 1.0]])
    target = torch.tensor([0, 2, 1])
    # Own outputs 3, 2, 4 (mean 3); best other outputs 1, 2, 1 (mean 4/3).
    # The mean of per-sample ratios would be (3 + 1 + 4) / 3 instead.
    metrics = classification_metrics(logits, target)
    assert metrics["output_ratio"] == pytest.approx(9 / 4)
    assert metrics["margin_mean"] == pytest.approx((2 + 0 + 3) / 3)


def test_output_ratio_degenerate_cases():
    assert classification_metrics(torch.tensor([[1.0, 0.0], [2.0, 0.0]]), torch.tensor([0, 0]))[
        "output_ratio"] == math.inf
    assert math.isnan(classification_metrics(torch.zeros(2, 3), torch.tensor([0, 1]))["output_ratio"])
    one_negative = torch.tensor([[1.0, 0.0], [2.0, -0.01]])
    assert math.isnan(classification_metrics(one_negative, torch.tensor([0, 0]))["output_ratio"])


def test_margin_snr_degenerate_cases():
    equal_margins = classification_metrics(torch.tensor([[2.0, 0.0], [3.0, 1.0]]), torch.tensor([0, 0]))
    assert equal_margins["margin_std"] == 0.0 and equal_margins["margin_snr"] == math.inf
    zero_margins = classification_metrics(torch.tensor([[1.0, 1.0], [2.0, 2.0]]), torch.tensor([0, 0]))
    assert math.isnan(zero_margins["margin_snr"])
    assert classification_metrics(torch.zeros(2, 3), torch.tensor([0, 1]))["normalized_margin"] == 0.0


def test_scale_and_offset_invariance():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 10, generator=generator)
    target = torch.randint(0, 10, (64,), generator=generator)
    base = classification_metrics(logits, target)
    scaled = classification_metrics(3.0 * logits, target)
    assert scaled["margin_mean"] == pytest.approx(3.0 * base["margin_mean"])
    assert scaled["margin_snr"] == pytest.approx(base["margin_snr"])
    assert scaled["normalized_margin"] == pytest.approx(base["normalized_margin"])
    assert scaled["top1"] == base["top1"]

    # The source's ratio moves with a constant offset that leaves softmax and margins unchanged.
    positive = logits - logits.min()
    shifted = classification_metrics(positive + 5.0, target)
    unshifted = classification_metrics(positive, target)
    assert shifted["margin_mean"] == pytest.approx(unshifted["margin_mean"])
    assert shifted["nll"] == pytest.approx(unshifted["nll"])
    assert abs(shifted["output_ratio"] - unshifted["output_ratio"]) > 0.05


def test_top5_with_seven_classes():
    logits = torch.arange(7.0).repeat(2, 1)  # class 6 highest, class 0 lowest
    # Label 2 is the 5th largest (hit); label 0 the 7th (miss).
    metrics = classification_metrics(logits, torch.tensor([2, 0]))
    assert metrics["top5"] == 0.5
    assert metrics["top1"] == 0.0


def test_ece_perfectly_calibrated():
    # Confidence 0.7 with 7/10 right, confidence 0.75 with 3/4 right.
    probs = torch.tensor([[0.7, 0.3]] * 10 + [[0.25, 0.75]] * 4, dtype=torch.float64)
    target = torch.tensor([0] * 7 + [1] * 3 + [1] * 3 + [0])
    assert expected_calibration_error(probs, target) == pytest.approx(0.0, abs=1e-12)


def test_ece_miscalibrated():
    # Bin at 0.9 holds 10 samples with accuracy 0.6; bin at 0.6 holds 5, all right.
    probs = torch.tensor([[0.9, 0.1]] * 10 + [[0.4, 0.6]] * 5)
    target = torch.tensor([0] * 6 + [1] * 4 + [1] * 5)
    expected = 10 / 15 * abs(0.6 - 0.9) + 5 / 15 * abs(1.0 - 0.6)
    assert expected_calibration_error(probs, target) == pytest.approx(expected, rel=1e-6)


def test_ece_with_one_bin_is_accuracy_gap():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(50, 4, generator=generator)
    target = torch.randint(0, 4, (50,), generator=generator)
    metrics = classification_metrics(logits, target)
    one_bin = expected_calibration_error(logits.softmax(1), target, n_bins=1)
    assert one_bin == pytest.approx(abs(metrics["top1"] - metrics["mean_confidence"]))


@pytest.mark.parametrize("logits, target, offending", [
    (torch.zeros(3), torch.tensor([0, 1, 2]), "logits"),
    (torch.zeros(3, 1), torch.tensor([0, 0, 0]), "logits"),
    (torch.zeros(3, 2), torch.tensor([0, 1]), "target"),
    (torch.zeros(3, 2), torch.tensor([0.0, 1.0, 0.0]), "target"),
    (torch.zeros(3, 2), torch.tensor([0, 1, 2]), "target"),
])
def test_bad_input_raises(logits, target, offending):
    with pytest.raises(ValueError, match=offending):
        classification_metrics(logits, target)
