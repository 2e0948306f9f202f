"""Sending evaluation jobs to the worker (feedback.tasks runs feedback.services)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from autotagger.queue import BrokerUnavailable, tasks_enqueue
from feedback.models import EvaluationJob, EvaluationJobStatus
from feedback.tasks import evaluation_job_step_task

logger = logging.getLogger(__name__)


def evaluation_job_enqueue(*, job: EvaluationJob) -> None:
    """Queue the job's steps once the job is committed; an unreachable queue fails the job, saying so."""
    transaction.on_commit(lambda: _enqueue(job.pk))


def _enqueue(job_id: int) -> None:
    # One step per worker that may take a chunk: each queues the next after its chunk, so that many chunks are
    # worked on at once until none is left (a step that finds nothing free ends or waits for the last).
    steps = max(1, int(settings.EVALUATION_PARALLEL_STEPS))
    try:
        tasks_enqueue(evaluation_job_step_task, ({"job_id": job_id} for _ in range(steps)))
    except BrokerUnavailable as exc:
        logger.exception("Unable to queue evaluation job %s", job_id)
        EvaluationJob.objects.filter(pk=job_id).update(
            status=EvaluationJobStatus.FAILED, error=exc.message, finished_at=timezone.now()
        )


def evaluation_job_enqueue_now(*, job: EvaluationJob) -> None:
    """Queue the job's steps now (a command resuming a job, outside any transaction)."""
    _enqueue(job.pk)
