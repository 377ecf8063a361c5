import math

import pytest
import torch
import torch.nn.functional as F

import robustflow.learning_rules as rules
from robustflow.learning_rules import (
    METHODS,
    ReadoutResult,
    apply_update,
    noise_robustness,
    readout_metrics,
    select_learning_rate,
    train_readout,
    weight_statistics,
)
from robustflow.noise import apply_noise, noise_generator


def _toy_task(n_per_class=20, seed=0, size=4):
    """Non-negative size x size images: class 0 bright on the left half, class 1 on the right."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2 * n_per_class, 1, size, size, generator=g) * 0.2
    y = torch.cat([torch.zeros(n_per_class), torch.ones(n_per_class)]).long()
    half = size // 2
    x[:n_per_class, :, :, :half] += 0.7
    x[n_per_class:, :, :, half:] += 0.7
    return x.clamp(0, 1), y


def test_hebbian_update_on_a_2x2_example_by_hand():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    y = torch.tensor([0, 1])
    # dW = eta * sum_n x_n (outer) t_n: column 0 gets x_0, column 1 gets x_1.
    expected = 0.5 * torch.tensor([[1.0, 3.0], [2.0, 4.0]])
    for batch_size in (1, 2):  # the summed update does not depend on how the batch is cut
        result = train_readout("hebbian", x, y, lr=0.5, epochs=1, batch_size=batch_size)
        torch.testing.assert_close(result.weights, expected)
    two_epochs = train_readout("hebbian", x, y, lr=0.5, epochs=2, batch_size=2)
    torch.testing.assert_close(two_epochs.weights, 2 * expected)
    clipped = train_readout("hebbian", x, y, lr=0.5, epochs=1, batch_size=2, constraint=(0.0, 1.0))
    torch.testing.assert_close(clipped.weights, torch.tensor([[0.5, 1.0], [1.0, 1.0]]))
    normalized = train_readout("hebbian", x, y, lr=0.5, epochs=1, batch_size=2, normalize=True)
    torch.testing.assert_close(
        normalized.weights, torch.tensor([[1 / 5**0.5, 3 / 5], [2 / 5**0.5, 4 / 5]])
    )


def test_hebbian_margin_skips_samples_already_beyond_lambda():
    weights = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1])
    # Both margins are 2 > lambda = 1: no update at all.
    same = apply_update("hebbian_margin", weights, x, y, lr=0.3, margin_lambda=1.0)
    torch.testing.assert_close(same, weights)
    # With lambda = 3 both samples are below it and the plain Hebbian update applies.
    torch.testing.assert_close(
        apply_update("hebbian_margin", weights, x, y, lr=0.3, margin_lambda=3.0),
        apply_update("hebbian", weights, x, y, lr=0.3),
    )
    # Only the sample below lambda contributes: sample 1 has margin 0.5 - 0 < 1.
    weights = torch.tensor([[2.0, 0.0], [0.0, 0.5]])
    updated = apply_update("hebbian_margin", weights, x, y, lr=0.3, margin_lambda=1.0)
    torch.testing.assert_close(updated, torch.tensor([[2.0, 0.0], [0.0, 0.8]]))


def test_hebbian_margin_stops_once_every_margin_exceeds_lambda():
    x, y = _toy_task()
    short = train_readout("hebbian_margin", x, y, lr=0.05, epochs=30, batch_size=8, margin_lambda=1.0)
    long = train_readout("hebbian_margin", x, y, lr=0.05, epochs=60, batch_size=8, margin_lambda=1.0)
    margins = readout_metrics(short.weights, x, y)
    assert margins["accuracy"] == 1.0
    torch.testing.assert_close(short.weights, long.weights)  # no sample left below lambda
    # The plain rule keeps growing.
    hebb = train_readout("hebbian", x, y, lr=0.05, epochs=30, batch_size=8)
    assert float(hebb.weights.abs().max()) > float(short.weights.abs().max())


@pytest.mark.parametrize("method", ["sgd_mse", "sgd_ce"])
def test_sgd_updates_match_autograd(method):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 3, generator=g)
    y = torch.tensor([0, 1, 1, 0, 1])
    weights = torch.randn(3, 2, generator=g, requires_grad=True)
    outputs = x @ weights
    if method == "sgd_mse":
        loss = F.mse_loss(outputs, F.one_hot(y, 2).float())
    else:
        loss = F.cross_entropy(outputs, y)
    loss.backward()
    expected = weights.detach() - 0.1 * weights.grad
    torch.testing.assert_close(apply_update(method, weights.detach(), x, y, lr=0.1), expected)


@pytest.mark.parametrize("method", METHODS)
def test_constraint_holds_after_every_step(method, monkeypatch):
    seen = []
    original = rules.apply_update

    def recording_update(method, weights, *args, **kwargs):
        seen.append((float(weights.min()), float(weights.max())))
        return original(method, weights, *args, **kwargs)

    monkeypatch.setattr(rules, "apply_update", recording_update)
    x, y = _toy_task()
    lo, hi = (-0.05, 0.05) if method.startswith("sgd") else (0.0, 0.02)
    result = train_readout(method, x, y, lr=0.5, epochs=3, batch_size=8, constraint=(lo, hi))
    lo, hi = float(torch.tensor(lo)), float(torch.tensor(hi))  # the bounds as float32 weights hold them
    seen.append((float(result.weights.min()), float(result.weights.max())))
    assert len(seen) == 3 * 5 + 1  # every step's input weights, plus the final ones
    assert all(lo <= w_min and w_max <= hi for w_min, w_max in seen)
    assert max(w_max for _, w_max in seen) == pytest.approx(hi)  # the bound was actually reached


def test_sgd_mse_separates_a_linearly_separable_problem():
    x, y = _toy_task(n_per_class=30)
    result = train_readout("sgd_mse", x, y, lr=0.2, epochs=40, batch_size=10, seed=2)
    assert not result.diverged
    assert result.history[-1]["train_accuracy"] == 1.0
    assert readout_metrics(result.weights, x, y)["accuracy"] == 1.0
    assert result.history[-1]["train_mse"] < result.history[0]["train_mse"]


def test_sgd_ce_separates_a_linearly_separable_problem():
    x, y = _toy_task(n_per_class=30)
    result = train_readout("sgd_ce", x, y, lr=0.5, epochs=20, batch_size=10, seed=2)
    assert readout_metrics(result.weights, x, y)["accuracy"] == 1.0


def test_unconstrained_hebbian_weights_scale_with_lr():
    x, y = _toy_task()
    small = train_readout("hebbian", x, y, lr=0.01, epochs=3, batch_size=7)
    large = train_readout("hebbian", x, y, lr=1.0, epochs=3, batch_size=7)
    torch.testing.assert_close(large.weights, 100 * small.weights, rtol=1e-5, atol=1e-6)


def test_metrics_on_hand_chosen_weights():
    weights = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = torch.tensor([0, 1, 1])
    # outputs (2, 0), (0, 1), (2, 1): margins 2, 1, -1; the third sample is wrong.
    metrics = readout_metrics(weights, x, y)
    assert metrics["accuracy"] == metrics["top1"] == pytest.approx(2 / 3)
    assert metrics["margin_mean"] == pytest.approx(2 / 3)
    margin_std = math.sqrt(((2 - 2 / 3) ** 2 + (1 - 2 / 3) ** 2 + (-1 - 2 / 3) ** 2) / 3)
    assert metrics["margin_std"] == pytest.approx(margin_std)
    # Seed SNR: mean z_target (2+1+1)/3 over mean z_other (0+0+2)/3.
    assert metrics["output_ratio"] == pytest.approx(2.0)


def test_readout_metrics_accept_images_and_reject_wrong_weights():
    x, y = _toy_task(size=4)
    weights = torch.zeros(16, 2)
    weights[:8, 0] = 1.0  # left half of a 4x4 image, row-major
    weights[8:, 1] = 1.0
    assert readout_metrics(weights, x, y)["accuracy"] < 1.0  # rows, not columns, so not perfect
    weights = torch.zeros(4, 4, 2)
    weights[:, :2, 0] = 1.0
    weights[:, 2:, 1] = 1.0
    assert readout_metrics(weights.reshape(16, 2), x, y)["accuracy"] == 1.0
    with pytest.raises(ValueError, match="weights"):
        readout_metrics(torch.zeros(15, 2), x, y)
    with pytest.raises(ValueError, match="non-finite"):
        readout_metrics(torch.full((16, 2), math.nan), x, y)


def test_weight_statistics():
    stats = weight_statistics(torch.tensor([[0.0, 1.0], [2.0, 5.0]]))
    assert stats == pytest.approx({"mean": 2.0, "std": math.sqrt(3.5), "min": 0.0, "max": 5.0})


def test_absurd_lr_diverges_without_crashing():
    x, y = _toy_task()
    result = train_readout("sgd_mse", x, y, lr=1e30, epochs=5, batch_size=8)
    assert result.diverged and result.diverged_epoch is not None
    assert len(result.history) == result.diverged_epoch
    assert bool(torch.isfinite(result.weights).all())
    metrics = readout_metrics(result.weights, x, y)
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert math.isfinite(result.history[-1]["train_mse"])
    sane = train_readout("sgd_mse", x, y, lr=0.1, epochs=5, batch_size=8)
    assert not sane.diverged and sane.diverged_epoch is None and len(sane.history) == 5


@pytest.mark.parametrize("method", METHODS)
def test_training_is_deterministic_per_seed(method):
    x, y = _toy_task()
    kwargs = dict(lr=0.05, epochs=2, batch_size=8, constraint=(-1.0, 1.0))
    a = train_readout(method, x, y, seed=5, **kwargs)
    b = train_readout(method, x, y, seed=5, **kwargs)
    assert torch.equal(a.weights, b.weights) and a.history == b.history
    if method.startswith("sgd"):
        c = train_readout(method, x, y, seed=6, **kwargs)
        assert not torch.equal(a.weights, c.weights)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "oja"}, "method"),
        ({"lr": 0.0}, "lr"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"constraint": (1.0, 0.0)}, "constraint"),
    ],
)
def test_train_readout_rejects_bad_arguments(kwargs, message):
    x, y = _toy_task()
    arguments = dict(method="hebbian", lr=0.1, epochs=1, batch_size=4) | kwargs
    method = arguments.pop("method")
    with pytest.raises(ValueError, match=message):
        train_readout(method, x, y, **arguments)
    with pytest.raises(ValueError, match="y_train"):
        train_readout("hebbian", x, y + 1, lr=0.1, epochs=1, batch_size=4)


def test_select_learning_rate_picks_the_best_validation_lr():
    x, y = _toy_task(seed=0)
    x_val, y_val = _toy_task(seed=1)
    # Under a [0, 1] range a large Hebbian lr saturates every weight at 1, both outputs become
    # equal and validation accuracy falls to chance; the small lr keeps a working readout.
    lrs = [100.0, 1e-3]
    best, table = select_learning_rate(
        "hebbian", lrs, x, y, x_val, y_val, epochs=2, batch_size=8, constraint=(0.0, 1.0)
    )
    assert best == 1e-3
    assert [row["lr"] for row in table] == lrs
    assert [row["selected"] for row in table] == [False, True]
    assert table[0]["accuracy"] == 0.5 and table[1]["accuracy"] == 1.0
    for row in table:  # each row is the validation score of an independent run
        result = train_readout("hebbian", x, y, lr=row["lr"], epochs=2, batch_size=8, constraint=(0.0, 1.0))
        assert readout_metrics(result.weights, x_val, y_val)["accuracy"] == row["accuracy"]


def test_select_learning_rate_ranking(monkeypatch):
    scores = {  # lr -> (diverged, validation accuracy, margin_snr)
        1.0: (False, 0.8, 5.0),
        2.0: (False, 0.9, 1.0),
        3.0: (False, 0.9, 3.0),  # ties with 2.0 on accuracy, wins on margin_snr
        4.0: (False, 0.9, math.nan),
        5.0: (True, 1.0, 9.0),  # best accuracy, but diverged
        6.0: (False, 0.9, 3.0),  # exact tie with 3.0: the earlier lr wins
    }

    def fake_train(method, x, y, *, lr, **kwargs):
        return ReadoutResult(method, torch.tensor([lr]), diverged=scores[lr][0])

    def fake_metrics(weights, x, y):
        _, accuracy, snr = scores[float(weights[0])]
        return {"accuracy": accuracy, "margin_snr": snr}

    monkeypatch.setattr(rules, "train_readout", fake_train)
    monkeypatch.setattr(rules, "readout_metrics", fake_metrics)
    best, table = select_learning_rate("sgd_mse", list(scores), None, None, None, None)
    assert best == 3.0
    assert sum(row["selected"] for row in table) == 1
    best, _ = select_learning_rate("sgd_mse", [5.0], None, None, None, None)
    assert best == 5.0  # when every run diverged, the best of them is still chosen
    with pytest.raises(ValueError, match="lrs"):
        select_learning_rate("sgd_mse", [], None, None, None, None)


def test_noise_robustness_uses_the_shared_noise_stream():
    x, y = _toy_task(size=8)
    weights = train_readout("hebbian", x, y, lr=0.01, epochs=1, batch_size=8).weights
    rows = noise_robustness(weights, x, y, ["gaussian", "salt_pepper"], [0.1, 0.5], seed=3)
    assert [(r["noise"], r["level"]) for r in rows] == [
        ("gaussian", 0.1), ("gaussian", 0.5), ("salt_pepper", 0.1), ("salt_pepper", 0.5)
    ]
    for row in rows:
        noisy = apply_noise(x, row["noise"], row["level"], noise_generator(3, row["noise"], row["level"]))
        assert row["accuracy"] == readout_metrics(weights, noisy, y)["accuracy"]
        assert row["margin_mean"] == pytest.approx(readout_metrics(weights, noisy, y)["margin_mean"])
    assert noise_robustness(weights, x, y, ["gaussian"], [0.5], seed=3)[0] == rows[1]
    with pytest.raises(ValueError, match="x_test"):
        noise_robustness(weights, x.reshape(len(x), -1), y, ["gaussian"], [0.1], seed=3)
