"""One registry of image classifiers, timm style: `create_model(name, num_classes, ...)`.

Registered: ``small_cnn`` and ``vit_micro`` (small models for CPU runs), ``wide_resnet40_2`` (the
CIFAR model of AugMix) and the timm models ``resnet18``, ``resnet50``, ``vit_small_patch16_224``,
``vit_tiny_patch16_224``.

Anti-aliasing (Zhang 2019, `robustflow.models.blurpool`) is one plain kwarg, ``blur_filter``: the
side of the binomial blur filter (1..7; 0, the default, is off), for ``small_cnn``,
``wide_resnet40_2`` and the ResNets. It adds no parameters: weights of a model with and without
it load into each other.

Pretrained weights are never downloaded. They come from ``pretrained_file`` (a state_dict
saved with `torch.save` or as safetensors) or, for the timm models, from a copy already in
the local Hugging Face cache (looked up with `huggingface_hub.try_to_load_from_cache`,
which never touches the network). Anything else raises `PretrainedWeightsNotFound`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from robustflow.model_catalog import (
    MODEL_NAMES,
    TIMM_MODELS,
    _hf_cache_pattern,
    _weights_file,
    pretrained_weights_available,
)
from robustflow.models.blurpool import BlurPool2d, antialias, check_filter_size, set_blur_filter
from robustflow.models.small_cnn import SmallCNN
from robustflow.models.wide_resnet import WideResNet

__all__ = [
    "BlurPool2d",
    "PretrainedWeightsNotFound",
    "SmallCNN",
    "WideResNet",
    "TIMM_MODELS",
    "create_model",
    "list_models",
    "pretrained_weights_available",
    "register_model",
]


_MODEL_ENTRYPOINTS: dict[str, Callable[..., nn.Module]] = {}


class PretrainedWeightsNotFound(FileNotFoundError):
    """Pretrained weights were requested but no usable local file exists."""


def register_model(entrypoint: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``entrypoint`` under its ``__name__``.

    An entrypoint takes ``(num_classes, img_size, in_chans, pretrained, pretrained_file,
    **kwargs)`` and returns the model.
    """
    name = entrypoint.__name__
    if name in _MODEL_ENTRYPOINTS:
        raise ValueError(f"model {name!r} is already registered")
    _MODEL_ENTRYPOINTS[name] = entrypoint
    return entrypoint


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_MODEL_ENTRYPOINTS)


def _check_name(name: str) -> None:
    if name not in _MODEL_ENTRYPOINTS:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")


def create_model(
    name: str,
    num_classes: int,
    img_size: int = 32,
    in_chans: int = 3,
    pretrained: bool = False,
    pretrained_file: str | Path | None = None,
    **kwargs,
) -> nn.Module:
    """Build a registered model; ``kwargs`` go to the model's constructor.

    Initial weights come from torch's global RNG: seed it (`torch.manual_seed`) first.
    """
    _check_name(name)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if pretrained_file is not None and not pretrained:
        raise ValueError(f"pretrained_file={pretrained_file} was given but pretrained=False")
    return _MODEL_ENTRYPOINTS[name](
        num_classes=num_classes,
        img_size=img_size,
        in_chans=in_chans,
        pretrained=pretrained,
        pretrained_file=pretrained_file,
        **kwargs,
    )


# ----------------------------------------------------------------------------- weight files


# timm and huggingface_hub are imported inside the functions that need them: they take
# seconds to import, and the small CNN jobs of the default pipeline never use them.


def _how_to_get_weights(name: str) -> str:
    if name in TIMM_MODELS:
        return (
            f"On a machine with internet access run `timm.create_model({name!r}, pretrained=True)`, copy "
            f"the file it caches ({_hf_cache_pattern(name)}) here and set pretrained_file to its path "
            "(or copy the whole Hugging Face cache folder into this machine's cache)."
        )
    return (
        f"Save a trained {name!r} with `torch.save(model.state_dict(), path)` (or as safetensors) "
        "and set pretrained_file to that path."
    )


