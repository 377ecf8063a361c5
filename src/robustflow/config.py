"""Configuration: schema validation with defaults, and the checks that several studies share.

Everything here runs before any job starts, so a bad config stops the workflow with a
`ConfigError` that names the offending key (``loss_study.sweep[0].loss[1]``). Each study's own
checks live in its plan (`robustflow.studies`); `robustflow.studies.validate` runs both. This
module imports no study and nothing heavy: the DAG build pays for every import here.
"""

from __future__ import annotations

import copy
import difflib
import math
from pathlib import Path
from typing import Any

import jsonschema
import yaml


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key."""


def load_schema(path: str | Path) -> dict:
    with open(path) as handle:
        return yaml.safe_load(handle)


def _key_path(parts) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<root>"


def _resolve(schema: dict, root: dict) -> dict:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    target = root
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return _resolve(merged, root)


def _fill_defaults(instance: Any, schema: dict, root: dict) -> Any:
    """Fill schema defaults recursively (jsonschema itself never mutates the instance)."""
    schema = _resolve(schema, root)
    if isinstance(instance, dict):
        for key, sub in schema.get("properties", {}).items():
            sub_resolved = _resolve(sub, root)
            if key not in instance and "default" in sub_resolved:
                instance[key] = copy.deepcopy(sub_resolved["default"])
            if key in instance:
                instance[key] = _fill_defaults(instance[key], sub, root)
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        return [_fill_defaults(item, schema["items"], root) for item in instance]
    return instance


def _schema_error_message(error: jsonschema.ValidationError, root: dict) -> str:
    key = _key_path(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(_resolve(error.schema, root).get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, allowed, n=1)
            hints.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        return f"config key '{key}': unknown key {', '.join(hints)}; allowed: {', '.join(allowed)}"
    if error.validator == "anyOf" and "description" in error.schema:  # "not valid under any of the given schemas"
        return f"config key '{key}': {error.instance!r} is not {error.schema['description']}"
    return f"config key '{key}': {error.message}"


def _is_integer(checker, instance) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


def _is_number(checker, instance) -> bool:
    return isinstance(instance, (int, float)) and not isinstance(instance, bool) and not math.isnan(instance)


# JSON Schema counts 4.0 as an integer and NaN as a number, and NaN passes every minimum; the
# code behind the keys takes neither (range(8.0) fails, NaN poisons a loss), so neither validates.
STRICT_VALIDATOR = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"integer": _is_integer, "number": _is_number}),
)


def validate_config(config: dict, schema: dict) -> dict:
    """Validate against the JSON schema (every violation reported at once) and fill defaults.

    Returns a new dict; the input is not modified.
    """
    config = copy.deepcopy(config)
    validator = STRICT_VALIDATOR(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("\n".join(_schema_error_message(e, schema) for e in errors))
    return _fill_defaults(config, schema, schema)


def check_model(model: dict, key: str) -> list[str]:
    """Problems of one model entry: an unregistered name, or pretrained weights not on disk."""
    from robustflow.model_catalog import MODEL_NAMES, pretrained_weights_available

    if model["name"] not in MODEL_NAMES:
        return [f"config key '{key}.name': unknown model '{model['name']}'; "
                f"registered: {', '.join(sorted(MODEL_NAMES))}"]
    if model["pretrained_file"] is not None and not model["pretrained"]:
        return [f"config key '{key}.pretrained_file': {model['pretrained_file']} is given but {key}.pretrained is "
                "false, so it would never be loaded; set pretrained: true, or drop the file"]
    if model["pretrained"] and not pretrained_weights_available(model["name"], model["pretrained_file"]):
        return [
            f"config key '{key}.pretrained_file': no local weights for '{model['name']}' "
            f"(file: {model['pretrained_file']}, nor in the offline timm/Hugging Face cache). "
            f"Run timm.create_model('{model['name']}', pretrained=True) on a machine with internet "
            "and point pretrained_file at the downloaded weights file."
        ]
    return []


def check_unique_ids(models: list[dict], key: str) -> list[str]:
    """Model ids name runs and files, so two models must not share one."""
    ids = [model["id"] for model in models]
    return [f"config key '{key}': model ids must be unique, got {ids}"] if len(set(ids)) < len(ids) else []


def figure_and_table_targets(prefix: str, figures, tables) -> list[str]:
    """A study's final files: every figure as PDF and PNG, and its final tables."""
    return [*(f"results/figures/{prefix}_{figure}.{ext}" for figure in figures for ext in ("pdf", "png")),
            *(f"results/tables/{prefix}_{table}" for table in tables)]


def check_devices(training: dict, resources: dict, key: str) -> list[str]:
    """Data-parallel processes need one GPU each when the study asks for GPUs (``key``: the training block)."""
    devices, gpus = training.get("devices", 1), resources["gpu"]
    if gpus and devices > gpus:
        return [f"config key '{key}.devices': {devices} data-parallel processes need one GPU each, "
                f"but the study's resources.gpu is {gpus}"]
    return []


# Classes of the image datasets the studies train on (the chance level of a claim's precondition).
DATASET_CLASSES = {"digits": 10, "cifar10": 10}


