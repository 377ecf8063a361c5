"""The learning-rule study's plan (source 000): Hebbian vs SGD linear readouts x weight ranges.

A variant is a *cell*, one method x constraint (``hebbian_margin-0-0.5``); a run is a cell at
one seed. One job trains a whole cell, all its seeds: a readout trains in well under a second,
and a process per seed would cost more than the training.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from robustflow.config import figure_and_table_targets
from robustflow.data_files import IMAGE_SUFFIXES, image_class_folders
from robustflow.studies import run_id

SECTION = "learning_rule_study"
FIGURES = ("snr_by_method", "snr_vs_constraint", "noise_robustness", "weight_histograms", "lr_sweep")
CELL_COLUMNS = ["method", "constraint"]
WEIGHT_COLUMNS = ["weight_mean", "weight_std", "weight_min", "weight_max"]
METHODS = ("hebbian", "hebbian_margin", "sgd_mse", "sgd_ce")
UNCONSTRAINED = "none"
# What a cell reads: everything of the section but the grid, the switch and the resources.
GRID_KEYS = ("enabled", "methods", "constraints", "seeds", "resources")
HEBBIAN_KEYS = ("hebbian_lr", "margin_lambda")  # the Hebbian rules' own; SGD cells read sgd_lrs and val_fraction


_NUMBER = r"-?\d+(?:\.\d+)?(?:e[+-]\d+)?"
_CONSTRAINT_ID = re.compile(rf"({_NUMBER})-({_NUMBER})")


def constraint_id(constraint: Sequence[float] | None) -> str:
    """``"none"`` for no constraint, else ``"<lo>-<hi>"`` with ``:g`` numbers (``[0, 0.5]`` -> ``"0-0.5"``)."""
    if constraint is None:
        return UNCONSTRAINED
    if len(constraint) != 2:
        raise ValueError(f"constraint must be null or [lo, hi], got {constraint!r}")
    bounds = [float(v) for v in constraint]
    for value in bounds:
        # Two constraints that format alike would share one output file.
        if not math.isfinite(value) or float(f"{value:g}") != value:
            raise ValueError(
                f"constraint bound {value!r} in {constraint!r} must be finite and have at most "
                "6 significant digits (it names the output files)"
            )
    return f"{bounds[0]:g}-{bounds[1]:g}"


def parse_constraint_id(text: str) -> tuple[float, float] | None:
    """Inverse of ``constraint_id``: ``"none"`` -> None, ``"0-0.5"`` -> ``(0.0, 0.5)``."""
    if text == UNCONSTRAINED:
        return None
    match = _CONSTRAINT_ID.fullmatch(str(text))
    if match is None:
        raise ValueError(f"constraint id must be 'none' or '<lo>-<hi>' (e.g. '0-0.5'), got {text!r}")
    return float(match.group(1)), float(match.group(2))


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def cell_id(method: str, constraint: Sequence[float] | None) -> str:
    """Name of one method x constraint cell, e.g. ``"hebbian_margin-0-0.5"`` (methods hold no '-')."""
    _check_method(method)
    return f"{method}-{constraint_id(constraint)}"


def parse_cell_id(text: str) -> tuple[str, tuple[float, float] | None]:
    """Inverse of ``cell_id``: ``"sgd_mse-none"`` -> ``("sgd_mse", None)``."""
    method, _, constraint = str(text).partition("-")
    if method not in METHODS:
        raise ValueError(f"cell id {text!r} must start with one of {METHODS} followed by '-'")
    return method, parse_constraint_id(constraint)


def variants(config: dict) -> list[dict]:
    """The cells: every method x constraint."""
    study = config[SECTION]
    return [{"variant": cell_id(method, constraint), "method": method, "constraint": constraint_id(constraint)}
            for method in study["methods"] for constraint in study["constraints"]]


def runs(config: dict) -> list[dict]:
    return [{"run": run_id(cell["variant"], seed), **cell, "seed": int(seed)}
            for cell in variants(config) for seed in config[SECTION]["seeds"]]


def job_config(config: dict, step: str, job: dict | None = None) -> dict:
    """A cell reads the section less its grid (plus the seeds it trains); aggregation the task
    (whose data decides which claims are comparable); figures nothing."""
    study = config[SECTION]
    if step == "cell":
        sgd = job["method"].startswith("sgd")
        unused = (*HEBBIAN_KEYS, "normalize") if sgd else ("sgd_lrs",)
        if job["method"] == "hebbian":
            unused = (*unused, "margin_lambda")  # only the margin-gated rule has a margin
        cell = {k: v for k, v in study.items() if k not in (*GRID_KEYS, *unused)}
        task_unused = {"val_fraction"} if not sgd else set()  # only SGD holds out a validation split
        task_unused |= {"positive", "negative"} if study["task"]["source"] == "folder" else {"root"}
        cell["task"] = {k: v for k, v in study["task"].items() if k not in task_unused}
        return {SECTION: {**cell, "seeds": study["seeds"]}}
    if step == "aggregate":
        return {SECTION: {"task": _task_identity(study["task"])}}
    if step == "figure":
        return {}
    raise KeyError(f"learning-rule study has no step {step!r}")


def _task_identity(task: dict) -> dict:
    """What names the task in the claims: its folder, or its digit classes."""
    keys = ("source", "root") if task["source"] == "folder" else ("source", "positive", "negative")
    return {k: task[k] for k in keys}


def figures(config: dict) -> list[str]:
    """The figures of `FIGURES` whose subject the study has: ``lr_sweep`` draws the SGD methods'
    learning-rate sweep, so it needs an SGD method."""
    sgd = any(method.startswith("sgd") for method in config[SECTION]["methods"])
    return [name for name in FIGURES if name != "lr_sweep" or sgd]


def targets(config: dict) -> list[str]:
    return figure_and_table_targets("learning_rule", figures(config), ("summary.csv",))


def check(config: dict) -> list[str]:
    study = config[SECTION]
    task = study["task"]
    problems = []
    seen: dict[str, int] = {}
    for index, constraint in enumerate(study["constraints"]):
        key = f"config key '{SECTION}.constraints[{index}]'"
        try:
            name = constraint_id(constraint)
        except ValueError as error:
            problems.append(f"{key}: {error}")
            name = None
        if constraint is not None and not constraint[0] < constraint[1]:
            problems.append(f"{key}: the range [lo, hi] needs lo < hi, got {constraint}")
        if name is not None and name in seen:
            problems.append(f"{key}: {constraint} is the range {name} of {SECTION}.constraints[{seen[name]}] "
                            "again; its cells would be trained and counted twice: list each range once")
        elif name is not None:
            seen[name] = index
    if task["source"] == "digits":
        shared = sorted(set(task["positive"]) & set(task["negative"]))
        if shared:
            problems.append(f"config key '{SECTION}.task.negative': digits {shared} are also positive "
                            f"({SECTION}.task.positive {task['positive']}); the two classes must not share digits")
    else:
        problems += _folder_problems(task, [method for method in study["methods"] if method.startswith("sgd")])
    return problems


def _folder_problems(task: dict, sgd_methods: list[str]) -> list[str]:
    """The image folder's layout, and whether its classes are large enough for the splits the
    cells draw: train/test per class, and the SGD methods' validation split of the training part."""
    root = task["root"]
    key = f"config key '{SECTION}.task.root'"
    layout = "two class folders of images (root/<class_a>/*.png, root/<class_b>/*.png)"
    if root is not None and Path(root).is_file():
        return [f"{key}: {root} is a file, not a folder; unpack it (an archive?) and set task.root to the folder "
                f"that holds {layout}"]
    if root is None or not Path(root).is_dir():
        return [f"{key}: image folder {root} does not exist; it must hold {layout}, or set task.source to digits"]
    folders = image_class_folders(root)
    if len(folders) != 2:
        return [f"{key}: {root} must hold exactly {layout}, found {len(folders)}: {[p.name for p in folders]}"]
    counts = Counter({folder: sum(1 for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
                      for folder in folders})
    problems = [f"{key}: class folder {folder} holds no {'/'.join(IMAGE_SUFFIXES)} images"
                for folder in folders if not counts[folder]]
    problems += [f"{key}: class folder {folder} holds 1 image; the train/test split needs at least 2 per class"
                 for folder in folders if counts[folder] == 1]
    if problems or not sgd_methods:
        return problems
    # What the cells draw (binary_task._stratified_split, then data.stratified_split's validation part).
    train = {folder: n - min(max(round(n * task["test_fraction"]), 1), n - 1) for folder, n in counts.items()}
    n_train = sum(train.values())
    n_val = math.ceil(task["val_fraction"] * n_train)
    if min(train.values()) < 2 or n_val < 2 or n_train - n_val < 2:
        per_class = ", ".join(f"{folder.name}: {n}" for folder, n in train.items())
        return [f"config key '{SECTION}.task.val_fraction': {', '.join(sgd_methods)} hold out val_fraction "
                f"{task['val_fraction']} of the training images of {root} ({per_class} after test_fraction "
                f"{task['test_fraction']}) as a validation split to pick the learning rate, which needs at least "
                "2 training images per class and one image per class on each side of the split; add images, "
                "change val_fraction, or drop the SGD methods"]
    return []


def task_description(task_cfg: dict) -> tuple[str, bool]:
    """(label, comparable to the source's data): only a user's own image folder can be."""
    if task_cfg["source"] == "folder":
        return f"image folder {task_cfg['root']}", True
    positive = "+".join(map(str, task_cfg["positive"]))
    negative = "+".join(map(str, task_cfg["negative"]))
    return f"digits {positive} vs {negative}", False
