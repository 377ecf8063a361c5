"""Source 002's claims (Exp 1-3) beside the architecture study's measurements, with verdicts.

The magnitudes per variant are comparable only on CIFAR-10 with the source's models and
ImageNet weights; the directional claims (signs of paired differences) any config can test,
when its models converged (`robustflow.claims.converged` on the training histories) and the
interval is narrow enough to see an effect of `MIN_EFFECT`; else they are not testable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import pandas as pd

from robustflow.claims import Claim, better_than_chance, claim_id, converged, judge, verdict_table
from robustflow.config import DATASET_CLASSES
from robustflow.studies.architecture.plan import CLEAN, INITS, SECTION, variant_id


def _study(config: dict) -> dict:
    return config[SECTION]


SOURCE = "source 002"
# Source 002's tables (CIFAR-10, percent): variant (family, init) -> (clean top-1, CIFAR-10-C mean
# top-1 over 19 x 5, top-1 after 5 epochs of fine-tuning, stated improvement over Exp 2).
# The ViT-S scratch improvement is stated as +35.76 pp although its own table gives
# 99.62 - 60.10 = 39.52 pp; the stated figure is kept as the claim.
SOURCE_TABLE = {
    ("cnn", "scratch"): ("ResNet-50", 71.51, 62.45, 93.01, 30.56),
    ("cnn", "pretrained"): ("ResNet-50 pt", 82.10, 69.67, 99.78, 30.11),
    ("vit", "scratch"): ("ViT-S/16", 72.15, 60.10, 99.62, 35.76),
    ("vit", "pretrained"): ("ViT-S/16 pt", 98.23, 91.37, 99.92, 8.55),
}
SOURCE_MODELS = {"cnn": "resnet50", "vit": "vit_small_patch16_224"}
ACCURACY_REL_TOL = 0.05
NUMERIC_METRICS = {
    "clean_top1": ("clean test top-1", 1, "clean test top-1 (fraction)"),
    "mean_c_top1": ("CIFAR-10-C mean top-1", 2, "mean top-1 over CIFAR-10-C corruptions x severities"),
    "finetuned_top1": ("top-1 after fine-tuning on CIFAR-10-C", 3,
                       "mean top-1 on the fine-tuning test images after fine-tuning"),
    "finetune_improvement": ("fine-tuning improvement over Exp 2", 4,
                             "fine-tuned mean top-1 minus Exp 2 mean top-1 (same cells)"),
}


def _comparability(config: dict, spec: dict) -> str:
    """Why the source's numbers do not apply to this model's runs ('' when they do)."""
    study = _study(config)
    reasons = []
    if study["dataset"] != "cifar10":
        reasons.append(f"embedded default ({study['dataset']}), not the source's CIFAR-10")
    if spec["name"] != SOURCE_MODELS.get(spec["family"]):
        reasons.append(f"model {spec['name']} instead of {SOURCE_MODELS.get(spec['family'])}")
    if spec["pretrained_source"] != "timm":
        reasons.append("pretrained variant uses source-task pretraining, not ImageNet-1k weights")
    return "; ".join(reasons)


def _numeric_claims(config: dict, runs: pd.DataFrame) -> list[dict]:
    rows = []
    for spec in _study(config)["models"]:
        for init in INITS:
            key = (spec["family"], init)
            if key not in SOURCE_TABLE:
                continue
            label = SOURCE_TABLE[key][0]
            variant = variant_id(spec["id"], init)
            reason = _comparability(config, spec)
            for metric, (what, column, description) in NUMERIC_METRICS.items():
                claim = Claim(claim_id(variant, metric), SOURCE, f"{label}: {what} {SOURCE_TABLE[key][column]}%",
                              description, SOURCE_TABLE[key][column] / 100, "value", rel_tol=ACCURACY_REL_TOL,
                              proportion=metric != "finetune_improvement")
                measured = runs.loc[runs["variant"] == variant, metric].tolist() if metric in runs.columns else []
                if not measured:
                    rows.append(judge(claim, [], comparable=False, reason="not measured in this config"))
                    continue
                rows.append(judge(claim, measured, comparable=not reason, reason=reason))
    return rows


def _paired(runs: pd.DataFrame, column: str, first: Mapping, second: Mapping, on: Sequence[str]) -> list[float]:
    """Differences first - second of ``column`` between rows matched on ``on``."""
    a = runs.loc[(runs[list(first)] == pd.Series(first)).all(axis=1)]
    b = runs.loc[(runs[list(second)] == pd.Series(second)).all(axis=1)]
    merged = a.merge(b, on=list(on), suffixes=("_a", "_b"))
    return (merged[f"{column}_a"] - merged[f"{column}_b"]).dropna().tolist()


# The smallest accuracy difference a directional claim is about: 0.02 top-1 is ~5 of the
# digits' 270 test images, and a tenth of source 002's smallest pretraining gain.
MIN_EFFECT = 0.02


def _directional(claim_key: str, statement: str, metric: str) -> Claim:
    return Claim(claim_key, SOURCE, statement, metric, 0.0, "above", min_effect=MIN_EFFECT)


# Each measured value is one independent unit: a pair of runs of the same seed, or one run
# (averaged over its corruptions and severities), never one corruption of a run, whose values
# share the run's weights and would narrow the interval without adding evidence.
PRETRAINING_RAISES_CLEAN = _directional(
    "pretraining_raises_clean_accuracy", "pretraining raises clean test accuracy",
    "clean top-1 pretrained - scratch, per (model, seed)")
PRETRAINING_RAISES_CORRUPTED = _directional(
    "pretraining_raises_corrupted_accuracy", "pretraining raises CIFAR-10-C accuracy (hypothesis 1)",
    "CIFAR-10-C mean top-1 pretrained - scratch, per (model, seed)")
VIT_MORE_ROBUST = _directional(
    "vit_more_robust_than_cnn", "the transformer is more robust than the CNN at equal initialisation (hypothesis 1)",
    "CIFAR-10-C mean top-1 vit - cnn, per (init, seed)")
VIT_PT_MOST_ROBUST = _directional(
    "vit_pt_most_robust", "the pretrained ViT is the most robust variant",
    "CIFAR-10-C mean top-1, vit-pt - the best other variant, per seed")
FINETUNING_RAISES_CORRUPTED = _directional(
    "finetuning_raises_corrupted_accuracy", "fine-tuning on CIFAR-10-C raises corrupted accuracy (hypothesis 2)",
    "test top-1 after - before fine-tuning, mean over corruptions and severities, per run")
ACCURACY_FALLS_WITH_SEVERITY = Claim(
    "accuracy_falls_with_severity", SOURCE,
    "accuracy falls as the corruption's severity rises (CIFAR-10-C's design, Hendrycks & Dietterich 2019)",
    "top-1 at the lowest minus the highest severity, mean over corruptions, per run", 0.0, "above",
    min_effect=MIN_EFFECT)
DIRECTIONAL_CLAIMS = (PRETRAINING_RAISES_CLEAN, PRETRAINING_RAISES_CORRUPTED, VIT_MORE_ROBUST, VIT_PT_MOST_ROBUST,
                      FINETUNING_RAISES_CORRUPTED, ACCURACY_FALLS_WITH_SEVERITY)
# Claims that compare a model with itself (fine-tuned vs not, one severity vs another) need no
# converged training to be testable; a model at chance, though, has no accuracy to lose.
WITHIN_MODEL_CLAIMS = (FINETUNING_RAISES_CORRUPTED, ACCURACY_FALLS_WITH_SEVERITY)


def _severity_drops(robustness: pd.DataFrame) -> list[float]:
    """Per run: top-1 at the lowest severity minus top-1 at the highest, mean over corruptions."""
    corrupted = robustness[robustness["corruption"] != CLEAN]
    if corrupted.empty or corrupted["severity"].nunique() < 2:
        return []
    top1 = corrupted.pivot_table(index=["run", "corruption"], columns="severity", values="top1")
    drops = top1[top1.columns.min()] - top1[top1.columns.max()]
    return drops.groupby(level="run").mean().dropna().tolist()


def _vit_pt_margins(runs: pd.DataFrame) -> list[float]:
    """Per seed: the pretrained ViT's CIFAR-10-C mean top-1 minus that of the best other variant."""
    margins: list[float] = []
    for _, seed_runs in runs.groupby("seed"):
        ours = seed_runs[(seed_runs["family"] == "vit") & (seed_runs["init"] == "pretrained")]
        others = seed_runs.drop(index=ours.index)
        if len(ours) == 1 and len(others):
            margins.append(float(ours["mean_c_top1"].iloc[0] - others["mean_c_top1"].max()))
    return margins


