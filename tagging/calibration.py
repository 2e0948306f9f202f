"""Scores that mean what they say: a learned score is the estimated probability that a reviewer accepts
the tag (pure numpy and scikit-learn).

Per category, the stacked scores of the training recipes' top k tags (out of fold: no recipe scored by
a model that saw it) are mapped by Platt scaling (a logistic regression on their log-odds) or by
isotonic regression, whichever has the lower Brier score over CALIBRATION_FOLDS folds of the recipes;
neither when both lose to the scores as they are. The population is the top k because those are the tags
a recipe can be shown; the many tags no recipe ever shows would make any mapping look well calibrated.

The mapping is kept strictly increasing (a sliver of the raw score is blended in: isotonic regression has
flat steps), so a threshold moved through it keeps its decisions, and squeezed into
[PROBABILITY_MIN, PROBABILITY_MAX]: a few dozen labels never make a tag certain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

CALIBRATION_FOLDS = 5
MIN_CALIBRATION_PAIRS = 30
STRICTNESS = 1e-3
PROBABILITY_MIN = 0.005
PROBABILITY_MAX = 0.99
PLATT_C = 100.0
ECE_BINS = 10
METHODS = ("identity", "platt", "isotonic")


def top_k_pairs(scores: np.ndarray, truth: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, truth) of each row's k best-scored tags, flattened: the tags a recipe can be shown."""
    if scores.size == 0:
        return np.zeros(0), np.zeros(0)
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return (
        np.take_along_axis(scores, top, axis=1).ravel().astype(np.float64),
        np.take_along_axis(truth, top, axis=1).ravel().astype(np.float64),
    )


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


@dataclass
class Calibration:
    """A strictly increasing map from a category's stacked score to a probability."""

    method: str = "identity"
    a: float = 1.0  # platt: sigmoid(a * logit(score) + b)
    b: float = 0.0
    x: list[float] = field(default_factory=list)  # isotonic: knots, interpolated linearly
    y: list[float] = field(default_factory=list)

    def apply(self, scores: np.ndarray) -> np.ndarray:
        raw = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
        if self.method == "platt":
            mapped = 1.0 / (1.0 + np.exp(-np.clip(self.a * _logit(raw) + self.b, -30, 30)))
        elif self.method == "isotonic" and self.x:
            mapped = np.interp(raw, self.x, self.y)
        else:
            mapped = raw
        strict = (1 - STRICTNESS) * mapped + STRICTNESS * raw
        return PROBABILITY_MIN + (PROBABILITY_MAX - PROBABILITY_MIN) * strict

    def to_parameters(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "a": float(self.a),
            "b": float(self.b),
            "x": [float(v) for v in self.x],
            "y": [float(v) for v in self.y],
        }

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any] | None) -> Calibration:
        if not parameters:
            return cls()
        return cls(
            method=parameters["method"],
            a=parameters["a"],
            b=parameters["b"],
            x=list(parameters["x"]),
            y=list(parameters["y"]),
        )


def _fit_method(method: str, scores: np.ndarray, truth: np.ndarray) -> Calibration:
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=PLATT_C, max_iter=1000).fit(_logit(scores)[:, None], truth)
        a, b = float(model.coef_[0][0]), float(model.intercept_[0])
        # A slope at or below zero would turn the ranking around: the scores carry no usable order.
        return Calibration(method="platt", a=a, b=b) if a > 1e-6 else Calibration()
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, truth)
        return Calibration(method="isotonic", x=list(model.X_thresholds_), y=list(model.y_thresholds_))
    return Calibration()


def fit_calibration(scores: np.ndarray, truth: np.ndarray, k: int, *, groups: np.ndarray | None = None) -> Calibration:
    """The calibration of one category from out-of-fold `scores` (rows: recipes, columns: tags) and the
    0/1 `truth`; `groups` names each row's recipe (a recipe scored twice stays in one fold)."""
    groups = np.arange(len(scores)) if groups is None else np.asarray(groups)
    k = min(k, scores.shape[1]) if scores.ndim == 2 and scores.shape[1] else 1
    pair_scores, pair_truth = top_k_pairs(scores, truth, k)
    if len(pair_scores) < MIN_CALIBRATION_PAIRS or pair_truth.min() == pair_truth.max():
        return Calibration()
    pair_folds = np.repeat(groups, k) % CALIBRATION_FOLDS
    brier = dict.fromkeys(METHODS, 0.0)
    for f in range(CALIBRATION_FOLDS):
        inside, outside = pair_folds != f, pair_folds == f
        if not outside.any():
            continue
        for method in METHODS:
            if pair_truth[inside].min() == pair_truth[inside].max():
                calibration = Calibration()
            else:
                calibration = _fit_method(method, pair_scores[inside], pair_truth[inside])
            brier[method] += float(((calibration.apply(pair_scores[outside]) - pair_truth[outside]) ** 2).sum())
    best = min(METHODS, key=lambda method: (brier[method], METHODS.index(method)))
    return _fit_method(best, pair_scores, pair_truth)


@dataclass(frozen=True)
class ReliabilityBin:
    lower: float
    upper: float
    count: int
    mean_score: float
    accuracy: float


def expected_calibration_error(
    scores: np.ndarray, truth: np.ndarray, bins: int = ECE_BINS
) -> tuple[float, list[ReliabilityBin]]:
    """ECE over `bins` equal-width bins of [0, 1]: the mean over bins of |accuracy - mean score|, each
    weighted by its share of the pairs; and the bins (empty ones included) for a reliability diagram."""
    scores = np.clip(np.asarray(scores, dtype=np.float64).ravel(), 0.0, 1.0)
    truth = np.asarray(truth, dtype=np.float64).ravel()
    index = np.minimum((scores * bins).astype(int), bins - 1)
    total = len(scores)
    ece = 0.0
    table = []
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        mean_score = float(scores[members].mean()) if count else 0.0
        accuracy = float(truth[members].mean()) if count else 0.0
        if count:
            ece += count / total * abs(accuracy - mean_score)
        table.append(
            ReliabilityBin(lower=b / bins, upper=(b + 1) / bins, count=count, mean_score=mean_score, accuracy=accuracy)
        )
    return ece, table
