"""tagging.uncertainty: how unsure the learned tagger is about a recipe, from its calibrated scores and
thresholds (what the review queue and the learning curve sort by)."""

from __future__ import annotations

import numpy as np
import pytest

from tagging.uncertainty import decision_margins


def test_a_score_near_the_threshold_makes_a_recipe_less_sure() -> None:
    probabilities = {"cuisine": np.array([[0.95, 0.02], [0.52, 0.10]])}

    margins = decision_margins(probabilities, {"cuisine": 0.5})

    assert margins.tolist() == pytest.approx([0.45, 0.02])


def test_min_takes_the_most_doubtful_category_and_mean_averages_them() -> None:
    probabilities = {
        "cuisine": np.array([[0.90, 0.05], [0.70, 0.05]]),
        "diet": np.array([[0.42], [0.75]]),
    }
    thresholds = {"cuisine": 0.5, "diet": 0.4}

    assert decision_margins(probabilities, thresholds, aggregate="min").tolist() == pytest.approx([0.02, 0.2])
    assert decision_margins(probabilities, thresholds, aggregate="mean").tolist() == pytest.approx([0.21, 0.275])


def test_categories_without_a_threshold_do_not_count_and_none_left_is_least_sure() -> None:
    probabilities = {"cuisine": np.array([[0.9], [0.1]])}

    assert decision_margins(probabilities, {}).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="aggregate"):
        decision_margins(probabilities, {"cuisine": 0.5}, aggregate="max")  # type: ignore[arg-type]
