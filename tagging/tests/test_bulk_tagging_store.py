"""Bulk tagging (recipes_tag_bulk) stores for each recipe what tagging it alone stores, rules and evidence
included, zero-shot and learned, with a few statements whatever the number of recipes and tags."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from autotagger.embeddings import embedding_model_name
from tagging import learning
from tagging.models import Recipe, TagAssignment, TaggingRun
from tagging.services.config import TaggingConfig, category_requests
from tagging.services.recipes import recipe_create, recipes_embed
from tagging.services.rules import requests_widened, rules_of_requests
from tagging.services.runs import recipe_tag, recipes_tag_bulk
from tagging.services.tagger_state import category_specs, tagger_state_store
from tagging.taggers.similarity import SimilarityTagger
from taxonomy.limits import MAX_TAGS_PER_CATEGORY
from taxonomy.models import Category

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy")]


Stored = tuple[list[tuple[str, str, float, int, dict[str, Any]]], list[dict[str, Any]], dict[str, Any]]


def _stored(run: TaggingRun) -> Stored:
    rows = TagAssignment.objects.filter(run=run).select_related("tag__category").order_by("tag__category_id", "rank")
    run = TaggingRun.objects.get(pk=run.pk)
    return (
        [(a.tag.category.slug, a.tag.slug, a.score, a.rank, a.evidence) for a in rows],
        run.removed_by_rule,
        run.stats,
    )


@pytest.fixture
def recipes(demo_recipes: list[dict[str, Any]]) -> list[Recipe]:
    return [
        recipe_create(title=r["title"], ingredients=r["ingredients"], instructions=r["instructions"])
        for r in demo_recipes
    ]


@pytest.mark.parametrize("config", [{}, {"k": 5, "threshold": 0.0}])
def test_bulk_tagging_stores_for_each_recipe_what_tagging_it_alone_stores(
    recipes: list[Recipe], config: dict[str, Any]
) -> None:
    alone = [_stored(recipe_tag(recipe=recipe, config=TaggingConfig(**config))) for recipe in recipes]

    bulk = [_stored(run) for run in recipes_tag_bulk(recipes=recipes, config=TaggingConfig(**config))]

    assert bulk == alone
    assert any(removed for _, removed, _ in bulk), "the premise: some tag is removed by a rule"
    assert sum(len(assignments) for assignments, _, _ in bulk) > 3 * len(recipes)


@pytest.fixture
def learned(taxonomy: dict[str, Any], recipes: list[Recipe]) -> None:
    """An active tagger state fitted on the demo recipes, labelled with the zero-shot tagger's own top tags (any
    labels will do to compare two paths), with one cuisine left out of the fit: it competes on zero-shot evidence,
    as a tag added since a fit does."""
    recipes_embed(recipes=recipes)
    embeddings = np.stack([np.asarray(r.embedding, dtype=np.float32) for r in recipes])
    texts = [r.text for r in recipes]
    zero_shot = SimilarityTagger(model=embedding_model_name()).tag_many(
        recipes=texts,
        embeddings=embeddings,
        requests=requests_widened(requests=category_requests(config=TaggingConfig(k=2, threshold=0.0))),
    )
    slugs = {c.pk: c.slug for c in Category.objects.all()}
    labels = [{slugs[pk]: {t.slug for t in tags} for pk, tags in output.tags.items()} for output in zero_shot]
    specs = [
        learning.CategorySpec(slug=s.slug, tags=tuple(t for t in s.tags if t.slug != "japanese"))
        for s in category_specs(list(Category.objects.filter(slug__in=["cuisine", "diet", "dish_type"])))
    ]
    data = learning.LabelledSet(embeddings=embeddings, texts=texts, labels=labels)
    tagger_state_store(
        model=learning.fit(data=data, categories=specs, k=2), recipes=recipes, data=data, fitted_on={}, seconds=0.0
    )


@pytest.mark.usefixtures("learned")
def test_bulk_tagging_with_a_learned_tagger_stores_for_each_recipe_what_tagging_it_alone_stores(
    recipes: list[Recipe],
) -> None:
    alone = [_stored(recipe_tag(recipe=recipe, config=TaggingConfig(k=3))) for recipe in recipes]

    bulk = [_stored(run) for run in recipes_tag_bulk(recipes=recipes, config=TaggingConfig(k=3))]

    assert bulk == alone
    decided = {evidence["decided_by"] for assignments, _, _ in bulk for *_, evidence in assignments}
    assert decided == {"learned", "zero_shot"}
    assert all("uncertainty_margin" in stats for _, _, stats in bulk)
    assert any(evidence.get("neighbours") for assignments, _, _ in bulk for *_, evidence in assignments)


def test_bulk_tagging_asks_for_k_plus_the_tags_a_rule_can_remove_in_each_category() -> None:
    requests = category_requests(config=TaggingConfig(k=2))
    rules = rules_of_requests(requests=requests)

    widened = {r.category.slug: r.k for r in requests_widened(requests=requests, rules=rules)}

    ruled = {r.category.slug: sum(1 for t in r.category.tags.all() if t.pk in rules) for r in requests}
    assert widened == {slug: min(MAX_TAGS_PER_CATEGORY, 2 + count) for slug, count in ruled.items()}
    assert any(count == 0 for count in ruled.values())
    assert any(count > 0 for count in ruled.values())


def test_bulk_tagging_stores_many_recipes_with_as_many_statements_as_few(recipes: list[Recipe]) -> None:
    recipes_tag_bulk(recipes=recipes, config=TaggingConfig())  # embeds the recipes once

    with CaptureQueriesContext(connection) as few:
        recipes_tag_bulk(recipes=recipes[:1], config=TaggingConfig())
    with CaptureQueriesContext(connection) as many:
        runs = recipes_tag_bulk(recipes=recipes, config=TaggingConfig(k=5, threshold=0.0))

    assert len(many.captured_queries) == len(few.captured_queries)
    assert {r.pk: r.current_run_id for r in Recipe.objects.filter(pk__in=[r.pk for r in recipes])} == {
        run.recipe_id: run.pk for run in runs
    }
