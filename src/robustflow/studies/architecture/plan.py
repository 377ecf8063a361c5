"""The architecture study's plan (source 002): CNN vs ViT, from scratch vs pretrained, on
CIFAR-10 (Exp 1), CIFAR-10-C (Exp 2) and after fine-tuning on CIFAR-10-C (Exp 3).

A variant is a model x init (``cnn-scratch``, ``vit-pt``); a run is a variant at one seed.
CIFAR-10-C is prepared once for all runs; source-task pretraining runs once per (model, seed);
fine-tuning runs once per run and corruption group.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from robustflow.config import (
    DATASET_CLASSES,
    check_dataset,
    check_devices,
    check_model,
    check_model_shape,
    check_schedule,
    check_unique_ids,
    dataset_config,
    figure_and_table_targets,
)
from robustflow.corruption_names import CORRUPTIONS
from robustflow.data_files import (
    CIFAR10C_HOW_TO_GET,
    CIFAR10C_LABELS,
    cifar10c_problems,
)
from robustflow.studies import run_id

SECTION = "architecture_study"
FIGURES = ("training_curves", "severity_curves", "corruption_heatmap", "finetune_improvement",
           "clean_vs_corrupted")
RUN_COLUMNS = ["run", "variant", "model", "family", "init", "seed"]
INITS = ("scratch", "pretrained")
INIT_SUFFIX = {"scratch": "scratch", "pretrained": "pt"}
CLEAN = "clean"
STUDY_DIR = "results/architecture_study"
PRETRAINED_MODEL = f"{STUDY_DIR}/pretrain/{{model}}-s{{seed}}.pt"  # the pretrain rule's output
CIFAR10_IMAGE_SIZE = 32
IMAGE_SIZE = {"digits": 32, "cifar10": CIFAR10_IMAGE_SIZE}  # the study's data as its loaders give it


def variant_id(model_id: str, init: str) -> str:
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    return f"{model_id}-{INIT_SUFFIX[init]}"


def variants(config: dict) -> list[dict]:
    return [dict(variant=variant_id(spec["id"], init), model=spec["id"], family=spec["family"], init=init)
            for spec in config[SECTION]["models"] for init in INITS]


def runs(config: dict) -> list[dict]:
    """One row per (model, init, seed); run id ``<model>-<scratch|pt>-s<seed>``."""
    return [dict(run=run_id(variant["variant"], seed), **variant, seed=int(seed))
            for variant in variants(config) for seed in config[SECTION]["seeds"]]


def corruptions(config: dict) -> list[str]:
    """The CIFAR-10-C corruptions of the study (null: all 19)."""
    return list(config[SECTION]["cifar10c"]["corruptions"] or CORRUPTIONS)


def finetune_groups(config: dict) -> dict[str, list[str]]:
    """Fine-tuning jobs per run: group id -> corruptions. ``finetune.group_by: corruption`` gives
    one job per corruption (paper scale), ``run`` one job for all (saves start-up time)."""
    finetune = config[SECTION]["finetune"]
    names = list(corruptions(config) if finetune["corruptions"] is None else finetune["corruptions"])
    if not names:  # no fine-tuning at all (Exp 3 switched off), not a job that does nothing
        return {}
    if finetune["group_by"] == "corruption":
        return {name: [name] for name in names}
    return {"all": names}


def source_task_weights(config: dict, run: dict) -> str | list:
    """The weights file a run starts from when it is a pretrained run of a source-task model (the
    pipeline's own pretraining), else ``[]`` (no input)."""
    if run["init"] == "pretrained" and _spec(config, run["model"])["pretrained_source"] == "source_task":
        return PRETRAINED_MODEL.format(model=run["model"], seed=run["seed"])
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
        # The job's own group only: adding a corruption to the list adds a job, reruns none.
        # (An unknown group gets none: the step then names the group and the groups there are.)
        finetune = {**study["finetune"], "corruptions": finetune_groups(config).get(job["group"], [])}
        return {**data, SECTION: {"dataset": study["dataset"], "finetune": finetune,
                                  "models": [_model_for(config, job["model"], job["init"])]}}
    if step == "aggregate":
        models = [{k: spec[k] for k in ("id", "family", "name", "pretrained_source")} for spec in study["models"]]
        return {SECTION: {"dataset": study["dataset"], "baseline": study["baseline"], "models": models}}
    if step == "figure":
        return {}
    raise KeyError(f"architecture study has no step {step!r}")


def figures(config: dict) -> list[str]:
    """The figures of `FIGURES` whose subject the study has: ``finetune_improvement`` (Exp 3)
    needs a fine-tuning corruption (``finetune.corruptions: []`` fine-tunes on none)."""
    finetuned = any(finetune_groups(config).values())
    return [name for name in FIGURES if name != "finetune_improvement" or finetuned]


def targets(config: dict) -> list[str]:
    return figure_and_table_targets("architecture", figures(config), ("summary.csv", "claims.csv"))


def _official_cifar10c_problems(config: dict) -> list[str]:
    """An official CIFAR-10-C folder (any .npy in ``cifar10c.root``) must fit the study's test set;
    a root that is the release's archive, or the folder above the extracted files, would silently
    fall back to a generated set."""
    study = config[SECTION]
    root = study["cifar10c"]["root"]
    if study["dataset"] != "cifar10" or not root:
        return []
    key = f"config key '{SECTION}.cifar10c.root'"
    root = Path(root)
    if root.is_file():
        return [f"{key}: {root} is a file, not the folder of .npy files (the CIFAR-10-C.tar archive?); extract "
                f"it (tar -xf {root}) and set {SECTION}.cifar10c.root to the folder that holds {CIFAR10C_LABELS}. "
                f"{CIFAR10C_HOW_TO_GET}"]
    if not root.is_dir():
        return []  # nothing official there: the set is generated from the test split
    if not any(root.glob("*.npy")):
        nested = sorted(root.glob(f"*/{CIFAR10C_LABELS}"))
        if nested:
            return [f"{key}: {root} holds no .npy files but {nested[0]} exists (extracted one folder deeper): "
                    f"set {SECTION}.cifar10c.root to {nested[0].parent}, or to null to generate the set"]
        return []
    return [f"{key}: {problem} (or set {SECTION}.cifar10c.root to null to generate the set)"
            for problem in cifar10c_problems(root, corruptions(config), CIFAR10_IMAGE_SIZE)]


def _corruption_list_problems(config: dict) -> list[str]:
    study = config[SECTION]
    problems = []
    if study["cifar10c"]["corruptions"] == []:
        problems.append(f"config key '{SECTION}.cifar10c.corruptions': an empty list would be read as null (all "
                        f"{len(CORRUPTIONS)}); list the corruptions wanted, or write null for all of them")
    for block in ("cifar10c", "finetune"):
        names = study[block]["corruptions"]
        key = f"config key '{SECTION}.{block}.corruptions'"
        duplicated = sorted({name for name in names or [] if names.count(name) > 1})
        if duplicated:
            problems.append(f"{key}: {duplicated} listed more than once; list each corruption once")
    unknown = [name for name in study["cifar10c"]["corruptions"] or [] if name not in CORRUPTIONS]
    if unknown:
        hints = []
        for name in sorted(set(unknown)):
            close = difflib.get_close_matches(name.replace("-", "_").replace(" ", "_").lower(), CORRUPTIONS, n=1)
            hints.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        problems.append(f"config key '{SECTION}.cifar10c.corruptions': unknown corruptions {', '.join(hints)}; "
                        f"known: {', '.join(CORRUPTIONS)}")
    missing = sorted(set(study["finetune"]["corruptions"] or []) - set(corruptions(config)))
    if missing:
        problems.append(f"config key '{SECTION}.finetune.corruptions': {missing} are not among "
                        f"{SECTION}.cifar10c.corruptions, so no CIFAR-10-C files exist for them")
    return problems


def check(config: dict) -> list[str]:
    study = config[SECTION]
    problems = check_unique_ids(study["models"], f"{SECTION}.models")
    image_size = IMAGE_SIZE[study["dataset"]]
    for index, spec in enumerate(study["models"]):
        key = f"{SECTION}.models[{index}]"
        timm = spec["pretrained_source"] == "timm"
        if spec["pretrained_file"] is not None and not timm:
            problems.append(f"config key '{key}.pretrained_file': {spec['pretrained_file']} is given but "
                            f"{key}.pretrained_source is source_task (the pipeline pretrains this model itself); "
                            "set pretrained_source: timm to load the file, or drop it")
        problems += check_model({"name": spec["name"], "pretrained": timm,
                                 "pretrained_file": spec["pretrained_file"] if timm else None}, key)
        problems += check_model_shape(spec["name"], spec["kwargs"], spec["input_size"] or image_size, key)
        for init in INITS:
            problems += check_devices(spec["training"][init], study["resources"], f"{key}.training.{init}")
            problems += check_schedule(spec["training"][init], f"{key}.training.{init}")
    problems += check_schedule(study["source_task"]["training"], f"{SECTION}.source_task.training")
    classes, n_classes = study["source_task"]["classes"], DATASET_CLASSES[study["dataset"]]
    if len(set(classes)) < len(classes) or any(c >= n_classes for c in classes):
        problems.append(f"config key '{SECTION}.source_task.classes': {classes} must be distinct labels in "
                        f"0..{n_classes - 1} (the {n_classes} classes of {study['dataset']}), at least 2 of them")
    problems += _corruption_list_problems(config)
    problems += _official_cifar10c_problems(config)
    names = {variant["variant"] for variant in variants(config)}
    if study["baseline"] not in names:
        problems.append(f"config key '{SECTION}.baseline': '{study['baseline']}' is not a variant; "
                        f"variants: {', '.join(sorted(names))}")
    return problems + check_dataset(config, study["dataset"], f"{SECTION}.dataset")
