"""Tagging quality, computed the same way for the tagger and for every baseline.

Per category, micro-averaged over recipes: precision = correct tags / returned tags, recall = correct
tags / gold tags, F1 their harmonic mean. Macro-F1 averages the F1 of each tag seen in the gold labels
or the predictions. Coverage: the share of recipes with gold tags in the category that got at least
one tag. Adherence: returned tags that are not in the taxonomy, and (recipe, category) pairs with more
than k tags; both must be 0.

Comparisons with the baselines: the margin of F1 over the best baseline in each category, with a bootstrap
interval over the recipes (the same resamples for both sides).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

Labels = dict[str, set[str]]  # category slug -> tag slugs
BOOTSTRAP_RESAMPLES = 1000


@dataclass
class CategoryMetrics:
    precision: float
    recall: float
    f1: float
    macro_f1: float
    coverage: float
    support: int  # recipes with gold tags in this category
    true_positives: int = 0
    predicted: int = 0
    gold: int = 0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "macro_f1": round(self.macro_f1, 4),
            "coverage": round(self.coverage, 4),
            "support": self.support,
        }


@dataclass
class Report:
    categories: dict[str, CategoryMetrics]
    overall_precision: float
    overall_recall: float
    overall_f1: float
    unknown_tags: int = 0
    over_k: int = 0
    extra: dict[str, object] = field(default_factory=dict)


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def score(
    *,
    gold: Sequence[Labels],
    predicted: Sequence[Labels],
    categories: Sequence[str],
    k: int,
    taxonomy: dict[str, set[str]] | None = None,
) -> Report:
    """Compare `predicted` with `gold` recipe by recipe, over `categories`.

    `taxonomy` (category -> known tag slugs), when given, counts returned tags outside it.
    """
    if len(gold) != len(predicted):
        raise ValueError("gold and predicted must describe the same recipes")
    results: dict[str, CategoryMetrics] = {}
    total_tp = total_pred = total_gold = 0
    unknown = over_k = 0
    for category in categories:
        tp = n_pred = n_gold = support = covered = 0
        per_tag: Counter[tuple[str, str]] = Counter()
        for gold_labels, predicted_labels in zip(gold, predicted, strict=True):
            g = gold_labels.get(category, set())
            p = set(predicted_labels.get(category, set()))
            if len(predicted_labels.get(category, ())) > k:
                over_k += 1
            if taxonomy is not None:
                unknown += len(p - taxonomy.get(category, set()))
            tp += len(p & g)
            n_pred += len(p)
            n_gold += len(g)
            if g:
                support += 1
                covered += bool(p)
            for tag in p & g:
                per_tag[("tp", tag)] += 1
            for tag in p - g:
                per_tag[("fp", tag)] += 1
            for tag in g - p:
                per_tag[("fn", tag)] += 1
        precision, recall = _ratio(tp, n_pred), _ratio(tp, n_gold)
        tags = {tag for (_, tag) in per_tag}
        macro = [
            _f1(
                _ratio(per_tag[("tp", t)], per_tag[("tp", t)] + per_tag[("fp", t)]),
                _ratio(per_tag[("tp", t)], per_tag[("tp", t)] + per_tag[("fn", t)]),
            )
            for t in tags
        ]
        results[category] = CategoryMetrics(
            precision=precision,
            recall=recall,
            f1=_f1(precision, recall),
            macro_f1=sum(macro) / len(macro) if macro else 0.0,
            coverage=_ratio(covered, support),
            support=support,
            true_positives=tp,
            predicted=n_pred,
            gold=n_gold,
        )
        total_tp, total_pred, total_gold = total_tp + tp, total_pred + n_pred, total_gold + n_gold
    precision, recall = _ratio(total_tp, total_pred), _ratio(total_tp, total_gold)
    return Report(
        categories=results,
        overall_precision=precision,
        overall_recall=recall,
        overall_f1=_f1(precision, recall),
        unknown_tags=unknown,
        over_k=over_k,
    )


def recipe_counts(*, gold: Sequence[Labels], predicted: Sequence[Labels], category: str) -> np.ndarray:
    """(n, 3): per recipe, correct tags, returned tags and gold tags in `category`."""
    counts = np.zeros((len(gold), 3), dtype=np.float64)
    for i, (gold_labels, predicted_labels) in enumerate(zip(gold, predicted, strict=True)):
        g, p = gold_labels.get(category, set()), set(predicted_labels.get(category, set()))
        counts[i] = (len(p & g), len(p), len(g))
    return counts


def _f1_of_counts(counts: np.ndarray) -> np.ndarray:
    """Micro-F1 from summed counts (..., 3): 2 TP / (returned + gold)."""
    denominator = counts[..., 1] + counts[..., 2]
    return np.where(denominator > 0, 2 * counts[..., 0] / np.where(denominator > 0, denominator, 1), 0.0)


def bootstrap_margin(
    a: np.ndarray, b: np.ndarray, *, resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """F1(a) - F1(b) over `resamples` bootstrap resamples of the recipes (rows of recipe_counts, the same
    recipes in both): (standard deviation, lower, upper) of the central `level` interval."""
    n = len(a)
    if n == 0:
        return 0.0, 0.0, 0.0
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)  # (B, n)
    margins = _f1_of_counts(weights @ a) - _f1_of_counts(weights @ b)
    tail = (1 - level) / 2 * 100
    lower, upper = np.percentile(margins, [tail, 100 - tail])
    return float(margins.std()), float(lower), float(upper)
