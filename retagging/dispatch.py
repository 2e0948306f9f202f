"""Sending re-tagging to the worker: a job created from a selection (a snapshot of recipe ids cut into
chunks) and its chunks queued after commit. The tasks it queues (retagging.tasks) run retagging.services."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from autotagger.queue import BrokerUnavailable, tasks_enqueue
from retagging.models import ChunkStatus, ItemStatus, JobStatus, RetagChunk, RetagItem, RetagJob
from retagging.selection import selection_parse, selection_recipes
from retagging.services.chunks import chunk_queued_lease, retag_job_finish
from retagging.services.jobs import CONFIG_KEYS, InvalidRetagJob, retag_config_parse
from retagging.tasks import chunk_execute_task
from tagging.models import Recipe
from tagging.services.config import llm_source_resolve, user_or_none

logger = logging.getLogger(__name__)


@transaction.atomic
def retag_job_create(
    *,
    selection: dict[str, Any],
    strategy: str,
    config: dict[str, Any],
    dry_run: bool,
    user: AbstractBaseUser | AnonymousUser | None = None,
    use_batch: bool = False,
    schedule_name: str = "",
) -> RetagJob:
    """A job re-tagging the recipes `selection` covers now (the snapshot it keeps to), in chunks queued on the
    worker after commit. Raises a DomainError (400) naming what is wrong with the selection or config, and
    stores nothing; raises BrokerUnavailable (503) when the chunks cannot be queued, after recording the job
    as failed with that error."""
    parsed_config = retag_config_parse(strategy=strategy, config=config)
    if use_batch and not parsed_config.uses_llm:
        raise InvalidRetagJob(
            "Only the llm and hybrid strategies can go through the Batch API.", details={"use_batch": use_batch}
        )
    if use_batch and not llm_source_resolve(config=parsed_config).supports_batch:
        raise InvalidRetagJob(
            f"The LLM source {llm_source_resolve(config=parsed_config).name!r} does not offer the Batch API.",
            details={"use_batch": use_batch, "source": parsed_config.source},
        )
    parsed = selection_parse(selection=selection)
    limit = settings.RETAG_MAX_RECIPES
    recipes = selection_recipes(selection=parsed).order_by("id")
    total = recipes[: limit + 1].count()
    if not total:
        raise InvalidRetagJob("No recipe matches the selection.", details={"selection": parsed.as_dict()})
    if total > limit:
        raise InvalidRetagJob(
            f"A re-tagging job covers at most {limit} recipes; narrow the selection.", details={"limit": limit}
        )
    stored_config = {key: value for key, value in parsed_config.as_dict().items() if key in CONFIG_KEYS}
    job = RetagJob.objects.create(
        selection=parsed.as_dict(),
        strategy=strategy,
        config=stored_config,
        dry_run=dry_run,
        use_batch=use_batch,
        total=total,
        schedule_name=schedule_name,
        created_by=user_or_none(user=user),
    )
    size = settings.RETAG_LLM_CHUNK_SIZE if parsed_config.uses_llm else settings.RETAG_CHUNK_SIZE
    lease = timezone.now() + chunk_queued_lease()
    chunks = (total + size - 1) // size
    RetagChunk.objects.bulk_create(
        [RetagChunk(job=job, number=number, lease_expires_at=lease) for number in range(1, chunks + 1)]
    )
    items = _items_insert(job=job, recipes=recipes[:total], size=size)
    if items != total:
        # Recipes deleted since they were counted: the job keeps to what its items hold.
        RetagChunk.objects.filter(job=job).exclude(Exists(RetagItem.objects.filter(chunk=OuterRef("pk")))).delete()
        RetagJob.objects.filter(pk=job.pk).update(total=items)
        job.total = items
    chunk_ids = list(RetagChunk.objects.filter(job=job).order_by("number").values_list("id", flat=True))
    transaction.on_commit(lambda: _chunks_enqueue(job=job, chunk_ids=chunk_ids))
    return job


def _items_insert(*, job: RetagJob, recipes: QuerySet[Recipe], size: int) -> int:
    """One RetagItem per recipe of `recipes` (ordered by id), `size` to a chunk in that order, written by the
    database from the selection's own query: a job over 100,000 recipes never holds them in this process."""
    selected, params = recipes.values("id").query.sql_with_params()
    item_table, chunk_table = RetagItem._meta.db_table, RetagChunk._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {item_table}
                (job_id, chunk_id, recipe_id, status, added, removed, changed, error)
            SELECT %s, chunk.id, selected.id, %s, '{{}}', '{{}}', false, ''
            FROM (SELECT s.id, row_number() OVER (ORDER BY s.id) - 1 AS position FROM ({selected}) s) selected
            JOIN {chunk_table} chunk ON chunk.job_id = %s AND chunk.number = selected.position / %s + 1
            """,
            [job.pk, ItemStatus.PENDING, *params, job.pk, size],
        )
        return int(cursor.rowcount)


def _chunks_enqueue(*, job: RetagJob, chunk_ids: list[int]) -> None:
    try:
        tasks_enqueue(chunk_execute_task, ({"chunk_id": chunk_id} for chunk_id in chunk_ids))
    except BrokerUnavailable as exc:
        logger.exception("Unable to queue re-tagging job %s", job.pk)
        message = f"The task queue was unavailable when the job was created: {exc.message}"
        with transaction.atomic():
            RetagItem.objects.filter(job=job, status=ItemStatus.PENDING).update(status=ItemStatus.FAILED, error=message)
            RetagChunk.objects.filter(job=job).update(status=ChunkStatus.FAILED, lease_expires_at=None)
            retag_job_finish(job=job, status=JobStatus.FAILED, error=message)
        job.refresh_from_db()
        raise
