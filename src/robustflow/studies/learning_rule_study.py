"""Seed 000's learning-rule study: Hebbian vs SGD linear readouts under weight-range constraints.

One job is one cell (method x constraint) with all seeds, because each readout trains in well
under a second and a process per seed would cost more than the training. Per seed a cell
writes test-split metrics, metrics under the noise suite, the SGD learning-rate sweep, and
the trained weights; ``aggregate`` joins the cells, summarises over seeds and judges the
seed's claims.

SNR definitions: ``output_ratio`` is the seed's ratio of mean outputs (defined only for
non-negative outputs, nan otherwise); ``margin_snr`` and ``normalized_margin`` are the
scale-free margin measures of ``robustflow.metrics``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from robustflow.claims import LEARNING_RULE_CLAIMS, Claim, claims_markdown, claims_table, judge
from robustflow.data import stratified_split
from robustflow.data.binary_task import BinaryTask, digits_binary_task, image_folder_binary_task
from robustflow.io import atomic_path, write_csv
from robustflow.learning_rules import (
    METHODS,
    ReadoutResult,
    noise_robustness,
    readout_metrics,
    select_learning_rate,
    train_readout,
    weight_statistics,
)
from robustflow.stats import summarise

SGD_METHODS = ("sgd_mse", "sgd_ce")
UNCONSTRAINED = "none"
CELL_COLUMNS = ["method", "constraint"]
TEST_METRICS = ["accuracy", "output_ratio", "margin_mean", "margin_std", "margin_snr",
                "normalized_margin", "top1", "ece"]
WEIGHT_COLUMNS = ["weight_mean", "weight_std", "weight_min", "weight_max"]
METRICS_COLUMNS = [*CELL_COLUMNS, "lo", "hi", "seed", "lr", "diverged", *TEST_METRICS, *WEIGHT_COLUMNS]
# The keys of readout_metrics, so that a Hebbian cell's empty sweep file has the SGD cells' header.
READOUT_METRICS = ["accuracy", "top1", "top5", "nll", "ece", "mean_confidence", "margin_mean",
                   "margin_std", "margin_snr", "normalized_margin", "output_ratio"]
SWEEP_COLUMNS = [*CELL_COLUMNS, "seed", "lr", "selected", "diverged", *READOUT_METRICS]
SUMMARY_VALUES = ["accuracy", "output_ratio", "margin_snr", "normalized_margin", *WEIGHT_COLUMNS]

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


def load_task(task_cfg: dict) -> BinaryTask:
    """The study's binary task from the config's ``learning_rule_study.task`` section."""
    source = task_cfg["source"]
    split = dict(image_size=task_cfg["image_size"], test_fraction=task_cfg["test_fraction"],
                 split_seed=task_cfg["split_seed"])
    if source == "digits":
        return digits_binary_task(positive=task_cfg["positive"], negative=task_cfg["negative"], **split)
    if source == "folder":
        if task_cfg.get("root") is None:
            raise ValueError("learning_rule_study.task.root must name the image folder when source is 'folder'")
        return image_folder_binary_task(task_cfg["root"], **split)
    raise ValueError(f"learning_rule_study.task.source must be 'digits' or 'folder', got {source!r}")


def task_description(task_cfg: dict) -> tuple[str, bool]:
    """(label, comparable to the seed's data): only a user's own image folder can be."""
    if task_cfg["source"] == "folder":
        return f"image folder {task_cfg['root']}", True
    positive = "+".join(map(str, task_cfg["positive"]))
    negative = "+".join(map(str, task_cfg["negative"]))
    return f"digits {positive} vs {negative}", False


def _train_seed(study_cfg: dict, task: BinaryTask, method: str, constraint: tuple[float, float] | None,
                seed: int) -> tuple[float, ReadoutResult, list[dict]]:
    """Train one seed's readout; returns (lr, ReadoutResult, SGD sweep rows)."""
    common = dict(epochs=study_cfg["epochs"], batch_size=study_cfg["batch_size"],
                  constraint=constraint, seed=seed)
    if method not in SGD_METHODS:
        lr = float(study_cfg["hebbian_lr"])
        result = train_readout(method, task.train_x, task.train_y, lr=lr, margin_lambda=study_cfg["margin_lambda"],
                               normalize=study_cfg["normalize"], **common)
        return lr, result, []
    # The seed's SGD ran at one unstated lr; here each seed picks its lr on held-out training
    # images, so SGD is judged at its best rather than at an lr that happens to diverge.
    fit, val = stratified_split(task.train_y.numpy(), [study_cfg["task"]["val_fraction"]], seed)
    fit, val = torch.from_numpy(fit), torch.from_numpy(val)
    lr, sweep = select_learning_rate(method, study_cfg["sgd_lrs"], task.train_x[fit], task.train_y[fit],
                                     task.train_x[val], task.train_y[val], **common)
    result = train_readout(method, task.train_x, task.train_y, lr=lr, **common)
    return lr, result, sweep


def run_cell(study_cfg: dict, method: str, constraint: Sequence[float] | None, metrics_path: str | Path,
             noise_path: str | Path, sweep_path: str | Path, weights_path: str | Path) -> None:
    """Train and evaluate one method x constraint cell for every seed of ``study_cfg["seeds"]``.

    ``study_cfg`` is the config's ``learning_rule_study`` section. Seed k uses the split
    ``task.split_seed + k``, data order and init from k. Writes the test-split
    metrics (one row per seed), metrics under ``noise_types`` x ``noise_levels`` (noise seeded
    by the run seed, so every cell sees the same noisy images for a given seed), the SGD
    validation sweep (header only for Hebbian methods) and a ``.npz`` of the weights, one
    (D, 2) array per seed under the key ``seed<k>``.
    """
    _check_method(method)
    cell = {"method": method, "constraint": constraint_id(constraint)}
    bounds = None if constraint is None else (float(constraint[0]), float(constraint[1]))
    metrics_rows, noise_rows, sweep_rows, weights = [], [], [], {}
    for seed in study_cfg["seeds"]:
        seed = int(seed)
        # The seed also draws the train/test split (and the balancing subsample): the Hebbian
        # rules ignore data order, so without this their seeds would be identical runs.
        task = load_task({**study_cfg["task"], "split_seed": study_cfg["task"]["split_seed"] + seed})
        lr, result, sweep = _train_seed(study_cfg, task, method, bounds, seed)
        sweep_rows += [{**cell, "seed": seed, **row} for row in sweep]
        test = readout_metrics(result.weights, task.test_x, task.test_y)
        stats = weight_statistics(result.weights)
        metrics_rows.append({
            **cell,
            "lo": math.nan if bounds is None else bounds[0],
            "hi": math.nan if bounds is None else bounds[1],
            "seed": seed,
            "lr": lr,
            "diverged": result.diverged,
            **{name: test[name] for name in TEST_METRICS},
            **{f"weight_{name}": value for name, value in stats.items()},
        })
        noise = noise_robustness(result.weights, task.test_x, task.test_y, study_cfg["noise_types"],
                                 study_cfg["noise_levels"], seed=seed)
        noise_rows += [{**cell, "seed": seed, **row} for row in noise]
        weights[f"seed{seed}"] = result.weights.numpy()

    write_csv(pd.DataFrame(metrics_rows, columns=METRICS_COLUMNS), metrics_path)
    write_csv(pd.DataFrame(noise_rows), noise_path)
    write_csv(pd.DataFrame(sweep_rows, columns=SWEEP_COLUMNS), sweep_path)
    with atomic_path(weights_path) as tmp, open(tmp, "wb") as handle:
        # A file handle, because np.savez appends ".npz" to a path that lacks it.
        np.savez(handle, **weights)


def _concat(paths: Iterable[str | Path]) -> pd.DataFrame:
    frames = [pd.read_csv(p) for p in paths]
    if not frames:
        raise ValueError("aggregate needs at least one table per kind; got an empty list of paths")
    filled = [f for f in frames if len(f)]
    # Empty frames (Hebbian cells' sweeps) only contribute their header.
    return pd.concat(filled, ignore_index=True) if filled else frames[0]


def aggregate(metrics_paths: Iterable[str | Path], noise_paths: Iterable[str | Path],
              sweep_paths: Iterable[str | Path], *, metrics_out: str | Path, noise_out: str | Path,
              sweep_out: str | Path, summary_out: str | Path, claims_out: str | Path,
              claims_md_out: str | Path, dataset_label: str, comparable: bool) -> None:
    """Join the cells' tables, summarise over seeds (mean, 95% t-interval), and judge the claims.

    ``comparable`` says whether the task is the seed's own (KITTI road images); if not,
    only the directional claims are judged and the rest are marked "not comparable" with
    ``dataset_label`` in the reason.
    """
    metrics = _concat(metrics_paths)
    summary = summarise(metrics, by=CELL_COLUMNS, values=SUMMARY_VALUES)
    claims = learning_rule_claims(metrics, dataset_label=dataset_label, comparable=comparable)
    write_csv(metrics, metrics_out)
    write_csv(_concat(noise_paths), noise_out)
    write_csv(_concat(sweep_paths), sweep_out)
    write_csv(summary, summary_out)
    write_csv(claims, claims_out)
    with atomic_path(claims_md_out) as tmp:
        tmp.write_text(claims_markdown(claims))


_RATIO_HEBBIAN_SGD = "output_ratio hebbian / output_ratio sgd_mse, per seed, unconstrained"
_TIGHT = (0.0, 0.5)

DIRECTIONAL_CLAIMS: tuple[Claim, ...] = (
    Claim("hebbian_vs_sgd_snr_higher", "seed 000",
          "Hebbian learning gives a higher SNR than SGD (MSE), both unconstrained",
          _RATIO_HEBBIAN_SGD, 1.0, "at_least"),
    Claim("hebbian_vs_sgd_margin_snr_higher", "seed 000",
          "Hebbian learning gives a higher SNR than SGD (MSE), both unconstrained, on the "
          "scale-free margin SNR",
          "margin_snr hebbian - margin_snr sgd_mse, per seed, unconstrained", 0.0, "at_least"),
    Claim("hebbian_tight_constraint_lowers_snr", "seed 000",
          "Tighter constraints lower the SNR: clipping Hebbian weights to [0, 0.5] does not raise it",
          "relative change of output_ratio [0, 0.5] vs unconstrained Hebbian, per seed", 0.0, "at_most"),
    Claim("sgd_mse_fails_to_learn", "seed 000",
          "SGD (MSE) fails to learn (38% accuracy): no better than chance (0.5 for two balanced classes)",
          "accuracy sgd_mse, unconstrained, lr picked on validation", 0.5, "at_most"),
)


def _per_seed(metrics: pd.DataFrame, method: str, constraint: tuple[float, float] | None,
              metric: str) -> pd.Series:
    rows = metrics[(metrics["method"] == method) & (metrics["constraint"] == constraint_id(constraint))]
    return rows.set_index("seed")[metric]


def _relative_change(metrics: pd.DataFrame, constraint: tuple[float, float]) -> pd.Series:
    free = _per_seed(metrics, "hebbian", None, "output_ratio")
    return (_per_seed(metrics, "hebbian", constraint, "output_ratio") - free) / free


def _measurements(metrics: pd.DataFrame) -> dict[str, tuple[list, object]]:
    """claim id -> (cells it needs as (method, constraint), per-seed measurement)."""
    free = [("hebbian", None)]
    sgd = [("sgd_mse", None)]

    def hebbian_over_sgd(metric: str) -> pd.Series:
        return _per_seed(metrics, "hebbian", None, metric) / _per_seed(metrics, "sgd_mse", None, metric)

    table = {
        "hebbian_snr": (free, lambda: _per_seed(metrics, "hebbian", None, "output_ratio")),
        "sgd_mse_snr": (sgd, lambda: _per_seed(metrics, "sgd_mse", None, "output_ratio")),
        "hebbian_vs_sgd_snr_ratio": (free + sgd, lambda: hebbian_over_sgd("output_ratio")),
        "sgd_mse_accuracy": (sgd, lambda: _per_seed(metrics, "sgd_mse", None, "accuracy")),
        "hebbian_accuracy": (free, lambda: _per_seed(metrics, "hebbian", None, "accuracy")),
        "hebbian_vs_sgd_snr_higher": (free + sgd, lambda: hebbian_over_sgd("output_ratio")),
        "hebbian_vs_sgd_margin_snr_higher": (free + sgd, lambda: _per_seed(metrics, "hebbian", None, "margin_snr")
                                             - _per_seed(metrics, "sgd_mse", None, "margin_snr")),
        "hebbian_tight_constraint_lowers_snr": (free + [("hebbian", _TIGHT)],
                                                lambda: _relative_change(metrics, _TIGHT)),
        "sgd_mse_fails_to_learn": (sgd, lambda: _per_seed(metrics, "sgd_mse", None, "accuracy")),
    }
    # The seed's constraint ranges, named as claims.LEARNING_RULE_CLAIMS names them.
    for bounds in ((0.0, 2.0), (0.0, 1.0), (0.0, 0.5)):
        name = f"{bounds[0]:g}_{bounds[1]:g}".replace(".", "p")
        needs = free + [("hebbian", bounds)]
        table[f"hebbian_constraint_{name}_snr"] = (
            needs, lambda b=bounds: _per_seed(metrics, "hebbian", b, "output_ratio"))
        table[f"hebbian_constraint_{name}_change"] = (needs, lambda b=bounds: _relative_change(metrics, b))
    return table


def learning_rule_claims(metrics: pd.DataFrame, *, dataset_label: str, comparable: bool) -> pd.DataFrame:
    """Seed 000's learning-rule claims, plus directional versions, judged per seed.

    The seed's magnitudes come from 50 KITTI road images; on other data they are "not
    comparable", while the directional claims (``DIRECTIONAL_CLAIMS``) are judged on any task.
    Where ``output_ratio`` is nan (signed outputs, e.g. SGD's), the reason says so.
    """
    measurements = _measurements(metrics)
    cells = set(zip(metrics["method"], metrics["constraint"]))
    directional = {claim.claim_id for claim in DIRECTIONAL_CLAIMS}
    not_comparable = f"embedded default ({dataset_label}), not the seed's KITTI road images"
    rows = []
    for claim in (*LEARNING_RULE_CLAIMS, *DIRECTIONAL_CLAIMS):
        needs, measure = measurements[claim.claim_id]
        missing = [cell_id(m, c) for m, c in needs if (m, constraint_id(c)) not in cells]
        if missing:
            rows.append(judge(claim, [], comparable=False,
                              reason=f"not in this config's study: needs cells {', '.join(missing)}"))
            continue
        values = measure()
        is_comparable = comparable or claim.claim_id in directional
        notes = [] if is_comparable else [not_comparable]
        if any(m.startswith("sgd") for m, _ in needs):
            notes.append("SGD lr picked per seed on a validation split from sgd_lrs")
        if "output_ratio" in claim.metric and values.isna().any():
            notes.append(
                f"output_ratio undefined (nan) for {int(values.isna().sum())} of {len(values)} seeds: "
                "the readout's outputs are signed, and the seed's ratio needs non-negative outputs"
            )
        rows.append(judge(claim, values.tolist(), comparable=is_comparable, reason="; ".join(notes)))
    return claims_table(rows)
