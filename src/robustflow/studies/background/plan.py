"""The background study's plan (sources 002 Exp 4 and 003, Robustar): models x training methods.

A variant is a model x training method (``cnn-standard``, ``cnn-paired_reg10``: paired runs
carry their reg_coeff in the method's *label*); a run is a variant at one seed. The image set
is built once; TracIn runs for the runs of ``influence.seeds``; one saliency grid and one
influence grid per model.
"""

from __future__ import annotations

from pathlib import Path

from robustflow.config import (
    check_devices,
    check_model,
    check_model_shape,
    check_schedule,
    check_unique_ids,
    figure_and_table_targets,
)
from robustflow.data_files import (
    BG_CHALLENGE_HOW_TO_GET,
    BG_CHALLENGE_VARIATIONS,
    IMAGE_SUFFIXES,
    holds_images,
)
from robustflow.studies import run_id

SECTION = "background_study"
FIGURES = ("accuracy_per_variation", "gap_per_method", "foreground_share")
RUN_COLUMNS = ["run", "variant", "model", "method", "reg_coeff", "pair_mode", "seed", "label"]
GRIDS = ("saliency_grid", "influence_grid")
METHODS = ("standard", "mixed_rand", "paired")
IN9_CLASSES = 9  # the backgrounds challenge's ImageNet-9
MIN_DIGIT_SIZE = 8  # the generator's smallest digit
GAP_COLUMNS = {
    "gap_original_minus_mixed_rand": ("original", "mixed_rand"),
    "bg_gap_mixed_same_minus_mixed_rand": ("mixed_same", "mixed_rand"),
}
GAP_LABELS = {
    "gap_original_minus_mixed_rand": "source 002 gap: original - mixed_rand",
    "bg_gap_mixed_same_minus_mixed_rand": "BG-Gap (challenge): mixed_same - mixed_rand",
}


