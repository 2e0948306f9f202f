"""With the broker (Redis) unreachable, requests that need the worker answer 503 `broker_unavailable` within a
few seconds and leave nothing queued for ever; tagging that needs no worker goes on; and everything works
again once the broker is back. A batch job is recorded by the request and queued as one message."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from rest_framework.response import Response
from rest_framework.test import APIClient

from autotagger.redis import redis_client
from conftest import assert_error, wait_for
from tagging.models import Recipe, RunStatus, TaggingJob, TaggingRun
from tagging.services.runs import BROKER_UNAVAILABLE
from tagging.tasks import job_dispatch_task

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("taxonomy")]

NOTHING_LISTENS = "redis://127.0.0.1:1/0"  # port 1: the connection is refused at once
AD_HOC = {"title": "Beef tacos", "ingredients": ["tortillas", "beef", "salsa"], "instructions": ""}


@pytest.fixture
def broker_down(settings: Any) -> Any:
    settings.CELERY_BROKER_URL = NOTHING_LISTENS
    return settings


def _timed(call: Callable[[], Response]) -> tuple[Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_an_async_request_answers_503_quickly_and_its_run_is_failed_not_left_queued(
    broker_down: Any, token_client: APIClient, carbonara: Recipe
) -> None:
    response, elapsed = _timed(
        lambda: token_client.post(f"/api/v1/recipes/{carbonara.pk}/tag", {"async": True}, format="json")
    )

    assert_error(response, status=503, code="broker_unavailable")
    assert elapsed < 3
    assert "127.0.0.1" not in response.content.decode()
    run = TaggingRun.objects.get(recipe=carbonara)
    assert (run.status, run.error_code) == (RunStatus.FAILED, BROKER_UNAVAILABLE)
    assert run.finished_at is not None


def test_an_llm_request_answers_503_quickly(llm_settings: Any, broker_down: Any, token_client: APIClient) -> None:
    response, elapsed = _timed(lambda: token_client.post("/api/v1/tag", {**AD_HOC, "strategy": "llm"}, format="json"))

    assert_error(response, status=503, code="broker_unavailable")
    assert elapsed < 3
    assert not TaggingRun.objects.filter(status=RunStatus.QUEUED).exists()


def test_a_job_answers_503_quickly_and_keeps_nothing(
    broker_down: Any, token_client: APIClient, carbonara: Recipe
) -> None:
    response, elapsed = _timed(
        lambda: token_client.post("/api/v1/recipes/tag", {"recipe_ids": [carbonara.pk]}, format="json")
    )

    assert_error(response, status=503, code="broker_unavailable")
    assert elapsed < 3
    assert not TaggingJob.objects.exists()
    assert not TaggingRun.objects.exists()


def test_similarity_tagging_needs_no_broker(broker_down: Any, token_client: APIClient) -> None:
    response = token_client.post("/api/v1/tag", {**AD_HOC, "strategy": "similarity"}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "succeeded"


@pytest.mark.celery_worker
def test_requests_are_served_again_once_the_broker_is_back(
    worker: Any, settings: Any, token_client: APIClient, carbonara: Recipe
) -> None:
    reachable = settings.CELERY_BROKER_URL
    settings.CELERY_BROKER_URL = NOTHING_LISTENS
    down = token_client.post(f"/api/v1/recipes/{carbonara.pk}/tag", {"async": True}, format="json")
    assert_error(down, status=503, code="broker_unavailable")

    settings.CELERY_BROKER_URL = reachable
    response = token_client.post(f"/api/v1/recipes/{carbonara.pk}/tag", {"async": True}, format="json")

    assert response.status_code == 202, response.content
    run_id = response.json()["id"]
    succeeded = wait_for(lambda: TaggingRun.objects.filter(pk=run_id, status=RunStatus.SUCCEEDED).exists(), timeout=60)
    assert succeeded, "the worker did not finish the run within 60 s; see the test-worker log in .data/"


@pytest.fixture
def own_queue(settings: Any) -> Iterator[str]:
    """A queue no worker consumes, that this process sends to: what was queued stays there to be read."""
    queue = f"autotagger-test-unconsumed-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    yield queue
    redis_client().delete(queue)


def _task_names(queue: str) -> list[str]:
    return [json.loads(body)["headers"]["task"] for body in redis_client().lrange(queue, 0, -1)]


def test_a_job_is_recorded_by_the_request_and_queued_as_one_message(
    own_queue: str, token_client: APIClient, api_client_user: Any, carbonara: Recipe, settings: Any
) -> None:
    dishes = [Recipe(title=f"Dish {i}", ingredients=["rice"], created_by=api_client_user) for i in range(44)]
    recipes = [carbonara, *Recipe.objects.bulk_create(dishes)]

    response = token_client.post("/api/v1/recipes/tag", {"recipe_ids": [r.pk for r in recipes]}, format="json")

    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    assert _task_names(own_queue) == ["tagging.job_dispatch"]
    runs = TaggingRun.objects.filter(job_id=job_id)
    assert runs.count() == 45
    assert set(runs.values_list("status", "lease_expires_at")) == {(RunStatus.QUEUED, None)}

    # What the worker does with that message: queue the runs, in chunks, each with its lease.
    settings.TAGGING_JOB_CHUNK_SIZE = 20
    redis_client().delete(own_queue)
    job_dispatch_task(job_id=job_id)

    assert _task_names(own_queue) == ["tagging.run_execute"] * 45
    assert not runs.filter(lease_expires_at__isnull=True).exists()
    queued_ids = sorted(json.loads(body)["headers"]["kwargsrepr"] for body in redis_client().lrange(own_queue, 0, -1))
    assert len(set(queued_ids)) == 45

    # Safe to run twice: no run is handed out again.
    job_dispatch_task(job_id=job_id)
    assert len(_task_names(own_queue)) == 45
