"""Anti-aliased downsampling (Zhang, "Making Convolutional Networks Shift-Invariant Again", ICML 2019).

A strided layer samples its input on a coarser grid; without a low-pass filter first, high
frequencies alias and a 1-pixel shift of the input changes the output by much more than a
shifted copy would. Zhang's fix keeps each layer's dense evaluation and blurs before subsampling:

- ``MaxPool(k, stride 2)`` -> ``MaxPool(k, stride 1)`` + ``BlurPool(stride 2)`` (`max_blur_pool`);
- ``AvgPool(stride 2)`` -> ``BlurPool(stride 2)`` (`blur_avg_pool`);
- a strided conv -> the conv at stride 1, its nonlinearity, then ``BlurPool``. Here a strided conv
  becomes `BlurConv2d`: blur at stride 1, then the conv at its stride. Blur and conv are both linear
  and shift invariant, so they commute, and ``conv_s2(blur(x))`` equals ``blur_s2(conv_s1(x))``
  (up to the border), at a quarter of the conv's cost. What Zhang evaluates densely is the
  nonlinearity before the subsampling; in a ResNet block that is the ReLU after the conv (timm's
  ``aa_layer``: conv s1 - BN - ReLU - blur s2), in a pre-activation block (WRN) it is the
  BN-ReLU that already precedes the strided conv, so blurring its output before the strided
  conv is the same anti-aliasing without the dense conv. The conv keeps its parameters and
  their names, so weights of the plain model load into the anti-aliased one and back.

`BlurPool2d` is written from the paper's definition (the reference package, antialiased-cnns,
is CC BY-NC-SA and is not used): a depthwise convolution with the normalised outer product of a
binomial row ([1], [1, 1], [1, 2, 1], [1, 3, 3, 1], ... for filter sizes 1..7), reflect padding
(``(k-1)//2`` before, the rest after, as in the reference, so an even side halves exactly for
every filter size), then stride. Filter size 1 is plain subsampling (``x[..., ::s, ::s]``): the
control with the anti-aliased model's structure and no low-pass. The filter is a non-persistent
buffer: state dicts hold no blur filters, and they stay those of the plain model.

`antialias` converts a whole model in place; the registry uses these pieces for ``small_cnn``,
``wide_resnet40_2`` and the timm ResNets (see `robustflow.models`, option ``blur_filter``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MAX_FILTER_SIZE = 7


def check_filter_size(filter_size: int, allow_off: bool = False) -> int:
    """``filter_size`` as an int in 1..7 (0 too, meaning 'no anti-aliasing', with ``allow_off``)."""
    low = 0 if allow_off else 1
    if isinstance(filter_size, bool) or not isinstance(filter_size, int) or not low <= filter_size <= MAX_FILTER_SIZE:
        what = "0 (off) or " if allow_off else ""
        raise ValueError(f"blur filter size must be {what}an int in 1..{MAX_FILTER_SIZE}, got {filter_size!r}")
    return filter_size


def binomial_row(filter_size: int) -> torch.Tensor:
    """The binomial coefficients C(k-1, i), i = 0..k-1, as float64 (unnormalised): [1, 2, 1] for k = 3."""
    k = check_filter_size(filter_size)
    return torch.tensor([math.comb(k - 1, i) for i in range(k)], dtype=torch.float64)


def binomial_filter(filter_size: int) -> torch.Tensor:
    """The (k, k) blur kernel: outer product of the binomial row, normalised to sum 1 (float32)."""
    row = binomial_row(filter_size)
    kernel = torch.outer(row, row)
    return (kernel / kernel.sum()).float()


def _pads(filter_size: int) -> tuple[int, int]:
    before = (filter_size - 1) // 2
    return before, filter_size - 1 - before


def blur(images: torch.Tensor, filter_size: int, stride: int = 2, kernel: torch.Tensor | None = None) -> torch.Tensor:
    """Depthwise binomial blur of NCHW ``images`` with reflect padding, then subsampling by ``stride``.

    A map too small to reflect (a side <= the padding) is padded by replicating its border instead.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if filter_size == 1:
        return images[..., ::stride, ::stride]
    if kernel is None:
        kernel = binomial_filter(filter_size).to(images.device)
    before, after = _pads(filter_size)
    mode = "reflect" if min(images.shape[-2:]) > after else "replicate"
    padded = F.pad(images, (before, after, before, after), mode=mode)
    channels = images.shape[1]
    weight = kernel.to(dtype=images.dtype).expand(channels, 1, filter_size, filter_size)
    return F.conv2d(padded, weight, stride=stride, groups=channels)


