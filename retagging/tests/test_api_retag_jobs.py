"""/api/v1/retag-jobs: staff with the RetagJob permissions list, create, read, apply, roll back and cancel jobs;
bad input is a 400 naming the problem, an action the job's state refuses a 409."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from conftest import assert_error
from retagging.models import ChunkStatus, ItemStatus, JobStatus, RetagChunk, RetagItem, RetagJob
from tagging.models import Recipe, RunStatus, Strategy, TaggingRun
from tagging.services.recipes import recipe_create

pytestmark = pytest.mark.django_db


def staff_with(django_user_model: Any, *codenames: str) -> Any:
    user = django_user_model.objects.create_user(username=f"staff-{'-'.join(codenames) or 'none'}", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="retagging", codename__in=codenames))
    return user


@pytest.fixture
def viewer_client(django_user_model: Any, api_client_for: Callable[[Any], APIClient]) -> APIClient:
    return api_client_for(staff_with(django_user_model, "view_retagjob"))


@pytest.fixture
def operator_client(django_user_model: Any, api_client_for: Callable[[Any], APIClient]) -> APIClient:
    user = staff_with(django_user_model, "view_retagjob", "add_retagjob", "change_retagjob")
    return api_client_for(user)


@pytest.fixture
def recipes(taxonomy: Any) -> list[Recipe]:
    return [
        recipe_create(title="Green curry", ingredients=["coconut milk", "green curry paste"], instructions=""),
        recipe_create(title="Carbonara", ingredients=["spaghetti", "eggs", "pecorino"], instructions=""),
    ]


def succeeded_dry_run(recipes: list[Recipe]) -> RetagJob:
    """A dry run whose every recipe got a new run that is not yet their current tags."""
    now = timezone.now()
    job = RetagJob.objects.create(
        selection={"kind": "all"},
        strategy=Strategy.SIMILARITY,
        dry_run=True,
        total=len(recipes),
        status=JobStatus.SUCCEEDED,
        finished_at=now,
        summary={"total": len(recipes), "changed": len(recipes)},
    )
    chunk = RetagChunk.objects.create(job=job, number=1, status=ChunkStatus.DONE)
    for recipe in recipes:
        run = TaggingRun.objects.create(
            recipe=recipe, strategy=Strategy.SIMILARITY, status=RunStatus.SUCCEEDED, sets_current=False
        )
        RetagItem.objects.create(
            job=job, chunk=chunk, recipe=recipe, status=ItemStatus.DONE, new_run=run, changed=True, added=["x/y"]
        )
    return job


def test_staff_with_the_add_permission_create_a_dry_run(operator_client: APIClient, recipes: list[Recipe]) -> None:
    response = operator_client.post(
        "/api/v1/retag-jobs",
        {"selection": {"kind": "all"}, "strategy": "similarity", "config": {"k": 2}},
        format="json",
    )

    assert response.status_code == 202, response.content
    body = response.json()
    assert response["Location"] == f"/api/v1/retag-jobs/{body['id']}"
    assert (body["status"], body["dry_run"], body["strategy"]) == ("queued", True, "similarity")
    assert body["progress"]["total"] == 2
    assert body["progress"]["pending"] == 2
    assert RetagJob.objects.get(pk=body["id"]).config["k"] == 2


def test_an_unknown_category_is_a_400_naming_it(operator_client: APIClient, recipes: list[Recipe]) -> None:
    response = operator_client.post(
        "/api/v1/retag-jobs",
        {"selection": {"kind": "category", "value": "planets"}, "strategy": "similarity"},
        format="json",
    )

    error = assert_error(response, status=400, code="invalid_selection")
    assert "planets" in error["message"]
    assert not RetagJob.objects.exists()


def test_an_unknown_strategy_is_a_400(operator_client: APIClient, recipes: list[Recipe]) -> None:
    response = operator_client.post(
        "/api/v1/retag-jobs", {"selection": {"kind": "all"}, "strategy": "guesswork"}, format="json"
    )

    assert response.status_code == 400
    assert "strategy" in response.json()["error"]["details"]


def test_viewing_staff_may_list_but_not_create(viewer_client: APIClient, recipes: list[Recipe]) -> None:
    job = succeeded_dry_run(recipes)

    listed = viewer_client.get("/api/v1/retag-jobs")
    created = viewer_client.post(
        "/api/v1/retag-jobs", {"selection": {"kind": "all"}, "strategy": "similarity"}, format="json"
    )

    assert listed.status_code == 200
    [item] = listed.json()["results"]
    assert item["id"] == job.pk
    assert item["progress"] == {
        "total": 2,
        "done": 2,
        "changed": 2,
        "unchanged": 0,
        "failed": 0,
        "skipped": 0,
        "pending": 0,
        "percent": 100,
    }
    assert item["summary"]["changed"] == 2
    assert created.status_code == 403


def test_others_are_refused(
    django_user_model: Any, api_client_for: Callable[[Any], APIClient], token_client: APIClient, recipes: list[Recipe]
) -> None:
    job = succeeded_dry_run(recipes)
    staff_without = api_client_for(staff_with(django_user_model))

    assert APIClient().get("/api/v1/retag-jobs").status_code == 401
    assert token_client.get("/api/v1/retag-jobs").status_code == 403
    assert staff_without.get(f"/api/v1/retag-jobs/{job.pk}").status_code == 403
    assert token_client.post(f"/api/v1/retag-jobs/{job.pk}/apply").status_code == 403


def test_an_unknown_job_is_a_404(operator_client: APIClient) -> None:
    assert operator_client.get("/api/v1/retag-jobs/999999").status_code == 404
    assert operator_client.post("/api/v1/retag-jobs/999999/cancel").status_code == 404


def test_applying_a_dry_run_moves_the_pointers_then_rolling_back_restores_them(
    operator_client: APIClient, recipes: list[Recipe]
) -> None:
    job = succeeded_dry_run(recipes)
    new_runs = {item.recipe_id: item.new_run_id for item in job.items.all()}

    applied = operator_client.post(f"/api/v1/retag-jobs/{job.pk}/apply")

    assert applied.status_code == 200, applied.content
    assert applied.json()["applied_at"] is not None
    assert {r.pk: r.current_run_id for r in Recipe.objects.filter(pk__in=new_runs)} == new_runs

    rolled_back = operator_client.post(f"/api/v1/retag-jobs/{job.pk}/rollback")

    assert rolled_back.status_code == 200, rolled_back.content
    assert rolled_back.json()["rolled_back_at"] is not None
    assert set(Recipe.objects.filter(pk__in=new_runs).values_list("current_run_id", flat=True)) == {None}


def test_applying_twice_is_a_409(operator_client: APIClient, recipes: list[Recipe]) -> None:
    job = succeeded_dry_run(recipes)
    operator_client.post(f"/api/v1/retag-jobs/{job.pk}/apply")

    response = operator_client.post(f"/api/v1/retag-jobs/{job.pk}/apply")

    assert_error(response, status=409, code="retag_job_state")


def test_rolling_back_a_dry_run_never_applied_is_a_409(operator_client: APIClient, recipes: list[Recipe]) -> None:
    job = succeeded_dry_run(recipes)

    response = operator_client.post(f"/api/v1/retag-jobs/{job.pk}/rollback")

    assert_error(response, status=409, code="retag_job_state")


def test_cancelling_a_queued_job_skips_its_recipes_and_a_second_cancel_is_a_409(
    operator_client: APIClient, recipes: list[Recipe]
) -> None:
    created = operator_client.post(
        "/api/v1/retag-jobs", {"selection": {"kind": "all"}, "strategy": "similarity"}, format="json"
    ).json()

    cancelled = operator_client.post(f"/api/v1/retag-jobs/{created['id']}/cancel")
    again = operator_client.post(f"/api/v1/retag-jobs/{created['id']}/cancel")

    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["progress"]["skipped"] == 2
    assert_error(again, status=409, code="retag_job_state")


def test_the_list_reads_a_page_of_jobs_in_as_many_queries_as_one_job(
    viewer_client: APIClient, recipes: list[Recipe]
) -> None:
    succeeded_dry_run(recipes)
    viewer_client.get("/api/v1/retag-jobs")  # the token and permissions, as every request reads them
    with CaptureQueriesContext(connection) as one:
        viewer_client.get("/api/v1/retag-jobs")
    for _ in range(4):
        succeeded_dry_run(recipes)

    with CaptureQueriesContext(connection) as five:
        response = viewer_client.get("/api/v1/retag-jobs")

    assert response.json()["count"] == 5
    assert len(five) == len(one)
