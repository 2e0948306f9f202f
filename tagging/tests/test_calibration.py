"""Scores that mean what they say: the calibration arithmetic (tagging/calibration.py), the threshold
rule (tagging/stacking.py) and the zero-shot score's ceiling, on cases small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest

from tagging.calibration import (
    PROBABILITY_MAX,
    PROBABILITY_MIN,
    Calibration,
    expected_calibration_error,
    fit_calibration,
    top_k_pairs,
)
from tagging.stacking import fit_threshold
from tagging.taggers.similarity import ZERO_SHOT_CEILING, calibrated_score


def test_ece_weights_each_bin_by_its_share_of_the_scores() -> None:
    # Bin 0.1–0.2: scores 0.15, accuracy 1/2, gap 0.35, half the pairs. Bin 0.8–0.9: scores 0.85,
    # accuracy 1, gap 0.15, half the pairs. ECE = 0.5 * 0.35 + 0.5 * 0.15 = 0.25.
    ece, bins = expected_calibration_error(np.array([0.15, 0.15, 0.85, 0.85]), np.array([0, 1, 1, 1]))

    assert ece == pytest.approx(0.25)
    assert len(bins) == 10
    assert [b.count for b in bins] == [0, 2, 0, 0, 0, 0, 0, 0, 2, 0]
    assert bins[1].mean_score == pytest.approx(0.15)
    assert bins[1].accuracy == pytest.approx(0.5)
    assert bins[8].accuracy == pytest.approx(1.0)


def test_ece_is_zero_when_each_bins_accuracy_is_its_mean_score() -> None:
    scores = np.array([0.25] * 4 + [0.75] * 4)
    truth = np.array([1, 0, 0, 0, 1, 1, 1, 0])

    ece, _ = expected_calibration_error(scores, truth)

    assert ece == pytest.approx(0.0)


def test_a_score_of_one_falls_in_the_last_bin() -> None:
    ece, bins = expected_calibration_error(np.array([1.0, 0.0]), np.array([1, 0]))

    assert ece == pytest.approx(0.0)
    assert bins[9].count == 1
    assert bins[0].count == 1


def test_top_k_pairs_are_the_best_scored_tags_of_each_recipe() -> None:
    scores = np.array([[0.1, 0.7, 0.4], [0.9, 0.2, 0.3]])
    truth = np.array([[1, 1, 0], [0, 0, 1]])

    pair_scores, pair_truth = top_k_pairs(scores, truth, 2)

    assert sorted(zip(pair_scores.tolist(), pair_truth.tolist(), strict=True)) == [
        (0.3, 1.0),
        (0.4, 0.0),
        (0.7, 1.0),
        (0.9, 0.0),
    ]


def _overconfident(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores three times as sure (in log-odds) as the truth they predict."""
    p = rng.uniform(0.05, 0.95, size=(n, 1))
    truth = (rng.random((n, 1)) < p).astype(np.float64)
    logit = np.log(p / (1 - p))
    return 1 / (1 + np.exp(-3 * logit)), truth


def test_calibration_fitted_on_overconfident_scores_fixes_them_on_new_ones() -> None:
    rng = np.random.default_rng(0)
    scores, truth = _overconfident(rng, 4000)
    new_scores, new_truth = _overconfident(rng, 4000)

    calibration = fit_calibration(scores, truth, k=1)

    raw_ece, _ = expected_calibration_error(new_scores, new_truth)
    calibrated_ece, _ = expected_calibration_error(calibration.apply(new_scores), new_truth)
    assert calibration.method in ("platt", "isotonic")
    assert raw_ece > 0.1
    assert calibrated_ece < 0.03


def test_a_step_in_the_truth_is_fitted_by_isotonic_regression_not_platt_scaling() -> None:
    # Below 0.5 a tag is right 20% of the time, above it 90%: no logistic curve has that step.
    rng = np.random.default_rng(1)
    scores = rng.uniform(0, 1, size=(3000, 1))
    truth = (rng.random((3000, 1)) < np.where(scores < 0.5, 0.2, 0.9)).astype(np.float64)

    calibration = fit_calibration(scores, truth, k=1)

    assert calibration.method == "isotonic"
    assert calibration.apply(np.array([0.3]))[0] == pytest.approx(0.2, abs=0.05)
    assert calibration.apply(np.array([0.7]))[0] == pytest.approx(0.9, abs=0.05)


def test_a_calibration_is_strictly_increasing_and_never_certain() -> None:
    # Isotonic regression on these gives flat steps and a top step of exactly 1.
    scores = np.linspace(0, 1, 200)[:, None]
    truth = (scores > 0.5).astype(np.float64)
    calibration = fit_calibration(scores, truth, k=1)
    grid = np.linspace(0, 1, 1001)

    mapped = calibration.apply(grid)

    assert (np.diff(mapped) > 0).all()
    assert mapped.min() >= PROBABILITY_MIN
    assert mapped.max() <= PROBABILITY_MAX < 0.995


def test_too_few_scores_are_left_as_they_are() -> None:
    calibration = fit_calibration(np.array([[0.2], [0.8]]), np.array([[0.0], [1.0]]), k=1)

    assert calibration.method == "identity"


def test_a_calibration_survives_its_stored_parameters() -> None:
    rng = np.random.default_rng(2)
    scores, truth = _overconfident(rng, 500)
    calibration = fit_calibration(scores, truth, k=1)

    restored = Calibration.from_parameters(calibration.to_parameters())

    assert restored.method == calibration.method
    np.testing.assert_allclose(restored.apply(scores), calibration.apply(scores), atol=1e-5)


# One tag, k = 1: cutting after the 1st, 2nd, 3rd, 4th score gives precision 1, 1/2, 2/3, 3/4 and
# F1 0.5, 0.4, 0.667, 0.857.
THRESHOLD_SCORES = np.array([[0.9], [0.8], [0.7], [0.6]])
THRESHOLD_TRUTH = np.array([[1.0], [0.0], [1.0], [1.0]])


def test_without_a_floor_the_threshold_maximises_f1() -> None:
    threshold, f1 = fit_threshold(THRESHOLD_SCORES, THRESHOLD_TRUTH, 1)

    assert f1 == pytest.approx(6 / 7)
    assert threshold == pytest.approx(0.6)


def test_a_precision_floor_keeps_the_best_threshold_that_holds_it() -> None:
    threshold, f1 = fit_threshold(THRESHOLD_SCORES, THRESHOLD_TRUTH, 1, precision_floor=0.9)

    assert f1 == pytest.approx(0.5)
    assert threshold == pytest.approx(0.85)


def test_the_zero_shot_score_never_reaches_one() -> None:
    strongest = calibrated_score(similarity=0.99, lexical=1.0)
    weaker = calibrated_score(similarity=0.45, lexical=0.0)

    assert strongest == pytest.approx(ZERO_SHOT_CEILING)
    assert strongest < 0.995
    assert weaker < strongest
    # Below the knee (the hybrid tagger's default acceptance) scores are as they were.
    assert calibrated_score(similarity=0.25, lexical=0.0) == pytest.approx(0.25)
    assert calibrated_score(similarity=0.45, lexical=0.0) == pytest.approx(0.75)
