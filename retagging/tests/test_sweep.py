"""The chunk sweep: a chunk whose worker was lost (lease expired) goes back to the queue for any worker, which
skips the recipes already done; one delivered too often has its remaining recipes failed and the job ends."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from retagging.dispatch import retag_job_create
from retagging.models import ChunkStatus, ItemStatus, JobStatus, RetagChunk
from retagging.services.chunks import retag_chunk_execute, retag_chunks_requeue_stale
from tagging.models import Recipe, TaggingRun

pytestmark = pytest.mark.django_db


def _job() -> Any:
    return retag_job_create(
        selection={"kind": "all"}, strategy="similarity", config={"categories": ["cuisine"], "k": 1}, dry_run=True
    )


def test_the_sweep_is_on_the_beat_schedule() -> None:
    assert django_settings.CELERY_BEAT_SCHEDULE["retagging-requeue-stale-chunks"]["task"] == "retagging.chunks_sweep"


def test_a_chunk_whose_worker_was_lost_is_sent_again_and_finished_by_another(kitchen: dict[str, Recipe]) -> None:
    job = _job()
    chunk = job.chunks.get()
    done = job.items.order_by("id").first()
    # A worker claimed it, stored one recipe's run, and died.
    RetagChunk.objects.filter(pk=chunk.pk).update(
        status=ChunkStatus.RUNNING,
        claimed_by="dead",
        attempts=1,
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    run = TaggingRun.objects.create(recipe_id=done.recipe_id, strategy="similarity", status="succeeded")
    job.items.filter(pk=done.pk).update(status=ItemStatus.DONE, new_run=run)
    sent: list[int] = []

    swept = retag_chunks_requeue_stale(enqueue=sent.extend, include_queued=False)
    retag_chunk_execute(chunk_id=chunk.pk, delivery="another", send_runs=list, schedule_collect=print)

    assert swept.requeued == sent == [chunk.pk]
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.items.get(pk=done.pk).new_run_id == run.pk
    assert TaggingRun.objects.filter(recipe_id=done.recipe_id).count() == 1
    assert TaggingRun.objects.count() == len(kitchen)
    assert RetagChunk.objects.get(pk=chunk.pk).attempts == 2


def test_a_chunk_held_by_a_live_worker_is_left_alone(kitchen: dict[str, Recipe]) -> None:
    chunk = _job().chunks.get()
    RetagChunk.objects.filter(pk=chunk.pk).update(
        status=ChunkStatus.RUNNING,
        claimed_by="alive",
        attempts=1,
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )

    swept = retag_chunks_requeue_stale(enqueue=list, include_queued=True)
    outcome = retag_chunk_execute(chunk_id=chunk.pk, delivery="duplicate", send_runs=list, schedule_collect=print)

    assert swept.requeued == []
    assert outcome is None
    assert not TaggingRun.objects.exists()


def test_a_chunk_delivered_too_often_fails_its_remaining_recipes(kitchen: dict[str, Recipe], settings: Any) -> None:
    job = _job()
    chunk = job.chunks.get()
    RetagChunk.objects.filter(pk=chunk.pk).update(
        status=ChunkStatus.RUNNING,
        claimed_by="dead",
        attempts=settings.RETAG_CHUNK_MAX_ATTEMPTS,
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )

    swept = retag_chunks_requeue_stale(enqueue=list, include_queued=False)

    assert swept.failed == [chunk.pk]
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert set(job.items.values_list("status", flat=True)) == {ItemStatus.FAILED}
    assert "delivered 3 times" in job.items.first().error


def test_a_pending_chunk_is_sent_again_only_when_the_queue_is_idle(kitchen: dict[str, Recipe]) -> None:
    chunk = _job().chunks.get()
    RetagChunk.objects.filter(pk=chunk.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    busy = retag_chunks_requeue_stale(enqueue=list, include_queued=False)
    idle = retag_chunks_requeue_stale(enqueue=list, include_queued=True)

    assert (busy.requeued, idle.requeued) == ([], [chunk.pk])
    assert RetagChunk.objects.get(pk=chunk.pk).attempts == 1
