"""What celery beat triggers: a RetagSchedule's job, created as staff would create it (retagging.dispatch).

The task lives here rather than in retagging.tasks because creating a job queues the chunk task defined there
(retagging.dispatch imports retagging.tasks); the worker imports this module through CELERY_IMPORTS. Its name,
"retagging.schedule_run", is the contract with the PeriodicTask rows retagging.services.schedules writes.
"""

from __future__ import annotations

import logging

from celery import shared_task

from autotagger.errors import DomainError
from retagging.dispatch import retag_job_create
from retagging.models import RetagJob, RetagSchedule

logger = logging.getLogger(__name__)


def retag_schedule_run(*, schedule_id: int) -> RetagJob | None:
    """Create the job `schedule_id` describes, named after it; None when the schedule is gone or disabled
    (a beat message sent just before it changed). Raises what retag_job_create raises (the selection no longer
    valid, nothing to re-tag, the broker down)."""
    schedule = RetagSchedule.objects.filter(pk=schedule_id).first()
    if schedule is None or not schedule.enabled:
        logger.info("Re-tagging schedule %s is gone or disabled: no job created", schedule_id)
        return None
    return retag_job_create(
        selection=schedule.selection,
        strategy=schedule.strategy,
        config=schedule.config,
        dry_run=schedule.dry_run,
        use_batch=schedule.use_batch,
        schedule_name=schedule.name,
    )


@shared_task(name="retagging.schedule_run", acks_late=True, soft_time_limit=120, time_limit=180)
def schedule_run_task(*, schedule_id: int) -> int | None:
    """Periodic (beat, one PeriodicTask per RetagSchedule): create the schedule's job; its id, or None."""
    try:
        job = retag_schedule_run(schedule_id=schedule_id)
    except DomainError:
        # A schedule whose selection no longer holds (a tag deleted, nothing stale): nothing to re-tag now.
        logger.warning("Re-tagging schedule %s created no job", schedule_id, exc_info=True)
        return None
    return job.pk if job is not None else None
