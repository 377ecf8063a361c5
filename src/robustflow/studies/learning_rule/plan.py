"""The learning-rule study's plan (source 000): Hebbian vs SGD linear readouts x weight ranges.

A variant is a *cell*, one method x constraint (``hebbian_margin-0-0.5``); a run is a cell at
one seed. One job trains a whole cell, all its seeds: a readout trains in well under a second,
and a process per seed would cost more than the training.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

from robustflow.config import figure_and_table_targets
from robustflow.data_files import IMAGE_SUFFIXES, holds_images, image_class_folders

SECTION = "learning_rule_study"
FIGURES = ("snr_by_method", "snr_vs_constraint", "noise_robustness", "weight_histograms", "lr_sweep")
METHODS = ("hebbian", "hebbian_margin", "sgd_mse", "sgd_ce")
UNCONSTRAINED = "none"
CELL_DIR = "results/learning_rule_study/cells/{variant}"
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
    return [{"run": f"{cell['variant']}-s{seed}", **cell, "seed": int(seed)}
            for cell in variants(config) for seed in config[SECTION]["seeds"]]


def job_config(config: dict, step: str, job: dict | None = None) -> dict:
    """A cell reads the section less its grid (plus the seeds it trains); aggregation the task
    (whose data decides which claims are comparable); figures nothing."""
    study = config[SECTION]
    if step == "cell":
        sgd = job["method"].startswith("sgd")
        unused = (*HEBBIAN_KEYS, "normalize") if sgd else ("sgd_lrs",)
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


def targets(config: dict) -> list[str]:
    return figure_and_table_targets("learning_rule", FIGURES, ("summary.csv", "claims.md"))


def check(config: dict) -> list[str]:
    study = config[SECTION]
    task = study["task"]
    problems = []
    for index, constraint in enumerate(study["constraints"]):
        key = f"config key '{SECTION}.constraints[{index}]'"
        try:
            constraint_id(constraint)
        except ValueError as error:
            problems.append(f"{key}: {error}")
        if constraint is not None and not constraint[0] < constraint[1]:
            problems.append(f"{key}: the range [lo, hi] needs lo < hi, got {constraint}")
    if task["source"] == "digits":
        shared = sorted(set(task["positive"]) & set(task["negative"]))
        if shared:
            problems.append(f"config key '{SECTION}.task.negative': digits {shared} are also positive "
                            f"({SECTION}.task.positive {task['positive']}); the two classes must not share digits")
    else:
        problems += _folder_problems(task["root"])
    return problems


def _folder_problems(root: str | None) -> list[str]:
    key = f"config key '{SECTION}.task.root'"
    layout = "two class folders of images (root/<class_a>/*.png, root/<class_b>/*.png)"
    if root is None or not Path(root).is_dir():
        return [f"{key}: image folder {root} does not exist; it must hold {layout}, or set task.source to digits"]
    folders = image_class_folders(root)
    if len(folders) != 2:
        return [f"{key}: {root} must hold exactly {layout}, found {len(folders)}: {[p.name for p in folders]}"]
    return [f"{key}: class folder {folder} holds no {'/'.join(IMAGE_SUFFIXES)} images"
            for folder in folders if not holds_images(folder)]
