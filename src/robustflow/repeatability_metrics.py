"""Repeatability metrics: does a model give the same answer to the same input seen twice?

Perturbation sequences (Hendrycks & Dietterich, ICLR 2019, ImageNet-P / CIFAR-10-P; evaluation
code ``ImageNet-P/cifar-p-eval.py`` and ``ImageNet-P/test.py`` in github.com/hendrycks/robustness).
A sequence is T frames x_0..x_{T-1} of one test image (N sequences per perturbation):

- Flip probability FP of one sequence: for a noise perturbation (name containing "noise", frame 0
  clean, frames 1..T-1 independent draws) the fraction of frames j >= 1 whose top-1 differs from
  frame 0's; for the others the fraction of consecutive pairs (j-1, j) whose top-1 differs. FP of a
  perturbation = mean over sequences of the per-sequence FP (the reference adds
  ``mean(sequence) / N``; every sequence of a perturbation has the same T, so this is also the
  mean over all pairs). ``step`` is the reference's ``difficulty`` (ImageNet-P only; CIFAR uses 1):
  pairs (j - step, j); noise perturbations always use step 1 (their harder levels are other files).
- Top-5 distance of two frames a, b: rank the classes of each by descending logit (rank 1 = top;
  ties in class order, as ``scipy.stats.rankdata(-z, method='ordinal')`` and ``argmax`` do);
  sigma(k) = rank in b of the class ranked k in a;
  d(a, b) = sum_{k=1..5} |min(k - 1, 5) - min(sigma(k) - 1, 5)|
  (the reference's ``cum_sum_top5`` is exactly i -> min(i, 5)). Only the five top classes of frame a
  are followed; a class that leaves the top 5 counts as if at rank 6 however far it falls, and a
  class that enters b's top 5 from outside a's top 5 adds nothing by itself (only through the
  classes it pushes down), so d is not symmetric. Needs C >= 5 (the reference fails below). T5D
  is paired and averaged exactly like FP.
- FR(f, p) = FP(f, p) / FP(base, p), mFR = mean FR over perturbations; the same for T5D / mT5D.
  ImageNet-P normalises by AlexNet; CIFAR has none (the CIFAR script prints raw FP), so the
  baseline is a model/run of the table, and the unnormalised means are always reported too.

Two views of the same image:

- Consistency (Zhang, "Making Convolutional Networks Shift-Invariant Again", ICML 2019; code
  github.com/adobe/antialiased-cnns): P(top-1 of view a == top-1 of view b) for two shifted views.
  Returned as a fraction; the paper prints 100 x. ``consistency_by_distance`` groups it by shift.
- Azulay & Weiss ("Why do deep convolutional networks generalize so poorly to small image
  transformations?", JMLR 2019): P(top-1 changes) and the mean absolute change of the softmax
  probability of view a's top class, mean_i |p_b[i, c_i] - p_a[i, c_i]| with c_i = argmax p_a[i].

Across seeds ("reproducibility between operators" of the repeatability review, seed 004): S models
trained with different seeds, each predicting N test images.

- ``disagreement_matrix``: D[s, t] = fraction of images on which seeds s and t predict differently.
- ``fleiss_kappa`` (Fleiss, Psychological Bulletin 1971; the worked example of Wikipedia's
  "Fleiss' kappa" article), raters = seeds, subjects = images, categories = classes. With n_ij the
  number of raters putting subject i in class j (n raters, N subjects):
  p_j = sum_i n_ij / (N n); P_i = (sum_j n_ij^2 - n) / (n (n - 1)); P_bar = mean_i P_i;
  P_e = sum_j p_j^2; kappa = (P_bar - P_e) / (1 - P_e).
  Degenerate case: when every rating of every subject is the same single class, P_e = 1 and
  P_bar = 1, kappa is 0/0. It is returned as NaN, not 1: agreement expected by chance is then also
  total, so kappa says nothing (the raw agreement is in ``disagreement_matrix``, all zeros). This
  is the only way P_e can be 1. Perfect agreement spread over two or more classes gives kappa = 1.

Inputs are torch tensors or NumPy arrays; predictions are integer class indices, logits are
floats (where a function takes predictions it also takes logits with one more trailing axis and
uses their argmax, first maximum on ties like ``torch.argmax``). Results are plain floats, NumPy
arrays or DataFrames.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from robustflow.robustness_metrics import ZERO_DENOMINATOR

TOP5 = 5
FLIP_COLUMNS = ("model", "perturbation", "flip_probability")
TOP5_COLUMN = "top5_distance"


# ---------------------------------------------------------------------------- inputs


def _as_array(values, name: str) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, possibly on a GPU
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer)
                                   or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"{name} must hold integer class indices or float logits, got dtype {array.dtype}")
    return array


def _logits(values, name: str, ndim: int) -> np.ndarray:
    array = _as_array(values, name)
    if array.ndim != ndim or not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name} must be float logits with {ndim} axes, got {array.dtype} {array.shape}")
    if np.isnan(array).any():
        raise ValueError(f"{name}: logits contain NaN")
    return array.astype(np.float64, copy=False)


def _predictions(values, name: str, ndim: int) -> np.ndarray:
    """Integer predictions with ``ndim`` axes, or the argmax of float logits with ``ndim + 1``."""
    array = _as_array(values, name)
    if np.issubdtype(array.dtype, np.floating):
        if array.ndim != ndim + 1:
            raise ValueError(f"{name}: float input is read as logits and needs {ndim + 1} axes "
                             f"(class last), got shape {array.shape}")
        if np.isnan(array).any():
            raise ValueError(f"{name}: logits contain NaN")
        return array.argmax(axis=-1)
    if array.ndim != ndim:
        raise ValueError(f"{name}: integer predictions need {ndim} axes, got shape {array.shape}")
    return array


def _pair_indices(n_frames: int, noise: bool, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames compared: (reference frame, later frame) for every pair of one sequence."""
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        raise ValueError(f"step must be an integer >= 1, got {step!r}")
    if noise and step != 1:
        raise ValueError("noise perturbations compare every frame with frame 0: step must be 1 "
                         "(harder noise levels are separate sequences, not a larger step)")
    if n_frames <= step:
        raise ValueError(f"sequences need more than step={step} frames, got T={n_frames}")
    later = np.arange(step, n_frames)
    first = np.zeros_like(later) if noise else later - step
    return first, later


