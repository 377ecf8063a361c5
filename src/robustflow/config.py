"""Configuration: schema validation with defaults, semantic checks and the run tables.

Everything here runs before any job starts, so a bad config stops the workflow with a
`ConfigError` that names the offending key (``loss_study.sweep[0].loss[1]``).
"""

from __future__ import annotations

import copy
import difflib
import itertools
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import yaml

LOSSES_WITH_LAMBDA = ("margin", "combined")


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
    return f"config key '{key}': {error.message}"


def validate_config(config: dict, schema: dict) -> dict:
    """Validate against the JSON schema, fill defaults, then run the semantic checks.

    Returns a new dict; the input is not modified.
    """
    config = copy.deepcopy(config)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("\n".join(_schema_error_message(e, schema) for e in errors))
    config = _fill_defaults(config, schema, schema)
    _check_semantics(config)
    return config


def check_model(model: dict, key: str) -> None:
    """The model is registered and, if pretrained, its weights are on disk."""
    from robustflow.models import list_models, pretrained_weights_available

    if model["name"] not in list_models():
        raise ConfigError(
            f"config key '{key}.name': unknown model '{model['name']}'; "
            f"registered: {', '.join(list_models())}"
        )
    if model["pretrained"] and not pretrained_weights_available(model["name"], model["pretrained_file"]):
        raise ConfigError(
            f"config key '{key}.pretrained_file': no local weights for '{model['name']}' "
            f"(file: {model['pretrained_file']}, nor in the offline timm/Hugging Face cache). "
            f"Run timm.create_model('{model['name']}', pretrained=True) on a machine with internet "
            "and point pretrained_file at the downloaded weights file."
        )


def _check_semantics(config: dict) -> None:
    study = config["loss_study"]
    if study["enabled"]:
        check_model(study["model"], "loss_study.model")
        devices, gpus = study["training"]["devices"], study["resources"]["gpu"]
        if gpus and devices > gpus:
            raise ConfigError(
                f"config key 'loss_study.training.devices': {devices} data-parallel processes need "
                f"one GPU each, but loss_study.resources.gpu is {gpus}"
            )
        variants = set(loss_study_runs(config)["variant"])
        if study["baseline"] not in variants:
            raise ConfigError(
                f"config key 'loss_study.baseline': '{study['baseline']}' is not a variant of the "
                f"sweep; variants: {', '.join(sorted(variants))}"
            )
        check_dataset_available(config, study["dataset"], "loss_study.dataset")
    if config["architecture_study"]["enabled"]:
        _check_architecture_study(config)
    if config["background_study"]["enabled"]:
        _check_background_study(config)
    task = config["learning_rule_study"]["task"]
    if config["learning_rule_study"]["enabled"] and task["source"] == "folder":
        if task["root"] is None or not Path(task["root"]).is_dir():
            raise ConfigError(
                f"config key 'learning_rule_study.task.root': image folder {task['root']} does not "
                "exist; it must hold two class folders of images (root/<class_a>/*.png, "
                "root/<class_b>/*.png), or set task.source to digits"
            )


def _check_architecture_study(config: dict) -> None:
    from robustflow.studies.architecture_study import architecture_runs, finetune_groups

    study = config["architecture_study"]
    for index, spec in enumerate(study["models"]):
        key = f"architecture_study.models[{index}]"
        check_model({"name": spec["name"], "pretrained": spec["pretrained_source"] == "timm",
                     "pretrained_file": spec["pretrained_file"]}, key)
    arms = set(architecture_runs(config)["arm"])
    if study["baseline"] not in arms:
        raise ConfigError(f"config key 'architecture_study.baseline': '{study['baseline']}' is not an arm; "
                          f"arms: {', '.join(sorted(arms))}")
    try:
        finetune_groups(config)
    except ValueError as error:
        raise ConfigError(f"config key 'architecture_study.finetune.corruptions': {error}") from None
    check_dataset_available(config, study["dataset"], "architecture_study.dataset")


def _check_background_study(config: dict) -> None:
    study = config["background_study"]
    ids = [model["id"] for model in study["models"]]
    if len(set(ids)) < len(ids):
        raise ConfigError(f"config key 'background_study.models': model ids must be unique, got {ids}")
    for index, model in enumerate(study["models"]):
        check_model(model, f"background_study.models[{index}]")
    unknown_seeds = sorted(set(study["influence"]["seeds"]) - set(study["seeds"]))
    if unknown_seeds:
        raise ConfigError(f"config key 'background_study.influence.seeds': {unknown_seeds} not in "
                          f"background_study.seeds {study['seeds']}")
    if study["source"] == "bg_challenge":
        from robustflow.data.backgrounds import HOW_TO_GET

        root = Path(study["bg_challenge"]["root"])
        for needed in (root / "original" / "train", root / "original" / "val"):
            if not needed.is_dir():
                raise ConfigError(
                    f"config key 'background_study.bg_challenge.root': {needed} does not exist "
                    f"(root = {root}). {HOW_TO_GET} Or set background_study.source to generated."
                )