def check_dataset(config: dict, dataset: str, key: str) -> list[str]:
    """Cheap presence check so a missing or damaged dataset fails before any job starts."""
    if dataset != "cifar10":
        return []
    from robustflow.data_files import (
        CIFAR10_FOLDER,
        CIFAR10_URL,
        cifar10_empty_files,
        cifar10_layout_hint,
        cifar10_missing_files,
    )

    root = Path(config["datasets"]["cifar10"]["root"])
    missing = cifar10_missing_files(root)
    if missing:
        how = cifar10_layout_hint(root) or (
            f"Download {CIFAR10_URL} and extract it into that root so that "
            f"{root / CIFAR10_FOLDER / 'data_batch_1'} exists, or set datasets.cifar10.root to where it is.")
        # Every absent file at once (one fix for all), or the batches folder when it is absent whole.
        absent = missing if (root / CIFAR10_FOLDER).is_dir() else [root / CIFAR10_FOLDER]
        return [f"config key '{key}' is cifar10 but the dataset is missing: {', '.join(map(str, absent))} "
                f"{'does' if len(absent) == 1 else 'do'} not exist (datasets.cifar10.root = {root}). {how}"]
    empty = cifar10_empty_files(root)
    if empty:
        return [f"config key '{key}' is cifar10 but {', '.join(map(str, empty))} "
                f"{'is' if len(empty) == 1 else 'are'} empty (an interrupted download or copy; "
                f"datasets.cifar10.root = {root}). Download {CIFAR10_URL} again and extract it into that root."]
    return []


# The keyword arguments of `robustflow.models.small_cnn` and the defaults of ``vit_micro``
# (tests/test_bad_input.py checks they match the models, which this module must not import).
SMALL_CNN_KWARGS = ("features", "dropout", "blur_filter")
MAX_BLUR_FILTER = 7  # the largest binomial filter of robustflow.models.blurpool
SMALL_CNN_FEATURES = (32, 64)
VIT_MICRO_DEFAULTS = {"patch_size": 4, "embed_dim": 64, "depth": 4, "num_heads": 4}


def check_model_shape(name: str, kwargs: dict, image_size: int, key: str) -> list[str]:
    """Problems of a model's ``kwargs`` (``key``: the model entry) on ``image_size``-square inputs that
    would stop its first job: a small_cnn argument it does not take or more pooling blocks than the
    image can be halved, a ViT patch larger than the image or heads that do not divide its width."""
    problems = []
    if name == "small_cnn":
        unknown = sorted(set(kwargs) - set(SMALL_CNN_KWARGS))
        for arg in unknown:
            close = difflib.get_close_matches(arg, SMALL_CNN_KWARGS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(f"config key '{key}.kwargs': small_cnn takes no argument '{arg}'{hint}; "
                            f"its arguments: {', '.join(SMALL_CNN_KWARGS)}")
        blur = kwargs.get("blur_filter", 0)
        if not isinstance(blur, int) or isinstance(blur, bool) or not 0 <= blur <= MAX_BLUR_FILTER:
            problems.append(f"config key '{key}.kwargs.blur_filter': {blur!r} must be an integer 0..{MAX_BLUR_FILTER} "
                            "(0: no anti-aliasing; k: a binomial blur of size k before every downsampling)")
        features = kwargs.get("features", SMALL_CNN_FEATURES)
        if isinstance(features, (list, tuple)) and 2 ** len(features) > image_size:
            problems.append(
                f"config key '{key}.kwargs.features': {len(features)} pooling blocks ({list(features)}) halve "
                f"the {image_size}x{image_size} inputs {len(features)} times, but {image_size} allows at most "
                f"{image_size.bit_length() - 1}; drop blocks from features or feed larger images")
    elif name.startswith("vit_"):
        defaults = dict(VIT_MICRO_DEFAULTS) if name == "vit_micro" else {}
        if name != "vit_micro" and "patch" in name:  # timm names carry the patch: vit_small_patch16_224
            digits = name.split("patch", 1)[1].split("_", 1)[0]
            if digits.isdigit():
                defaults["patch_size"] = int(digits)
        settings = {**defaults, **kwargs}
        patch = settings.get("patch_size")
        if isinstance(patch, int) and patch > image_size:
            problems.append(f"config key '{key}.kwargs.patch_size': patches of {patch}x{patch} do not fit the "
                            f"{image_size}x{image_size} inputs; use a patch_size of at most {image_size}")
        width, heads = settings.get("embed_dim"), settings.get("num_heads")
        if isinstance(width, int) and isinstance(heads, int) and heads > 0 and width % heads:
            problems.append(f"config key '{key}.kwargs.num_heads': {heads} attention heads do not divide "
                            f"embed_dim {width}; pick num_heads among the divisors of {width}")
    return problems


def check_schedule(training: dict, key: str) -> list[str]:
    """A step schedule whose first drop comes after the last epoch trains at a constant lr (``key``: the block)."""
    if training.get("schedule") != "step" or training["step_size"] < training["epochs"]:
        return []
    return [f"config key '{key}.step_size': the step schedule lowers the lr every {training['step_size']} epochs, "
            f"but {key}.epochs is {training['epochs']}, so it never drops; set step_size below epochs "
            "(or schedule: constant)"]


def format_number(value: float) -> str:
    """A number as it appears in ids and file names (``:g``: 10.0 -> ``10``, 0.5 -> ``0.5``)."""
    return f"{float(value):g}"


def dataset_config(config: dict, dataset: str) -> dict:
    """The ``datasets`` entry of ``dataset`` alone, as a job's config carries it."""
    return {dataset: config["datasets"][dataset]}