# ---------------------------------------------------------------------------- sequences


def flip_probability_per_sequence(predictions, noise: bool, step: int = 1) -> np.ndarray:
    """FP of each sequence, shape (N,): the fraction of its compared frame pairs (see the module
    docstring) whose top-1 differs. ``predictions``: (N, T) ints or (N, T, C) logits."""
    preds = _predictions(predictions, "predictions", ndim=2)
    if preds.shape[0] == 0:
        raise ValueError("predictions: no sequences (N = 0)")
    first, later = _pair_indices(preds.shape[1], noise, step)
    return (preds[:, first] != preds[:, later]).mean(axis=1)


def flip_probability(predictions, noise: bool, step: int = 1) -> float:
    """FP of one perturbation: mean over sequences of the per-sequence FP, in [0, 1]."""
    return float(flip_probability_per_sequence(predictions, noise, step).mean())


def top5_distance_per_sequence(logits, noise: bool, step: int = 1) -> np.ndarray:
    """Mean top-5 distance over the compared frame pairs of each sequence, shape (N,).
    ``logits``: (N, T, C) floats, C >= 5."""
    z = _logits(logits, "logits", ndim=3)
    n, n_frames, n_classes = z.shape
    if n == 0:
        raise ValueError("logits: no sequences (N = 0)")
    if n_classes < TOP5:
        raise ValueError(f"top-5 distance needs at least {TOP5} classes, got C = {n_classes}")
    first, later = _pair_indices(n_frames, noise, step)
    order = np.argsort(-z, axis=-1, kind="stable")  # order[..., k]: class ranked k + 1
    rank = np.argsort(order, axis=-1)  # rank[..., c]: 0-based rank of class c
    top_of_first = order[:, first, :TOP5]  # (N, P, 5): classes ranked 1..5 in the reference frame
    sigma0 = np.take_along_axis(rank[:, later, :], top_of_first, axis=-1)  # sigma(k) - 1
    distance = np.abs(np.arange(TOP5) - np.minimum(sigma0, TOP5)).sum(axis=-1)  # (N, P)
    return distance.mean(axis=1)


def top5_distance(logits, noise: bool, step: int = 1) -> float:
    """T5D of one perturbation: mean over sequences of the per-sequence mean top-5 distance."""
    return float(top5_distance_per_sequence(logits, noise, step).mean())


# ---------------------------------------------------------------------------- normalised by a baseline


