"""Training interventions of the repeatability study, as `BatchObjective`s of the one training loop.

- `AugMixObjective`: AugMix (Hendrycks et al., ICLR 2020; google-research/augmix) with its
  Jensen-Shannon consistency loss.
- `StabilityObjective`: stability training (Zheng, Song, Leung & Goodfellow, CVPR 2016).
- `PatchGaussianObjective`: Patch Gaussian (Lopes, Yin, Poole, Gilmer & Cubuk, 2019).
- `GaussianNoiseObjective`: Gaussian noise on the whole image (the baseline of Lopes et al.).
- `RotationHeadObjective`: an auxiliary rotation-prediction head (Hendrycks, Mazeika, Kadavath &
  Song, NeurIPS 2019; hendrycks/ss-ood), on a model wrapped in `WithRotationHead`.

Every objective first takes the standard crop and flip of the settings (`training.crop_and_flip`,
one draw per image, shared by all views of an image), then its own augmentation. Augmentation is
batched on tensors, with every random number drawn from the run's seeded generator (per-image
parameters as tensors; no per-image Python, no PIL), so resumed and data-parallel runs replay it.
Multi-view objectives run their views through one `forward` call. Mixup is not combined with
them (a `ValueError` at the first step). Each `identity()` holds the objective's parameters: a
checkpoint written with other parameters is another run and is not resumed. `build_objective(name,
**params)` builds one from a config's plain values (and from an identity).

AugMix as in the reference (``augmentations.py`` and ``cifar.py``): the 9 ops ``AUGMIX_OPS`` (the
colour, contrast, brightness and sharpness ops are left out, as the reference does by default,
because they overlap the corruptions of the test set); ``width`` chains of ``depth`` ops (depth -1:
uniform in 1..3 per chain); every op draws its own ``level ~ U(0.1, severity)`` and maps it to a
magnitude as the reference does at 32 px (rotate ``int(level * 3)`` degrees, shear ``level * 0.03``,
translate ``int(level * W / 30)`` px, posterize to ``4 - int(level * 0.4)`` bits, solarize above
``256 - int(level * 25.6)``; random signs for the geometric ops); chain weights ``w ~ Dirichlet(alpha)``,
``m ~ Beta(alpha, alpha)``; ``mixed = (1 - m) x + m sum_i w_i chain_i(x)``. The reference mixes in
normalised space; the weights sum to 1, so mixing in [0, 1] and normalising afterwards (the loop
does) is the same image. Its ops work on 8-bit PIL images: here each op works on the 0..255 levels
of the float images and rounds its output back to them, with PIL's definitions (autocontrast and
equalize per channel, bilinear affine warps about the pixel grid's corner, black outside).
The loss is ``CE(clean) + js_weight * JS(p_clean, p_aug1, p_aug2)`` with ``js_weight = 12``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robustflow.data.augment import to_unit_float
from robustflow.training import (
    BatchLoss,
    BatchObjective,
    BatchViews,
    Forward,
    LossFn,
    TrainBatch,
    TrainSettings,
    crop_and_flip,
)

AUGMIX_OPS = ("autocontrast", "equalize", "posterize", "rotate", "solarize", "shear_x", "shear_y", "translate_x",
              "translate_y")
# The probability floor of the JS mixture, as the reference clamps it.
JS_MIXTURE_FLOOR = 1e-7
ROTATIONS = 4  # 0, 90, 180, 270 degrees


# ----------------------------------------------------------------------------- 8-bit image operations
#
# Float NCHW images in [0, 1]; per-image parameters are tensors of shape (N,) (or numbers for all).


def _levels(images: torch.Tensor) -> torch.Tensor:
    """The 0..255 levels of float images in [0, 1], as int64."""
    return images.mul(255).round_().clamp_(0, 255).long()


def _unit(levels: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return levels.to(like.dtype).div_(255)


def _per_image(value, images: torch.Tensor, dtype=None) -> torch.Tensor:
    """``value`` (a number or one per image) as a tensor of shape (N,) on the images' device."""
    tensor = torch.as_tensor(value, device=images.device, dtype=dtype)
    if tensor.ndim == 0:
        tensor = tensor.expand(images.shape[0])
    if tensor.shape != (images.shape[0],):
        raise ValueError(f"expected one parameter per image ({images.shape[0]}), got shape {tuple(tensor.shape)}")
    return tensor


