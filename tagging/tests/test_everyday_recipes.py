"""Everyday recipes (tagging/tests/data/everyday_recipes.json) tagged by every strategy: no stored tag
contradicts a recipe's own ingredients, and the obvious cuisine, main ingredient and dish type are found."""

from __future__ import annotations

from typing import Any

import pytest

from prompts.tests.openai_server import OpenAIServer
from tagging.models import Recipe, TaggingRun
from tagging.services.config import TaggingConfig
from tagging.services.recipes import recipe_create
from tagging.services.runs import recipes_tag_bulk, run_create, run_execute
from tagging.tests.everyday import careless_model, everyday_recipes, runs_measure

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy")]

RECIPES = everyday_recipes()


@pytest.fixture
def recipes() -> list[Recipe]:
    return [
        recipe_create(title=r["title"], ingredients=r["ingredients"], instructions=r["instructions"]) for r in RECIPES
    ]


def _executed(recipes: list[Recipe], strategy: str) -> list[TaggingRun]:
    runs = []
    for recipe in recipes:
        run = run_create(recipe=recipe, config=TaggingConfig(strategy=strategy))
        run_execute(run_id=run.pk)
        runs.append(TaggingRun.objects.select_related("recipe").get(pk=run.pk))
    return runs


def test_the_set_has_at_least_fifty_recipes_with_their_obvious_tags() -> None:
    assert len(RECIPES) >= 50
    assert all(r["expected"] for r in RECIPES)
    assert {c for r in RECIPES for c in r["expected"]} == {"cuisine", "main_ingredient", "dish_type"}


def test_similarity_stores_no_tag_that_contradicts_the_ingredients(recipes: list[Recipe]) -> None:
    runs = recipes_tag_bulk(recipes=recipes, config=TaggingConfig())

    stored = TaggingRun.objects.filter(pk__in=[run.pk for run in runs]).select_related("recipe").order_by("id")
    measured = runs_measure(runs=list(stored), recipes=RECIPES)
    assert measured.contradictions == []
    assert measured.removed_by_rule > 0, "the premise: similarity alone proposes tags the ingredients contradict"
    # The similarity tagger's own recall (bench/contradictions.py prints it); the rules only ever give a
    # removed tag's place to the next one, so they cannot lower it.
    assert measured.recall >= 0.75, measured.missed


@pytest.mark.parametrize("strategy", ["llm", "hybrid"])
def test_a_careless_model_gets_no_contradicting_tag_stored_and_the_obvious_tags_kept(
    strategy: str, llm_settings: Any, openai_server: OpenAIServer, recipes: list[Recipe]
) -> None:
    openai_server.reply_computed(careless_model(RECIPES), times=len(recipes))

    measured = runs_measure(runs=_executed(recipes, strategy), recipes=RECIPES)

    assert measured.contradictions == []
    if strategy == "llm":
        assert measured.removed_by_rule > 0, "the premise: the model picked tags the ingredients contradict"
    else:
        # Hybrid never offers the model a tag the ingredients rule out, nor takes a zero-shot guess without it.
        assert measured.removed_by_rule == 0
    assert measured.recall >= 0.9, measured.missed
