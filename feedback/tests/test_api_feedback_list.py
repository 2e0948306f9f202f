"""GET /api/v1/feedback: every decision people made on tags, for reviewers and staff, filtered and paginated."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from conftest import assert_error
from feedback.models import Feedback
from feedback.services.reviews import TagDecision, recipe_review_submit
from prompts.models import PromptVersion
from tagging.models import RunStatus
from tagging.tests.conftest import RecipeFactory, TagAssignmentFactory, TaggingRunFactory
from taxonomy.models import Category, Tag
from taxonomy.tests.conftest import CategoryFactory, TagFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def tags(cuisine: Category) -> dict[str, Tag]:
    dish = CategoryFactory(slug="dish_type")
    return {tag.slug: tag for tag in cuisine.tags.all()} | {"pasta": TagFactory(category=dish, slug="pasta")}


@pytest.fixture
def version() -> PromptVersion:
    # Made by the prompts migrations.
    return PromptVersion.objects.get(prompt__name="tagging-default", number=1)


def reviewed_run(
    tags: dict[str, Tag], reviewer: Any, *, strategy: str = "llm", version: Any = None, channel: str = "review"
) -> Any:
    run = TaggingRunFactory(
        recipe=RecipeFactory(),
        strategy=strategy,
        status=RunStatus.SUCCEEDED,
        stats={"prompt_version_id": version.pk if version else None},
    )
    TagAssignmentFactory(run=run, tag=tags["italian"], score=0.9, rank=1)
    TagAssignmentFactory(run=run, tag=tags["mexican"], score=0.3, rank=2)
    recipe_review_submit(
        recipe=run.recipe,
        run=run,
        decisions=[
            TagDecision(tag_id=tags["italian"].pk, decision="accept"),
            TagDecision(tag_id=tags["mexican"].pk, decision="reject"),
            TagDecision(tag_id=tags["pasta"].pk, decision="add"),
        ],
        reviewer=reviewer,
        channel=channel,
    )
    return run


@pytest.fixture
def feedback_viewer(django_user_model: Any) -> Any:
    user = django_user_model.objects.create_user(username="analyst", is_staff=True)
    user.user_permissions.add(Permission.objects.get(content_type__app_label="feedback", codename="view_feedback"))
    return user


def results(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.content
    rows: list[dict[str, Any]] = response.json()["results"]
    return rows


def test_it_lists_every_decision_newest_first_with_its_tag_and_reviewer(
    tags: dict[str, Tag], reviewer: Any, version: Any, api_client_for: Callable[[Any], APIClient]
) -> None:
    first = reviewed_run(tags, reviewer, version=version)
    second = reviewed_run(tags, reviewer, strategy="similarity")

    rows = results(api_client_for(reviewer).get("/api/v1/feedback"))

    assert [(r["run_id"], r["tag"]) for r in rows][:3] == [
        (second.pk, "pasta"),
        (second.pk, "mexican"),
        (second.pk, "italian"),
    ]
    assert len(rows) == 6
    italian = next(r for r in rows if r["run_id"] == first.pk and r["tag"] == "italian")
    assert italian["category"] == "cuisine"
    assert italian["decision"] == "accept"
    assert italian["score"] == 0.9
    assert italian["reviewer"] == "reviewer"
    assert italian["channel"] == "review"
    assert italian["recipe_id"] == first.recipe_id
    assert (italian["prompt_version_id"], italian["prompt_version"]) == (version.pk, version.label)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("decision=accept", {("llm", "italian"), ("similarity", "italian")}),
        ("decision=add&strategy=similarity", {("similarity", "pasta")}),
        ("category=dish_type", {("llm", "pasta"), ("similarity", "pasta")}),
        ("category=cuisine&tag=mexican", {("llm", "mexican"), ("similarity", "mexican")}),
        ("tag=italian&channel=api", {("similarity", "italian")}),
        ("reviewer=nobody", set()),
    ],
)
def test_it_filters_by_what_the_query_names(
    tags: dict[str, Tag], reviewer: Any, api_client_for: Callable[[Any], APIClient], query: str, expected: set[Any]
) -> None:
    reviewed_run(tags, reviewer, strategy="llm")
    reviewed_run(tags, reviewer, strategy="similarity", channel="api")

    rows = results(api_client_for(reviewer).get(f"/api/v1/feedback?{query}"))

    assert {(r["strategy"], r["tag"]) for r in rows} == expected


def test_it_filters_by_recipe_run_reviewer_and_prompt_version(
    tags: dict[str, Tag], reviewer: Any, staff: Any, version: Any, api_client_for: Callable[[Any], APIClient]
) -> None:
    mine = reviewed_run(tags, reviewer, version=version)
    theirs = reviewed_run(tags, staff)
    client = api_client_for(staff)

    by_recipe = results(client.get(f"/api/v1/feedback?recipe={mine.recipe_id}"))
    by_run = results(client.get(f"/api/v1/feedback?run={theirs.pk}"))
    by_reviewer = results(client.get("/api/v1/feedback?reviewer=staff"))

    assert {r["run_id"] for r in by_recipe} == {mine.pk}
    assert {r["run_id"] for r in by_run} == {theirs.pk}
    assert {r["run_id"] for r in by_reviewer} == {theirs.pk}
    by_version = results(client.get(f"/api/v1/feedback?prompt_version={version.pk}"))
    assert {r["run_id"] for r in by_version} == {mine.pk}


def test_it_filters_by_time(tags: dict[str, Tag], reviewer: Any, api_client_for: Callable[[Any], APIClient]) -> None:
    old, new = reviewed_run(tags, reviewer), reviewed_run(tags, reviewer)
    Feedback.objects.filter(run=old).update(created_at=timezone.now() - timedelta(days=3))
    cut = (timezone.now() - timedelta(days=1)).isoformat()
    client = api_client_for(reviewer)

    since = results(client.get("/api/v1/feedback", {"since": cut}))
    until = results(client.get("/api/v1/feedback", {"until": cut}))

    assert {r["run_id"] for r in since} == {new.pk}
    assert {r["run_id"] for r in until} == {old.pk}


def test_it_pages_twenty_at_a_time_and_answers_404_past_the_last_page(
    tags: dict[str, Tag], reviewer: Any, api_client_for: Callable[[Any], APIClient]
) -> None:
    for _ in range(8):
        reviewed_run(tags, reviewer)
    client = api_client_for(reviewer)

    first = client.get("/api/v1/feedback").json()
    second = client.get("/api/v1/feedback?page=2").json()
    past = client.get("/api/v1/feedback?page=3")

    assert first["count"] == 24
    assert len(first["results"]) == 20
    assert len(second["results"]) == 4
    assert second["next"] is None
    assert {r["id"] for r in first["results"]}.isdisjoint({r["id"] for r in second["results"]})
    assert_error(past, status=404, code="not_found")


def test_it_reads_a_page_in_a_bounded_number_of_queries(
    tags: dict[str, Tag], reviewer: Any, version: Any, api_client_for: Callable[[Any], APIClient]
) -> None:
    client = api_client_for(reviewer)
    reviewed_run(tags, reviewer, version=version)
    with CaptureQueriesContext(connection) as few:
        client.get("/api/v1/feedback")
    for _ in range(6):
        reviewed_run(tags, reviewer, version=version)

    with CaptureQueriesContext(connection) as many:
        response = client.get("/api/v1/feedback")

    assert len(response.json()["results"]) == 20
    assert len(many) == len(few)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("decision=maybe", "decision"),
        ("strategy=guess", "strategy"),
        ("recipe=0", "recipe"),
        ("since=yesterday", "since"),
        ("since=2026-11-02T00:00:00Z&until=2026-11-01T00:00:00Z", "until"),
        ("channel=api&channel=review", "channel"),
    ],
)
def test_it_refuses_a_bad_filter_naming_it(
    reviewer: Any, api_client_for: Callable[[Any], APIClient], query: str, field: str
) -> None:
    response = api_client_for(reviewer).get(f"/api/v1/feedback?{query}")

    error = assert_error(response, status=400, code="invalid")
    assert field in error["details"]


def test_it_is_refused_to_clients_and_to_staff_without_the_view_permission(
    django_user_model: Any, token_client: APIClient, api_client_for: Callable[[Any], APIClient]
) -> None:
    plain_staff = django_user_model.objects.create_user(username="plain-staff", is_staff=True)

    assert_error(token_client.get("/api/v1/feedback"), status=403, code="permission_denied")
    assert_error(api_client_for(plain_staff).get("/api/v1/feedback"), status=403, code="permission_denied")
    assert_error(APIClient().get("/api/v1/feedback"), status=401, code="not_authenticated")


def test_it_is_read_by_staff_with_the_view_permission(
    tags: dict[str, Tag], reviewer: Any, feedback_viewer: Any, api_client_for: Callable[[Any], APIClient]
) -> None:
    reviewed_run(tags, reviewer)

    rows = results(api_client_for(feedback_viewer).get("/api/v1/feedback"))

    assert len(rows) == 3