def _check_flip_table(table: pd.DataFrame, baseline: str) -> bool:
    """Validates the table; returns whether it has a top-5 distance column."""
    missing = [c for c in FLIP_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"table: columns {missing} missing (has {list(table.columns)})")
    if table.empty:
        raise ValueError("table: the table is empty")
    has_top5 = TOP5_COLUMN in table.columns
    flips = table["flip_probability"].to_numpy(dtype=float)
    if not np.all((flips >= 0) & (flips <= 1)):
        raise ValueError("table: column 'flip_probability' must hold probabilities in [0, 1]")
    if has_top5:
        distances = table[TOP5_COLUMN].to_numpy(dtype=float)
        if not np.all(distances >= 0):  # also catches NaN
            raise ValueError(f"table: column '{TOP5_COLUMN}' must hold distances >= 0")
    if table.duplicated(["model", "perturbation"]).any():
        raise ValueError("table: more than one row for some (model, perturbation)")
    models = list(dict.fromkeys(table["model"]))
    if baseline not in models:
        raise ValueError(f"baseline {baseline!r} is not a model of the table (models: {models})")
    base = table[table["model"] == baseline]
    perturbations = set(base["perturbation"])
    for model, rows in table.groupby("model", sort=False):
        if set(rows["perturbation"]) != perturbations:
            raise ValueError(f"table: model {model!r} does not have the same perturbations as "
                             f"baseline {baseline!r} ({sorted(perturbations)})")
    return has_top5


