"""The similarity tagger's batched path (`tag_many`, used by bulk tagging and evaluation) gives each recipe
exactly what tagging it alone gives, zero-shot and learned, and its similarities are pgvector's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pgvector.django import CosineDistance

from autotagger.embeddings import embedding_model_name, embeddings_create
from autotagger.recipe_text import RecipeText
from tagging import learning
from tagging.services.config import TaggingConfig, category_requests
from tagging.services.recipes import recipe_create
from tagging.services.rules import requests_widened
from tagging.services.tagger_state import category_specs, learned_model_active, tagger_state_store
from tagging.tag_matrix import tag_matrix_current
from tagging.taggers.base import CategoryRequest, TaggerOutput
from tagging.taggers.similarity import SimilarityTagger
from taxonomy.models import Category, Tag

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy_without_rules")]

EVERYDAY = Path(__file__).parent / "data" / "everyday_recipes.json"


@pytest.fixture
def recipes(demo_recipes: list[dict[str, Any]]) -> tuple[list[RecipeText], np.ndarray]:
    rows = demo_recipes + json.loads(EVERYDAY.read_text())
    texts = [RecipeText(r["title"], list(r["ingredients"]), str(r["instructions"])) for r in rows]
    return texts, embeddings_create(texts=[t.for_embedding() for t in texts]).vectors


def _requests(**config: Any) -> list[CategoryRequest]:
    return requests_widened(requests=category_requests(config=TaggingConfig(**config)))


def _seen(output: TaggerOutput) -> dict[int, list[tuple[str, float, dict[str, Any]]]]:
    return {pk: [(t.slug, t.score, t.evidence) for t in tags] for pk, tags in output.tags.items()}


def _learned_model(texts: list[RecipeText], embeddings: np.ndarray) -> learning.LearnedModel:
    """Fitted on the zero-shot tagger's own top tags (any labels will do to compare two paths), with one
    cuisine left out of the fit: it competes on zero-shot evidence, as a tag added since a fit does. Stored
    and loaded as the active state, so that the neighbours come from pgvector as in production."""
    zero_shot = SimilarityTagger(model=embedding_model_name()).tag_many(
        recipes=texts, embeddings=embeddings, requests=_requests(k=2, threshold=0.0)
    )
    slugs = {c.pk: c.slug for c in Category.objects.all()}
    labels = [{slugs[pk]: {t.slug for t in tags} for pk, tags in output.tags.items()} for output in zero_shot]
    specs = [
        learning.CategorySpec(slug=s.slug, tags=tuple(t for t in s.tags if t.slug != "japanese"))
        for s in category_specs(list(Category.objects.filter(slug__in=["cuisine", "diet", "dish_type"])))
    ]
    data = learning.LabelledSet(embeddings=embeddings, texts=texts, labels=labels)
    recipes = [recipe_create(title=t.title, ingredients=t.ingredients, instructions=t.instructions) for t in texts]
    tagger_state_store(
        model=learning.fit(data=data, categories=specs, k=2), recipes=recipes, data=data, fitted_on={}, seconds=0.0
    )
    learned = learned_model_active()
    assert learned is not None
    return learned


@pytest.mark.parametrize("config", [{}, {"k": 5, "threshold": 0.0}, {"k": 1, "threshold": 0.6}])
def test_it_gives_each_recipe_of_a_batch_what_tagging_it_alone_gives(
    recipes: tuple[list[RecipeText], np.ndarray], config: dict[str, Any]
) -> None:
    texts, embeddings = recipes
    tagger = SimilarityTagger(model=embedding_model_name())
    requests = _requests(**config)

    batch = tagger.tag_many(recipes=texts, embeddings=embeddings, requests=requests)

    alone = [tagger.tag(recipe=t, embedding=e, requests=requests) for t, e in zip(texts, embeddings, strict=True)]
    assert [_seen(o) for o in batch] == [_seen(o) for o in alone]
    assert sum(len(tags) for o in batch for tags in o.tags.values()) > len(texts)


def test_it_gives_each_recipe_of_a_batch_what_the_learned_tagger_gives_it_alone(
    recipes: tuple[list[RecipeText], np.ndarray],
) -> None:
    texts, embeddings = recipes
    learned = _learned_model(texts, embeddings)
    assert set(learned.categories) == {"cuisine", "diet", "dish_type"}
    tagger = SimilarityTagger(model=embedding_model_name(), learned=learned)
    requests = _requests(k=3, threshold=0.0)

    batch = tagger.tag_many(recipes=texts, embeddings=embeddings, requests=requests)

    alone = [tagger.tag(recipe=t, embedding=e, requests=requests) for t, e in zip(texts, embeddings, strict=True)]
    assert [_seen(o) for o in batch] == [_seen(o) for o in alone]
    assert [o.uncertainty_margin for o in batch] == [o.uncertainty_margin for o in alone]
    decided = {t.evidence["decided_by"] for o in batch for tags in o.tags.values() for t in tags}
    assert decided == {"learned", "zero_shot"}


def test_its_similarities_are_pgvectors_cosine_similarities(recipes: tuple[list[RecipeText], np.ndarray]) -> None:
    _, embeddings = recipes
    model = embedding_model_name()
    cuisine = Category.objects.get(slug="cuisine")

    similarities = tag_matrix_current(model=model).category(cuisine.pk).similarities(embeddings[:3])

    for row, embedding in enumerate(embeddings[:3]):
        expected = dict(
            Tag.objects.filter(category=cuisine, active=True)
            .annotate(distance=CosineDistance("embedding", embedding))
            .values_list("id", "distance")
        )
        tags = tag_matrix_current(model=model).category(cuisine.pk).rows
        assert [t.id for t in tags] == sorted(expected)
        np.testing.assert_allclose(similarities[row], [1.0 - expected[t.id] for t in tags], atol=1e-6)


def test_it_sees_a_tag_deactivated_behind_its_back(recipes: tuple[list[RecipeText], np.ndarray]) -> None:
    cuisine = Category.objects.get(slug="cuisine")
    before = tag_matrix_current(model=embedding_model_name()).category(cuisine.pk).slugs
    assert "italian" in before

    Tag.objects.filter(category=cuisine, slug="italian").update(active=False)

    after = tag_matrix_current(model=embedding_model_name()).category(cuisine.pk).slugs
    assert after == tuple(s for s in before if s != "italian")


def test_score_all_ranks_a_learned_categorys_tags_by_their_probability_before_rounding(
    recipes: tuple[list[RecipeText], np.ndarray],
) -> None:
    texts, embeddings = recipes
    learned = _learned_model(texts, embeddings)
    cuisine = Category.objects.get(slug="cuisine")
    requests = [r for r in _requests(k=3, threshold=0.0) if r.category.pk == cuisine.pk]
    probabilities = learned.probabilities(embeddings=embeddings[:1], texts=texts[:1], category_slugs=["cuisine"])
    model_slugs = learned.categories["cuisine"].tag_slugs
    unrounded = dict(zip(model_slugs, probabilities["cuisine"][0].tolist(), strict=True))

    scored = SimilarityTagger(model=embedding_model_name(), learned=learned).score_all(
        recipe=texts[0], embedding=embeddings[0], requests=requests
    )

    ranked = [t for t in scored.tags[cuisine.pk] if t.evidence.get("decided_by") == "learned"]
    # Calibration squeezes the unlikely tags together: rounded, several of them tie.
    assert len({t.score for t in ranked}) < len(ranked)
    # Tags whose probabilities tie exactly (float32 at the calibration's floor) are in slug order, as before.
    assert [t.slug for t in ranked] == sorted(model_slugs, key=lambda slug: (-unrounded[slug], slug))