def _model_measurements(runs: pd.DataFrame, robustness: pd.DataFrame, finetune: pd.DataFrame
                        ) -> dict[Claim, list[float]]:
    """The measurements of the `PER_MODEL_CLAIMS`, from one model's tables."""
    pretrained, scratch = {"init": "pretrained"}, {"init": "scratch"}
    return {
        PRETRAINING_RAISES_CLEAN: _paired(runs, "clean_top1", pretrained, scratch, on=["model", "seed"]),
        PRETRAINING_RAISES_CORRUPTED: _paired(runs, "mean_c_top1", pretrained, scratch, on=["model", "seed"]),
        FINETUNING_RAISES_CORRUPTED: (finetune.groupby("run")["top1_improvement"].mean().tolist()
                                      if len(finetune) else []),
        ACCURACY_FALLS_WITH_SEVERITY: _severity_drops(robustness),
    }


def _comparison_measurements(config: dict, runs: pd.DataFrame) -> dict[Claim, list[float]]:
    """The measurements of the claims that compare models, from every run."""
    families = {spec["family"] for spec in _study(config)["models"]}
    return {
        VIT_MORE_ROBUST: (_paired(runs, "mean_c_top1", {"family": "vit"}, {"family": "cnn"}, on=["init", "seed"])
                          if {"vit", "cnn"} <= families else []),
        VIT_PT_MOST_ROBUST: _vit_pt_margins(runs),
    }


