"""BlurPool and the anti-aliasing helpers (Zhang 2019): filter taps, subsampling, constants, shift
equivariance, shapes, and conversions that keep a model's parameters."""

import math

import pytest
import torch
from torch import nn

from robustflow.models.blurpool import (
    BlurConv2d,
    BlurPool2d,
    antialias,
    binomial_filter,
    blur,
    max_blur_pool,
    set_blur_filter,
)

torch.set_num_threads(1)


def _image(n=2, channels=3, size=32, seed=0):
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("k", range(1, 8))
def test_filter_taps_are_the_normalised_binomial_coefficients(k):
    row = torch.tensor([math.comb(k - 1, i) for i in range(k)], dtype=torch.float64) / 2 ** (k - 1)
    layer = BlurPool2d(3, filter_size=k)
    assert layer.filt.shape == (k, k)
    torch.testing.assert_close(layer.filt.double(), torch.outer(row, row), rtol=0, atol=1e-7)
    assert float(layer.filt.sum()) == pytest.approx(1.0, abs=1e-6)
    assert "filt" not in layer.state_dict()  # non-persistent: state dicts stay those of plain models


def test_named_rows():
    torch.testing.assert_close(binomial_filter(3)[1], torch.tensor([1.0, 2.0, 1.0]) * 2 / 16)
    torch.testing.assert_close(binomial_filter(4)[0], torch.tensor([1.0, 3.0, 3.0, 1.0]) / 64)
    torch.testing.assert_close(binomial_filter(5)[2], torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) * 6 / 256)


def test_filter_size_one_is_plain_subsampling():
    x = _image()
    assert torch.equal(BlurPool2d(3, filter_size=1)(x), x[:, :, ::2, ::2])
    assert torch.equal(BlurPool2d(3, filter_size=1, stride=3)(x), x[:, :, ::3, ::3])


@pytest.mark.parametrize("k", range(1, 8))
def test_a_constant_image_stays_constant(k):
    x = torch.full((1, 4, 12, 12), 0.37)
    out = BlurPool2d(4, filter_size=k)(x)
    torch.testing.assert_close(out, torch.full_like(out, 0.37), rtol=0, atol=1e-6)


@pytest.mark.parametrize("size", [7, 8, 31, 32])
@pytest.mark.parametrize("k", range(1, 8))
def test_output_shape_is_ceil_half_for_every_filter(k, size):
    out = BlurPool2d(3, filter_size=k)(_image(size=size))
    assert out.shape == (2, 3, math.ceil(size / 2), math.ceil(size / 2))


def test_maps_too_small_to_reflect_are_blurred_all_the_same():
    for size in (1, 2, 3):
        out = BlurPool2d(2, filter_size=7)(_image(channels=2, size=size))
        assert out.shape[-1] == math.ceil(size / 2) and torch.isfinite(out).all()


def test_blur_reduces_the_change_a_one_pixel_shift_causes():
    """Subsampling a shifted random image picks other pixels: without a low-pass the output changes
    by the image's full variation; blurred first, far less, and less the wider the filter."""
    x = _image(n=4, channels=3, size=34, seed=1)
    base, shifted = x[..., 1:33, 1:33], x[..., 1:33, 2:34]  # shifted: the same scene one pixel to the left

    def change(k):
        a, b = blur(base, k, 2), blur(shifted, k, 2)
        interior = (slice(None), slice(None), slice(2, -2), slice(2, -2))  # away from the padded border
        return float((a - b)[interior].abs().mean())

    changes = [change(k) for k in (1, 2, 3, 5, 7)]
    assert changes == sorted(changes, reverse=True)
    assert changes[2] < 0.5 * changes[0] and changes[3] < 0.4 * changes[0]


def test_blurpool_checks_its_channels_and_arguments():
    with pytest.raises(ValueError, match="4 channels"):
        BlurPool2d(4)(_image(channels=3))
    for bad in (0, 8, 2.0, True):
        with pytest.raises(ValueError, match="1..7"):
            BlurPool2d(3, filter_size=bad)
    with pytest.raises(ValueError, match="stride"):
        BlurPool2d(3, stride=0)


def test_max_blur_pool_keeps_the_output_size_and_filter_one_is_maxpool():
    x = _image(size=16)
    plain = nn.MaxPool2d(2)
    for k in (1, 3, 5):
        assert max_blur_pool(plain, k)(x).shape == plain(x).shape
    assert torch.equal(max_blur_pool(plain, 1)(x), plain(x))
    stem = nn.MaxPool2d(3, stride=2, padding=1)
    assert max_blur_pool(stem, 4)(x).shape == stem(x).shape


def test_blur_conv_is_the_dense_conv_blurred_and_subsampled_and_keeps_the_conv():
    torch.manual_seed(0)
    for kernel, padding in ((3, 1), (1, 0)):
        conv = nn.Conv2d(3, 5, kernel, stride=2, padding=padding, bias=True)
        state = {k: v.clone() for k, v in conv.state_dict().items()}
        rng = torch.get_rng_state()
        blurred = BlurConv2d.from_conv(conv, 3)
        assert torch.equal(torch.get_rng_state(), rng)  # no init draws
        assert blurred.weight is conv.weight and blurred.state_dict().keys() == state.keys()
        x = _image(size=16)
        dense = nn.functional.conv2d(x, conv.weight, conv.bias, 1, padding)
        expected = blur(dense, 3, 2)
        got = blurred(x)
        assert got.shape == conv(x).shape
        # blur and conv commute; only the border (reflect vs zero padding order) differs
        torch.testing.assert_close(got[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], rtol=1e-5, atol=1e-5)


def test_antialias_converts_strided_layers_and_keeps_the_state_dict():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1),
        nn.AvgPool2d(2), nn.Sequential(nn.Conv2d(4, 6, 1, stride=2)), nn.AdaptiveAvgPool2d(1),
    )
    keys = list(model.state_dict())
    x = _image(size=32)
    shape = model(x).shape
    antialias(model, 5)
    assert isinstance(model[0], BlurConv2d) and isinstance(model[5][0], BlurConv2d)
    assert isinstance(model[2], nn.Sequential) and isinstance(model[2][1], BlurPool2d)
    assert isinstance(model[4], BlurPool2d) and type(model[3]) is nn.Conv2d
    assert isinstance(model[6], nn.AdaptiveAvgPool2d)
    assert list(model.state_dict()) == keys and model(x).shape == shape
    set_blur_filter(model, 2)
    assert {m.filter_size for m in model.modules() if isinstance(m, (BlurPool2d, BlurConv2d))} == {2}
    assert model(x).shape == shape
