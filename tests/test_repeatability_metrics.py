"""Repeatability metrics against values computed by hand on tiny inputs, plus invariants.

References: flip probability and top-5 distance follow hendrycks/robustness
``ImageNet-P/cifar-p-eval.py`` (Hendrycks & Dietterich, ICLR 2019); consistency is Zhang 2019's
(adobe/antialiased-cnns); top-1 change and top-class probability change are Azulay & Weiss 2019's;
the Fleiss example is the worked example of Wikipedia's "Fleiss' kappa" article.
"""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from robustflow.repeatability_metrics import (
    consistency_by_distance,
    disagreement_matrix,
    fleiss_kappa,
    fleiss_kappa_from_counts,
    flip_probability,
    flip_probability_per_sequence,
    flip_rates,
    mean_flip_rate,
    shift_consistency,
    top1_change_probability,
    top5_distance,
    top5_distance_per_sequence,
    top_class_probability_change,
)

# ---------------------------------------------------------------------------- flip probability

# Two sequences of T = 5 frames (top-1 class per frame).
PREDS = np.array([
    [0, 1, 1, 1, 1],
    [2, 2, 3, 2, 2],
])


def test_flip_probability_consecutive_frames_by_hand():
    # Pairs (j-1, j): sequence 0 flips only at (0, 1): 1/4; sequence 1 at (1, 2) and (2, 3): 2/4.
    assert flip_probability_per_sequence(PREDS, noise=False).tolist() == pytest.approx([0.25, 0.5])
    # Mean over sequences: (0.25 + 0.5) / 2.
    assert flip_probability(PREDS, noise=False) == pytest.approx(0.375)


def test_flip_probability_noise_compares_with_frame_zero_by_hand():
    # Frames 1..4 against frame 0: sequence 0 differs in all four (4/4); sequence 1 only frame 2 (1/4).
    assert flip_probability_per_sequence(PREDS, noise=True).tolist() == pytest.approx([1.0, 0.25])
    assert flip_probability(PREDS, noise=True) == pytest.approx(0.625)


def test_flip_probability_step_two_by_hand():
    # step 2 (ImageNet-P "difficulty" 2): pairs (0, 2), (1, 3), (2, 4).
    # Sequence 0: frames (0,2) = (0,1) flip, (1,3) = (1,1), (2,4) = (1,1) -> 1/3;
    # sequence 1: (0,2) = (2,3) flip, (1,3) = (2,2), (2,4) = (3,2) flip -> 2/3. Mean 1/2.
    assert flip_probability_per_sequence(PREDS, noise=False, step=2).tolist() == pytest.approx([1 / 3, 2 / 3])
    assert flip_probability(PREDS, noise=False, step=2) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="step must be 1"):
        flip_probability(PREDS, noise=True, step=2)


def test_flip_probability_takes_logits_and_tensors():
    # One sequence of 3 frames, 2 classes: top-1 = 0, 1, 1 -> one flip in two pairs; noise: 2 of 2.
    logits = torch.tensor([[[2.0, 1.0], [0.0, 3.0], [1.0, 4.0]]])
    assert flip_probability(logits, noise=False) == pytest.approx(0.5)
    assert flip_probability(logits, noise=True) == pytest.approx(1.0)
    assert flip_probability(torch.tensor(PREDS), noise=False) == pytest.approx(0.375)


def test_flip_probability_invariants():
    rng = np.random.default_rng(0)
    preds = rng.integers(0, 10, size=(50, 31))
    for noise in (False, True):
        per_sequence = flip_probability_per_sequence(preds, noise)
        assert per_sequence.shape == (50,)
        assert np.all((per_sequence >= 0) & (per_sequence <= 1))
        assert 0.0 <= flip_probability(preds, noise) <= 1.0
        assert flip_probability(np.full((4, 31), 7), noise) == 0.0
    # Alternating predictions flip at every consecutive pair but never differ from frame 0 on
    # even frames: consecutive FP 1, noise FP = 15/30 (frames 1, 3, ..., 29 differ).
    alternating = np.tile([0, 1], 16)[None, :31]
    assert flip_probability(alternating, noise=False) == 1.0
    assert flip_probability(alternating, noise=True) == pytest.approx(0.5)


def test_flip_probability_rejects_bad_input():
    with pytest.raises(ValueError, match="more than step"):
        flip_probability(np.zeros((3, 1), dtype=int), noise=False)
    with pytest.raises(ValueError, match="no sequences"):
        flip_probability(np.zeros((0, 5), dtype=int), noise=False)
    with pytest.raises(ValueError, match="axes"):
        flip_probability(np.zeros(5, dtype=int), noise=False)
    with pytest.raises(ValueError, match="logits"):
        flip_probability(np.zeros((3, 5)), noise=False)  # floats are read as (N, T, C) logits


