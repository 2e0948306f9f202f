"""A job that ends tells the webhook, signed, and the outcome is recorded on the job for staff to see."""

from __future__ import annotations

import json
from typing import Any

import pytest
from celery import current_app
from django.utils import timezone

from autotagger.tests.webhook_receiver import WebhookReceiver
from retagging.models import JobStatus, RetagJob
from retagging.services.chunks import retag_job_finish
from retagging.services.notifications import retag_job_notify

pytestmark = pytest.mark.django_db

SUMMARY = {"total": 10, "done": 10, "changed": 4, "unchanged": 6, "failed": 0, "tags_added": {"cuisine/thai": 3}}


def finished_job(**fields: Any) -> RetagJob:
    values: dict[str, Any] = {
        "selection": {"kind": "stale"},
        "strategy": "similarity",
        "dry_run": True,
        "status": JobStatus.SUCCEEDED,
        "total": 10,
        "summary": dict(SUMMARY),
        "finished_at": timezone.now(),
        "schedule_name": "nightly",
        **fields,
    }
    return RetagJob.objects.create(**values)


def test_a_finished_job_s_summary_reaches_the_webhook_signed(webhook_receiver: WebhookReceiver) -> None:
    job = finished_job()

    delivery = retag_job_notify(job_id=job.pk)

    assert delivery is not None
    assert delivery.delivered
    [received] = webhook_receiver.received
    assert received.signature_valid
    assert received.headers["X-AutoTagger-Event"] == "retag_job.succeeded"
    body = json.loads(received.body)
    assert body["job"]["id"] == job.pk
    assert body["job"]["schedule_name"] == "nightly"
    assert body["summary"] == SUMMARY


def test_the_delivery_is_recorded_on_the_job(webhook_receiver: WebhookReceiver) -> None:
    job = finished_job()

    retag_job_notify(job_id=job.pk)

    job.refresh_from_db()
    notification = job.summary["notification"]
    assert (notification["delivered"], notification["status_code"], notification["attempts"]) == (True, 204, 1)
    assert job.summary["changed"] == 4  # the rest of the summary is kept


def test_a_receiver_that_keeps_failing_is_recorded_with_its_attempts(
    webhook_receiver: WebhookReceiver, settings: Any
) -> None:
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    webhook_receiver.script = [500, 500]
    job = finished_job(status=JobStatus.FAILED, summary={**SUMMARY, "error": "The model was unavailable."})

    retag_job_notify(job_id=job.pk)

    job.refresh_from_db()
    notification = job.summary["notification"]
    assert (notification["delivered"], notification["status_code"], notification["attempts"]) == (False, 500, 2)
    assert notification["error"] == "The receiver answered 500."
    assert webhook_receiver.received[0].headers["X-AutoTagger-Event"] == "retag_job.failed"


def test_a_delivered_summary_is_not_sent_twice(webhook_receiver: WebhookReceiver) -> None:
    job = finished_job()
    retag_job_notify(job_id=job.pk)

    again = retag_job_notify(job_id=job.pk)

    assert again is None
    assert len(webhook_receiver.received) == 1


def test_no_webhook_is_sent_without_a_url(webhook_receiver: WebhookReceiver, settings: Any) -> None:
    settings.RETAG_WEBHOOK_URL = ""
    job = finished_job()

    delivery = retag_job_notify(job_id=job.pk)

    assert delivery is None
    assert webhook_receiver.received == []
    job.refresh_from_db()
    assert "notification" not in job.summary


def test_a_job_still_running_is_not_announced(webhook_receiver: WebhookReceiver) -> None:
    job = finished_job(status=JobStatus.RUNNING, finished_at=None, summary={})

    assert retag_job_notify(job_id=job.pk) is None
    assert webhook_receiver.received == []


@pytest.fixture
def tasks_run_here() -> Any:
    """Tasks sent by the code under test run in this process as they are sent (the webhook settings of the
    test apply; the real worker has its own)."""
    current_app.conf.task_always_eager = True
    yield
    current_app.conf.task_always_eager = False


def test_finishing_a_job_sends_its_summary_once_committed(
    webhook_receiver: WebhookReceiver, tasks_run_here: None, django_capture_on_commit_callbacks: Any
) -> None:
    job = RetagJob.objects.create(selection={"kind": "all"}, strategy="similarity", status=JobStatus.RUNNING)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert retag_job_finish(job=job)
    assert webhook_receiver.received == []  # nothing leaves before the job's end is committed
    for callback in callbacks:
        callback()

    [received] = webhook_receiver.received
    assert received.signature_valid
    assert json.loads(received.body)["job"]["id"] == job.pk
    job.refresh_from_db()
    assert job.summary["notification"]["delivered"] is True


def test_finishing_a_job_twice_sends_nothing_the_second_time(
    webhook_receiver: WebhookReceiver, tasks_run_here: None, django_capture_on_commit_callbacks: Any
) -> None:
    job = RetagJob.objects.create(selection={"kind": "all"}, strategy="similarity", status=JobStatus.RUNNING)
    with django_capture_on_commit_callbacks(execute=True):
        retag_job_finish(job=job)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert not retag_job_finish(job=job)

    assert callbacks == []
    assert len(webhook_receiver.received) == 1
