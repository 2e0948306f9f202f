"""POST /api/v1/tag and /api/v1/recipes/{id}/tag with the llm and hybrid strategies."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from conftest import assert_error
from prompts.tests.openai_server import OpenAIServer
from tagging.models import Recipe, RunStatus, TaggingRun

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy")]


@pytest.mark.parametrize("strategy", ["llm", "hybrid"])
def test_the_tag_endpoint_refuses_an_llm_strategy_without_llm_base_url_and_stores_nothing(
    settings: Any, token_client: APIClient, carbonara: Recipe, strategy: str
) -> None:
    settings.LLM_DEFAULT_SOURCE = "default"
    settings.LLM_BASE_URL = ""
    settings.LLM_MODEL = "test-model"
    recipes_before = Recipe.objects.count()

    response = token_client.post(
        "/api/v1/tag",
        {"title": "Toast", "ingredients": ["bread"], "instructions": "Toast it.", "strategy": strategy},
        format="json",
    )

    error = assert_error(response, status=400, code="llm_not_configured")
    assert "set LLM_BASE_URL" in error["message"]
    assert error["details"]["missing_settings"] == ["LLM_BASE_URL"]
    assert error["details"]["strategy"] == strategy
    assert Recipe.objects.count() == recipes_before
    assert not TaggingRun.objects.exists()


def test_the_recipe_tag_endpoint_refuses_an_llm_strategy_without_llm_base_url(
    settings: Any, token_client: APIClient, carbonara: Recipe
) -> None:
    settings.LLM_DEFAULT_SOURCE = "default"
    settings.LLM_BASE_URL = ""

    response = token_client.post(f"/api/v1/recipes/{carbonara.pk}/tag", {"strategy": "llm"}, format="json")

    error = assert_error(response, status=400, code="llm_not_configured")
    assert "LLM_BASE_URL" in error["message"]
    assert not TaggingRun.objects.exists()


def test_the_tag_endpoint_queues_an_llm_run_and_answers_202_with_where_to_poll(
    llm_settings: Any, openai_server: OpenAIServer, token_client: APIClient, taxonomy: dict[str, Any]
) -> None:
    response = token_client.post(
        "/api/v1/tag",
        {"title": "Toast", "ingredients": ["bread", "butter"], "strategy": "llm", "k": 1},
        format="json",
    )

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued"
    assert body["strategy"] == "llm"
    assert body["categories"] == []
    assert body["finished_at"] is None
    assert response["Location"] == f"/api/v1/runs/{body['id']}"
    run = TaggingRun.objects.get(pk=body["id"])
    assert run.status == RunStatus.QUEUED
    assert run.recipe.title == "Toast"
    assert run.config["k"] == 1
    assert openai_server.requests == []


def test_the_recipe_tag_endpoint_queues_an_llm_run_even_without_async(
    llm_settings: Any, openai_server: OpenAIServer, token_client: APIClient, carbonara: Recipe
) -> None:
    response = token_client.post(f"/api/v1/recipes/{carbonara.pk}/tag", {"strategy": "llm"}, format="json")

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued"
    assert body["recipe_id"] == carbonara.pk
    assert response["Location"] == f"/api/v1/runs/{body['id']}"
    assert openai_server.requests == []


def test_the_tag_endpoint_refuses_to_wait_longer_than_tagging_max_wait_seconds(
    llm_settings: Any, token_client: APIClient, taxonomy: dict[str, Any]
) -> None:
    too_long = llm_settings.TAGGING_MAX_WAIT_SECONDS + 1

    response = token_client.post(
        "/api/v1/tag", {"title": "Toast", "ingredients": ["bread"], "strategy": "llm", "wait": too_long}, format="json"
    )

    error = assert_error(response, status=400, code="invalid")
    assert "wait" in error["details"]
    assert not Recipe.objects.exists()
    assert not TaggingRun.objects.exists()
