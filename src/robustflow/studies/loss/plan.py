"""The loss study's plan (source 000): loss zoo x margin lambda x EMA x mixup, times seeds.

A variant is one (loss, margin_lambda, ema, mixup_alpha) of the sweep; its id is readable and
stable (``margin-lam10-ema``) and a run adds the seed (``margin-lam10-ema-s2``).
"""

from __future__ import annotations

import itertools

from robustflow.config import (
    check_dataset,
    check_devices,
    check_model,
    check_model_shape,
    check_schedule,
    dataset_config,
    figure_and_table_targets,
    format_number,
)
from robustflow.studies import run_id

SECTION = "loss_study"
FIGURES = ("training_curves", "robustness_curves", "lambda_ablation", "confidence")
RUN_COLUMNS = ["run", "variant", "loss", "margin_lambda", "ema", "mixup_alpha", "seed"]
LOSSES_WITH_LAMBDA = ("margin", "combined")  # their lambda is the run's (swept) margin_lambda
# The training keys each loss reads, by the name its loss function gives them.
LOSS_PARAMETERS = {
    "ce": {},
    "label_smoothing": {"smoothing": "label_smoothing"},
    "margin": {},
    "focal": {"gamma": "focal_gamma"},
    "combined": {"smoothing": "label_smoothing", "margin_weight": "combined_margin_weight"},
}
# Training keys that only some runs read (margin_lambda: only the sweep's default lambda).
LOSS_SPECIFIC_KEYS = ("label_smoothing", "focal_gamma", "margin_lambda", "combined_margin_weight", "ema_decay")
IMAGE_SIZE = 32  # digits (as the loader upsamples them) and CIFAR-10 alike


def variant_id(loss: str, margin_lambda: float | None, ema: bool, mixup_alpha: float) -> str:
    """Readable, stable id of one grid point (without the seed)."""
    parts = [loss]
    if loss in LOSSES_WITH_LAMBDA:
        parts.append(f"lam{format_number(margin_lambda)}")
    if mixup_alpha > 0:
        parts.append(f"mixup{format_number(mixup_alpha)}")
    if ema:
        parts.append("ema")
    return "-".join(parts)


def variants(config: dict) -> list[dict]:
    """The union of the sweep's blocks, each the cartesian product of its lists (first wins)."""
    study = config[SECTION]
    default_lambda = study["training"]["margin_lambda"]
    found: dict[str, dict] = {}
    for block in study["sweep"]:
        grid = itertools.product(block["loss"], block.get("margin_lambda", [default_lambda]),
                                 block.get("ema", [False]), block.get("mixup_alpha", [0.0]))
        for loss, margin_lambda, ema, mixup_alpha in grid:
            margin_lambda = float(margin_lambda) if loss in LOSSES_WITH_LAMBDA else None
            variant = variant_id(loss, margin_lambda, ema, mixup_alpha)
            found.setdefault(variant, dict(variant=variant, loss=loss, margin_lambda=margin_lambda,
                                           ema=bool(ema), mixup_alpha=float(mixup_alpha)))
    return list(found.values())


def runs(config: dict) -> list[dict]:
    """One row per (variant, seed)."""
    return [dict(run=run_id(variant["variant"], seed), seed=int(seed), **variant)
            for variant in variants(config) for seed in config[SECTION]["seeds"]]


def job_config(config: dict, step: str, job: dict | None = None) -> dict:
    """What one job of ``step`` reads: training the model, data and the training settings of its
    run's loss (EMA decay only for EMA variants), evaluation the model, data and noise suite,
    aggregation and figures the study's naming."""
    study = config[SECTION]
    data = {"device": config["device"], "datasets": dataset_config(config, study["dataset"])}
    if step == "train":
        training = {k: v for k, v in study["training"].items() if k not in LOSS_SPECIFIC_KEYS}
        training.update({key: study["training"][key] for key in LOSS_PARAMETERS[job["loss"]].values()})
        if job["ema"]:
            training["ema_decay"] = study["training"]["ema_decay"]
        return {**data, SECTION: {"dataset": study["dataset"], "model": study["model"], "training": training}}
    if step == "evaluate":
        return {**data, "noise_suite": config["noise_suite"],
                SECTION: {"dataset": study["dataset"], "model": study["model"],
                          "training": {"eval_batch_size": study["training"]["eval_batch_size"]}}}
    if step == "aggregate":
        return {SECTION: {"dataset": study["dataset"]}}
    if step == "figure":
        return {SECTION: {"baseline": study["baseline"]}} if job and job["figure"] == "lambda_ablation" else {}
    raise KeyError(f"loss study has no step {step!r}")


def figures(config: dict) -> list[str]:
    """The figures of `FIGURES` whose subject the sweep has. ``lambda_ablation`` draws the plain
    margin loss (no EMA, no mixup) against lambda on the clean test set: it needs such a variant
    and the clean level 0 among ``noise_suite.levels``."""
    plain_margin = any(v["loss"] == "margin" and not v["ema"] and v["mixup_alpha"] == 0 for v in variants(config))
    clean = 0 in config["noise_suite"]["levels"]
    return [name for name in FIGURES if name != "lambda_ablation" or (plain_margin and clean)]


def targets(config: dict) -> list[str]:
    return figure_and_table_targets("loss", figures(config), ("summary.csv", "claims.csv"))


def check(config: dict) -> list[str]:
    study = config[SECTION]
    model = study["model"]
    problems = check_model(model, f"{SECTION}.model") + check_devices(study["training"], study["resources"], f"{SECTION}.training")
    problems += check_model_shape(model["name"], model["kwargs"], IMAGE_SIZE, f"{SECTION}.model")
    problems += check_schedule(study["training"], f"{SECTION}.training")
    problems += _unused_lambda_problems(study["sweep"])
    names = {variant["variant"] for variant in variants(config)}
    if study["baseline"] not in names:
        problems.append(f"config key '{SECTION}.baseline': '{study['baseline']}' is not a variant of the "
                        f"sweep; variants: {', '.join(sorted(names))}")
    return problems + check_dataset(config, study["dataset"], f"{SECTION}.dataset")


def _unused_lambda_problems(sweep: list[dict]) -> list[str]:
    """A block that sweeps margin_lambda but holds no loss that reads it would silently run one
    variant per loss instead of the intended sweep."""
    return [f"config key '{SECTION}.sweep[{index}].margin_lambda': swept for {block['loss']}, but only "
            f"{' and '.join(LOSSES_WITH_LAMBDA)} use a margin lambda, so the block runs each loss once, not once "
            "per lambda; add margin or combined to the block's losses, or drop its margin_lambda"
            for index, block in enumerate(sweep)
            if "margin_lambda" in block and not set(block["loss"]) & set(LOSSES_WITH_LAMBDA)]
