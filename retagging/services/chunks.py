"""A re-tagging job's chunks on the worker: claimed by whichever worker takes one, executed so that each item
is marked done in the transaction that stores its run (a worker killed mid-chunk loses nothing and doubles
nothing), taken back by the sweep when their worker is lost, and the job finished exactly once."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from autotagger.bulk_updates import rows_update
from autotagger.embeddings import embedding_model_name
from retagging.models import ChunkStatus, ItemStatus, JobStatus, RetagChunk, RetagItem, RetagJob
from retagging.selectors import retag_job_progress, retag_job_tag_totals
from retagging.services.diffs import assignments_carry_over, diffs_compute
from retagging.services.notifications import retag_job_notify_later
from tagging.models import Recipe, RunStatus, TaggingRun
from tagging.services.config import TaggingConfig, TaggingError, category_requests, config_stored
from tagging.services.runs import recipes_tag_bulk, run_queued_lease

logger = logging.getLogger(__name__)

CHUNK_SOFT_TIME_LIMIT = int(settings.RETAG_CHUNK_SOFT_TIME_LIMIT_SECONDS)
CHUNK_TIME_LIMIT = CHUNK_SOFT_TIME_LIMIT + 60
# A claimed chunk belongs to the task that claimed it for the task's hard time limit: past it, that task
# cannot still be working.
CHUNK_CLAIM = timedelta(seconds=CHUNK_TIME_LIMIT)
SUMMARY_TOP_TAGS = 20

SendRuns = Callable[[Sequence[int]], object]
ScheduleCollect = Callable[[int, int], object]


class ChunkTakenOver(Exception):
    """The chunk or its items are no longer this task's (cancelled, or another worker took it over): what it
    was about to store is rolled back."""


def _collect_interval(job: RetagJob) -> int:
    # A batch's answers come within hours, not seconds: no need to look as often.
    return int(
        settings.RETAG_BATCH_COLLECT_INTERVAL_SECONDS if job.use_batch else settings.RETAG_COLLECT_INTERVAL_SECONDS
    )


def chunk_queued_lease() -> timedelta:
    return timedelta(seconds=settings.RETAG_CHUNK_QUEUED_SECONDS)


def _chunk_claim(*, chunk_id: int, token: str) -> RetagChunk | None:
    now = timezone.now()
    with transaction.atomic():
        chunk = (
            RetagChunk.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("job")
            .filter(pk=chunk_id)
            .first()
        )
        if chunk is None or chunk.status not in (ChunkStatus.PENDING, ChunkStatus.RUNNING):
            return None
        held = chunk.lease_expires_at is not None and chunk.lease_expires_at > now
        if chunk.status == ChunkStatus.RUNNING and held and chunk.claimed_by != token:
            return None
        if chunk.job.finished:
            return None
        if chunk.attempts >= settings.RETAG_CHUNK_MAX_ATTEMPTS:
            _chunk_abandon(chunk=chunk)
            return None
        chunk.status, chunk.claimed_by = ChunkStatus.RUNNING, token
        chunk.lease_expires_at, chunk.attempts = now + CHUNK_CLAIM, chunk.attempts + 1
        chunk.started_at = chunk.started_at or now
        chunk.save(update_fields=["status", "claimed_by", "lease_expires_at", "attempts", "started_at"])
        RetagJob.objects.filter(pk=chunk.job_id, status=JobStatus.QUEUED).update(
            status=JobStatus.RUNNING, started_at=now
        )
    return chunk


def _chunk_abandon(*, chunk: RetagChunk) -> None:
    """Within the caller's transaction (the chunk locked): fail what a chunk delivered too often left."""
    RetagItem.objects.filter(chunk=chunk, status=ItemStatus.PENDING).update(
        status=ItemStatus.FAILED,
        error=f"The chunk was delivered {chunk.attempts} times without finishing (its worker was lost each "
        "time); it is not tried again.",
    )
    _chunk_close(chunk=chunk, status=ChunkStatus.FAILED)


def _chunk_close(*, chunk: RetagChunk, status: str) -> None:
    """Within a transaction: end the chunk and, if it was the job's last, the job. The job's row lock orders
    concurrent chunk endings, so exactly one of them sees no chunk left and finishes the job."""
    job = RetagJob.objects.select_for_update().get(pk=chunk.job_id)
    RetagChunk.objects.filter(pk=chunk.pk).update(status=status, finished_at=timezone.now(), lease_expires_at=None)
    unfinished = RetagChunk.objects.filter(job=job, status__in=[ChunkStatus.PENDING, ChunkStatus.RUNNING])
    if not job.finished and not unfinished.exists():
        retag_job_finish(job=job)


