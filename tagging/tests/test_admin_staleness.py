"""The recipe admin's staleness summary and its "Stale: cause" filter."""

from __future__ import annotations

import pytest
from django.test.client import Client
from django.urls import reverse

from tagging.models import Recipe
from tagging.services.config import TaggingConfig
from tagging.services.recipes import recipe_create
from tagging.services.runs import recipe_tag

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy")]

RECIPES = reverse("admin:tagging_recipe_changelist")


@pytest.fixture
def recipes() -> dict[str, Recipe]:
    fresh = recipe_create(title="Fresh soup", ingredients=["water"], instructions="")
    recipe_tag(recipe=fresh, config=TaggingConfig())
    never = recipe_create(title="Untagged soup", ingredients=["water"], instructions="")
    edited = recipe_create(title="Edited soup", ingredients=["water"], instructions="")
    recipe_tag(recipe=edited, config=TaggingConfig())
    Recipe.objects.filter(pk=edited.pk).update(content_hash="0" * 64)
    return {"fresh": fresh, "never": never, "edited": edited}


def test_the_recipe_list_shows_how_many_recipes_are_stale_for_each_cause(
    staff_browser: Client, recipes: dict[str, Recipe]
) -> None:
    response = staff_browser.get(RECIPES)

    assert response.status_code == 200
    page = response.content.decode()
    assert "Stale recipes: 2 of 3" in page
    assert '<td class="staleness-never_tagged">1</td>' in page
    assert '<td class="staleness-content">1</td>' in page
    assert '<td class="staleness-taxonomy">0</td>' in page


def test_the_stale_cause_filter_lists_the_recipes_stale_for_that_cause(
    staff_browser: Client, recipes: dict[str, Recipe]
) -> None:
    edited = staff_browser.get(RECIPES, {"stale": "content"}).context["cl"].result_list
    stale = staff_browser.get(RECIPES, {"stale": "any"}).context["cl"].result_list
    fresh = staff_browser.get(RECIPES, {"stale": "fresh"}).context["cl"].result_list

    assert [r.title for r in edited] == ["Edited soup"]
    assert {r.title for r in stale} == {"Edited soup", "Untagged soup"}
    assert [r.title for r in fresh] == ["Fresh soup"]
