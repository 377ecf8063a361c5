"""The architecture study's plan (source 002): CNN vs ViT, from scratch vs pretrained, on
CIFAR-10 (Exp 1), CIFAR-10-C (Exp 2) and after fine-tuning on CIFAR-10-C (Exp 3).

A variant is a model x init (``cnn-scratch``, ``vit-pt``); a run is a variant at one seed.
CIFAR-10-C is prepared once for all runs; source-task pretraining runs once per (model, seed);
fine-tuning runs once per run and corruption group.
"""

from __future__ import annotations

from pathlib import Path

from robustflow.config import (
    check_dataset,
    check_devices,
    check_model,
    check_unique_ids,
    dataset_config,
    figure_and_table_targets,
)
from robustflow.corruption_names import CORRUPTIONS
from robustflow.data_files import cifar10c_problems

SECTION = "architecture_study"
FIGURES = ("training_curves", "severity_curves", "corruption_heatmap", "finetune_improvement",
           "clean_vs_corrupted")
INITS = ("scratch", "pretrained")
INIT_SUFFIX = {"scratch": "scratch", "pretrained": "pt"}
CLEAN = "clean"
STUDY_DIR = "results/architecture_study"
CIFAR10_IMAGE_SIZE = 32


def variant_id(model_id: str, init: str) -> str:
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    return f"{model_id}-{INIT_SUFFIX[init]}"


def variants(config: dict) -> list[dict]:
    return [dict(variant=variant_id(spec["id"], init), model=spec["id"], family=spec["family"], init=init)
            for spec in config[SECTION]["models"] for init in INITS]


def runs(config: dict) -> list[dict]:
    """One row per (model, init, seed); run id ``<model>-<scratch|pt>-s<seed>``."""
    return [dict(run=f"{variant['variant']}-s{seed}", **variant, seed=int(seed))
            for variant in variants(config) for seed in config[SECTION]["seeds"]]


def corruptions(config: dict) -> list[str]:
    """The CIFAR-10-C corruptions of the study (null: all 19)."""
    return list(config[SECTION]["cifar10c"]["corruptions"] or CORRUPTIONS)


def finetune_groups(config: dict) -> dict[str, list[str]]:
    """Fine-tuning jobs per run: group id -> corruptions. ``finetune.group_by: corruption`` gives
    one job per corruption (paper scale), ``run`` one job for all (saves start-up time)."""
    finetune = config[SECTION]["finetune"]
    names = list(finetune["corruptions"] or corruptions(config))
    if finetune["group_by"] == "corruption":
        return {name: [name] for name in names}
    return {"all": names}


def source_task_weights(config: dict, run: dict) -> str | list:
    """The weights file a run starts from when it is a pretrained run of a source-task model (the
    pipeline's own pretraining), else ``[]`` (no input)."""
    if run["init"] == "pretrained" and _spec(config, run["model"])["pretrained_source"] == "source_task":
        return f"{STUDY_DIR}/pretrain/{run['model']}-s{run['seed']}.pt"
    return []


def _spec(config: dict, model_id: str) -> dict:
    return next(spec for spec in config[SECTION]["models"] if spec["id"] == model_id)


def _model_for(config: dict, model_id: str, init: str | None = None, *, weights: bool = False) -> dict:
    """The model entry as a job reads it: its architecture always; the training block of ``init``
    when the job trains; where pretrained weights come from when it builds a pretrained model."""
    spec = _spec(config, model_id)
    model = {k: spec[k] for k in ("id", "name", "kwargs", "input_size")}
    if weights:
        model["pretrained_source"] = spec["pretrained_source"]
        if spec["pretrained_source"] == "timm":
            model["pretrained_file"] = spec["pretrained_file"]
    if init is not None:
        model["training"] = {init: spec["training"][init]}
    return model


