"""GET /api/v1/recipes?stale=…&stale_cause=… and GET /api/v1/recipes/staleness: stale recipes and their
counts, among those the caller may read."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from conftest import assert_error
from tagging.models import Recipe
from tagging.services.config import TaggingConfig
from tagging.services.recipes import recipe_create
from tagging.services.runs import recipe_tag
from taxonomy.models import TaxonomyVersion
from taxonomy.selectors import taxonomy_version_current

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy")]

LIST_URL = "/api/v1/recipes"
COUNTS_URL = "/api/v1/recipes/staleness"


def _recipe(title: str, owner: Any) -> Recipe:
    return recipe_create(title=title, ingredients=["pasta", "eggs"], instructions="", created_by=owner)


@pytest.fixture
def catalogue(api_client_user: Any, django_user_model: Any) -> dict[str, Recipe]:
    """Of the API client: a fresh recipe, one never tagged, one edited since its tagging; of someone else: a
    never-tagged one."""
    fresh = _recipe("Fresh pasta", api_client_user)
    recipe_tag(recipe=fresh, config=TaggingConfig())
    never = _recipe("Untagged pasta", api_client_user)
    edited = _recipe("Edited pasta", api_client_user)
    recipe_tag(recipe=edited, config=TaggingConfig())
    Recipe.objects.filter(pk=edited.pk).update(content_hash="0" * 64)
    other = _recipe("Someone else's pasta", django_user_model.objects.create_user(username="other"))
    return {"fresh": fresh, "never": never, "edited": edited, "other": other}


def _listed(response: Any) -> dict[int, list[str]]:
    assert response.status_code == 200, response.content
    return {item["id"]: item["stale_causes"] for item in response.json()["results"]}


def test_it_lists_only_the_callers_stale_recipes_with_their_causes(
    token_client: APIClient, catalogue: dict[str, Recipe]
) -> None:
    response = token_client.get(LIST_URL, {"stale": "true"})

    assert _listed(response) == {catalogue["edited"].pk: ["content"], catalogue["never"].pk: ["never_tagged"]}


def test_it_lists_the_recipes_stale_for_one_cause(token_client: APIClient, catalogue: dict[str, Recipe]) -> None:
    response = token_client.get(LIST_URL, {"stale": "true", "stale_cause": "content"})

    assert list(_listed(response)) == [catalogue["edited"].pk]


def test_several_causes_list_the_recipes_stale_for_any_of_them(
    token_client: APIClient, catalogue: dict[str, Recipe]
) -> None:
    response = token_client.get(f"{LIST_URL}?stale_cause=content&stale_cause=never_tagged")

    assert set(_listed(response)) == {catalogue["edited"].pk, catalogue["never"].pk}


def test_stale_false_lists_the_fresh_recipes(token_client: APIClient, catalogue: dict[str, Recipe]) -> None:
    response = token_client.get(LIST_URL, {"stale": "false"})

    assert _listed(response) == {catalogue["fresh"].pk: []}


def test_every_listed_recipe_says_why_it_is_stale(token_client: APIClient, catalogue: dict[str, Recipe]) -> None:
    TaxonomyVersion.objects.create(number=taxonomy_version_current() + 1, changes=[], snapshot={})

    response = token_client.get(LIST_URL)

    assert _listed(response) == {
        catalogue["fresh"].pk: ["taxonomy"],
        catalogue["never"].pk: ["never_tagged"],
        catalogue["edited"].pk: ["content", "taxonomy"],
    }


def test_a_recipe_shows_its_current_run_and_stale_causes(token_client: APIClient, catalogue: dict[str, Recipe]) -> None:
    fresh = Recipe.objects.get(pk=catalogue["fresh"].pk)

    body = token_client.get(f"{LIST_URL}/{fresh.pk}").json()

    assert body["current_run_id"] == fresh.current_run_id is not None
    assert body["latest_run"]["id"] == fresh.current_run_id
    assert body["stale_causes"] == []
    assert token_client.get(f"{LIST_URL}/{catalogue['never'].pk}").json()["stale_causes"] == ["never_tagged"]


def test_an_unknown_cause_is_refused_naming_it(token_client: APIClient, catalogue: dict[str, Recipe]) -> None:
    response = token_client.get(LIST_URL, {"stale": "true", "stale_cause": "weather"})

    error = assert_error(response, status=400, code="invalid")
    assert "stale_cause" in error["details"]
    assert "weather" in str(error["details"])


def test_a_stale_value_that_is_not_a_boolean_is_refused(token_client: APIClient) -> None:
    response = token_client.get(LIST_URL, {"stale": "maybe"})

    error = assert_error(response, status=400, code="invalid")
    assert "stale" in error["details"]


def test_a_cause_with_stale_false_is_refused(token_client: APIClient) -> None:
    response = token_client.get(LIST_URL, {"stale": "false", "stale_cause": "content"})

    error = assert_error(response, status=400, code="invalid")
    assert "stale_cause" in error["details"]


def test_it_counts_the_callers_stale_recipes_per_cause(token_client: APIClient, catalogue: dict[str, Recipe]) -> None:
    response = token_client.get(COUNTS_URL)

    assert response.status_code == 200, response.content
    assert response.json() == {
        "taxonomy_version": taxonomy_version_current(),
        "recipes": 3,
        "stale": 2,
        "causes": {"never_tagged": 1, "content": 1, "taxonomy": 0, "prompt": 0, "model": 0, "tagger": 0},
    }


def test_staff_count_every_recipe(catalogue: dict[str, Recipe], staff: Any, api_client_for: Any) -> None:
    response = api_client_for(staff).get(COUNTS_URL)

    assert response.json()["recipes"] == 4
    assert response.json()["causes"]["never_tagged"] == 2


def test_counts_need_credentials(anonymous: APIClient) -> None:
    assert_error(anonymous.get(COUNTS_URL), status=401, code="not_authenticated")
