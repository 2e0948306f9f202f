"""Learning curves, stored: a replay's result (feedback.evaluation.replay) kept for the feedback page, from a
shared dataset (bench/learning_curve.py --save) or from this instance's own gold labels."""

from __future__ import annotations

from collections.abc import Sequence

from feedback.evaluation import replay
from feedback.models import LearningCurve
from feedback.services.labels import User, user_or_none
from feedback.training import labelled_data, precision_floors
from taxonomy.limits import DEFAULT_TAGS_PER_CATEGORY

# The `dataset` of a curve replayed on this instance's gold labels.
GOLD_LABELS = "gold labels"


def learning_curve_store(*, dataset: str, curve: replay.LearningCurveResult, user: User = None) -> LearningCurve:
    return LearningCurve.objects.create(
        dataset=dataset,
        recipes=curve.recipes,
        result=curve.as_json(),
        cv_f1=curve.cv_f1,
        created_by=user_or_none(user=user),
    )


def learning_curve_from_gold_labels(
    *,
    k: int = DEFAULT_TAGS_PER_CATEGORY,
    batch: int = replay.DEFAULT_BATCH,
    limit: int = replay.DEFAULT_LIMIT,
    seeds: Sequence[int] = replay.DEFAULT_SEEDS,
    aggregate: replay.MarginAggregate = replay.DEFAULT_MARGIN_AGGREGATE,
    diverse: bool = False,
    acquisition: replay.Acquisition = replay.DEFAULT_ACQUISITION,
    cv_folds: int = replay.DEFAULT_CV_FOLDS,
    user: User = None,
    progress: replay.Progress | None = None,
) -> LearningCurve:
    """Replay this instance's gold-labelled recipes (every source: imported and reviewed) as the learning
    curve does a dataset, with the taxonomy's active categories and precision floors, and store the curve.
    Raises ReplayError when there are no gold labels or too few to hold some out."""
    labelled = labelled_data()
    if labelled is None:
        raise replay.ReplayError("There are no gold labels to replay: import labelled recipes or review some first.")
    recipes, data, specs = labelled
    curve = replay.learning_curve_replay(
        replay_set=replay.ReplaySet(ids=[str(r.pk) for r in recipes], data=data, categories=specs),
        k=k,
        batch=batch,
        limit=limit,
        seeds=seeds,
        aggregate=aggregate,
        diverse=diverse,
        acquisition=acquisition,
        cv_folds=cv_folds,
        floors=precision_floors(),
        progress=progress,
    )
    return learning_curve_store(dataset=GOLD_LABELS, curve=curve, user=user)
