"""/api/v1/recipes: list, create, retrieve, update, delete, and tag a stored recipe."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from conftest import assert_error
from tagging.models import Recipe, RunStatus, TaggingRun
from tagging.services.config import TaggingConfig
from tagging.services.recipes import recipe_content_hash, recipe_create
from tagging.services.runs import recipe_tag
from tagging.tests.conftest import TaggingRunFactory, demo_recipe

pytestmark = pytest.mark.django_db

LIST_URL = "/api/v1/recipes"


def _url(recipe_id: int) -> str:
    return f"{LIST_URL}/{recipe_id}"


def _tag_slugs(run: dict[str, Any], category: str) -> list[str]:
    group = next(g for g in run["categories"] if g["slug"] == category)
    return [tag["slug"] for tag in group["tags"]]


def _stored(recipe: Recipe) -> dict[str, Any]:
    recipe.refresh_from_db()
    return {
        "title": recipe.title,
        "ingredients": recipe.ingredients,
        "instructions": recipe.instructions,
        "external_id": recipe.external_id,
        "source": recipe.source,
        "content_hash": recipe.content_hash,
        "embedding_model": recipe.embedding_model,
        "has_embedding": recipe.embedding is not None,
    }


# --- List -------------------------------------------------------------------------------------------


def test_it_lists_recipes_newest_first_twenty_to_a_page(
    token_client: APIClient, api_client_user: Any, django_assert_max_num_queries: Any
) -> None:
    for number in range(1, 24):
        recipe_create(title=f"Recipe {number}", ingredients=["1 egg"], instructions="", created_by=api_client_user)

    # The token with its user, the user's other tokens (knox drops expired ones), the caller's permissions
    # (theirs and their groups'), the count and the page, and what is current for staleness (taxonomy version,
    # active prompt, sources' models, tagger state): the same however many recipes the page shows.
    with django_assert_max_num_queries(10):
        first = token_client.get(LIST_URL)
    second = token_client.get(first.json()["next"])

    assert first.status_code == 200
    body = first.json()
    assert body["count"] == 23
    assert body["previous"] is None
    assert body["next"] == "http://testserver/api/v1/recipes?page=2"
    assert [r["title"] for r in body["results"]] == [f"Recipe {n}" for n in range(23, 3, -1)]
    assert set(body["results"][0]) == {
        "id",
        "title",
        "ingredients",
        "instructions",
        "external_id",
        "source",
        "created_at",
        "latest_run_id",
        "stale_causes",
    }
    assert [r["title"] for r in second.json()["results"]] == ["Recipe 3", "Recipe 2", "Recipe 1"]
    assert second.json()["next"] is None


def test_it_lists_only_recipes_whose_latest_successful_run_assigned_the_tag(
    token_client: APIClient, taxonomy: dict[str, Any], demo_recipes: list[dict[str, Any]], api_client_user: Any
) -> None:
    mine = {"created_by": api_client_user}
    tagged = demo_recipe(demo_recipes, "Spaghetti Carbonara", **mine)
    run = recipe_tag(recipe=tagged, config=TaggingConfig())
    TaggingRunFactory(recipe=tagged, status=RunStatus.FAILED, error="boom")
    retagged = demo_recipe(demo_recipes, "Spaghetti Carbonara", **mine)
    recipe_tag(recipe=retagged, config=TaggingConfig())
    recipe_tag(recipe=retagged, config=TaggingConfig(categories=("diet",)))
    demo_recipe(demo_recipes, "Spaghetti Carbonara", **mine)
    recipe_tag(recipe=demo_recipe(demo_recipes, "Beef Tacos", **mine), config=TaggingConfig())

    response = token_client.get(LIST_URL, {"tag": "italian"})

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    assert [(r["id"], r["latest_run_id"]) for r in body["results"]] == [(tagged.pk, run.pk)]


def test_it_narrows_the_tag_filter_to_a_category(
    token_client: APIClient, taxonomy: dict[str, Any], carbonara: Recipe
) -> None:
    recipe_tag(recipe=carbonara, config=TaggingConfig())

    in_dish_type = token_client.get(LIST_URL, {"tag": "pasta", "category": "dish_type"})
    in_cuisine = token_client.get(LIST_URL, {"tag": "pasta", "category": "cuisine"})

    assert [r["id"] for r in in_dish_type.json()["results"]] == [carbonara.pk]
    assert in_cuisine.json()["count"] == 0


def test_it_answers_404_for_a_page_past_the_end(token_client: APIClient, carbonara: Recipe) -> None:
    response = token_client.get(LIST_URL, {"page": 2})

    assert_error(response, status=404, code="not_found")


def test_it_refuses_an_anonymous_caller(anonymous: APIClient, carbonara: Recipe) -> None:
    response = anonymous.get(LIST_URL)

    assert_error(response, status=401, code="not_authenticated")


# --- Create -----------------------------------------------------------------------------------------


def test_it_creates_a_recipe(token_client: APIClient) -> None:
    request = {
        "title": "  Shakshuka ",
        "ingredients": ["4 eggs", "", "1 can tomatoes "],
        "instructions": "Simmer the sauce, crack in the eggs. ",
        "external_id": "sku-1",
        "source": "catalogue",
    }

    response = token_client.post(LIST_URL, request, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    recipe = Recipe.objects.get(pk=body["id"])
    assert body["title"] == recipe.title == "Shakshuka"
    assert body["ingredients"] == recipe.ingredients == ["4 eggs", "1 can tomatoes"]
    assert body["instructions"] == recipe.instructions == "Simmer the sauce, crack in the eggs."
    assert body["external_id"] == "sku-1"
    assert body["source"] == "catalogue"
    assert body["content_hash"] == recipe.content_hash != ""
    assert body["latest_run"] is None
    assert recipe.embedding is None


def test_it_refuses_an_external_id_the_same_source_already_used(token_client: APIClient) -> None:
    request = {"title": "Toast", "ingredients": ["bread"], "external_id": "sku-1", "source": "catalogue"}
    assert token_client.post(LIST_URL, request, format="json").status_code == 201

    response = token_client.post(LIST_URL, {**request, "title": "Other toast"}, format="json")

    error = assert_error(response, status=409, code="conflict")
    assert error["details"] == {"external_id": "sku-1", "source": "catalogue"}
    assert "sku-1" in error["message"]
    assert list(Recipe.objects.values_list("title", flat=True)) == ["Toast"]


def test_it_accepts_the_same_external_id_from_another_source(token_client: APIClient) -> None:
    request = {"title": "Toast", "ingredients": ["bread"], "external_id": "sku-1", "source": "catalogue"}
    token_client.post(LIST_URL, request, format="json")

    response = token_client.post(LIST_URL, {**request, "source": "partner"}, format="json")

    assert response.status_code == 201, response.content
    assert Recipe.objects.filter(external_id="sku-1").count() == 2


def test_it_refuses_to_create_a_recipe_with_neither_ingredients_nor_instructions(token_client: APIClient) -> None:
    response = token_client.post(LIST_URL, {"title": "Toast", "ingredients": [" "]}, format="json")

    error = assert_error(response, status=400, code="invalid")
    assert list(error["details"]) == ["ingredients"]
    assert Recipe.objects.count() == 0


def test_it_gives_recipes_with_the_same_stored_content_the_same_content_hash(token_client: APIClient) -> None:
    with_blank_line = token_client.post(LIST_URL, {"title": "Toast", "ingredients": ["bread", ""]}, format="json")

    without = token_client.post(LIST_URL, {"title": "Toast", "ingredients": ["bread"]}, format="json")

    assert with_blank_line.json()["ingredients"] == without.json()["ingredients"] == ["bread"]
    assert with_blank_line.json()["content_hash"] == without.json()["content_hash"]


# --- Retrieve ---------------------------------------------------------------------------------------


def test_it_shows_a_recipe_with_the_tags_of_its_latest_run(
    token_client: APIClient, taxonomy: dict[str, Any], carbonara: Recipe
) -> None:
    first = token_client.post(f"{_url(carbonara.pk)}/tag", {}, format="json").json()
    latest = token_client.post(f"{_url(carbonara.pk)}/tag", {"categories": ["cuisine"], "k": 1}, format="json").json()

    response = token_client.get(_url(carbonara.pk))

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == carbonara.pk
    assert body["title"] == "Spaghetti Carbonara"
    assert body["content_hash"] == carbonara.content_hash
    assert latest["id"] != first["id"]
    assert body["latest_run"]["id"] == latest["id"]
    assert body["latest_run"]["status"] == "succeeded"
    assert [g["slug"] for g in body["latest_run"]["categories"]] == ["cuisine"]
    assert _tag_slugs(body["latest_run"], "cuisine") == ["italian"]


def test_it_shows_no_latest_run_for_a_recipe_never_tagged(token_client: APIClient, carbonara: Recipe) -> None:
    response = token_client.get(_url(carbonara.pk))

    assert response.status_code == 200
    assert response.json()["latest_run"] is None


# --- Update -----------------------------------------------------------------------------------------


def test_it_changes_the_content_hash_and_drops_the_embedding_when_the_title_changes(
    token_client: APIClient, taxonomy: dict[str, Any], carbonara: Recipe
) -> None:
    recipe_tag(recipe=carbonara, config=TaggingConfig())
    before = _stored(carbonara)
    assert before["has_embedding"]

    response = token_client.patch(_url(carbonara.pk), {"title": "Spaghetti alla Carbonara"}, format="json")

    assert response.status_code == 200, response.content
    after = _stored(carbonara)
    expected_hash = recipe_content_hash(
        title="Spaghetti alla Carbonara", ingredients=before["ingredients"], instructions=before["instructions"]
    )
    assert response.json()["title"] == after["title"] == "Spaghetti alla Carbonara"
    assert response.json()["content_hash"] == after["content_hash"] == expected_hash
    assert after["content_hash"] != before["content_hash"]
    assert after["has_embedding"] is False
    assert after["embedding_model"] == ""
    assert response.json()["latest_run"] is not None


def test_it_keeps_the_embedding_when_only_the_source_changes(
    token_client: APIClient, taxonomy: dict[str, Any], carbonara: Recipe
) -> None:
    recipe_tag(recipe=carbonara, config=TaggingConfig())
    before = _stored(carbonara)

    response = token_client.patch(_url(carbonara.pk), {"source": "catalogue"}, format="json")

    assert response.status_code == 200, response.content
    assert _stored(carbonara) == {**before, "source": "catalogue"}


EMPTYING_PATCHES = {
    "empty title": ({"title": ""}, "invalid", "title"),
    "whitespace-only title": ({"title": "   "}, "invalid", "title"),
    "no ingredients and no instructions": ({"ingredients": [], "instructions": ""}, "invalid_recipe", "ingredients"),
    "blank ingredients and instructions": (
        {"ingredients": ["", " "], "instructions": "  "},
        "invalid_recipe",
        "ingredients",
    ),
    "everything empty": ({"title": "", "ingredients": [], "instructions": ""}, "invalid", "title"),
}


@pytest.mark.parametrize(("patch", "code", "field"), EMPTYING_PATCHES.values(), ids=EMPTYING_PATCHES.keys())
def test_it_refuses_a_patch_that_empties_the_recipe_and_keeps_it_unchanged(
    token_client: APIClient, taxonomy: dict[str, Any], carbonara: Recipe, patch: dict[str, Any], code: str, field: str
) -> None:
    recipe_tag(recipe=carbonara, config=TaggingConfig())
    before = _stored(carbonara)

    response = token_client.patch(_url(carbonara.pk), patch, format="json")

    error = assert_error(response, status=400, code=code)
    assert field in error["details"]
    assert _stored(carbonara) == before


def test_it_refuses_a_patch_with_a_wrongly_typed_field(token_client: APIClient, carbonara: Recipe) -> None:
    before = _stored(carbonara)

    response = token_client.patch(_url(carbonara.pk), {"ingredients": "eggs, pasta"}, format="json")

    error = assert_error(response, status=400, code="invalid")
    assert list(error["details"]) == ["ingredients"]
    assert _stored(carbonara) == before


def test_it_replaces_a_recipes_fields_with_put(token_client: APIClient, carbonara: Recipe) -> None:
    request = {
        "title": "Cacio e Pepe",
        "ingredients": ["200 g tonnarelli", "80 g pecorino romano", "black pepper"],
        "instructions": "Toast the pepper, emulsify the cheese with pasta water.",
        "external_id": "sku-9",
        "source": "catalogue",
    }

    response = token_client.put(_url(carbonara.pk), request, format="json")

    assert response.status_code == 200, response.content
    stored = _stored(carbonara)
    assert {name: stored[name] for name in request} == request
    assert stored["content_hash"] == recipe_content_hash(
        title=request["title"], ingredients=request["ingredients"], instructions=request["instructions"]
    )
    assert response.json()["title"] == "Cacio e Pepe"


def test_it_refuses_a_put_that_leaves_out_the_title(token_client: APIClient, carbonara: Recipe) -> None:
    before = _stored(carbonara)

    response = token_client.put(_url(carbonara.pk), {"ingredients": ["eggs"]}, format="json")

    error = assert_error(response, status=400, code="invalid")
    assert list(error["details"]) == ["title"]
    assert _stored(carbonara) == before


def test_it_refuses_to_change_external_id_to_one_the_source_already_uses(
    token_client: APIClient, api_client_user: Any
) -> None:
    mine = {"created_by": api_client_user, "instructions": "", "source": "catalogue"}
    recipe_create(title="Toast", ingredients=["bread"], external_id="sku-1", **mine)
    other = recipe_create(title="Tea", ingredients=["tea"], external_id="sku-2", **mine)

    response = token_client.patch(_url(other.pk), {"external_id": "sku-1"}, format="json")

    assert_error(response, status=409, code="conflict")
    assert _stored(other)["external_id"] == "sku-2"


def test_it_lets_several_recipes_of_a_source_clear_their_external_id(
    token_client: APIClient, api_client_user: Any
) -> None:
    mine = {"created_by": api_client_user, "instructions": "", "source": "shop"}
    first = recipe_create(title="Toast", ingredients=["bread"], external_id="sku-1", **mine)
    second = recipe_create(title="Tea", ingredients=["tea"], external_id="sku-2", **mine)

    responses = [token_client.patch(_url(r.pk), {"external_id": ""}, format="json") for r in (first, second)]

    assert [r.status_code for r in responses] == [200, 200]
    assert _stored(first)["external_id"] is None
    assert _stored(second)["external_id"] is None


# --- Delete -----------------------------------------------------------------------------------------


def test_it_deletes_a_recipe_and_its_runs(token_client: APIClient, taxonomy: dict[str, Any], carbonara: Recipe) -> None:
    recipe_tag(recipe=carbonara, config=TaggingConfig())

    response = token_client.delete(_url(carbonara.pk))

    assert response.status_code == 204
    assert response.content == b""
    assert not Recipe.objects.filter(pk=carbonara.pk).exists()
    assert not TaggingRun.objects.filter(recipe_id=carbonara.pk).exists()
    assert_error(token_client.get(_url(carbonara.pk)), status=404, code="not_found")
    assert_error(token_client.delete(_url(carbonara.pk)), status=404, code="not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/recipes/999999"),
        ("put", "/api/v1/recipes/999999"),
        ("patch", "/api/v1/recipes/999999"),
        ("delete", "/api/v1/recipes/999999"),
        ("post", "/api/v1/recipes/999999/tag"),
        ("get", "/api/v1/runs/999999"),
    ],
)
def test_it_answers_404_with_the_error_shape_for_an_unknown_id(token_client: APIClient, method: str, path: str) -> None:
    response = getattr(token_client, method)(path, {"title": "Toast"}, format="json")

    error = assert_error(response, status=404, code="not_found")
    assert error["details"] == {}


# --- Tag a stored recipe ----------------------------------------------------------------------------


def test_it_tags_a_stored_recipe_now(
    token_client: APIClient, taxonomy: dict[str, Any], carbonara: Recipe, api_client_user: Any
) -> None:
    response = token_client.post(f"{_url(carbonara.pk)}/tag", {"k": 1}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["recipe_id"] == carbonara.pk
    assert body["status"] == "succeeded"
    assert "Location" not in response
    assert _tag_slugs(body, "cuisine") == ["italian"]
    assert _tag_slugs(body, "dish_type") == ["pasta"]
    assert all(len(group["tags"]) <= 1 for group in body["categories"])
    run = TaggingRun.objects.get(pk=body["id"])
    assert run.recipe_id == carbonara.pk
    assert run.created_by == api_client_user
    assert run.assignments.count() == sum(len(group["tags"]) for group in body["categories"])


@pytest.mark.parametrize(
    ("request_body", "code"),
    [
        ({"categories": ["spaceship"]}, "unknown_category"),
        ({"strategy": "llm"}, "llm_not_configured"),
        ({"async": "yes"}, "invalid"),
        ({"k": 0}, "invalid"),
    ],
)
def test_it_refuses_to_tag_a_stored_recipe_with_an_invalid_request_and_stores_no_run(
    token_client: APIClient, taxonomy: dict[str, Any], carbonara: Recipe, request_body: dict[str, Any], code: str
) -> None:
    response = token_client.post(f"{_url(carbonara.pk)}/tag", request_body, format="json")

    assert_error(response, status=400, code=code)
    assert TaggingRun.objects.count() == 0
