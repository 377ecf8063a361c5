import math

import pytest
import torch
import torch.nn.functional as F

from robustflow.losses import (
    LOSSES,
    build_loss,
    combined_loss,
    cross_entropy,
    focal_loss,
    label_smoothing_cross_entropy,
    margin_loss,
)

# Two samples, three classes; labels 0 and 1.
LOGITS = [[2.0, 1.0, 0.0], [0.0, 1.0, 3.0]]
TARGET = [0, 1]


def _batch():
    return torch.tensor(LOGITS), torch.tensor(TARGET)


def _log_sum_exp(row):
    return math.log(sum(math.exp(v) for v in row))


def test_cross_entropy_by_hand():
    expected = ((_log_sum_exp(LOGITS[0]) - 2.0) + (_log_sum_exp(LOGITS[1]) - 1.0)) / 2
    assert cross_entropy(*_batch()).item() == pytest.approx(expected, rel=1e-6)


def test_cross_entropy_matches_torch():
    logits, target = torch.randn(16, 7, generator=torch.Generator().manual_seed(0)), torch.arange(16) % 7
    assert torch.allclose(cross_entropy(logits, target), F.cross_entropy(logits, target))


def test_label_smoothing_by_hand():
    # s = 0.3, C = 3: targets 0.8 on the label, 0.1 elsewhere; loss = LSE - sum_k q_k z_k.
    first = _log_sum_exp(LOGITS[0]) - (0.8 * 2.0 + 0.1 * 1.0 + 0.1 * 0.0)
    second = _log_sum_exp(LOGITS[1]) - (0.1 * 0.0 + 0.8 * 1.0 + 0.1 * 3.0)
    loss = label_smoothing_cross_entropy(*_batch(), smoothing=0.3)
    assert loss.item() == pytest.approx((first + second) / 2, rel=1e-6)


def test_label_smoothing_matches_torch_and_zero_is_ce():
    logits, target = torch.randn(16, 5, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 5
    assert torch.allclose(label_smoothing_cross_entropy(logits, target, 0.2),
                          F.cross_entropy(logits, target, label_smoothing=0.2))
    assert torch.allclose(label_smoothing_cross_entropy(logits, target, 0.0), cross_entropy(logits, target))


def test_margin_loss_by_hand():
    # margins: 2 - 1 = 1 and 1 - 3 = -2; lambda 2 -> hinge terms 1 and 4.
    assert margin_loss(*_batch(), margin=2.0).item() == pytest.approx(2.5)
    # lambda 0: only the misclassified sample costs, by its negative margin.
    assert margin_loss(*_batch(), margin=0.0).item() == pytest.approx(1.0)


def test_margin_loss_zero_when_margins_exceed_lambda():
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 4.0, 1.0]], requires_grad=True)
    loss = margin_loss(logits, torch.tensor([0, 1]), margin=2.0)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.count_nonzero(logits.grad) == 0


def test_focal_by_hand():
    p_first = math.exp(2.0) / math.exp(_log_sum_exp(LOGITS[0]))
    p_second = math.exp(1.0) / math.exp(_log_sum_exp(LOGITS[1]))
    expected = -((1 - p_first) ** 2 * math.log(p_first) + (1 - p_second) ** 2 * math.log(p_second)) / 2
    assert focal_loss(*_batch(), gamma=2.0).item() == pytest.approx(expected, rel=1e-6)


def test_focal_gamma_zero_is_ce_and_gamma_lowers_loss():
    logits, target = torch.randn(16, 4, generator=torch.Generator().manual_seed(2)), torch.arange(16) % 4
    ce = cross_entropy(logits, target)
    assert torch.allclose(focal_loss(logits, target, gamma=0.0), ce)
    assert focal_loss(logits, target, gamma=2.0) < ce


def test_combined_by_hand():
    smoothed = label_smoothing_cross_entropy(*_batch(), smoothing=0.3).item()
    loss = combined_loss(*_batch(), smoothing=0.3, margin=2.0, margin_weight=0.5)
    assert loss.item() == pytest.approx(smoothed + 0.5 * 2.5, rel=1e-6)


@pytest.mark.parametrize("name, params", [
    ("ce", {}),
    ("label_smoothing", {"smoothing": 0.1}),
    ("margin", {"margin": 10.0}),
    ("focal", {"gamma": 2.0}),
    ("combined", {"smoothing": 0.1, "margin": 1.0, "margin_weight": 0.5}),
])
def test_registry_builds_each_loss_and_gradients_flow(name, params):
    logits = torch.randn(8, 5, generator=torch.Generator().manual_seed(3), requires_grad=True)
    target = torch.arange(8) % 5
    loss_fn = build_loss(name, **params)
    loss = loss_fn(logits, target)
    assert loss.ndim == 0
    assert torch.allclose(loss, LOSSES[name](logits, target, **params))
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_focal_default_gamma():
    logits, target = _batch()
    assert torch.allclose(build_loss("focal")(logits, target), focal_loss(logits, target, gamma=2.0))


def test_unknown_loss_lists_valid_names():
    with pytest.raises(ValueError, match="hinge") as error:
        build_loss("hinge")
    for name in ("ce", "label_smoothing", "margin", "focal", "combined"):
        assert name in str(error.value)


@pytest.mark.parametrize("name, params, offending", [
    ("margin", {"margin": -1.0}, "margin"),
    ("combined", {"smoothing": 0.1, "margin": -0.5, "margin_weight": 1.0}, "margin"),
    ("combined", {"smoothing": 0.1, "margin": 1.0, "margin_weight": -1.0}, "margin_weight"),
    ("label_smoothing", {"smoothing": 1.0}, "smoothing"),
    ("label_smoothing", {"smoothing": -0.1}, "smoothing"),
    ("focal", {"gamma": -2.0}, "gamma"),
    ("margin", {}, "margin"),
    ("ce", {"margin": 1.0}, "margin"),
])
def test_registry_rejects_bad_params(name, params, offending):
    with pytest.raises(ValueError, match=offending):
        build_loss(name, **params)


def test_direct_calls_validate_too():
    with pytest.raises(ValueError, match="margin"):
        margin_loss(*_batch(), margin=-1.0)
    with pytest.raises(ValueError, match="smoothing"):
        label_smoothing_cross_entropy(*_batch(), smoothing=1.5)
