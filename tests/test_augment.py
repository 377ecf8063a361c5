"""Batched augmentation: crops, flips, mixup, minibatch indices."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from robustflow.data.augment import (
    iterate_minibatches,
    mixup,
    normalize,
    random_crop,
    random_flip,
    to_unit_float,
)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_to_unit_float_and_normalize_hand_values():
    x = torch.tensor([[[[0, 51]], [[255, 102]]]], dtype=torch.uint8)
    unit = to_unit_float(x)
    assert unit.dtype == torch.float32
    assert unit.flatten().tolist() == pytest.approx([0.0, 0.2, 1.0, 0.4])
    out = normalize(unit, mean=(0.2, 0.5), std=(0.5, 0.25))
    assert out.flatten().tolist() == pytest.approx([-0.4, 0.0, 2.0, -0.4])
    with pytest.raises(ValueError, match="uint8"):
        to_unit_float(unit)
    with pytest.raises(ValueError, match="one value per channel"):
        normalize(unit, mean=(0.5,), std=(0.5,))


def _marker_batch(n=64, size=12):
    """Channel 0: a single 1 at the centre (reveals the offset); channel 1: random content."""
    x = torch.zeros(n, 2, size, size)
    x[:, 0, size // 2, size // 2] = 1.0
    x[:, 1] = torch.rand(n, size, size, generator=_gen(5))
    return x


@pytest.mark.parametrize("pad_mode", ["zeros", "reflect"])
def test_random_crop_shifts_each_image_by_its_own_offset(pad_mode):
    p, size = 3, 12
    x = _marker_batch(size=size)
    out = random_crop(x, p, _gen(1), pad_mode=pad_mode)
    assert out.shape == x.shape
    padded = F.pad(x, (p,) * 4, mode="constant" if pad_mode == "zeros" else "reflect")
    offsets = set()
    for n in range(len(x)):
        marker = (out[n, 0] == 1).nonzero()
        assert len(marker) == 1 and sorted(out[n, 0].unique().tolist()) == [0.0, 1.0]
        row, col = marker[0].tolist()
        assert abs(row - size // 2) <= p and abs(col - size // 2) <= p  # content moves by at most p
        top, left = size // 2 + p - row, size // 2 + p - col  # crop offset into the padded image
        assert torch.equal(out[n], padded[n, :, top : top + size, left : left + size])
        offsets.add((top, left))
    assert len(offsets) >= 20  # 49 possible offsets, 64 images: each image draws its own


def test_random_crop_uint8_and_identity_and_determinism():
    x = torch.randint(0, 256, (8, 3, 10, 10), generator=_gen(2), dtype=torch.uint8)
    assert random_crop(x, 0, _gen()) is x
    a, b = random_crop(x, 2, _gen(7)), random_crop(x, 2, _gen(7))
    assert a.dtype == torch.uint8 and torch.equal(a, b)
    assert not torch.equal(a, random_crop(x, 2, _gen(8)))
    with pytest.raises(ValueError, match="padding"):
        random_crop(x, -1, _gen())
    with pytest.raises(ValueError, match="reflect padding"):
        random_crop(x, 10, _gen())


def test_random_flip_is_per_image_and_about_half():
    x = torch.rand(1000, 1, 3, 5, generator=_gen(3))
    out = random_flip(x, _gen(4))
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same | flipped).all())
    assert 0.4 < flipped.float().mean().item() < 0.6
    # the same seed flips the same images again: an involution
    assert torch.equal(random_flip(out, _gen(4)), x)
    assert torch.equal(random_flip(x, _gen(0), p=0.0), x)
    assert torch.equal(random_flip(x, _gen(0), p=1.0), x.flip(-1))


def test_mixup_is_a_convex_combination_with_a_permutation():
    n = 16
    x = torch.rand(n, 3, 4, 4, generator=_gen(6))
    y = torch.arange(n)  # labels equal indices, so y_b reveals the permutation
    mixed, y_a, y_b, lam = mixup(x, y, alpha=0.4, generator=_gen(9))
    assert 0.0 <= lam <= 1.0
    assert torch.equal(y_a, y)
    assert sorted(y_b.tolist()) == list(range(n)) and not torch.equal(y_b, y)
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[y_b])
    again = mixup(x, y, alpha=0.4, generator=_gen(9))
    assert torch.equal(again[0], mixed) and again[3] == lam


def test_mixup_alpha_zero_is_identity():
    x, y = torch.rand(4, 3, 2, 2), torch.arange(4)
    mixed, y_a, y_b, lam = mixup(x, y, alpha=0.0, generator=_gen())
    assert mixed is x and torch.equal(y_a, y) and torch.equal(y_b, y) and lam == 1.0
    with pytest.raises(ValueError, match="alpha"):
        mixup(x, y, alpha=-0.1, generator=_gen())


def test_mixup_lambda_follows_beta_alpha_alpha():
    x, y = torch.zeros(2, 1, 1, 1), torch.arange(2)
    generator = _gen(11)
    lams = [mixup(x, y, alpha=0.3, generator=generator)[3] for _ in range(400)]
    assert stats.kstest(lams, stats.beta(0.3, 0.3).cdf).pvalue > 1e-3
    assert stats.kstest(lams, stats.uniform().cdf).pvalue < 1e-3  # the test can tell Beta(.3,.3) apart


def test_minibatches_cover_every_index_once():
    batches = list(iterate_minibatches(103, 10, _gen(0)))
    assert [len(b) for b in batches] == [10] * 10 + [3]
    assert sorted(torch.cat(batches).tolist()) == list(range(103))
    assert torch.cat(batches).tolist() != list(range(103))  # shuffled
    again = list(iterate_minibatches(103, 10, _gen(0)))
    assert all(torch.equal(a, b) for a, b in zip(batches, again))
    kept = list(iterate_minibatches(103, 10, _gen(0), drop_last=True))
    assert [len(b) for b in kept] == [10] * 10
    ordered = torch.cat(list(iterate_minibatches(7, 3, None, shuffle=False)))
    assert ordered.tolist() == list(range(7))
    with pytest.raises(ValueError, match="batch_size"):
        list(iterate_minibatches(5, 0, _gen()))


def test_consecutive_epochs_draw_different_orders():
    generator = _gen(0)
    first = torch.cat(list(iterate_minibatches(50, 50, generator)))
    second = torch.cat(list(iterate_minibatches(50, 50, generator)))
    assert not torch.equal(first, second)
    assert np.array_equal(np.sort(first.numpy()), np.sort(second.numpy()))