def retag_job_finish(*, job: RetagJob, status: str | None = None, error: str = "") -> bool:
    """Record the end of `job` and its summary, once: a job already finished is left as it is."""
    progress = retag_job_progress(job=job)
    if status is None:
        status = JobStatus.FAILED if progress.total and progress.failed == progress.total else JobStatus.SUCCEEDED
    now = timezone.now()
    summary = retag_job_summary(job=job, finished_at=now, error=error or job.error)
    updated = RetagJob.objects.filter(pk=job.pk, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).update(
        status=status, finished_at=now, summary=summary, error=error or job.error
    )
    if updated:
        retag_job_notify_later(job_id=job.pk)
    return bool(updated)


def retag_job_summary(*, job: RetagJob, finished_at: Any, error: str = "") -> dict[str, Any]:
    progress = retag_job_progress(job=job)
    # Counted by the database: a job of 100,000 recipes does not bring its items into the worker to end.
    totals = retag_job_tag_totals(job=job)
    added = Counter({total.tag: total.added for total in totals if total.added})
    removed = Counter({total.tag: total.removed for total in totals if total.removed})
    started = job.started_at or job.created_at
    return {
        **progress.as_dict(),
        "duration_seconds": round((finished_at - started).total_seconds(), 3) if started else None,
        "tags_added": dict(added.most_common(SUMMARY_TOP_TAGS)),
        "tags_removed": dict(removed.most_common(SUMMARY_TOP_TAGS)),
        "error": error,
    }


def _items_complete(
    *, chunk: RetagChunk, token: str, runs: Sequence[TaggingRun], previous: dict[int, int | None]
) -> None:
    """Within the transaction that stores `runs`: mark their items done with the diff, and in an applying job
    point the recipes at the new runs (where nothing moved the pointer since `previous` was read)."""
    if not RetagChunk.objects.filter(pk=chunk.pk, status=ChunkStatus.RUNNING, claimed_by=token).exists():
        raise ChunkTakenOver(f"chunk {chunk.pk} is no longer held by {token}")
    recipe_ids = [run.recipe_id for run in runs]
    items = {
        item.recipe_id: item
        for item in RetagItem.objects.select_for_update().filter(
            chunk=chunk, recipe_id__in=recipe_ids, status=ItemStatus.PENDING
        )
    }
    if len(items) != len(recipe_ids):
        raise ChunkTakenOver(f"items of chunk {chunk.pk} were finished or skipped meanwhile")
    _items_finish(chunk=chunk, items=items, runs=runs, previous=previous)


def _items_finish(
    *, chunk: RetagChunk, items: dict[int, RetagItem], runs: Sequence[TaggingRun], previous: dict[int, int | None]
) -> None:
    diffs = diffs_compute(pairs={run.recipe_id: (previous.get(run.recipe_id), run.pk) for run in runs})
    now = timezone.now()
    moved: set[int] = set()
    if not chunk.job.dry_run:
        # One statement for the chunk (rows_update): a pointer moves where it is still where it was read, or
        # already on the new run.
        moved = set(
            rows_update(
                model=Recipe,
                fields=["current_run"],
                keys=[("before", "bigint")],
                rows=[(run.recipe_id, previous.get(run.recipe_id), run.pk) for run in runs],
                condition="t.current_run_id IS NOT DISTINCT FROM v.before OR t.current_run_id = v.current_run_id",
            )
        )
    for run in runs:
        item, diff = items[run.recipe_id], diffs[run.recipe_id]
        item.status, item.new_run_id, item.previous_run_id = ItemStatus.DONE, run.pk, previous.get(run.recipe_id)
        item.added, item.removed, item.changed = diff.added, diff.removed, diff.changed
        item.moved_at = now if run.recipe_id in moved else None
    fields = ["status", "new_run", "previous_run", "added", "removed", "changed", "moved_at"]
    rows_update(
        model=RetagItem,
        fields=fields,
        rows=[
            (
                item.pk,
                item.status,
                item.new_run_id,
                item.previous_run_id,
                item.added,
                item.removed,
                item.changed,
                item.moved_at,
            )
            for item in items.values()
        ],
    )


def _previous_runs(recipe_ids: Sequence[int]) -> dict[int, int | None]:
    return dict(Recipe.objects.filter(pk__in=list(recipe_ids)).values_list("id", "current_run_id"))


def _items_fail(*, chunk: RetagChunk, message: str) -> None:
    RetagItem.objects.filter(chunk=chunk, status=ItemStatus.PENDING).update(status=ItemStatus.FAILED, error=message)