def _not_found(name: str, pretrained_file: str | Path | None) -> PretrainedWeightsNotFound:
    if pretrained_file is not None:
        tried = f"pretrained_file {Path(pretrained_file).expanduser()} is not an existing file"
    elif name in TIMM_MODELS:
        tried = f"no pretrained_file given and no cached copy at {_hf_cache_pattern(name)}"
    else:
        tried = "no pretrained_file given (small models have no published weights)"
    return PretrainedWeightsNotFound(
        f"pretrained weights for model {name!r} not found: {tried}. {_how_to_get_weights(name)}"
    )


def _require_weights_file(name: str, pretrained_file: str | Path | None) -> Path:
    path = _weights_file(name, pretrained_file)
    if path is None:
        raise _not_found(name, pretrained_file)
    return path


def _unreadable(name: str, path: Path, err: Exception) -> PretrainedWeightsNotFound:
    return PretrainedWeightsNotFound(
        f"could not load pretrained weights for model {name!r} from {path}: {type(err).__name__}: {err}. "
        f"{_how_to_get_weights(name)}"
    )


def _read_state_dict(name: str, path: Path) -> dict[str, torch.Tensor]:
    from timm.models import load_state_dict

    try:
        return load_state_dict(str(path), use_ema=False)
    except Exception as err:  # any unreadable file is reported the same way, with its cause
        raise _unreadable(name, path, err) from err


def _classifier_rows(state: dict[str, torch.Tensor], classifier: str) -> int | None:
    weight = state.get(f"{classifier}.weight")
    return None if weight is None else int(weight.shape[0])


def _load_local_weights(
    model: nn.Module,
    name: str,
    path: Path,
    classifier: str,
    num_classes: int,
    filter_fn: Callable[[dict, nn.Module], dict] | None = None,
    state: dict[str, torch.Tensor] | None = None,
) -> None:
    """Load the state_dict in ``path`` (or ``state``, already read from it) into ``model``.

    A classifier of another class count is left at its init; any other missing or
    unexpected weight is an error.
    """
    if state is None:
        state = _read_state_dict(name, path)
    allowed_missing: set[str] = set()
    if _classifier_rows(state, classifier) != num_classes:
        allowed_missing = {f"{classifier}.weight", f"{classifier}.bias"}
        state = {key: value for key, value in state.items() if key not in allowed_missing}
    try:
        if filter_fn is not None:
            state = filter_fn(state, model)
        result = model.load_state_dict(state, strict=False)
    except Exception as err:
        raise _unreadable(name, path, err) from err
    missing = set(result.missing_keys) - allowed_missing
    if missing or result.unexpected_keys:
        raise _unreadable(
            name,
            path,
            KeyError(f"missing keys {sorted(missing)}, unexpected keys {sorted(result.unexpected_keys)}"),
        )


# ----------------------------------------------------------------------------- small models


@register_model
def small_cnn(
    num_classes: int,
    img_size: int = 32,
    in_chans: int = 3,
    pretrained: bool = False,
    pretrained_file: str | Path | None = None,
    features: Sequence[int] = (32, 64),
    dropout: float = 0.0,
    blur_filter: int = 0,
) -> nn.Module:
    """`SmallCNN`; each block halves the image, so ``img_size`` must be >= 2 ** len(features).

    ``blur_filter`` (1..7, 0 off) makes each block's maxpool a MaxBlurPool of that filter size.
    """
    if img_size < 2 ** len(features):
        raise ValueError(
            f"img_size {img_size} is too small for {len(features)} pooling blocks (features={tuple(features)}); "
            f"it must be at least {2 ** len(features)}"
        )
    model = SmallCNN(num_classes, in_chans=in_chans, features=features, dropout=dropout, blur_filter=blur_filter)
    if pretrained:
        path = _require_weights_file("small_cnn", pretrained_file)
        _load_local_weights(model, "small_cnn", path, "head", num_classes)
    return model


