"""Training objectives of the repeatability study (`robustflow.objectives`): the JS loss, AugMix's ops and
views (against PIL, the reference's image library), the noise objectives, the rotation head, and
every objective on the training loop: 2 epochs, exact resume after an interruption, and 2 gloo
processes matching one."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustflow import objectives as O
from robustflow.data import ImageSplits
from robustflow.training import CHECKPOINT_NAME, TrainBatch, TrainSettings, train_with_objective

torch.set_num_threads(1)


def _uint8(n=4, size=16, seed=0, low=20, high=220):
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, size, size, generator=generator) * (high - low) + low).to(torch.uint8)


def _unit(images):
    return images.float() / 255


# ----------------------------------------------------------------------------- Jensen-Shannon


def test_js_of_identical_distributions_is_zero():
    logits = torch.randn(5, 10, generator=torch.Generator().manual_seed(0))
    assert float(O.jensen_shannon(logits, logits.clone(), logits.clone())) == pytest.approx(0.0, abs=1e-7)


def test_js_matches_a_hand_computation():
    # p1 = (1/2, 1/2), p2 = (3/4, 1/4), p3 = (1/4, 3/4): M = (1/2, 1/2), KL(p1 || M) = 0,
    # KL(p2 || M) = KL(p3 || M) = 3/4 ln(3/2) + 1/4 ln(1/2)
    ln3 = math.log(3)
    p1, p2, p3 = torch.tensor([[0.0, 0.0]]), torch.tensor([[ln3, 0.0]]), torch.tensor([[0.0, ln3]])
    expected = (0 + 2 * (0.75 * math.log(1.5) + 0.25 * math.log(0.5))) / 3
    assert float(O.jensen_shannon(p1, p2, p3)) == pytest.approx(expected, rel=1e-6)
    # batch mean: a second, identical row does not change it
    doubled = O.jensen_shannon(p1.repeat(2, 1), p2.repeat(2, 1), p3.repeat(2, 1))
    assert float(doubled) == pytest.approx(expected, rel=1e-6)
    # the reference's formula, with F.kl_div
    ps = [t.softmax(1) for t in (p1, p2, p3)]
    mixture = torch.clamp(sum(ps) / 3, 1e-7, 1).log()
    reference = sum(F.kl_div(mixture, p, reduction="batchmean") for p in ps) / 3
    assert float(O.jensen_shannon(p1, p2, p3)) == pytest.approx(float(reference), rel=1e-6)


def test_js_stays_finite_for_confident_disagreeing_predictions():
    a, b = torch.tensor([[60.0, -60.0]]), torch.tensor([[-60.0, 60.0]])
    value = float(O.jensen_shannon(a, b, a))
    assert math.isfinite(value) and 0 < value <= math.log(3)


# ----------------------------------------------------------------------------- AugMix ops


def test_every_op_at_level_zero_or_its_identity_parameter_is_the_identity():
    x = _unit(_uint8())
    zero, plus = torch.zeros(4), torch.ones(4)
    for name in ("rotate", "solarize", "shear_x", "shear_y", "translate_x", "translate_y"):
        assert torch.equal(O._augmix_op(name)(x, zero, plus), x), name
    assert torch.equal(O.posterize(x, 8), x)
    assert torch.equal(O.solarize(x, 256), x)
    full_range = x.clone()
    full_range[..., 0, 0], full_range[..., 0, 1] = 0.0, 1.0  # every channel spans 0..255 already
    assert torch.equal(O.autocontrast(full_range), full_range)
    flat = torch.arange(256).float().div(255).view(1, 1, 16, 16).repeat(2, 3, 1, 1)  # each level once
    flat = flat[:, :, torch.randperm(16, generator=torch.Generator().manual_seed(1))]
    assert torch.equal(O.equalize(flat), flat)
    single_level = torch.full((1, 3, 8, 8), 0.4)
    assert torch.equal(O.equalize(single_level), single_level.mul(255).round().div(255))


@pytest.mark.parametrize("k", [1, 2, 3, -2])
def test_translate_moves_pixels_by_k(k):
    x = _unit(_uint8(n=2, size=8))
    right, down = O.translate_x(x, k), O.translate_y(x, k)
    if k > 0:
        assert torch.equal(right[..., k:], x[..., :-k]) and (right[..., :k] == 0).all()
        assert torch.equal(down[..., k:, :], x[..., :-k, :]) and (down[..., :k, :] == 0).all()
    else:
        assert torch.equal(right[..., :k], x[..., -k:]) and (right[..., k:] == 0).all()
        assert torch.equal(down[..., :k, :], x[..., -k:, :]) and (down[..., k:, :] == 0).all()


def test_ops_match_pil():
    from PIL import Image, ImageOps

    images = _uint8(n=6, size=16, seed=3)

    def pil(i):
        return Image.fromarray(images[i].permute(1, 2, 0).numpy())

    def ours_vs_pil(ours, op):
        reference = torch.stack([torch.from_numpy(np.array(op(pil(i), i))).permute(2, 0, 1) for i in range(6)])
        return (ours.mul(255).round().long() - reference.long()).abs()

    x = _unit(images)
    bits, threshold = torch.tensor([1, 2, 3, 4, 7, 8]), torch.tensor([0, 60, 128, 200, 255, 256])
    exact = {
        "autocontrast": (O.autocontrast(x), lambda p, i: ImageOps.autocontrast(p)),
        "equalize": (O.equalize(x), lambda p, i: ImageOps.equalize(p)),
        "posterize": (O.posterize(x, bits), lambda p, i: ImageOps.posterize(p, int(bits[i]))),
        "solarize": (O.solarize(x, threshold), lambda p, i: ImageOps.solarize(p, int(threshold[i]))),
        "translate_x": (O.translate_x(x, torch.tensor([3.0, -3, 1, 0, 2, -1])),
                        lambda p, i: p.transform((16, 16), Image.AFFINE, (1, 0, -[3, -3, 1, 0, 2, -1][i], 0, 1, 0),
                                                 resample=Image.BILINEAR)),
    }
    for name, (ours, op) in exact.items():
        assert int(ours_vs_pil(ours, op).max()) == 0, name
    degrees, shear = torch.tensor([8.0, -8, 3, -1, 30, 0]), torch.tensor([0.09, -0.09, 0.3, -0.03, 0.0, 0.2])
    bilinear = {  # PIL interpolates in fixed point: at most one level apart
        "rotate": (O.rotate(x, degrees), lambda p, i: p.rotate(float(degrees[i]), resample=Image.BILINEAR)),
        "shear_x": (O.shear_x(x, shear), lambda p, i: p.transform((16, 16), Image.AFFINE,
                                                                    (1, float(shear[i]), 0, 0, 1, 0), Image.BILINEAR)),
        "shear_y": (O.shear_y(x, shear), lambda p, i: p.transform((16, 16), Image.AFFINE,
                                                                    (1, 0, 0, float(shear[i]), 1, 0), Image.BILINEAR)),
    }
    for name, (ours, op) in bilinear.items():
        assert int(ours_vs_pil(ours, op).max()) <= 1, name


def test_level_to_magnitude_follows_the_reference_at_32_px():
    top = torch.tensor([2.999])  # severity 3: levels up to 3
    assert float(O.int_parameter(top, 30)) == 8  # rotate: up to 8 degrees
    assert float(O.float_parameter(top, 0.3)) == pytest.approx(0.09, abs=1e-4)  # shear
    assert float(O.int_parameter(top, 32 / 3)) == 3  # translate: up to 3 px
    assert float(O.int_parameter(torch.tensor([0.1]), 30)) == 0


def test_batched_ops_equal_the_ops_applied_one_image_at_a_time():
    x = _unit(_uint8(n=len(O.AUGMIX_OPS) + 1, size=12, seed=4))
    choice = torch.tensor([*range(len(O.AUGMIX_OPS)), -1])
    level = torch.linspace(0.5, 3.0, len(choice))
    sign = torch.tensor([1.0, -1.0]).repeat(len(choice))[: len(choice)]
    batched = O.apply_ops(x, choice, level, sign)
    for i in range(len(choice)):
        single = O.apply_ops(x[i : i + 1], choice[i : i + 1], level[i : i + 1], sign[i : i + 1])
        assert torch.equal(batched[i : i + 1], single), i
    assert torch.equal(batched[-1], x[-1])


# ----------------------------------------------------------------------------- AugMix views


def _batch(n=8, size=16, seed=0):
    return TrainBatch(_uint8(n, size, seed), torch.arange(n) % 2, {})


def test_augmix_views_are_seeded_in_range_and_differ_from_the_clean_image():
    objective, settings = O.AugMixObjective(), TrainSettings(crop_padding=2, flip=True)
    first = objective.views(_batch(), settings, torch.Generator().manual_seed(5))
    again = objective.views(_batch(), settings, torch.Generator().manual_seed(5))
    other = objective.views(_batch(), settings, torch.Generator().manual_seed(6))
    for name in ("images", "aug1", "aug2"):
        assert torch.equal(first.per_sample[name], again.per_sample[name])
    clean, aug1, aug2 = (first.per_sample[name] for name in ("images", "aug1", "aug2"))
    assert not torch.equal(aug1, other.per_sample["aug1"])
    for view in (aug1, aug2):
        assert view.min() >= 0 and view.max() <= 1 and view.shape == clean.shape
        assert ((view - clean).abs().flatten(1).amax(1) > 0).all()  # every image changed
    assert not torch.equal(aug1, aug2)


def test_augmix_with_m_zero_is_the_clean_image_and_mixes_convexly():
    x = _unit(_uint8(n=6))
    assert torch.equal(O.augment_and_mix(x, torch.Generator().manual_seed(0), m=torch.zeros(6)), x)
    one = O.augment_and_mix(x, torch.Generator().manual_seed(0), m=torch.ones(6))
    drawn = O.augment_and_mix(x, torch.Generator().manual_seed(0))
    assert not torch.equal(one, x) and not torch.equal(drawn, x)
    # same draws: the drawn image lies between the clean image and the full mix, pixel by pixel
    low, high = torch.minimum(x, one), torch.maximum(x, one)
    assert ((drawn >= low - 1e-6) & (drawn <= high + 1e-6)).all()


def test_augmix_loss_is_ce_plus_twelve_js_in_one_forward():
    objective = O.AugMixObjective()
    views = objective.views(_batch(), TrainSettings(), torch.Generator().manual_seed(0))
    model, calls = _model(), []

    def forward(images):
        calls.append(len(images))
        return model(images)

    result = objective.loss(forward, views, nn.CrossEntropyLoss())
    assert calls == [3 * 8]
    clean, aug1, aug2 = model(torch.cat([views.per_sample[k] for k in ("images", "aug1", "aug2")])).chunk(3)
    torch.testing.assert_close(result.metrics["task_loss"], F.cross_entropy(clean, views.labels))
    torch.testing.assert_close(result.loss, result.metrics["task_loss"] + 12 * O.jensen_shannon(clean, aug1, aug2))


def test_objectives_validate_their_parameters_and_refuse_mixup():
    for bad in (dict(severity=0), dict(width=0), dict(depth=0), dict(ops=("color",)), dict(alpha=0)):
        with pytest.raises(ValueError):
            O.AugMixObjective(**bad)
    with pytest.raises(ValueError, match="sigma"):
        O.StabilityObjective(alpha=1.0, sigma=-0.1)
    with pytest.raises(ValueError, match="max_width"):
        O.PatchGaussianObjective(max_width=0, max_sigma=0.5)
    with pytest.raises(ValueError, match="mixup"):
        O.GaussianNoiseObjective(0.1).views(_batch(), TrainSettings(mixup_alpha=0.2), torch.Generator())


# ----------------------------------------------------------------------------- noise and rotation


def test_stability_loss_with_sigma_zero_is_the_task_loss():
    objective = O.StabilityObjective(alpha=10.0, sigma=0.0)
    views = objective.views(_batch(), TrainSettings(flip=True), torch.Generator().manual_seed(0))
    assert torch.equal(views.per_sample["noisy"], views.per_sample["images"])
    result = objective.loss(_model(), views, nn.CrossEntropyLoss())
    assert result.metrics["stability"].item() == pytest.approx(0.0, abs=1e-6)
    assert result.loss.item() == pytest.approx(result.metrics["task_loss"].item(), abs=1e-6)
    noisy = O.StabilityObjective(alpha=10.0, sigma=0.1)
    result = noisy.loss(_model(), noisy.views(_batch(), TrainSettings(), torch.Generator()), nn.CrossEntropyLoss())
    assert result.metrics["stability"].item() > 0
    expected = (result.metrics["task_loss"] + 10 * result.metrics["stability"]).item()
    assert result.loss.item() == pytest.approx(expected, rel=1e-6)


def test_patch_gaussian_changes_only_a_square_patch():
    x = _unit(_uint8(n=32, size=16, low=60, high=190))
    out, mask = O.patch_gaussian(x, max_width=8, max_sigma=0.5, generator=torch.Generator().manual_seed(0))
    outside = ~mask.expand_as(x)
    assert torch.equal(out[outside], x[outside])
    assert out.min() >= 0 and out.max() <= 1
    for i in range(32):
        rows, cols = mask[i, 0].any(1).nonzero().squeeze(1), mask[i, 0].any(0).nonzero().squeeze(1)
        assert 1 <= len(rows) <= 8 and 1 <= len(cols) <= 8
        assert int(mask[i].sum()) == len(rows) * len(cols)  # a rectangle: the square cut by the border
    assert (out != x).any()
    assert int(mask.flatten(1).sum(1).max()) == 64  # some images draw the full width


def test_gaussian_noise_views_are_clipped_noisy_images():
    objective = O.GaussianNoiseObjective(sigma=0.3)
    views = objective.views(_batch(), TrainSettings(), torch.Generator().manual_seed(0))
    images = views.per_sample["images"]
    assert images.min() == 0 and images.max() == 1  # clipped
    assert not torch.equal(images, _unit(_batch().images))


def test_rotation_labels_are_the_rotations():
    objective = O.RotationHeadObjective(weight=0.5)
    views = objective.views(_batch(n=64, size=8), TrainSettings(crop_padding=1), torch.Generator().manual_seed(0))
    clean, rotated, rotation = (views.per_sample[name] for name in ("images", "rotated", "rotation"))
    assert set(rotation.tolist()) == {0, 1, 2, 3}
    for i in range(64):
        assert torch.equal(rotated[i], torch.rot90(clean[i], int(rotation[i]), dims=(-2, -1)))
    with pytest.raises(ValueError, match="square"):
        O.rotated_copies(torch.zeros(2, 3, 4, 6), torch.Generator())


def test_rotation_objective_needs_the_wrapper_and_weighs_the_rotation_loss():
    objective = O.RotationHeadObjective(weight=0.5)
    views = objective.views(_batch(), TrainSettings(), torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="WithRotationHead"):
        objective.loss(_model(classes=2), views, nn.CrossEntropyLoss())
    result = objective.loss(_rotation_model(), views, nn.CrossEntropyLoss())
    assert result.logits.shape == (8, 2)
    torch.testing.assert_close(result.loss, result.metrics["task_loss"] + 0.5 * result.metrics["rotation_loss"])


# ----------------------------------------------------------------------------- on the training loop


class TinyNet(nn.Module):
    """BatchNorm-free (2 gloo ranks then train as one process would), with timm's head protocol."""

    def __init__(self, classes: int = 2):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, classes)
        self.num_features = 4

    def forward_features(self, x):
        return F.relu(self.conv(x))

    def forward_head(self, x, pre_logits=False):
        x = x.mean((2, 3))
        return x if pre_logits else self.head(x)

    def get_classifier(self):
        return self.head

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def _model(classes=2):
    torch.manual_seed(0)
    return TinyNet(classes)