# ---------------------------------------------------------------------------- top-5 distance

BASE6 = [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]  # ranks: class 0 first, ..., class 5 last
SWAP6 = [5.0, 6.0, 4.0, 3.0, 2.0, 1.0]  # classes 0 and 1 (ranks 1 and 2) swapped


def _t5d(frame_a, frame_b) -> float:
    return top5_distance(np.array([[frame_a, frame_b]]), noise=False)


def test_top5_distance_zero_for_identical_logits():
    assert _t5d(BASE6, BASE6) == 0.0
    rng = np.random.default_rng(1)
    same = np.repeat(rng.normal(size=(7, 1, 10)), 4, axis=1)  # every frame of a sequence equal
    assert top5_distance(same, noise=False) == 0.0
    assert top5_distance(same, noise=True) == 0.0
    assert flip_probability(same, noise=False) == 0.0


def test_top5_distance_swap_of_ranks_one_and_two_by_hand():
    # sigma(1) = rank in b of class 0 = 2, sigma(2) = 1, sigma(3..5) = 3..5:
    # d = |0 - 1| + |1 - 0| + 0 + 0 + 0 = 2.
    assert _t5d(BASE6, SWAP6) == 2.0


def test_top5_distance_clips_classes_that_leave_the_top5():
    # C = 8; class 1 (rank 2) drops to the bottom (rank 8), classes 2..5 move up one rank.
    a = [8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]
    b = [8.0, 0.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]
    # sigma(1..5) = 1, 8, 2, 3, 4; min(sigma - 1, 5) = 0, 5, 1, 2, 3 against k - 1 = 0, 1, 2, 3, 4:
    # d = 0 + |1 - 5| + 1 + 1 + 1 = 7 (unclipped, |1 - 7| = 6 would give 9).
    assert _t5d(a, b) == 7.0


def test_top5_distance_follows_only_the_first_frames_top5():
    # C = 8; class 7 (rank 8 in a) jumps to rank 1 in b, pushing classes 0..6 down one rank.
    a = [8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]
    b = [8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 9.0]
    # a -> b: sigma(1..5) = 2..6, min(sigma - 1, 5) = 1..5, each one off: d = 5 (class 7 itself is
    # not among a's top 5 and adds nothing).
    assert _t5d(a, b) == 5.0
    # b -> a: b's top 5 = classes 7, 0, 1, 2, 3 with ranks in a 8, 1, 2, 3, 4:
    # d = |0 - 5| + |1 - 0| + |2 - 1| + |3 - 2| + |4 - 3| = 9.
    assert _t5d(b, a) == 9.0


def test_top5_distance_sequence_averaging_by_hand():
    # Sequence 0: frames BASE6, SWAP6, BASE6; sequence 1: BASE6 three times.
    logits = np.array([[BASE6, SWAP6, BASE6], [BASE6, BASE6, BASE6]])
    # Consecutive: d(F0, F1) = 2 and d(F1, F2) = 2 (the swap back) -> 2; sequence 1: 0.
    assert top5_distance_per_sequence(logits, noise=False).tolist() == [2.0, 0.0]
    assert top5_distance(logits, noise=False) == 1.0
    # Noise: d(F0, F1) = 2, d(F0, F2) = 0 -> 1; sequence 1: 0; mean 0.5.
    assert top5_distance_per_sequence(logits, noise=True).tolist() == [1.0, 0.0]
    assert top5_distance(logits, noise=True) == 0.5


def test_top5_distance_ties_rank_in_class_order():
    # All logits equal: class order is the ranking (rankdata 'ordinal' on -z, argmax's first maximum).
    # Raising class 1 above the tie puts it first: sigma(1) = 2, sigma(2) = 1 -> d = 2, as a swap.
    assert _t5d([0.0] * 6, [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]) == 2.0


def _rankdata_ordinal_desc(z):
    # rank 1 = largest; ties: earlier class first (scipy.stats.rankdata(-z, method='ordinal')).
    ranks = np.empty(len(z), dtype=int)
    for position, cls in enumerate(sorted(range(len(z)), key=lambda c: (-z[c], c))):
        ranks[cls] = position + 1
    return ranks


