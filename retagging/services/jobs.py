"""Re-tagging jobs once created (retagging.dispatch.retag_job_create): cancel one, apply a finished dry run,
roll a job back. Each is one call for a view, an admin action or a schedule."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import connection, transaction
from django.utils import timezone

from autotagger.errors import DomainError
from retagging.models import ChunkStatus, ItemStatus, JobStatus, RetagChunk, RetagItem, RetagJob
from retagging.services.chunks import retag_job_finish
from tagging.models import RunStatus, Strategy, TaggingRun
from tagging.services.config import TaggingConfig, tagging_config_validate, user_or_none

logger = logging.getLogger(__name__)

CONFIG_KEYS = ("k", "categories", "threshold", "source", "embedding")


class RetagError(DomainError):
    code = "retag_error"


class InvalidRetagJob(RetagError):
    code = "invalid_retag_job"


class RetagJobState(RetagError):
    """The job is not in a state that allows the action (applying a job still running, rolling back twice)."""

    code = "retag_job_state"
    status = 409


def retag_config_parse(*, strategy: str, config: dict[str, Any]) -> TaggingConfig:
    """The TaggingConfig a job asks for; raises a TaggingError or InvalidRetagJob naming the problem."""
    if strategy not in Strategy.values:
        raise InvalidRetagJob(
            f"Unknown strategy {strategy!r}; choose one of {', '.join(Strategy.values)}.",
            details={"strategy": strategy},
        )
    if not isinstance(config, dict):
        raise InvalidRetagJob("The config must be an object.", details={"config": config})
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise InvalidRetagJob(
            f"Unknown config keys: {', '.join(unknown)}; a config may set {', '.join(CONFIG_KEYS)}.",
            details={"config": unknown},
        )
    categories = config.get("categories")
    if categories is not None and (not isinstance(categories, list) or not all(isinstance(c, str) for c in categories)):
        raise InvalidRetagJob("config.categories must be a list of category slugs.", details={"categories": categories})
    k, threshold = config.get("k"), config.get("threshold")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int)):
        raise InvalidRetagJob("config.k must be a whole number.", details={"k": k})
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int | float)):
        raise InvalidRetagJob("config.threshold must be a number between 0 and 1.", details={"threshold": threshold})
    parsed = TaggingConfig.from_dict({**config, "strategy": strategy})
    tagging_config_validate(config=parsed)
    return parsed


def _lock(job: RetagJob) -> RetagJob:
    return RetagJob.objects.select_for_update().get(pk=job.pk)


@transaction.atomic
def retag_job_cancel(*, job: RetagJob, user: AbstractBaseUser | AnonymousUser | None) -> RetagJob:
    """Stop a queued or running job: its pending recipes are skipped (a chunk in progress stores nothing
    more), runs it queued and no worker started are failed, and the job ends as cancelled."""
    job = _lock(job)
    if job.finished:
        raise RetagJobState(f"Job {job.pk} has already finished ({job.status}).", details={"status": job.status})
    now = timezone.now()
    pending = RetagItem.objects.filter(job=job, status=ItemStatus.PENDING)
    TaggingRun.objects.filter(
        pk__in=pending.filter(new_run__isnull=False).values("new_run_id"), status=RunStatus.QUEUED
    ).update(
        status=RunStatus.FAILED,
        error="The re-tagging job was cancelled.",
        error_code="retag_cancelled",
        finished_at=now,
    )
    pending.update(status=ItemStatus.SKIPPED, error="The job was cancelled.")
    RetagChunk.objects.filter(job=job, status__in=[ChunkStatus.PENDING, ChunkStatus.RUNNING]).update(
        status=ChunkStatus.CANCELLED, finished_at=now, lease_expires_at=None
    )
    # Through the one place a job ends (its summary, and whatever is told of the end).
    retag_job_finish(job=job, status=JobStatus.CANCELLED)
    RetagJob.objects.filter(pk=job.pk).update(cancelled_at=now, cancelled_by=user_or_none(user=user))
    job.refresh_from_db()
    return job


@dataclass(frozen=True)
class PointersMoved:
    moved: int
    # Recipes left as they were: their current run is no longer the one the job compared against.
    left: list[int]


@transaction.atomic
def retag_job_apply(*, job: RetagJob, user: AbstractBaseUser | AnonymousUser | None) -> PointersMoved:
    """Make a finished dry run's new runs the recipes' current tags, where the pointer is still the run the
    dry run compared against (others changed since and are left, and reported)."""
    job = _lock(job)
    if not job.dry_run:
        raise RetagJobState("Only a dry run is applied; this job moved the pointers as it went.")
    if job.status != JobStatus.SUCCEEDED:
        raise RetagJobState(f"Job {job.pk} cannot be applied: it is {job.status}.", details={"status": job.status})
    if job.applied_at is not None:
        raise RetagJobState(f"Job {job.pk} was already applied.", details={"applied_at": job.applied_at.isoformat()})
    recipes, items = "tagging_recipe", RetagItem._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {recipes} AS r SET current_run_id = i.new_run_id FROM {items} AS i
            WHERE i.job_id = %s AND i.status = %s AND i.recipe_id = r.id
              AND r.current_run_id IS NOT DISTINCT FROM i.previous_run_id
            RETURNING r.id
            """,  # table names are the models', not input
            [job.pk, ItemStatus.DONE],
        )
        moved = [row[0] for row in cursor.fetchall()]
    now = timezone.now()
    RetagItem.objects.filter(job=job, recipe_id__in=moved).update(moved_at=now)
    left = list(
        RetagItem.objects.filter(job=job, status=ItemStatus.DONE, moved_at__isnull=True)
        .order_by("recipe_id")
        .values_list("recipe_id", flat=True)
    )
    job.applied_at, job.applied_by = now, user_or_none(user=user)
    job.summary = {**job.summary, "apply": {"moved": len(moved), "changed_since_dry_run": left[:100]}}
    job.save(update_fields=["applied_at", "applied_by", "summary"])
    return PointersMoved(moved=len(moved), left=left)


