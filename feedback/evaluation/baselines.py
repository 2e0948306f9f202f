"""Reference taggers that the learned similarity tagger must beat, each fitted on the same training
recipes and judged by the same rule: per category, tags scoring at or above a threshold, at most k per
recipe.

Each baseline is tuned for its own best F1, not held to the tagger's rules: its threshold per category
maximises F1 (no precision floor) on out-of-fold scores of the training recipes, from INNER_FOLDS inner
folds (each scored by the baseline fitted on the others). The recipes it is then scored on never take
part, and neither does a training recipe's own label in its own score.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autotagger.recipe_text import RecipeText
from tagging.learning import ArrayNeighbours, CategorySpec, TextClassifier
from tagging.stacking import fit_threshold


@dataclass
class Split:
    """Recipes of one side of a fold: embeddings, texts and per-category (n, T) label matrices."""

    embeddings: np.ndarray
    texts: list[RecipeText]
    labels: dict[str, np.ndarray]


INNER_FOLDS = 5


def split_rows(split: Split, rows: np.ndarray) -> Split:
    """The recipes of `split` at `rows`."""
    return Split(
        embeddings=split.embeddings[rows],
        texts=[split.texts[i] for i in rows],
        labels={slug: matrix[rows] for slug, matrix in split.labels.items()},
    )


class Baseline(ABC):
    name = "baseline"

    def fit(self, train: Split, categories: Sequence[CategorySpec], k: int) -> None:
        """Tune the thresholds by inner cross-validation on `train`, then fit on all of it."""
        self.categories = list(categories)
        out_of_fold = self.inner_scores(train)
        self.thresholds: dict[str, float] = {
            category.slug: fit_threshold(out_of_fold[category.slug], train.labels[category.slug], k)[0]
            for category in self.categories
        }
        self._fit(train)

    def inner_scores(self, train: Split) -> dict[str, np.ndarray]:
        """Category slug -> (n, T) scores of the training recipes, each from a copy of this baseline
        fitted on the other inner folds."""
        n = len(train.texts)
        folds = min(INNER_FOLDS, n)
        scores = {c.slug: np.zeros((n, len(c.tags)), dtype=np.float64) for c in self.categories}
        if folds < 2:
            return scores
        fold = np.random.default_rng(0).permutation(n) % folds
        for f in range(folds):
            inside, outside = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            inner = type(self)()
            inner.categories = self.categories
            inner._fit(split_rows(train, inside))
            for slug, matrix in inner._scores(split_rows(train, outside)).items():
                scores[slug][outside] = matrix
        return scores

    def predict(self, test: Split, k: int) -> list[dict[str, set[str]]]:
        scores = self._scores(test)
        predictions: list[dict[str, set[str]]] = [{} for _ in range(len(test.texts))]
        for category in self.categories:
            matrix, threshold = scores[category.slug], self.thresholds[category.slug]
            for i, row in enumerate(matrix):
                order = np.argsort(-row, kind="stable")[:k]
                predictions[i][category.slug] = {category.tags[j].slug for j in order if row[j] >= threshold}
        return predictions

    def _fit(self, train: Split) -> None:  # noqa: B027 - some baselines learn nothing beyond thresholds
        """Learn from the training recipes."""

    @abstractmethod
    def _scores(self, split: Split) -> dict[str, np.ndarray]:
        """Category slug -> (n, T) scores; higher means more likely."""


class MajorityClass(Baseline):
    """Every recipe gets the category's most frequent tags."""

    name = "majority"

    def _fit(self, train: Split) -> None:
        self.frequency = {c.slug: train.labels[c.slug].mean(axis=0) for c in self.categories}

    def _scores(self, split: Split) -> dict[str, np.ndarray]:
        n = len(split.texts)
        return {slug: np.tile(freq, (n, 1)) for slug, freq in self.frequency.items()}


class ZeroShotCosine(Baseline):
    """Cosine similarity between the recipe's embedding and each tag name's embedding."""

    name = "zero_shot"

    def _scores(self, split: Split) -> dict[str, np.ndarray]:
        return {c.slug: split.embeddings @ c.tag_matrix().T for c in self.categories}


class NearestNeighbours(Baseline):
    """Similarity-weighted votes of the 15 nearest labelled recipes."""

    name = "knn15"
    k_neighbours = 15

    def _fit(self, train: Split) -> None:
        self.train = train
        self.index = ArrayNeighbours(train.embeddings)

    def _scores(self, split: Split) -> dict[str, np.ndarray]:
        indices, sims = self.index.nearest(split.embeddings, self.k_neighbours, exclude_self=False)
        weights = np.maximum(sims, 0.0)
        result = {}
        for c in self.categories:
            labels = self.train.labels[c.slug][indices]  # (m, k, T)
            result[c.slug] = np.einsum("mk,mkt->mt", weights, labels) / (weights.sum(axis=1, keepdims=True) + 1e-9)
        return result


class TfidfLogisticRegression(Baseline):
    """TF-IDF of word 1–2-grams, one-vs-rest logistic regression per category (the learned tagger's
    text model reads the recipe's structure and kinds of ingredient beside these words)."""

    name = "tfidf_logreg"

    def _fit(self, train: Split) -> None:
        self.model = TextClassifier()
        # Its thresholds come from the inner folds: the model's own out-of-fold pass is not needed.
        self.model.fit([t.for_embedding() for t in train.texts], train.labels, out_of_fold=False)

    def _scores(self, split: Split) -> dict[str, np.ndarray]:
        return self.model.probabilities([t.for_embedding() for t in split.texts])


BASELINES: tuple[type[Baseline], ...] = (MajorityClass, ZeroShotCosine, NearestNeighbours, TfidfLogisticRegression)
