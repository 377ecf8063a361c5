"""Learning rules for a linear binary readout, with optional weight-range constraints.

The readout maps a flattened image x (D inputs, 4096 for 64x64) to two outputs without bias:
``z = x @ W`` with ``W`` of shape (D, 2); the predicted class is ``argmax z`` (a tie goes to
class 0). All rules see the training set in minibatches in an order drawn from a
``torch.Generator`` seeded with ``seed``, so a seed fixes the result. Notation per minibatch:
``X`` is (B, D), ``T`` the (B, 2) one-hot targets, ``eta`` the learning rate ``lr``.

Rules (``method``):

- ``"hebbian"``: ``W <- W + eta * X^T T``; column c gains eta times the *sum* (not the mean)
  of the batch's inputs of class c, i.e. the outer product x (outer) t summed over the batch.
  ``W`` starts at zero. Unconstrained, after any number of full epochs ``W`` is
  ``epochs * eta * X_train^T T_train`` whatever the order, so its decisions and the output
  ratio do not depend on ``eta``; under a constraint they do, because weights saturate at
  the bound as ``eta * epochs`` grows.
- ``"hebbian_margin"``: the same update restricted to the batch samples whose current margin
  ``z_y - z_other`` (computed with ``W`` before the update) is below ``margin_lambda``;
  samples already separated by ``margin_lambda`` contribute nothing, and a batch with no
  such sample leaves ``W`` unchanged. Starts at zero (all margins 0), like ``"hebbian"``.
- ``"sgd_mse"``: plain SGD on ``mean((X W - T)^2)`` averaged over the B*2 entries, i.e.
  ``W <- W - eta * 2 X^T (X W - T) / (2B)``; the source's SGD baseline.
- ``"sgd_ce"``: plain SGD on the mean softmax cross-entropy,
  ``W <- W - eta * X^T (softmax(X W) - T) / B``.

Both SGD rules start from ``N(0, 0.01^2)`` weights drawn from the seeded generator.

Options applied after every update, in this order:

- ``normalize=True``: divide each output column of ``W`` by its L2 norm (columns of norm 0
  are left alone). A stabiliser for the Hebbian rules, whose weights otherwise grow without
  bound; it makes the outputs scale-free, so the output ratio is comparable across ``eta``.
- ``constraint=(lo, hi)``: clip every weight to ``[lo, hi]`` (the source's hardware ranges,
  e.g. (0, 1)); also applied to the initial weights, so ``W`` is in range at every step.

Divergence: if an update produces a non-finite value (before or after normalising and
clipping, so a clip cannot hide an overflow), training stops, ``diverged`` is set, and the
result keeps the last all-finite weights, from just before that update. Accuracy and margins
therefore stay measurable on a diverged run (the source's SGD "exploded" but reported 38%
accuracy); all evaluation uses float64 outputs so that huge finite weights do not overflow.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from robustflow.metrics import classification_metrics
from robustflow.noise import apply_noise, noise_generator

METHODS = ("hebbian", "hebbian_margin", "sgd_mse", "sgd_ce")
N_OUTPUTS = 2
SGD_INIT_STD = 0.01

logger = logging.getLogger(__name__)


@dataclass
class ReadoutResult:
    """A trained readout: ``weights`` (D, 2) and one ``history`` row per epoch.

    Each history row holds ``epoch``, ``train_accuracy``, ``train_mse``, ``train_ce`` and
    ``train_margin_mean`` for the weights at the end of that epoch; for a diverged run the
    last row describes the returned weights in the epoch where it diverged.
    """

    method: str
    weights: torch.Tensor
    history: list[dict[str, float]] = field(default_factory=list)
    diverged: bool = False
    diverged_epoch: int | None = None


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def _flatten(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ValueError(f"{name} must be a tensor of shape (N, ...) with N samples")
    return x.reshape(x.shape[0], -1).float()


def _check_labels(y: torch.Tensor, n: int, name: str = "y") -> torch.Tensor:
    if not isinstance(y, torch.Tensor) or y.shape != (n,):
        raise ValueError(f"{name} must be a tensor of shape ({n},)")
    y = y.long()
    if not bool(((y >= 0) & (y < N_OUTPUTS)).all()):
        raise ValueError(f"{name} must hold labels 0 and 1 only")
    return y


def _check_constraint(constraint: tuple[float, float] | None) -> tuple[float, float] | None:
    if constraint is None:
        return None
    lo, hi = (float(v) for v in constraint)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise ValueError(f"constraint must be (lo, hi) with finite lo <= hi, got {constraint!r}")
    return lo, hi


def _check_weights(weights: torch.Tensor, n_inputs: int) -> None:
    if not isinstance(weights, torch.Tensor) or weights.shape != (n_inputs, N_OUTPUTS):
        raise ValueError(f"weights must have shape ({n_inputs}, {N_OUTPUTS}) to match the inputs")


def _margins(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """z_y - max_{k != y} z_k for each row."""
    target_mask = F.one_hot(y, outputs.shape[1]).bool()
    correct = outputs.gather(1, y[:, None]).squeeze(1)
    best_other = outputs.masked_fill(target_mask, -math.inf).max(dim=1).values
    return correct - best_other


def apply_update(
    method: str,
    weights: torch.Tensor,
    x_flat: torch.Tensor,
    y: torch.Tensor,
    *,
    lr: float,
    margin_lambda: float = 1.0,
) -> torch.Tensor:
    """One step of ``method`` on one minibatch (before normalising and clipping); see module doc."""
    _check_method(method)
    targets = F.one_hot(y, N_OUTPUTS).to(weights.dtype)
    if method == "hebbian":
        return weights + lr * x_flat.T @ targets
    outputs = x_flat @ weights
    if method == "hebbian_margin":
        below = _margins(outputs, y) < margin_lambda
        return weights + lr * x_flat[below].T @ targets[below]
    if method == "sgd_mse":
        return weights - lr * 2.0 * x_flat.T @ (outputs - targets) / outputs.numel()
    return weights - lr * x_flat.T @ (torch.softmax(outputs, dim=1) - targets) / len(x_flat)


def _unit_columns(weights: torch.Tensor) -> torch.Tensor:
    # The norm is taken in float64 so that large float32 weights do not overflow to inf.
    norms = weights.double().norm(dim=0)
    norms = torch.where(norms > 0, norms, torch.ones_like(norms))
    return (weights.double() / norms).to(weights.dtype)


def _epoch_record(
    epoch: int, weights: torch.Tensor, x_flat: torch.Tensor, y: torch.Tensor
) -> dict[str, float]:
    outputs = x_flat.double() @ weights.double()
    targets = F.one_hot(y, N_OUTPUTS).double()
    return {
        "epoch": epoch,
        "train_accuracy": float((outputs.argmax(dim=1) == y).double().mean()),
        "train_mse": float(((outputs - targets) ** 2).mean()),
        "train_ce": float(F.cross_entropy(outputs, y)),
        "train_margin_mean": float(_margins(outputs, y).mean()),
    }


def train_readout(
    method: str,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    *,
    lr: float,
    epochs: int,
    batch_size: int,
    constraint: tuple[float, float] | None = None,
    seed: int = 0,
    margin_lambda: float = 1.0,
    normalize: bool = False,
) -> ReadoutResult:
    """Train a (D, 2) linear readout with ``method``; see the module docstring for the rules."""
    _check_method(method)
    x = _flatten(x_train, "x_train")
    y = _check_labels(y_train, len(x), "y_train")
    if len(x) == 0:
        raise ValueError("x_train holds no samples")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if int(epochs) != epochs or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    bounds = _check_constraint(constraint)

    def project(weights: torch.Tensor) -> torch.Tensor:
        if normalize:
            weights = _unit_columns(weights)
        return weights if bounds is None else weights.clamp(*bounds)

    generator = torch.Generator().manual_seed(int(seed))
    if method.startswith("sgd"):
        weights = torch.randn(x.shape[1], N_OUTPUTS, generator=generator) * SGD_INIT_STD
    else:
        weights = torch.zeros(x.shape[1], N_OUTPUTS)
    weights = weights if bounds is None else weights.clamp(*bounds)

    result = ReadoutResult(method=method, weights=weights)
    for epoch in range(1, int(epochs) + 1):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), int(batch_size)):
            batch = order[start : start + int(batch_size)]
            raw = apply_update(method, weights, x[batch], y[batch], lr=lr, margin_lambda=margin_lambda)
            updated = project(raw)
            if not (bool(torch.isfinite(raw).all()) and bool(torch.isfinite(updated).all())):
                result.weights = weights
                result.diverged = True
                result.diverged_epoch = epoch
                result.history.append(_epoch_record(epoch, weights, x, y))
                return result
            weights = updated
        result.history.append(_epoch_record(epoch, weights, x, y))
    result.weights = weights
    return result


def readout_outputs(weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Outputs ``x_flat @ W`` in float64 (finite for any finite float32 weights)."""
    x_flat = _flatten(x)
    _check_weights(weights, x_flat.shape[1])
    if not bool(torch.isfinite(weights).all()):
        raise ValueError("weights contain non-finite values; train_readout never returns such weights")
    return x_flat.double() @ weights.double()


