"""Digital corruptions: contrast, brightness, saturation, pixelation, JPEG."""

from __future__ import annotations

import torch

from ._ops import apply_separable_matrices, pil_box_resize_matrix
from .params import SaturateParams


def contrast(x: torch.Tensor, factor: float, generator: torch.Generator) -> torch.Tensor:
    """Scale the deviation from each channel's image mean by ``factor``."""
    means = x.mean(dim=(2, 3), keepdim=True)
    return (x - means) * factor + means


def brightness(x: torch.Tensor, shift: float, generator: torch.Generator) -> torch.Tensor:
    """Add ``shift`` to the HSV value (``skimage`` rgb2hsv / hsv2rgb), clipped to [0, 1].

    With hue and saturation fixed, hsv2rgb is proportional to the value, so the round trip is
    a rescaling of the pixel by new value / old value; black pixels become grey.
    """
    value = x.amax(dim=1, keepdim=True)
    new_value = (value + shift).clamp(0.0, 1.0)
    black = value == 0
    scaled = x * (new_value / torch.where(black, torch.ones_like(value), value))
    return torch.where(black, new_value.expand_as(x), scaled)


def saturate(x: torch.Tensor, params: SaturateParams, generator: torch.Generator) -> torch.Tensor:
    """HSV saturation becomes ``saturation * scale + offset``, clipped to [0, 1] (``skimage``
    rgb2hsv / hsv2rgb).

    With hue and value fixed, each channel is ``value - value * saturation * f(hue)``, so it
    moves away from the value in proportion to the saturation. Grey pixels have hue 0 (red),
    for which f is 0 for red and 1 for green and blue.
    """
    value = x.amax(dim=1, keepdim=True)
    saturation_old = value - x.amin(dim=1, keepdim=True)  # times value: value * saturation
    grey = saturation_old == 0
    safe_value = torch.where(value == 0, torch.ones_like(value), value)
    saturation = torch.where(grey, torch.zeros_like(value), saturation_old / safe_value)
    new_saturation = (saturation * params.scale + params.offset).clamp(0.0, 1.0)
    ratio = new_saturation / torch.where(grey, torch.ones_like(saturation), saturation)
    coloured = value - (value - x) * ratio
    red_hue = torch.tensor([0.0, 1.0, 1.0], dtype=x.dtype, device=x.device)[None, :, None, None]
    return torch.where(grey, value - value * new_saturation * red_hue, coloured)


def pixelate(x: torch.Tensor, factor: float, generator: torch.Generator) -> torch.Tensor:
    """Pillow BOX resize to ``int(size * factor)`` and BOX resize back, as one linear map
    per axis (float throughout, where Pillow rounds to 8 bits after each pass)."""
    h, w = x.shape[-2:]
    small_h, small_w = int(h * factor), int(w * factor)
    rows = pil_box_resize_matrix(small_h, h) @ pil_box_resize_matrix(h, small_h)
    cols = pil_box_resize_matrix(small_w, w) @ pil_box_resize_matrix(w, small_w)
    return apply_separable_matrices(x, rows, cols)


def jpeg_compression(x: torch.Tensor, quality: float, generator: torch.Generator) -> torch.Tensor:
    """Encode and decode each image as JPEG at ``quality``.

    No batched tensor JPEG codec exists, so this runs libjpeg-turbo on the CPU through
    ``torchvision.io`` (one C++ call per batch, no Python loop per pixel); its output is
    bit-identical to Pillow's (same library, same default 4:2:0 subsampling). The result is
    moved back to the images' device.
    """
    as_uint8 = (x * 255.0).round().clamp(0, 255).to("cpu", torch.uint8)
    from torchvision.io import decode_jpeg, encode_jpeg  # here: torchvision takes ~2 s to import

    encoded = encode_jpeg(list(as_uint8.unbind(0)), quality=int(quality))
    decoded = torch.stack(decode_jpeg(encoded))
    return decoded.to(device=x.device, dtype=x.dtype) / 255.0
