"""The re-tagging pages: staff with the permissions see the jobs, start one (bad input answered with the problem
named), read the diff report, apply, roll back and cancel with a confirmation; everyone else gets 403."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from retagging.dispatch import retag_job_create
from retagging.models import JobStatus, RetagJob
from retagging.tests.conftest import current_run_id, job_execute, run_with_tags
from tagging.models import Recipe

pytestmark = pytest.mark.django_db


def _dry_run(kitchen: dict[str, Recipe]) -> RetagJob:
    for recipe in kitchen.values():
        run_with_tags(recipe, ["course/dessert"])
    return job_execute(
        retag_job_create(
            selection={"kind": "all"}, strategy="similarity", config={"categories": ["course"], "k": 1}, dry_run=True
        )
    )


def test_the_report_shows_progress_movers_and_the_recipes_that_change(
    staff_browser: Client, kitchen: dict[str, Recipe]
) -> None:
    job = _dry_run(kitchen)

    page = staff_browser.get(f"/retag/jobs/{job.pk}/").content.decode()

    assert "Biggest movers" in page
    assert "course/dessert" in page
    assert "Beef Tacos" in page
    assert "Apply: make these the current tags" in page
    assert f"{len(kitchen)} total" in page


def test_the_progress_json_gives_the_counters_and_status(staff_browser: Client, kitchen: dict[str, Recipe]) -> None:
    job = _dry_run(kitchen)

    body = staff_browser.get(f"/retag/jobs/{job.pk}/progress.json").json()

    assert body["status"] == "succeeded"
    assert body["total"] == body["done"] == len(kitchen)
    assert body["changed"] + body["unchanged"] == len(kitchen)
    assert (body["failed"], body["skipped"], body["pending"], body["percent"]) == (0, 0, 0, 100)
    assert body["url"] == f"/retag/jobs/{job.pk}/"


def test_applying_needs_the_confirmation_then_moves_the_pointers(
    staff_browser: Client, kitchen: dict[str, Recipe]
) -> None:
    job = _dry_run(kitchen)
    tacos = kitchen["Beef Tacos"]
    before = current_run_id(tacos)

    staff_browser.post(f"/retag/jobs/{job.pk}/apply/", {})
    assert current_run_id(tacos) == before

    response = staff_browser.post(f"/retag/jobs/{job.pk}/apply/", {"confirm": "yes"}, follow=True)

    assert f"Applied job {job.pk}: {len(kitchen)} recipes moved" in response.content.decode()
    assert current_run_id(tacos) == job.items.get(recipe=tacos).new_run_id
    staff_browser.post(f"/retag/jobs/{job.pk}/rollback/", {"confirm": "yes"})
    assert current_run_id(tacos) == before


def test_cancelling_from_the_page_stops_a_queued_job(staff_browser: Client, kitchen: dict[str, Recipe]) -> None:
    job = retag_job_create(selection={"kind": "all"}, strategy="similarity", config={}, dry_run=True)

    staff_browser.post(f"/retag/jobs/{job.pk}/cancel/", {"confirm": "yes"})

    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


def test_the_form_starts_a_job(staff_browser: Client, kitchen: dict[str, Recipe]) -> None:
    response = staff_browser.post(
        "/retag/jobs/new/",
        {
            "kind": "source",
            "value": "api",
            "strategy": "similarity",
            "categories": ["cuisine"],
            "k": "2",
            "dry_run": "on",
        },
    )

    job = RetagJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/retag/jobs/{job.pk}/"
    assert (job.selection, job.config["categories"], job.config["k"], job.dry_run) == (
        {"kind": "source", "value": "api"},
        ["cuisine"],
        2,
        True,
    )
    assert job.total == len(kitchen)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"kind": "tag", "value": "cuisine/klingon"}, "Unknown tag &#x27;cuisine/klingon&#x27;"),
        ({"kind": "changed_since", "value": "soon"}, "&#x27;soon&#x27; is not a date"),
        ({"kind": "category"}, "needs a value"),
    ],
)
def test_bad_input_in_the_form_is_answered_with_the_problem(
    staff_browser: Client, kitchen: dict[str, Recipe], data: dict[str, str], words: str
) -> None:
    response = staff_browser.post("/retag/jobs/new/", {**data, "strategy": "similarity"})

    assert response.status_code == 400
    assert words in response.content.decode()
    assert not RetagJob.objects.exists()


@pytest.mark.parametrize(
    "path", ["/retag/jobs/", "/retag/jobs/new/", "/retag/jobs/{job}/", "/retag/jobs/{job}/progress.json"]
)
def test_the_pages_are_refused_to_users_without_the_permissions(
    client: Client, django_user_model: Any, kitchen: dict[str, Recipe], path: str
) -> None:
    job = retag_job_create(selection={"kind": "all"}, strategy="similarity", config={}, dry_run=True)
    client.force_login(django_user_model.objects.create_user(username="plain-staff", is_staff=True))

    assert client.get(path.format(job=job.pk)).status_code == 403
    assert client.post(f"/retag/jobs/{job.pk}/cancel/", {"confirm": "yes"}).status_code == 403


def test_viewers_see_jobs_but_cannot_act(client: Client, django_user_model: Any, kitchen: dict[str, Recipe]) -> None:
    job = _dry_run(kitchen)
    viewer = django_user_model.objects.create_user(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_retagjob"))
    client.force_login(viewer)

    page = client.get(f"/retag/jobs/{job.pk}/").content.decode()

    assert "Biggest movers" in page
    assert "Apply:" not in page
    assert client.post(f"/retag/jobs/{job.pk}/apply/", {"confirm": "yes"}).status_code == 403
    assert client.get("/retag/jobs/").status_code == 200


def test_admin_lists_jobs_with_progress_and_applies_them(staff_browser: Client, kitchen: dict[str, Recipe]) -> None:
    job = _dry_run(kitchen)

    page = staff_browser.get("/admin/retagging/retagjob/").content.decode()
    staff_browser.post(
        "/admin/retagging/retagjob/", {"action": "apply_jobs", "_selected_action": [job.pk]}, follow=True
    )

    assert "Diff report" in page
    assert f"/retag/jobs/{job.pk}/" in page
    job.refresh_from_db()
    assert job.applied_at is not None
    assert staff_browser.get(f"/admin/retagging/retagjob/{job.pk}/change/").status_code == 200
    assert staff_browser.get("/admin/retagging/retagjob/add/")["Location"] == "/retag/jobs/new/"


def test_the_job_list_reads_every_jobs_progress_in_one_query(staff_browser: Client, kitchen: dict[str, Recipe]) -> None:
    _dry_run(kitchen)
    with CaptureQueriesContext(connection) as one_job:
        staff_browser.get("/retag/jobs/")
    for _ in range(3):
        _dry_run(kitchen)

    with CaptureQueriesContext(connection) as four_jobs:
        page = staff_browser.get("/retag/jobs/").content.decode()

    assert len(four_jobs) == len(one_job)
    assert page.count(f"{len(kitchen)} done · 0 failed · {len(kitchen)} total") == 4
