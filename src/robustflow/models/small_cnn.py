"""A plain CNN that trains in seconds on a CPU."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class SmallCNN(nn.Module):
    """Blocks of conv3x3 - BatchNorm - ReLU - maxpool2, then global average pool, dropout, linear.

    One block per entry of ``features`` (its output channels). The convolutions carry no
    bias because BatchNorm's shift replaces it. With ``features=(64, 128, 256)`` and
    ``dropout=0.3`` this is the CIFAR CNN of the robust-vision framework (source 000).
    The classifier is ``head`` (the name pretrained loading drops on a class-count change).
    """

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        features: Sequence[int] = (32, 64),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not features or any(int(f) < 1 for f in features):
            raise ValueError(f"features must be a non-empty sequence of positive channel counts, got {features}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        blocks = []
        channels = in_chans
        for width in features:
            blocks += [
                nn.Conv2d(channels, int(width), kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(int(width)),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            channels = int(width)
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels, num_classes)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.head(self.dropout(x))
