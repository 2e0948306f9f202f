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

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

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


@dataclass
class CategoryTally:
    """The additive counts behind one category's metrics: adding two recipes' tallies gives the tally of both."""

    tp: int = 0
    predicted: int = 0
    gold: int = 0
    support: int = 0
    covered: int = 0
    # tag slug -> [true positives, false positives, false negatives], for the macro-F1.
    tags: dict[str, list[int]] = field(default_factory=dict)

    def metrics(self) -> CategoryMetrics:
        precision, recall = _ratio(self.tp, self.predicted), _ratio(self.tp, self.gold)
        macro = [_f1(_ratio(tp, tp + fp), _ratio(tp, tp + fn)) for tp, fp, fn in self.tags.values()]
        return CategoryMetrics(
            precision=precision,
            recall=recall,
            f1=_f1(precision, recall),
            macro_f1=sum(macro) / len(macro) if macro else 0.0,
            coverage=_ratio(self.covered, self.support),
            support=self.support,
            true_positives=self.tp,
            predicted=self.predicted,
            gold=self.gold,
        )


@dataclass
class ScoreTally:
    """What `score` counts, kept additive: recipes are added a chunk at a time (`add`), chunks' tallies merged
    (`merge`, also from their JSON), and the report read at the end, the same as scoring all recipes at once."""

    categories: dict[str, CategoryTally] = field(default_factory=dict)
    unknown: int = 0
    over_k: int = 0

    def add(
        self,
        *,
        gold: Sequence[Labels],
        predicted: Sequence[Labels],
        categories: Sequence[str],
        k: int,
        taxonomy: dict[str, set[str]] | None = None,
    ) -> ScoreTally:
        if len(gold) != len(predicted):
            raise ValueError("gold and predicted must describe the same recipes")
        for category in categories:
            tally = self.categories.setdefault(category, CategoryTally())
            known = taxonomy.get(category, set()) if taxonomy is not None else None
            for gold_labels, predicted_labels in zip(gold, predicted, strict=True):
                g = gold_labels.get(category, set())
                returned = predicted_labels.get(category, ())
                p = set(returned)
                if len(returned) > k:
                    self.over_k += 1
                if known is not None:
                    self.unknown += len(p - known)
                tally.tp += len(p & g)
                tally.predicted += len(p)
                tally.gold += len(g)
                if g:
                    tally.support += 1
                    tally.covered += bool(p)
                for tag in p & g:
                    tally.tags.setdefault(tag, [0, 0, 0])[0] += 1
                for tag in p - g:
                    tally.tags.setdefault(tag, [0, 0, 0])[1] += 1
                for tag in g - p:
                    tally.tags.setdefault(tag, [0, 0, 0])[2] += 1
        return self

    def merge(self, other: ScoreTally) -> ScoreTally:
        for category, theirs in other.categories.items():
            mine = self.categories.setdefault(category, CategoryTally())
            mine.tp, mine.predicted, mine.gold = (
                mine.tp + theirs.tp,
                mine.predicted + theirs.predicted,
                mine.gold + theirs.gold,
            )
            mine.support, mine.covered = mine.support + theirs.support, mine.covered + theirs.covered
            for tag, counts in theirs.tags.items():
                kept = mine.tags.setdefault(tag, [0, 0, 0])
                for i in range(3):
                    kept[i] += counts[i]
        self.unknown += other.unknown
        self.over_k += other.over_k
        return self

    def report(self, categories: Sequence[str]) -> Report:
        results = {category: self.categories.get(category, CategoryTally()).metrics() for category in categories}
        total_tp = sum(r.true_positives for r in results.values())
        total_pred = sum(r.predicted for r in results.values())
        total_gold = sum(r.gold for r in results.values())
        precision, recall = _ratio(total_tp, total_pred), _ratio(total_tp, total_gold)
        return Report(
            categories=results,
            overall_precision=precision,
            overall_recall=recall,
            overall_f1=_f1(precision, recall),
            unknown_tags=self.unknown,
            over_k=self.over_k,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "categories": {
                slug: {
                    "tp": t.tp,
                    "predicted": t.predicted,
                    "gold": t.gold,
                    "support": t.support,
                    "covered": t.covered,
                    "tags": t.tags,
                }
                for slug, t in self.categories.items()
            },
            "unknown": self.unknown,
            "over_k": self.over_k,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScoreTally:
        return cls(
            categories={
                slug: CategoryTally(
                    tp=t["tp"],
                    predicted=t["predicted"],
                    gold=t["gold"],
                    support=t["support"],
                    covered=t["covered"],
                    tags={tag: list(counts) for tag, counts in t["tags"].items()},
                )
                for slug, t in data["categories"].items()
            },
            unknown=data["unknown"],
            over_k=data["over_k"],
        )


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
    tally = ScoreTally().add(gold=gold, predicted=predicted, categories=categories, k=k, taxonomy=taxonomy)
    return tally.report(categories)


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


class BootstrapStream:
    """The bootstrap of `bootstrap_margin`, fed recipes in dataset order a block at a time: each resample's
    multinomial weights are drawn one recipe after another (recipe i gets Binomial(left, 1 / (n - i)) of the
    draws the resample has left, which is the multinomial's distribution), so the (resamples, n) weight matrix
    never exists: 100,000 recipes cost the same memory as 100. Blocks of any size give the same figures."""

    def __init__(self, *, n: int, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0, width: int = 2) -> None:
        self.n, self.seen = n, 0
        self.rng = np.random.default_rng(seed)
        self.left = np.full(resamples, n, dtype=np.int64)
        # Per resample, the weighted sums of the counts of `width` predictors side by side.
        self.sums = np.zeros((resamples, width, 3), dtype=np.float64)

    def add(self, counts: np.ndarray) -> None:
        """`counts`: (m, width, 3), the next m recipes' recipe_counts rows of each predictor."""
        m = len(counts)
        weights = np.empty((len(self.left), m), dtype=np.float64)
        for j in range(m):
            remaining = self.n - self.seen - j
            drawn = self.left if remaining == 1 else self.rng.binomial(self.left, 1.0 / remaining)
            weights[:, j] = drawn
            self.left = self.left - drawn
        self.seen += m
        self.sums += np.einsum("bm,mwc->bwc", weights, counts.astype(np.float64))

    def margin(self, *, first: int = 0, second: int = 1, level: float = 0.95) -> tuple[float, float, float]:
        """F1 of predictor `first` minus predictor `second`'s: (standard deviation, lower, upper) of the central
        `level` interval over the resamples."""
        if self.seen != self.n:
            raise ValueError(f"the bootstrap was given {self.seen} recipes of {self.n}")
        if self.n == 0:
            return 0.0, 0.0, 0.0
        margins = _f1_of_counts(self.sums[:, first]) - _f1_of_counts(self.sums[:, second])
        tail = (1 - level) / 2 * 100
        lower, upper = np.percentile(margins, [tail, 100 - tail])
        return float(margins.std()), float(lower), float(upper)


def bootstrap_margin(
    a: np.ndarray, b: np.ndarray, *, resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """F1(a) - F1(b) over `resamples` bootstrap resamples of the recipes (rows of recipe_counts, the same
    recipes in both): (standard deviation, lower, upper) of the central `level` interval."""
    stream = BootstrapStream(n=len(a), resamples=resamples, seed=seed)
    for start in range(0, len(a), 1000):
        stream.add(np.stack([a[start : start + 1000], b[start : start + 1000]], axis=1))
    return stream.margin(level=level)


class BinTally:
    """The expected calibration error's bins (tagging.calibration.expected_calibration_error: ECE_BINS equal
    bins of [0, 1], scores clipped), kept as additive sums so chunks' pairs can be counted apart and merged."""

    def __init__(self, bins: int = 10) -> None:
        self.count = np.zeros(bins, dtype=np.int64)
        self.score_sum = np.zeros(bins, dtype=np.float64)
        self.truth_sum = np.zeros(bins, dtype=np.float64)

    def add(
        self, scores: Sequence[float] | np.ndarray, truth: Sequence[float] | np.ndarray, weights: Any = None
    ) -> BinTally:
        bins = len(self.count)
        clipped = np.clip(np.asarray(scores, dtype=np.float64).ravel(), 0.0, 1.0)
        right = np.asarray(truth, dtype=np.float64).ravel()
        weight = np.ones_like(clipped) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
        index = np.minimum((clipped * bins).astype(int), bins - 1)
        self.count += np.bincount(index, weights=weight, minlength=bins).astype(np.int64)
        self.score_sum += np.bincount(index, weights=clipped * weight, minlength=bins)
        self.truth_sum += np.bincount(index, weights=right * weight, minlength=bins)
        return self

    def merge(self, other: BinTally) -> BinTally:
        self.count += other.count
        self.score_sum += other.score_sum
        self.truth_sum += other.truth_sum
        return self

    @property
    def pairs(self) -> int:
        return int(self.count.sum())

    def ece(self) -> tuple[float, list[tuple[float, float, int, float, float]]]:
        """(ECE, [(lower, upper, count, mean score, accuracy) per bin]) as expected_calibration_error gives them."""
        bins, total = len(self.count), self.pairs
        ece, table = 0.0, []
        for b in range(bins):
            count = int(self.count[b])
            mean_score = float(self.score_sum[b] / count) if count else 0.0
            accuracy = float(self.truth_sum[b] / count) if count else 0.0
            if count:
                ece += count / total * abs(accuracy - mean_score)
            table.append((b / bins, (b + 1) / bins, count, mean_score, accuracy))
        return ece, table

    def as_json(self) -> list[list[float]]:
        return [[float(n) for n in self.count], self.score_sum.tolist(), self.truth_sum.tolist()]

    @classmethod
    def from_json(cls, data: list[list[float]]) -> BinTally:
        tally = cls(len(data[0]))
        tally.count = np.asarray(data[0], dtype=np.int64)
        tally.score_sum = np.asarray(data[1], dtype=np.float64)
        tally.truth_sum = np.asarray(data[2], dtype=np.float64)
        return tally