@register_model
def wide_resnet40_2(
    num_classes: int,
    img_size: int = 32,
    in_chans: int = 3,
    pretrained: bool = False,
    pretrained_file: str | Path | None = None,
    dropout: float = 0.0,
    blur_filter: int = 0,
) -> nn.Module:
    """WRN-40-2 (`WideResNet`, depth 40, widen factor 2: about 2.2M parameters), AugMix's CIFAR model.

    Two stride-2 groups: ``img_size`` must be >= 4 (the global pool takes any size after that).
    ``blur_filter`` (1..7, 0 off) blurs before each of its strided convs.
    """
    if img_size < 4:
        raise ValueError(f"img_size {img_size} is too small for wide_resnet40_2's two stride-2 groups; "
                         "it must be at least 4")
    model = WideResNet(num_classes, depth=40, widen_factor=2, dropout=dropout, in_chans=in_chans,
                       blur_filter=blur_filter)
    if pretrained:
        path = _require_weights_file("wide_resnet40_2", pretrained_file)
        _load_local_weights(model, "wide_resnet40_2", path, "head", num_classes)
    return model


VIT_MICRO_DEFAULTS = dict(patch_size=4, embed_dim=64, depth=4, num_heads=4)


@register_model
def vit_micro(
    num_classes: int,
    img_size: int = 32,
    in_chans: int = 3,
    pretrained: bool = False,
    pretrained_file: str | Path | None = None,
    **kwargs,
) -> nn.Module:
    """A small timm `VisionTransformer` for 32x32 CPU runs; ``kwargs`` override `VIT_MICRO_DEFAULTS`.

    Pretrained weights saved at another image or patch size are resampled as timm does.
    """
    from timm.models.vision_transformer import VisionTransformer
    from timm.models.vision_transformer import checkpoint_filter_fn as vit_checkpoint_filter

    model = VisionTransformer(
        img_size=img_size, in_chans=in_chans, num_classes=num_classes, **{**VIT_MICRO_DEFAULTS, **kwargs}
    )
    if pretrained:
        path = _require_weights_file("vit_micro", pretrained_file)
        _load_local_weights(model, "vit_micro", path, "head", num_classes, filter_fn=vit_checkpoint_filter)
    return model


# ----------------------------------------------------------------------------- timm models


def _has_cifar_stem(state: dict[str, torch.Tensor]) -> bool:
    stem = state.get("conv1.weight")
    return stem is not None and stem.shape[-1] == 3


