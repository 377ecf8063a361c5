"""Claims of the source documents and the rule that judges them against measurements.

A ``Claim`` is one number a source states; ``judge`` compares it with repeated measurements
(one per seed) and returns a verdict row. The verdict rule, in order:

1. ``"not comparable"`` when the caller says the measurement does not test the claim
   (``comparable=False``, e.g. other data or another SNR definition); a reason is required.
2. ``"inconclusive"`` when fewer than 2 finite measurements exist (no interval can be formed).
3. ``"not testable at this scale"`` when a `Precondition` the caller measured fails (the
   models did not converge, the source-task model is no better than chance): the config
   could not have shown the effect, so neither verdict would mean anything.
4. With ``mean, [lo, hi]`` the mean and 95% Student-t interval of the finite measurements:

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

   A one-sided claim with a ``min_effect`` (the smallest effect the claim is about) that
   would be ``"not reproduced"`` while its interval still reaches ``claimed + min_effect``
   (``"at_least"``, ``"above"``; ``claimed - min_effect`` for ``"at_most"``) is
   ``"not testable at this scale"`` instead: the interval is too wide to tell the effect from
   none. An interval that excludes such an effect stays ``"not reproduced"``.

``rel_tol`` is 0.25 unless the claim sets its own (accuracies use a tighter one, since 25% of
an accuracy is the difference between a perfect and a poor classifier).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from robustflow.stats import mean_ci, proportion_ci

KINDS = ("value", "ratio", "relative_change", "at_least", "at_most", "above")
NOT_TESTABLE = "not testable at this scale"
VERDICTS = ("reproduced", "not reproduced", "inconclusive", "not comparable", NOT_TESTABLE)
# A run has converged when its validation top-1 rose by at most this over its last epochs
# (`converged`): 0.02 is ~5 of the digits' 270 validation images.
CONVERGENCE_TOLERANCE = 0.02
CONVERGENCE_WINDOW = 0.2  # the last epochs checked: this fraction of the run, at least two
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
    min_effect: float | None = None
    proportion: bool = False  # the measurements lie in [0, 1] (an accuracy): the interval is clipped to it

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"claim {self.claim_id!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if not math.isfinite(self.claimed):
            raise ValueError(f"claim {self.claim_id!r}: claimed must be finite, got {self.claimed!r}")
        if self.rel_tol is not None and not self.rel_tol >= 0:
            raise ValueError(f"claim {self.claim_id!r}: rel_tol must be >= 0, got {self.rel_tol!r}")
        if self.min_effect is not None and (self.kind not in _ONE_SIDED or not self.min_effect > 0):
            raise ValueError(f"claim {self.claim_id!r}: min_effect must be > 0 and only on a one-sided kind "
                             f"{tuple(_ONE_SIDED)}, got {self.min_effect!r} for kind {self.kind!r}")


@dataclass(frozen=True)
class Precondition:
    """What a measurement must meet to test a claim, as measured: ``holds`` and, either way,
    a ``reason`` that says what was measured (the verdict's reason when it fails)."""

    holds: bool
    reason: str


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


def _summary(values: list[float], proportion: bool) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the finite values: the 95% t-interval needs two of them (clipped
    to [0, 1] for a proportion, as in the summaries)."""
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) >= 2:
        mean, lo, hi = (float(v) for v in (proportion_ci if proportion else mean_ci)(finite, confidence=0.95))
        return mean, lo, hi, len(finite)
    return (finite[0] if finite else math.nan), math.nan, math.nan, len(finite)


def _compare(claim: Claim, mean: float, lo: float, hi: float, interval: str, tolerance: float) -> tuple[str, str]:
    """(verdict, explanation) of a comparable claim with at least two measurements."""
    claimed = float(claim.claimed)
    if claim.kind in _ONE_SIDED:
        end, test, reading = _ONE_SIDED[claim.kind]
        ok = test((lo, hi)[end], claimed)
        side = "lies" if ok else "does not lie entirely"
        explanation = f"{interval} {side} {reading} {_fmt(claimed)}"
        if not ok and claim.min_effect is not None:
            effect = claimed + claim.min_effect if end == 0 else claimed - claim.min_effect
            if test((lo, hi)[1 - end], effect):  # the interval's far end still reaches the effect
                return NOT_TESTABLE, (f"{explanation}, but also reaches the smallest effect tested "
                                      f"({_fmt(effect)}): too wide to tell the effect from none")
        return ("reproduced" if ok else "not reproduced"), explanation
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
    preconditions: Sequence[Precondition] = (),
) -> dict:
    """Verdict row for ``claim`` given one measurement per run; the rule is in the module doc.

    ``reason`` is required when ``comparable`` is False; otherwise it is prepended to the
    generated explanation (e.g. to name the SNR definition used). ``preconditions`` are the
    caller's measured conditions for the claim to be testable (see `converged`).
    """
    if not comparable and not reason.strip():
        raise ValueError(f"claim {claim.claim_id!r}: a reason is required when comparable=False")
    tolerance = claim.rel_tol if claim.rel_tol is not None else rel_tol
    if not tolerance >= 0:
        raise ValueError(f"rel_tol must be >= 0, got {rel_tol!r}")
    values = [float(v) for v in measured]
    mean, lo, hi, n = _summary(values, claim.proportion)
    interval = f"measured mean {_fmt(mean)}, 95% CI [{_fmt(lo)}, {_fmt(hi)}] (n={n})"
    if not comparable:
        verdict, explanation = "not comparable", reason.strip()
    elif n < 2:
        verdict, explanation = "inconclusive", f"fewer than 2 finite measurements (n={n} of {len(values)})"
    elif failed := [p.reason for p in preconditions if not p.holds]:
        verdict, explanation = NOT_TESTABLE, f"{'; '.join(failed)}; {interval}"
    else:
        verdict, explanation = _compare(claim, mean, lo, hi, interval, tolerance)
    if comparable and reason.strip():
        explanation = f"{reason.strip()}; {explanation}"
    return {"claim_id": claim.claim_id, "source": claim.source, "statement": claim.statement,
            "metric": claim.metric, "claimed": float(claim.claimed), "measured_mean": mean, "ci_low": lo,
            "ci_high": hi, "n": n, "verdict": verdict, "reason": explanation}


def converged(histories: pd.DataFrame, column: str = "val_top1", *, by: str = "run",
              tolerance: float = CONVERGENCE_TOLERANCE) -> Precondition:
    """Whether every run of ``histories`` (per-epoch rows: ``by``, ``epoch``, ``column``) has
    converged: the mean of ``column`` over its last window of epochs (`CONVERGENCE_WINDOW` of
    the run, at least two) exceeds the mean over the window before by at most ``tolerance``. A
    model still learning at its end would change a comparison by training longer; means over
    windows keep one noisy epoch from deciding."""
    rises = {}
    for run, rows in histories.sort_values("epoch").groupby(by):
        values = rows[column].to_numpy(dtype=float)
        window = max(2, round(CONVERGENCE_WINDOW * len(values)))
        rises[run] = (float(values[-window:].mean() - values[-2 * window:-window].mean())
                      if len(values) >= 2 * window else math.nan)
    if not rises:
        return Precondition(False, f"no training history to check convergence on ({column})")
    too_short = sorted(run for run, rise in rises.items() if math.isnan(rise))
    if too_short:
        return Precondition(False, f"too few epochs to check convergence (at least 4 needed) in {len(too_short)} "
                                   f"of {len(rises)} runs ({', '.join(map(str, too_short))})")
    worst = max(rises, key=rises.get)
    rising = sorted(run for run, rise in rises.items() if rise > tolerance)
    if rising:
        return Precondition(False, f"not converged: mean {column} of the last epochs still {rises[worst]:+.4g} above "
                                   f"the epochs before (more than {_fmt(tolerance)}) in {len(rising)} of {len(rises)} "
                                   f"runs ({', '.join(map(str, rising))}; worst {worst})")
    return Precondition(True, f"converged: mean {column} of the last epochs within {rises[worst]:+.4g} of the "
                              "epochs before")


def better_than_chance(accuracies: Sequence[float], n_classes: int, what: str, *, margin: float = 0.1
                       ) -> Precondition:
    """Whether every accuracy in ``accuracies`` beats chance (1 / ``n_classes``) by ``margin``:
    a model that learned nothing on its task has nothing to transfer or compare."""
    chance = 1.0 / n_classes
    values = [float(v) for v in accuracies]
    missing = sum(math.isnan(v) for v in values)
    if missing:  # an accuracy not measured cannot show that its model learned
        return Precondition(False, f"{what}: {missing} of {len(values)} top-1 accuracies are missing (NaN)")
    worst = min(values, default=math.nan)
    if not worst >= chance + margin:
        return Precondition(False, f"{what} no better than chance: top-1 {_fmt(worst)} vs chance {_fmt(chance)} "
                                   f"(+{_fmt(margin)} needed)")
    return Precondition(True, f"{what} above chance: worst top-1 {_fmt(worst)} vs chance {_fmt(chance)}")


def verdict_table(rows: Iterable[dict]) -> pd.DataFrame:
    """Verdict rows from ``judge`` as a DataFrame with the standard column order."""
    rows = list(rows)
    for row in rows:
        missing = [c for c in COLUMNS if c not in row]
        if missing:
            raise ValueError(f"claims row {row.get('claim_id', '?')!r} lacks columns {missing}")
    return pd.DataFrame(rows, columns=list(COLUMNS))