def _job_cancelled(job_id: int) -> bool:
    return RetagJob.objects.filter(pk=job_id, status=JobStatus.CANCELLED).exists()


@dataclass(frozen=True)
class ChunkOutcome:
    done: int
    waiting: int


def retag_chunk_execute(
    *,
    chunk_id: int,
    delivery: str | None,
    send_runs: SendRuns,
    schedule_collect: ScheduleCollect,
    send_batch: SendRuns | None = None,
) -> ChunkOutcome | None:
    """Execute a chunk of a re-tagging job if it is free to take (None otherwise: finished, cancelled, or held
    by a live worker). Similarity tags the chunk's pending recipes in one pass and finishes the chunk; the LLM
    strategies queue one run per recipe, sent live (`send_runs`) or, for a job with `use_batch`, through the
    Batch API (`send_batch`), and leave the chunk to `retag_chunk_collect`, which
    `schedule_collect(chunk_id, countdown)` arranges."""
    token = delivery or uuid.uuid4().hex
    chunk = _chunk_claim(chunk_id=chunk_id, token=token)
    if chunk is None:
        return None
    job = chunk.job
    config = TaggingConfig.from_dict({**job.config, "strategy": job.strategy})
    if _job_cancelled(job.pk):
        return None
    if config.uses_llm:
        send = send_batch if job.use_batch and send_batch is not None else send_runs
        waiting = _chunk_queue_runs(chunk=chunk, config=config, token=token, send_runs=send)
        schedule_collect(chunk.pk, 0 if waiting == 0 else _collect_interval(job))
        return ChunkOutcome(done=0, waiting=waiting)
    items = list(chunk.items.filter(status=ItemStatus.PENDING).select_related("recipe").order_by("id"))
    try:
        if items:
            recipes = [item.recipe for item in items]
            previous = _previous_runs([r.pk for r in recipes])

            def on_stored(runs: list[TaggingRun]) -> None:
                assignments_carry_over(runs=runs, previous=previous)
                _items_complete(chunk=chunk, token=token, runs=runs, previous=previous)

            recipes_tag_bulk(recipes=recipes, config=config, sets_current=not job.dry_run, on_stored=on_stored)
    except ChunkTakenOver:
        logger.info("Re-tagging chunk %s was cancelled or taken over; its results were not stored", chunk.pk)
        return None
    except TaggingError as exc:
        logger.warning("Re-tagging chunk %s failed: %s", chunk.pk, exc.message)
        with transaction.atomic():
            _items_fail(chunk=chunk, message=exc.message)
            _chunk_close(chunk=chunk, status=ChunkStatus.FAILED)
        return ChunkOutcome(done=0, waiting=0)
    with transaction.atomic():
        if RetagChunk.objects.select_for_update().filter(pk=chunk.pk, claimed_by=token, status=ChunkStatus.RUNNING):
            _chunk_close(chunk=chunk, status=ChunkStatus.DONE)
    return ChunkOutcome(done=len(items), waiting=0)


def _chunk_queue_runs(*, chunk: RetagChunk, config: TaggingConfig, token: str, send_runs: SendRuns) -> int:
    """Queue a run for each pending item that has none yet (a chunk taken over keeps the runs queued before);
    returns how many items wait on a run."""
    job = chunk.job
    try:
        requests = category_requests(config=config)
    except TaggingError as exc:
        with transaction.atomic():
            _items_fail(chunk=chunk, message=exc.message)
            _chunk_close(chunk=chunk, status=ChunkStatus.FAILED)
        return 0
    stored = config_stored(config=config, requests=requests)
    with transaction.atomic():
        if not RetagChunk.objects.select_for_update().filter(pk=chunk.pk, claimed_by=token, status=ChunkStatus.RUNNING):
            return 0
        items = list(chunk.items.select_for_update().filter(status=ItemStatus.PENDING, new_run__isnull=True))
        previous = _previous_runs([item.recipe_id for item in items])
        now = timezone.now()
        runs = TaggingRun.objects.bulk_create(
            [
                TaggingRun(
                    recipe_id=item.recipe_id,
                    strategy=config.strategy,
                    config=stored,
                    embedding_model=embedding_model_name(),
                    status=RunStatus.QUEUED,
                    lease_expires_at=now + run_queued_lease(),
                    sets_current=not job.dry_run,
                    created_by_id=job.created_by_id,
                )
                for item in items
            ]
        )
        # Before the run succeeds: the moment it becomes current (an applying job) it already has them.
        assignments_carry_over(runs=runs, previous=previous)
        by_recipe = {run.recipe_id: run for run in runs}
        for item in items:
            item.new_run_id, item.previous_run_id = by_recipe[item.recipe_id].pk, previous.get(item.recipe_id)
        RetagItem.objects.bulk_update(items, ["new_run", "previous_run"])
        waiting = chunk.items.filter(status=ItemStatus.PENDING).count()
    if runs:
        # If the broker refuses them, their queued lease expires and the run sweep sends them again.
        send_runs([run.pk for run in runs])
    return waiting


