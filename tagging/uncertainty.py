"""How unsure the learned tagger is about a recipe: how close its calibrated scores come to its thresholds
(pure numpy). The review queue shows the least sure recipes first, and the learning curve
(feedback.evaluation.replay) measures what reviewing them in that order teaches.

A tag's decision is "shown" when its calibrated probability reaches the category's threshold. The margin
|probability - threshold| says how far a tag is from the other decision; a recipe's margin in a category is
that of its closest tag, and across categories the margins are combined by MARGIN_AGGREGATES:
- "min": the recipe's single most doubtful decision (one coin-flip tag makes a recipe worth reviewing);
- "mean": the average over its categories (a recipe doubtful everywhere before one doubtful once).
Lower is less sure. Categories the tagger has not learned (too few labels) have no calibrated score and
no threshold, so they do not count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np

MarginAggregate = Literal["min", "mean"]
MARGIN_AGGREGATES: tuple[MarginAggregate, ...] = ("min", "mean")
# Replayed on themealdb (bench/learning_curve.py), reviewing by the mean margin beat random order at every batch
# while the min margin fell behind it: one category of sparse, noisy tags (keywords) always has some tag near
# its threshold, so "min" kept choosing recipes for that category's noise.
DEFAULT_MARGIN_AGGREGATE: MarginAggregate = "mean"
# A recipe no learned category scores is as unsure as can be: nothing learned speaks for it.
NO_MARGIN = 0.0


def category_margins(probabilities: Mapping[str, np.ndarray], thresholds: Mapping[str, float]) -> np.ndarray:
    """Per recipe and learned category (columns in the order of `probabilities`, categories without a
    threshold or tags left out): the margin of the category's closest tag to its threshold. (m, 0) when no
    category is learned."""
    per_category = [
        np.abs(np.asarray(matrix, dtype=np.float64) - thresholds[slug]).min(axis=1)
        for slug, matrix in probabilities.items()
        if slug in thresholds and matrix.ndim == 2 and matrix.shape[1] > 0
    ]
    if not per_category:
        rows = max((len(matrix) for matrix in probabilities.values()), default=0)
        return np.zeros((rows, 0))
    return np.stack(per_category, axis=1)


def decision_margins(
    probabilities: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float],
    *,
    aggregate: MarginAggregate = DEFAULT_MARGIN_AGGREGATE,
) -> np.ndarray:
    """Per recipe (row of every matrix in `probabilities`: category slug -> (m, T) calibrated probabilities),
    the margin of its scores to the categories' `thresholds`; lower is less sure."""
    if aggregate not in MARGIN_AGGREGATES:
        raise ValueError(f"Unknown margin aggregate {aggregate!r}: the choices are {', '.join(MARGIN_AGGREGATES)}.")
    stacked = category_margins(probabilities, thresholds)
    if stacked.shape[1] == 0:
        return np.full(len(stacked), NO_MARGIN)
    return stacked.min(axis=1) if aggregate == "min" else stacked.mean(axis=1)