@transaction.atomic
def retag_job_rollback(*, job: RetagJob, user: AbstractBaseUser | AnonymousUser | None) -> PointersMoved:
    """Point every recipe the job moved back at the run it had before, where the pointer is still the job's
    run (a recipe tagged again since keeps its newer tags, and is reported)."""
    job = _lock(job)
    if job.rolled_back_at is not None:
        raise RetagJobState(f"Job {job.pk} was already rolled back.")
    if not job.finished:
        raise RetagJobState(f"Job {job.pk} is still {job.status}; cancel it or wait for it to finish.")
    if job.dry_run and job.applied_at is None:
        raise RetagJobState("This dry run was never applied: it moved nothing to roll back.")
    recipes, items = "tagging_recipe", RetagItem._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {recipes} AS r SET current_run_id = i.previous_run_id FROM {items} AS i
            WHERE i.job_id = %s AND i.moved_at IS NOT NULL AND i.recipe_id = r.id AND r.current_run_id = i.new_run_id
            RETURNING r.id
            """,  # table names are the models', not input
            [job.pk],
        )
        restored = {row[0] for row in cursor.fetchall()}
    moved = RetagItem.objects.filter(job=job, moved_at__isnull=False).order_by("recipe_id")
    left = [recipe_id for recipe_id in moved.values_list("recipe_id", flat=True) if recipe_id not in restored]
    job.rolled_back_at, job.rolled_back_by = timezone.now(), user_or_none(user=user)
    job.summary = {**job.summary, "rollback": {"restored": len(restored), "changed_since": left[:100]}}
    job.save(update_fields=["rolled_back_at", "rolled_back_by", "summary"])
    return PointersMoved(moved=len(restored), left=left)
