import os
import subprocess
import sys

import pytest
import torch

from robustflow.noise import NOISE_TYPES, apply_noise, noise_generator


def _random_images(n=64, channels=3, size=32, seed=0):
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def _noisy(images, noise, level, seed=0):
    return apply_noise(images, noise, level, noise_generator(seed, noise, level))


@pytest.mark.parametrize("noise", NOISE_TYPES)
def test_level_zero_returns_clean(noise):
    images = _random_images(8)
    assert torch.equal(_noisy(images, noise, 0.0), images)


@pytest.mark.parametrize("noise", NOISE_TYPES)
def test_deterministic_per_seed(noise):
    images = _random_images(8)
    first, again = _noisy(images, noise, 0.3, seed=1), _noisy(images, noise, 0.3, seed=1)
    assert torch.equal(first, again)
    assert not torch.equal(first, _noisy(images, noise, 0.3, seed=2))


def test_generator_depends_on_every_key_part():
    seeds = {noise_generator(s, n, lv).initial_seed()
             for s, n, lv in [(0, "gaussian", 0.1), (1, "gaussian", 0.1), (0, "fog", 0.1), (0, "gaussian", 0.2)]}
    assert len(seeds) == 4


def test_generator_seed_is_stable_across_processes():
    # Python's str hash changes with PYTHONHASHSEED; the generator's seed must not.
    code = ("from robustflow.noise import noise_generator; "
            "print(noise_generator(7, 'salt_pepper', 0.25).initial_seed())")
    outputs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        outputs.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                   text=True, check=True).stdout.strip())
    assert outputs == {str(noise_generator(7, "salt_pepper", 0.25).initial_seed())}


def test_gaussian_std_matches_level():
    gray = torch.full((16, 3, 32, 32), 0.5)
    noise = _noisy(gray, "gaussian", 0.05) - 0.5
    assert noise.std().item() == pytest.approx(0.05, rel=0.03)
    assert abs(noise.mean().item()) < 0.002
    # Independent per channel.
    assert not torch.equal(noise[:, 0], noise[:, 1])


def test_salt_pepper_fraction_and_values():
    gray = torch.full((16, 3, 32, 32), 0.5)
    noisy = _noisy(gray, "salt_pepper", 0.2)
    flipped = (noisy != 0.5).any(dim=1)  # (N, H, W)
    assert (flipped.float().mean(dim=(1, 2)) == round(0.2 * 1024) / 1024).all()
    values = noisy.permute(0, 2, 3, 1)[flipped]  # (flipped locations, channels)
    assert ((values == 0) | (values == 1)).all()
    assert (values == values[:, :1]).all()  # same value in every channel
    assert (values[:, 0] == 1).float().mean().item() == pytest.approx(0.5, abs=0.05)


def test_occlusion_is_a_square_of_the_requested_area():
    white = torch.ones(16, 3, 32, 32)
    noisy = _noisy(white, "occlusion", 0.25)
    zero = (noisy == 0).all(dim=1)  # (N, H, W)
    assert ((noisy == 0) | (noisy == 1)).all()
    assert (zero.float().mean(dim=(1, 2)) == 0.25).all()  # side round(0.5 * 32) = 16
    for mask in zero:
        rows, cols = mask.any(dim=1).nonzero(), mask.any(dim=0).nonzero()
        assert rows.max() - rows.min() + 1 == 16 and cols.max() - cols.min() + 1 == 16
    corners = {tuple(mask.nonzero().min(dim=0).values.tolist()) for mask in zero}
    assert len(corners) > 1  # positions vary across images


def test_fog_blends_towards_a_bright_smooth_field():
    black = torch.zeros(8, 3, 32, 32)
    field = _noisy(black, "fog", 1.0)
    assert field.min() >= 0.5 and field.max() <= 1.0
    assert torch.equal(field[:, 0], field[:, 2])  # grayscale
    assert (field[..., 1:] - field[..., :-1]).abs().max() < 0.1  # smooth
    means = [_noisy(black, "fog", level).mean().item() for level in (0.0, 0.2, 0.5, 1.0)]
    assert means == sorted(means) and means[0] < means[-1]

    images = _random_images(8)
    half = _noisy(images, "fog", 0.5) - 0.5 * images  # = 0.5 * field
    assert half.min() >= 0.25 - 1e-6 and half.max() <= 0.5 + 1e-6


@pytest.mark.parametrize("noise", NOISE_TYPES)
def test_distance_from_clean_grows_with_level(noise):
    images = _random_images(64)
    distances = [(_noisy(images, noise, level) - images).abs().mean().item()
                 for level in (0.0, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)]
    assert all(a < b for a, b in zip(distances, distances[1:])), distances


@pytest.mark.parametrize("noise", NOISE_TYPES)
@pytest.mark.parametrize("shape", [(5, 1, 28, 28), (5, 3, 32, 32), (2, 3, 20, 12)])
def test_shapes_and_range(noise, shape):
    images = torch.rand(shape, generator=torch.Generator().manual_seed(3))
    noisy = _noisy(images, noise, 0.7)
    assert noisy.shape == images.shape and noisy.dtype == images.dtype
    assert noisy.min() >= 0 and noisy.max() <= 1


def test_bad_arguments_raise():
    images = _random_images(2)
    generator = torch.Generator()
    with pytest.raises(ValueError, match="gaussian") as error:
        apply_noise(images, "blur", 0.1, generator)
    assert "blur" in str(error.value) and "occlusion" in str(error.value)
    with pytest.raises(ValueError, match="level"):
        apply_noise(images, "fog", 1.5, generator)
    with pytest.raises(ValueError, match="level"):
        noise_generator(0, "fog", -0.1)
    with pytest.raises(ValueError, match="images"):
        apply_noise((images * 255).to(torch.uint8), "fog", 0.1, generator)
    with pytest.raises(ValueError, match="images"):
        apply_noise(images * 255, "fog", 0.1, generator)
    with pytest.raises(ValueError, match="images"):
        apply_noise(images[0], "fog", 0.1, generator)
