"""Calibrating the confidence a model states per tag on gold labels: what share of the tags it gave a stated
confidence were right, as a monotone table (prompts.rendering.confidence_calibrated reads it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from feedback.evaluation.errors import EvaluationError
from feedback.evaluation.metrics import BinTally
from feedback.models import EvaluationRun
from prompts.models import LLMSource

# Fewer (stated, right or wrong) pairs than this calibrate nothing: the table would follow the noise.
MIN_PAIRS = 30
# Points kept in the table: enough for the shape, small enough to read in admin.
TABLE_POINTS = 11


def stated_pairs(
    *, stated: Sequence[Mapping[str, Mapping[str, float]]], gold: Sequence[Mapping[str, set[str]]]
) -> tuple[np.ndarray, np.ndarray]:
    """(stated confidences, 1 where the tag is a gold one) over every recipe's returned tags that came with one."""
    scores: list[float] = []
    truth: list[float] = []
    for recipe_stated, labels in zip(stated, gold, strict=True):
        for category, tags in recipe_stated.items():
            for tag, confidence in tags.items():
                scores.append(float(confidence))
                truth.append(float(tag in labels.get(category, set())))
    return np.asarray(scores, dtype=np.float64), np.asarray(truth, dtype=np.float64)


def stated_histogram(
    *, stated: Sequence[Mapping[str, Mapping[str, float]]], gold: Sequence[Mapping[str, set[str]]]
) -> dict[str, list[float]]:
    """`stated_pairs` counted by confidence: repr of the stated confidence -> [tags, gold ones]. A model states
    few distinct confidences, so a dataset of any size counts in a few entries, and chunks' counts add up
    (`stated_merge`)."""
    counts: dict[str, list[float]] = {}
    scores, truth = stated_pairs(stated=stated, gold=gold)
    for score, right in zip(scores.tolist(), truth.tolist(), strict=True):
        entry = counts.setdefault(repr(float(score)), [0, 0])
        entry[0] += 1
        entry[1] += right
    return counts


def stated_merge(total: dict[str, list[float]], part: Mapping[str, Sequence[float]]) -> None:
    for key, (n, right) in part.items():
        entry = total.setdefault(key, [0, 0])
        entry[0] += n
        entry[1] += right


def confidence_calibration_fit(*, scores: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """An increasing table of (stated confidence, observed precision) points fitted by isotonic regression,
    with the expected calibration error of the stated confidences before and after it; no table with fewer
    than MIN_PAIRS pairs."""
    counts: dict[str, list[float]] = {}
    stated_merge(
        counts,
        {
            repr(float(score)): [float(n), float(truth[scores == score].sum())]
            for score, n in zip(*np.unique(np.asarray(scores, dtype=np.float64), return_counts=True), strict=True)
        },
    )
    return confidence_calibration_fit_counts(counts=counts)


def confidence_calibration_fit_counts(*, counts: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """`confidence_calibration_fit` of pairs counted by confidence (`stated_histogram`): isotonic regression
    merges equal confidences into their weighted mean anyway, so the table is the one all pairs give."""
    values = np.asarray([float(key) for key in counts], dtype=np.float64)
    weights = np.asarray([float(n) for n, _ in counts.values()], dtype=np.float64)
    right = np.asarray([float(r) for _, r in counts.values()], dtype=np.float64)
    pairs = int(weights.sum())
    report: dict[str, Any] = {"pairs": pairs, "table": None, "ece_stated": None, "ece_calibrated": None}
    if pairs == 0:
        return report
    order = np.argsort(values)
    values, weights, right = values[order], weights[order], right[order]
    precision = right / weights
    report["ece_stated"] = round(BinTally().add(values, precision, weights=weights).ece()[0], 4)
    if pairs < MIN_PAIRS:
        return report
    # Imported here, as the taggers import scikit-learn: it costs every process that merely loads the URLs
    # (web, worker, management commands) a second or two.
    from sklearn.isotonic import IsotonicRegression

    model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(
        values, precision, sample_weight=weights
    )
    grid = np.linspace(0.0, 1.0, TABLE_POINTS)
    fitted = np.maximum.accumulate(model.predict(grid))
    report["table"] = [[round(float(x), 4), round(float(y), 4)] for x, y in zip(grid, fitted, strict=True)]
    calibrated = np.interp(values, grid, fitted)
    report["ece_calibrated"] = round(BinTally().add(calibrated, precision, weights=weights).ece()[0], 4)
    return report


def source_calibration_apply(*, source: str, run: EvaluationRun) -> list[list[float]]:
    """Give the LLM source `source` the calibration table fitted by evaluation `run` (its stated confidences
    on that run's gold labels); returns the table. Raises EvaluationError when the run has none or the
    source has no row to keep it on."""
    confidence = (run.metrics.get("llm") or {}).get("confidence") or {}
    table = confidence.get("table")
    if not table:
        raise EvaluationError(
            f"Evaluation #{run.pk} fitted no confidence calibration ({confidence.get('pairs', 0)} tags with a "
            f"stated confidence; at least {MIN_PAIRS} are needed)."
        )
    if run.config.get("source") != source:
        raise EvaluationError(
            f"Evaluation #{run.pk} measured the source {run.config.get('source')!r}, not {source!r}: a calibration "
            "belongs to the model it was measured on."
        )
    updated = LLMSource.objects.filter(name=source).update(confidence_calibration=table)
    if not updated:
        raise EvaluationError(
            f"The source {source!r} comes from settings and has no row to keep a calibration on: add an LLM "
            f"source named {source!r} in admin (it replaces the settings), then apply the calibration again."
        )
    return [list(point) for point in table]