def check_dataset_available(config: dict, dataset: str, key: str) -> None:
    """Cheap presence check so a missing dataset fails before any job starts."""
    if dataset != "cifar10":
        return
    from robustflow.data import cifar10_missing_files

    root = Path(config["datasets"]["cifar10"]["root"])
    missing = cifar10_missing_files(root)
    if missing:
        raise ConfigError(
            f"config key '{key}' is cifar10 but the dataset is missing: {missing[0]} does not exist "
            f"(datasets.cifar10.root = {root}). Download "
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and extract it into that "
            f"root so that {root / 'cifar-10-batches-py' / 'data_batch_1'} exists, or set "
            "datasets.cifar10.root to where it is."
        )


def _format_number(value: float) -> str:
    return f"{float(value):g}"


def loss_variant_id(loss: str, margin_lambda: float | None, ema: bool, mixup_alpha: float) -> str:
    """Readable, stable id of one grid point (without the seed)."""
    parts = [loss]
    if loss in LOSSES_WITH_LAMBDA:
        parts.append(f"lam{_format_number(margin_lambda)}")
    if mixup_alpha > 0:
        parts.append(f"mixup{_format_number(mixup_alpha)}")
    if ema:
        parts.append("ema")
    return "-".join(parts)


def loss_study_runs(config: dict) -> pd.DataFrame:
    """The loss study's run table: one row per (grid point, seed), indexed by run id."""
    study = config["loss_study"]
    default_lambda = study["training"]["margin_lambda"]
    variants: dict[str, dict] = {}
    for block in study["sweep"]:
        grid = itertools.product(
            block["loss"],
            block.get("margin_lambda", [default_lambda]),
            block.get("ema", [False]),
            block.get("mixup_alpha", [0.0]),
        )
        for loss, margin_lambda, ema, mixup_alpha in grid:
            margin_lambda = float(margin_lambda) if loss in LOSSES_WITH_LAMBDA else None
            variant = loss_variant_id(loss, margin_lambda, ema, mixup_alpha)
            variants[variant] = dict(
                variant=variant,
                loss=loss,
                margin_lambda=margin_lambda,
                ema=bool(ema),
                mixup_alpha=float(mixup_alpha),
            )
    rows = [
        dict(run=f"{variant}-s{seed}", seed=int(seed), **params)
        for variant, params in variants.items()
        for seed in study["seeds"]
    ]
    return pd.DataFrame(rows).set_index("run", drop=False)


def run_record(runs: pd.DataFrame, run_id: str) -> dict:
    """One row of a run table as plain Python values (NaN -> None), safe as a job param."""
    record = runs.loc[run_id].to_dict()
    return {k: (None if isinstance(v, float) and v != v else getattr(v, "item", lambda: v)())
            for k, v in record.items()}


def loss_job_config(config: dict, *, noise_suite: bool = False) -> dict:
    """The part of the config one loss-study job depends on.

    Jobs get only this (not the whole config) so that adding a seed or a figure does not
    invalidate every trained model.
    """
    study = config["loss_study"]
    subset = {
        "device": config["device"],
        "datasets": {study["dataset"]: config["datasets"][study["dataset"]]},
        "loss_study": {k: study[k] for k in ("dataset", "model", "training")},
    }
    if noise_suite:
        subset["noise_suite"] = config["noise_suite"]
    return subset


def learning_rule_cells(config: dict) -> dict[str, list[str]]:
    """Method x constraint cells of the learning-rule study, as zipped wildcard lists."""
    from robustflow.studies.learning_rule_study import constraint_id

    study = config["learning_rule_study"]
    cells = [(m, constraint_id(c)) for m in study["methods"] for c in study["constraints"]]
    return {"method": [m for m, _ in cells], "constraint": [c for _, c in cells]}


def learning_rule_job_config(config: dict) -> dict:
    """What one learning-rule cell depends on (not the list of cells, not resources)."""
    study = config["learning_rule_study"]
    return {k: v for k, v in study.items() if k not in ("enabled", "methods", "constraints", "resources")}


def architecture_job_config(config: dict) -> dict:
    """What an architecture-study job depends on: its section, its dataset and the device."""
    study = config["architecture_study"]
    return {
        "device": config["device"],
        "datasets": {study["dataset"]: config["datasets"][study["dataset"]]},
        "architecture_study": study,
    }


def background_job_config(config: dict, *, dataset_only: bool = False) -> dict:
    """What one background-study run depends on: its section less the run grid, and the device.

    ``dataset_only``: just what builds the image set, so retraining never regenerates it.
    """
    study = config["background_study"]
    if dataset_only:
        keep = ("source", "generated", "bg_challenge")
        return {"background_study": {k: study[k] for k in keep}}
    grid = ("enabled", "models", "methods", "reg_coeffs", "seeds", "resources")
    return {"device": config["device"], "background_study": {k: v for k, v in study.items() if k not in grid}}
