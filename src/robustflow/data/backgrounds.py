"""The backgrounds challenge (ImageNet-9, Xiao et al. 2021) and an embedded stand-in for it.

Two sources give the same `BackgroundsSet`:

- `load_bg_challenge` reads the MadryLab release (``bg_challenge/<variation>/val/<NN_class>/``,
  training images in ``original/train/<NN_class>/``, foreground masks as ``.npy`` files in
  ``fg_mask/val/<NN_class>/<image stem>.npy``: one 2-D 0/1 array per original val image at
  the image's own resolution, as the release's ``challenge_eval.py`` reads them).
- `generate_backgrounds_set` builds a small synthetic version: scikit-learn digits as
  foregrounds on class-correlated striped textures, so a model can cheat on the background,
  with every variation made exactly as the challenge defines it.

Variations (all of the test images, in the same order as ``original``):
``only_fg`` foreground on black; ``only_bg_b`` foreground bounding box blacked out;
``only_bg_t`` the box filled with background tiled from beside the box; ``no_fg`` foreground
pixels blacked out; ``mixed_same`` / ``mixed_rand`` / ``mixed_next`` the foreground on the
background of an image of the same / a random / the next class.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from robustflow.data import ImageSplits, stratified_split
from robustflow.data.cifar10 import DatasetNotFoundError
from robustflow.data.digits import DIGITS_MAX_VALUE, digits_arrays
from robustflow.data_files import BG_CHALLENGE_HOW_TO_GET, BG_CHALLENGE_VARIATIONS
from robustflow.io import atomic_torch_save

VARIATIONS = BG_CHALLENGE_VARIATIONS
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
HOW_TO_GET = BG_CHALLENGE_HOW_TO_GET


@dataclass(frozen=True)
class BackgroundsSet:
    """Training data, and every variation of the test images.

    ``train`` holds the original training images split into train/val, with the original test
    images as its test split (so `train.mean`/`train.std`/`train.classes` serve every
    variation). ``train_masks`` (bool, N,1,H,W) are foreground masks of ``train.train_x``,
    None when the source has none. ``mixed_rand_train`` is the same split with mixed_rand
    images (for training on mixed_rand), None when unavailable. ``test[v]`` (uint8) and
    ``test_labels[v]`` (int64) hold variation ``v``; ``test_masks`` are the foreground masks of
    the original test images. ``background_classes[v]`` is the class each test background
    was drawn from, and ``background_classes["train"]`` / ``["mixed_rand_train"]`` those of
    the two training splits' ``train_x`` (generated sets only; empty for the real challenge).
    """

    train: ImageSplits
    test: dict[str, torch.Tensor]
    test_labels: dict[str, torch.Tensor]
    test_masks: torch.Tensor | None
    train_masks: torch.Tensor | None = None
    mixed_rand_train: ImageSplits | None = None
    background_classes: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shape = self.train.train_x.shape[1:]
        for variation, images in self.test.items():
            if variation not in VARIATIONS:
                raise ValueError(f"unknown variation {variation!r}; known: {', '.join(VARIATIONS)}")
            if images.dtype != torch.uint8 or images.shape[1:] != shape:
                raise ValueError(f"test[{variation!r}] must be uint8 images of shape (N, {tuple(shape)}), "
                                 f"got {images.dtype} {tuple(images.shape)}")
            if self.test_labels[variation].shape != (len(images),):
                raise ValueError(f"test_labels[{variation!r}] must hold one label per image")
        for name, masks, images in (("test_masks", self.test_masks, self.test.get("original")),
                                    ("train_masks", self.train_masks, self.train.train_x)):
            if masks is None:
                continue
            if images is None or masks.dtype != torch.bool or masks.shape != (len(images), 1, *shape[1:]):
                raise ValueError(f"{name} must be bool of shape (N, 1, H, W) matching its images, "
                                 f"got {masks.dtype} {tuple(masks.shape)}")

    @property
    def classes(self) -> tuple[str, ...]:
        return self.train.classes

    @property
    def num_classes(self) -> int:
        return self.train.num_classes


# ----------------------------------------------------------------------------- save / load


def save_backgrounds_set(dataset: BackgroundsSet, path: str | Path) -> None:
    """Write the set to one .pt file, atomically."""
    atomic_torch_save(asdict(dataset), path)


def load_backgrounds_set(path: str | Path) -> BackgroundsSet:
    """Read a set written by `save_backgrounds_set`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backgrounds set file not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state["train"] = ImageSplits(**state["train"])
    if state["mixed_rand_train"] is not None:
        state["mixed_rand_train"] = ImageSplits(**state["mixed_rand_train"])
    return BackgroundsSet(**state)


