"""Claims of the source documents and the rule that judges them against measurements.

A ``Claim`` is one number a source states; ``judge`` compares it with repeated measurements
(one per seed) and returns a verdict row. The verdict rule, in order:

1. ``"not comparable"`` when the caller says the measurement does not test the claim
   (``comparable=False``, e.g. other data or another SNR definition); a reason is required.
2. ``"inconclusive"`` when fewer than 2 finite measurements exist (no interval can be formed).
3. With ``mean, [lo, hi]`` the mean and 95% Student-t interval of the finite measurements:

   - kinds ``"value"``, ``"ratio"``, ``"relative_change"``: ``"reproduced"`` when the claimed
     value lies in ``[lo, hi]`` or within ``rel_tol`` of the mean
     (``|claimed - mean| <= rel_tol * |mean|``), else ``"not reproduced"``. The tolerance
     admits claims that are close in size but whose seeds agree so tightly that the interval
     is narrow. Relative changes are fractions (-0.104 means -10.4%).
   - ``"at_least"``: ``"reproduced"`` when ``lo >= claimed`` (the whole interval is on the
     claimed side), else ``"not reproduced"``; ``"at_most"``: when ``hi <= claimed``.
   - ``"above"``: ``"reproduced"`` when ``lo > claimed``, strictly: the kind for "X raises /
     shrinks / beats Y" claims on paired differences, where differences that are all exactly
     0 (a zero-width interval at 0) show no effect and must not count as one.

``rel_tol`` is 0.25 unless the claim sets its own (accuracies use a tighter one, since 25% of
an accuracy is the difference between a perfect and a poor classifier).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from robustflow.stats import mean_ci

KINDS = ("value", "ratio", "relative_change", "at_least", "at_most", "above")
VERDICTS = ("reproduced", "not reproduced", "inconclusive", "not comparable")
COLUMNS = (
    "claim_id",
    "source",
    "statement",
    "metric",
    "claimed",
    "measured_mean",
    "ci_low",
    "ci_high",
    "n",
    "verdict",
    "reason",
)


@dataclass(frozen=True)
class Claim:
    """One number stated by a source, and how it is to be compared (``kind``, see module doc)."""

    claim_id: str
    source: str
    statement: str
    metric: str
    claimed: float
    kind: str
    rel_tol: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"claim {self.claim_id!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if not math.isfinite(self.claimed):
            raise ValueError(f"claim {self.claim_id!r}: claimed must be finite, got {self.claimed!r}")
        if self.rel_tol is not None and not self.rel_tol >= 0:
            raise ValueError(f"claim {self.claim_id!r}: rel_tol must be >= 0, got {self.rel_tol!r}")


def claim_id(*parts: object) -> str:
    """The id of a claim from its parts (a model or variant, then what is claimed), joined by '_'."""
    return "_".join(str(part) for part in parts if str(part))


def _fmt(value: float) -> str:
    return f"{value:.4g}"


# One-sided kinds: (the interval end that must clear the claimed value, the test, how it reads).
_ONE_SIDED = {
    "at_least": (0, lambda end, claimed: end >= claimed, "at or above claimed"),
    "above": (0, lambda end, claimed: end > claimed, "strictly above"),
    "at_most": (1, lambda end, claimed: end <= claimed, "at or below claimed"),
}


def _summary(values: list[float]) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the finite values: the 95% t-interval needs two of them."""
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) >= 2:
        mean, lo, hi = (float(v) for v in mean_ci(finite, confidence=0.95))
        return mean, lo, hi, len(finite)
    return (finite[0] if finite else math.nan), math.nan, math.nan, len(finite)


def _compare(claim: Claim, mean: float, lo: float, hi: float, interval: str, tolerance: float) -> tuple[str, str]:
    """(verdict, explanation) of a comparable claim with at least two measurements."""
    claimed = float(claim.claimed)
    if claim.kind in _ONE_SIDED:
        end, test, reading = _ONE_SIDED[claim.kind]
        ok = test((lo, hi)[end], claimed)
        side = "lies" if ok else "does not lie entirely"
        return ("reproduced" if ok else "not reproduced"), f"{interval} {side} {reading} {_fmt(claimed)}"
    if lo <= claimed <= hi:
        return "reproduced", f"claimed {_fmt(claimed)} lies inside the interval; {interval}"
    if abs(claimed - mean) <= tolerance * abs(mean):
        return "reproduced", f"claimed {_fmt(claimed)} is within {tolerance:.0%} of the mean; {interval}"
    return "not reproduced", (f"claimed {_fmt(claimed)} lies outside the interval and more than "
                              f"{tolerance:.0%} from the mean; {interval}")


def judge(
    claim: Claim,
    measured: Sequence[float],
    *,
    comparable: bool,
    reason: str = "",
    rel_tol: float = 0.25,
) -> dict:
    """Verdict row for ``claim`` given one measurement per run; the rule is in the module doc.

    ``reason`` is required when ``comparable`` is False; otherwise it is prepended to the
    generated explanation (e.g. to name the SNR definition used).
    """
    if not comparable and not reason.strip():
        raise ValueError(f"claim {claim.claim_id!r}: a reason is required when comparable=False")
    tolerance = claim.rel_tol if claim.rel_tol is not None else rel_tol
    if not tolerance >= 0:
        raise ValueError(f"rel_tol must be >= 0, got {rel_tol!r}")
    values = [float(v) for v in measured]
    mean, lo, hi, n = _summary(values)
    interval = f"measured mean {_fmt(mean)}, 95% CI [{_fmt(lo)}, {_fmt(hi)}] (n={n})"
    if not comparable:
        verdict, explanation = "not comparable", reason.strip()
    elif n < 2:
        verdict, explanation = "inconclusive", f"fewer than 2 finite measurements (n={n} of {len(values)})"
    else:
        verdict, explanation = _compare(claim, mean, lo, hi, interval, tolerance)
    if comparable and reason.strip():
        explanation = f"{reason.strip()}; {explanation}"
    return {"claim_id": claim.claim_id, "source": claim.source, "statement": claim.statement,
            "metric": claim.metric, "claimed": float(claim.claimed), "measured_mean": mean, "ci_low": lo,
            "ci_high": hi, "n": n, "verdict": verdict, "reason": explanation}


def verdict_table(rows: Iterable[dict]) -> pd.DataFrame:
    """Verdict rows from ``judge`` as a DataFrame with the standard column order."""
    rows = list(rows)
    for row in rows:
        missing = [c for c in COLUMNS if c not in row]
        if missing:
            raise ValueError(f"claims row {row.get('claim_id', '?')!r} lacks columns {missing}")
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _cell(value) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else _fmt(value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def claims_markdown(df: pd.DataFrame) -> str:
    """A GitHub-style markdown table of ``df`` (floats to 4 significant digits, nan as n/a)."""
    header = "| " + " | ".join(_cell(str(c)) for c in df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"
