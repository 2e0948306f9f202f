"""Reference taggers that the learned similarity tagger must beat, each fitted on the same training
recipes and judged by the same rule: per category, tags scoring at or above a threshold fitted on the
training recipes (out of sample where the method memorises them), at most k per recipe.
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


class Baseline(ABC):
    name = "baseline"

    def fit(self, train: Split, categories: Sequence[CategorySpec], k: int) -> None:
        self.categories = list(categories)
        self.thresholds: dict[str, float] = {}
        self._fit(train)
        training_scores = self._training_scores(train)
        for category in self.categories:
            self.thresholds[category.slug], _ = fit_threshold(
                training_scores[category.slug], train.labels[category.slug], k
            )

    def predict(self, test: Split, k: int) -> list[dict[str, set[str]]]:
        scores = self._scores(test)
        predictions: list[dict[str, set[str]]] = [{} for _ in range(len(test.texts))]
        for category in self.categories:
            matrix, threshold = scores[category.slug], self.thresholds[category.slug]
            for i, row in enumerate(matrix):
                order = np.argsort(-row, kind="stable")[:k]
                predictions[i][category.slug] = {category.tags[j].slug for j in order if row[j] >= threshold}
        return predictions

    def _fit(self, train: Split) -> None:  # noqa: B027 - most baselines learn nothing beyond thresholds
        """Learn from the training recipes (before thresholds are fitted)."""

    def _training_scores(self, train: Split) -> dict[str, np.ndarray]:
        return self._scores(train)

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

    def _votes(self, split: Split, exclude_self: bool) -> dict[str, np.ndarray]:
        indices, sims = self.index.nearest(split.embeddings, self.k_neighbours, exclude_self=exclude_self)
        weights = np.maximum(sims, 0.0)
        result = {}
        for c in self.categories:
            labels = self.train.labels[c.slug][indices]  # (m, k, T)
            result[c.slug] = np.einsum("mk,mkt->mt", weights, labels) / (weights.sum(axis=1, keepdims=True) + 1e-9)
        return result

    def _training_scores(self, train: Split) -> dict[str, np.ndarray]:
        return self._votes(train, exclude_self=True)

    def _scores(self, split: Split) -> dict[str, np.ndarray]:
        return self._votes(split, exclude_self=False)


class TfidfLogisticRegression(Baseline):
    """TF-IDF of word 1–2-grams, one-vs-rest logistic regression per category (the learned tagger's
    text model reads the recipe's structure and kinds of ingredient beside these words)."""

    name = "tfidf_logreg"

    def _fit(self, train: Split) -> None:
        self.model = TextClassifier()
        # Out-of-fold probabilities for the training recipes, so that thresholds are not fitted on
        # memorised recipes.
        self.out_of_fold = self.model.fit([t.for_embedding() for t in train.texts], train.labels)

    def _training_scores(self, train: Split) -> dict[str, np.ndarray]:
        return self.out_of_fold

    def _scores(self, split: Split) -> dict[str, np.ndarray]:
        return self.model.probabilities([t.for_embedding() for t in split.texts])


BASELINES: tuple[type[Baseline], ...] = (MajorityClass, ZeroShotCosine, NearestNeighbours, TfidfLogisticRegression)