# ----------------------------------------------------------------------------- pixel operations


def bounding_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(N, 4) int64 boxes ``(y0, y1, x0, x1)`` (end exclusive) of bool masks (N, 1, H, W)."""
    rows, cols = masks.any(dim=3)[:, 0], masks.any(dim=2)[:, 0]
    if not bool(rows.any(dim=1).all()):
        raise ValueError("every mask needs at least one foreground pixel to have a bounding box")
    h, w = masks.shape[-2:]
    y0 = rows.int().argmax(dim=1)
    y1 = h - rows.flip(1).int().argmax(dim=1)
    x0 = cols.int().argmax(dim=1)
    x1 = w - cols.flip(1).int().argmax(dim=1)
    return torch.stack([y0, y1, x0, x1], dim=1)


def box_masks(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bool (N, 1, height, width) masks that are True inside each box of `bounding_boxes`."""
    rows, cols = torch.arange(height), torch.arange(width)
    inside_y = (rows[None] >= boxes[:, :1]) & (rows[None] < boxes[:, 1:2])
    inside_x = (cols[None] >= boxes[:, 2:3]) & (cols[None] < boxes[:, 3:4])
    return (inside_y[:, :, None] & inside_x[:, None, :])[:, None]


def fill_box_with_tiles(images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Replace each bounding box by background tiled from beside it (the only_bg_t fill).

    The source is the strip of the same rows on the wider side of the box (left when equal),
    at most as wide as the box, repeated across the box. Needs every box narrower than the image.
    """
    n, _, h, w = images.shape
    y0, y1, x0, x1 = boxes.unbind(1)
    left, right = x0, w - x1
    if bool(((left == 0) & (right == 0)).any()):
        raise ValueError("only_bg_t needs background beside each box; a box spans the full image width")
    use_left = left >= right
    period = torch.minimum(torch.where(use_left, left, right), x1 - x0)
    cols = torch.arange(w)[None]
    offset = (cols - x0[:, None]) % period[:, None]
    tiled_cols = torch.where(use_left[:, None], x0[:, None] - period[:, None] + offset, x1[:, None] + offset)
    source = torch.where(box_masks(boxes, h, w)[:, 0], tiled_cols[:, None, :], cols[:, None, :])
    return images.gather(3, source[:, None].expand_as(images))


def compose_variations(
    foregrounds: torch.Tensor,
    masks: torch.Tensor,
    backgrounds: torch.Tensor,
    swapped: dict[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Every variation from uint8 foreground pixels, bool masks and the images' own backgrounds.

    ``swapped`` maps ``mixed_same``/``mixed_rand``/``mixed_next`` to the other backgrounds.
    """
    black = torch.zeros_like(foregrounds)
    original = torch.where(masks, foregrounds, backgrounds)
    boxes = bounding_boxes(masks)
    in_box = box_masks(boxes, *masks.shape[-2:])
    variations = {
        "original": original,
        "only_fg": torch.where(masks, foregrounds, black),
        "only_bg_b": torch.where(in_box, black, original),
        "only_bg_t": torch.where(in_box, fill_box_with_tiles(original, boxes), original),
        "no_fg": torch.where(masks, black, original),
    }
    for name, other in swapped.items():
        variations[name] = torch.where(masks, foregrounds, other)
    return {name: variations[name] for name in VARIATIONS if name in variations}


# ----------------------------------------------------------------------------- generated set


# HSV value of a texture's light and dark stripes: darker than the digits' ink (0.75..1) and of
# low contrast, so the stripes' edges do not drown the digit's shape; the hue gives the class.
STRIPE_VALUES = (0.55, 0.35)


def class_palette(n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two RGB colours per class (light and dark of one hue), hues spread round the colour wheel."""
    light = [colorsys.hsv_to_rgb(c / n_classes, 0.8, STRIPE_VALUES[0]) for c in range(n_classes)]
    dark = [colorsys.hsv_to_rgb(c / n_classes, 0.8, STRIPE_VALUES[1]) for c in range(n_classes)]
    return torch.tensor(light), torch.tensor(dark)


def striped_textures(
    classes: torch.Tensor, n_classes: int, image_size: int, generator: torch.Generator, noise: float = 0.08
) -> torch.Tensor:
    """uint8 (N, 3, S, S) backgrounds: stripes whose angle, frequency and colours belong to the class.

    Phase and pixel noise are random per image, so two backgrounds of one class differ.
    """
    n = len(classes)
    light, dark = class_palette(n_classes)
    angle = math.pi * classes.double() / n_classes
    period = image_size / (2.0 + (classes % 3).double())  # 2, 3 or 4 stripes across the image
    phase = torch.rand(n, generator=generator, dtype=torch.float64) * 2 * math.pi
    grid = torch.arange(image_size, dtype=torch.float64)
    along = (grid[None, None, :] * torch.cos(angle)[:, None, None]
             + grid[None, :, None] * torch.sin(angle)[:, None, None])
    wave = 0.5 + 0.5 * torch.sin(2 * math.pi * along / period[:, None, None] + phase[:, None, None])
    colour = (light[classes].double()[:, :, None, None] * wave[:, None]
              + dark[classes].double()[:, :, None, None] * (1 - wave[:, None]))
    jitter = (torch.rand(colour.shape, generator=generator, dtype=torch.float64) * 2 - 1) * noise
    return ((colour + jitter).clamp(0, 1) * 255).round().to(torch.uint8)


def place_digits(
    digits: torch.Tensor, image_size: int, digit_size: int, threshold: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Digits (N, 8, 8 in [0, 1]) upsampled to ``digit_size``, inked and placed at random offsets.

    Returns uint8 foreground pixels (N, 3, S, S) and bool masks (N, 1, S, S); the mask is the
    upsampled digit above ``threshold``. Ink colours are random light greys, the same
    distribution for every class, so the foreground carries only shape.
    """
    n = len(digits)
    large = F.interpolate(digits[:, None].float(), size=(digit_size, digit_size), mode="bilinear",
                          align_corners=False)[:, 0]
    offsets = torch.randint(0, image_size - digit_size + 1, (2, n), generator=generator)
    grid = torch.arange(image_size)
    rows = grid[None] - offsets[0][:, None]
    cols = grid[None] - offsets[1][:, None]
    valid = ((rows >= 0) & (rows < digit_size))[:, :, None] & ((cols >= 0) & (cols < digit_size))[:, None, :]
    flat = rows.clamp(0, digit_size - 1)[:, :, None] * digit_size + cols.clamp(0, digit_size - 1)[:, None, :]
    canvas = large.reshape(n, -1).gather(1, flat.reshape(n, -1)).reshape(n, image_size, image_size) * valid
    masks = (canvas > threshold)[:, None]
    ink = 0.75 + 0.25 * torch.rand(n, 1, 1, 1, generator=generator)
    pixels = ((ink * (0.4 + 0.6 * canvas[:, None])).clamp(0, 1) * 255).round().to(torch.uint8)
    return pixels.expand(-1, 3, -1, -1).contiguous(), masks


def _correlated_classes(labels: torch.Tensor, n_classes: int, correlation: float,
                        generator: torch.Generator) -> torch.Tensor:
    keep = torch.rand(len(labels), generator=generator) < correlation
    return torch.where(keep, labels, torch.randint(0, n_classes, labels.shape, generator=generator))


def _check_generation(n_classes: int, correlation: float, image_size: int, digit_size: int,
                      mask_threshold: float) -> None:
    if not 2 <= n_classes <= 10:
        raise ValueError(f"n_classes must lie in 2..10 (digit classes), got {n_classes}")
    if not 0 <= correlation <= 1:
        raise ValueError(f"correlation must lie in [0, 1], got {correlation}")
    if not 8 <= digit_size < image_size:
        raise ValueError(f"digit_size must lie in [8, image_size={image_size}), got {digit_size}")
    if not 0 < mask_threshold < 1:
        raise ValueError(f"mask_threshold must lie in (0, 1), got {mask_threshold}")


def _digit_images(n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits of the first ``n_classes`` classes, in [0, 1], and their labels."""
    images, labels = digits_arrays()
    keep = labels < n_classes
    return (torch.as_tensor(images[keep], dtype=torch.float32) / DIGITS_MAX_VALUE,
            torch.as_tensor(labels[keep], dtype=torch.int64))


def generate_backgrounds_set(
    seed: int,
    n_classes: int = 10,
    correlation: float = 0.9,
    image_size: int = 32,
    digit_size: int = 16,
    val_fraction: float = 0.15,
    test_fraction: float = 0.25,
    mask_threshold: float = 0.25,
) -> BackgroundsSet:
    """The embedded backgrounds set: digits on class-correlated striped backgrounds.

    Training, validation and original test images take their own class's texture with
    probability ``correlation`` and a uniformly random class's texture otherwise (so the
    original test split is i.i.d. with training, as source 002's original(test)). ``mixed_rand``
    draws the background class uniformly from all classes (the challenge's definition, so it
    can hit the own class), ``mixed_next`` uses class ``(y + 1) % n_classes``. The
    mixed_rand training split (for training on mixed_rand) uses the same foregrounds as the
    original one. Deterministic for a given ``seed``.
    """
    _check_generation(n_classes, correlation, image_size, digit_size, mask_threshold)
    digits, labels = _digit_images(n_classes)
    generator = torch.Generator().manual_seed(seed)
    train_idx, val_idx, test_idx = (
        torch.from_numpy(p) for p in stratified_split(labels.numpy(), (val_fraction, test_fraction), seed))

    pixels, masks = place_digits(digits, image_size, digit_size, mask_threshold, generator)
    own_classes = _correlated_classes(labels, n_classes, correlation, generator)
    own = striped_textures(own_classes, n_classes, image_size, generator)
    original = torch.where(masks, pixels, own)
    random_classes = torch.randint(0, n_classes, labels.shape, generator=generator)
    mixed_rand = torch.where(masks, pixels, striped_textures(random_classes, n_classes, image_size, generator))

    def splits(images: torch.Tensor) -> ImageSplits:
        return ImageSplits.from_indices(images, labels, train_idx, val_idx, images[test_idx], labels[test_idx],
                                        [str(c) for c in range(n_classes)])

    test_labels = labels[test_idx]
    background_classes = {
        "train": own_classes[train_idx],
        "mixed_rand_train": random_classes[train_idx],
        "original": own_classes[test_idx],
        "mixed_same": test_labels,
        "mixed_rand": random_classes[test_idx],
        "mixed_next": (test_labels + 1) % n_classes,
    }
    swapped = {name: striped_textures(background_classes[name], n_classes, image_size, generator)
               for name in ("mixed_same", "mixed_next")}
    # mixed_rand test images are those of the mixed_rand split: one draw, used for both.
    swapped["mixed_rand"] = mixed_rand[test_idx]
    test = compose_variations(pixels[test_idx], masks[test_idx], own[test_idx], swapped)
    return BackgroundsSet(
        train=splits(original),
        test=test,
        test_labels={name: test_labels for name in VARIATIONS},
        test_masks=masks[test_idx],
        train_masks=masks[train_idx],
        mixed_rand_train=splits(mixed_rand),
        background_classes=background_classes,
    )


# ----------------------------------------------------------------------------- the real challenge


def _class_folders(folder: Path) -> list[Path]:
    folders = sorted(p for p in folder.iterdir() if p.is_dir())
    if not folders:
        raise DatasetNotFoundError(f"no class folders (like 00_dog) in {folder}. {HOW_TO_GET}")
    return folders


def _class_name(folder: Path) -> str:
    prefix, _, name = folder.name.partition("_")
    return name if prefix.isdigit() and name else folder.name


def _read_image(path: Path, image_size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((image_size, image_size), Image.BILINEAR))


def _read_folder(folder: Path, image_size: int) -> tuple[torch.Tensor, torch.Tensor, list[str], list[Path]]:
    """An image folder as uint8 (N, 3, S, S), labels, class names and the image paths.

    A one-off load: PIL opens and resizes each image (bilinear) in turn.
    """
    if not folder.is_dir():
        raise DatasetNotFoundError(f"backgrounds challenge folder not found: {folder}. {HOW_TO_GET}")
    arrays, labels, paths = [], [], []
    class_folders = _class_folders(folder)
    for label, class_folder in enumerate(class_folders):
        for path in sorted(p for p in class_folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            arrays.append(_read_image(path, image_size))
            labels.append(label)
            paths.append(path)
    if not arrays:
        raise DatasetNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}. {HOW_TO_GET}")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return images, torch.tensor(labels, dtype=torch.int64), [_class_name(f) for f in class_folders], paths


def _read_masks(image_paths: list[Path], mask_root: Path, image_size: int) -> torch.Tensor:
    """Masks ``mask_root/<class folder>/<image stem>.npy`` (2-D, nonzero = foreground), resized nearest."""
    masks = []
    for path in image_paths:
        mask_path = mask_root / path.parent.name / f"{path.stem}.npy"
        if not mask_path.is_file():
            raise DatasetNotFoundError(f"foreground mask not found: {mask_path} (for image {path}). {HOW_TO_GET}")
        mask = torch.from_numpy(np.load(mask_path)).float()
        if mask.ndim == 3:  # some tools save H x W x 1 or x 3
            mask = mask.amax(dim=2)
        masks.append(F.interpolate(mask[None, None], size=(image_size, image_size), mode="nearest")[0] > 0)
    return torch.stack(masks)


def _split_training(images: torch.Tensor, labels: torch.Tensor, classes: list[str], test_x: torch.Tensor,
                    test_y: torch.Tensor, val_fraction: float, split_seed: int) -> tuple[ImageSplits, np.ndarray]:
    train_idx, val_idx = stratified_split(labels.numpy(), (val_fraction,), split_seed)
    return ImageSplits.from_indices(images, labels, train_idx, val_idx, test_x, test_y, classes), train_idx


def load_bg_challenge(
    root: str | Path,
    image_size: int = 64,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    variations: tuple[str, ...] = VARIATIONS,
) -> BackgroundsSet:
    """The MadryLab backgrounds challenge under ``root`` (the bg_challenge folder).

    Reads ``original/train`` (split into train/val), ``<variation>/val`` for each variation and,
    when present, ``fg_mask/val`` (and ``fg_mask/train``) masks; ``mixed_rand/train`` (the
    paper's released Mixed-Rand training set) when present. Images are resized to
    ``image_size`` squared.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(f"backgrounds challenge root not found: {root}. {HOW_TO_GET}")
    unknown = [v for v in variations if v not in VARIATIONS]
    if unknown or "original" not in variations:
        raise ValueError(f"variations must include 'original' and come from {VARIATIONS}, got {variations}")
    train_images, train_labels, classes, train_paths = _read_folder(root / "original" / "train", image_size)
    test, test_labels, test_paths = {}, {}, None
    for variation in variations:
        images, labels, variation_classes, paths = _read_folder(root / variation / "val", image_size)
        if variation_classes != classes:
            raise ValueError(f"class folders of {root / variation / 'val'} ({variation_classes}) differ "
                             f"from those of original/train ({classes})")
        test[variation], test_labels[variation] = images, labels
        if variation == "original":
            test_paths = paths
    train, train_idx = _split_training(train_images, train_labels, classes, test["original"],
                                       test_labels["original"], val_fraction, split_seed)
    mask_val = root / "fg_mask" / "val"
    test_masks = _read_masks(test_paths, mask_val, image_size) if mask_val.is_dir() else None
    mask_train = root / "fg_mask" / "train"
    train_masks = (_read_masks([train_paths[i] for i in train_idx], mask_train, image_size)
                   if mask_train.is_dir() else None)
    mixed_rand_train = None
    if (root / "mixed_rand" / "train").is_dir() and "mixed_rand" in test:
        mixed_images, mixed_labels, _, _ = _read_folder(root / "mixed_rand" / "train", image_size)
        mixed_rand_train, _ = _split_training(mixed_images, mixed_labels, classes, test["mixed_rand"],
                                              test_labels["mixed_rand"], val_fraction, split_seed)
    return BackgroundsSet(train=train, test=test, test_labels=test_labels, test_masks=test_masks,
                          train_masks=train_masks, mixed_rand_train=mixed_rand_train)