def _cifar_stem(model: nn.Module, in_chans: int) -> None:
    """Replace a ResNet's 7x7/2 conv + maxpool by one 3x3/1 conv, keeping 32x32 inputs at 32x32."""
    out_channels = model.conv1.out_channels
    model.conv1 = nn.Conv2d(in_chans, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")  # timm's ResNet init
    model.maxpool = nn.Identity()


def _create_timm_model(
    name: str,
    num_classes: int,
    img_size: int,
    in_chans: int,
    pretrained: bool,
    pretrained_file: str | Path | None,
    **kwargs,
) -> nn.Module:
    is_vit = name.startswith("vit_")
    cifar_stem = bool(kwargs.pop("cifar_stem", False))
    if cifar_stem and is_vit:
        raise ValueError(f"cifar_stem applies to ResNets only, not to {name!r}")
    blur_filter = check_filter_size(kwargs.pop("blur_filter", 0), allow_off=True)
    if blur_filter and is_vit:
        raise ValueError(f"blur_filter applies to CNNs only, not to {name!r}")
    if blur_filter:
        if "aa_layer" in kwargs:
            raise ValueError("give either blur_filter or timm's aa_layer, not both")
        kwargs["aa_layer"] = BlurPool2d
    if is_vit:
        kwargs["img_size"] = img_size
    model = _build_timm_model(name, num_classes, in_chans, pretrained, pretrained_file, cifar_stem, **kwargs)
    if blur_filter:
        _antialias_resnet(model, blur_filter)
    return model


def _antialias_resnet(model: nn.Module, blur_filter: int) -> None:
    """Finish a timm ResNet built with ``aa_layer=BlurPool2d``: the filter size asked for, and blurred shortcuts.

    timm's ``aa_layer`` gives each strided block conv s1 - BN - ReLU - BlurPool and the stem
    MaxPool(3, s1) + BlurPool (Zhang's recipe; the 7x7/2 stem conv stays strided, as in his
    reference ResNets) but keeps the strided 1x1 conv of the projection shortcuts, which then
    aliases what the block adds back. Zhang's ResNets blur the shortcut too; so here each strided
    ``downsample`` conv becomes a `BlurConv2d` (BlurPool, then the 1x1 conv at stride 1), with the
    parameter names unchanged.
    """
    set_blur_filter(model, blur_filter)
    for module in model.modules():
        downsample = getattr(module, "downsample", None)
        if isinstance(downsample, nn.Module):
            antialias(downsample, blur_filter, max_pools=False, avg_pools=False)


def _build_timm_model(
    name: str,
    num_classes: int,
    in_chans: int,
    pretrained: bool,
    pretrained_file: str | Path | None,
    cifar_stem: bool,
    **kwargs,
) -> nn.Module:
    import timm

    if not pretrained:
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)
        if cifar_stem:
            _cifar_stem(model, in_chans)
        return model

    path = _require_weights_file(name, pretrained_file)
    state = _read_state_dict(name, path)
    classifier = timm.models.get_pretrained_cfg(name).classifier
    if cifar_stem and _has_cifar_stem(state):
        # A checkpoint of a CIFAR-stem model (e.g. trained by robustflow): rebuild that model, then load.
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)
        _cifar_stem(model, in_chans)
        _load_local_weights(model, name, path, classifier, num_classes, state=state)
        return model

    # timm drops the file's classifier when its class count differs from the model's; telling it
    # the file's real count keeps a matching head (e.g. a CIFAR fine-tune) instead of dropping it.
    # custom_load=False: ViT configs route files to their .npz loader otherwise.
    overlay = dict(file=str(path), custom_load=False, num_classes=_classifier_rows(state, classifier) or 0)
    try:
        model = timm.create_model(
            name,
            pretrained=True,
            pretrained_cfg_overlay=overlay,
            num_classes=num_classes,
            in_chans=in_chans,
            **kwargs,
        )
    except Exception as err:  # shape mismatches and the like; the cause goes into the message
        raise _unreadable(name, path, err) from err
    # After dropping a head timm loads non-strictly, so a file of another architecture would
    # load nothing and leave a random model without an error.
    absent = sorted(
        key
        for key in model.state_dict()
        if not key.startswith(f"{classifier}.") and not key.endswith("num_batches_tracked") and key not in state
    )
    if absent:
        raise _unreadable(
            name, path, KeyError(f"the file lacks {len(absent)} of the model's weights, e.g. {absent[:3]}")
        )
    if cifar_stem:
        # The file holds an ImageNet stem (7x7 stride 2), which the 3x3 CIFAR conv cannot use:
        # the new conv starts from a fresh init, the rest of the network is pretrained.
        _cifar_stem(model, in_chans)
    return model


def _timm_entrypoint(name: str) -> Callable[..., nn.Module]:
    def entrypoint(
        num_classes: int,
        img_size: int = 32,
        in_chans: int = 3,
        pretrained: bool = False,
        pretrained_file: str | Path | None = None,
        **kwargs,
    ) -> nn.Module:
        return _create_timm_model(name, num_classes, img_size, in_chans, pretrained, pretrained_file, **kwargs)

    entrypoint.__name__ = name
    entrypoint.__doc__ = (
        f"timm's {name!r}. ViTs get ``img_size`` (``patch_size`` may be overridden in kwargs, e.g. 4 "
        "at 32x32). ResNets ignore ``img_size`` and keep timm's ImageNet stem (7x7/2 conv + maxpool, "
        "so 32x32 inputs reach the last stage at 1x1) unless ``cifar_stem=True``. ResNets take "
        "``blur_filter`` (1..7, 0 off): timm's ``aa_layer`` with `BlurPool2d` of that filter size, "
        "plus blurred projection shortcuts."
    )
    return entrypoint


for _name in TIMM_MODELS:
    register_model(_timm_entrypoint(_name))

# The catalog lists the same names for validation without torch; they must not drift apart.
if set(_MODEL_ENTRYPOINTS) != set(MODEL_NAMES):
    raise ImportError(f"model_catalog.MODEL_NAMES {sorted(MODEL_NAMES)} != registry {list_models()}")
