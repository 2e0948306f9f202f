"""The similarity tagger's cached tag matrix follows the tags: the next tagging call after any write to them
(however made) scores the tags as they now are, and while nothing is written the matrix is reused."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from autotagger.embeddings import embedding_model_name, embeddings_create
from autotagger.recipe_text import RecipeText
from tagging.services.config import TaggingConfig, category_requests
from tagging.services.rules import requests_widened
from tagging.tag_matrix import tag_matrix_current
from tagging.taggers.base import CategoryRequest
from tagging.taggers.similarity import SimilarityTagger
from taxonomy.embedding import tags_embed
from taxonomy.models import Category, Tag

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy_without_rules")]

CARBONARA = RecipeText(
    "Spaghetti carbonara",
    ["spaghetti", "guanciale", "eggs", "pecorino romano", "black pepper"],
    "Cook the pasta. Fry the guanciale, toss with eggs and cheese off the heat.",
)


@pytest.fixture
def embedding() -> np.ndarray:
    return embeddings_create(texts=[CARBONARA.for_embedding()]).vectors[0]


def _requests() -> list[CategoryRequest]:
    return requests_widened(requests=category_requests(config=TaggingConfig(k=20, threshold=0.0)))


def _cuisine(embedding: np.ndarray) -> dict[str, Any]:
    """Every cuisine tag the tagger scores for the carbonara: slug -> (score, evidence)."""
    cuisine = Category.objects.get(slug="cuisine")
    output = SimilarityTagger(model=embedding_model_name()).score_all(
        recipe=CARBONARA, embedding=embedding, requests=_requests()
    )
    return {t.slug: (t.score, t.evidence) for t in output.tags[cuisine.pk]}


def test_the_next_call_scores_a_re_embedded_tag_with_its_new_vector(embedding: np.ndarray) -> None:
    before = _cuisine(embedding)
    japanese = Tag.objects.get(category__slug="cuisine", slug="japanese")
    japanese.description = "Spaghetti with eggs, guanciale, pecorino and black pepper, tossed off the heat."
    japanese.save()

    tags_embed(tag_ids=[japanese.pk])

    after = _cuisine(embedding)
    assert after["japanese"][1]["similarity"] > before["japanese"][1]["similarity"] + 0.1
    assert {slug: value for slug, value in after.items() if slug != "japanese"} == {
        slug: value for slug, value in before.items() if slug != "japanese"
    }


def test_the_next_call_matches_a_synonym_written_with_a_queryset_update(embedding: np.ndarray) -> None:
    assert _cuisine(embedding)["greek"][1]["matched"] == {}

    Tag.objects.filter(category__slug="cuisine", slug="greek").update(synonyms=["guanciale"])

    assert _cuisine(embedding)["greek"][1]["matched"] == {"ingredients": ["guanciale"], "instructions": ["guanciale"]}


def test_the_next_call_leaves_out_a_deleted_tag(embedding: np.ndarray) -> None:
    assert "italian" in _cuisine(embedding)

    Tag.objects.filter(category__slug="cuisine", slug="italian").delete()

    assert "italian" not in _cuisine(embedding)


def test_the_next_call_scores_a_tag_created_in_bulk_and_embedded(embedding: np.ndarray) -> None:
    cuisine = Category.objects.get(slug="cuisine")
    (roman,) = Tag.objects.bulk_create(
        [Tag(category=cuisine, slug="roman", name="Roman", description="Carbonara, cacio e pepe, guanciale.")]
    )

    tags_embed(tag_ids=[roman.pk])

    assert "roman" in _cuisine(embedding)


def test_it_reuses_the_matrix_with_one_query_while_the_tags_are_unchanged(
    embedding: np.ndarray, django_assert_num_queries: Any
) -> None:
    first = tag_matrix_current(model=embedding_model_name())

    with django_assert_num_queries(1):
        again = tag_matrix_current(model=embedding_model_name())

    assert again is first
    Tag.objects.filter(category__slug="cuisine", slug="thai").update(name="Thai")
    assert tag_matrix_current(model=embedding_model_name()) is not first
