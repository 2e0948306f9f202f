"""With the broker unreachable, a new re-tagging job is recorded as failed with an error that says why, and its
recipes are not left pending for ever; the caller (the form) is told."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from autotagger.queue import BrokerUnavailable
from retagging.dispatch import retag_job_create
from retagging.models import ItemStatus, JobStatus, RetagJob
from tagging.models import Recipe

pytestmark = pytest.mark.django_db

NOTHING_LISTENS = "redis://127.0.0.1:1/0"  # port 1: the connection is refused at once


def test_a_job_whose_chunks_cannot_be_queued_is_failed_with_the_reason(
    settings: Any, kitchen: dict[str, Recipe], django_capture_on_commit_callbacks: Any
) -> None:
    settings.CELERY_BROKER_URL = NOTHING_LISTENS

    with pytest.raises(BrokerUnavailable), django_capture_on_commit_callbacks(execute=True):
        retag_job_create(selection={"kind": "all"}, strategy="similarity", config={}, dry_run=True)

    job = RetagJob.objects.get()
    assert job.status == JobStatus.FAILED
    assert job.finished_at is not None
    assert "task queue was unavailable" in job.error
    assert set(job.items.values_list("status", flat=True)) == {ItemStatus.FAILED}
    assert job.summary["failed"] == len(kitchen)


# Committed for real, as a request is: the chunks are queued when the job's transaction commits.
@pytest.mark.django_db(transaction=True)
def test_the_form_says_the_queue_is_unavailable(
    settings: Any, staff_browser: Client, kitchen: dict[str, Recipe]
) -> None:
    settings.CELERY_BROKER_URL = NOTHING_LISTENS

    response = staff_browser.post("/retag/jobs/new/", {"kind": "all", "strategy": "similarity", "dry_run": "on"})

    assert response.status_code == 400
    assert "The task queue is unavailable" in response.content.decode()