def method_label(method: str, reg_coeff: float | None) -> str:
    """The name a training method goes by in tables and figures (paired runs carry their reg_coeff)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return f"paired_reg{reg_coeff:g}" if method == "paired" else method


def variants(config: dict) -> list[dict]:
    study = config[SECTION]
    return [{"variant": f"{model['id']}-{method_label(method, reg_coeff)}", "model": model["id"], "method": method,
             "reg_coeff": reg_coeff, "pair_mode": study["pair_mode"] if method == "paired" else None,
             "label": method_label(method, reg_coeff)}
            for model in study["models"] for method in study["methods"]
            for reg_coeff in (study["reg_coeffs"] if method == "paired" else [None])]


def runs(config: dict) -> list[dict]:
    return [{"run": run_id(variant["variant"], seed), **variant, "seed": int(seed)}
            for variant in variants(config) for seed in config[SECTION]["seeds"]]


def influence_runs(config: dict) -> list[dict]:
    """The runs whose TracIn influence is computed: those of ``influence.seeds``."""
    seeds = set(config[SECTION]["influence"]["seeds"])
    return [run for run in runs(config) if run["seed"] in seeds]


def saliency_grid_runs(config: dict, model: str) -> list[str]:
    """Every training method of ``model`` at the first seed, side by side in one grid."""
    first_seed = config[SECTION]["seeds"][0]
    return [run["run"] for run in runs(config) if run["model"] == model and run["seed"] == first_seed]


def influence_grid_run(config: dict, model: str) -> list[str]:
    """The run whose TracIn proponents are drawn: standard training if swept (it is the one
    expected to lean on backgrounds), else the first method; at the first influence seed."""
    seed = config[SECTION]["influence"]["seeds"][0]
    candidates = [run for run in influence_runs(config) if run["model"] == model and run["seed"] == seed]
    standard = [run for run in candidates if run["method"] == "standard"]
    return [run["run"] for run in (standard or candidates)[:1]]


def _model(config: dict, model_id: str) -> dict:
    """The entry of ``model_id`` less its id (the run record names the model)."""
    spec = next(spec for spec in config[SECTION]["models"] if spec["id"] == model_id)
    return {k: v for k, v in spec.items() if k != "id"}


def job_config(config: dict, step: str, job: dict | None = None) -> dict:
    """What one job of ``step`` reads: the image set its source; a run's jobs the device and their
    model; training the training block; evaluation, influence and aggregation their own keys."""
    study = config[SECTION]
    if step == "generate_set":
        return {SECTION: {"source": study["source"], study["source"]: study[study["source"]]}}
    run_model = {"device": config["device"]}
    if step == "train":
        return {**run_model, SECTION: {"training": study["training"], "models": [_model(config, job["model"])]}}
    if step == "evaluate":
        return {**run_model, SECTION: {"saliency_samples": study["saliency_samples"],
                                       "training": {"eval_batch_size": study["training"]["eval_batch_size"]},
                                       "models": [_trained_model(config, job["model"])]}}
    if step == "influence":
        influence = {k: study["influence"][k] for k in ("n_test", "top_k")}
        return {**run_model, SECTION: {"influence": influence, "models": [_trained_model(config, job["model"])]}}
    if step == "aggregate":
        challenge = study["source"] == "bg_challenge"  # only then are source 002's numbers compared
        keys = ("id", "name", "pretrained") if challenge else ("id", "name")
        subset = {"source": study["source"], "models": [{k: spec[k] for k in keys} for spec in study["models"]]}
        if challenge:
            subset["training"] = {"epochs": study["training"]["epochs"]}
        else:  # chance level for the claims' preconditions; ImageNet-9 has IN9_CLASSES
            subset["generated"] = {"n_classes": study["generated"]["n_classes"]}
        return {SECTION: subset}
    if step in ("figure", *GRIDS):
        return {}
    raise KeyError(f"background study has no step {step!r}")


def _trained_model(config: dict, model_id: str) -> dict:
    """A trained model's entry: its architecture; its weights come from the run's model file."""
    spec = _model(config, model_id)
    return {k: spec[k] for k in ("name", "kwargs")}


def figures(config: dict) -> list[str]:
    """The figures of `FIGURES` whose subject the study has, then one saliency and one influence
    grid per model. ``foreground_share`` needs foreground masks of the test images: the generated
    set has them, the real challenge only with its ``fg_mask/val`` folder."""
    study = config[SECTION]
    masks = study["source"] == "generated" or (Path(study["bg_challenge"]["root"]) / "fg_mask" / "val").is_dir()
    grids = [f"{grid}_{spec['id']}" for grid in GRIDS for spec in study["models"]]
    return [*(name for name in FIGURES if name != "foreground_share" or masks), *grids]


def targets(config: dict) -> list[str]:
    return figure_and_table_targets("background", figures(config), ("summary.csv", "gap_summary.csv", "claims.csv"))


def check(config: dict) -> list[str]:
    study = config[SECTION]
    problems = check_unique_ids(study["models"], f"{SECTION}.models")
    image_size = study[study["source"]]["image_size"]
    for index, model in enumerate(study["models"]):
        problems += check_model(model, f"{SECTION}.models[{index}]")
        problems += check_model_shape(model["name"], model["kwargs"], image_size, f"{SECTION}.models[{index}]")
    problems += check_devices(study["training"], study["resources"], f"{SECTION}.training")
    problems += check_schedule(study["training"], f"{SECTION}.training")
    unknown_seeds = sorted(set(study["influence"]["seeds"]) - set(study["seeds"]))
    if unknown_seeds:
        problems.append(f"config key '{SECTION}.influence.seeds': {unknown_seeds} not in "
                        f"{SECTION}.seeds {study['seeds']}")
    if study["source"] == "bg_challenge":
        problems += _bg_challenge_problems(study)
    else:
        generated = study["generated"]
        if not MIN_DIGIT_SIZE <= generated["digit_size"] < generated["image_size"]:
            problems.append(f"config key '{SECTION}.generated.digit_size': {generated['digit_size']} must lie in "
                            f"[{MIN_DIGIT_SIZE}, generated.image_size = {generated['image_size']}): the digit "
                            "needs background around it")
    return problems


def _bg_challenge_problems(study: dict) -> list[str]:
    """The folders of the backgrounds challenge that the configured methods need, each holding the
    class folders of original/train (masks: one folder per class of the images they mask)."""
    root = Path(study["bg_challenge"]["root"])
    key = f"config key '{SECTION}.bg_challenge.root'"
    needed = {"original/train": "every method trains on it",
              **{f"{variation}/val": "a test variation" for variation in BG_CHALLENGE_VARIATIONS}}
    if "mixed_rand" in study["methods"]:
        needed["mixed_rand/train"] = "method mixed_rand trains on it (the challenge's released Mixed-Rand set)"
    if "paired" in study["methods"]:
        needed["fg_mask/train"] = "method paired needs a foreground mask per training image"
    missing = [f"{root / folder} ({why})" for folder, why in needed.items() if not (root / folder).is_dir()]
    if missing:
        above = sorted(child for child in root.glob("*/original/train") if child.is_dir()) if root.is_dir() else []
        fix = (f"{root} looks like the folder above the challenge: set it to {above[0].parent.parent}."
               if above else f"{BG_CHALLENGE_HOW_TO_GET} Or set {SECTION}.source to generated.")
        return [f"{key}: missing {', '.join(missing)}. {fix}"]
    reference = _class_folders(root / "original" / "train")
    if not reference:
        return [f"{key}: {root / 'original' / 'train'} holds no class folders (like 00_dog). {BG_CHALLENGE_HOW_TO_GET}"]
    names = [folder.name for folder in reference]
    folders = [*needed, *(["fg_mask/val"] if (root / "fg_mask" / "val").is_dir() else [])]
    problems = []
    for folder in folders:
        path = root / folder
        classes = _class_folders(path)
        if not classes:
            problems.append(f"{key}: {path} holds no class folders (like {names[0]}); extract the release again. "
                            f"{BG_CHALLENGE_HOW_TO_GET}")
            continue
        if [c.name for c in classes] != names:
            problems.append(f"{key}: the class folders of {path} ({[c.name for c in classes]}) differ from those of "
                            f"{root / 'original' / 'train'} ({names}); every split needs the same classes")
            continue
        if not folder.startswith("fg_mask/"):
            problems += [f"{key}: class folder {c} holds no images ({', '.join(IMAGE_SUFFIXES)})"
                         for c in classes if not holds_images(c)]
    return problems


def _class_folders(folder: Path) -> list[Path]:
    """The class folders as `robustflow.data.backgrounds` reads them: every sub-folder, sorted."""
    return sorted(p for p in folder.iterdir() if p.is_dir())
