"""Wide residual networks for 32x32 images (Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016).

WRN-40-2 is the CIFAR model of AugMix (Hendrycks et al., ICLR 2020; google-research/augmix trains
the WideResNet of xternalz/WideResNet-pytorch): a 3x3 conv stem of 16 channels, then 3 groups of
``(depth - 4) / 6`` pre-activation blocks (BN - ReLU - conv3x3 - BN - ReLU - [dropout] - conv3x3)
of ``16k, 32k, 64k`` channels (32/64/128 for widen factor k = 2), the 2nd and 3rd groups starting
at stride 2, then BN - ReLU - global average pool - linear. A block whose width or stride changes
takes its shortcut through a 1x1 conv of the pre-activated input; the others add their input.
Initialisation as the reference: convs He-normal (fan_out), BN weight 1 and bias 0, linear bias 0.

``blur_filter`` (1..7, 0 off) anti-aliases the two strided convs of each downsampling block
(`robustflow.models.blurpool.BlurConv2d`: blur the pre-activated map, then the strided conv; the
parameter names stay those of the plain network).
"""

from __future__ import annotations

import torch
from torch import nn

from robustflow.models.blurpool import antialias, check_filter_size


class WideBasicBlock(nn.Module):
    """Pre-activation block: ``conv2(drop(relu(bn2(conv1(relu(bn1(x))))))) + shortcut``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        needs_projection = in_channels != out_channels or stride != 1
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False) if needs_projection else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.relu1(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(activated)
        out = self.conv1(activated)
        out = self.conv2(self.dropout(self.relu2(self.bn2(out))))
        return out + shortcut


class WideResNet(nn.Module):
    """WRN-``depth``-``widen_factor`` for CIFAR-sized inputs (see the module doc).

    The classifier is ``head``; ``forward_features``, ``forward_head(x, pre_logits)``,
    ``get_classifier`` and ``num_features`` follow timm's conventions.
    """

    def __init__(self, num_classes: int, depth: int = 40, widen_factor: int = 2, dropout: float = 0.0,
                 in_chans: int = 3, blur_filter: int = 0):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 40, ...), got {depth}")
        if widen_factor < 1:
            raise ValueError(f"widen_factor must be >= 1, got {widen_factor}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        check_filter_size(blur_filter, allow_off=True)
        blocks_per_group = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, stride=1, padding=1, bias=False)
        groups = []
        for group, (width, stride) in enumerate(zip(widths[1:], (1, 2, 2))):
            blocks = [WideBasicBlock(widths[group] if i == 0 else width, width, stride if i == 0 else 1, dropout)
                      for i in range(blocks_per_group)]
            groups.append(nn.Sequential(*blocks))
        self.block1, self.block2, self.block3 = groups
        self.bn = nn.BatchNorm2d(widths[-1])
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(widths[-1], num_classes)
        self.num_classes = num_classes
        self.num_features = widths[-1]
        self.blur_filter = blur_filter
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
        if blur_filter:
            antialias(self, blur_filter, max_pools=False, avg_pools=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.relu(self.bn(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(x).flatten(1)
        return x if pre_logits else self.head(x)

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
