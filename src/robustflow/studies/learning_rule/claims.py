"""Source 000's learning-rule claims, each defined once with the cells it needs and its
per-seed measurement, and the verdicts.

The source's magnitudes come from 50 KITTI road images; on other data they are "not
comparable", while the directional claims are judged on any task. Where ``output_ratio`` is nan
(signed outputs, e.g. SGD's), the reason says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import pandas as pd

from robustflow.claims import Claim, claim_id, judge, verdict_table
from robustflow.studies.learning_rule.plan import cell_id, constraint_id

SOURCE = "source 000"
RATIO_SNR = "output_ratio (mean z_target / mean z_other, non-negative outputs)"
FREE = ("hebbian", None)
SGD = ("sgd_mse", None)
TIGHT = (0.0, 0.5)


class LearningRuleClaim(NamedTuple):
    claim: Claim
    needs: tuple[tuple[str, tuple[float, float] | None], ...]  # (method, constraint) cells it reads
    measure: Callable[[pd.DataFrame], pd.Series]  # per-seed values from the metrics table
    directional: bool = False


def _per_seed(metrics: pd.DataFrame, method: str, constraint, metric: str) -> pd.Series:
    rows = metrics[(metrics["method"] == method) & (metrics["constraint"] == constraint_id(constraint))]
    return rows.set_index("seed")[metric]


def _metric(method: str, constraint, metric: str) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda metrics: _per_seed(metrics, method, constraint, metric)


def _hebbian_over_sgd(metrics: pd.DataFrame) -> pd.Series:
    return _per_seed(metrics, *FREE, "output_ratio") / _per_seed(metrics, *SGD, "output_ratio")


def _margin_snr_difference(metrics: pd.DataFrame) -> pd.Series:
    return _per_seed(metrics, *FREE, "margin_snr") - _per_seed(metrics, *SGD, "margin_snr")


def _relative_change(constraint: tuple[float, float]) -> Callable[[pd.DataFrame], pd.Series]:
    def measure(metrics: pd.DataFrame) -> pd.Series:
        free = _per_seed(metrics, *FREE, "output_ratio")
        return (_per_seed(metrics, "hebbian", constraint, "output_ratio") - free) / free
    return measure


def _constraint_claims(lo: float, hi: float, snr: float, change: float, label: str) -> tuple[LearningRuleClaim, ...]:
    """SNR under a weight range and its stated relative change (the source's rounded figure)."""
    name = f"{lo:g}_{hi:g}".replace(".", "p")
    needs = (FREE, ("hebbian", (lo, hi)))
    return (
        LearningRuleClaim(Claim(claim_id("hebbian_constraint", name, "snr"), SOURCE,
                                f"Hebbian readout with weights clipped to [{lo:g}, {hi:g}] ({label}) has SNR {snr}",
                                RATIO_SNR, snr, "value"),
                          needs, _metric("hebbian", (lo, hi), "output_ratio")),
        LearningRuleClaim(Claim(claim_id("hebbian_constraint", name, "change"), SOURCE,
                                f"Clipping Hebbian weights to [{lo:g}, {hi:g}] changes SNR by "
                                f"{change:+.1%} vs unconstrained",
                                "relative change of output_ratio vs unconstrained Hebbian", change, "relative_change"),
                          needs, _relative_change((lo, hi))),
    )


CLAIMS: tuple[LearningRuleClaim, ...] = (
    LearningRuleClaim(Claim("hebbian_snr", SOURCE, "Unconstrained Hebbian readout has SNR 274.17", RATIO_SNR,
                            274.17, "value"), (FREE,), _metric(*FREE, "output_ratio")),
    LearningRuleClaim(Claim("sgd_mse_snr", SOURCE, "SGD (MSE) readout has SNR 2.05", RATIO_SNR, 2.05, "value"),
                      (SGD,), _metric(*SGD, "output_ratio")),
    LearningRuleClaim(Claim("hebbian_vs_sgd_snr_ratio", SOURCE,
                            "Hebbian learning gives 133x the SNR of SGD (both unconstrained)",
                            "output_ratio hebbian / output_ratio sgd_mse", 133.0, "ratio"),
                      (FREE, SGD), _hebbian_over_sgd),
    LearningRuleClaim(Claim("sgd_mse_accuracy", SOURCE, "SGD (MSE) readout reaches 38% accuracy (its weights explode)",
                            "accuracy", 0.38, "value", proportion=True), (SGD,), _metric(*SGD, "accuracy")),
    LearningRuleClaim(Claim("hebbian_accuracy", SOURCE, "Unconstrained Hebbian readout reaches 100% accuracy",
                            "accuracy", 1.0, "value", rel_tol=0.02, proportion=True), (FREE,),
                      _metric(*FREE, "accuracy")),
    *_constraint_claims(0.0, 2.0, 245.61, -0.104, "loose"),
    *_constraint_claims(0.0, 1.0, 169.30, -0.383, "physical"),
    *_constraint_claims(0.0, 0.5, 93.23, -0.660, "tight"),
    LearningRuleClaim(Claim("hebbian_vs_sgd_snr_higher", SOURCE,
                            "Hebbian learning gives a higher SNR than SGD (MSE), both unconstrained",
                            "output_ratio hebbian / output_ratio sgd_mse, per seed, unconstrained", 1.0, "at_least"),
                      (FREE, SGD), _hebbian_over_sgd, directional=True),
    LearningRuleClaim(Claim("hebbian_vs_sgd_margin_snr_higher", SOURCE,
                            "Hebbian learning gives a higher SNR than SGD (MSE), both unconstrained, on the "
                            "scale-free margin SNR",
                            "margin_snr hebbian - margin_snr sgd_mse, per seed, unconstrained", 0.0, "at_least"),
                      (FREE, SGD), _margin_snr_difference, directional=True),
    LearningRuleClaim(Claim("hebbian_tight_constraint_lowers_snr", SOURCE,
                            "Tighter constraints lower the SNR: clipping Hebbian weights to [0, 0.5] does not raise it",
                            "relative change of output_ratio [0, 0.5] vs unconstrained Hebbian, per seed", 0.0,
                            "at_most"),
                      (FREE, ("hebbian", TIGHT)), _relative_change(TIGHT), directional=True),
    LearningRuleClaim(Claim("sgd_mse_fails_to_learn", SOURCE,
                            "SGD (MSE) fails to learn (38% accuracy): no better than chance (0.5 for two balanced "
                            "classes)", "accuracy sgd_mse, unconstrained, lr picked on validation", 0.5, "at_most",
                            proportion=True),
                      (SGD,), _metric(*SGD, "accuracy"), directional=True),
)


def claims_table(metrics: pd.DataFrame, *, dataset_label: str, comparable: bool) -> pd.DataFrame:
    """Every claim of `CLAIMS` judged per seed on the cells' metrics table."""
    cells = set(zip(metrics["method"], metrics["constraint"]))
    not_comparable = f"embedded default ({dataset_label}), not the source's KITTI road images"
    rows = []
    for item in CLAIMS:
        missing = [cell_id(m, c) for m, c in item.needs if (m, constraint_id(c)) not in cells]
        if missing:
            rows.append(judge(item.claim, [], comparable=False,
                              reason=f"not in this config's study: needs cells {', '.join(missing)}"))
            continue
        values = item.measure(metrics)
        is_comparable = comparable or item.directional
        notes = [] if is_comparable else [not_comparable]
        if any(method.startswith("sgd") for method, _ in item.needs):
            notes.append("SGD lr picked per seed on a validation split from sgd_lrs")
        if "output_ratio" in item.claim.metric and values.isna().any():
            notes.append(
                f"output_ratio undefined (nan) for {int(values.isna().sum())} of {len(values)} seeds: "
                "the readout's outputs are signed, and the source's ratio needs non-negative outputs"
            )
        rows.append(judge(item.claim, values.tolist(), comparable=is_comparable, reason="; ".join(notes)))
    return verdict_table(rows)