def job_config(config: dict, step: str, job: dict | None = None) -> dict:
    """What one job of ``step`` reads (see the module docstring for the steps)."""
    study = config[SECTION]
    data = {"device": config["device"], "datasets": dataset_config(config, study["dataset"])}
    if step == "prepare_cifar10c":
        return {**data, SECTION: {"dataset": study["dataset"], "cifar10c": study["cifar10c"]}}
    if step == "pretrain":
        model = _model_for(config, job["model"], None)
        return {**data, SECTION: {"dataset": study["dataset"], "source_task": study["source_task"], "models": [model]}}
    if step == "train":
        model = _model_for(config, job["model"], job["init"], weights=job["init"] == "pretrained")
        return {**data, SECTION: {"dataset": study["dataset"], "models": [model]}}
    if step == "evaluate":
        return {**data, SECTION: {"dataset": study["dataset"], "eval_batch_size": study["eval_batch_size"],
                                  "cifar10c": {"corruptions": study["cifar10c"]["corruptions"]},
                                  "models": [_model_for(config, job["model"], None)]}}
    if step == "finetune":
        subset = {"dataset": study["dataset"], "finetune": study["finetune"],
                  "models": [_model_for(config, job["model"], job["init"])]}
        if not study["finetune"]["corruptions"]:  # then the groups come from cifar10c's list
            subset["cifar10c"] = {"corruptions": study["cifar10c"]["corruptions"]}
        return {**data, SECTION: subset}
    if step == "aggregate":
        models = [{k: spec[k] for k in ("id", "family", "name", "pretrained_source")} for spec in study["models"]]
        return {SECTION: {"dataset": study["dataset"], "baseline": study["baseline"], "models": models}}
    if step == "figure":
        return {}
    raise KeyError(f"architecture study has no step {step!r}")


def targets(config: dict) -> list[str]:
    return figure_and_table_targets("architecture", FIGURES, ("summary.csv", "claims.csv"))


def _official_cifar10c_problems(config: dict) -> list[str]:
    """An official CIFAR-10-C folder (any .npy in ``cifar10c.root``) must fit the study's test set."""
    study = config[SECTION]
    root = study["cifar10c"]["root"]
    if study["dataset"] != "cifar10" or not root or not Path(root).is_dir() or not any(Path(root).glob("*.npy")):
        return []  # nothing official there: the set is generated from the test split
    key = f"config key '{SECTION}.cifar10c.root'"
    return [f"{key}: {problem} (or set {SECTION}.cifar10c.root to null to generate the set)"
            for problem in cifar10c_problems(Path(root), corruptions(config), CIFAR10_IMAGE_SIZE)]


def check(config: dict) -> list[str]:
    study = config[SECTION]
    problems = check_unique_ids(study["models"], f"{SECTION}.models")
    for index, spec in enumerate(study["models"]):
        key = f"{SECTION}.models[{index}]"
        problems += check_model({"name": spec["name"], "pretrained": spec["pretrained_source"] == "timm",
                                 "pretrained_file": spec["pretrained_file"]}, key)
        for init in INITS:
            problems += check_devices(spec["training"][init], study["resources"], f"{key}.training.{init}")
    unknown = sorted(set(study["cifar10c"]["corruptions"] or []) - set(CORRUPTIONS))
    if unknown:
        problems.append(f"config key '{SECTION}.cifar10c.corruptions': unknown corruptions {unknown}; "
                        f"known: {', '.join(CORRUPTIONS)}")
    missing = sorted(set(study["finetune"]["corruptions"] or []) - set(corruptions(config)))
    if missing:
        problems.append(f"config key '{SECTION}.finetune.corruptions': {missing} are not among "
                        f"{SECTION}.cifar10c.corruptions, so no CIFAR-10-C files exist for them")
    problems += _official_cifar10c_problems(config)
    names = {variant["variant"] for variant in variants(config)}
    if study["baseline"] not in names:
        problems.append(f"config key '{SECTION}.baseline': '{study['baseline']}' is not a variant; "
                        f"variants: {', '.join(sorted(names))}")
    return problems + check_dataset(config, study["dataset"], f"{SECTION}.dataset")
