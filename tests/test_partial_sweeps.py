"""Partial sweeps: every aggregate and every targeted figure works on any valid sub-sweep.

Property-style: seeded random draws of valid sub-sweeps of each study's grid (one loss, no EMA
variant, no margin loss, one lambda, one model, one method, one seed, one constraint, one noise
type or level, fine-tuning on one corruption, ...), validated with `robustflow.studies.validate`
(the other studies switched off). No model is trained: every run's per-run files are written
synthetically with exactly the columns (and, for the .npz samples, the keys) the per-run steps
write, with plausible random values. Then the study's aggregate step and the step of every figure
in ``plan.targets(config)`` run as their rules call them, and every target must exist.

A figure whose subject is absent from the sweep is not a target; a claim whose subject is absent
gets a verdict ("not comparable" or "inconclusive"), never a crash.
"""

from __future__ import annotations

import copy
import random
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from robustflow.claims import VERDICTS
from robustflow.config import load_schema, validate_config
from robustflow.corruption_names import CORRUPTIONS, SEVERITIES
from robustflow.data.backgrounds import VARIATIONS
from robustflow.jobs import files
from robustflow.learning_rules import readout_metrics, weight_statistics
from robustflow.metrics import classification_metrics
from robustflow.studies import STUDIES, validate

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(REPO / "config" / "schema.yaml")
DEFAULTS = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
DRAWS = 15  # random sub-sweeps per study, besides the default config's full sweep and the edge cases
NOISE_TYPES = ["gaussian", "salt_pepper", "fog", "occlusion"]
NOISE_LEVELS = [0.0, 0.1, 0.2, 0.3, 0.5, 0.7]


# ----------------------------------------------------------------------------- drawing helpers


def some(rng: random.Random, items, minimum: int = 1) -> list:
    """A random non-empty subset of ``items`` (at least ``minimum``), in their order."""
    items = list(items)
    chosen = set(rng.sample(range(len(items)), rng.randint(minimum, len(items))))
    return [item for index, item in enumerate(items) if index in chosen]


def study_config(section: str, study: dict, **shared) -> dict:
    """A whole config with only ``section`` switched on."""
    return {"device": "cpu", **shared, **{other: {"enabled": False} for other in STUDIES if other != section},
            section: {**study, "enabled": True}}


def default_config(section: str) -> dict:
    return study_config(section, copy.deepcopy(DEFAULTS[section]),
                        **({"noise_suite": copy.deepcopy(DEFAULTS["noise_suite"])} if section == "loss_study" else {}))


def variant_names(plan, config: dict) -> list[str]:
    """The variants of a config not yet checked (defaults filled by the schema alone)."""
    return [variant["variant"] for variant in plan.variants(validate_config(config, SCHEMA))]


def with_baseline(plan, config: dict, rng: random.Random) -> dict:
    config[plan.SECTION]["baseline"] = rng.choice(variant_names(plan, config))
    return config


# ----------------------------------------------------------------------------- synthetic values


def fake_metrics(gen: np.random.Generator, n_classes: int, n: int = 40, signed: bool = True) -> dict:
    """`classification_metrics` of random logits that favour the true class by a random amount."""
    labels = np.arange(n) % n_classes
    logits = gen.normal(size=(n, n_classes)) + gen.uniform(0, 4) * np.eye(n_classes)[labels]
    if not signed:
        logits = np.abs(logits)
    return classification_metrics(torch.from_numpy(logits), torch.from_numpy(labels))