# Claims judged per model (each model's own runs, its own convergence): one model that cannot
# be trained at this scale then leaves the other's test standing. The rest compare models.
PER_MODEL_CLAIMS = (PRETRAINING_RAISES_CLEAN, PRETRAINING_RAISES_CORRUPTED, FINETUNING_RAISES_CORRUPTED,
                    ACCURACY_FALLS_WITH_SEVERITY)


def _judge_directional(config: dict, claim: Claim, values: list[float], preconditions: list) -> dict:
    if not values:
        return judge(claim, [], comparable=False,
                     reason="not measured in this config (the variants or corruptions it needs are absent)")
    return judge(claim, values, comparable=True, preconditions=preconditions,
                 reason=f"directional: tested on this config's data ({_study(config)['dataset']})")


def _preconditions(config: dict, claim: Claim, runs: pd.DataFrame, history: pd.DataFrame) -> list:
    """What ``claim`` needs of ``runs`` to be testable: converged training where it compares
    trained variants, models above chance for the severity claim, nothing for fine-tuning."""
    if claim is ACCURACY_FALLS_WITH_SEVERITY:
        return [better_than_chance(runs["clean_top1"], DATASET_CLASSES[_study(config)["dataset"]], "the evaluated models")]
    return [] if claim in WITHIN_MODEL_CLAIMS else [converged(history)]


def claims_table(config: dict, runs: pd.DataFrame, robustness: pd.DataFrame, finetune: pd.DataFrame,
                 history: pd.DataFrame) -> pd.DataFrame:
    """Source 002's Exp 1-3 figures per variant beside the measured ones, plus directional claims
    (signs of paired differences) that any config can test: `PER_MODEL_CLAIMS` for each model,
    the comparisons of models over all runs. ``history`` holds the training runs' per-epoch
    rows for the convergence preconditions (`_preconditions`)."""
    rows = _numeric_claims(config, runs)
    for spec in _study(config)["models"]:
        model = spec["id"]
        own = {name: table[table["model"] == model] if len(table) else table
               for name, table in (("runs", runs), ("robustness", robustness), ("finetune", finetune),
                                   ("history", history))}
        measured = _model_measurements(own["runs"], own["robustness"], own["finetune"])
        for claim in PER_MODEL_CLAIMS:
            named = replace(claim, claim_id=claim_id(model, claim.claim_id), statement=f"{model}: {claim.statement}")
            rows.append(_judge_directional(config, named, measured[claim],
                                           _preconditions(config, claim, own["runs"], own["history"])))
    for claim, values in _comparison_measurements(config, runs).items():
        rows.append(_judge_directional(config, claim, values, _preconditions(config, claim, runs, history)))
    return verdict_table(rows)