def retag_chunk_collect(*, chunk_id: int, schedule_collect: ScheduleCollect) -> int:
    """Finish the items of an LLM chunk whose runs have ended (diff, pointer in an applying job), fail those
    still unfinished after RETAG_COLLECT_MAX_WAIT_SECONDS, and check again later while any wait; returns how
    many still wait."""
    with transaction.atomic():
        chunk = RetagChunk.objects.select_for_update(of=("self",)).select_related("job").get(pk=chunk_id)
        if chunk.status != ChunkStatus.RUNNING:
            return 0
        items = {
            item.recipe_id: item
            for item in chunk.items.select_for_update(of=("self",))
            .select_related("new_run")
            .filter(status=ItemStatus.PENDING, new_run__isnull=False)
            .filter(new_run__status__in=[RunStatus.SUCCEEDED, RunStatus.FAILED])
        }
        succeeded = {r: i for r, i in items.items() if i.new_run and i.new_run.status == RunStatus.SUCCEEDED}
        for item in items.values():
            if item.new_run and item.new_run.status == RunStatus.FAILED:
                item.status, item.error = ItemStatus.FAILED, item.new_run.error or "The run failed."
                item.save(update_fields=["status", "error"])
        if succeeded:
            _items_finish(
                chunk=chunk,
                items=succeeded,
                runs=[item.new_run for item in succeeded.values() if item.new_run],
                previous={r: i.previous_run_id for r, i in succeeded.items()},
            )
        waiting = chunk.items.filter(status=ItemStatus.PENDING).count()
        started = chunk.started_at or timezone.now()
        if waiting and timezone.now() - started > timedelta(seconds=settings.RETAG_COLLECT_MAX_WAIT_SECONDS):
            _items_fail(
                chunk=chunk,
                message=f"The run did not finish within {settings.RETAG_COLLECT_MAX_WAIT_SECONDS} seconds.",
            )
            waiting = 0
        if not waiting:
            _chunk_close(chunk=chunk, status=ChunkStatus.DONE)
            return 0
        # Kept while collecting: if this task's next message is lost, the sweep takes the chunk back.
        interval = _collect_interval(chunk.job)
        chunk.lease_expires_at = timezone.now() + timedelta(seconds=3 * interval + 60)
        chunk.save(update_fields=["lease_expires_at"])
    schedule_collect(chunk.pk, interval)
    return waiting


@dataclass(frozen=True)
class ChunksSwept:
    requeued: list[int]
    failed: list[int]


def retag_chunks_requeue_stale(*, enqueue: Callable[[Sequence[int]], object], include_queued: bool) -> ChunksSwept:
    """Hand chunks whose lease expired to a worker again: a worker died holding them (`running`) or their
    message was lost (`pending`, only when `include_queued`: nothing waits in the queue). A chunk delivered
    RETAG_CHUNK_MAX_ATTEMPTS times has its remaining items failed instead."""
    now = timezone.now()
    statuses = [ChunkStatus.PENDING, ChunkStatus.RUNNING] if include_queued else [ChunkStatus.RUNNING]
    requeued: list[int] = []
    failed: list[int] = []
    with transaction.atomic():
        chunks = list(
            RetagChunk.objects.select_for_update(skip_locked=True)
            .filter(status__in=statuses, lease_expires_at__lt=now)
            .order_by("id")[:1000]
        )
        for chunk in chunks:
            if chunk.attempts >= settings.RETAG_CHUNK_MAX_ATTEMPTS:
                _chunk_abandon(chunk=chunk)
                failed.append(chunk.pk)
                continue
            if chunk.status == ChunkStatus.PENDING:
                chunk.attempts += 1
            # Free for any worker again; items already done stay done, so the next holder skips them.
            chunk.status, chunk.claimed_by, chunk.lease_expires_at = ChunkStatus.PENDING, "", now + chunk_queued_lease()
            chunk.save(update_fields=["status", "claimed_by", "lease_expires_at", "attempts"])
            requeued.append(chunk.pk)
    if requeued or failed:
        logger.warning("Stale re-tagging chunks: re-queued %s, failed %s", requeued, failed)
    if requeued:
        enqueue(requeued)
    return ChunksSwept(requeued=requeued, failed=failed)
