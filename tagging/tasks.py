"""The tagging app's Celery tasks: entry points on the worker, one service call each.

Task names are the contract with messages already queued (and with beat schedules), so they stay put
when code moves.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis
from celery import Task, shared_task
from django.conf import settings

from autotagger.queue import BrokerUnavailable, queue_length, task_enqueue, tasks_enqueue
from prompts.gateway import LLMError
from tagging.models import TaggingRun
from tagging.services.batches import BatchPolled, llm_batch_poll, llm_batches_overdue
from tagging.services.config import TaggingError
from tagging.services.judging import JudgeError, run_judge
from tagging.services.runs import (
    RUN_SOFT_TIME_LIMIT,
    RUN_TIME_LIMIT,
    RunsSwept,
    job_runs_dispatch,
    run_execute,
    runs_requeue_stale,
)

logger = logging.getLogger(__name__)


# No automatic retry: run_execute records any failure on the run (where the client polls for it) before
# re-raising, so a retry would find the run finished and do nothing. LLM calls retry inside the gateway.
# A worker lost mid-run (killed, out of memory) puts the message back (reject_on_worker_lost): its next
# delivery takes the run over, and run_execute fails a run after TAGGING_RUN_MAX_ATTEMPTS deliveries, so a
# run that kills its worker cannot loop.
@shared_task(
    name="tagging.run_execute",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=RUN_SOFT_TIME_LIMIT,
    time_limit=RUN_TIME_LIMIT,
)
def run_execute_task(self: Task, *, run_id: int) -> None:
    """Execute a queued tagging run. A run already finished is left as it is (safe to redeliver)."""
    try:
        run_execute(run_id=run_id, delivery=self.request.id)
    except TaggingError:
        # The failure is recorded on the run, where the client polls for it.
        logger.warning("Tagging run %s failed", run_id, exc_info=True)


def runs_send(run_ids: Sequence[int]) -> int:
    """Queue one run_execute_task per run (one broker connection); raises BrokerUnavailable."""
    return tasks_enqueue(run_execute_task, ({"run_id": run_id} for run_id in run_ids))


@shared_task(name="tagging.job_dispatch", acks_late=True, soft_time_limit=300, time_limit=360)
def job_dispatch_task(*, job_id: int) -> None:
    """Queue the runs of a job recorded by the API, in chunks (a job may hold thousands). Safe to run twice:
    a run is handed out once; one the broker refused is taken back by the sweep."""
    job_runs_dispatch(job_id=job_id, enqueue=runs_send, chunk_size=settings.TAGGING_JOB_CHUNK_SIZE)


@shared_task(name="tagging.runs_sweep", acks_late=True, soft_time_limit=120, time_limit=180)
def runs_sweep_task() -> dict[str, Any]:
    """Periodic (beat): re-queue runs lost with a worker or the broker, fail those tried too often."""
    try:
        queue_idle = queue_length() == 0
    except redis.RedisError:
        # This task came through the broker; if it is gone again, queued runs are left for the next sweep.
        queue_idle = False
    swept: RunsSwept = runs_requeue_stale(enqueue=runs_send, include_queued=queue_idle)
    overdue = llm_batches_overdue()
    for batch_id, polls in overdue:
        llm_batch_poll_later(batch_id, after_polls=polls)
    return {"requeued": len(swept.requeued), "failed": len(swept.failed), "batches_polled": len(overdue)}


# A judge's answer is advice on stored tags: when the model fails, the run keeps its tags and no verdict, and
# staff ask again; nothing retries on its own.
@shared_task(name="tagging.run_judge", acks_late=True, soft_time_limit=RUN_SOFT_TIME_LIMIT, time_limit=RUN_TIME_LIMIT)
def run_judge_task(*, run_id: int, source: str | None = None) -> None:
    """Ask the LLM judge about a succeeded run's tags and store its verdicts."""
    try:
        run_judge(run=TaggingRun.objects.select_related("recipe").get(pk=run_id), source=source)
    except (TaggingRun.DoesNotExist, JudgeError, LLMError):
        logger.warning("Judging run %s failed", run_id, exc_info=True)


def runs_judge_send(run_ids: Sequence[int], *, source: str | None = None) -> int:
    """Queue one run_judge_task per run (one broker connection); raises BrokerUnavailable."""
    return tasks_enqueue(run_judge_task, ({"run_id": run_id, "source": source} for run_id in run_ids))


# Collecting a finished batch stores every run it answered (each as the worker stores a live one): allow it an
# hour. A poll killed on the way rolls back whole, and its message comes back (reject_on_worker_lost) or the
# sweep polls the batch again (llm_batches_overdue).
@shared_task(
    name="tagging.llm_batch_poll",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=3600,
    time_limit=3660,
)
def llm_batch_poll_task(*, batch_id: int, after_polls: int | None = None) -> dict[str, Any]:
    """Poll a Batch API batch of runs once; collect it when finished; poll again later while it is not."""
    polled: BatchPolled = llm_batch_poll(batch_id=batch_id, enqueue_live=runs_send, after_polls=after_polls)
    if polled.again:
        llm_batch_poll_later(batch_id, after_polls=polled.polls)
    if polled.next_batch is not None:
        llm_batch_poll_later(polled.next_batch.pk, after_polls=0)
    return {"again": polled.again, "stored": len(polled.stored), "failed": len(polled.failed), "live": len(polled.live)}


def llm_batch_poll_later(batch_id: int, *, after_polls: int) -> None:
    """Poll the batch in LLM_BATCH_POLL_SECONDS, if no other poll came first (`after_polls`: its polls now). A
    refusing broker is logged, not raised: the sweep polls a batch whose poll is overdue."""
    try:
        task_enqueue(
            llm_batch_poll_task, countdown=settings.LLM_BATCH_POLL_SECONDS, batch_id=batch_id, after_polls=after_polls
        )
    except BrokerUnavailable:
        logger.warning("Unable to schedule the next poll of LLM batch %s; the sweep will", batch_id, exc_info=True)
