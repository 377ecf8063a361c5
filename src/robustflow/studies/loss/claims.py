"""Source 000's loss claims, each defined once with its measurement, and the verdicts.

Magnitudes are comparable only on CIFAR-10 (the source's README setting); the embedded default
tests the direction and the scale-free margin SNR only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import pandas as pd

from robustflow.claims import Claim, judge, verdict_table

SOURCE = "source 000"
SNR_RATIO = "margin_snr ratio {} / {}, clean test"
NOISE = "gaussian"  # the noise type every measurement reads (level 0 of it is the clean test set)


class LossClaim(NamedTuple):
    claim: Claim
    needs: tuple[str, ...]  # variants of the sweep the measurement reads
    measure: Callable[[pd.DataFrame], pd.Series]  # per-seed values from the noise table
    directional: bool = False  # tests a direction, so any dataset can test it
    level: float = 0.0  # the noise level it reads (must be in the config's levels)


def reported_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The weights a variant stands for: EMA weights for EMA variants, raw otherwise."""
    return frame[frame["weights"] == frame["ema"].map({True: "ema", False: "raw"})]


def _per_seed(noise: pd.DataFrame, variant: str, metric: str, level: float) -> pd.Series:
    rows = reported_rows(noise)
    rows = rows[(rows["variant"] == variant) & (rows["noise"] == NOISE) & (rows["level"] == level)]
    return rows.set_index("seed")[metric]


def _snr_ratio(numerator: str, denominator: str) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda noise: (_per_seed(noise, numerator, "margin_snr", 0.0)
                          / _per_seed(noise, denominator, "margin_snr", 0.0)).dropna()


def _top1_at(variant: str, level: float) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda noise: _per_seed(noise, variant, "top1", level)


def _ema_gain(variant: str, level: float) -> Callable[[pd.DataFrame], pd.Series]:
    def measure(noise: pd.DataFrame) -> pd.Series:
        rows = noise[(noise["variant"] == variant) & (noise["noise"] == NOISE) & (noise["level"] == level)]
        by_weights = rows.pivot_table(index="seed", columns="weights", values="top1")
        return (by_weights["ema"] - by_weights["raw"]).dropna()
    return measure


CLAIMS = (
    LossClaim(Claim("margin_vs_ce_snr_ratio", SOURCE, "margin loss (lambda=10) has 375x the SNR of CE",
                    SNR_RATIO.format("margin-lam10", "ce"), 375.0, "ratio"),
              ("margin-lam10", "ce"), _snr_ratio("margin-lam10", "ce")),
    LossClaim(Claim("margin_vs_ce_snr_higher", SOURCE, "margin loss (lambda=10) raises the SNR over CE",
                    SNR_RATIO.format("margin-lam10", "ce"), 1.0, "at_least"),
              ("margin-lam10", "ce"), _snr_ratio("margin-lam10", "ce"), directional=True),
    LossClaim(Claim("lambda_10_vs_1_snr_ratio", SOURCE, "lambda 1 -> ~75, lambda 10 -> ~2400 (32x)",
                    SNR_RATIO.format("margin-lam10", "margin-lam1"), 2400 / 75, "ratio"),
              ("margin-lam10", "margin-lam1"), _snr_ratio("margin-lam10", "margin-lam1")),
    LossClaim(Claim("margin_accuracy_at_gaussian_0.5", SOURCE, "margin model keeps >85% accuracy at 50% Gaussian noise",
                    "top1 margin-lam10, gaussian 0.5", 0.85, "at_least", proportion=True),
              ("margin-lam10",), _top1_at("margin-lam10", 0.5), level=0.5),
    LossClaim(Claim("ce_accuracy_at_gaussian_0.5", SOURCE, "baseline drops below 70% accuracy at 50% Gaussian noise",
                    "top1 ce, gaussian 0.5", 0.70, "at_most", proportion=True),
              ("ce",), _top1_at("ce", 0.5), level=0.5),
    LossClaim(Claim("ema_gain_under_noise", SOURCE, "EMA gives +5% accuracy under noise",
                    "top1 ema - raw weights of ce-ema, gaussian 0.5", 0.05, "value"),
              ("ce-ema",), _ema_gain("ce-ema", 0.5), level=0.5),
)


def claims_table(noise: pd.DataFrame, config: dict) -> pd.DataFrame:
    """Every claim of `CLAIMS` judged on the per-seed measurements of the noise table."""
    dataset = config["loss_study"]["dataset"]
    reason = "" if dataset == "cifar10" else f"embedded default ({dataset}), not the source's CIFAR-10 setting"
    variants, levels, types = set(noise["variant"]), set(noise["level"]), set(noise["noise"])
    rows = []
    for item in CLAIMS:
        missing = [f"variant {name}" for name in item.needs if name not in variants]
        if item.level not in levels:
            missing.append(f"noise level {item.level:g}")
        if NOISE not in types:  # every claim reads the Gaussian rows
            missing.append(f"{NOISE} noise")
        if missing:
            rows.append(judge(item.claim, [], comparable=False,
                              reason=f"not in this config's sweep: needs {', '.join(missing)}"))
            continue
        comparable = not reason or item.directional
        rows.append(judge(item.claim, item.measure(noise).tolist(), comparable=comparable,
                          reason="" if comparable else reason))
    return verdict_table(rows)