def flip_rates(table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """FR and T5D rate per (model, perturbation) relative to ``baseline``.

    ``table``: one row per (model, perturbation) with ``flip_probability`` and optionally
    ``top5_distance`` (a run identifier may stand in ``model``); every model needs the baseline's
    perturbations. Returns model, perturbation, flip_probability, flip_rate, top5_distance,
    top5_distance_rate, in the table's row order (the T5D columns NaN when the table has no
    top5_distance). Where the baseline never flips (its FP or T5D is 0) the rate is undefined:
    NaN, left out of the means of `mean_flip_rate`.
    """
    has_top5 = _check_flip_table(table, baseline)
    frame = table[[*FLIP_COLUMNS, *((TOP5_COLUMN,) if has_top5 else ())]].copy()
    if not has_top5:
        frame[TOP5_COLUMN] = math.nan
    base = frame[frame["model"] == baseline].set_index("perturbation")
    frame["flip_probability"] = frame["flip_probability"].astype(float)
    frame[TOP5_COLUMN] = frame[TOP5_COLUMN].astype(float)
    for column, rate in (("flip_probability", "flip_rate"), (TOP5_COLUMN, "top5_distance_rate")):
        denominator = frame["perturbation"].map(base[column])
        frame[rate] = (frame[column] / denominator).where(denominator.abs() > ZERO_DENOMINATOR)
    columns = ["model", "perturbation", "flip_probability", "flip_rate", TOP5_COLUMN, "top5_distance_rate"]
    return frame[columns].reset_index(drop=True)


def mean_flip_rate(table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Per model: mean_flip_probability and mfr, mean_top5_distance and mt5d (means over
    perturbations of the raw and normalised values; T5D ones NaN without a top5_distance
    column), n_perturbations, and n_rated: how many perturbations mfr averages (those on which
    the baseline flips)."""
    rates = flip_rates(table, baseline)
    rows = []
    for model, group in rates.groupby("model", sort=False):
        rows.append({
            "model": model,
            "mean_flip_probability": float(group["flip_probability"].mean()),
            "mfr": float(group["flip_rate"].mean()),
            "mean_top5_distance": float(group[TOP5_COLUMN].mean()),
            "mt5d": float(group["top5_distance_rate"].mean()),
            "n_perturbations": len(group),
            "n_rated": int(group["flip_rate"].notna().sum()),
        })
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- two views


def _paired_top1(view_a, view_b) -> tuple[np.ndarray, np.ndarray]:
    a = _predictions(view_a, "view a", ndim=1)
    b = _predictions(view_b, "view b", ndim=1)
    if a.shape != b.shape or a.shape[0] == 0:
        raise ValueError(f"the two views need the same N >= 1 images, got {a.shape} and {b.shape}")
    return a, b


def shift_consistency(pred_a, pred_b) -> float:
    """Zhang 2019's consistency: fraction of images whose two views get the same top-1.
    ``pred_a``, ``pred_b``: (N,) ints or (N, C) logits."""
    a, b = _paired_top1(pred_a, pred_b)
    return float((a == b).mean())


def consistency_by_distance(pred_a, pred_b, distance) -> pd.DataFrame:
    """Consistency per shift distance: ``distance`` (N,) gives each image's distance between its
    two views (any hashable sortable values, e.g. pixels). Returns distance, n, consistency,
    sorted by distance."""
    a, b = _paired_top1(pred_a, pred_b)
    distance = np.asarray(distance.detach().cpu() if hasattr(distance, "detach") else distance)
    if distance.shape != a.shape:
        raise ValueError(f"distance must have shape {a.shape} (one per image), got {distance.shape}")
    frame = pd.DataFrame({"distance": distance, "same": a == b})
    grouped = frame.groupby("distance", sort=True)["same"].agg(n="size", consistency="mean").reset_index()
    grouped["consistency"] = grouped["consistency"].astype(float)
    return grouped


def top1_change_probability(logits_a, logits_b) -> float:
    """Azulay & Weiss's P(top-1 change): fraction of images whose two views' top-1 differ
    (= 1 - shift_consistency)."""
    a, b = _paired_top1(logits_a, logits_b)
    return float((a != b).mean())


def _softmax(z: np.ndarray) -> np.ndarray:
    shifted = np.exp(z - z.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def top_class_probability_change(logits_a, logits_b) -> float:
    """Azulay & Weiss's mean absolute change: mean over images of |p_b[c] - p_a[c]|, p the softmax
    probabilities and c view a's top class. ``logits_a``, ``logits_b``: (N, C) floats."""
    za = _logits(logits_a, "logits_a", ndim=2)
    zb = _logits(logits_b, "logits_b", ndim=2)
    if za.shape != zb.shape or za.shape[0] == 0:
        raise ValueError(f"the two views need the same (N >= 1, C) shape, got {za.shape} and {zb.shape}")
    pa, pb = _softmax(za), _softmax(zb)
    top = pa.argmax(axis=1)[:, None]
    return float(np.abs(np.take_along_axis(pb, top, 1) - np.take_along_axis(pa, top, 1)).mean())


# ---------------------------------------------------------------------------- across seeds


def _seed_predictions(predictions) -> np.ndarray:
    preds = _predictions(predictions, "predictions", ndim=2)
    if preds.shape[0] < 2 or preds.shape[1] == 0:
        raise ValueError(f"predictions need S >= 2 seeds and N >= 1 images, got shape {preds.shape}")
    return preds


def disagreement_matrix(predictions) -> np.ndarray:
    """(S, S) matrix: D[s, t] = fraction of images on which seeds s and t predict differently
    (symmetric, zero diagonal). ``predictions``: (S, N) ints or (S, N, C) logits."""
    preds = _seed_predictions(predictions)
    return (preds[:, None, :] != preds[None, :, :]).mean(axis=2)


def fleiss_kappa_from_counts(counts) -> float:
    """Fleiss' kappa from a (N subjects, K categories) table of rating counts, every row summing
    to the same number of raters n >= 2. NaN in the degenerate case (all ratings in one
    category: P_e = 1), see the module docstring."""
    table = _as_array(counts, "counts")
    if table.ndim != 2 or table.shape[0] == 0 or table.shape[1] == 0:
        raise ValueError(f"counts must be a (N subjects, K categories) table, got shape {table.shape}")
    if np.issubdtype(table.dtype, np.floating):
        if not np.array_equal(table, np.round(table)):
            raise ValueError("counts must be whole numbers of raters")
        table = table.astype(np.int64)
    if (table < 0).any():
        raise ValueError("counts must be >= 0")
    raters = table.sum(axis=1)
    n = int(raters[0])
    if n < 2 or (raters != n).any():
        raise ValueError(f"every subject needs the same number n >= 2 of ratings, got row sums "
                         f"{sorted(set(raters.tolist()))}")
    if np.count_nonzero(table.sum(axis=0)) == 1:
        return math.nan  # one category holds every rating: P_e = P_bar = 1, kappa is 0/0
    table = table.astype(np.float64)
    n_subjects = table.shape[0]
    p_category = table.sum(axis=0) / (n_subjects * n)
    p_subject = ((table ** 2).sum(axis=1) - n) / (n * (n - 1))
    p_bar = p_subject.mean()
    p_expected = float((p_category ** 2).sum())
    return float((p_bar - p_expected) / (1.0 - p_expected))


def fleiss_kappa(predictions, n_classes: int) -> float:
    """Fleiss' kappa of S seeds' predictions (raters) on N images (subjects) over ``n_classes``
    categories. ``predictions``: (S, N) ints in [0, n_classes) or (S, N, n_classes) logits."""
    preds = _seed_predictions(predictions)
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ValueError(f"n_classes must be an integer >= 1, got {n_classes!r}")
    if preds.min() < 0 or preds.max() >= n_classes:
        raise ValueError(f"predictions must lie in [0, {n_classes}), got [{preds.min()}, {preds.max()}]")
    n_images = preds.shape[1]
    counts = np.zeros((n_images, n_classes), dtype=np.int64)
    np.add.at(counts, (np.broadcast_to(np.arange(n_images), preds.shape), preds), 1)
    return fleiss_kappa_from_counts(counts)
