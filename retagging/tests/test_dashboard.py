"""The dashboard's re-tagging panel: staff who may see re-tagging jobs find the running ones with their progress
(a figure without JavaScript, a bar that moves with it) and the summaries of the latest that ended."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from autotagger.tests.browser import expect, sign_in
from retagging.models import ChunkStatus, ItemStatus, JobStatus, RetagChunk, RetagItem, RetagJob
from tagging.models import Recipe, RunStatus, Strategy, TaggingRun
from tagging.services.recipes import recipe_create


def running_job(*, total: int = 3, done: int = 1) -> RetagJob:
    job = RetagJob.objects.create(
        selection={"kind": "all"},
        strategy=Strategy.SIMILARITY,
        status=JobStatus.RUNNING,
        total=total,
        schedule_name="nightly",
    )
    chunk = RetagChunk.objects.create(job=job, number=1, status=ChunkStatus.RUNNING)
    for i in range(total):
        recipe = recipe_create(title=f"Soup {i}", ingredients=["water", "salt"], instructions="")
        if i < done:
            run = TaggingRun.objects.create(recipe=recipe, strategy=Strategy.SIMILARITY, status=RunStatus.SUCCEEDED)
            RetagItem.objects.create(job=job, chunk=chunk, recipe=recipe, status=ItemStatus.DONE, new_run=run)
        else:
            RetagItem.objects.create(job=job, chunk=chunk, recipe=recipe)
    return job


def ended_job() -> RetagJob:
    return RetagJob.objects.create(
        selection={"kind": "stale"},
        strategy=Strategy.HYBRID,
        status=JobStatus.SUCCEEDED,
        dry_run=False,
        total=12,
        finished_at=timezone.now(),
        summary={
            "total": 12,
            "done": 11,
            "changed": 7,
            "unchanged": 4,
            "failed": 1,
            "duration_seconds": 42.24,
            "notification": {"delivered": True, "status_code": 204, "attempts": 1, "error": ""},
        },
    )


@pytest.mark.django_db
def test_staff_see_a_running_job_s_progress_without_javascript(staff_browser: Client) -> None:
    job = running_job(total=3, done=1)

    page = staff_browser.get("/").content.decode()

    assert f'data-job-url="/retag/jobs/{job.pk}/progress.json"' in page
    assert f"Re-tag #{job.pk}" in page
    assert "1 done · 0 failed · 3 total" in page
    assert 'aria-valuenow="33"' in page
    assert "1 changed" not in page
    assert "0 changed · 1 unchanged" in page


@pytest.mark.django_db
def test_staff_see_the_summaries_of_the_latest_jobs_that_ended(staff_browser: Client) -> None:
    job = ended_job()

    page = staff_browser.get("/").content.decode()

    assert f'data-retag-summary="{job.pk}"' in page
    row = page[page.index(f'data-retag-summary="{job.pk}"') :].split("</tr>")[0]
    assert [cell in row for cell in (">7<", ">4<", ">1<", ">12<", "42.2 s", "delivered (204)")] == [True] * 6


@pytest.mark.django_db
def test_people_without_the_permission_see_no_re_tagging_panel(client: Client, reviewer: Any) -> None:
    ended_job()
    client.force_login(reviewer)

    page = client.get("/").content.decode()

    assert "data-retag-panel" not in page


@pytest.mark.django_db
def test_the_progress_the_bar_polls_has_the_figures_it_shows(staff_browser: Client) -> None:
    job = running_job(total=4, done=2)

    progress = staff_browser.get(f"/retag/jobs/{job.pk}/progress.json").json()

    assert {key: progress[key] for key in ("status", "done", "failed", "total", "percent", "changed", "unchanged")} == {
        "status": "running",
        "done": 2,
        "failed": 0,
        "total": 4,
        "percent": 50,
        "changed": 0,
        "unchanged": 2,
    }


@pytest.mark.browser
def test_the_bar_moves_as_the_job_runs_and_the_summary_shows_when_it_ends(page: Any, staff: Any) -> None:
    job = running_job(total=4, done=1)
    sign_in(page, username="staff", password="staff-password", next_url="/")
    row = page.locator(f"[data-retag-job='{job.pk}']")
    expect(row.locator("[data-job-percent]")).to_have_text("25%")

    pending = list(RetagItem.objects.filter(job=job, status=ItemStatus.PENDING).order_by("id"))
    recipe = Recipe.objects.get(pk=pending[0].recipe_id)
    run = TaggingRun.objects.create(recipe=recipe, strategy=Strategy.SIMILARITY, status=RunStatus.SUCCEEDED)
    RetagItem.objects.filter(pk=pending[0].pk).update(status=ItemStatus.DONE, new_run=run, changed=True)

    expect(row.locator("[data-job-percent]")).to_have_text("50%")
    expect(row.locator("[data-job-changed]")).to_have_text("1 changed · 1 unchanged")

    RetagItem.objects.filter(job=job, status=ItemStatus.PENDING).update(status=ItemStatus.SKIPPED)
    RetagJob.objects.filter(pk=job.pk).update(
        status=JobStatus.CANCELLED, finished_at=timezone.now(), cancelled_at=timezone.now(), summary={"total": 4}
    )

    expect(page.locator(f"[data-retag-summary='{job.pk}']")).to_contain_text("Cancelled")
