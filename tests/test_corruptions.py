"""Batched CIFAR-10-C corruptions: contract, statistics, and fidelity to the NumPy reference.

The reference is ``imagecorruptions`` (PyPI ``imagecorruptions-imaug``) run at the CIFAR-10-C
parameters (``robustflow.corruptions.reference``). Deterministic corruptions are compared
image by image. Stochastic ones are compared by replaying the engine's random draws inside the
reference (its ``np.random`` calls are patched to return them), or, where the reference draws
in compiled code or differs in algorithm, against its building blocks; the rest is checked
with statistics that follow from the definitions.

Differences are mean absolute differences on the 0..255 scale.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.datasets import load_digits

from robustflow.corruptions import (
    BENCHMARK_CORRUPTIONS,
    CIFAR_SEVERITY_PARAMS,
    CORRUPTION_FUNCTIONS,
    CORRUPTIONS,
    SEVERITIES,
    corrupt,
)
from robustflow.corruptions import _ops
from robustflow.corruptions.blur import _glass_positions, glass_shuffle
from robustflow.corruptions.geometric import elastic_from_draws
from robustflow.corruptions.weather import (
    chamfer_distance,
    fog_with_plasma,
    plasma_fractal,
    snow_from_draws,
    spatter_from_draws,
)

# Same arithmetic in float32 (engine) and float64 (reference): differences are rounding only,
# measured below 1e-4; 0.01 leaves room for other BLAS / libm builds.
FLOAT_TOLERANCE = 0.01
# Pillow resamples in 8 bits and rounds after each of its two passes and at the end; the engine
# stays in float. Rounding alone gives a mean difference of about 0.25 per pass.
PIXELATE_TOLERANCE = 0.5

DETERMINISTIC = (
    "contrast",
    "brightness",
    "saturate",
    "pixelate",
    "jpeg_compression",
    "defocus_blur",
    "gaussian_blur",
    "zoom_blur",
)
FIDELITY_TOLERANCES = {name: FLOAT_TOLERANCE for name in DETERMINISTIC} | {"pixelate": PIXELATE_TOLERANCE}


def natural_images(n: int = 8, seed: int = 0) -> torch.Tensor:
    """uint8 NCHW 32x32 images: upsampled digits in a colour over a smooth colour background."""
    rng = np.random.default_rng(seed)
    strokes = torch.tensor(load_digits().images[:n] / 16.0)[:, None]
    strokes = F.interpolate(strokes, size=(32, 32), mode="bilinear", align_corners=False)
    background = F.interpolate(
        torch.tensor(rng.uniform(0.1, 0.9, (n, 3, 4, 4))), size=(32, 32), mode="bicubic", align_corners=False
    ).clamp(0, 1)
    ink = torch.tensor(rng.uniform(0.0, 1.0, (n, 3, 1, 1)))
    images = background * (1 - 0.85 * strokes) + ink * 0.85 * strokes
    return (images * 255).round().to(torch.uint8)


@pytest.fixture(scope="module", autouse=True)
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def clean_uint8() -> torch.Tensor:
    return natural_images()


@pytest.fixture(scope="module")
def clean(clean_uint8: torch.Tensor) -> torch.Tensor:
    return clean_uint8.float() / 255.0


@pytest.fixture(scope="module")
def pil_images(clean_uint8: torch.Tensor) -> list[Image.Image]:
    return [Image.fromarray(image.permute(1, 2, 0).numpy()) for image in clean_uint8]


@pytest.fixture(scope="module")
def reference():
    pytest.importorskip("imagecorruptions")
    from robustflow.corruptions.reference import reference_functions

    return reference_functions()


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def to_hwc_255(images: torch.Tensor) -> np.ndarray:
    return images.permute(0, 2, 3, 1).double().numpy() * 255.0


def mean_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().mean()) * 255.0


# --------------------------------------------------------------------------- names and errors


def test_corruption_names_and_table() -> None:
    assert len(CORRUPTIONS) == 19 and len(set(CORRUPTIONS)) == 19
    assert CORRUPTIONS[:15] == BENCHMARK_CORRUPTIONS
    assert CORRUPTIONS[15:] == ("speckle_noise", "gaussian_blur", "spatter", "saturate")
    assert tuple(CIFAR_SEVERITY_PARAMS) == CORRUPTIONS == tuple(CORRUPTION_FUNCTIONS)
    assert all(len(rows) == 5 for rows in CIFAR_SEVERITY_PARAMS.values())
    assert CIFAR_SEVERITY_PARAMS["jpeg_compression"] == (80, 65, 58, 50, 40)
    assert CIFAR_SEVERITY_PARAMS["glass_blur"][4] == (0.4, 1, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"corruption": "rain"}, "gaussian_noise"),
        ({"severity": 6}, "severity"),
        ({"severity": -1}, "severity"),
        ({"severity": 2.0}, "severity"),
        ({"severity": True}, "severity"),
        ({"images": torch.zeros(2, 3, 32, 32, dtype=torch.uint8)}, "floating-point"),
        ({"images": torch.zeros(3, 32, 32)}, "shape"),
        ({"images": torch.zeros(2, 1, 32, 32)}, "shape"),
        ({"images": torch.full((2, 3, 32, 32), 1.5)}, r"\[0, 1\]"),
        ({"generator": 0}, "generator"),
    ],
)
def test_invalid_arguments_raise(kwargs: dict, message: str) -> None:
    arguments = {
        "images": torch.rand(2, 3, 32, 32),
        "corruption": "fog",
        "severity": 1,
        "generator": seeded(),
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        corrupt(**arguments)


# --------------------------------------------------------------------------- contract


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_contract(name: str, clean: torch.Tensor) -> None:
    unchanged = corrupt(clean, name, 0, seeded())
    assert torch.equal(unchanged, clean) and unchanged.data_ptr() != clean.data_ptr()
    for severity in SEVERITIES:
        out = corrupt(clean, name, severity, seeded(severity))
        assert out.shape == clean.shape and out.dtype == clean.dtype
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        assert not torch.equal(out, clean)
        assert torch.equal(out, corrupt(clean, name, severity, seeded(severity)))
    if name not in DETERMINISTIC:
        assert not torch.equal(corrupt(clean, name, 3, seeded(1)), corrupt(clean, name, 3, seeded(2)))
    as_double = corrupt(clean[:2].double(), name, 3, seeded())
    assert as_double.dtype == torch.float64


# Where the CIFAR table is not monotone in strength, the distance is not either (the
# reference behaves alike); these check the ordering the table implies instead.
def _increasing(d: list[float]) -> bool:
    return all(b > a for a, b in zip(d, d[1:]))


SEVERITY_ORDER = {
    # sigma .05/.25/.4 with one shuffle pass, then .25/.4 with two: smoothing hides the shuffle
    # within each group, the second pass doubles it.
    "glass_blur": lambda d: min(d[3], d[4]) > 1.5 * max(d[:3]),
    # severities 3 and 4 share sigma 2; radius 6 -> 8 only adds taps weighing e^-(49/8) and less
    "motion_blur": lambda d: _increasing(d[:3]) and d[3] >= 0.99 * d[2] and d[4] > d[3],
    # frost weight rises .2 -> .4 at image weight 1 -> .9, then the image is dimmed (.85, .75)
    # while the frost weight barely rises, which moves bright frost pixels less
    "frost": lambda d: _increasing(d[:3]) and min(d[3:]) > d[0],
    # affine jitter .08 -> .03 dominates; the elastic field stays under a pixel
    "elastic_transform": lambda d: all(b < a for a, b in zip(d, d[1:])),
    # water (1-3) then mud (4-5), each growing
    "spatter": lambda d: _increasing(d[:3]) and d[4] > d[3],
    # saturation x .3, x .1, x 1.5, x 2 + .1, x 2.5 + .2
    "saturate": lambda d: d[2] < d[0] < d[1] and _increasing(d[2:]),
}


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_distance_from_clean_grows_with_severity(name: str, clean: torch.Tensor) -> None:
    images = clean.repeat(4, 1, 1, 1)  # 32 images: four draws per natural image
    distances = [mean_distance(corrupt(images, name, s, seeded(0)), images) for s in SEVERITIES]
    check = SEVERITY_ORDER.get(name, _increasing)
    assert check(distances), f"{name}: {np.round(distances, 2)}"


# --------------------------------------------------------------------------- fidelity


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_match_reference(name: str, clean: torch.Tensor, pil_images, reference) -> None:
    for severity in SEVERITIES:
        ours = to_hwc_255(corrupt(clean, name, severity, seeded()))
        theirs = np.stack([reference[name](image, severity) for image in pil_images])
        difference = np.abs(ours - theirs).mean()
        assert difference < FIDELITY_TOLERANCES[name], f"severity {severity}: {difference}"


def test_motion_blur_matches_reference_at_given_angles(
    clean: torch.Tensor, clean_uint8: torch.Tensor
) -> None:
    reference = pytest.importorskip("imagecorruptions.corruptions")
    angles = torch.tensor([-44.0, -30.0, -12.5, 0.0, 7.0, 22.5, 33.3, 45.0], dtype=torch.float64)
    for params in CIFAR_SEVERITY_PARAMS["motion_blur"]:
        ours = to_hwc_255(_ops.motion_blur(clean, params.radius, params.sigma, angles).clamp(0, 1))
        theirs = np.stack(
            [
                np.clip(
                    reference._motion_blur(
                        image.permute(1, 2, 0).numpy(), params.radius, params.sigma, float(a)
                    ),
                    0,
                    255,
                )
                for image, a in zip(clean_uint8, angles)
            ]
        )
        assert np.abs(ours - theirs).mean() < FLOAT_TOLERANCE


def test_motion_blur_by_direction_equals_per_image_blur(clean: torch.Tensor) -> None:
    """A batch with few directions takes the shifted-window path, one image alone the gather
    path: both give the same floats, for every radius the corruptions use."""
    per_direction = _ops._IMAGES_PER_DIRECTION
    x = clean[:8].repeat(per_direction // 2, 1, 1, 1)
    angles = torch.tensor([-170.0, -45.0, 30.0, 100.0], dtype=torch.float64).repeat_interleave(per_direction)
    for radius, sigma in [(6, 1.8), (10, 2.0), (15, 5.0)]:
        batched = _ops.motion_blur(x, radius, sigma, angles)
        alone = torch.cat([_ops.motion_blur(x[i : i + 1], radius, sigma, angles[i : i + 1]) for i in range(len(x))])
        assert torch.equal(batched, alone)


@pytest.mark.parametrize("shape", [(32, 32), (12, 40)])
def test_chamfer_distance_equals_opencv(shape: tuple[int, int]) -> None:
    """Same float32 sums as cv2.distanceTransform(DIST_L2, 5), so the distances are equal, not
    close: sparse, dense and no edges at all, on square and oblong images."""
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    edges = np.concatenate([rng.random((12, 1, *shape)) < p for p in (0.003, 0.03, 0.3)])
    edges[0] = False
    ours = chamfer_distance(torch.from_numpy(edges), 20.0).numpy()
    theirs = [np.minimum(cv2.distanceTransform((~e[0]).astype(np.uint8), cv2.DIST_L2, 5), 20.0) for e in edges]
    np.testing.assert_array_equal(ours[:, 0], np.stack(theirs))
    assert (ours[0] == 20.0).all() and (ours[edges] == 0).all()


def test_glass_shuffle_matches_compiled_reference() -> None:
    """The reference shuffles in Numba with its own random stream; on an image holding each
    pixel's index, its output reveals the offsets it drew (d = 1 has no chains), which then
    must reproduce its output on a real image."""
    reference = pytest.importorskip("imagecorruptions.corruptions")
    h = w = 32
    index_image = np.repeat(np.arange(h * w).reshape(h, w, 1), 3, axis=2).astype(np.int64)
    moved = reference._shuffle_pixels_njit_glass_blur(h, w, index_image.copy(), (0.4, 1, 1), 7)[
        ..., 0
    ].ravel()
    positions = _glass_positions(h, w, 1)
    dy, dx = np.divmod(moved[positions] - positions + w + 1, w)  # offsets in {-1, 0}
    offsets = torch.tensor(np.stack([dy - 1, dx - 1], axis=-1))[None]
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3))
    theirs = reference._shuffle_pixels_njit_glass_blur(h, w, image.copy(), (0.4, 1, 1), 7)
    ours = glass_shuffle(torch.tensor(image).permute(2, 0, 1)[None], 1, offsets)[0].permute(1, 2, 0).numpy()
    assert np.array_equal(ours, theirs)
    assert (theirs != image).any()


@pytest.mark.parametrize("max_delta", [1, 2, 3])
def test_glass_shuffle_matches_sequential_loop(max_delta: int) -> None:
    """The reference loop (tuple "swap" on NumPy views, which copies) written out in Python."""
    h = w = 20
    rng = np.random.default_rng(max_delta)
    image = rng.integers(0, 1000, (h, w))
    offsets = rng.integers(-max_delta, max_delta, (len(_glass_positions(h, w, max_delta)), 2))
    expected = image.copy()
    k = 0
    for row in range(h - max_delta, max_delta, -1):
        for col in range(w - max_delta, max_delta, -1):
            dy, dx = offsets[k]
            expected[row, col] = expected[row + dy, col + dx]
            k += 1
    ours = glass_shuffle(torch.tensor(image)[None, None], max_delta, torch.tensor(offsets)[None])[0, 0]
    assert np.array_equal(ours.numpy(), expected)


class Replay:
    """Stands in for an ``np.random`` function, returning prepared draws in order."""

    def __init__(self, draws: list) -> None:
        self.draws = list(draws)

    def __call__(self, *args, **kwargs):
        return self.draws.pop(0)


def test_fog_matches_reference_with_replayed_draws(clean, pil_images, reference, monkeypatch) -> None:
    generator = torch.Generator().manual_seed(0)
    for severity, params in enumerate(CIFAR_SEVERITY_PARAMS["fog"], start=1):
        draws: list[torch.Tensor] = []

        def unit_uniform(shape):
            draws.append(torch.rand(shape, generator=generator, dtype=torch.float64))
            return draws[-1]

        plasma = plasma_fractal(len(pil_images), 32, params.wibble_decay, unit_uniform, clean)
        ours = to_hwc_255(fog_with_plasma(clean, params, plasma).clamp(0, 1))
        for i, image in enumerate(pil_images):
            own = [d[i].numpy() for d in draws]
            monkeypatch.setattr(
                np.random, "uniform", lambda low, high, size, own=own: low + (high - low) * own.pop(0)
            )
            theirs = reference["fog"](image, severity)
            assert np.abs(ours[i] - theirs).mean() < FLOAT_TOLERANCE


def test_snow_matches_reference_with_replayed_draws(clean, pil_images, reference, monkeypatch) -> None:
    generator = torch.Generator().manual_seed(1)
    n = len(pil_images)
    for severity, params in enumerate(CIFAR_SEVERITY_PARAMS["snow"], start=1):
        layer = params.mean + params.std * torch.randn(n, 1, 32, 32, generator=generator, dtype=torch.float64)
        angles = -135.0 + 90.0 * torch.rand(n, generator=generator, dtype=torch.float64)
        ours = to_hwc_255(snow_from_draws(clean.double(), params, layer, angles).clamp(0, 1))
        for i, image in enumerate(pil_images):
            monkeypatch.setattr(np.random, "normal", Replay([layer[i, 0].numpy().copy()]))
            monkeypatch.setattr(np.random, "uniform", Replay([float(angles[i])]))
            theirs = reference["snow"](image, severity)
            assert np.abs(ours[i] - theirs).mean() < FLOAT_TOLERANCE, f"severity {severity}"


def test_spatter_matches_reference_with_replayed_draws(clean, pil_images, reference, monkeypatch) -> None:
    """Covers both modes; water mode runs Canny, a chamfer distance transform and histogram
    equalisation, each reproduced in batched torch."""
    generator = torch.Generator().manual_seed(2)
    n = len(pil_images)
    for severity, params in enumerate(CIFAR_SEVERITY_PARAMS["spatter"], start=1):
        liquid = params.mean + params.std * torch.randn(
            n, 1, 32, 32, generator=generator, dtype=torch.float64
        )
        ours = to_hwc_255(spatter_from_draws(clean.double(), params, liquid).clamp(0, 1))
        theirs = []
        for i, image in enumerate(pil_images):
            monkeypatch.setattr(np.random, "normal", Replay([liquid[i, 0].numpy().copy()]))
            theirs.append(reference["spatter"](image, severity))
        assert np.abs(ours - np.stack(theirs)).mean() < FLOAT_TOLERANCE, f"severity {severity}"
        assert np.abs(ours - to_hwc_255(clean)).mean() > 0.5


def test_elastic_matches_reference_building_blocks(clean: torch.Tensor, clean_uint8: torch.Tensor) -> None:
    """The package's elastic transform lacks the CIFAR affine step, so the CIFAR-10-C function
    is assembled here from the calls it makes: cv2.getAffineTransform / warpAffine,
    skimage.filters.gaussian and scipy.ndimage.map_coordinates."""
    cv2 = pytest.importorskip("cv2")
    from scipy.ndimage import map_coordinates
    from skimage.filters import gaussian

    rng = np.random.default_rng(0)
    n = len(clean)
    for params in CIFAR_SEVERITY_PARAMS["elastic_transform"]:
        alpha, sigma, jitter = params.alpha * 32, params.sigma * 32, params.affine_jitter * 32
        moves = rng.uniform(-jitter, jitter, (n, 3, 2))
        noise_dx, noise_dy = rng.uniform(-1, 1, (2, n, 32, 32))
        ours = to_hwc_255(
            elastic_from_draws(
                clean, params, torch.tensor(moves), torch.tensor(noise_dx), torch.tensor(noise_dy)
            ).clamp(0, 1)
        )
        for i in range(n):
            image = clean_uint8[i].permute(1, 2, 0).numpy().astype(np.float32) / 255.0
            pts1 = np.float32([[26, 26], [26, 6], [6, 6]])
            matrix = cv2.getAffineTransform(pts1, (pts1 + moves[i]).astype(np.float32))
            image = cv2.warpAffine(image, matrix, (32, 32), borderMode=cv2.BORDER_REFLECT_101)
            dx = (gaussian(noise_dx[i], sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)
            dy = (gaussian(noise_dy[i], sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)
            x, y, z = np.meshgrid(np.arange(32), np.arange(32), np.arange(3))
            coords = (y + dy[..., None]).reshape(-1), (x + dx[..., None]).reshape(-1), z.reshape(-1)
            theirs = (
                np.clip(map_coordinates(image, coords, order=1, mode="reflect").reshape(32, 32, 3), 0, 1)
                * 255
            )
            assert np.abs(ours[i] - theirs).mean() < FLOAT_TOLERANCE


# --------------------------------------------------------------------------- statistics

GREY = torch.full((8, 3, 32, 32), 0.5)


@pytest.mark.parametrize("severity", SEVERITIES)
def test_additive_and_multiplicative_noise_std(severity: int) -> None:
    # On mid-grey no value is clipped (the largest std, .1, puts 0/1 five sigma away), so the
    # residual std is the noise std; 24576 samples estimate it to about 0.5%.
    residual = corrupt(GREY, "gaussian_noise", severity, seeded()) - GREY
    std = CIFAR_SEVERITY_PARAMS["gaussian_noise"][severity - 1]
    assert abs(float(residual.mean())) < 5 * std / np.sqrt(residual.numel())
    assert float(residual.std()) == pytest.approx(std, rel=0.03)
    residual = corrupt(GREY, "speckle_noise", severity, seeded()) - GREY
    assert float(residual.std()) == pytest.approx(
        0.5 * CIFAR_SEVERITY_PARAMS["speckle_noise"][severity - 1], rel=0.03
    )


@pytest.mark.parametrize("severity", SEVERITIES)
def test_shot_noise_is_poisson(severity: int) -> None:
    rate = CIFAR_SEVERITY_PARAMS["shot_noise"][severity - 1]
    out = corrupt(GREY, "shot_noise", severity, seeded())
    counts = out * rate  # Poisson(0.5 * rate), mean and variance 0.5 * rate
    assert torch.allclose(counts, counts.round(), atol=1e-3)
    assert float(counts.mean()) == pytest.approx(0.5 * rate, abs=4 * np.sqrt(0.5 * rate / counts.numel()))
    assert float(counts.var()) == pytest.approx(0.5 * rate, rel=0.05)


@pytest.mark.parametrize("severity", SEVERITIES)
def test_impulse_noise_flips_the_stated_fraction(severity: int) -> None:
    amount = CIFAR_SEVERITY_PARAMS["impulse_noise"][severity - 1]
    out = corrupt(GREY, "impulse_noise", severity, seeded())
    flipped = out != 0.5
    n = out.numel()
    assert bool(((out[flipped] == 0) | (out[flipped] == 1)).all())
    assert float(flipped.float().mean()) == pytest.approx(amount, abs=5 * np.sqrt(amount * (1 - amount) / n))
    salt_share = float((out == 1).sum()) / int(flipped.sum())
    assert salt_share == pytest.approx(0.5, abs=5 * np.sqrt(0.25 / int(flipped.sum())))


@pytest.mark.parametrize("severity", SEVERITIES)
def test_brightness_and_contrast_hand_values(severity: int, clean: torch.Tensor) -> None:
    dim = clean * 0.6  # HSV value <= 0.6, so adding at most 0.3 never clips
    shift = CIFAR_SEVERITY_PARAMS["brightness"][severity - 1]
    out = corrupt(dim, "brightness", severity, seeded())
    assert torch.allclose(out.amax(1), dim.amax(1) + shift, atol=1e-5)
    # saturation (max - min) / max keeps its value: min scales with max
    assert torch.allclose(out.amin(1) * dim.amax(1), dim.amin(1) * out.amax(1), atol=1e-5)
    factor = CIFAR_SEVERITY_PARAMS["contrast"][severity - 1]
    out = corrupt(clean, "contrast", severity, seeded())
    means = clean.mean((2, 3), keepdim=True)
    assert torch.allclose(out, means + factor * (clean - means), atol=1e-6)


@pytest.mark.parametrize(
    "name", ["motion_blur", "glass_blur", "elastic_transform", "zoom_blur", "defocus_blur"]
)
def test_spatial_corruptions_keep_mean_intensity(name: str, clean: torch.Tensor) -> None:
    for severity in SEVERITIES:
        out = corrupt(clean, name, severity, seeded(severity))
        assert abs(float(out.mean() - clean.mean())) < 0.01


@pytest.mark.parametrize("severity", SEVERITIES)
def test_fog_on_grey_spans_the_predicted_range(severity: int) -> None:
    # plasma spans exactly [0, 1] on a 32x32 map, max_val is 0.5:
    # out = (0.5 + s * plasma) * 0.5 / (0.5 + s) runs from 0.25 / (0.5 + s) to 0.5
    strength = CIFAR_SEVERITY_PARAMS["fog"][severity - 1].strength
    out = corrupt(GREY, "fog", severity, seeded())
    assert torch.allclose(out.amin((1, 2, 3)), torch.full((8,), 0.25 / (0.5 + strength)), atol=1e-5)
    assert torch.allclose(out.amax((1, 2, 3)), torch.full((8,), 0.5), atol=1e-5)


@pytest.mark.parametrize("severity", SEVERITIES)
def test_frost_blends_a_texture(severity: int) -> None:
    params = CIFAR_SEVERITY_PARAMS["frost"][severity - 1]
    black = torch.zeros(8, 3, 32, 32)
    out = corrupt(black, "frost", severity, seeded())  # frost_weight * texture
    assert float(out.max()) <= params.frost_weight + 1e-6 and float(out.mean()) > 0.1 * params.frost_weight
    out = corrupt(torch.full_like(black, 0.5), "frost", severity, seeded())
    assert float(out.min()) >= 0.5 * params.image_weight - 1e-6


@pytest.mark.parametrize("severity", SEVERITIES)
def test_snow_whitens_and_adds_flakes(severity: int) -> None:
    # on black: blend * 0 + (1 - blend) * max(0, 0 * 1.5 + 0.5), plus non-negative flakes
    blend = CIFAR_SEVERITY_PARAMS["snow"][severity - 1].blend
    out = corrupt(torch.zeros(8, 3, 32, 32), "snow", severity, seeded())
    floor = (1 - blend) * 0.5
    assert float(out.min()) >= floor - 1e-6
    assert float((out > floor + 0.05).float().mean()) > 0.01


@pytest.mark.parametrize("severity", SEVERITIES)
def test_spatter_colours(severity: int) -> None:
    if CIFAR_SEVERITY_PARAMS["spatter"][severity - 1].mud:
        # on white: 1 - m + brown * m, the same m in every channel
        out = corrupt(torch.ones(8, 3, 32, 32), "spatter", severity, seeded())
        mask = (1 - out) / (1 - torch.tensor([63.0, 42.0, 20.0])[None, :, None, None] / 255)
    else:
        # on black: m * turquoise
        out = corrupt(torch.zeros(8, 3, 32, 32), "spatter", severity, seeded())
        mask = out / (torch.tensor([175.0, 238.0, 238.0])[None, :, None, None] / 255)
    assert float(mask.amax()) > 0.1
    assert torch.allclose(mask[:, 0], mask[:, 1], atol=1e-5) and torch.allclose(
        mask[:, 1], mask[:, 2], atol=1e-5
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", CORRUPTIONS)
def test_cuda_matches_cpu_with_a_cpu_generator(name: str, clean: torch.Tensor) -> None:
    # With a CPU generator both runs use the same draws; only float arithmetic differs.
    on_cpu = corrupt(clean, name, 3, seeded())
    on_cuda = corrupt(clean.cuda(), name, 3, seeded())
    assert on_cuda.is_cuda
    assert mean_distance(on_cuda.cpu(), on_cpu) < FLOAT_TOLERANCE