def _paper_top5_pair(z_a, z_b):
    # ImageNet-P paper's form: sum_{i=1..5} sum_{j=min(i, s(i))+1}^{max(i, s(i))} 1(1 <= j - 1 <= 5).
    rank_a, rank_b = _rankdata_ordinal_desc(z_a), _rankdata_ordinal_desc(z_b)
    inverse_a = np.argsort(rank_a)  # class ranked k + 1 in a
    sigma = rank_b[inverse_a]
    total = 0
    for i in range(1, 6):
        for j in range(min(i, sigma[i - 1]) + 1, max(i, sigma[i - 1]) + 1):
            total += 1 <= j - 1 <= 5
    return total


def test_top5_distance_and_flip_probability_match_a_loop_over_pairs():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(6, 9, 10)).round(1)  # rounding makes some ties
    preds = logits.argmax(axis=2)
    for noise in (False, True):
        fp, t5d = [], []
        for z in logits:
            pairs = [(0, j) if noise else (j - 1, j) for j in range(1, z.shape[0])]
            fp.append(np.mean([z[a].argmax() != z[b].argmax() for a, b in pairs]))
            t5d.append(np.mean([_paper_top5_pair(z[a], z[b]) for a, b in pairs]))
        assert flip_probability_per_sequence(logits, noise) == pytest.approx(fp)
        assert flip_probability(preds, noise) == pytest.approx(np.mean(fp))
        assert top5_distance_per_sequence(logits, noise) == pytest.approx(t5d)
        assert top5_distance(torch.tensor(logits), noise) == pytest.approx(np.mean(t5d))


def test_top5_distance_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 5 classes"):
        top5_distance(np.zeros((1, 2, 4)), noise=False)
    with pytest.raises(ValueError, match="float logits"):
        top5_distance(np.zeros((1, 2, 6), dtype=int), noise=False)
    with pytest.raises(ValueError, match="NaN"):
        top5_distance(np.full((1, 2, 6), np.nan), noise=False)


# ---------------------------------------------------------------------------- FR / mFR, T5D / mT5D

FLIPS = pd.DataFrame(
    [
        ("base", "gaussian_noise", 0.2, 1.0), ("base", "rotate", 0.1, 0.5),
        ("f", "gaussian_noise", 0.1, 1.5), ("f", "rotate", 0.3, 0.25),
    ],
    columns=["model", "perturbation", "flip_probability", "top5_distance"],
)


def test_flip_rates_by_hand():
    table = flip_rates(FLIPS, baseline="base").set_index(["model", "perturbation"])
    # FR(f, noise) = 0.1 / 0.2 = 0.5; FR(f, rotate) = 0.3 / 0.1 = 3.
    assert table.loc[("f", "gaussian_noise"), "flip_rate"] == pytest.approx(0.5)
    assert table.loc[("f", "rotate"), "flip_rate"] == pytest.approx(3.0)
    # T5D rate: 1.5 / 1.0 = 1.5; 0.25 / 0.5 = 0.5.
    assert table.loc[("f", "gaussian_noise"), "top5_distance_rate"] == pytest.approx(1.5)
    assert table.loc[("f", "rotate"), "top5_distance_rate"] == pytest.approx(0.5)
    assert table.loc[("f", "rotate"), "flip_probability"] == pytest.approx(0.3)
    assert table.loc["base", "flip_rate"].tolist() == pytest.approx([1.0, 1.0])


def test_mean_flip_rate_by_hand():
    summary = mean_flip_rate(FLIPS, baseline="base").set_index("model")
    # mFR(f) = (0.5 + 3) / 2 = 1.75; mT5D(f) = (1.5 + 0.5) / 2 = 1.0.
    assert summary.loc["f", "mfr"] == pytest.approx(1.75)
    assert summary.loc["f", "mt5d"] == pytest.approx(1.0)
    # Unnormalised: mean FP (0.1 + 0.3) / 2 = 0.2, mean T5D (1.5 + 0.25) / 2 = 0.875.
    assert summary.loc["f", "mean_flip_probability"] == pytest.approx(0.2)
    assert summary.loc["f", "mean_top5_distance"] == pytest.approx(0.875)
    assert summary.loc["base", "mfr"] == pytest.approx(1.0)
    assert summary.loc["base", "mean_flip_probability"] == pytest.approx(0.15)
    assert summary.loc["f", "n_perturbations"] == 2 and summary.loc["f", "n_rated"] == 2


def test_flip_rates_without_top5_column_leave_t5d_nan():
    summary = mean_flip_rate(FLIPS.drop(columns="top5_distance"), baseline="base").set_index("model")
    assert summary.loc["f", "mfr"] == pytest.approx(1.75)
    assert math.isnan(summary.loc["f", "mt5d"]) and math.isnan(summary.loc["f", "mean_top5_distance"])


