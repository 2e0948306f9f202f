"""The re-tagging app's Celery tasks: entry points on the worker, one service call each. Task names are the
contract with queued messages and beat schedules."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis
from celery import Task, shared_task
from django.conf import settings

from autotagger.queue import queue_length, tasks_enqueue
from retagging.services.chunks import (
    CHUNK_SOFT_TIME_LIMIT,
    CHUNK_TIME_LIMIT,
    retag_chunk_collect,
    retag_chunk_execute,
    retag_chunks_requeue_stale,
)
from retagging.services.notifications import retag_job_notify
from tagging.dispatch import runs_submit_batch_or_live
from tagging.tasks import runs_send

logger = logging.getLogger(__name__)


def _send_batch(run_ids: Sequence[int]) -> None:
    # A source or provider that does not take the batch gets the runs live instead.
    runs_submit_batch_or_live(run_ids=run_ids)


def _collect_later(chunk_id: int, countdown: int) -> None:
    chunk_collect_task.apply_async(kwargs={"chunk_id": chunk_id}, countdown=countdown)


# A worker lost mid-chunk puts the message back (reject_on_worker_lost): its next delivery, with the same id,
# takes the chunk over at once and skips the items already done; the sweep covers a message lost altogether.
@shared_task(
    name="retagging.chunk_execute",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=CHUNK_SOFT_TIME_LIMIT,
    time_limit=CHUNK_TIME_LIMIT,
)
def chunk_execute_task(self: Task, *, chunk_id: int) -> None:
    """Re-tag the pending recipes of a chunk (safe to deliver twice)."""
    retag_chunk_execute(
        chunk_id=chunk_id,
        delivery=self.request.id,
        send_runs=runs_send,
        schedule_collect=_collect_later,
        send_batch=_send_batch,
    )


@shared_task(name="retagging.chunk_collect", acks_late=True, soft_time_limit=120, time_limit=180)
def chunk_collect_task(*, chunk_id: int) -> None:
    """Finish the items of an LLM chunk whose runs have ended; checks again later while any wait."""
    retag_chunk_collect(chunk_id=chunk_id, schedule_collect=_collect_later)


def chunks_send(chunk_ids: Sequence[int]) -> int:
    return tasks_enqueue(chunk_execute_task, ({"chunk_id": chunk_id} for chunk_id in chunk_ids))


@shared_task(name="retagging.chunks_sweep", acks_late=True, soft_time_limit=120, time_limit=180)
def chunks_sweep_task() -> dict[str, Any]:
    """Periodic (beat): hand chunks lost with a worker to another, fail those delivered too often."""
    try:
        queue_idle = queue_length() == 0
    except redis.RedisError:
        queue_idle = False
    swept = retag_chunks_requeue_stale(enqueue=chunks_send, include_queued=queue_idle)
    return {"requeued": len(swept.requeued), "failed": len(swept.failed)}


# The webhook leaves the chunk tasks: a slow or failing receiver holds this task, within its bounded attempts.
NOTIFY_TIME_LIMIT = int(
    settings.WEBHOOK_MAX_ATTEMPTS * (settings.WEBHOOK_TIMEOUT_SECONDS + 1)
    + settings.WEBHOOK_RETRY_BASE_SECONDS * 2**settings.WEBHOOK_MAX_ATTEMPTS
    + 30
)


@shared_task(
    name="retagging.job_notify", acks_late=True, soft_time_limit=NOTIFY_TIME_LIMIT, time_limit=NOTIFY_TIME_LIMIT + 30
)
def job_notify_task(*, job_id: int) -> None:
    """Send a finished job's summary to the webhook and record the outcome on the job (sent once)."""
    retag_job_notify(job_id=job_id)