def autocontrast(images: torch.Tensor) -> torch.Tensor:
    """PIL's ``ImageOps.autocontrast`` (cutoff 0) per image and channel: levels ``lo..hi`` stretched to 0..255
    (``int(v * 255 / (hi - lo) - lo * 255 / (hi - lo))``); a channel of one level is unchanged."""
    levels = _levels(images)
    flat = levels.flatten(2)
    lo = flat.amin(2, keepdim=True).unsqueeze(-1)
    hi = flat.amax(2, keepdim=True).unsqueeze(-1)
    span = (hi - lo).clamp(min=1).double()
    scale = 255.0 / span
    stretched = torch.floor(levels.double() * scale - lo.double() * scale).clamp(0, 255).long()
    return _unit(torch.where(hi > lo, stretched, levels), images)


def equalize(images: torch.Tensor) -> torch.Tensor:
    """PIL's ``ImageOps.equalize`` per image and channel, from sorted levels (no per-image loop).

    With ``h`` the histogram, ``below[i]`` the count of pixels darker than level i and ``last`` the
    count of the brightest level present: ``step = (pixels - last) // 255`` and level i becomes
    ``(step // 2 + below[i]) // step``; a channel with one level, or ``step == 0``, is unchanged.
    """
    levels = _levels(images)
    n, c, h, w = levels.shape
    rows = levels.reshape(n * c, h * w)
    ordered = rows.sort(dim=1).values
    bins = torch.arange(256, device=levels.device).expand(n * c, 256).contiguous()
    below = torch.searchsorted(ordered, bins, right=False)  # pixels < i
    upto = torch.searchsorted(ordered, bins, right=True)  # pixels <= i
    histogram = upto - below
    last = histogram.gather(1, ordered[:, -1:])  # pixels at the brightest level
    step = (h * w - last) // 255
    lut = ((step // 2 + below) // step.clamp(min=1)).clamp(max=255)
    keep = ((histogram > 0).sum(1, keepdim=True) <= 1) | (step == 0)
    equalized = torch.where(keep, rows, lut.gather(1, rows))
    return _unit(equalized.reshape(n, c, h, w), images)


def posterize(images: torch.Tensor, bits) -> torch.Tensor:
    """Keep the top ``bits`` (1..8; 8 is the identity) of every 8-bit level, as PIL's ``ImageOps.posterize``."""
    bits = _per_image(bits, images, torch.long)
    if bool(((bits < 1) | (bits > 8)).any()):
        raise ValueError(f"posterize bits must lie in 1..8, got {bits.tolist()}")
    mask = (255 - (2 ** (8 - bits) - 1)).view(-1, 1, 1, 1)
    return _unit(_levels(images) & mask, images)


def solarize(images: torch.Tensor, threshold) -> torch.Tensor:
    """Invert (255 - v) every level v >= ``threshold`` (0..256; 256 is the identity), as PIL's ``ImageOps.solarize``."""
    threshold = _per_image(threshold, images, torch.long).view(-1, 1, 1, 1)
    levels = _levels(images)
    return _unit(torch.where(levels >= threshold, 255 - levels, levels), images)


def affine(images: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Warp each image by its (2, 3) matrix ``(a, b, c; d, e, f)`` as PIL's ``Image.transform(AFFINE, BILINEAR)``.

    The output pixel at (x, y) samples the input at ``(a x' + b y' + c, d x' + e y' + f)`` with
    ``x' = x + 0.5``, ``y' = y + 0.5`` (coordinates from the image's top-left corner); bilinear with
    the border's values inside the image, black where the sample point lies outside it. The result is
    rounded to the 8-bit levels.
    """
    n, _, h, w = images.shape
    if matrices.shape != (n, 2, 3):
        raise ValueError(f"expected one (2, 3) matrix per image, got {tuple(matrices.shape)}")
    m = matrices.to(device=images.device, dtype=torch.float32)  # pixel coordinates < 2^10: float32 is exact enough
    ys = torch.arange(h, device=images.device, dtype=torch.float32).add_(0.5).view(1, h, 1, 1)
    xs = torch.arange(w, device=images.device, dtype=torch.float32).add_(0.5).view(1, 1, w, 1)
    # (N, H, W, 2): the input point (x_in, y_in) of every output pixel
    points = xs * m[:, :, 0].view(n, 1, 1, 2) + ys * m[:, :, 1].view(n, 1, 1, 2) + m[:, :, 2].view(n, 1, 1, 2)
    size = torch.tensor([w, h], device=images.device, dtype=torch.float32)
    inside = ((points >= 0) & (points < size)).all(-1)
    grid = (points * (2 / size) - 1).to(images.dtype)
    sampled = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    warped = sampled * inside.unsqueeze(1).to(images.dtype)
    return warped.mul(255).round_().clamp_(0, 255).div_(255)


def _matrices(images: torch.Tensor, a, b, c, d, e, f) -> torch.Tensor:
    values = [_per_image(v, images, torch.float64) for v in (a, b, c, d, e, f)]
    return torch.stack(values, dim=1).view(-1, 2, 3)


def rotate(images: torch.Tensor, degrees) -> torch.Tensor:
    """Rotate counter-clockwise by ``degrees`` about the image centre, as PIL's ``Image.rotate(BILINEAR)``."""
    h, w = images.shape[-2:]
    angle = -torch.deg2rad(_per_image(degrees, images, torch.float64))
    cos, sin = torch.cos(angle), torch.sin(angle)
    cx, cy = w / 2, h / 2
    return affine(images, _matrices(images, cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy))


def shear_x(images: torch.Tensor, factor) -> torch.Tensor:
    """Shear along x: the input of ``(x, y)`` is ``(x + factor * y, y)`` (PIL's AFFINE ``(1, factor, 0, 0, 1, 0)``)."""
    return affine(images, _matrices(images, 1, factor, 0, 0, 1, 0))


def shear_y(images: torch.Tensor, factor) -> torch.Tensor:
    """Shear along y: the input of ``(x, y)`` is ``(x, y + factor * x)`` (PIL's AFFINE ``(1, 0, 0, factor, 1, 0)``)."""
    return affine(images, _matrices(images, 1, 0, 0, factor, 1, 0))


def translate_x(images: torch.Tensor, pixels) -> torch.Tensor:
    """Move the content right by ``pixels`` (left if negative), black where nothing comes in."""
    pixels = _per_image(pixels, images, torch.float64)
    return affine(images, _matrices(images, 1, 0, -pixels, 0, 1, 0))


def translate_y(images: torch.Tensor, pixels) -> torch.Tensor:
    """Move the content down by ``pixels`` (up if negative), black where nothing comes in."""
    pixels = _per_image(pixels, images, torch.float64)
    return affine(images, _matrices(images, 1, 0, 0, 0, 1, -pixels))


# ----------------------------------------------------------------------------- AugMix


def int_parameter(level: torch.Tensor, maxval: float) -> torch.Tensor:
    """The reference's ``int(level * maxval / 10)`` (levels are positive: floor)."""
    return torch.floor(level * maxval / 10)


def float_parameter(level: torch.Tensor, maxval: float) -> torch.Tensor:
    """The reference's ``level * maxval / 10``."""
    return level * maxval / 10


def _augmix_op(name: str) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """``(images, level, sign) -> images`` for op ``name``, with the reference's level-to-magnitude mapping."""
    if name == "autocontrast":
        return lambda x, level, sign: autocontrast(x)
    if name == "equalize":
        return lambda x, level, sign: equalize(x)
    if name == "posterize":
        return lambda x, level, sign: posterize(x, 4 - int_parameter(level, 4).long())
    if name == "solarize":
        return lambda x, level, sign: solarize(x, 256 - int_parameter(level, 256).long())
    if name == "rotate":
        return lambda x, level, sign: rotate(x, int_parameter(level, 30) * sign)
    if name == "shear_x":
        return lambda x, level, sign: shear_x(x, float_parameter(level, 0.3) * sign)
    if name == "shear_y":
        return lambda x, level, sign: shear_y(x, float_parameter(level, 0.3) * sign)
    if name == "translate_x":
        return lambda x, level, sign: translate_x(x, int_parameter(level, x.shape[-1] / 3) * sign)
    if name == "translate_y":
        return lambda x, level, sign: translate_y(x, int_parameter(level, x.shape[-2] / 3) * sign)
    raise ValueError(f"unknown AugMix op {name!r}; ops: {', '.join(AUGMIX_OPS)}")


def _uniform(shape, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def apply_ops(images: torch.Tensor, choice: torch.Tensor, level: torch.Tensor, sign: torch.Tensor,
              ops: Sequence[str] = AUGMIX_OPS) -> torch.Tensor:
    """Image i gets op ``ops[choice[i]]`` at ``level[i]`` with ``sign[i]`` (+-1); ``choice[i] < 0``: unchanged.

    One call per op kind on the images that drew it (a loop over the <= 9 ops, not over images).
    """
    out = images.clone()
    for index, name in enumerate(ops):
        chosen = (choice == index).nonzero().squeeze(1)
        if chosen.numel():
            out[chosen] = _augmix_op(name)(images[chosen], level[chosen], sign[chosen])
    return out


def augment_and_mix(images: torch.Tensor, generator: torch.Generator, *, severity: float = 3.0, width: int = 3,
                    depth: int = -1, alpha: float = 1.0, ops: Sequence[str] = AUGMIX_OPS,
                    m: torch.Tensor | None = None) -> torch.Tensor:
    """AugMix of float images in [0, 1], all random parameters per image (see the module doc).

    ``m`` (one per image) replaces the draw of the skip weight ``m ~ Beta(alpha, alpha)``: ``m = 0``
    returns the images. Torch samples neither Dirichlet nor Beta with a generator, so those come
    from a NumPy generator seeded by a draw from ``generator`` (as `augment.mixup` does).
    """
    n, device = images.shape[0], images.device
    total = width * n  # chain j of image i is row j * n + i
    depths = (torch.full((total,), depth, device=device) if depth > 0 else
              torch.randint(1, 4, (total,), generator=generator, device=generator.device).to(device))
    chains = images.repeat(width, 1, 1, 1)
    for step in range(int(depths.max()) if total else 0):
        choice = torch.randint(0, len(ops), (total,), generator=generator, device=generator.device).to(device)
        level = 0.1 + (severity - 0.1) * _uniform(total, generator, device)
        sign = torch.where(_uniform(total, generator, device) < 0.5, 1.0, -1.0).to(images.dtype)
        chains = apply_ops(chains, torch.where(depths > step, choice, -1), level, sign, ops)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    rng = np.random.default_rng(seed)
    weights = torch.as_tensor(rng.dirichlet([alpha] * width, size=n), dtype=images.dtype, device=device)
    drawn_m = torch.as_tensor(rng.beta(alpha, alpha, size=n), dtype=images.dtype, device=device)
    m = drawn_m if m is None else torch.as_tensor(m, dtype=images.dtype, device=device).expand(n)
    mix = (weights.t().reshape(width, n, 1, 1, 1) * chains.view(width, *images.shape)).sum(0)
    m = m.view(n, 1, 1, 1)
    return (1 - m) * images + m * mix


def jensen_shannon(*logits: torch.Tensor) -> torch.Tensor:
    """``mean_i KL(p_i || M)`` of the softmax distributions ``p_i``, ``M = clamp(mean_i p_i, 1e-7, 1)``,
    summed over classes and averaged over the batch: the reference's
    ``mean_i F.kl_div(log M, p_i, reduction="batchmean")``. 0 when all ``p_i`` agree."""
    probabilities = [row.float().softmax(dim=1) for row in logits]
    mixture = torch.stack(probabilities).mean(0).clamp(JS_MIXTURE_FLOOR, 1).log()
    return sum(F.kl_div(mixture, p, reduction="batchmean") for p in probabilities) / len(probabilities)


# ----------------------------------------------------------------------------- noise


def _normal(shape, generator: torch.Generator, device) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


def gaussian_noise(images: torch.Tensor, sigma: float, generator: torch.Generator, clip: bool = True) -> torch.Tensor:
    """``images + N(0, sigma^2)`` per pixel and channel, clipped to [0, 1] when ``clip``."""
    noisy = images + sigma * _normal(images.shape, generator, images.device)
    return noisy.clamp(0, 1) if clip else noisy


def patch_gaussian(images: torch.Tensor, max_width: int, max_sigma: float,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch Gaussian (Lopes et al. 2019) per image: ``(images, patch masks (N, 1, H, W))``.

    Each image draws a side ``W ~ U{1..max_width}``, a noise level ``sigma ~ U(0, max_sigma)`` and a
    centre pixel uniform over the image; inside the square of side W centred there (cut by the
    border) it gets ``clip(x + N(0, sigma^2), 0, 1)``, outside it is unchanged.
    """
    n, _, h, w = images.shape
    device = images.device
    side = torch.randint(1, max_width + 1, (n,), generator=generator, device=generator.device).to(device)
    sigma = max_sigma * _uniform(n, generator, device)
    centre_y = torch.randint(0, h, (n,), generator=generator, device=generator.device).to(device)
    centre_x = torch.randint(0, w, (n,), generator=generator, device=generator.device).to(device)
    noise = _normal(images.shape, generator, device)
    top, left = centre_y - side // 2, centre_x - side // 2
    rows = torch.arange(h, device=device).view(1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, w)
    in_rows = (rows >= top.view(n, 1, 1)) & (rows < (top + side).view(n, 1, 1))
    in_cols = (cols >= left.view(n, 1, 1)) & (cols < (left + side).view(n, 1, 1))
    mask = (in_rows & in_cols).unsqueeze(1)
    noisy = (images + sigma.view(n, 1, 1, 1) * noise).clamp(0, 1)
    return torch.where(mask, noisy, images), mask


# ----------------------------------------------------------------------------- rotation


def rotated_copies(images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Each square image rotated by a random multiple of 90 degrees: ``(rotated, labels)``; label k means
    ``torch.rot90(image, k, dims=(-2, -1))`` (k quarter turns counter-clockwise), k uniform in 0..3."""
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"rotation prediction needs square images, got {tuple(images.shape[-2:])}")
    n = images.shape[0]
    labels = torch.randint(0, ROTATIONS, (n,), generator=generator, device=generator.device).to(images.device)
    turns = torch.stack([torch.rot90(images, k, dims=(-2, -1)) for k in range(ROTATIONS)])
    return turns[labels, torch.arange(n, device=images.device)], labels


class WithRotationHead(nn.Module):
    """A classifier and a 4-way rotation head on its penultimate features (Hendrycks et al. 2019).

    ``model`` follows timm's conventions: ``forward_features``, ``forward_head(x, pre_logits=True)``
    (the pooled features the classifier sees) and ``get_classifier()`` (robustflow's ``small_cnn``
    and ``wide_resnet40_2`` and the timm models do); ``feature_dim`` defaults to ``model.num_features``.
    In eval mode the wrapper returns the task logits only, so validation and every evaluation see
    the classifier; in training mode it returns ``[task logits | 4 rotation logits]`` for
    `RotationHeadObjective`, and must be trained with that objective.

    The head is a submodule, so checkpoints and resume include it. The study builds
    ``WithRotationHead(create_model(name, num_classes, ...))`` for its rotation runs; a saved state
    loads back into the same wrapper, or, through `task_state_dict`, into the plain model.
    """

    def __init__(self, model: nn.Module, feature_dim: int | None = None):
        super().__init__()
        for method in ("forward_features", "forward_head", "get_classifier"):
            if not callable(getattr(model, method, None)):
                raise TypeError(f"WithRotationHead needs a model with timm's {method}(); {type(model).__name__} "
                                "has none")
        feature_dim = feature_dim if feature_dim is not None else getattr(model, "num_features", None)
        if not isinstance(feature_dim, int) or feature_dim < 1:
            raise ValueError(f"feature_dim must be the model's penultimate width, got {feature_dim!r}")
        self.model = model
        self.rotation_head = nn.Linear(feature_dim, ROTATIONS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        logits = self.model.get_classifier()(features)
        if not self.training:
            return logits
        return torch.cat([logits, self.rotation_head(features)], dim=1)


def task_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state of a `WithRotationHead` without its rotation head, as the wrapped model's state dict."""
    prefix = "model."
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


# ----------------------------------------------------------------------------- objectives


def _clean_views(batch: TrainBatch, settings: TrainSettings, generator: torch.Generator,
                 name: str) -> torch.Tensor:
    if settings.mixup_alpha > 0:
        raise ValueError(f"{name} training does not combine with mixup (training.mixup_alpha = "
                         f"{settings.mixup_alpha}); set mixup_alpha to 0")
    return crop_and_flip(to_unit_float(batch.images), settings, generator)


def _check_non_negative(**values) -> None:
    for name, value in values.items():
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


@dataclass(frozen=True)
class AugMixObjective(BatchObjective):
    """AugMix with the Jensen-Shannon consistency loss (see the module doc).

    Views: the clean (cropped, flipped) image and two independent AugMix images of it; the loss is
    ``loss_fn(clean logits) + js_weight * jensen_shannon(clean, aug1, aug2)`` (``loss_fn``: the run's
    task loss, cross-entropy by default), from one forward pass of the three views. ``jsd=False`` is
    the reference's ``--no-jsd``: the task loss on one AugMix image per image, nothing else.
    History columns: ``train_task_loss`` and ``train_js``.
    """

    severity: float = 3.0
    width: int = 3
    depth: int = -1
    alpha: float = 1.0
    js_weight: float = 12.0
    ops: tuple[str, ...] = AUGMIX_OPS
    jsd: bool = True

    def __post_init__(self):
        if not 0.1 <= self.severity <= 10:
            raise ValueError(f"AugMix severity must lie in [0.1, 10], got {self.severity}")
        if self.width < 1 or self.depth == 0 or self.depth < -1:
            raise ValueError(f"AugMix width must be >= 1 and depth >= 1 or -1 (random 1..3), got width "
                             f"{self.width}, depth {self.depth}")
        if not self.alpha > 0:
            raise ValueError(f"AugMix alpha must be > 0, got {self.alpha}")
        _check_non_negative(js_weight=self.js_weight)
        object.__setattr__(self, "ops", tuple(self.ops))
        unknown = sorted(set(self.ops) - set(AUGMIX_OPS))
        if unknown or not self.ops:
            raise ValueError(f"AugMix ops must be a non-empty subset of {list(AUGMIX_OPS)}, got {list(self.ops)}")

    def identity(self) -> dict:
        return {"name": "augmix", "severity": float(self.severity), "width": int(self.width),
                "depth": int(self.depth), "alpha": float(self.alpha), "js_weight": float(self.js_weight),
                "ops": list(self.ops), "jsd": bool(self.jsd)}

    def _augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return augment_and_mix(images, generator, severity=self.severity, width=self.width, depth=self.depth,
                               alpha=self.alpha, ops=self.ops)

    def views(self, batch: TrainBatch, settings: TrainSettings, generator: torch.Generator) -> BatchViews:
        clean = _clean_views(batch, settings, generator, "AugMix")
        if not self.jsd:
            return BatchViews(batch.labels, {"images": self._augment(clean, generator)})
        aug1, aug2 = self._augment(torch.cat([clean, clean]), generator).chunk(2)
        return BatchViews(batch.labels, {"images": clean, "aug1": aug1, "aug2": aug2})

    def loss(self, forward: Forward, views: BatchViews, loss_fn: LossFn) -> BatchLoss:
        if not self.jsd:
            logits = forward(views.per_sample["images"])
            return BatchLoss(loss_fn(logits, views.labels), logits)
        images = torch.cat([views.per_sample[name] for name in ("images", "aug1", "aug2")])
        clean, aug1, aug2 = forward(images).float().chunk(3)
        task = loss_fn(clean, views.labels)
        js = jensen_shannon(clean, aug1, aug2)
        return BatchLoss(task + self.js_weight * js, clean, {"task_loss": task, "js": js})


@dataclass(frozen=True)
class StabilityObjective(BatchObjective):
    """Stability training: ``loss_fn(f(x)) + alpha * KL(p(x) || p(x'))``, ``x' = x + N(0, sigma^2)`` per pixel.

    Only the clean image gets the task loss; the KL (summed over classes, batch mean) carries
    gradients through both predictions. As in Zheng et al. the noisy copy is not clipped to [0, 1].
    History columns: ``train_task_loss`` and ``train_stability``.
    """

    alpha: float
    sigma: float

    def __post_init__(self):
        _check_non_negative(alpha=self.alpha, sigma=self.sigma)

    def identity(self) -> dict:
        return {"name": "stability", "alpha": float(self.alpha), "sigma": float(self.sigma)}

    def views(self, batch: TrainBatch, settings: TrainSettings, generator: torch.Generator) -> BatchViews:
        clean = _clean_views(batch, settings, generator, "stability")
        noisy = gaussian_noise(clean, self.sigma, generator, clip=False)
        return BatchViews(batch.labels, {"images": clean, "noisy": noisy})

    def loss(self, forward: Forward, views: BatchViews, loss_fn: LossFn) -> BatchLoss:
        both = torch.cat([views.per_sample["images"], views.per_sample["noisy"]])
        clean, noisy = forward(both).float().chunk(2)
        task = loss_fn(clean, views.labels)
        stability = F.kl_div(noisy.log_softmax(1), clean.log_softmax(1), log_target=True, reduction="batchmean")
        return BatchLoss(task + self.alpha * stability, clean, {"task_loss": task, "stability": stability})


@dataclass(frozen=True)
class _SingleViewObjective(BatchObjective):
    """Train on one augmented view per image with the task loss."""

    def _augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def views(self, batch: TrainBatch, settings: TrainSettings, generator: torch.Generator) -> BatchViews:
        clean = _clean_views(batch, settings, generator, self.identity()["name"])
        return BatchViews(batch.labels, {"images": self._augment(clean, generator)})

    def loss(self, forward: Forward, views: BatchViews, loss_fn: LossFn) -> BatchLoss:
        logits = forward(views.per_sample["images"])
        return BatchLoss(loss_fn(logits, views.labels), logits)


@dataclass(frozen=True)
class PatchGaussianObjective(_SingleViewObjective):
    """Patch Gaussian (`patch_gaussian`): every training image gets noise in one random square patch."""

    max_width: int
    max_sigma: float

    def __post_init__(self):
        if isinstance(self.max_width, bool) or not isinstance(self.max_width, int) or self.max_width < 1:
            raise ValueError(f"max_width must be an int >= 1 (pixels), got {self.max_width!r}")
        _check_non_negative(max_sigma=self.max_sigma)

    def identity(self) -> dict:
        return {"name": "patch_gaussian", "max_width": int(self.max_width), "max_sigma": float(self.max_sigma)}

    def _augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return patch_gaussian(images, self.max_width, self.max_sigma, generator)[0]


@dataclass(frozen=True)
class GaussianNoiseObjective(_SingleViewObjective):
    """Gaussian data augmentation: every training image becomes ``clip(x + N(0, sigma^2), 0, 1)``."""

    sigma: float

    def __post_init__(self):
        _check_non_negative(sigma=self.sigma)

    def identity(self) -> dict:
        return {"name": "gaussian_noise", "sigma": float(self.sigma)}

    def _augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return gaussian_noise(images, self.sigma, generator)


@dataclass(frozen=True)
class RotationHeadObjective(BatchObjective):
    """Rotation prediction as an auxiliary task: ``loss_fn(task logits of x) + weight * CE(rotation logits of
    rot(x), k)`` with one copy per image rotated by ``k * 90`` degrees, k uniform in 0..3 (`rotated_copies`).

    The model must be a `WithRotationHead`. Clean and rotated copies go through one forward pass;
    only the clean images get the task loss, only the rotated copies the rotation loss.
    ``weight`` 0.5 is the default of hendrycks/ss-ood, which rotates every image all four ways
    instead of one random way (4 forward passes' worth per image instead of 2).
    History columns: ``train_task_loss``, ``train_rotation_loss`` and ``train_rotation_top1``.
    """

    weight: float = 0.5

    def __post_init__(self):
        _check_non_negative(weight=self.weight)

    def identity(self) -> dict:
        return {"name": "rotation_head", "weight": float(self.weight)}

    def views(self, batch: TrainBatch, settings: TrainSettings, generator: torch.Generator) -> BatchViews:
        clean = _clean_views(batch, settings, generator, "rotation-head")
        rotated, rotation = rotated_copies(clean, generator)
        return BatchViews(batch.labels, {"images": clean, "rotated": rotated, "rotation": rotation})

    def loss(self, forward: Forward, views: BatchViews, loss_fn: LossFn) -> BatchLoss:
        both = torch.cat([views.per_sample["images"], views.per_sample["rotated"]])
        outputs = forward(both).float()
        if outputs.shape[1] <= ROTATIONS:
            raise ValueError(f"the model returned {outputs.shape[1]} logits; RotationHeadObjective trains a "
                             "WithRotationHead model, whose training output ends with 4 rotation logits")
        clean, rotated = outputs.chunk(2)
        logits, rotation_logits = clean[:, :-ROTATIONS], rotated[:, -ROTATIONS:]
        rotation = views.per_sample["rotation"]
        task = loss_fn(logits, views.labels)
        rotation_loss = F.cross_entropy(rotation_logits, rotation)
        rotation_top1 = (rotation_logits.argmax(1) == rotation).float().mean()
        return BatchLoss(task + self.weight * rotation_loss, logits,
                         {"task_loss": task, "rotation_loss": rotation_loss, "rotation_top1": rotation_top1})


OBJECTIVE_CLASSES: dict[str, type[BatchObjective]] = {
    "augmix": AugMixObjective,
    "stability": StabilityObjective,
    "patch_gaussian": PatchGaussianObjective,
    "gaussian_noise": GaussianNoiseObjective,
    "rotation_head": RotationHeadObjective,
}


def build_objective(name: str, **params) -> BatchObjective:
    """The objective ``name`` with ``params`` (plain values, as a config holds them); an objective's
    ``identity()`` builds it again: ``build_objective(**objective.identity())``.

    ``rotation_head`` trains a `WithRotationHead` model: wrap the model before training it.
    """
    if name not in OBJECTIVE_CLASSES:
        raise ValueError(f"unknown objective {name!r}; objectives: {', '.join(OBJECTIVE_CLASSES)}")
    cls = OBJECTIVE_CLASSES[name]
    accepted = [f.name for f in fields(cls)]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"objective {name!r} takes no parameters {unknown}; its parameters: {accepted}")
    try:
        return cls(**params)
    except TypeError as error:  # a required parameter is missing
        raise ValueError(f"objective {name!r}: {error}; its parameters: {accepted}") from error
