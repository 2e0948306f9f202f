"""Bulk tagging (recipes_tag_bulk) stores for each recipe what tagging it alone stores, rules and evidence
included, with a few statements whatever the number of recipes and tags."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tagging.models import Recipe, TagAssignment, TaggingRun
from tagging.services.config import TaggingConfig, category_requests
from tagging.services.recipes import recipe_create
from tagging.services.rules import requests_widened, rules_of_requests
from tagging.services.runs import recipe_tag, recipes_tag_bulk
from taxonomy.limits import MAX_TAGS_PER_CATEGORY

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy")]


def _stored(run: TaggingRun) -> tuple[list[tuple[str, str, float, int, dict[str, Any]]], list[dict[str, Any]]]:
    rows = TagAssignment.objects.filter(run=run).select_related("tag__category").order_by("tag__category_id", "rank")
    run = TaggingRun.objects.get(pk=run.pk)
    return [(a.tag.category.slug, a.tag.slug, a.score, a.rank, a.evidence) for a in rows], run.removed_by_rule


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
    assert any(removed for _, removed in bulk), "the premise: some tag is removed by a rule"
    assert sum(len(assignments) for assignments, _ in bulk) > 3 * len(recipes)


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