class BlurPool2d(nn.Module):
    """Blur with a normalised binomial filter of side ``filter_size`` (1..7), then subsample by ``stride``.

    ``channels`` (optional) is checked against the input; the layer itself works for any channel
    count. ``device``/``dtype`` are accepted (and ``dtype`` ignored: the filter is float32 and cast
    to the input's dtype) so timm can build it as an ``aa_layer``.
    """

    def __init__(self, channels: int | None = None, filter_size: int = 3, stride: int = 2, device=None, dtype=None):
        super().__init__()
        self.channels = channels
        self.filter_size = check_filter_size(filter_size)
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.stride = int(stride)
        self.register_buffer("filt", binomial_filter(self.filter_size).to(device), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels is not None and x.shape[1] != self.channels:
            raise ValueError(f"BlurPool2d built for {self.channels} channels got an input of {x.shape[1]}")
        return blur(x, self.filter_size, self.stride, self.filt)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, filter_size={self.filter_size}, stride={self.stride}"


class BlurConv2d(nn.Conv2d):
    """A strided `nn.Conv2d` that blurs its input first (see the module doc): ``conv(blur(x))``.

    A 1x1 conv without padding subsamples only, so it is computed as ``conv_s1(blurpool_s(x))``,
    the same values at a quarter of the blur's cost. Parameters and their names are the conv's.
    """

    def __init__(self, *args, filter_size: int = 3, **kwargs):
        super().__init__(*args, **kwargs)
        self.filter_size = check_filter_size(filter_size)
        self.register_buffer("filt", binomial_filter(self.filter_size).to(self.weight.device), persistent=False)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, filter_size: int) -> BlurConv2d:
        """A `BlurConv2d` with the hyperparameters, weights (shared, not copied) and device of ``conv``.

        Built on the meta device, so no initialisation draws from torch's global RNG: a model
        anti-aliased after its init continues the stream as the plain model would.
        """
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                  dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
                  padding_mode=conv.padding_mode, filter_size=filter_size, device="meta")
        new.weight = conv.weight
        new.bias = conv.bias
        new.filt = binomial_filter(new.filter_size).to(conv.weight.device)
        new.train(conv.training)
        return new

    def _subsamples_only(self) -> bool:
        return (self.kernel_size == (1, 1) and self.padding in ((0, 0), "valid") and self.stride[0] == self.stride[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._subsamples_only():
            x = blur(x, self.filter_size, self.stride[0], self.filt)
            return F.conv2d(x, self.weight, self.bias, 1, 0, self.dilation, self.groups)
        return self._conv_forward(blur(x, self.filter_size, 1, self.filt), self.weight, self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", filter_size={self.filter_size}"


def max_blur_pool(pool: nn.MaxPool2d, filter_size: int) -> nn.Sequential:
    """Zhang's MaxBlurPool: ``pool`` at stride 1 (kernel, padding, dilation kept), then `BlurPool2d` at its stride."""
    stride = _square(pool.stride, "MaxPool2d stride")
    dense = nn.MaxPool2d(pool.kernel_size, stride=1, padding=pool.padding, dilation=pool.dilation,
                         ceil_mode=pool.ceil_mode)
    return nn.Sequential(dense, BlurPool2d(filter_size=filter_size, stride=stride))


def blur_avg_pool(pool: nn.AvgPool2d, filter_size: int) -> BlurPool2d:
    """An average pool of stride s replaced by `BlurPool2d` of stride s (the binomial filter includes the box)."""
    return BlurPool2d(filter_size=filter_size, stride=_square(pool.stride, "AvgPool2d stride"))


def _square(value, what: str) -> int:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if pair[0] != pair[1]:
        raise ValueError(f"{what} must be the same along both axes to anti-alias it, got {value}")
    return int(pair[0])


def _strided(stride) -> bool:
    pair = (stride, stride) if isinstance(stride, int) else tuple(stride)
    return max(pair) > 1


def antialias(model: nn.Module, filter_size: int, *, max_pools: bool = True, avg_pools: bool = True,
              convs: bool = True) -> nn.Module:
    """Make ``model`` anti-aliased in place (and return it): every strided MaxPool2d becomes `max_blur_pool`,
    every strided AvgPool2d `blur_avg_pool`, every strided Conv2d `BlurConv2d` (each kind as asked).

    Adaptive (global) pools are left alone: they do not subsample onto a grid. Parameter names and
    values are unchanged.
    """
    check_filter_size(filter_size)
    for name, child in list(model.named_children()):
        replacement = None
        if isinstance(child, (BlurConv2d, BlurPool2d)):
            continue
        if max_pools and isinstance(child, nn.MaxPool2d) and _strided(child.stride):
            replacement = max_blur_pool(child, filter_size)
        elif avg_pools and isinstance(child, nn.AvgPool2d) and _strided(child.stride):
            replacement = blur_avg_pool(child, filter_size)
        elif convs and type(child) is nn.Conv2d and _strided(child.stride):
            _square(child.stride, "Conv2d stride")
            replacement = BlurConv2d.from_conv(child, filter_size)
        if replacement is not None:
            setattr(model, name, replacement)
        else:
            antialias(child, filter_size, max_pools=max_pools, avg_pools=avg_pools, convs=convs)
    return model


def set_blur_filter(model: nn.Module, filter_size: int) -> nn.Module:
    """Give every `BlurPool2d` / `BlurConv2d` of ``model`` the filter size ``filter_size`` (in place)."""
    check_filter_size(filter_size)
    for module in model.modules():
        if isinstance(module, (BlurPool2d, BlurConv2d)):
            module.filter_size = filter_size
            module.filt = binomial_filter(filter_size).to(module.filt.device)
    return model