def readout_metrics(weights: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """``classification_metrics`` of the outputs ``x_flat @ W``, plus ``accuracy`` (= top1)."""
    outputs = readout_outputs(weights, x)
    y = _check_labels(y, len(outputs))
    metrics = dict(classification_metrics(outputs, y))
    metrics["accuracy"] = metrics["top1"]
    return metrics


def weight_statistics(weights: torch.Tensor) -> dict[str, float]:
    """Mean, population standard deviation, minimum and maximum of all weights."""
    w = weights.double().flatten()
    if w.numel() == 0:
        raise ValueError("weights is empty")
    return {
        "mean": float(w.mean()),
        "std": float(w.std(correction=0)),
        "min": float(w.min()),
        "max": float(w.max()),
    }


def _score(row: dict) -> tuple[bool, float, float]:
    snr = row.get("margin_snr", math.nan)
    return (
        not row["diverged"],
        row["accuracy"] if math.isfinite(row["accuracy"]) else -math.inf,
        snr if not math.isnan(snr) else -math.inf,
    )


def select_learning_rate(
    method: str,
    lrs: Sequence[float],
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    **train_kwargs,
) -> tuple[float, list[dict]]:
    """Train with every lr and pick the best on validation; return it and the whole sweep.

    Ranking: runs that did not diverge first, then validation accuracy, then ``margin_snr``
    (nan counts as lowest); remaining ties go to the earliest lr in ``lrs``. Each table row
    holds ``lr``, ``diverged``, ``selected`` and the validation ``readout_metrics``.
    """
    lrs = [float(lr) for lr in lrs]
    if not lrs:
        raise ValueError("lrs must hold at least one learning rate")
    table = []
    for lr in lrs:
        result = train_readout(method, x_train, y_train, lr=lr, **train_kwargs)
        row = {"lr": lr, "diverged": result.diverged, "selected": False}
        row.update(readout_metrics(result.weights, x_val, y_val))
        table.append(row)
    best = max(range(len(table)), key=lambda i: (_score(table[i]), -i))
    table[best]["selected"] = True
    tried = ", ".join(f"{row['lr']:g}: " + ("diverged" if row["diverged"] else f"val accuracy {row['accuracy']:.4f}")
                      for row in table)
    logger.info("%s lr sweep (seed %s): %s; chose lr %g", method, train_kwargs.get("seed", 0), tried, lrs[best])
    return lrs[best], table


def noise_robustness(
    weights: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    noise_types: Sequence[str],
    levels: Sequence[float],
    seed: int,
) -> list[dict]:
    """Metrics of the readout on noisy copies of ``x_test`` (NCHW in [0, 1]).

    The noise for each (type, level) comes from ``noise_generator(seed, noise, level)``, so
    every readout evaluated with the same seed sees identical noisy images.
    """
    if x_test.ndim != 4:
        raise ValueError(f"x_test must be images of shape (N, C, H, W), got {tuple(x_test.shape)}")
    rows = []
    for noise in noise_types:
        for level in levels:
            generator = noise_generator(seed, noise, level)
            noisy = apply_noise(x_test, noise, level, generator)
            rows.append({"noise": noise, "level": float(level), **readout_metrics(weights, noisy, y_test)})
    return rows
