"""Source 004's claims and the literature numbers it cites, beside the repeatability study's
measurements, with verdicts; and the per-run summary they read.

The literature numbers come from ImageNet-P, ImageNet or CIFAR-10-C's 15 benchmark corruptions
with WRN-40-2: on other data, models or corruption sets they are "not comparable", shown beside
the measured value. The directional claims (anti-aliasing raises consistency; AugMix lowers
corruption error and flip probability; stability training lowers the noise flip probability)
are judged on any config, per seed, with the strict ``above`` rule on paired differences, when
both compared arms beat chance on clean test top-1 (a collapsed model never flips, so it would
"win" every stability claim) and converged (as in the other studies).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import pandas as pd

from robustflow.claims import Claim, Precondition, better_than_chance, claim_id, converged, judge, verdict_table
from robustflow.config import DATASET_CLASSES
from robustflow.corruption_names import BENCHMARK_CORRUPTIONS, CORRUPTIONS
from robustflow.repeatability_metrics import disagreement_matrix, fleiss_kappa, flip_rates
from robustflow.robustness_metrics import mean_corruption_errors
from robustflow.studies.repeatability.plan import SCORED_PERTURBATIONS

SOURCE = "source 004"
RUN_COLUMNS = ["run", "variant", "model", "method", "seed"]


# ----------------------------------------------------------------------------- per-run summary


def run_summary(tables: dict[str, pd.DataFrame], baseline: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(runs, perturbations with flip rates, agreement across seeds) from the joined per-run tables.

    Rates divide by the baseline variant of the same seed; a perturbation on which the baseline
    never flips gets no rate (NaN), as the ratio is undefined there: a run's ``n_rated`` says
    how many scored perturbations its mFR averages.
    """
    perturbations = _with_rates(tables["perturbations"], baseline)
    runs = tables["perturbations"][RUN_COLUMNS].drop_duplicates("run").reset_index(drop=True)
    scored = perturbations[perturbations["perturbation"].isin(SCORED_PERTURBATIONS)]
    means = scored.groupby("run").agg(mean_flip_probability=("flip_probability", "mean"),
                                      mfr=("flip_rate", "mean"), mean_top5_distance=("top5_distance", "mean"),
                                      mt5d=("top5_distance_rate", "mean"), n_rated=("flip_rate", "count"))
    noise = scored[scored["noise"].astype(bool)].groupby("run")["flip_probability"].mean()
    runs = runs.join(means, on="run").assign(noise_flip_probability=runs["run"].map(noise))
    runs = runs.join(_shift_summary(tables["shifts"]), on="run")
    runs = runs.join(_corruption_summary(tables["corruptions"], baseline), on="run")
    return runs, perturbations, agreement(tables["predictions"])