def test_a_rate_against_a_baseline_that_never_flips_is_undefined():
    zero = FLIPS.copy()
    zero.loc[(zero["model"] == "base") & (zero["perturbation"] == "rotate"), "flip_probability"] = 0.0
    rates = flip_rates(zero, baseline="base").set_index(["model", "perturbation"])
    assert math.isnan(rates.loc[("f", "rotate"), "flip_rate"]) and math.isnan(rates.loc[("base", "rotate"), "flip_rate"])
    assert rates.loc[("f", "rotate"), "top5_distance_rate"] == pytest.approx(0.5)  # T5D still defined
    summary = mean_flip_rate(zero, baseline="base").set_index("model")
    # mFR(f) over the rated perturbation only: 0.1 / 0.2; the raw mean keeps both.
    assert summary.loc["f", "mfr"] == pytest.approx(0.5) and summary.loc["f", "n_rated"] == 1
    assert summary.loc["f", "mean_flip_probability"] == pytest.approx(0.2) and summary.loc["f", "n_perturbations"] == 2
    zero_t5d = FLIPS.copy()
    zero_t5d.loc[zero_t5d["model"] == "base", "top5_distance"] = 0.0
    assert flip_rates(zero_t5d, baseline="base")["top5_distance_rate"].isna().all()


def test_flip_rates_reject_bad_tables():
    with pytest.raises(ValueError, match="baseline 'alexnet' is not a model"):
        flip_rates(FLIPS, baseline="alexnet")
    with pytest.raises(ValueError, match="same perturbations"):
        flip_rates(FLIPS.iloc[:3], baseline="base")
    with pytest.raises(ValueError, match="more than one row"):
        flip_rates(pd.concat([FLIPS, FLIPS.iloc[:1]]), baseline="base")
    too_big = FLIPS.copy()
    too_big.loc[0, "flip_probability"] = 1.5
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        flip_rates(too_big, baseline="base")
    with pytest.raises(ValueError, match="missing"):
        flip_rates(FLIPS.drop(columns="perturbation"), baseline="base")
    with pytest.raises(ValueError, match="empty"):
        flip_rates(FLIPS.iloc[:0], baseline="base")


# ---------------------------------------------------------------------------- two views


def test_shift_consistency_by_hand_and_by_distance():
    a = np.array([0, 1, 2, 3])
    b = np.array([0, 1, 3, 3])
    # Same top-1 on images 0, 1, 3: 3/4.
    assert shift_consistency(a, b) == pytest.approx(0.75)
    assert shift_consistency(a, a) == 1.0
    # Distances (2, 1, 1, 2): distance 1 = images 1, 2: (1 = 1), (2 != 3) -> 1/2;
    # distance 2 = images 0, 3: both agree -> 1. Rows come sorted by distance.
    table = consistency_by_distance(a, b, distance=[2, 1, 1, 2])
    assert table["distance"].tolist() == [1, 2]
    assert table["n"].tolist() == [2, 2]
    assert table["consistency"].tolist() == pytest.approx([0.5, 1.0])
    with pytest.raises(ValueError, match="one per image"):
        consistency_by_distance(a, b, distance=[1, 2])


def test_shift_consistency_takes_logits():
    rng = np.random.default_rng(3)
    logits = torch.tensor(rng.normal(size=(20, 10)))
    assert shift_consistency(logits, logits.clone()) == 1.0
    # Negating the logits moves every argmax (no ties in continuous draws).
    assert shift_consistency(logits, -logits) == 0.0
    with pytest.raises(ValueError, match="same N"):
        shift_consistency(np.array([0, 1]), np.array([0, 1, 2]))


def test_top1_change_probability_by_hand():
    a = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # top-1: 0, 1, 0
    b = np.array([[0.0, 2.0], [0.0, 1.0], [3.0, 0.0]])  # top-1: 1, 1, 0
    assert top1_change_probability(a, b) == pytest.approx(1 / 3)  # only image 0 changes
    assert top1_change_probability(a, b) == pytest.approx(1 - shift_consistency(a, b))


def test_top_class_probability_change_by_hand():
    # Logits are log-probabilities, so the softmax gives these probabilities back.
    p_a = np.array([[0.5, 0.25, 0.25], [0.1, 0.6, 0.3]])
    p_b = np.array([[0.25, 0.5, 0.25], [0.2, 0.2, 0.6]])
    # Image 0: view a's top class 0, |0.25 - 0.5| = 0.25; image 1: top class 1, |0.2 - 0.6| = 0.4.
    # Mean (0.25 + 0.4) / 2 = 0.325.
    assert top_class_probability_change(np.log(p_a), np.log(p_b)) == pytest.approx(0.325)
    # A constant added to every logit of a row leaves the softmax alone.
    assert top_class_probability_change(np.log(p_a) + 3.0, np.log(p_b) - 1.0) == pytest.approx(0.325)
    assert top_class_probability_change(np.log(p_a), np.log(p_a)) == 0.0
    with pytest.raises(ValueError, match="float logits"):
        top_class_probability_change(np.array([0, 1]), np.array([0, 1]))


