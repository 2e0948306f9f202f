"""Tagging jobs (POST /api/v1/recipes/tag): a selection of recipes tagged on the real Celery worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from conftest import assert_error, wait_for
from tagging.models import Recipe, RunStatus, TaggingJob, TaggingRun
from tagging.tests.conftest import demo_recipe
from tagging.tests.helpers import tags_stored

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy")]

JOBS = "/api/v1/recipes/tag"


def _job_when_finished(client: APIClient, location: str) -> dict[str, Any]:
    finished = wait_for(lambda: client.get(location).json()["status"] == "finished", timeout=90, interval=0.2)
    assert finished, "the worker did not finish the job within 90 s; see the test-worker log in .data/"
    body: dict[str, Any] = client.get(location).json()
    return body


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_job_of_recipe_ids_tags_each_of_them_on_the_worker(
    worker: Any, token_client: APIClient, demo_recipes: list[dict[str, Any]], api_client_user: Any
) -> None:
    recipes = [
        demo_recipe(demo_recipes, title, created_by=api_client_user)
        for title in ("Spaghetti Carbonara", "Beef Tacos", "Miso Ramen")
    ]
    demo_recipe(demo_recipes, "Greek Salad", created_by=api_client_user)  # not asked for

    response = token_client.post(
        JOBS, {"recipe_ids": [r.pk for r in recipes], "strategy": "similarity", "k": 2}, format="json"
    )

    assert response.status_code == 202, response.content
    assert response.json()["total"] == 3
    body = _job_when_finished(token_client, response["Location"])
    assert body["status"] == "finished"
    assert (body["total"], body["done"], body["failed"], body["pending"], body["percent"]) == (3, 3, 0, 0, 100)
    assert body["selection"] == {"recipe_ids": [r.pk for r in recipes]}
    runs = TaggingRun.objects.filter(job_id=body["id"])
    assert sorted(runs.values_list("recipe_id", flat=True)) == sorted(r.pk for r in recipes)
    assert set(runs.values_list("status", flat=True)) == {RunStatus.SUCCEEDED}
    tacos = runs.get(recipe__title="Beef Tacos")
    assert "mexican" in {slug for slug, _ in tags_stored(tacos)["cuisine"]}


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_job_by_source_tags_exactly_that_sources_recipes(
    worker: Any, token_client: APIClient, demo_recipes: list[dict[str, Any]], api_client_user: Any
) -> None:
    from_blog = [
        demo_recipe(demo_recipes, "Greek Salad", source="blog", created_by=api_client_user),
        demo_recipe(demo_recipes, "Palak Paneer", source="blog", created_by=api_client_user),
    ]
    demo_recipe(demo_recipes, "Shakshuka", source="demo", created_by=api_client_user)
    demo_recipe(demo_recipes, "Beef Tacos", created_by=api_client_user)

    response = token_client.post(JOBS, {"filter": {"source": "blog"}}, format="json")

    assert response.status_code == 202, response.content
    body = _job_when_finished(token_client, response["Location"])
    assert (body["total"], body["done"], body["failed"]) == (2, 2, 0)
    assert body["selection"] == {"filter": {"source": "blog", "untagged": False}}
    tagged = TaggingRun.objects.filter(job_id=body["id"]).values_list("recipe_id", flat=True)
    assert sorted(tagged) == sorted(r.pk for r in from_blog)
    assert TaggingRun.objects.count() == 2


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        pytest.param(lambda ids: {"recipe_ids": ids, "filter": {"source": "demo"}}, "invalid", id="both"),
        pytest.param(lambda ids: {"strategy": "similarity"}, "invalid", id="neither"),
        pytest.param(lambda ids: {"recipe_ids": [*ids, 987654]}, "invalid_job", id="an unknown id"),
        pytest.param(lambda ids: {"filter": {"source": "nowhere"}}, "invalid_job", id="nothing matching"),
    ],
)
def test_a_job_with_a_bad_selection_is_refused_and_nothing_is_created(
    token_client: APIClient, carbonara: Recipe, payload: Callable[[list[int]], dict[str, Any]], code: str
) -> None:
    response = token_client.post(JOBS, payload([carbonara.pk]), format="json")

    error = assert_error(response, status=400, code=code)
    assert error["details"]
    assert not TaggingJob.objects.exists()
    assert not TaggingRun.objects.exists()


def test_a_job_naming_an_unknown_id_says_which(token_client: APIClient, carbonara: Recipe) -> None:
    response = token_client.post(JOBS, {"recipe_ids": [carbonara.pk, 987654]}, format="json")

    error = assert_error(response, status=400, code="invalid_job")
    assert error["details"] == {"recipe_ids": [987654]}
    assert "987654" in error["message"]


def test_a_job_filter_must_name_something_to_select(token_client: APIClient, taxonomy: dict[str, Any]) -> None:
    response = token_client.post("/api/v1/recipes/tag", {"filter": {}}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert not TaggingJob.objects.exists()
