"""The repeatability study's per-run summary and claims on hand-built tables, against answers
computed by hand: FR/mFR and CE/mCE relative to the baseline of the same seed, and the verdicts
of the directional and CIFAR-10-C literature claims."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from robustflow.claims import NOT_TESTABLE
from robustflow.corruption_names import BENCHMARK_CORRUPTIONS
from robustflow.studies.repeatability.claims import DIRECTIONAL, claims_table, run_summary

BASE, FIX = "cnn-standard", "cnn-augmix"

# ----------------------------------------------------------------------------- run_summary

# (seed, variant) -> perturbation -> flip probability. The baseline never flips on brightness at
# seed 0 (no rate there); the seeds' baselines differ, so dividing by the other seed's, or
# inverting the ratio, gives other numbers. speckle_noise is not scored: it must not count.
FLIPS = {
    (0, BASE): {"gaussian_noise": 0.2, "rotate": 0.1, "brightness": 0.0, "speckle_noise": 0.9},
    (0, FIX): {"gaussian_noise": 0.1, "rotate": 0.3, "brightness": 0.05, "speckle_noise": 0.9},
    (1, BASE): {"gaussian_noise": 0.4, "rotate": 0.5, "brightness": 0.1, "speckle_noise": 0.9},
    (1, FIX): {"gaussian_noise": 0.1, "rotate": 0.2, "brightness": 0.05, "speckle_noise": 0.1},
}
NOISE = {"gaussian_noise", "speckle_noise"}
# (seed, variant) -> clean error, then corruption -> errors at severities 1 and 2.
ERRORS = {
    (0, BASE): (0.1, {"contrast": (0.2, 0.4), "fog": (0.3, 0.5)}),
    (0, FIX): (0.2, {"contrast": (0.3, 0.3), "fog": (0.2, 0.2)}),
    (1, BASE): (0.1, {"contrast": (0.1, 0.3), "fog": (0.4, 0.6)}),
    (1, FIX): (0.2, {"contrast": (0.3, 0.3), "fog": (0.2, 0.2)}),
}


def _keys(seed: int, variant: str) -> dict:
    return {"run": f"{variant}-s{seed}", "variant": variant, "model": "cnn", "method": variant.split("-")[1],
            "seed": seed}


def _tables() -> dict[str, pd.DataFrame]:
    perturbations = [{**_keys(seed, variant), "perturbation": name, "flip_probability": flip,
                      "top5_distance": 10 * flip, "noise": name in NOISE}
                     for (seed, variant), flips in FLIPS.items() for name, flip in flips.items()]
    corruptions = []
    for (seed, variant), (clean, by_corruption) in ERRORS.items():
        corruptions.append({**_keys(seed, variant), "corruption": "clean", "severity": 0, "error": clean,
                            "top1": 1 - clean})
        corruptions += [{**_keys(seed, variant), "corruption": name, "severity": severity, "error": error,
                         "top1": 1 - error}
                        for name, errors in by_corruption.items() for severity, error in enumerate(errors, 1)]
    shifts = [{**_keys(seed, variant), "protocol": protocol, "consistency": 0.9, "top1_change": 0.1,
               "top_class_probability_change": 0.05} for seed, variant in FLIPS
              for protocol in ("random_shift", "embed_translate")]
    predictions = [{"variant": variant, "seed": seed, "image": image, "label": image % 2, "prediction": image % 2}
                   for seed, variant in FLIPS for image in range(4)]
    return {"perturbations": pd.DataFrame(perturbations), "corruptions": pd.DataFrame(corruptions),
            "shifts": pd.DataFrame(shifts), "predictions": pd.DataFrame(predictions)}


def test_flip_rates_divide_by_the_baseline_of_the_same_seed():
    runs, perturbations, _ = run_summary(_tables(), BASE)
    rates = perturbations.set_index(["run", "perturbation"])["flip_rate"]
    assert rates[("cnn-augmix-s0", "gaussian_noise")] == pytest.approx(0.1 / 0.2)
    assert rates[("cnn-augmix-s0", "rotate")] == pytest.approx(0.3 / 0.1)
    assert math.isnan(rates[("cnn-augmix-s0", "brightness")])  # the baseline's is 0: undefined
    assert rates[("cnn-augmix-s1", "gaussian_noise")] == pytest.approx(0.1 / 0.4)
    assert rates[("cnn-augmix-s1", "rotate")] == pytest.approx(0.2 / 0.5)
    assert rates[("cnn-augmix-s1", "brightness")] == pytest.approx(0.05 / 0.1)
    runs = runs.set_index("run")
    # mFR: the mean over the scored perturbations with a rate (speckle_noise is not scored).
    assert runs.loc["cnn-augmix-s0", "mfr"] == pytest.approx((0.5 + 3.0) / 2)
    assert runs.loc["cnn-augmix-s1", "mfr"] == pytest.approx((0.25 + 0.4 + 0.5) / 3)
    assert runs.loc["cnn-augmix-s0", "n_rated"] == 2 and runs.loc["cnn-augmix-s1", "n_rated"] == 3
    assert runs.loc["cnn-standard-s0", "mfr"] == pytest.approx(1.0)
    assert runs.loc["cnn-augmix-s1", "mt5d"] == pytest.approx((0.25 + 0.4 + 0.5) / 3)  # 10x both: same ratios
    assert runs.loc["cnn-augmix-s0", "mean_flip_probability"] == pytest.approx((0.1 + 0.3 + 0.05) / 3)
    assert runs.loc["cnn-augmix-s1", "noise_flip_probability"] == pytest.approx(0.1)  # scored noise only


def test_corruption_errors_are_relative_to_the_baseline_of_the_same_seed():
    runs = run_summary(_tables(), BASE)[0].set_index("run")
    fix0, fix1 = runs.loc["cnn-augmix-s0"], runs.loc["cnn-augmix-s1"]
    # CE(c) = sum of the fix's errors over severities / the baseline's; mCE the mean over corruptions.
    assert fix0["mce"] == pytest.approx((0.6 / 0.6 + 0.4 / 0.8) / 2)
    assert fix1["mce"] == pytest.approx((0.6 / 0.4 + 0.4 / 1.0) / 2)
    # relative CE: errors above each model's own clean error.
    assert fix0["relative_mce"] == pytest.approx((0.2 / 0.4 + 0.0 / 0.6) / 2)
    assert fix1["relative_mce"] == pytest.approx((0.2 / 0.2 + 0.0 / 0.8) / 2)
    assert runs.loc["cnn-standard-s1", "mce"] == pytest.approx(1.0)
    # the unnormalised mean over every measured cell, and the clean accuracy
    assert fix0["mean_corruption_error"] == pytest.approx((0.3 + 0.3 + 0.2 + 0.2) / 4)
    assert runs.loc["cnn-standard-s1", "mean_corruption_error"] == pytest.approx((0.1 + 0.3 + 0.4 + 0.6) / 4)
    assert fix1["clean_top1"] == pytest.approx(0.8)


# ----------------------------------------------------------------------------- claims_table

METHODS = [{"id": "standard", "objective": "standard", "blur_filter": 0},
           {"id": "anti_aliased", "objective": "standard", "blur_filter": 3},
           {"id": "augmix", "objective": "augmix", "blur_filter": 0},
           {"id": "stability", "objective": "stability", "blur_filter": 0}]


def study_config(dataset: str = "digits", model: str = "small_cnn", corruptions=None, **study) -> dict:
    """The keys the aggregate's claims read (as the aggregate's job config gives them)."""
    return {"repeatability_study": {"dataset": dataset, "models": [{"id": "m", "name": model}],
                                    "methods": METHODS, "baseline": "m-standard",
                                    "cifar10c": {"corruptions": corruptions}, **study}}


# Each fix's edge over standard per seed (3 seeds): a few times its claim's min_effect, tight
# enough that the 95% t-interval (t = 4.30 at n = 3) clears 0.
EDGE = {"consistency": (0.05, 0.06, 0.055), "mean_corruption_error": (0.05, 0.06, 0.055),
        "mean_flip_probability": (0.010, 0.012, 0.011), "noise_flip_probability": (0.010, 0.012, 0.011)}
STANDARD = {"consistency": 0.8, "mean_corruption_error": 0.3, "mean_flip_probability": 0.05,
            "noise_flip_probability": 0.05, "mfr": 1.0, "embed_translate_top1_change": 0.1}
FIX_COLUMN = {"anti_aliased": "consistency", "augmix": ("mean_corruption_error", "mean_flip_probability"),
              "stability": "noise_flip_probability"}


def claim_runs(sign: float = 1.0, top1: dict | None = None) -> pd.DataFrame:
    """Runs where each fix beats standard on its claim's column by EDGE (``sign`` -1: loses),
    with clean top-1 0.9 unless ``top1`` names another for a method."""
    rows = []
    for seed in range(3):
        for method in ("standard", "anti_aliased", "augmix", "stability"):
            values = dict(STANDARD)
            columns = FIX_COLUMN.get(method, ())
            for column in (columns,) if isinstance(columns, str) else columns:
                raises = column == "consistency"  # the others are better when lower
                values[column] += sign * EDGE[column][seed] * (1 if raises else -1)
            rows.append({"run": f"m-{method}-s{seed}", "variant": f"m-{method}", "model": "m", "method": method,
                         "seed": seed, "clean_top1": (top1 or {}).get(method, 0.9), **values})
    return pd.DataFrame(rows)


def histories(runs: pd.DataFrame, still_rising: tuple[str, ...] = ()) -> pd.DataFrame:
    """Ten epochs per run: validation top-1 flat at the end (converged), or still climbing by
    0.05 an epoch for the methods in ``still_rising``."""
    return pd.DataFrame([{**row[["run", "model", "method", "seed"]].to_dict(), "epoch": epoch,
                          "val_top1": 0.5 + 0.05 * epoch if row["method"] in still_rising else 0.9}
                         for _, row in runs.iterrows() for epoch in range(1, 11)])


def judged(runs: pd.DataFrame, config: dict, still_rising: tuple[str, ...] = ()) -> pd.DataFrame:
    return claims_table(runs, histories(runs, still_rising), config)


def directional(table: pd.DataFrame) -> pd.DataFrame:
    return table.set_index("claim_id").loc[[f"m_{item.name}" for item in DIRECTIONAL]]


def test_fixes_that_help_on_every_seed_reproduce_with_the_order_named():
    rows = directional(judged(claim_runs(), study_config()))
    assert rows["verdict"].eq("reproduced").all(), rows["reason"].tolist()
    assert rows["n"].eq(3).all()
    assert rows["metric"].tolist() == [
        "consistency: anti_aliased - standard, per seed",
        "mean_corruption_error: standard - augmix, per seed",
        "mean_flip_probability: standard - augmix, per seed",
        "noise_flip_probability: standard - stability, per seed"]
    assert rows["measured_mean"].tolist() == pytest.approx([0.055, 0.055, 0.011, 0.011])


def test_fixes_that_hurt_on_every_seed_are_not_reproduced():
    rows = directional(judged(claim_runs(sign=-1.0), study_config()))
    assert rows["verdict"].eq("not reproduced").all(), rows["reason"].tolist()
    assert rows["measured_mean"].tolist() == pytest.approx([-0.055, -0.055, -0.011, -0.011])


def test_a_collapsed_fix_cannot_test_its_claims():
    # AugMix's runs at chance (0.1 of 10 classes): never flipping, they would "win".
    rows = directional(judged(claim_runs(top1={"augmix": 0.1}), study_config()))
    collapsed = rows.loc[["m_augmix_lowers_corruption_error", "m_augmix_lowers_flip_probability"]]
    assert collapsed["verdict"].eq(NOT_TESTABLE).all()
    assert collapsed["reason"].str.contains("augmix runs .* no better than chance", regex=True).all()
    others = rows.loc[["m_anti_aliasing_raises_consistency", "m_stability_lowers_noise_flip_probability"]]
    assert others["verdict"].eq("reproduced").all()


def test_a_collapsed_standard_arm_cannot_test_any_directional_claim():
    rows = directional(judged(claim_runs(top1={"standard": 0.15}), study_config()))
    assert rows["verdict"].eq(NOT_TESTABLE).all()
    assert rows["reason"].str.contains("no better than chance").all()


def test_a_fix_still_learning_cannot_test_its_claims():
    rows = directional(judged(claim_runs(), study_config(), still_rising=("stability",)))
    rising = rows.loc["m_stability_lowers_noise_flip_probability"]
    assert rising["verdict"] == NOT_TESTABLE and "not converged: mean val_top1" in rising["reason"]
    assert "m-stability-s0" in rising["reason"]
    assert rows.drop("m_stability_lowers_noise_flip_probability")["verdict"].eq("reproduced").all()


CIFAR10C_CLAIMS = ["m_augmix_cifar10c_error", "m_standard_cifar10c_error"]


def cifar10c_rows(config: dict) -> pd.DataFrame:
    runs = claim_runs()
    runs.loc[runs["method"] == "augmix", "mean_corruption_error"] = [0.110, 0.112, 0.114]
    runs.loc[runs["method"] == "standard", "mean_corruption_error"] = [0.268, 0.269, 0.270]
    return judged(runs, config).set_index("claim_id").loc[CIFAR10C_CLAIMS]


def test_cifar10c_errors_compare_with_the_paper_only_on_its_15_corruptions():
    benchmark = cifar10c_rows(study_config("cifar10", "wide_resnet40_2", list(reversed(BENCHMARK_CORRUPTIONS))))
    assert benchmark["verdict"].eq("reproduced").all(), benchmark["reason"].tolist()


@pytest.mark.parametrize("corruptions, named", [
    (None, "19 CIFAR-10-C corruptions (with speckle_noise, gaussian_blur, spatter, saturate)"),
    ([*BENCHMARK_CORRUPTIONS[:-1], "saturate"], "with saturate; without jpeg_compression"),
    (list(BENCHMARK_CORRUPTIONS[:8]), "8 CIFAR-10-C corruptions (without frost, fog, "),
])
def test_cifar10c_errors_over_another_set_are_not_comparable(corruptions, named):
    rows = cifar10c_rows(study_config("cifar10", "wide_resnet40_2", corruptions))
    assert rows["verdict"].eq("not comparable").all()
    assert rows["reason"].str.contains(named, regex=False).all(), rows["reason"].tolist()
    assert rows["measured_mean"].tolist() == pytest.approx([0.112, 0.269])  # shown beside the claim


def test_cifar10c_errors_on_other_data_are_not_comparable():
    digits = cifar10c_rows(study_config("digits", "wide_resnet40_2", list(BENCHMARK_CORRUPTIONS)))
    assert digits["verdict"].eq("not comparable").all()
    assert digits["reason"].str.startswith("measured on digits with wide_resnet40_2").all()


def test_the_paper_configs_aggregate_compares_its_cifar10c_errors_with_the_papers():
    """config/paper.yaml measures WRN-40-2 on CIFAR-10 over the 15 benchmark corruptions: the
    aggregate's job config carries that set, so the AugMix numbers are judged, not set aside."""
    from pathlib import Path

    import yaml

    from robustflow.config import load_schema, validate_config
    from robustflow.studies.repeatability import claims, plan

    repo = Path(__file__).resolve().parents[1]
    paper = validate_config(yaml.safe_load((repo / "config" / "paper.yaml").read_text()),
                            load_schema(repo / "config" / "schema.yaml"))
    aggregate = plan.job_config(paper, "aggregate")
    assert claims._comparable(aggregate, "wrn40_2", claims.CIFAR10C_BENCHMARK) == ""
    assert claims._comparable(aggregate, "resnet18", claims.CIFAR10C_BENCHMARK).startswith("measured on cifar10 with")
