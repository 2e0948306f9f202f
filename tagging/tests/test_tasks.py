"""Tagging on the Celery worker: a real worker process consumes the test queue against the test database."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from rest_framework.test import APIClient

from conftest import wait_for
from tagging.dispatch import recipe_tag_async
from tagging.models import RunStatus, TagAssignment, TaggingRun
from tagging.selectors import run_tags_by_category, runs_with_assignments
from tagging.services.config import TaggingConfig
from tagging.services.runs import run_execute
from tagging.tasks import run_execute_task
from tagging.tests.conftest import demo_recipe
from taxonomy.models import Category
from taxonomy.services.changes import categories_set_active

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]

FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED)


def _wait_until_finished(run_id: int) -> TaggingRun:
    finished = wait_for(
        lambda: TaggingRun.objects.filter(pk=run_id, status__in=FINISHED).exists(), timeout=60, interval=0.2
    )
    assert finished, "the worker did not finish the run within 60 s; see the test-worker log in .data/"
    return TaggingRun.objects.get(pk=run_id)


def test_it_queues_a_run_and_answers_202_with_where_to_poll(
    worker: Any, token_client: APIClient, demo_recipes: list[dict[str, Any]], api_client_user: Any
) -> None:
    carbonara = demo_recipe(demo_recipes, "Spaghetti Carbonara", created_by=api_client_user)

    response = token_client.post(f"/api/v1/recipes/{carbonara.pk}/tag", {"async": True, "k": 2}, format="json")

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued"
    assert body["recipe_id"] == carbonara.pk
    assert body["started_at"] is None
    assert body["finished_at"] is None
    assert body["timings"] == {}
    assert response["Location"] == f"/api/v1/runs/{body['id']}"
    # Let the worker finish before the database is flushed under it.
    _wait_until_finished(body["id"])


def test_it_reaches_succeeded_with_tags_when_polled(
    worker: Any, token_client: APIClient, demo_recipes: list[dict[str, Any]], api_client_user: Any
) -> None:
    tacos = demo_recipe(demo_recipes, "Beef Tacos", created_by=api_client_user)
    location = token_client.post(f"/api/v1/recipes/{tacos.pk}/tag", {"async": True}, format="json")["Location"]

    succeeded = wait_for(lambda: token_client.get(location).json()["status"] in FINISHED, timeout=60, interval=0.2)

    assert succeeded, "the run was not finished within 60 s; see the test-worker log in .data/"
    body = token_client.get(location).json()
    assert body["status"] == "succeeded", body["error"]
    assert body["error"] == ""
    assert body["started_at"] is not None
    assert body["finished_at"] is not None
    assert set(body["timings"]) >= {"embed_ms", "query_ms", "score_ms", "total_ms"}
    groups = {group["slug"]: [tag["slug"] for tag in group["tags"]] for group in body["categories"]}
    assert "mexican" in groups["cuisine"]
    assert "beef" in groups["main_ingredient"]
    tacos.refresh_from_db()
    assert tacos.embedding is not None


def test_it_does_not_duplicate_assignments_when_a_run_is_executed_again(
    worker: Any, demo_recipes: list[dict[str, Any]]
) -> None:
    ramen = demo_recipe(demo_recipes, "Miso Ramen")
    run = _wait_until_finished(recipe_tag_async(recipe=ramen, config=TaggingConfig()).pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assignments = sorted(TagAssignment.objects.filter(run=run).values_list("tag_id", "score", "rank"))
    assert assignments

    run_execute_task.delay(run_id=run.pk)
    # The solo worker takes tasks in order: once a run queued after the redelivery is done, so is the redelivery.
    sentinel = recipe_tag_async(recipe=ramen, config=TaggingConfig(categories=("cuisine",)))
    _wait_until_finished(sentinel.pk)
    again = run_execute(run_id=run.pk)

    assert again.status == RunStatus.SUCCEEDED
    assert sorted(TagAssignment.objects.filter(run=run).values_list("tag_id", "score", "rank")) == assignments
    run_after = TaggingRun.objects.get(pk=run.pk)
    assert run_after.finished_at == run.finished_at
    assert run_after.timings == run.timings


def test_it_fails_a_run_whose_category_was_deactivated_before_the_worker_took_it(
    worker: Any, demo_recipes: list[dict[str, Any]]
) -> None:
    carbonara = demo_recipe(demo_recipes, "Spaghetti Carbonara")
    occasion = Category.objects.get(slug="occasion")
    with transaction.atomic():
        # The task is sent when this block commits, so the worker only ever sees the category inactive.
        queued = recipe_tag_async(recipe=carbonara, config=TaggingConfig(categories=("cuisine", "occasion")))
        categories_set_active(category_ids=[occasion.pk], active=False)

    run = _wait_until_finished(queued.pk)

    assert run.status == RunStatus.FAILED
    assert "occasion" in run.error
    assert "cuisine" not in run.error
    assert run.finished_at is not None
    assert not TagAssignment.objects.filter(run=run).exists()


def test_it_never_reports_a_category_deactivated_before_the_worker_took_it_as_tagged_with_nothing(
    worker: Any, demo_recipes: list[dict[str, Any]]
) -> None:
    carbonara = demo_recipe(demo_recipes, "Spaghetti Carbonara")
    occasion = Category.objects.get(slug="occasion")
    with transaction.atomic():
        queued = recipe_tag_async(recipe=carbonara, config=TaggingConfig())
        categories_set_active(category_ids=[occasion.pk], active=False)

    run = _wait_until_finished(queued.pk)

    # The run asked for every active category, so it tags those active when the worker takes it.
    shown = [group["slug"] for group in run_tags_by_category(run=runs_with_assignments().get(pk=run.pk))]
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert "occasion" not in shown
    active = Category.objects.filter(active=True).order_by("position", "name")
    assert shown == list(active.values_list("slug", flat=True))
    assert run.config["category_slugs"] == shown
