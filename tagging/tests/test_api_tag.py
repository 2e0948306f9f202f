"""POST /api/v1/tag: tag an ad-hoc recipe."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from rest_framework.test import APIClient

from conftest import assert_error
from tagging.models import Recipe, RunStatus, TagAssignment, TaggingRun
from taxonomy.models import Category

pytestmark = pytest.mark.django_db

URL = "/api/v1/tag"


@pytest.fixture
def carbonara_payload(demo_recipes: list[dict[str, Any]]) -> dict[str, Any]:
    """What a client posts to tag Spaghetti Carbonara."""
    recipe = next(r for r in demo_recipes if r["title"] == "Spaghetti Carbonara")
    return {"title": recipe["title"], "ingredients": recipe["ingredients"], "instructions": recipe["instructions"]}


def _assert_error(response: Any, *, status: int, code: str) -> dict[str, Any]:
    """The error object, sent as JSON with a message that is text."""
    error = assert_error(response, status=status, code=code)
    assert response["Content-Type"] == "application/json"
    assert isinstance(error["message"], str)
    return error


# --- Success ----------------------------------------------------------------------------------------


def test_it_answers_with_the_run_and_its_tags_grouped_by_category(
    token_client: APIClient, taxonomy: dict[str, Any], carbonara_payload: dict[str, Any]
) -> None:
    response = token_client.post(URL, carbonara_payload, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert isinstance(body["id"], int)
    assert isinstance(body["recipe_id"], int)
    assert body["strategy"] == "similarity"
    assert body["status"] == "succeeded"
    assert body["model"] == "all-MiniLM-L6-v2"
    assert body["error"] == ""
    assert set(body["timings"]) == {"embed_ms", "query_ms", "learned_ms", "score_ms", "total_ms"}
    assert all(isinstance(value, (int, float)) and value >= 0 for value in body["timings"].values())
    taxonomy_order = [c["slug"] for c in sorted(taxonomy["categories"], key=lambda c: c["position"])]
    assert [group["slug"] for group in body["categories"]] == taxonomy_order
    names = {c["slug"]: c["name"] for c in taxonomy["categories"]}
    for group in body["categories"]:
        assert set(group) == {"slug", "name", "tags"}
        assert group["name"] == names[group["slug"]]
        for tag in group["tags"]:
            assert set(tag) == {"slug", "name", "score", "rank", "evidence", "judgements"}
            assert 0 <= tag["score"] <= 1
            assert tag["evidence"]["decided_by"] == "zero_shot"
            assert {"matched", "similarity", "rule"} <= set(tag["evidence"])
        assert [tag["rank"] for tag in group["tags"]] == list(range(1, len(group["tags"]) + 1))
    cuisine = next(group for group in body["categories"] if group["slug"] == "cuisine")
    assert cuisine["tags"][0]["slug"] == "italian"
    assert cuisine["tags"][0]["name"] == "Italian"


def test_it_stores_the_recipe_and_the_run(
    token_client: APIClient, taxonomy: dict[str, Any], carbonara_payload: dict[str, Any], api_client_user: Any
) -> None:
    response = token_client.post(URL, {**carbonara_payload, "k": 1, "categories": ["diet", "cuisine"]}, format="json")

    body = response.json()
    recipe = Recipe.objects.get(pk=body["recipe_id"])
    assert recipe.title == "Spaghetti Carbonara"
    assert recipe.ingredients == carbonara_payload["ingredients"]
    assert recipe.instructions == carbonara_payload["instructions"]
    assert recipe.source == "api"
    assert recipe.created_by == api_client_user
    assert recipe.embedding is not None
    run = TaggingRun.objects.get(pk=body["id"])
    assert run.recipe_id == recipe.pk
    assert run.status == RunStatus.SUCCEEDED
    assert run.created_by == api_client_user
    assert run.config["k"] == 1
    assert run.config["category_slugs"] == ["cuisine", "diet"]
    assert [group["slug"] for group in body["categories"]] == ["cuisine", "diet"]
    stored = list(TagAssignment.objects.filter(run=run).order_by("tag__category__position").values_list("tag__slug"))
    assert stored == [(tag["slug"],) for group in body["categories"] for tag in group["tags"]]


def test_it_applies_k_categories_and_threshold_from_the_request(
    token_client: APIClient, taxonomy: dict[str, Any], carbonara_payload: dict[str, Any]
) -> None:
    request = {**carbonara_payload, "k": 1, "categories": ["dish_type", "occasion"], "threshold": 0.7}

    response = token_client.post(URL, request, format="json")

    assert response.status_code == 200, response.content
    groups = {group["slug"]: group["tags"] for group in response.json()["categories"]}
    assert list(groups) == ["dish_type", "occasion"]
    assert [tag["slug"] for tag in groups["dish_type"]] == ["pasta"]
    assert groups["occasion"] == []


# --- Errors -----------------------------------------------------------------------------------------

INVALID_BODIES = {
    "missing title": ({"ingredients": ["1 egg"]}, "title"),
    "empty title": ({"title": "", "ingredients": ["1 egg"]}, "title"),
    "whitespace-only title": ({"title": "   \t ", "ingredients": ["1 egg"]}, "title"),
    "title that is a number": ({"title": 123, "ingredients": ["1 egg"]}, "title"),
    "no ingredients and no instructions": ({"title": "Toast"}, "ingredients"),
    "blank ingredients and instructions": (
        {"title": "Toast", "ingredients": ["", "  "], "instructions": "   "},
        "ingredients",
    ),
    "ingredients that are a string": ({"title": "Toast", "ingredients": "bread, butter"}, "ingredients"),
    "ingredients that are numbers": ({"title": "Toast", "ingredients": [1, 2]}, "ingredients"),
    "k of 0": ({"title": "Toast", "ingredients": ["bread"], "k": 0}, "k"),
    "k of 21": ({"title": "Toast", "ingredients": ["bread"], "k": 21}, "k"),
    "k that is a string": ({"title": "Toast", "ingredients": ["bread"], "k": "3"}, "k"),
    "k that is a boolean": ({"title": "Toast", "ingredients": ["bread"], "k": True}, "k"),
    "threshold of 1.5": ({"title": "Toast", "ingredients": ["bread"], "threshold": 1.5}, "threshold"),
    "negative threshold": ({"title": "Toast", "ingredients": ["bread"], "threshold": -0.1}, "threshold"),
    "threshold that is a string": ({"title": "Toast", "ingredients": ["bread"], "threshold": "0.5"}, "threshold"),
    "unknown strategy": ({"title": "Toast", "ingredients": ["bread"], "strategy": "nonsense"}, "strategy"),
    "categories that are not slugs": (
        {"title": "Toast", "ingredients": ["bread"], "categories": ["not a slug!"]},
        "categories",
    ),
}


@pytest.mark.parametrize(("body", "field"), INVALID_BODIES.values(), ids=INVALID_BODIES.keys())
def test_it_refuses_an_invalid_request_naming_the_field(
    token_client: APIClient, taxonomy: dict[str, Any], body: dict[str, Any], field: str
) -> None:
    response = token_client.post(URL, body, format="json")

    error = _assert_error(response, status=400, code="invalid")
    assert list(error["details"]) == [field]
    assert error["message"].startswith(f"{field}: ")
    assert Recipe.objects.count() == 0
    assert TaggingRun.objects.count() == 0


def test_it_refuses_an_unknown_category_and_lists_it(
    token_client: APIClient, taxonomy: dict[str, Any], carbonara_payload: dict[str, Any]
) -> None:
    request = {**carbonara_payload, "categories": ["cuisine", "spaceship", "diet", "time_machine"]}

    response = token_client.post(URL, request, format="json")

    error = _assert_error(response, status=400, code="unknown_category")
    assert error["details"] == {"categories": ["spaceship", "time_machine"]}
    assert "spaceship" in error["message"]
    assert Recipe.objects.count() == 0


def test_it_refuses_an_empty_category_list_instead_of_tagging_nothing(
    token_client: APIClient, taxonomy: dict[str, Any], carbonara_payload: dict[str, Any]
) -> None:
    response = token_client.post(URL, {**carbonara_payload, "categories": []}, format="json")

    error = _assert_error(response, status=400, code="invalid")
    assert list(error["details"]) == ["categories"]
    assert Recipe.objects.count() == 0


def test_it_refuses_an_inactive_category_like_an_unknown_one(
    token_client: APIClient, taxonomy: dict[str, Any], carbonara_payload: dict[str, Any]
) -> None:
    Category.objects.filter(slug="occasion").update(active=False)

    response = token_client.post(URL, {**carbonara_payload, "categories": ["cuisine", "occasion"]}, format="json")

    error = _assert_error(response, status=400, code="unknown_category")
    assert error["details"] == {"categories": ["occasion"]}
    assert Recipe.objects.count() == 0


@pytest.mark.parametrize("strategy", ["llm", "hybrid"])
def test_it_explains_that_an_llm_strategy_needs_llm_settings(
    token_client: APIClient, taxonomy: dict[str, Any], carbonara_payload: dict[str, Any], strategy: str
) -> None:
    response = token_client.post(URL, {**carbonara_payload, "strategy": strategy}, format="json")

    error = _assert_error(response, status=400, code="llm_not_configured")
    assert "LLM_BASE_URL" in error["message"]
    assert error["details"]["strategy"] == strategy
    assert "LLM_BASE_URL" in error["details"]["missing_settings"]
    assert Recipe.objects.count() == 0


def test_it_refuses_malformed_json(token_client: APIClient, taxonomy: dict[str, Any]) -> None:
    response = token_client.post(URL, '{"title": "Toast", "ingredients": [', content_type="application/json")

    _assert_error(response, status=400, code="parse_error")
    assert Recipe.objects.count() == 0


def test_it_refuses_a_json_array_body(
    token_client: APIClient, taxonomy: dict[str, Any], carbonara_payload: dict[str, Any]
) -> None:
    response = token_client.post(URL, json.dumps([carbonara_payload]), content_type="application/json")

    error = _assert_error(response, status=400, code="invalid")
    assert list(error["details"]) == ["non_field_errors"]
    assert Recipe.objects.count() == 0


def test_it_refuses_a_body_over_100_kb_with_413(
    token_client: APIClient, taxonomy: dict[str, Any], carbonara_payload: dict[str, Any]
) -> None:
    body = json.dumps({**carbonara_payload, "instructions": "Stir. " * 20_000})
    assert len(body.encode()) > 100 * 1024

    response = token_client.post(URL, body, content_type="application/json")

    error = _assert_error(response, status=413, code="payload_too_large")
    assert str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE) in error["message"]
    assert Recipe.objects.count() == 0


def test_it_refuses_a_body_that_is_not_json(token_client: APIClient, taxonomy: dict[str, Any]) -> None:
    response = token_client.post(URL, "title=Toast", content_type="application/x-www-form-urlencoded")

    _assert_error(response, status=415, code="unsupported_media_type")
    assert Recipe.objects.count() == 0


# --- Authentication ---------------------------------------------------------------------------------


def test_it_refuses_an_anonymous_caller_with_401(
    anonymous: APIClient, taxonomy: dict[str, Any], carbonara_payload: dict[str, Any]
) -> None:
    response = anonymous.post(URL, carbonara_payload, format="json")

    error = _assert_error(response, status=401, code="not_authenticated")
    assert error["details"] == {}
    assert response["WWW-Authenticate"] == "Token"
    assert Recipe.objects.count() == 0


def test_it_refuses_a_wrong_token_with_401(
    token_client: APIClient, taxonomy: dict[str, Any], carbonara_payload: dict[str, Any]
) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token 0000000000000000000000000000000000000000")

    response = client.post(URL, carbonara_payload, format="json")

    _assert_error(response, status=401, code="authentication_failed")
    assert Recipe.objects.count() == 0


def test_it_tags_for_a_caller_with_a_token(
    token_client: APIClient, taxonomy: dict[str, Any], carbonara_payload: dict[str, Any]
) -> None:
    response = token_client.post(URL, carbonara_payload, format="json")

    assert response.status_code == 200
    assert response.json()["status"] == "succeeded"


def test_it_tags_for_staff_logged_in_with_a_session(
    staff_client: APIClient, staff: Any, taxonomy: dict[str, Any], carbonara_payload: dict[str, Any]
) -> None:
    response = staff_client.post(URL, carbonara_payload, format="json")

    assert response.status_code == 200
    assert TaggingRun.objects.get(pk=response.json()["id"]).created_by == staff


def test_it_requires_a_csrf_token_from_a_session_caller(
    staff: Any, taxonomy: dict[str, Any], carbonara_payload: dict[str, Any]
) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(staff)

    response = browser.post(URL, json.dumps(carbonara_payload), content_type="application/json")

    error = _assert_error(response, status=403, code="permission_denied")
    assert "CSRF" in error["message"]
    assert Recipe.objects.count() == 0
