"""feedback.evaluation.replay: a labelled set replayed as if reviewers corrected it a batch at a time, least sure
first and in random order, the tagger refitted after each batch (no database: a synthetic set)."""

from __future__ import annotations

import pytest

from feedback.evaluation.datasets import fold_of
from feedback.evaluation.replay import (
    HELD_OUT_FOLD,
    HELD_OUT_FOLDS,
    LearningCurveResult,
    ReplayError,
    learning_curve_replay,
    learning_curve_targets,
)
from feedback.tests.learning_curve_data import synthetic_replay_set


@pytest.fixture(scope="module")
def curve() -> LearningCurveResult:
    replay_set, _ = synthetic_replay_set(recipes=60)
    return learning_curve_replay(replay_set=replay_set, k=1, batch=10, limit=30, seeds=(0, 1), cv_folds=2)


def test_it_scores_a_point_per_batch_as_requested(curve: LearningCurveResult) -> None:
    assert [p.reviews for p in curve.points] == [10, 20, 30]
    assert len(curve.uncertainty_reviewed) == 30
    assert len(set(curve.uncertainty_reviewed)) == 30, "no recipe is reviewed twice"


def test_every_f1_is_a_proportion_and_the_random_order_is_the_mean_of_its_seeds(curve: LearningCurveResult) -> None:
    for point in curve.points:
        assert 0.0 <= point.uncertainty_f1 <= 1.0
        assert len(point.random_f1_runs) == 2
        assert point.random_f1 == pytest.approx(sum(point.random_f1_runs) / 2)
    assert curve.cv_f1 is not None
    assert 0.0 < curve.cv_f1 <= 1.0


def test_the_held_out_recipes_are_never_reviewed(curve: LearningCurveResult) -> None:
    assert curve.held_out + curve.pool == curve.recipes == 60
    assert all(fold_of(rid, HELD_OUT_FOLDS) != HELD_OUT_FOLD for rid in curve.uncertainty_reviewed)


def test_the_uncertainty_order_starts_from_the_random_batch_and_then_chooses_otherwise() -> None:
    replay_set, _ = synthetic_replay_set(recipes=60)

    uncertain = learning_curve_replay(replay_set=replay_set, k=1, batch=10, limit=20, seeds=(0,), cv_folds=0)
    random_first = learning_curve_replay(replay_set=replay_set, k=1, batch=20, limit=20, seeds=(0,), cv_folds=0)

    assert uncertain.cv_f1 is None, "cv_folds 0 skips the cross-validation"
    # Both orders start from the first seed's random batch: nothing was learned to ask.
    assert uncertain.points[0].uncertainty_f1 == uncertain.points[0].random_f1
    assert uncertain.uncertainty_reviewed[:10] == random_first.uncertainty_reviewed[:10]
    assert set(uncertain.uncertainty_reviewed[10:]) != set(random_first.uncertainty_reviewed[10:])


def test_a_pool_smaller_than_the_limit_ends_the_curve_at_the_whole_pool() -> None:
    replay_set, _ = synthetic_replay_set(recipes=40)

    curve = learning_curve_replay(replay_set=replay_set, k=1, batch=15, limit=1000, seeds=(0,), cv_folds=0)

    assert [p.reviews for p in curve.points] == [15, 30, curve.pool]
    assert curve.pool < 45


def test_it_refuses_options_that_make_no_curve() -> None:
    replay_set, _ = synthetic_replay_set(recipes=40)

    with pytest.raises(ReplayError, match="at least 1"):
        learning_curve_replay(replay_set=replay_set, k=1, batch=0, seeds=(0,))
    with pytest.raises(ReplayError, match="seed"):
        learning_curve_replay(replay_set=replay_set, k=1, seeds=())
    with pytest.raises(ReplayError, match="cv_folds"):
        learning_curve_replay(replay_set=replay_set, k=1, seeds=(0,), cv_folds=1)


def test_the_targets_read_the_curve(curve: LearningCurveResult) -> None:
    targets = learning_curve_targets(curve)

    assert next(t.met for t in targets) == (
        curve.points[-1].uncertainty_f1 > curve.points[0].uncertainty_f1
        and curve.points[-1].random_f1 > curve.points[0].random_f1
    )
    assert len(targets) == 3, "with a cross-validated F1, its target too"
    assert "within 0.02" in targets[2].name
