"""Asking the LLM judge about a run from its page and from the API (POST /api/v1/runs/{id}/judge): the task is
queued with the source chosen, for users allowed to add verdicts, about runs they may read that succeeded."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from autotagger.redis import redis_client
from conftest import assert_error
from prompts.models import LLMSource
from tagging.models import RunStatus, TaggingRun
from tagging.tests.conftest import RecipeFactory, TagAssignmentFactory, TaggingRunFactory
from taxonomy.models import Tag

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy")]


@pytest.fixture
def own_queue(settings: Any) -> Iterator[str]:
    """A queue no worker consumes, that this process sends to: what was queued stays there to be read."""
    queue = f"autotagger-test-unconsumed-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    yield queue
    redis_client().delete(queue)


def queued(queue: str) -> list[tuple[str, str]]:
    """(task name, kwargs as Celery printed them) of each message waiting in `queue`."""
    headers = [json.loads(m)["headers"] for m in redis_client().lrange(queue, 0, -1)]
    return [(h["task"], h["kwargsrepr"]) for h in headers]


@pytest.fixture
def judge_source(llm_settings: Any) -> LLMSource:
    return LLMSource.objects.create(
        name="judge", base_url=llm_settings.LLM_BASE_URL, model="test-model", probed_at=timezone.now()
    )


def judging(user: Any) -> Any:
    user.user_permissions.add(Permission.objects.get(codename="add_tagjudgement"))
    return type(user).objects.get(pk=user.pk)  # permissions are cached per user object


def own_run(user: Any, status: str = RunStatus.SUCCEEDED) -> TaggingRun:
    recipe = RecipeFactory(created_by=user)
    run = TaggingRunFactory(recipe=recipe, created_by=user, status=status)
    TagAssignmentFactory(run=run, tag=Tag.objects.get(category__slug="cuisine", slug="italian"))
    return run


def test_the_api_queues_the_judge_with_the_source_asked_and_says_where_to_look(
    own_queue: str, judge_source: LLMSource, api_client_user: Any, api_client_for: Any
) -> None:
    client = api_client_for(judging(api_client_user))
    run = own_run(api_client_user)

    response = client.post(f"/api/v1/runs/{run.pk}/judge", {"source": "judge"}, format="json")

    assert response.status_code == 202, response.content
    assert response.json() == {
        "run_id": run.pk,
        "source": "judge",
        "status": "queued",
        "run_url": f"/api/v1/runs/{run.pk}",
        "page_url": f"/runs/{run.pk}/",
    }
    assert response["Location"] == f"/api/v1/runs/{run.pk}"
    assert queued(own_queue) == [("tagging.run_judge", f"{{'run_id': {run.pk}, 'source': 'judge'}}")]


def test_without_a_source_the_default_one_judges(
    own_queue: str, llm_settings: Any, api_client_user: Any, api_client_for: Any
) -> None:
    run = own_run(api_client_user)

    response = api_client_for(judging(api_client_user)).post(f"/api/v1/runs/{run.pk}/judge", {}, format="json")

    assert response.status_code == 202
    assert response.json()["source"] == "default"
    assert queued(own_queue) == [("tagging.run_judge", f"{{'run_id': {run.pk}, 'source': 'default'}}")]


def test_an_unknown_source_is_refused_naming_it_and_nothing_is_queued(
    own_queue: str, llm_settings: Any, api_client_user: Any, api_client_for: Any
) -> None:
    run = own_run(api_client_user)

    response = api_client_for(judging(api_client_user)).post(
        f"/api/v1/runs/{run.pk}/judge", {"source": "nonesuch"}, format="json"
    )

    error = assert_error(response, status=400, code="llm_not_configured")
    assert "There is no LLM source named 'nonesuch'" in error["message"]
    assert queued(own_queue) == []


@pytest.mark.parametrize("status", [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.FAILED])
def test_a_run_that_has_not_succeeded_is_a_conflict(
    own_queue: str, llm_settings: Any, api_client_user: Any, api_client_for: Any, status: str
) -> None:
    run = own_run(api_client_user, status=status)

    response = api_client_for(judging(api_client_user)).post(f"/api/v1/runs/{run.pk}/judge", {}, format="json")

    assert_error(response, status=409, code="run_not_succeeded")
    assert queued(own_queue) == []


def test_a_user_who_may_read_the_run_but_not_add_verdicts_is_forbidden(
    own_queue: str, llm_settings: Any, token_client: APIClient, api_client_user: Any
) -> None:
    run = own_run(api_client_user)

    response = token_client.post(f"/api/v1/runs/{run.pk}/judge", {}, format="json")

    assert_error(response, status=403, code="permission_denied")
    assert queued(own_queue) == []


def test_someone_elses_run_is_not_found_even_with_the_permission(
    own_queue: str, llm_settings: Any, django_user_model: Any, api_client_for: Any
) -> None:
    owner = django_user_model.objects.create_user(username="owner")
    other = judging(django_user_model.objects.create_user(username="other"))
    run = own_run(owner)

    response = api_client_for(other).post(f"/api/v1/runs/{run.pk}/judge", {}, format="json")
    missing = api_client_for(other).post("/api/v1/runs/999999/judge", {}, format="json")

    assert_error(response, status=404, code="not_found")
    assert_error(missing, status=404, code="not_found")
    assert queued(own_queue) == []


def test_an_anonymous_caller_must_sign_in() -> None:
    response = APIClient().post("/api/v1/runs/1/judge", {}, format="json")

    assert response.status_code == 401


def test_the_run_page_offers_the_judge_to_who_may_add_verdicts_and_queues_it(
    own_queue: str, judge_source: LLMSource, staff: Any, client: Client
) -> None:
    run = own_run(staff)
    client.force_login(staff)

    page = client.get(f"/runs/{run.pk}/").content.decode()
    response = client.post(f"/runs/{run.pk}/judge/", {"source": "judge"}, follow=True)

    assert 'id="judge-form"' in page
    assert '<option value="judge">judge</option>' in page
    assert response.redirect_chain == [(f"/runs/{run.pk}/", 302)]
    assert "The LLM judge (judge) is asked about this run" in response.content.decode()
    assert queued(own_queue) == [("tagging.run_judge", f"{{'run_id': {run.pk}, 'source': 'judge'}}")]


def test_the_run_page_says_why_when_the_judge_cannot_be_asked(
    own_queue: str, llm_settings: Any, staff: Any, client: Client
) -> None:
    run = own_run(staff)
    client.force_login(staff)

    response = client.post(f"/runs/{run.pk}/judge/", {"source": "nonesuch"}, follow=True)

    assert "There is no LLM source named &#x27;nonesuch&#x27;" in response.content.decode()
    assert queued(own_queue) == []


def test_without_the_permission_the_run_page_has_no_judge_button_and_refuses_it(
    own_queue: str, llm_settings: Any, api_client_user: Any, client: Client
) -> None:
    run = own_run(api_client_user)
    client.force_login(api_client_user)

    page = client.get(f"/runs/{run.pk}/").content.decode()
    response = client.post(f"/runs/{run.pk}/judge/", {"source": "default"})

    assert 'id="judge-form"' not in page
    assert response.status_code == 403
    assert queued(own_queue) == []


def test_a_run_that_has_not_succeeded_shows_no_judge_button(llm_settings: Any, staff: Any, client: Client) -> None:
    run = own_run(staff, status=RunStatus.FAILED)
    client.force_login(staff)

    assert 'id="judge-form"' not in client.get(f"/runs/{run.pk}/").content.decode()