def _with_rates(table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """The perturbation rows with each seed's FR and T5D rate against the baseline of that seed."""
    frames = []
    for seed, rows in table.groupby("seed", sort=False):
        if baseline not in set(rows["variant"]):
            raise ValueError(f"repeatability_study.baseline {baseline!r} has no results for seed {seed}")
        # flip_rates keys its rows by "model": here the variant (the architecture is another column).
        rates = flip_rates(rows.drop(columns="model").rename(columns={"variant": "model"}), baseline)
        frames.append(rows.assign(flip_rate=rates["flip_rate"].to_numpy(),
                                  top5_distance_rate=rates["top5_distance_rate"].to_numpy()))
    return pd.concat(frames, ignore_index=True)


def _shift_summary(shifts: pd.DataFrame) -> pd.DataFrame:
    random = shifts[shifts["protocol"] == "random_shift"].groupby("run")["consistency"].mean().rename("consistency")
    one_pixel = shifts[shifts["protocol"] != "random_shift"].pivot_table(
        index="run", columns="protocol", values=["top1_change", "top_class_probability_change"])
    one_pixel.columns = [f"{protocol}_{measure}" for measure, protocol in one_pixel.columns]
    return pd.concat([random, one_pixel], axis=1)


def _corruption_summary(corruptions: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Per run: clean top-1, mean corruption error, mCE and relative mCE (baseline of the same seed)."""
    clean = corruptions[corruptions["corruption"] == "clean"].set_index("run")
    corrupted = corruptions[corruptions["corruption"] != "clean"]
    frames = []
    for _, rows in corrupted.groupby("seed", sort=False):
        errors = rows.assign(model=rows["variant"])
        clean_errors = {variant: float(clean.loc[run, "error"]) for variant, run in zip(rows["variant"], rows["run"])}
        summary = mean_corruption_errors(errors, clean_errors, baseline)
        by_variant = summary.set_index("model")
        runs = rows.drop_duplicates("run")
        frames.append(pd.DataFrame({"run": runs["run"].to_numpy(),
                                    "mean_corruption_error": runs["variant"].map(by_variant["mean_error"]).to_numpy(),
                                    "mce": runs["variant"].map(by_variant["mce"]).to_numpy(),
                                    "relative_mce": runs["variant"].map(by_variant["relative_mce"]).to_numpy()}))
    summary = pd.concat(frames).set_index("run") if frames else pd.DataFrame(columns=["mean_corruption_error"])
    summary["clean_top1"] = clean["top1"]
    return summary


AGREEMENT_COLUMNS = ["variant", "seed_a", "seed_b", "disagreement", "fleiss_kappa"]


def agreement(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per variant, every pair of seeds: the fraction of test images their models label
    differently; and the variant's Fleiss' kappa over its seeds (raters) and images (subjects).
    A variant of one seed has no pair and no rows (a one-seed sweep gives an empty table)."""
    rows = []
    n_classes = int(max(predictions["prediction"].max(), predictions["label"].max())) + 1
    for variant, group in predictions.groupby("variant", sort=False):
        table = group.pivot_table(index="seed", columns="image", values="prediction")
        seeds, labels = list(table.index), table.to_numpy().astype(int)
        if len(seeds) < 2:
            continue
        matrix, kappa = disagreement_matrix(labels), fleiss_kappa(labels, n_classes)
        rows += [{"variant": variant, "seed_a": a, "seed_b": b, "disagreement": float(matrix[i, j]),
                  "fleiss_kappa": kappa} for i, a in enumerate(seeds) for j, b in enumerate(seeds)]
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


# ----------------------------------------------------------------------------- claims


def _role(method: dict) -> str | None:
    """What a method stands for in the claims: the plain baseline, or one of the fixes."""
    if method["objective"] == "standard":
        return "anti_aliased" if method["blur_filter"] else "standard"
    return method["objective"] if not method["blur_filter"] else None


def _methods_by_role(config: dict) -> dict[str, str]:
    found: dict[str, str] = {}
    for method in config["repeatability_study"]["methods"]:
        role = _role(method)
        if role is not None:
            found.setdefault(role, method["id"])
    return found


class Directional(NamedTuple):
    name: str
    statement: str
    column: str
    better: str  # the role expected to be better
    lower_is_better: bool
    # The smallest effect the claim is about: an interval still reaching it is too wide to tell
    # the effect from none ("not testable at this scale"), one that excludes it "not reproduced".
    min_effect: float


# 0.02 of a proportion (~5 of 270 test images); flip probabilities are a few percent per frame,
# so a quarter of a percentage point is already a tenth of a typical one.
PROPORTION_EFFECT, FLIP_EFFECT = 0.02, 0.0025


DIRECTIONAL = (
    Directional("anti_aliasing_raises_consistency", "anti-aliasing (BlurPool) raises shift consistency",
                "consistency", "anti_aliased", lower_is_better=False, min_effect=PROPORTION_EFFECT),
    Directional("augmix_lowers_corruption_error", "AugMix lowers the corruption error",
                "mean_corruption_error", "augmix", lower_is_better=True, min_effect=PROPORTION_EFFECT),
    Directional("augmix_lowers_flip_probability", "AugMix lowers the flip probability (mean over scored perturbations)",
                "mean_flip_probability", "augmix", lower_is_better=True, min_effect=FLIP_EFFECT),
    Directional("stability_lowers_noise_flip_probability", "stability training lowers the flip probability under noise",
                "noise_flip_probability", "stability", lower_is_better=True, min_effect=FLIP_EFFECT),
)


def _paired(runs: pd.DataFrame, model: str, first: str, second: str, column: str) -> list[float]:
    """Per seed: ``column`` of method ``first`` minus that of ``second``, for ``model``."""
    rows = runs[runs["model"] == model]
    a = rows[rows["method"] == first].set_index("seed")[column]
    b = rows[rows["method"] == second].set_index("seed")[column]
    return (a - b).dropna().tolist()


def _learned(runs: pd.DataFrame, config: dict, model: str, methods: tuple[str, str]) -> Precondition:
    """Both compared arms beat chance on clean test top-1: a model stuck on one class has flip
    probability 0 and consistency 1, so it would "show" any of the stability effects."""
    arms = runs[(runs["model"] == model) & runs["method"].isin(methods)]
    dataset = config["repeatability_study"]["dataset"]
    return better_than_chance(arms["clean_top1"], DATASET_CLASSES[dataset],
                              f"{model}'s {' and '.join(methods)} runs (clean test)")


def _trained(history: pd.DataFrame, model: str, methods: tuple[str, str]) -> Precondition:
    """Both compared arms converged: a comparison of models still learning could turn with
    longer training."""
    return converged(history[(history["model"] == model) & history["method"].isin(methods)])


def _directional_rows(runs: pd.DataFrame, history: pd.DataFrame, config: dict, model: str) -> list[dict]:
    roles = _methods_by_role(config)
    rows = []
    for item in DIRECTIONAL:
        better = roles.get(item.better)
        worse = roles.get("standard")
        order = (worse, better) if item.lower_is_better else (better, worse)
        metric = f"{item.column}: {order[0]} - {order[1]}, per seed"
        claim = Claim(claim_id(model, item.name), SOURCE, f"{model}: {item.statement}", metric, 0.0, "above",
                      min_effect=item.min_effect)
        if better is None or worse is None:
            rows.append(judge(claim, [], comparable=False, reason=f"not in this config's sweep (needs a standard "
                              f"method and a {item.better} method)"))
            continue
        rows.append(judge(claim, _paired(runs, model, *order, item.column), comparable=True,
                          preconditions=[_learned(runs, config, model, order), _trained(history, model, order)],
                          reason=f"directional: tested on this config's data ({config['repeatability_study']['dataset']})"))
    return rows


class Literature(NamedTuple):
    name: str
    source: str
    statement: str
    claimed: float
    role: str
    measure: Callable[[pd.DataFrame, str, str, str], list[float]]  # (runs, model, method, standard) -> per seed
    setting: str  # where the number was measured


def _column(column: str) -> Callable[[pd.DataFrame, str, str, str], list[float]]:
    return lambda runs, model, method, standard: runs.loc[(runs["model"] == model) & (runs["method"] == method),
                                                          column].dropna().tolist()


def _consistency_gain(runs: pd.DataFrame, model: str, method: str, standard: str) -> list[float]:
    return _paired(runs, model, method, standard, "consistency")


CIFAR10C_BENCHMARK = "CIFAR-10-C's 15 benchmark corruptions with WRN-40-2"

LITERATURE = (
    Literature("augmix_cifar10c_error", "Hendrycks et al. 2020 (AugMix)",
               "AugMix WRN-40-2: CIFAR-10-C mean error 11.2% (standard 26.9%)", 0.112, "augmix",
               _column("mean_corruption_error"), CIFAR10C_BENCHMARK),
    Literature("standard_cifar10c_error", "Hendrycks et al. 2020 (AugMix)",
               "standard WRN-40-2: CIFAR-10-C mean error 26.9%", 0.269, "standard",
               _column("mean_corruption_error"), CIFAR10C_BENCHMARK),
    Literature("blurpool_consistency_gain", "Zhang 2019 (anti-aliasing)",
               "ResNet-50 with a binomial-4 BlurPool: consistency 89.20% -> 91.32% (+2.12 points)", 0.0212,
               "anti_aliased", _consistency_gain, "ImageNet"),
    Literature("standard_imagenet_p_mfr", "Hendrycks & Dietterich 2019 (ImageNet-P)",
               "ResNet-50: ImageNet-P mFR 58.0 (AlexNet = 100)", 0.580, "standard", _column("mfr"),
               "ImageNet-P, normalised by AlexNet"),
    Literature("blurpool_imagenet_p_mfr", "Zhang 2019 (anti-aliasing)", "anti-aliased ResNet-50: ImageNet-P mFR 51.2",
               0.512, "anti_aliased", _column("mfr"), "ImageNet-P, normalised by AlexNet"),
    Literature("augmix_imagenet_p_mfr", "Hendrycks et al. 2020 (AugMix)", "AugMix ResNet-50: ImageNet-P mFR 37.4",
               0.374, "augmix", _column("mfr"), "ImageNet-P, normalised by AlexNet"),
    Literature("one_pixel_translation_top1_change", "Azulay & Weiss 2019",
               "a 1-px translation changes the top-1 class of 5-15% of images (10% +- 50%)", 0.10, "standard",
               _column("embed_translate_top1_change"), "ImageNet CNNs"),
)


def _comparable(config: dict, model: str, setting: str) -> str:
    """Why a literature number does not apply here ('' when it does: CIFAR-10 with WRN-40-2, and
    for the CIFAR-10-C errors the 15 benchmark corruptions the AugMix paper averages)."""
    study = config["repeatability_study"]
    name = next(spec["name"] for spec in study["models"] if spec["id"] == model)
    if setting == CIFAR10C_BENCHMARK and study["dataset"] == "cifar10" and name == "wide_resnet40_2":
        return _corruption_set_difference(study)
    return f"measured on {study['dataset']} with {name}; the number is from {setting}"


def _corruption_set_difference(study: dict) -> str:
    """Why the study's CIFAR-10-C mean error is not over the 15 benchmark corruptions ('' when it is);
    the mean error averages every corruption the study measured (null or [] = all 19, as generated)."""
    measured = study["cifar10c"]["corruptions"] or CORRUPTIONS
    extra = [name for name in measured if name not in BENCHMARK_CORRUPTIONS]
    missing = [name for name in BENCHMARK_CORRUPTIONS if name not in measured]
    if not extra and not missing:
        return ""
    differences = ([f"with {', '.join(extra)}"] if extra else []) + ([f"without {', '.join(missing)}"] if missing
                                                                     else [])
    return (f"measured as the mean over {len(set(measured))} CIFAR-10-C corruptions ({'; '.join(differences)}); "
            "the number is the mean over the 15 benchmark corruptions")


def _literature_rows(runs: pd.DataFrame, config: dict, model: str) -> list[dict]:
    roles = _methods_by_role(config)
    rows = []
    for item in LITERATURE:
        claim = Claim(claim_id(model, item.name), item.source, f"{model}: {item.statement}", item.name, item.claimed,
                      "value", rel_tol=0.5 if item.name.startswith("one_pixel") else 0.05)
        method = roles.get(item.role)
        values = item.measure(runs, model, method, roles.get("standard")) if method is not None else []
        reason = _comparable(config, model, item.setting)
        if method is None:
            reason = f"not in this config's sweep (needs a {item.role} method)"
        rows.append(judge(claim, values, comparable=not reason, reason=reason))
    return rows


def claims_table(runs: pd.DataFrame, history: pd.DataFrame, config: dict) -> pd.DataFrame:
    """Every claim of `LITERATURE` and `DIRECTIONAL`, per model of the study; ``history``: the
    runs' per-epoch training histories (for the directional claims' convergence)."""
    rows = []
    for spec in config["repeatability_study"]["models"]:
        rows += _literature_rows(runs, config, spec["id"]) + _directional_rows(runs, history, config, spec["id"])
    return verdict_table(rows)

