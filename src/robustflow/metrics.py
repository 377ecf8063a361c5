"""Classification metrics, including the margin and SNR measures of source 000.

For logits z_i (C classes) of sample i with label y_i, N samples:

- ``top1``, ``top5``: fraction of samples whose label is among the 1 / min(5, C) largest logits.
- ``nll``: mean of -log softmax(z_i)_{y_i}.
- ``mean_confidence``: mean of max_k softmax(z_i)_k.
- ``ece``: expected calibration error over 15 equal-width confidence bins (lo, hi] on [0, 1]:
  sum over bins b of |b|/N * |accuracy(b) - mean confidence(b)|, confidence = max softmax prob.
- margin m_i = z_{i,y_i} - max_{k != y_i} z_{i,k}; positive iff sample i is classified correctly.
  ``margin_mean`` and ``margin_std`` (population std) are its mean and spread over samples.
- ``margin_snr`` = margin_mean / margin_std: scale-free (unchanged when all logits are multiplied
  by c > 0). +inf (-inf) when std is 0 and the mean is positive (negative), nan when both are 0.
- ``normalized_margin``: mean over samples of m_i / ||z_i||_2 (0 where ||z_i|| = 0); scale-free.
- ``output_ratio``: source 000's SNR, mean_i z_{i,y_i} / mean_i max_{k != y_i} z_{i,k}, a ratio
  of means because per-sample ratios explode when an output is near 0. Only meaningful for
  non-negative outputs (the source's readout), so it is nan whenever any logit is negative. It
  changes when a constant is added to every logit, which leaves the softmax and the margins alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_logits_target(logits: Tensor, target: Tensor, name: str = "logits") -> None:
    if logits.ndim != 2 or not logits.is_floating_point():
        raise ValueError(f"{name} must be a float tensor of shape (N, C), got {logits.dtype} "
                         f"{tuple(logits.shape)}")
    n, n_classes = logits.shape
    if n == 0 or n_classes < 2:
        raise ValueError(f"{name} needs N >= 1 samples and C >= 2 classes, got shape {tuple(logits.shape)}")
    if target.shape != (n,) or target.is_floating_point():
        raise ValueError(f"target must be an integer tensor of shape ({n},), got {target.dtype} "
                         f"{tuple(target.shape)}")


def _check_labels(target: Tensor, n_classes: int) -> None:
    # Separate from the shape check: on a GPU it forces a sync, too costly per training step.
    if target.min() < 0 or target.max() >= n_classes:
        raise ValueError(f"target labels must lie in [0, {n_classes}), got "
                         f"[{int(target.min())}, {int(target.max())}]")


def _split_logits(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """(z_y, max_{k != y} z_k), each of shape (N,)."""
    is_target = F.one_hot(target, logits.shape[1]).bool()
    own = logits.gather(1, target[:, None]).squeeze(1)
    best_other = logits.masked_fill(is_target, -math.inf).amax(dim=1)
    return own, best_other


def logit_margin(logits: Tensor, target: Tensor) -> Tensor:
    """Per-sample margin z_y - max_{k != y} z_k, shape (N,); differentiable."""
    _check_logits_target(logits, target)
    own, best_other = _split_logits(logits, target)
    return own - best_other


def expected_calibration_error(probs: Tensor, target: Tensor, n_bins: int = 15) -> float:
    """ECE of the max-probability confidence over ``n_bins`` equal-width bins (lo, hi]."""
    _check_logits_target(probs, target, name="probs")
    _check_labels(target, probs.shape[1])
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    probs = probs.detach().double().cpu()
    target = target.cpu()
    confidence, prediction = probs.max(dim=1)
    correct = (prediction == target).double()
    interior_edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64)[1:-1]
    bins = torch.bucketize(confidence, interior_edges)
    # |b|/N * |acc(b) - conf(b)| = |sum_{i in b} (correct_i - conf_i)| / N
    gap_sums = torch.zeros(n_bins, dtype=torch.float64).scatter_add_(0, bins, correct - confidence)
    return float(gap_sums.abs().sum() / len(target))


def _safe_ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, with x/0 = sign(x) * inf and 0/0 = nan."""
    if denominator == 0.0:
        return math.copysign(math.inf, numerator) if numerator != 0.0 else math.nan
    return numerator / denominator


def classification_metrics(logits: Tensor, target: Tensor, n_bins: int = 15) -> dict[str, float]:
    """All metrics of the module docstring for one batch of logits, as plain floats."""
    _check_logits_target(logits, target)
    _check_labels(target, logits.shape[1])
    logits = logits.detach().double().cpu()
    target = target.cpu()
    n_classes = logits.shape[1]
    probs = logits.softmax(dim=1)

    top_k = logits.topk(min(5, n_classes), dim=1).indices
    hits = top_k == target[:, None]
    own, best_other = _split_logits(logits, target)
    margin = own - best_other
    margin_mean = float(margin.mean())
    margin_std = float(margin.std(unbiased=False))
    norms = logits.norm(dim=1)
    normalized = torch.where(norms > 0, margin / norms.clamp_min(1e-300), torch.zeros_like(margin))
    if (logits < 0).any():
        output_ratio = math.nan
    else:
        output_ratio = _safe_ratio(float(own.mean()), float(best_other.mean()))

    return {
        "top1": float(hits[:, 0].double().mean()),
        "top5": float(hits.any(dim=1).double().mean()),
        "nll": float(F.cross_entropy(logits, target)),
        "ece": expected_calibration_error(probs, target, n_bins),
        "mean_confidence": float(probs.amax(dim=1).mean()),
        "margin_mean": margin_mean,
        "margin_std": margin_std,
        "margin_snr": _safe_ratio(margin_mean, margin_std),
        "normalized_margin": float(normalized.mean()),
        "output_ratio": output_ratio,
    }
