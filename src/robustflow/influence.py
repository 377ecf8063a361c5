"""TracIn influence (Pruthi et al. 2020) restricted to the final linear layer.

For a training example z and a test example z', TracIn sums over saved checkpoints k

    score(z, z') = sum_k lr_k * <grad_W L(z), grad_W L(z')>,

with W the last layer's weight and bias. For cross-entropy the gradient is closed form:
grad_weight = (softmax(logits) - onehot(y)) h^T and grad_bias = softmax(logits) - onehot(y), with
h the penultimate features, so the inner product factorises as
<e, e'> * (<h, h'> + 1) and no per-example backward pass is needed. A positive score marks a
proponent (a gradient step on z lowered the loss on z'), a negative one an opponent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from robustflow.io import atomic_torch_save
from robustflow.training import TrainSettings, build_optimizer, build_scheduler, predict_logits


def final_linear(model: nn.Module) -> nn.Linear:
    """The classifier layer: timm's ``get_classifier()``, else ``head``/``fc``, else the last nn.Linear."""
    layer = model.get_classifier() if hasattr(model, "get_classifier") else None
    for name in ("head", "fc"):
        if not isinstance(layer, nn.Linear):
            layer = getattr(model, name, None)
    if not isinstance(layer, nn.Linear):
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(f"{type(model).__name__} has no nn.Linear layer for last-layer influence")
        layer = linears[-1]
    return layer


def features_and_logits(
    model: nn.Module,
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 512,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features (the final linear layer's input) and logits, float32 on the CPU."""
    captured: list[torch.Tensor] = []
    hook = final_linear(model).register_forward_hook(
        lambda module, inputs, output: captured.append(inputs[0].flatten(1).float().cpu()))
    try:
        logits = predict_logits(model, images, mean, std, batch_size, device)
    finally:
        hook.remove()
    return torch.cat(captured), logits


def last_layer_gradient_factors(features: torch.Tensor, logits: torch.Tensor,
                                labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(errors, features with a 1 appended): the CE gradient of the last layer is their outer product."""
    errors = logits.double().softmax(dim=1)
    errors[torch.arange(len(labels)), labels] -= 1
    ones = torch.ones(len(features), 1, dtype=torch.float64)
    return errors, torch.cat([features.double(), ones], dim=1)


def tracin_scores(
    train_factors: Sequence[tuple[torch.Tensor, torch.Tensor]],
    test_factors: Sequence[tuple[torch.Tensor, torch.Tensor]],
    learning_rates: Sequence[float],
) -> torch.Tensor:
    """(N_test, N_train) float64 TracIn scores from per-checkpoint gradient factors."""
    if not len(train_factors) == len(test_factors) == len(learning_rates) > 0:
        raise ValueError("train_factors, test_factors and learning_rates need one entry per checkpoint "
                         f"(got {len(train_factors)}, {len(test_factors)}, {len(learning_rates)})")
    total = None
    for (train_err, train_h), (test_err, test_h), lr in zip(train_factors, test_factors, learning_rates):
        part = lr * (test_err @ train_err.T) * (test_h @ train_h.T)
        total = part if total is None else total + part
    return total


def checkpoint_tracin(
    model: nn.Module,
    checkpoints: Sequence[str | Path],
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """TracIn scores (N_test, N_train) over checkpoint files written by `save_epoch_snapshot`."""
    if not checkpoints:
        raise ValueError("checkpoint_tracin needs at least one checkpoint file")
    train_factors, test_factors, rates = [], [], []
    for path in checkpoints:
        snapshot = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(snapshot["state"])
        model.to(device)
        train_factors.append(last_layer_gradient_factors(*features_and_logits(model, train_x, mean, std,
                                                                              device=device), train_y))
        test_factors.append(last_layer_gradient_factors(*features_and_logits(model, test_x, mean, std,
                                                                             device=device), test_y))
        rates.append(snapshot["lr"])
    return tracin_scores(train_factors, test_factors, rates)


def top_influences(scores: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """Per test row, the ``k`` strongest proponents (highest scores) and opponents (lowest scores).

    Returns ``proponents``/``opponents`` (N_test, k) training indices and their
    ``proponent_scores``/``opponent_scores``.
    """
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"k must lie in 1..{scores.shape[1]} (training examples), got {k}")
    high = scores.topk(k, dim=1)
    low = scores.topk(k, dim=1, largest=False)
    return {"proponents": high.indices, "proponent_scores": high.values,
            "opponents": low.indices, "opponent_scores": low.values}


def epoch_learning_rates(settings: TrainSettings, n_train: int) -> list[float]:
    """The mean learning rate of each epoch under the settings' per-step schedule (TracIn's lr_k)."""
    steps = math.ceil(n_train / settings.batch_size)
    optimizer = build_optimizer(nn.Linear(1, 1), settings)
    scheduler = build_scheduler(optimizer, settings, steps)
    rates = []
    for _ in range(settings.epochs):
        epoch_rates = []
        for _ in range(steps):
            epoch_rates.append(scheduler.get_last_lr()[0])
            optimizer.step()
            scheduler.step()
        rates.append(sum(epoch_rates) / steps)
    return rates


def save_epoch_snapshot(model: nn.Module | dict, checkpoint_dir: str | Path, epoch: int, learning_rate: float) -> Path:
    """Write the weights after ``epoch`` (a model or its state_dict) and the epoch's learning rate,
    as TracIn reads them."""
    path = Path(checkpoint_dir) / f"epoch_{epoch:03d}.pt"
    weights = model if isinstance(model, dict) else model.state_dict()
    state = {k: v.detach().cpu().clone() for k, v in weights.items()}
    atomic_torch_save({"epoch": epoch, "lr": float(learning_rate), "state": state}, path)
    return path


def epoch_snapshots(checkpoint_dir: str | Path) -> list[Path]:
    """The snapshot files of `save_epoch_snapshot` in ``checkpoint_dir``, in epoch order."""
    return sorted(Path(checkpoint_dir).glob("epoch_*.pt"))
