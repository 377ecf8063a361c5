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
    dataset_config,
    figure_and_table_targets,
    format_number,
)

SECTION = "loss_study"
FIGURES = ("training_curves", "robustness_curves", "lambda_ablation", "confidence")
LOSSES_WITH_LAMBDA = ("margin", "combined")
RUN_DIR = "results/loss_study/runs/{run}"


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
    return [dict(run=f"{variant['variant']}-s{seed}", seed=int(seed), **variant)
            for variant in variants(config) for seed in config[SECTION]["seeds"]]


def job_config(config: dict, step: str, job: dict | None = None) -> dict:
    """What one job of ``step`` reads: training and evaluation the model, data and training
    settings (evaluation adds the noise suite), aggregation and figures the study's naming."""
    study = config[SECTION]
    data = {"device": config["device"], "datasets": dataset_config(config, study["dataset"])}
    if step == "train":
        return {**data, SECTION: {k: study[k] for k in ("dataset", "model", "training")}}
    if step == "evaluate":
        return {**data, "noise_suite": config["noise_suite"],
                SECTION: {"dataset": study["dataset"], "model": study["model"],
                          "training": {"eval_batch_size": study["training"]["eval_batch_size"]}}}
    if step == "aggregate":
        return {SECTION: {"dataset": study["dataset"]}}
    if step == "figure":
        return {SECTION: {"baseline": study["baseline"]}} if job and job["figure"] == "lambda_ablation" else {}
    raise KeyError(f"loss study has no step {step!r}")


def targets(config: dict) -> list[str]:
    return figure_and_table_targets("loss", FIGURES, ("summary.csv", "claims.csv"))


def check(config: dict) -> list[str]:
    study = config[SECTION]
    problems = check_model(study["model"], f"{SECTION}.model") + check_devices(study["training"], study["resources"], f"{SECTION}.training")
    names = {variant["variant"] for variant in variants(config)}
    if study["baseline"] not in names:
        problems.append(f"config key '{SECTION}.baseline': '{study['baseline']}' is not a variant of the "
                        f"sweep; variants: {', '.join(sorted(names))}")
    return problems + check_dataset(config, study["dataset"], f"{SECTION}.dataset")
