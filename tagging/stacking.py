"""How the learned tagger turns its signals into one score per tag: the stacking regression per category,
the threshold fitted for F1 and the calibration of its scores (pure numpy and scikit-learn)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tagging.calibration import Calibration, fit_calibration

# The signals the learned tagger computes for each (recipe, tag), in the order of the stacking weights.
FEATURES = (
    "zero_shot",
    "zero_shot_gap",
    "neighbour_vote",
    "neighbour_mass",
    "prototype",
    "prototype_gap",
    "lexical",
    "prior",
    "text_model",
    "text_model_gap",
)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def fit_threshold(
    scores: np.ndarray, truth: np.ndarray, k: int, precision_floor: float | None = None
) -> tuple[float, float]:
    """The threshold that maximises micro-F1 of "scores >= threshold, at most k per recipe"; with a
    `precision_floor` (staff set one per category), among those keeping precision at or above it when any
    does. Returns (threshold, F1).

    No floor by default: a fixed floor for every category cost recall where F1 wanted it (cuisine,
    occasion) and, applied to the evaluation's baselines too, weakened the references the tagger is
    compared with."""
    m, t = scores.shape
    if m == 0 or t == 0:
        return 1.0, 0.0
    k = min(k, t)
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top_scores = np.take_along_axis(scores, top, axis=1).ravel()
    top_truth = np.take_along_axis(truth, top, axis=1).ravel()
    order = np.argsort(-top_scores, kind="stable")
    sorted_scores, sorted_truth = top_scores[order], top_truth[order]
    true_positives = np.cumsum(sorted_truth)
    predicted = np.arange(1, len(sorted_scores) + 1)
    positives = truth.sum()
    if positives == 0:
        return 1.0, 0.0
    precision = true_positives / predicted
    recall = true_positives / positives
    f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall + 1e-12), 0.0)
    # Only cut between distinct scores, so that equal scores are always kept or dropped together.
    last_of_run = np.append(sorted_scores[1:] < sorted_scores[:-1], True)
    candidates = np.flatnonzero(last_of_run)
    pool = candidates
    if precision_floor is not None:
        floored = candidates[precision[candidates] >= precision_floor]
        pool = floored if len(floored) else candidates
    best = pool[np.argmax(f1[pool])]
    # Cut halfway to the next score down, or at the lowest score of all when every candidate is kept:
    # the edge of the kept scores is where new recipes, scored by a model fitted on all of them, fall
    # just short.
    below = sorted_scores[best + 1] if best + 1 < len(sorted_scores) else scores.min()
    return float((sorted_scores[best] + below) / 2), float(f1[best])


# Groups of signals the stacking regression may use. Which one serves a category best depends on its
# labels (a diet that only ingredient words reveal, a cuisine its neighbours know), so each category
# takes the group, or the average of all groups, with the best cross-validated F1 on its training recipes.
SIGNAL_GROUPS: dict[str, tuple[str, ...]] = {
    "all": FEATURES,
    "text_model": ("text_model",),
    "text": ("text_model", "text_model_gap", "lexical", "prior"),
    "embedding": (
        "zero_shot",
        "zero_shot_gap",
        "neighbour_vote",
        "neighbour_mass",
        "prototype",
        "prototype_gap",
        "prior",
    ),
    "text+neighbours": ("text_model", "text_model_gap", "neighbour_vote", "neighbour_mass", "lexical", "prior"),
}
# Five folds, not three, each time on two assignments of recipes to folds: the choice between groups was
# the noisiest step on small label sets.
STACK_FOLDS = 5
STACK_REPEATS = 2
# Inverse regularisation of the stacking regression: its few signals are on different scales, and
# C=1 shrank the informative ones (cross-validated on the shared datasets, 10 beat 0.05, 1, 100, 1000).
STACK_C = 10.0


@dataclass
class Stack:
    """What fit_stack learned for one category. `threshold` is on calibrated scores."""

    weights: np.ndarray  # over FEATURES
    bias: float
    threshold: float
    f1: float  # cross-validated on the training recipes
    signals: str
    calibration: Calibration


def fit_stack(features: np.ndarray, y: np.ndarray, k: int, precision_floor: float | None = None) -> Stack:
    """The stacking regression, its threshold and its calibration for one category.

    The candidates are a regression on each group of signals and the average of all of them (in log-odds,
    so still one linear model); the one with the best cross-validated F1, over STACK_REPEATS assignments
    of recipes to folds, wins. On a few dozen labelled recipes the choice of one group is noisy, and the
    average often generalises better."""
    from sklearn.linear_model import LogisticRegression

    n, t, _ = features.shape
    rng = np.random.default_rng(0)
    folds = [np.arange(n) % STACK_FOLDS] + [rng.permutation(n) % STACK_FOLDS for _ in range(STACK_REPEATS - 1)]
    # group -> logits (repeats * n, t): cross-validated on each fold assignment, stacked.
    logits_by_group: dict[str, np.ndarray] = {}
    for group, names in SIGNAL_GROUPS.items():
        columns = [FEATURES.index(name) for name in names]
        stacked = []
        for fold in folds:
            logits = np.zeros((n, t), dtype=np.float64)
            for f in range(STACK_FOLDS):
                inside, outside = fold != f, fold == f
                y_in = y[inside].ravel()
                if y_in.min() == y_in.max():
                    continue
                model = LogisticRegression(C=STACK_C, max_iter=500).fit(
                    features[inside][:, :, columns].reshape(-1, len(columns)), y_in
                )
                logits[outside] = model.decision_function(
                    features[outside][:, :, columns].reshape(-1, len(columns))
                ).reshape(-1, t)
            stacked.append(logits)
        logits_by_group[group] = np.concatenate(stacked)
    y_repeated = np.concatenate([y] * len(folds))
    scored = [
        (fit_threshold(logits, y_repeated, k, precision_floor)[1], group) for group, logits in logits_by_group.items()
    ]
    best_f1, best_group = max(scored)
    average = np.mean(list(logits_by_group.values()), axis=0)
    average_f1 = fit_threshold(average, y_repeated, k, precision_floor)[1]
    chosen = list(logits_by_group) if average_f1 > best_f1 + 1e-9 else [best_group]
    weights = np.zeros(len(FEATURES), dtype=np.float64)
    bias = 0.0
    for group in chosen:
        columns = [FEATURES.index(name) for name in SIGNAL_GROUPS[group]]
        model = LogisticRegression(C=STACK_C, max_iter=500).fit(
            features[:, :, columns].reshape(-1, len(columns)), y.ravel()
        )
        weights[columns] += model.coef_[0] / len(chosen)
        bias += float(model.intercept_[0]) / len(chosen)
    # The threshold and the calibration come from the cross-validated scores: in-sample ones would be
    # optimistic. The calibration is strictly increasing, so fitting the threshold after it keeps the
    # decisions of a threshold fitted before it.
    raw = sigmoid(np.mean([logits_by_group[group] for group in chosen], axis=0))
    calibration = fit_calibration(raw, y_repeated, k, groups=np.tile(np.arange(n), len(folds)))
    threshold, f1 = fit_threshold(calibration.apply(raw), y_repeated, k, precision_floor)
    return Stack(
        weights=weights.astype(np.float32),
        bias=bias,
        threshold=threshold,
        f1=f1,
        signals="average" if len(chosen) > 1 else best_group,
        calibration=calibration,
    )
