"""The names of the registered models and where their pretrained weights are, without torch.

Config validation runs before the DAG is built and needs only this: the model registry
(`robustflow.models`) imports torch and timm; this module imports neither.
"""

from __future__ import annotations

from pathlib import Path

# timm's default pretrained tag of each model: the Hugging Face repo its weights are cached under
# (tests check these against timm's own pretrained configs).
TIMM_HUB_IDS = {
    "resnet18": "timm/resnet18.a1_in1k",
    "resnet50": "timm/resnet50.a1_in1k",
    "vit_small_patch16_224": "timm/vit_small_patch16_224.augreg_in21k_ft_in1k",
    "vit_tiny_patch16_224": "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k",
}
TIMM_MODELS = tuple(TIMM_HUB_IDS)
MODEL_NAMES = ("small_cnn", "vit_micro", "wide_resnet40_2", *TIMM_MODELS)
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # the names timm publishes on the hub


def _hf_repo(name: str) -> tuple[str, str | None]:
    repo, _, revision = TIMM_HUB_IDS[name].partition("@")
    return repo, revision or None


def _hf_cache_pattern(name: str) -> Path:
    from huggingface_hub import constants as hf_constants

    repo, _ = _hf_repo(name)
    folder = "models--" + repo.replace("/", "--")
    return Path(hf_constants.HF_HUB_CACHE) / folder / "snapshots" / "<revision>" / HF_WEIGHT_FILES[0]


def _hf_cached_weights(name: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    repo, revision = _hf_repo(name)
    for filename in HF_WEIGHT_FILES:
        hit = try_to_load_from_cache(repo, filename, revision=revision)
        if isinstance(hit, str):
            return Path(hit)
    return None


def _weights_file(name: str, pretrained_file: str | Path | None) -> Path | None:
    if pretrained_file is not None:
        path = Path(pretrained_file).expanduser()
        return path if path.is_file() else None
    if name in TIMM_MODELS:
        return _hf_cached_weights(name)
    return None


def pretrained_weights_available(name: str, pretrained_file: str | Path | None = None) -> bool:
    """Whether `create_model(name, pretrained=True, pretrained_file=...)` would find a weight file."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(sorted(MODEL_NAMES))}")
    return _weights_file(name, pretrained_file) is not None
