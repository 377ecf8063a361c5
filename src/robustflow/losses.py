"""Classification losses of source 000's loss study, and a registry to build them by name.

Every loss takes ``logits`` (N, C) and integer ``target`` (N,) and returns the batch mean.
Mixup is the caller's business (a convex combination of two hard-target losses).

- ``cross_entropy``: -log p_y.
- ``label_smoothing_cross_entropy``: cross-entropy against q = one_hot * (1 - s) + s / C.
- ``margin_loss``: relu(lambda - (z_y - max_{k != y} z_k)), a hinge on the logit margin.
- ``focal_loss``: -(1 - p_y)^gamma * log p_y.
- ``combined_loss``: label-smoothing CE + margin_weight * margin loss.
"""

from __future__ import annotations

import inspect
from functools import partial
from typing import Callable

import torch.nn.functional as F
from torch import Tensor

from robustflow.metrics import logit_margin

LossFn = Callable[[Tensor, Tensor], Tensor]


def _check_smoothing(smoothing: float) -> None:
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")


def _check_non_negative(name: str, value: float) -> None:
    if not value >= 0.0:  # also rejects NaN
        raise ValueError(f"{name} must be >= 0, got {value}")


_PARAM_CHECKS: dict[str, Callable[[float], None]] = {
    "smoothing": _check_smoothing,
    "margin": partial(_check_non_negative, "margin"),
    "gamma": partial(_check_non_negative, "gamma"),
    "margin_weight": partial(_check_non_negative, "margin_weight"),
}


def cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Mean of -log softmax(z)_y."""
    return F.cross_entropy(logits, target)


def label_smoothing_cross_entropy(logits: Tensor, target: Tensor, smoothing: float) -> Tensor:
    """Mean cross-entropy against the smoothed targets one_hot * (1 - s) + s / C."""
    _check_smoothing(smoothing)
    log_probs = F.log_softmax(logits, dim=1)
    n_classes = logits.shape[1]
    soft = F.one_hot(target, n_classes).to(log_probs.dtype) * (1.0 - smoothing) + smoothing / n_classes
    return -(soft * log_probs).sum(dim=1).mean()


def margin_loss(logits: Tensor, target: Tensor, margin: float) -> Tensor:
    """Mean of relu(margin - (z_y - max_{k != y} z_k)); ``margin`` is source 000's lambda."""
    _check_non_negative("margin", margin)
    return F.relu(margin - logit_margin(logits, target)).mean()


def focal_loss(logits: Tensor, target: Tensor, gamma: float = 2.0) -> Tensor:
    """Mean of -(1 - p_y)^gamma * log p_y; gamma = 0 is cross-entropy."""
    _check_non_negative("gamma", gamma)
    log_p = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
    return -((1.0 - log_p.exp()) ** gamma * log_p).mean()


def combined_loss(logits: Tensor, target: Tensor, smoothing: float, margin: float,
                  margin_weight: float) -> Tensor:
    """Label-smoothing CE + margin_weight * margin loss."""
    _check_non_negative("margin_weight", margin_weight)
    return (label_smoothing_cross_entropy(logits, target, smoothing)
            + margin_weight * margin_loss(logits, target, margin))


LOSSES: dict[str, Callable[..., Tensor]] = {
    "ce": cross_entropy,
    "label_smoothing": label_smoothing_cross_entropy,
    "margin": margin_loss,
    "focal": focal_loss,
    "combined": combined_loss,
}


def build_loss(name: str, **params: float) -> LossFn:
    """The loss ``name`` with its hyperparameters bound, as ``loss(logits, target)``.

    Raises ValueError for an unknown name, a parameter the loss does not take, a missing
    required parameter, or an invalid value (checked here rather than at the first batch).
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(LOSSES)}")
    loss = LOSSES[name]
    signature = list(inspect.signature(loss).parameters.values())[2:]  # after logits, target
    accepted = [p.name for p in signature]
    unexpected = sorted(set(params) - set(accepted))
    if unexpected:
        raise ValueError(f"loss {name!r} takes parameters {accepted}, got unexpected {unexpected}")
    missing = [p.name for p in signature if p.default is inspect.Parameter.empty and p.name not in params]
    if missing:
        raise ValueError(f"loss {name!r} needs parameters {missing}")
    for param, value in params.items():
        _PARAM_CHECKS[param](value)
    return partial(loss, **params)
