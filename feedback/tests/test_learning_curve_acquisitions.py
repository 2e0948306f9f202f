"""feedback.evaluation.replay: the acquisitions that choose the uncertainty order's next batch (rotation over the
categories, density, exploration) and random orders measured beforehand (no database: a synthetic set)."""

from __future__ import annotations

import numpy as np
import pytest

from feedback.evaluation.replay import (
    LearningCurveResult,
    ReplayError,
    learning_curve_replay,
    pool_density,
    rotation_keys,
)
from feedback.tests.learning_curve_data import synthetic_replay_set


def test_rotation_takes_each_categorys_least_sure_recipe_in_turn() -> None:
    # The first category's margins always run smaller: sorted by the smallest margin, it would take every place.
    per_category = np.array([[0.01, 0.30], [0.02, 0.40], [0.03, 0.05], [0.04, 0.35]])

    order = np.argsort(rotation_keys(per_category), kind="stable").tolist()

    assert order == [0, 2, 1, 3]


def test_a_recipe_in_a_cluster_is_denser_than_an_outlier_and_rows_outside_the_pool_have_none() -> None:
    rng = np.random.default_rng(0)
    centre = rng.normal(size=8)
    cluster = [centre + 0.1 * rng.normal(size=8) for _ in range(12)]
    outlier = -centre
    vectors = np.array([*cluster, outlier, centre])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    density = pool_density(vectors, list(range(13)))

    assert density[:12].min() > 0.9
    assert density[12] < 0
    assert density[13] == 0.0, "the last row is not in the pool"


def test_an_explored_batch_takes_its_random_share_first_and_random_orders_measured_beforehand_are_reused() -> None:
    replay_set, _ = synthetic_replay_set(recipes=60)

    explored = learning_curve_replay(
        replay_set=replay_set,
        k=1,
        batch=10,
        limit=20,
        seeds=(0,),
        cv_folds=0,
        acquisition="explore",
        random_runs={0: [0.25, 0.5]},
    )
    random_first = learning_curve_replay(
        replay_set=replay_set, k=1, batch=20, limit=20, seeds=(0,), cv_folds=0, random_runs={0: [0.75]}
    )

    assert [p.random_f1 for p in explored.points] == [0.25, 0.5]
    assert explored.acquisition == "explore"
    # 20% of the second batch: the next two recipes of the random order, then the least sure.
    assert explored.uncertainty_reviewed[:12] == random_first.uncertainty_reviewed[:12]
    assert explored.uncertainty_reviewed[12:] != random_first.uncertainty_reviewed[12:]


def test_it_refuses_an_unknown_acquisition() -> None:
    replay_set, _ = synthetic_replay_set(recipes=40)

    with pytest.raises(ReplayError, match="acquisition"):
        learning_curve_replay(replay_set=replay_set, k=1, seeds=(0,), acquisition="loudest")  # type: ignore[arg-type]


def test_a_curve_stored_before_acquisitions_were_named_reads_as_ordered_by_the_margin() -> None:
    stored = {
        "recipes": 60,
        "held_out": 12,
        "pool": 48,
        "batch": 10,
        "limit": 20,
        "k": 1,
        "seeds": [0],
        "aggregate": "mean",
        "diverse": False,
        "cv_folds": 0,
        "cv_f1": None,
        "points": [{"reviews": 10, "uncertainty_f1": 0.5, "random_f1": 0.5, "random_f1_runs": [0.5]}],
    }

    curve = LearningCurveResult.from_json(stored)

    assert curve.acquisition == "margin"
    assert curve.as_json()["acquisition"] == "margin"
