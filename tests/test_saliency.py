"""Gradient saliency, the foreground share and the overlay helper."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from robustflow.plots.background import overlay_image
from robustflow.saliency import foreground_share, gradient_saliency, saliency_map


def _linear_model(weights: torch.Tensor) -> nn.Module:
    layer = nn.Linear(weights.shape[1], weights.shape[0], bias=True)
    with torch.no_grad():
        layer.weight.copy_(weights)
        layer.bias.fill_(0.3)
    return nn.Sequential(nn.Flatten(), layer)


def test_linear_model_saliency_is_its_weights():
    channels, size = 2, 4
    weights = torch.zeros(3, channels * size * size)
    weights[0, 5], weights[0, 20] = 2.0, -1.5   # class 0 looks at (c0, y1, x1) and (c1, y1, x0)
    weights[1, 10] = 0.5                          # class 1 at (c0, y2, x2)
    model = _linear_model(weights)
    images = torch.rand(2, channels, size, size)
    labels = torch.tensor([0, 1])
    std = (0.5, 0.25)
    saliency = gradient_saliency(model, images, labels, mean=(0.1, 0.2), std=std)
    # normalisation divides by std per channel, so d logit / d pixel = w / std
    expected = (weights[labels].view(2, channels, size, size).abs() / torch.tensor(std).view(1, 2, 1, 1))
    assert torch.allclose(saliency, expected)
    maps = saliency_map(saliency)
    assert torch.allclose(maps, expected.amax(dim=1))
    assert torch.nonzero(maps[0]).tolist() == [[1, 0], [1, 1]]


def test_uint8_and_float_images_give_the_same_saliency():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    images = (torch.rand(3, 3, 6, 6) * 255).to(torch.uint8)
    labels = torch.tensor([0, 2, 1])
    a = gradient_saliency(model, images, labels, (0.5,) * 3, (0.2,) * 3, batch_size=2)
    b = gradient_saliency(model, images.float() / 255, labels, (0.5,) * 3, (0.2,) * 3)
    assert torch.allclose(a, b)


def test_foreground_share():
    masks = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    masks[0, 0, :2] = True
    masks[1, 0, 0, 0] = True
    assert torch.allclose(foreground_share(masks[:, 0].float(), masks), torch.ones(2))
    saliency = torch.ones(2, 4, 4)
    assert torch.allclose(foreground_share(saliency, masks), torch.tensor([0.5, 1 / 16]))
    # channel form sums the channels first
    three = torch.stack([saliency, 2 * saliency, saliency], dim=1)
    assert torch.allclose(foreground_share(three, masks), torch.tensor([0.5, 1 / 16]))
    assert torch.isnan(foreground_share(torch.zeros(2, 4, 4), masks)).all()
    with pytest.raises(ValueError, match="masks"):
        foreground_share(saliency, masks.float())


def test_overlay_image():
    image = np.full((3, 2, 2), 0.5)
    heat = np.array([[0.0, 1.0], [0.0, 2.0]])
    blended = overlay_image(image, heat, alpha=0.5)
    assert blended.shape == (2, 2, 3)
    assert np.allclose(blended[0, 0], [0.5, 0.5, 0.5])          # no saliency: the image
    assert np.allclose(blended[1, 1], [0.75, 0.25, 0.25])       # full saliency: half red
    assert np.allclose(blended[0, 1], [0.625, 0.375, 0.375])    # half of the maximum
    with pytest.raises(ValueError, match="alpha"):
        overlay_image(image, heat, alpha=2)
