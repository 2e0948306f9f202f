"""Telling the outside world that a re-tagging job ended: its summary, POSTed to RETAG_WEBHOOK_URL and signed
(autotagger.webhooks), with the outcome recorded on the job where staff see it."""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from autotagger.queue import BrokerUnavailable, tasks_enqueue
from autotagger.webhooks import WebhookDelivery, webhook_send
from retagging.models import RetagJob

logger = logging.getLogger(__name__)


# The task's name is its contract (retagging.tasks defines it; that module imports this one).
NOTIFY_TASK = "retagging.job_notify"


def retag_job_notify_later(*, job_id: int) -> None:
    """Once the caller's transaction commits (the job's end is visible), queue the webhook for `job_id` in its
    own task, so that a slow receiver never holds a chunk; nothing when no webhook is configured."""
    if not settings.RETAG_WEBHOOK_URL:
        return
    transaction.on_commit(lambda: _notify_enqueue(job_id))


def _notify_enqueue(job_id: int) -> None:
    try:
        tasks_enqueue(current_app.tasks[NOTIFY_TASK], [{"job_id": job_id}])
    except BrokerUnavailable:
        # The job has ended and says so in admin and on the dashboard; only the webhook is lost.
        logger.exception("Unable to queue the webhook of re-tagging job %s", job_id)


def retag_job_event(*, job: RetagJob) -> str:
    return f"retag_job.{job.status}"


def retag_job_payload(*, job: RetagJob) -> dict[str, Any]:
    """What a receiver learns about a finished job: what it did and its summary (without earlier deliveries)."""
    summary = {key: value for key, value in (job.summary or {}).items() if key != "notification"}
    return {
        "event": retag_job_event(job=job),
        "job": {
            "id": job.pk,
            "status": job.status,
            "strategy": job.strategy,
            "dry_run": job.dry_run,
            "selection": job.selection,
            "schedule_name": job.schedule_name,
            "created_at": job.created_at,
            "finished_at": job.finished_at,
            "report_path": reverse("retagging:detail", kwargs={"job_id": job.pk}),
        },
        "summary": summary,
    }


def retag_job_notify(*, job_id: int) -> WebhookDelivery | None:
    """Send the summary of finished job `job_id` to the webhook and record the outcome in its summary
    ("notification"). None, sending nothing, when no webhook is configured, the job is not finished, or an
    earlier delivery of it succeeded (a redelivered task sends once)."""
    url = str(settings.RETAG_WEBHOOK_URL or "")
    job = RetagJob.objects.filter(pk=job_id).first()
    if not url or job is None or not job.finished:
        return None
    if (job.summary or {}).get("notification", {}).get("delivered"):
        return None
    delivery = webhook_send(
        url=url,
        secret=str(settings.RETAG_WEBHOOK_SECRET or ""),
        event=retag_job_event(job=job),
        payload=retag_job_payload(job=job),
    )
    with transaction.atomic():
        # Locked and read again: the summary may have moved on (apply, rollback) while the receiver answered.
        locked = RetagJob.objects.select_for_update().get(pk=job.pk)
        locked.summary = {
            **(locked.summary or {}),
            "notification": {**delivery.as_dict(), "sent_at": timezone.now().isoformat()},
        }
        locked.save(update_fields=["summary"])
    return delivery
