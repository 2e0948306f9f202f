"""The evaluation's baselines are tuned honestly: each threshold is chosen for the baseline's own best F1
by inner folds of its training recipes, never on the recipes it is scored on."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pytest

from autotagger.recipe_text import RecipeText
from feedback.evaluation import runner
from feedback.evaluation.baselines import Baseline, Split
from feedback.evaluation.datasets import Dataset, DatasetRecipe, fold_of
from tagging.learning import CategorySpec, TagSpec

HOT = CategorySpec(
    slug="spicy", tags=(TagSpec(slug="hot", name="Hot", synonyms=(), embedding=np.array([1.0, 0.0, 0.0])),)
)


def _vector(cosine: float) -> np.ndarray:
    """A unit vector at this cosine to the tag "Hot"."""
    return np.array([cosine, np.sqrt(1 - cosine**2), 0.0], dtype=np.float32)


def _recipe(number: int) -> RecipeText:
    return RecipeText(title=f"Dish {number}", ingredients=["salt", "pepper", "oil"], instructions="Cook it well.")


def _dataset() -> tuple[Dataset, dict[str, np.ndarray]]:
    """Forty recipes: in fold 0 of two, the hot ones sit at cosine 0.9 to the tag and the others at 0.1;
    in fold 1, at 0.3 and 0.05. A zero-shot threshold tuned on fold 0 (0.5) finds none of fold 1's hot
    recipes; one tuned on fold 1 (0.175) finds all of fold 0's and nothing else."""
    cosines = {0: (0.9, 0.1), 1: (0.3, 0.05)}
    recipes: list[DatasetRecipe] = []
    vectors = {"Hot": np.array([1.0, 0.0, 0.0], dtype=np.float32)}
    counts = {0: 0, 1: 0}
    number = 0
    while min(counts.values()) < 20:
        number += 1
        identifier = f"recipe-{number}"
        fold = fold_of(identifier, 2)
        if counts[fold] == 20:
            continue
        hot = counts[fold] % 2 == 0
        counts[fold] += 1
        text = _recipe(number)
        vectors[text.for_embedding()] = _vector(cosines[fold][0 if hot else 1])
        recipes.append(DatasetRecipe(id=identifier, text=text, labels={"spicy": {"hot"}} if hot else {}))
    digest = hashlib.sha256(b"hot").hexdigest()
    return Dataset(name="hot", sha256=digest, recipes=recipes, vocabulary={"spicy": {"hot": "Hot"}}), vectors


@pytest.mark.django_db
def test_a_baselines_threshold_is_never_fitted_on_the_fold_it_is_scored_on() -> None:
    dataset, vectors = _dataset()

    def embed(texts: Sequence[str]) -> np.ndarray:
        return np.stack([vectors[text] for text in texts])

    result = runner.evaluate(test=dataset, train=None, folds=2, k=1, categories=None, embed=embed)

    zero_shot = result.baselines["zero_shot"].categories["spicy"]
    # Fold 0's hot recipes found (threshold from fold 1), fold 1's missed (threshold from fold 0). A
    # threshold fitted on the scored fold, or on every recipe, would find all of them (recall 1).
    assert zero_shot.precision == pytest.approx(1.0)
    assert zero_shot.recall == pytest.approx(0.5)


class Memoriser(Baseline):
    """Knows the labels of the recipes it was fitted on, and gives every other recipe 0.3 for each tag."""

    name = "memoriser"

    def _fit(self, train: Split) -> None:
        self.known = {
            text.title: {slug: matrix[i] for slug, matrix in train.labels.items()} for i, text in enumerate(train.texts)
        }

    def _scores(self, split: Split) -> dict[str, np.ndarray]:
        return {
            c.slug: np.array(
                [
                    self.known[t.title][c.slug] if t.title in self.known else np.full(len(c.tags), 0.3)
                    for t in split.texts
                ]
            )
            for c in self.categories
        }


def test_a_baselines_threshold_comes_from_inner_folds_not_from_the_recipes_it_memorised() -> None:
    texts = [_recipe(number) for number in range(30)]
    labels = np.array([[1.0] if number % 3 == 0 else [0.0] for number in range(30)])
    train = Split(embeddings=np.zeros((30, 3), dtype=np.float32), texts=texts, labels={"spicy": labels})
    new = Split(embeddings=np.zeros((2, 3), dtype=np.float32), texts=[_recipe(100), _recipe(101)], labels={})
    baseline = Memoriser()

    baseline.fit(train, [HOT], k=1)

    # On its own training recipes it is perfect (scores 1 and 0, threshold 0.5 or so) and would return
    # nothing for new recipes; scored on inner folds it never saw, 0.3 is what it gives, and its best F1
    # keeps every such tag.
    assert baseline.thresholds["spicy"] <= 0.3
    assert baseline.predict(new, k=1) == [{"spicy": {"hot"}}, {"spicy": {"hot"}}]
