"""The learning-rule study's steps (source 000): Hebbian vs SGD linear readouts under weight ranges.

One job is one cell (method x constraint, see the plan) with all seeds. Per seed a cell
writes test-split metrics, metrics under the noise suite, the SGD learning-rate sweep, and
the trained weights; ``aggregate`` joins the cells, summarises over seeds and judges the
source's claims.

SNR definitions: ``output_ratio`` is the source's ratio of mean outputs (defined only for
non-negative outputs, nan otherwise); ``margin_snr`` and ``normalized_margin`` are the
scale-free margin measures of ``robustflow.metrics``.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import torch

from robustflow.data import stratified_split
from robustflow.data.binary_task import (
    BinaryTask,
    digits_binary_task,
    image_folder_binary_task,
)
from robustflow.io import atomic_path, write_csv
from robustflow.learning_rules import (
    ReadoutResult,
    noise_robustness,
    readout_metrics,
    select_learning_rate,
    train_readout,
    weight_statistics,
)
from robustflow.studies.learning_rule.plan import (
    CELL_COLUMNS,
    WEIGHT_COLUMNS,
    parse_constraint_id,
)

SGD_METHODS = ("sgd_mse", "sgd_ce")
TEST_METRICS = ["accuracy", "output_ratio", "margin_mean", "margin_std", "margin_snr",
                "normalized_margin", "top1", "ece"]
METRICS_COLUMNS = [*CELL_COLUMNS, "lo", "hi", "seed", "lr", "diverged", *TEST_METRICS, *WEIGHT_COLUMNS]
# The keys of readout_metrics, so that a Hebbian cell's empty sweep file has the SGD cells' header.
READOUT_METRICS = ["accuracy", "top1", "top5", "nll", "ece", "mean_confidence", "margin_mean",
                   "margin_std", "margin_snr", "normalized_margin", "output_ratio"]
SWEEP_COLUMNS = [*CELL_COLUMNS, "seed", "lr", "selected", "diverged", *READOUT_METRICS]

logger = logging.getLogger(__name__)


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


def _train_seed(study_cfg: dict, task: BinaryTask, method: str, constraint: tuple[float, float] | None,
                seed: int) -> tuple[float, ReadoutResult, list[dict]]:
    """Train one seed's readout; returns (lr, ReadoutResult, SGD sweep rows)."""
    common = dict(epochs=study_cfg["epochs"], batch_size=study_cfg["batch_size"],
                  constraint=constraint, seed=seed)
    if method not in SGD_METHODS:
        lr = float(study_cfg["hebbian_lr"])
        margin = {"margin_lambda": study_cfg["margin_lambda"]} if method == "hebbian_margin" else {}
        result = train_readout(method, task.train_x, task.train_y, lr=lr, normalize=study_cfg["normalize"],
                               **margin, **common)
        return lr, result, []
    # The source's SGD ran at one unstated lr; here each seed picks its lr on held-out training
    # images, so SGD is judged at its best rather than at an lr that happens to diverge.
    fit, val = stratified_split(task.train_y.numpy(), [study_cfg["task"]["val_fraction"]], seed)
    fit, val = torch.from_numpy(fit), torch.from_numpy(val)
    lr, sweep = select_learning_rate(method, study_cfg["sgd_lrs"], task.train_x[fit], task.train_y[fit],
                                     task.train_x[val], task.train_y[val], **common)
    result = train_readout(method, task.train_x, task.train_y, lr=lr, **common)
    return lr, result, sweep


def cell(config: dict, job: dict, inputs, outputs) -> None:
    """Train and evaluate the cell ``job`` (its ``method`` and ``constraint`` id) for every seed.

    Seed k uses the split
    ``task.split_seed + k``, data order and init from k. Writes the test-split
    metrics (one row per seed), metrics under ``noise_types`` x ``noise_levels`` (noise seeded
    by the run seed, so every cell sees the same noisy images for a given seed), the SGD
    validation sweep (header only for Hebbian methods) and a ``.npz`` of the weights, one
    (D, 2) array per seed under the key ``seed<k>``.
    """
    study_cfg = config["learning_rule_study"]
    method, bounds = job["method"], parse_constraint_id(job["constraint"])
    cell = {"method": method, "constraint": job["constraint"]}
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
        logger.info("cell method %s, constraint %s, seed %d: lr %g (%s), test accuracy %.4f%s", method,
                    job["constraint"], seed, lr, "chosen by the sweep" if sweep else "fixed", test["accuracy"],
                    f", diverged at epoch {result.diverged_epoch}" if result.diverged else "")

    write_csv(pd.DataFrame(metrics_rows, columns=METRICS_COLUMNS), outputs.metrics)
    write_csv(pd.DataFrame(noise_rows), outputs.noise)
    write_csv(pd.DataFrame(sweep_rows, columns=SWEEP_COLUMNS), outputs.sweep)
    with atomic_path(outputs.weights) as tmp, open(tmp, "wb") as handle:
        # A file handle, because np.savez appends ".npz" to a path that lacks it.
        np.savez(handle, **weights)


