"""A plain CNN that trains in seconds on a CPU."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from robustflow.models.blurpool import BlurPool2d, check_filter_size


class SmallCNN(nn.Module):
    """Blocks of conv3x3 - BatchNorm - ReLU - maxpool2, then global average pool, dropout, linear.

    One block per entry of ``features`` (its output channels). The convolutions carry no
    bias because BatchNorm's shift replaces it. With ``features=(64, 128, 256)`` and
    ``dropout=0.3`` this is the CIFAR CNN of the robust-vision framework (source 000).
    The classifier is ``head`` (the name pretrained loading drops on a class-count change);
    ``forward_features``, ``forward_head(x, pre_logits)``, ``get_classifier`` and ``num_features``
    follow timm's conventions.

    ``blur_filter`` (1..7; 0, the default, is off) anti-aliases every block's downsampling as
    Zhang (2019) does: maxpool2 at stride 1, then a `BlurPool2d` of that filter size at stride 2
    (filter size 1 is plain subsampling: the same outputs as maxpool2). The blur has no
    parameters, so the state dict is that of the plain network.
    """

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        features: Sequence[int] = (32, 64),
        dropout: float = 0.0,
        blur_filter: int = 0,
    ) -> None:
        super().__init__()
        if not features or any(int(f) < 1 for f in features):
            raise ValueError(f"features must be a non-empty sequence of positive channel counts, got {features}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        check_filter_size(blur_filter, allow_off=True)
        blocks = []
        channels = in_chans
        for width in features:
            blocks += [
                nn.Conv2d(channels, int(width), kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(int(width)),
                nn.ReLU(inplace=True),
                self._downsample(int(width), blur_filter),
            ]
            channels = int(width)
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels, num_classes)
        self.num_classes = num_classes
        self.num_features = channels
        self.blur_filter = blur_filter

    @staticmethod
    def _downsample(channels: int, blur_filter: int) -> nn.Module:
        if not blur_filter:
            return nn.MaxPool2d(2)
        return nn.Sequential(nn.MaxPool2d(2, stride=1), BlurPool2d(channels, filter_size=blur_filter, stride=2))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.dropout(self.pool(x).flatten(1))
        return x if pre_logits else self.head(x)

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