# ---------------------------------------------------------------------------- across seeds

SEEDS = np.array([
    [0, 1, 2, 0],
    [0, 1, 1, 0],
    [1, 1, 1, 1],
])


def test_disagreement_matrix_by_hand():
    # Seeds 0/1 differ on image 2 (1/4); 0/2 on images 0, 2, 3 (3/4); 1/2 on images 0, 3 (2/4).
    expected = np.array([[0.0, 0.25, 0.75], [0.25, 0.0, 0.5], [0.75, 0.5, 0.0]])
    assert disagreement_matrix(SEEDS) == pytest.approx(expected)
    assert disagreement_matrix(torch.tensor(SEEDS)) == pytest.approx(expected)
    with pytest.raises(ValueError, match="S >= 2"):
        disagreement_matrix(SEEDS[:1])


def test_fleiss_kappa_by_hand():
    # Counts per image over classes 0, 1, 2: [2,1,0], [0,3,0], [0,2,1], [2,1,0]; n = 3 raters.
    # P_i = (sum n_ij^2 - 3) / 6 = 1/3, 1, 1/3, 1/3 -> P_bar = 1/2.
    # p_j = 4/12, 7/12, 1/12 -> P_e = (16 + 49 + 1) / 144 = 11/24.
    # kappa = (1/2 - 11/24) / (1 - 11/24) = (1/24) / (13/24) = 1/13.
    assert fleiss_kappa(SEEDS, n_classes=3) == pytest.approx(1 / 13)
    assert fleiss_kappa_from_counts([[2, 1, 0], [0, 3, 0], [0, 2, 1], [2, 1, 0]]) == pytest.approx(1 / 13)
    # An unused extra class changes nothing (its p_j is 0).
    assert fleiss_kappa(SEEDS, n_classes=5) == pytest.approx(1 / 13)


def test_fleiss_kappa_two_raters_always_disagreeing_by_hand():
    # P_i = (1 + 1 - 2) / 2 = 0 for both images; p = (1/2, 1/2), P_e = 1/2: kappa = -1/2 / 1/2 = -1.
    assert fleiss_kappa(np.array([[0, 1], [1, 0]]), n_classes=2) == pytest.approx(-1.0)


def test_fleiss_kappa_perfect_agreement_is_one_and_one_class_is_nan():
    agree = np.array([[0, 1, 0, 1, 2]] * 4)  # 4 seeds, identical predictions over 3 classes
    assert fleiss_kappa(agree, n_classes=3) == pytest.approx(1.0)
    assert disagreement_matrix(agree) == pytest.approx(np.zeros((4, 4)))
    # Every seed says class 0 for every image: P_e = P_bar = 1, 0/0 -> NaN by design.
    assert math.isnan(fleiss_kappa(np.zeros((3, 5), dtype=int), n_classes=10))


# Wikipedia, "Fleiss' kappa", worked example: 10 subjects, 14 raters, 5 categories.
WIKIPEDIA_COUNTS = np.array([
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
])


def test_fleiss_kappa_wikipedia_example():
    # The article's P_bar = 0.378, P_e = 0.213, kappa = 0.210.
    assert fleiss_kappa_from_counts(WIKIPEDIA_COUNTS) == pytest.approx(0.210, abs=5e-4)
    # The same table as (raters, subjects) predictions; which rater gave which rating is arbitrary
    # (kappa only sees the counts), so the ratings of each subject are shuffled among raters.
    rng = np.random.default_rng(4)
    columns = [rng.permutation(np.repeat(np.arange(5), row)) for row in WIKIPEDIA_COUNTS]
    predictions = np.stack(columns, axis=1)  # (14 raters, 10 subjects)
    assert predictions.shape == (14, 10)
    assert fleiss_kappa(predictions, n_classes=5) == pytest.approx(fleiss_kappa_from_counts(WIKIPEDIA_COUNTS))


def test_fleiss_kappa_rejects_bad_input():
    with pytest.raises(ValueError, match=r"lie in \[0, 3\)"):
        fleiss_kappa(np.array([[0, 3], [1, 2]]), n_classes=3)
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa_from_counts([[2, 0], [1, 2]])
    with pytest.raises(ValueError, match="n_classes"):
        fleiss_kappa(SEEDS, n_classes=0)