def _rotation_model():
    torch.manual_seed(0)
    return O.WithRotationHead(TinyNet(2))


def _toy_data(n=32, size=8):
    """Class = brightness of the image, under noise."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 2
    base = torch.where(labels == 1, 170.0, 80.0).view(n, 1, 1, 1)
    images = (base + 40 * torch.randn(n, 3, size, size, generator=generator)).clamp(0, 255).to(torch.uint8)
    return ImageSplits(train_x=images, train_y=labels, val_x=images[:8], val_y=labels[:8], test_x=images[:8],
                       test_y=labels[:8], classes=("dark", "bright"), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


OBJECTIVES = {
    "augmix": (lambda: O.AugMixObjective(), _model, ["train_task_loss", "train_js"]),
    "stability": (lambda: O.StabilityObjective(alpha=1.0, sigma=0.1), _model, ["train_task_loss", "train_stability"]),
    "patch_gaussian": (lambda: O.PatchGaussianObjective(max_width=4, max_sigma=0.5), _model, []),
    "gaussian_noise": (lambda: O.GaussianNoiseObjective(sigma=0.1), _model, []),
    "rotation_head": (lambda: O.RotationHeadObjective(weight=0.5), _rotation_model,
                      ["train_task_loss", "train_rotation_loss", "train_rotation_top1"]),
}
BASE = dict(epochs=2, batch_size=10, lr=1e-2, seed=3, crop_padding=1, flip=True)  # batches of 10, 10, 10, 2


class Interrupt(Exception):
    pass


def _stop_after_one(epoch, record):
    raise Interrupt


def _straight(name, tmp_path, **overrides):
    make_objective, make_model, _ = OBJECTIVES[name]
    settings = TrainSettings(**BASE, ema_decay=0.9, **overrides)
    return train_with_objective(make_model(), _toy_data(), settings, tmp_path, make_objective(), progress=False)


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_objective_trains_and_resumes_to_the_uninterrupted_history(name, tmp_path):
    make_objective, make_model, columns = OBJECTIVES[name]
    straight = _straight(name, tmp_path / "straight")
    history = straight.history
    assert len(history) == 2 and set(columns) <= set(history.columns)
    assert np.isfinite(history[["train_loss", *columns, "train_top1", "val_loss"]].to_numpy(dtype=float)).all()

    data, settings = _toy_data(), TrainSettings(**BASE, ema_decay=0.9)
    with pytest.raises(Interrupt):
        train_with_objective(make_model(), data, settings, tmp_path / "resumed", make_objective(), progress=False,
                             on_epoch_end=_stop_after_one)
    epochs_run = []
    resumed = train_with_objective(make_model(), data, settings, tmp_path / "resumed", make_objective(),
                                   progress=False, on_epoch_end=lambda epoch, record: epochs_run.append(epoch))
    assert epochs_run == [2]  # it resumed, not restarted
    pd.testing.assert_frame_equal(history, resumed.history, check_exact=True)
    for best in ("best_state", "ema_best_state"):
        for key, value in getattr(straight, best).items():
            assert torch.equal(value, getattr(resumed, best)[key]), (best, key)


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_objective_on_two_gloo_processes_matches_one_process(name, tmp_path):
    """Each launch spawns two processes (~5 s here); the views are drawn whole and sharded per rank."""
    columns = OBJECTIVES[name][2]
    one = _straight(name, tmp_path / "one")
    two = _straight(name, tmp_path / "two", devices=2)
    assert len(torch.load(tmp_path / "two" / CHECKPOINT_NAME, weights_only=True)["rank_rng"]) == 2
    compared = ["train_loss", *columns, "val_loss", "ema_val_loss", "lr"]
    pd.testing.assert_frame_equal(two.history[compared], one.history[compared], check_exact=False, rtol=1e-5,
                                  atol=1e-6)


def test_checkpoint_of_other_objective_parameters_is_not_resumed(tmp_path):
    data = _toy_data()
    settings = TrainSettings(**BASE)
    with pytest.raises(Interrupt):
        train_with_objective(_model(), data, settings, tmp_path / "changed", O.StabilityObjective(1.0, 0.1),
                             progress=False, on_epoch_end=_stop_after_one)
    with pytest.warns(UserWarning, match="other settings or objective"):
        changed = train_with_objective(_model(), data, settings, tmp_path / "changed", O.StabilityObjective(1.0, 0.2),
                                       progress=False)
    fresh = train_with_objective(_model(), data, settings, tmp_path / "fresh", O.StabilityObjective(1.0, 0.2),
                                 progress=False)
    pd.testing.assert_frame_equal(changed.history, fresh.history, check_exact=True)
    identities = [make().identity() for make, _, _ in OBJECTIVES.values()]
    assert len({str(identity) for identity in identities}) == len(OBJECTIVES)


def test_build_objective_from_plain_values_and_back_from_identity():
    for make, _, _ in OBJECTIVES.values():
        objective = make()
        assert O.build_objective(**objective.identity()) == objective
    assert O.build_objective("augmix", ops=["rotate", "equalize"]).ops == ("rotate", "equalize")
    with pytest.raises(ValueError, match="unknown objective"):
        O.build_objective("cutout")
    with pytest.raises(ValueError, match="takes no parameters"):
        O.build_objective("stability", alpha=1.0, sigma=0.1, beta=2)
    with pytest.raises(ValueError, match="sigma"):
        O.build_objective("stability", alpha=1.0)