def fake_history(gen: np.random.Generator, epochs: int, n_classes: int, ema: bool = False,
                 train_metrics: tuple[str, ...] = ()) -> pd.DataFrame:
    """A `train_classifier` history: lr, training loss and top-1 (plus the objective's own
    metrics), then the validation metrics and loss (and the EMA weights' when EMA is on)."""
    rows = []
    for epoch in range(1, epochs + 1):
        row = {"epoch": epoch, "lr": 1e-3 * (1 - (epoch - 1) / epochs) + 1e-6, "train_loss": gen.uniform(0.05, 2.5),
               **{f"train_{name}": gen.uniform(0.01, 1.0) for name in train_metrics},
               "train_top1": gen.uniform(0, 1)}
        for prefix in ("val", "ema_val") if ema else ("val",):
            val = fake_metrics(gen, n_classes)
            val["loss"] = val["nll"]
            row.update({f"{prefix}_{k}": v for k, v in val.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def write_npz(path: Path, **arrays) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **{k: np.asarray(v) for k, v in arrays.items()})
    return path


# ----------------------------------------------------------------------------- the steps after the runs


def table_outputs(root: Path, prefix: str, names) -> dict[str, Path]:
    """The aggregate's named outputs at their rule's paths."""
    return {name: root / "results" / "tables" / f"{prefix}_{name}.csv" for name in names}


def figure_names(targets: list[str], prefix: str) -> list[str]:
    names = [m.group(1) for t in targets if (m := re.fullmatch(rf"results/figures/{prefix}_(\w+)\.pdf", t))]
    assert all(f"results/figures/{prefix}_{name}.png" in targets for name in names)
    return names


def figure_outputs(root: Path, prefix: str, name: str):
    return files(pdf=root / "results" / "figures" / f"{prefix}_{name}.pdf",
                 png=root / "results" / "figures" / f"{prefix}_{name}.png")


def check_targets(plan, config: dict, root: Path) -> None:
    for target in plan.targets(config):
        path = root / target
        assert path.is_file() and path.stat().st_size > 0, f"target {target} was not written"


def check_claims(claims: pd.DataFrame, expected_ids) -> None:
    assert sorted(claims["claim_id"]) == sorted(expected_ids)
    assert claims["verdict"].isin(VERDICTS).all()
    assert claims["reason"].fillna("").str.len().gt(0).all()


# ============================================================================= loss study

LOSSES = ["ce", "label_smoothing", "margin", "focal", "combined"]


def draw_loss(rng: random.Random) -> dict:
    from robustflow.studies.loss import plan

    blocks = []
    for _ in range(rng.randint(1, 3)):
        block = {"loss": some(rng, LOSSES, 1)[: rng.randint(1, 3)]}
        if set(block["loss"]) & set(plan.LOSSES_WITH_LAMBDA) and rng.random() < 0.6:
            block["margin_lambda"] = some(rng, [0, 0.1, 1, 10, 20])[: rng.randint(1, 3)]
        if rng.random() < 0.4:
            block["ema"] = rng.choice([[True], [False], [False, True]])
        if rng.random() < 0.3:
            block["mixup_alpha"] = rng.choice([[0.2], [0.0, 0.2]])
        blocks.append(block)
    study = {"dataset": "digits", "seeds": some(rng, [0, 1, 2]), "sweep": blocks,
             "training": {"epochs": rng.randint(1, 4), "margin_lambda": rng.choice([1.0, 10.0])}}
    noise = {"types": some(rng, NOISE_TYPES), "levels": some(rng, NOISE_LEVELS)}
    return with_baseline(plan, study_config(plan.SECTION, study, noise_suite=noise), rng)


def run_loss(config: dict, rng: random.Random, root: Path) -> None:
    from robustflow.studies.loss import claims, plan, summary

    gen = np.random.default_rng(rng.randrange(2**32))
    suite, epochs = config["noise_suite"], config["loss_study"]["training"]["epochs"]
    inputs = {"history": [], "noise": [], "confidence": []}
    for run in plan.runs(config):
        job = {"run": run["run"], **run}  # what job_record builds from the rule's wildcards
        folder = root / "results" / "loss_study" / "runs" / run["run"]
        keys = {c: job[c] for c in plan.RUN_COLUMNS}
        history = fake_history(gen, epochs, 10, ema=run["ema"]).assign(**keys)
        kinds = ["raw", "ema"] if run["ema"] else ["raw"]
        noise = pd.DataFrame([{**job, "weights": kind, "epoch": int(gen.integers(1, epochs + 1)), "noise": noise_type,
                               "level": level, **fake_metrics(gen, 10)}
                              for noise_type in suite["types"] for level in suite["levels"] for kind in kinds])
        confidence = pd.concat([pd.DataFrame({**keys, "weights": kind, "confidence": gen.uniform(0.1, 1, 30),
                                              "margin": gen.normal(1, 2, 30), "correct": gen.random(30) < 0.8})
                                for kind in kinds], ignore_index=True)
        inputs["history"].append(write_csv(history, folder / "history.csv"))
        inputs["noise"].append(write_csv(noise, folder / "noise_eval.csv"))
        inputs["confidence"].append(write_csv(confidence, folder / "confidence.csv"))

    outputs = table_outputs(root, "loss", ("history", "noise", "confidence", "summary", "claims"))
    summary.aggregate(plan.job_config(config, "aggregate"), {}, files(**inputs), files(**outputs))
    check_claims(pd.read_csv(outputs["claims"]), [item.claim.claim_id for item in claims.CLAIMS])
    figure_inputs = files(**{name: outputs[name] for name in ("history", "noise", "confidence")})
    for name in figure_names(plan.targets(config), "loss"):
        job = {"figure": name}
        summary.figure(plan.job_config(config, "figure", job), job, figure_inputs, figure_outputs(root, "loss", name))


# ============================================================================= learning-rule study

CONSTRAINTS = [None, [0, 2], [0, 1], [0, 0.5], [-1, 1], [0.25, 0.75]]
IMAGE_SIZE = 6  # the readout's inputs: IMAGE_SIZE**2 grayscale pixels


def draw_learning_rule(rng: random.Random) -> dict:
    from robustflow.studies.learning_rule import plan

    study = {"task": {"source": "digits", "positive": [0], "negative": [1], "image_size": IMAGE_SIZE},
             "methods": some(rng, plan.METHODS), "constraints": some(rng, CONSTRAINTS),
             "seeds": some(rng, [0, 1, 2, 3, 4]), "sgd_lrs": some(rng, [1e-4, 1e-3, 0.01, 0.1, 10.0]),
             "noise_types": some(rng, NOISE_TYPES), "noise_levels": some(rng, NOISE_LEVELS)}
    return study_config(plan.SECTION, study)


def _readout(gen: np.random.Generator, method: str, bounds, n_inputs: int) -> torch.Tensor:
    """Readout weights (D, 2): Hebbian ones non-negative (sums of images), SGD ones signed; clipped."""
    weights = gen.uniform(0, 1, (n_inputs, 2)) if method.startswith("hebbian") else gen.normal(0, 1, (n_inputs, 2))
    weights[:, 0] += gen.uniform(0, 0.5) * np.arange(n_inputs) / n_inputs  # class 0 leans on the later pixels
    if bounds is not None:
        weights = np.clip(weights, *bounds)
    return torch.from_numpy(weights.astype(np.float32))


def _readout_images(gen: np.random.Generator, n: int = 24, level: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    labels = np.arange(n) % 2
    ramp = np.linspace(0, 1, IMAGE_SIZE * IMAGE_SIZE).reshape(1, 1, IMAGE_SIZE, IMAGE_SIZE)
    images = gen.uniform(0, 0.5, (n, 1, IMAGE_SIZE, IMAGE_SIZE)) + 0.5 * ramp * (labels == 0)[:, None, None, None]
    images = np.clip(images + level * gen.normal(0, 1, images.shape), 0, 1)
    return torch.from_numpy(images.astype(np.float32)), torch.from_numpy(labels)


def run_learning_rule(config: dict, rng: random.Random, root: Path) -> None:
    from robustflow.studies.learning_rule import claims, plan, steps, summary

    gen = np.random.default_rng(rng.randrange(2**32))
    study = config[plan.SECTION]
    inputs = {"metrics": [], "noise": [], "sweep": []}
    weight_files = []
    for cell in plan.variants(config):
        method, constraint = cell["method"], cell["constraint"]
        bounds = plan.parse_constraint_id(constraint)
        keys = {"method": method, "constraint": constraint}
        metrics_rows, noise_rows, sweep_rows, weights = [], [], [], {}
        for seed in study["seeds"]:
            w = _readout(gen, method, bounds, IMAGE_SIZE * IMAGE_SIZE)
            sgd = method in steps.SGD_METHODS
            lr = float(rng.choice(study["sgd_lrs"])) if sgd else float(study["hebbian_lr"])
            if sgd:
                for candidate in study["sgd_lrs"]:
                    diverged = candidate >= 10 and rng.random() < 0.7
                    sweep_rows.append({**keys, "seed": seed, "lr": candidate, "selected": candidate == lr and not diverged,
                                       "diverged": diverged, **readout_metrics(w, *_readout_images(gen))})
            test = readout_metrics(w, *_readout_images(gen))
            metrics_rows.append({**keys, "lo": np.nan if bounds is None else bounds[0],
                                 "hi": np.nan if bounds is None else bounds[1], "seed": seed, "lr": lr,
                                 "diverged": False, **{name: test[name] for name in steps.TEST_METRICS},
                                 **{f"weight_{k}": v for k, v in weight_statistics(w).items()}})
            noise_rows += [{**keys, "seed": seed, "noise": noise_type, "level": float(level),
                            **readout_metrics(w, *_readout_images(gen, level=level))}
                           for noise_type in study["noise_types"] for level in study["noise_levels"]]
            weights[f"seed{seed}"] = w.numpy()
        folder = root / "results" / "learning_rule_study" / "cells" / cell["variant"]
        inputs["metrics"].append(write_csv(pd.DataFrame(metrics_rows, columns=steps.METRICS_COLUMNS),
                                           folder / "metrics.csv"))
        inputs["noise"].append(write_csv(pd.DataFrame(noise_rows), folder / "noise.csv"))
        inputs["sweep"].append(write_csv(pd.DataFrame(sweep_rows, columns=steps.SWEEP_COLUMNS), folder / "lr_sweep.csv"))
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "weights.npz", "wb") as handle:
            np.savez(handle, **weights)
        weight_files.append(folder / "weights.npz")

    outputs = table_outputs(root, "learning_rule", ("metrics", "noise", "sweep", "summary", "claims"))
    outputs["sweep"] = outputs["sweep"].with_name("learning_rule_lr_sweep.csv")
    summary.aggregate(plan.job_config(config, "aggregate"), {}, files(**inputs), files(**outputs))
    check_claims(pd.read_csv(outputs["claims"]), [item.claim.claim_id for item in claims.CLAIMS])
    figure_inputs = files(**{name: outputs[name] for name in ("metrics", "noise", "sweep")}, weights=weight_files)
    for name in figure_names(plan.targets(config), "learning_rule"):
        job = {"figure": name}
        summary.figure(plan.job_config(config, "figure", job), job, figure_inputs,
                     figure_outputs(root, "learning_rule", name))


# ============================================================================= architecture study

ARCH_MODELS = [
    {"id": "cnn", "family": "cnn", "name": "small_cnn", "kwargs": {"features": [4]}},
    {"id": "vit", "family": "vit", "name": "vit_micro", "kwargs": {"patch_size": 8}},
    {"id": "cnn_b", "family": "cnn", "name": "small_cnn", "kwargs": {"features": [8]}},
    {"id": "vit_b", "family": "vit", "name": "vit_micro", "kwargs": {"patch_size": 4}},
]


def draw_architecture(rng: random.Random) -> dict:
    from robustflow.studies.architecture import plan

    models = some(rng, ARCH_MODELS)
    rng.shuffle(models)
    corruptions = rng.choice([None, some(rng, CORRUPTIONS)[: rng.randint(1, 4)]])
    available = corruptions or list(CORRUPTIONS)
    # An empty list fine-tunes on no corruption (null: on those of cifar10c).
    finetune = {"corruptions": rng.choice([None, [], some(rng, available)[: rng.randint(1, 3)]]),
                "group_by": rng.choice(["run", "corruption"])}
    study = {"dataset": "digits", "seeds": some(rng, [0, 1, 2]), "models": copy.deepcopy(models),
             "cifar10c": {"corruptions": corruptions}, "finetune": finetune}
    return with_baseline(plan, study_config(plan.SECTION, study), rng)


def run_architecture(config: dict, rng: random.Random, root: Path) -> None:
    from robustflow.studies.architecture import claims, plan, steps, summary

    gen = np.random.default_rng(rng.randrange(2**32))
    inputs = {"history": [], "test": [], "robustness": [], "finetune": []}
    corruptions, groups = plan.corruptions(config), plan.finetune_groups(config)
    cell_keys = steps.CELL_METRICS
    for run in plan.runs(config):
        job = {"run": run["run"], **run}
        keys = {c: job[c] for c in plan.RUN_COLUMNS}
        folder = root / "results" / "architecture_study" / "runs" / run["run"]
        epochs = rng.randint(1, 4)
        history = fake_history(gen, epochs, 10).assign(**keys)
        test = fake_metrics(gen, 10)
        test_row = {**keys, "best_epoch": rng.randint(1, epochs), "val_top1": gen.uniform(0, 1),
                    "val_top5": gen.uniform(0, 1), **{f"test_{k}": test[k] for k in cell_keys}}
        clean = {k: test[k] for k in cell_keys}
        robustness = [{**keys, "corruption": plan.CLEAN, "severity": 0, "n_images": 270, **clean}]
        for corruption in corruptions:
            for severity in SEVERITIES:
                metrics = fake_metrics(gen, 10)
                robustness.append({**keys, "corruption": corruption, "severity": severity, "n_images": 270,
                                   **{k: metrics[k] for k in cell_keys}})
        inputs["history"].append(write_csv(history, folder / "history.csv"))
        inputs["test"].append(write_csv(pd.DataFrame([test_row]), folder / "test.csv"))
        inputs["robustness"].append(write_csv(pd.DataFrame(robustness), folder / "robustness.csv"))
        for group, names in groups.items():
            rows = []
            for corruption in names:
                best_epoch = rng.randint(1, 3)
                for severity in SEVERITIES:
                    after, before = fake_metrics(gen, 10), fake_metrics(gen, 10)
                    rows.append({**keys, "corruption": corruption, "severity": severity, "n_images": 27,
                                 "best_epoch": best_epoch, **{k: after[k] for k in cell_keys},
                                 **{f"{k}_before": before[k] for k in cell_keys},
                                 "top1_improvement": after["top1"] - before["top1"]})
            inputs["finetune"].append(write_csv(pd.DataFrame(rows), folder / f"finetune_{group}.csv"))

    names = ("history", "robustness", "finetune", "runs", "corruption_errors", "summary", "claims")
    outputs = table_outputs(root, "architecture", names)
    summary.aggregate(plan.job_config(config, "aggregate"), {}, files(**inputs), files(**outputs))
    expected = [f"{plan.variant_id(spec['id'], init)}_{metric}" for spec in config[plan.SECTION]["models"]
                for init in plan.INITS if (spec["family"], init) in claims.SOURCE_TABLE
                for metric in claims.NUMERIC_METRICS]
    models = [spec["id"] for spec in config[plan.SECTION]["models"]]
    expected += [f"{model}_{c.claim_id}" for model in models for c in claims.PER_MODEL_CLAIMS]
    check_claims(pd.read_csv(outputs["claims"]),
                 [*expected, *(c.claim_id for c in claims.DIRECTIONAL_CLAIMS if c not in claims.PER_MODEL_CLAIMS)])
    figure_inputs = files(**{name: outputs[name] for name in ("history", "robustness", "finetune", "runs")})
    for name in figure_names(plan.targets(config), "architecture"):
        job = {"figure": name}
        summary.figure(plan.job_config(config, "figure", job), job, figure_inputs,
                     figure_outputs(root, "architecture", name))


# ============================================================================= background study

BG_MODELS = [
    {"id": "cnn", "name": "small_cnn", "kwargs": {"features": [4, 8]}},
    {"id": "vit", "name": "vit_micro", "kwargs": {"patch_size": 4}},
    {"id": "cnn_b", "name": "small_cnn", "kwargs": {"features": [8]}},
]
BG_IMAGE_SIZE = 12
BG_DIRECTIONAL = ("mixed_rand_training_shrinks_bg_gap", "mixed_rand_training_shrinks_source002_gap",
                  "paired_shrinks_source002_gap", "paired_regulariser_shrinks_source002_gap")


def draw_background(rng: random.Random) -> dict:
    from robustflow.studies.background import plan

    models = some(rng, BG_MODELS)
    rng.shuffle(models)
    seeds = some(rng, [0, 1, 2])
    study = {"source": "generated",
             "generated": {"n_classes": rng.randint(2, 5), "image_size": BG_IMAGE_SIZE, "digit_size": 8},
             "models": copy.deepcopy(models), "methods": some(rng, plan.METHODS),
             "reg_coeffs": some(rng, [0, 1, 10]), "pair_mode": rng.choice(["noise", "other_background", "constant"]),
             "seeds": seeds, "saliency_samples": rng.randint(1, 8),
             "influence": {"n_test": rng.randint(1, 6), "top_k": rng.randint(1, 4), "seeds": some(rng, seeds)}}
    return study_config(plan.SECTION, study)


def _images(gen: np.random.Generator, *shape: int) -> np.ndarray:
    return gen.integers(0, 256, (*shape, 3, BG_IMAGE_SIZE, BG_IMAGE_SIZE), dtype=np.uint8)


def run_background(config: dict, rng: random.Random, root: Path) -> None:
    from robustflow.studies.background import claims, plan, steps, summary

    gen = np.random.default_rng(rng.randrange(2**32))
    study = config[plan.SECTION]
    n_classes = study["generated"]["n_classes"] if study["source"] == "generated" else 9
    classes = np.array([str(c) for c in range(n_classes)])
    n_test, n_train = 40, 120
    sampled = [v for v in VARIATIONS if v in steps.SAMPLE_VARIATIONS]
    influence_runs = {run["run"] for run in plan.influence_runs(config)}
    inputs = {"accuracy": [], "history": [], "influence": []}
    for run in plan.runs(config):
        job = {"run": run["run"], **run}
        keys = {c: job[c] for c in plan.RUN_COLUMNS}
        folder = root / "results" / "background_study" / "runs" / run["run"]
        extra = ("task_loss", "distance") if run["method"] == "paired" else ()
        history = fake_history(gen, study["training"]["epochs"], n_classes, train_metrics=extra).assign(
            method=run["method"], reg_coeff=run["reg_coeff"], pair_mode=run["pair_mode"], seed=run["seed"],
            label=run["label"], variant=run["variant"])
        accuracy = []
        for variation in VARIATIONS:
            metrics = fake_metrics(gen, n_classes)
            accuracy.append({**keys, "variation": variation, "n": n_test, "top1": metrics["top1"],
                             "top5": metrics["top5"], "nll": metrics["nll"], "ece": metrics["ece"],
                             "fg_share": gen.uniform(0, 1)})
        inputs["history"].append(write_csv(history, folder / "history.csv"))
        inputs["accuracy"].append(write_csv(pd.DataFrame(accuracy), folder / "accuracy.csv"))
        n = min(study["saliency_samples"], n_test)
        channels = gen.uniform(0, 1, (len(sampled), n, 3, BG_IMAGE_SIZE, BG_IMAGE_SIZE))
        write_npz(folder / "saliency.npz", run=run["run"], label=run["label"], model=run["model"],
                  variations=np.array(sampled), images=_images(gen, len(sampled), n), saliency=channels.max(axis=2),
                  saliency_channels=channels, predictions=gen.integers(0, n_classes, (len(sampled), n)),
                  labels=gen.integers(0, n_classes, n),
                  masks=gen.random((n, BG_IMAGE_SIZE, BG_IMAGE_SIZE)) < 0.4,
                  classes=classes, indices=np.linspace(0, n_test - 1, n).round().astype(int))
        if run["run"] not in influence_runs:
            continue
        # Sometimes every mixed_rand image is classified right: nothing to explain.
        chosen = 0 if rng.random() < 0.2 else rng.randint(1, study["influence"]["n_test"])
        k = min(study["influence"]["top_k"], n_train)
        test_labels = gen.integers(0, n_classes, chosen)
        predictions = (test_labels + gen.integers(1, n_classes, chosen)) % n_classes  # misclassified
        proponents = gen.integers(0, n_train, (chosen, k))
        rows = [{**keys, "test_index": int(index), "test_label": int(test_labels[row]),
                 "test_prediction": int(predictions[row]), "test_background_class": int(gen.integers(0, n_classes)),
                 "kind": kind, "rank": rank + 1, "train_index": int(proponents[row, rank]),
                 "train_label": int(gen.integers(0, n_classes)), "train_background_class": int(gen.integers(0, n_classes)),
                 "score": float(gen.normal())}
                for row, index in enumerate(sorted(gen.choice(n_test, chosen, replace=False)))
                for kind in ("proponent", "opponent") for rank in range(k)]
        columns = [*plan.RUN_COLUMNS, "test_index", "test_label", "test_prediction", "test_background_class",
                   "kind", "rank", "train_index", "train_label", "train_background_class", "score"]
        inputs["influence"].append(write_csv(pd.DataFrame(rows, columns=columns), folder / "influence.csv"))
        write_npz(folder / "influence.npz", run=run["run"], label=run["label"], model=run["model"],
                  test_images=_images(gen, chosen), test_labels=test_labels, test_predictions=predictions,
                  proponent_images=_images(gen, chosen, k) if chosen else np.zeros((0, k)),
                  proponent_labels=gen.integers(0, n_classes, (chosen, k)),
                  proponent_scores=-np.sort(-gen.normal(size=(chosen, k)), axis=1), classes=classes)

    names = ("accuracy", "history", "influence", "gaps", "summary", "gap_summary", "claims", "proponents")
    outputs = table_outputs(root, "background", names)
    outputs["proponents"] = outputs["proponents"].with_name("background_influence_proponents.csv")
    summary.aggregate(plan.job_config(config, "aggregate"), {}, files(**inputs), files(**outputs))
    models = [spec["id"] for spec in study["models"]]
    expected = [f"source002_{arch}_{metric}" for arch, numbers in claims.SOURCE_002_NUMBERS.items() for metric in numbers]
    expected += [f"{model}_{name}" for model in models for name in BG_DIRECTIONAL] + ["cnn_gap_exceeds_vit"]
    check_claims(pd.read_csv(outputs["claims"]), expected)

    runs_dir = root / "results" / "background_study" / "runs"
    figure_inputs = files(accuracy=outputs["accuracy"], gaps=outputs["gaps"])
    for name in figure_names(plan.targets(config), "background"):
        grid = next((grid for grid in plan.GRIDS if name.startswith(f"{grid}_")), None)
        model = name.removeprefix(f"{grid}_")
        if grid == "saliency_grid":
            job = {"model": model}
            inputs = files(saliency=[runs_dir / r / "saliency.npz" for r in plan.saliency_grid_runs(config, model)])
            summary.saliency_grid(plan.job_config(config, grid, job), job, inputs, figure_outputs(root, "background", name))
        elif grid == "influence_grid":
            job = {"model": model}
            inputs = files(samples=[runs_dir / r / "influence.npz" for r in plan.influence_grid_run(config, model)])
            summary.influence_grid(plan.job_config(config, grid, job), job, inputs,
                                 figure_outputs(root, "background", name))
        else:
            job = {"figure": name}
            summary.figure(plan.job_config(config, "figure", job), job, figure_inputs,
                         figure_outputs(root, "background", name))


# ============================================================================= repeatability study

REP_MODELS = [
    {"id": "cnn", "name": "small_cnn", "kwargs": {"features": [4, 8]}},
    {"id": "cnn_b", "name": "small_cnn", "kwargs": {"features": [8]}},
    {"id": "cnn_c", "name": "small_cnn", "kwargs": {"features": [4, 4, 4], "dropout": 0.2}},
]
REP_METHODS = [
    {"id": "standard", "objective": "standard"},
    {"id": "anti_aliased", "objective": "standard", "blur_filter": 3},
    {"id": "augmix", "objective": "augmix"},
    {"id": "anti_aliased_augmix", "objective": "augmix", "blur_filter": 5},
    {"id": "stability", "objective": "stability", "params": {"alpha": 1.0, "sigma": 0.1}},
    {"id": "patch_gaussian", "objective": "patch_gaussian", "params": {"max_width": 8, "max_sigma": 0.5}},
    {"id": "gaussian_noise", "objective": "gaussian_noise", "params": {"sigma": 0.1}},
    {"id": "rotation_head", "objective": "rotation_head"},
]
REP_TEST_IMAGES = 30


def repeatability_config(models: list[dict], methods: list[dict], **study) -> dict:
    from robustflow.studies.repeatability import plan

    config = study_config(plan.SECTION, {"dataset": "digits", "models": copy.deepcopy(models),
                                         "methods": copy.deepcopy(methods), **study})
    config[plan.SECTION].setdefault("baseline", plan.variants(config)[0]["variant"])
    return config


def draw_repeatability(rng: random.Random) -> dict:
    from robustflow.perturbations import PERTURBATIONS
    from robustflow.studies.repeatability import plan

    config = repeatability_config(
        some(rng, REP_MODELS), some(rng, REP_METHODS), seeds=some(rng, [0, 1, 2]), training={"epochs": rng.randint(1, 4)},
        perturbations={"names": some(rng, PERTURBATIONS)},
        cifar10c={"corruptions": some(rng, ["fog", "contrast", "gaussian_noise", "pixelate"])},
        shifts={"max_shift": rng.randint(1, 4)}, translate_images=rng.randint(1, 3))
    return with_baseline(plan, config, rng)


def run_repeatability(config: dict, rng: random.Random, root: Path) -> None:
    """Every run's evaluation tables as `steps.evaluate` writes them, random values, then the
    aggregate and every figure; the claims name every claim of every model."""
    from robustflow.claims import claim_id
    from robustflow.perturbations import FRAMES, NOISE_PERTURBATIONS
    from robustflow.studies.repeatability import claims, plan, steps, summary

    gen = np.random.default_rng(rng.randrange(2**32))
    study = config[plan.SECTION]
    labels = np.arange(REP_TEST_IMAGES) % 10
    names = study["perturbations"]["names"]
    inputs = {name: [] for name in summary.TABLES}
    for run in plan.runs(config):
        folder = root / "results" / "repeatability_study" / "runs" / run["run"]
        keys = {c: run[c] for c in plan.RUN_COLUMNS}
        perturbations = pd.DataFrame([{**keys, "perturbation": name, "noise": name in NOISE_PERTURBATIONS,
                                       "frames": FRAMES[name], "n_images": REP_TEST_IMAGES,
                                       "flip_probability": gen.uniform(0, 0.3), "top5_distance": gen.uniform(0, 1)}
                                      for name in names])
        translate = pd.DataFrame([{**keys, "image": image, "frame": frame, "shift": frame - steps.TRANSLATE_CENTRE,
                                   "top_class_probability": gen.uniform(0.1, 1)}
                                  for image in range(study["translate_images"] if "translate" in names else 0)
                                  for frame in range(FRAMES["translate"])],
                                 columns=[*plan.RUN_COLUMNS, "image", "frame", "shift", "top_class_probability"])
        protocols = [("random_shift", d) for d in range(1, study["shifts"]["max_shift"] + 1)]
        protocols += [(protocol, 1) for protocol in ("crop_shift", "embed_translate", "embed_scale")]
        shifts = pd.DataFrame([{**keys, "protocol": protocol, "distance": distance, "n_images": REP_TEST_IMAGES,
                                "consistency": (same := gen.uniform(0.5, 1)), "top1_change": 1 - same,
                                "top_class_probability_change": gen.uniform(0, 0.3)}
                               for protocol, distance in protocols])
        predictions = pd.DataFrame({**keys, "image": range(REP_TEST_IMAGES), "label": labels,
                                    "prediction": np.where(gen.random(REP_TEST_IMAGES) < 0.7, labels,
                                                           gen.integers(0, 10, REP_TEST_IMAGES))})
        cells = [("clean", 0)] + [(c, s) for c in study["cifar10c"]["corruptions"] or CORRUPTIONS
                                  for s in SEVERITIES]
        corruptions = pd.DataFrame([{**keys, "corruption": c, "severity": s, "top1": (top1 := gen.uniform(0.1, 1)),
                                     "error": 1 - top1} for c, s in cells])
        history = fake_history(gen, study["training"]["epochs"], 10).assign(**keys)
        for name, table in (("perturbations", perturbations), ("translate", translate), ("shifts", shifts),
                            ("predictions", predictions), ("corruptions", corruptions), ("history", history)):
            inputs[name].append(write_csv(table, folder / f"{name}.csv"))

    names = ("history", "perturbations", "shifts", "corruptions", "translate", "runs", "agreement", "summary", "claims")
    outputs = table_outputs(root, "repeatability", names)
    summary.aggregate(plan.job_config(config, "aggregate"), {}, files(**inputs), files(**outputs))
    expected = [claim_id(model["id"], item.name) for model in study["models"]
                for item in (*claims.LITERATURE, *claims.DIRECTIONAL)]
    check_claims(pd.read_csv(outputs["claims"]), expected)
    figure_inputs = files(**{name: outputs[name] for name in ("perturbations", "translate", "shifts", "runs",
                                                             "agreement")})
    for name in figure_names(plan.targets(config), "repeatability"):
        job = {"figure": name}
        summary.figure(plan.job_config(config, "figure", job), job, figure_inputs,
                       figure_outputs(root, "repeatability", name))


# ============================================================================= edge cases

# Sub-sweeps that once crashed, or that random draws reach only now and then; drawn every time.
EDGE_CASES = {
    "loss_study": {
        "one-loss": lambda: study_config("loss_study", {"sweep": [{"loss": ["focal"]}], "seeds": [2], "baseline": "focal"},
                                         noise_suite={"types": ["occlusion"], "levels": [0.3]}),
        "no-margin-loss": lambda: study_config("loss_study", {"sweep": [{"loss": ["ce", "label_smoothing"]}],
                                                              "baseline": "ce"}),
        "margin-lambda-0-only": lambda: study_config(
            "loss_study", {"sweep": [{"loss": ["margin"], "margin_lambda": [0]}], "baseline": "margin-lam0"}),
        "ema-without-gaussian-noise": lambda: study_config(
            "loss_study", {"sweep": [{"loss": ["ce"], "ema": [False, True]}], "baseline": "ce"},
            noise_suite={"types": ["fog"], "levels": [0.0, 0.5]}),
        "margin-only-with-ema": lambda: study_config(
            "loss_study", {"sweep": [{"loss": ["margin"], "margin_lambda": [10], "ema": [True]}],
                           "baseline": "margin-lam10-ema"}),
    },
    "learning_rule_study": {
        "one-method-one-constraint-one-seed": lambda: study_config(
            "learning_rule_study", {"task": {"image_size": IMAGE_SIZE}, "methods": ["hebbian"], "constraints": [[0, 1]],
                                    "seeds": [3], "noise_types": ["fog"], "noise_levels": [0.2]}),
        "sgd-only": lambda: study_config(
            "learning_rule_study", {"task": {"image_size": IMAGE_SIZE}, "methods": ["sgd_ce"], "constraints": [None],
                                    "sgd_lrs": [0.01]}),
    },
    "architecture_study": {
        "one-model-one-seed-one-corruption": lambda: study_config(
            "architecture_study", {"dataset": "digits", "seeds": [1], "models": [copy.deepcopy(ARCH_MODELS[1])],
                                   "baseline": "vit-pt", "cifar10c": {"corruptions": ["fog"]},
                                   "finetune": {"corruptions": ["fog"], "group_by": "corruption"}}),
        "no-finetuning-one-job-per-run": lambda: study_config(
            "architecture_study", {"dataset": "digits", "seeds": [0], "models": copy.deepcopy(ARCH_MODELS[:2]),
                                   "baseline": "cnn-scratch", "cifar10c": {"corruptions": ["fog"]},
                                   "finetune": {"corruptions": [], "group_by": "run"}}),
        "no-finetuning-no-jobs": lambda: study_config(
            "architecture_study", {"dataset": "digits", "seeds": [0, 2], "models": copy.deepcopy(ARCH_MODELS[:1]),
                                   "baseline": "cnn-pt", "finetune": {"corruptions": [], "group_by": "corruption"}}),
        "two-cnns": lambda: study_config(
            "architecture_study", {"dataset": "digits", "seeds": [0, 1],
                                   "models": copy.deepcopy([ARCH_MODELS[2], ARCH_MODELS[0]]), "baseline": "cnn_b-pt",
                                   "cifar10c": {"corruptions": ["contrast", "fog"]}}),
    },
    "background_study": {
        "one-model-paired-reg0": lambda: study_config(
            "background_study", {"generated": {"image_size": BG_IMAGE_SIZE, "digit_size": 8},
                                 "models": [copy.deepcopy(BG_MODELS[1])], "methods": ["paired"], "reg_coeffs": [0],
                                 "seeds": [1], "influence": {"seeds": [1]}}),
        "mixed-rand-only": lambda: study_config(
            "background_study", {"generated": {"image_size": BG_IMAGE_SIZE, "digit_size": 8, "n_classes": 2},
                                 "models": copy.deepcopy(BG_MODELS[:2]), "methods": ["mixed_rand"]}),
    },
    "repeatability_study": {
        "baseline-only-one-seed": lambda: repeatability_config(REP_MODELS[:1], REP_METHODS[:1], seeds=[2]),
        "no-standard-method-noise-only": lambda: repeatability_config(
            REP_MODELS[1:2], REP_METHODS[2:3], perturbations={"names": ["gaussian_noise"]},
            cifar10c={"corruptions": ["fog"]}),
        "no-noise-no-translate": lambda: repeatability_config(
            REP_MODELS[:1], [REP_METHODS[0], REP_METHODS[4]], seeds=[0, 1], perturbations={"names": ["rotate", "snow"]}),
        "validation-perturbations-only": lambda: repeatability_config(
            REP_MODELS[2:], [REP_METHODS[0], REP_METHODS[2]],
            perturbations={"names": ["speckle_noise", "gaussian_blur", "shear", "snow"]}),
    },
}


# ============================================================================= the property

STUDY_DRAWS = {
    "loss_study": (draw_loss, run_loss),
    "learning_rule_study": (draw_learning_rule, run_learning_rule),
    "architecture_study": (draw_architecture, run_architecture),
    "background_study": (draw_background, run_background),
    "repeatability_study": (draw_repeatability, run_repeatability),
}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(section: str, case, rng: random.Random) -> dict:
    if case == "default":
        return default_config(section)
    if isinstance(case, str):
        return EDGE_CASES[section][case]()
    return STUDY_DRAWS[section][0](rng)


@pytest.mark.parametrize("section, case", [(section, case) for section in STUDY_DRAWS
                                           for case in ["default", *EDGE_CASES[section], *range(DRAWS)]])
def test_aggregate_and_every_targeted_figure_work_on_a_sub_sweep(section, case, tmp_path):
    from robustflow.studies import plan as study_plan

    _, run = STUDY_DRAWS[section]
    rng = random.Random(f"{section}-{case}")
    config = validate(_config(section, case, rng), SCHEMA)
    plan = study_plan(section)
    run(config, rng, tmp_path)
    check_targets(plan, config, tmp_path)


def test_the_full_default_sweeps_target_every_figure():
    """Dropping a figure whose subject is absent must not drop one the default config has."""
    from robustflow.studies import plan as study_plan

    for section in STUDIES:
        plan = study_plan(section)
        config = validate(default_config(section), SCHEMA)
        figures = {Path(t).stem for t in plan.targets(config) if t.startswith("results/figures/")}
        prefix = section.removesuffix("_study")
        assert {f"{prefix}_{name}" for name in plan.FIGURES} <= figures, section


def _texts(fig) -> str:
    return " ".join(text.get_text() for ax in fig.axes for text in ax.texts)


def test_a_figure_asked_for_without_its_subject_says_so(tmp_path):
    """Not a target then, but a figure asked for by name (snakemake results/figures/...) must say
    plainly that there is nothing to show, not crash or draw empty axes."""
    from robustflow.plots import background as background_plots
    from robustflow.plots import learning_rule as learning_rule_plots
    from robustflow.plots import loss as loss_plots
    from robustflow.plots.style import save_figure
    from robustflow.studies.background import plan as background_plan
    from robustflow.studies.learning_rule import plan as learning_rule_plan
    from robustflow.studies.loss import plan as loss_plan

    config = validate(EDGE_CASES["loss_study"]["no-margin-loss"](), SCHEMA)
    assert "results/figures/loss_lambda_ablation.pdf" not in loss_plan.targets(config)
    run_loss(config, random.Random(0), tmp_path / "loss")
    noise = pd.read_csv(tmp_path / "loss" / "results" / "tables" / "loss_noise.csv")
    figures = {"no margin loss": loss_plots.lambda_ablation(noise, "ce"),
               "no clean level": loss_plots.lambda_ablation(noise[noise["level"] > 0], "ce")}

    config = validate(EDGE_CASES["learning_rule_study"]["one-method-one-constraint-one-seed"](), SCHEMA)
    assert "results/figures/learning_rule_lr_sweep.pdf" not in learning_rule_plan.targets(config)
    run_learning_rule(config, random.Random(0), tmp_path / "learning_rule")
    figures["no SGD method"] = learning_rule_plots.lr_sweep(
        pd.read_csv(tmp_path / "learning_rule" / "results" / "tables" / "learning_rule_lr_sweep.csv"))

    config = validate(EDGE_CASES["background_study"]["mixed-rand-only"](), SCHEMA)
    run_background(config, random.Random(0), tmp_path / "background")
    accuracy = pd.read_csv(tmp_path / "background" / "results" / "tables" / "background_accuracy.csv")
    # The real challenge without fg_mask/val: no test masks, so every share is NaN.
    figures["no test masks"] = background_plots.foreground_share_per_variation(accuracy.assign(fg_share=np.nan))
    challenge = copy.deepcopy(config)
    challenge[background_plan.SECTION].update(source="bg_challenge", bg_challenge={"root": str(tmp_path / "bg")})
    assert "foreground_share" not in background_plan.figures(challenge)
    (tmp_path / "bg" / "fg_mask" / "val").mkdir(parents=True)
    assert "foreground_share" in background_plan.figures(challenge)

    from robustflow.plots import architecture as architecture_plots
    from robustflow.studies.architecture import plan as architecture_plan

    config = validate(EDGE_CASES["architecture_study"]["no-finetuning-one-job-per-run"](), SCHEMA)
    assert "finetune_improvement" not in architecture_plan.figures(config)
    figures["no fine-tuning"] = architecture_plots.finetune_improvement(pd.DataFrame(columns=architecture_plan.RUN_COLUMNS))

    for why, fig in figures.items():
        assert "nothing to show" in _texts(fig), why
        assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes), why
        save_figure(fig, tmp_path / "figure.pdf", tmp_path / "figure.png")
