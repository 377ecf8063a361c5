"""The repeatability study's plan (source 004): does a model give the same answer to the same
input seen twice, and do the fixes that claim to help (anti-aliasing, AugMix, stability training,
Patch Gaussian, noise augmentation, a rotation head) make it more repeatable?

A variant is a model x training method (``cnn-augmix``); a method is a training objective of
`robustflow.objectives` (``standard``: plain cross-entropy) with its parameters, optionally on an
anti-aliased model (``blur_filter``); a run is a variant at one seed. The perturbation sequences
(CIFAR-10-P layout) and the study's CIFAR-10-C set are built once and shared by every run.
"""

from __future__ import annotations

from pathlib import Path

from robustflow.config import (
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
from robustflow.studies import run_id

SECTION = "repeatability_study"
FIGURES = ("flip_probability", "translate_probability", "consistency_vs_shift", "corruption_vs_flip",
           "seed_agreement")
RUN_COLUMNS = ["run", "variant", "model", "method", "seed"]
# Each objective's parameters (robustflow.objectives; a test checks they match) and those without a default.
OBJECTIVE_PARAMETERS = {
    "standard": ((), ()),
    "augmix": (("severity", "width", "depth", "alpha", "js_weight", "ops", "jsd"), ()),
    "stability": (("alpha", "sigma"), ("alpha", "sigma")),
    "patch_gaussian": (("max_width", "max_sigma"), ("max_width", "max_sigma")),
    "gaussian_noise": (("sigma",), ("sigma",)),
    "rotation_head": (("weight",), ()),
}
OBJECTIVES = tuple(OBJECTIVE_PARAMETERS)
SCORED_PERTURBATIONS = ("gaussian_noise", "shot_noise", "motion_blur", "zoom_blur", "spatter", "brightness",
                        "translate", "rotate", "tilt", "scale")
IMAGE_SIZE = {"digits": 32, "cifar10": 32}
EMBED_MARGIN = 8  # px of black around the image in Azulay & Weiss's embed protocols


def variants(config: dict) -> list[dict]:
    return [{"variant": f"{model['id']}-{method['id']}", "model": model["id"], "method": method["id"]}
            for model in config[SECTION]["models"] for method in config[SECTION]["methods"]]


def runs(config: dict) -> list[dict]:
    return [{"run": run_id(variant["variant"], seed), **variant, "seed": int(seed)}
            for variant in variants(config) for seed in config[SECTION]["seeds"]]


def _entry(entries: list[dict], entry_id: str) -> dict:
    return next(entry for entry in entries if entry["id"] == entry_id)


def job_config(config: dict, step: str, job: dict | None = None) -> dict:
    """What one job of ``step`` reads: the shared sets their sources; a run's training its model,
    method and training block; its evaluation the model, the method's architecture and the
    protocols; aggregation the baseline and the source-comparison facts (models, methods, and the
    CIFAR-10-C set where the AugMix paper's numbers apply); figures nothing."""
    study = config[SECTION]
    data = {"device": config["device"], "datasets": dataset_config(config, study["dataset"])}
    if step == "prepare_sequences":
        return {**data, SECTION: {"dataset": study["dataset"], "perturbations": study["perturbations"]}}
    if step == "prepare_cifar10c":
        return {**data, SECTION: {"dataset": study["dataset"], "cifar10c": study["cifar10c"]}}
    if step in ("train", "evaluate"):
        method, model = _entry(study["methods"], job["method"]), _entry(study["models"], job["model"])
        if step == "train":  # the run record names the model and method: their ids are not read
            keys = ("objective", "blur_filter") if method["objective"] == "standard" else ("objective", "params",
                                                                                          "blur_filter")
            subset = {"models": [{k: v for k, v in model.items() if k != "id"}],
                      "methods": [{k: method[k] for k in keys}], "training": study["training"]}
        else:  # the trained weights replace any pretrained ones; only the architecture is built
            subset = {"models": [{k: model[k] for k in ("name", "kwargs")}],
                      "methods": [{"blur_filter": method["blur_filter"]}],
                      "training": {"eval_batch_size": study["training"]["eval_batch_size"]},
                      "shifts": study["shifts"], "translate_images": study["translate_images"]}
        return {**data, SECTION: {"dataset": study["dataset"], **subset}}
    if step == "aggregate":
        aggregate = {"dataset": study["dataset"], "baseline": study["baseline"],
                     "models": [{k: model[k] for k in ("id", "name")} for model in study["models"]],
                     "methods": [{k: method[k] for k in ("id", "objective", "blur_filter")}
                                 for method in study["methods"]]}
        if study["dataset"] == "cifar10" and any(model["name"] == "wide_resnet40_2" for model in study["models"]):
            # The AugMix paper's setting: its CIFAR-10-C errors compare only over its 15 corruptions.
            aggregate["cifar10c"] = {"corruptions": study["cifar10c"]["corruptions"]}
        return {SECTION: aggregate}
    if step == "figure":
        return {}
    raise KeyError(f"repeatability study has no step {step!r}")


def targets(config: dict) -> list[str]:
    return figure_and_table_targets("repeatability", FIGURES, ("summary.csv", "claims.csv"))


def check(config: dict) -> list[str]:
    study = config[SECTION]
    problems = check_unique_ids(study["models"], f"{SECTION}.models")
    problems += check_unique_ids(study["methods"], f"{SECTION}.methods")
    image_size = IMAGE_SIZE[study["dataset"]]
    for index, model in enumerate(study["models"]):
        key = f"{SECTION}.models[{index}]"
        problems += check_model(model, key) + check_model_shape(model["name"], model["kwargs"], image_size, key)
        problems += _model_problems(model, key, image_size)
    for index, method in enumerate(study["methods"]):
        problems += _parameter_problems(method, f"{SECTION}.methods[{index}]")
        if method["blur_filter"] == 1:
            problems.append(f"config key '{SECTION}.methods[{index}].blur_filter': a binomial filter of size 1 is no "
                            "blur (plain subsampling, as with 0), so the method would not be anti-aliased; use 2..7, "
                            "or 0 for none")
    problems += check_devices(study["training"], study["resources"], f"{SECTION}.training")
    problems += check_schedule(study["training"], f"{SECTION}.training")
    names = {variant["variant"] for variant in variants(config)}
    if study["baseline"] not in names:
        problems.append(f"config key '{SECTION}.baseline': '{study['baseline']}' is not a variant; "
                        f"variants: {', '.join(sorted(names))}")
    problems += _shift_problems(study, image_size) + _set_problems(config)
    return problems + check_dataset(config, study["dataset"], f"{SECTION}.dataset")


def _model_problems(model: dict, key: str, image_size: int) -> list[str]:
    """The shift protocols feed the model other sizes than the images' (1 px smaller crops, 8 px
    larger embeddings), so it must take any size; anti-aliasing is a method's, not a model's."""
    problems = []
    if model["name"].startswith("vit"):
        problems.append(f"config key '{key}.name': {model['name']} takes only {image_size} px inputs, but the shift "
                        f"protocols feed it {image_size - 1} px crops and {image_size + EMBED_MARGIN} px embeddings; "
                        "use a CNN (small_cnn, resnet18, wide_resnet40_2, ...)")
    if "blur_filter" in model["kwargs"]:
        problems.append(f"config key '{key}.kwargs.blur_filter': in this study anti-aliasing is a method's setting, so "
                        "that the standard method stays un-blurred; set blur_filter on a method instead")
    return problems


def _parameter_problems(method: dict, key: str) -> list[str]:
    """An objective takes only its own parameters, and needs those without a default."""
    accepted, required = OBJECTIVE_PARAMETERS[method["objective"]]
    unknown = sorted(set(method["params"]) - set(accepted))
    missing = sorted(set(required) - set(method["params"]))
    problems = []
    if unknown:
        problems.append(f"config key '{key}.params': objective {method['objective']} takes no parameters {unknown}; "
                        f"its parameters: {', '.join(accepted) or 'none'}")
    if missing:
        problems.append(f"config key '{key}.params': objective {method['objective']} needs {missing}")
    return problems


def _shift_problems(study: dict, image_size: int) -> list[str]:
    max_shift = study["shifts"]["max_shift"]
    problems = []
    if max_shift >= image_size:
        problems.append(f"config key '{SECTION}.shifts.max_shift': {max_shift} px pads and shifts the {image_size} px "
                        "images by more than they are wide: the views would hold no image; use fewer pixels")
    n_images = study["perturbations"]["n_images"]
    drawn = "translate" in study["perturbations"]["names"]
    if drawn and n_images is not None and study["translate_images"] > n_images:
        problems.append(f"config key '{SECTION}.translate_images': {study['translate_images']} images' translate "
                        f"sequences are drawn, but perturbations.n_images makes only {n_images}; use at most "
                        f"{n_images}")
    return problems


def _set_problems(config: dict) -> list[str]:
    """The official CIFAR-10-P files, when ``perturbations.root`` is set, and the corruption names."""
    study = config[SECTION]
    problems = []
    unknown = sorted(set(study["cifar10c"]["corruptions"] or []) - set(CORRUPTIONS))
    if unknown:
        problems.append(f"config key '{SECTION}.cifar10c.corruptions': unknown corruptions {unknown}; "
                        f"known: {', '.join(CORRUPTIONS)}")
    root = study["perturbations"]["root"]
    if root is None:
        return problems
    key = f"config key '{SECTION}.perturbations.root'"
    if study["dataset"] != "cifar10":
        return problems + [f"{key}: official CIFAR-10-P files fit only the cifar10 dataset, not "
                           f"{study['dataset']}; set root to null to generate the sequences"]
    from robustflow.data_files import cifar10_test_size, cifar10p_problems

    test_size = cifar10_test_size(config["datasets"]["cifar10"]["root"])  # None: the dataset check says why
    return problems + [f"{key}: {problem}" for problem in
                       cifar10p_problems(Path(root), study["perturbations"]["names"], test_size)]
