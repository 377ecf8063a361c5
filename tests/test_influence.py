"""TracIn on the last layer: the closed form against autograd, and a case with a known answer."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from robustflow.influence import (
    checkpoint_tracin,
    epoch_learning_rates,
    epoch_snapshots,
    features_and_logits,
    final_linear,
    last_layer_gradient_factors,
    save_epoch_snapshot,
    top_influences,
    tracin_scores,
)
from robustflow.training import TrainSettings


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.Tanh())
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        return self.head(self.body(x))


MEAN, STD = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)


def _autograd_last_layer_gradient(model, image, label):
    model.zero_grad()
    loss = nn.functional.cross_entropy(model(image[None]), label[None])
    loss.backward()
    return torch.cat([model.head.weight.grad.flatten(), model.head.bias.grad]).double()


def test_closed_form_matches_autograd(tmp_path):
    torch.manual_seed(0)
    model = Net()
    train_x, train_y = torch.rand(5, 3, 2, 2), torch.tensor([0, 1, 2, 0, 1])
    test_x, test_y = torch.rand(2, 3, 2, 2), torch.tensor([2, 0])
    rates = [0.1, 0.05]
    paths = []
    for epoch, lr in enumerate(rates, start=1):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.3 * torch.randn_like(p))
        paths.append(save_epoch_snapshot(model, tmp_path, epoch, lr))
    scores = checkpoint_tracin(model, epoch_snapshots(tmp_path), train_x, train_y, test_x, test_y, MEAN, STD)
    expected = torch.zeros(2, 5, dtype=torch.float64)
    for path, lr in zip(paths, rates):
        model.load_state_dict(torch.load(path, weights_only=True)["state"])
        for i in range(2):
            g_test = _autograd_last_layer_gradient(model, test_x[i], test_y[i])
            for j in range(5):
                expected[i, j] += lr * g_test @ _autograd_last_layer_gradient(model, train_x[j], train_y[j])
    assert torch.allclose(scores, expected, atol=1e-6)


def test_duplicate_training_point_is_the_top_proponent():
    # Orthogonal one-hot inputs through a linear classifier: only the duplicate shares the features.
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 4))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(4, 8, generator=torch.Generator().manual_seed(1)) * 0.1)
    train_x = torch.eye(8).view(8, 2, 2, 2)
    train_y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    features, logits = features_and_logits(model, train_x, (0.0, 0.0), (1.0, 1.0))
    factors = last_layer_gradient_factors(features, logits, train_y)
    test = (factors[0][[5]], factors[1][[5]])  # test point = training point 5
    scores = tracin_scores([factors], [test], [0.1])
    top = top_influences(scores, k=3)
    assert int(top["proponents"][0, 0]) == 5
    assert bool((top["proponent_scores"][0, :1] > top["proponent_scores"][0, 1:]).all())
    assert bool((top["opponent_scores"] <= top["proponent_scores"].min()).all())


def test_final_linear_and_features():
    model = Net()
    assert final_linear(model) is model.head
    images = torch.rand(4, 3, 2, 2)
    features, logits = features_and_logits(model, images, MEAN, STD, batch_size=3)
    with torch.no_grad():
        assert torch.allclose(features, model.body(images))
        assert torch.allclose(logits, model(images))


def test_epoch_learning_rates_follow_the_schedule():
    constant = epoch_learning_rates(TrainSettings(epochs=3, batch_size=10, lr=0.2, schedule="constant"), 25)
    assert constant == pytest.approx([0.2, 0.2, 0.2])
    cosine = epoch_learning_rates(TrainSettings(epochs=2, batch_size=10, lr=1.0, schedule="cosine"), 20)
    # 4 steps at 0.5 * (1 + cos(pi * s / 4)), s = 0..3
    per_step = [0.5 * (1 + math.cos(math.pi * s / 4)) for s in range(4)]
    assert cosine == pytest.approx([sum(per_step[:2]) / 2, sum(per_step[2:]) / 2])


def test_bad_arguments():
    with pytest.raises(ValueError, match="k must"):
        top_influences(torch.zeros(2, 3), k=4)
    with pytest.raises(ValueError, match="one entry per checkpoint"):
        tracin_scores([], [], [])
