"""The periodic sweep (tagging.runs_sweep on beat): runs lost with a worker or a message go back to the queue,
and are failed with `run_abandoned` once they have had TAGGING_RUN_MAX_ATTEMPTS deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from conftest import wait_for
from tagging.models import Recipe, RunStatus, TagAssignment, TaggingRun
from tagging.services.config import TaggingConfig
from tagging.services.runs import RUN_ABANDONED, run_create, runs_requeue_stale
from tagging.tasks import runs_sweep_task
from tagging.tests.conftest import demo_recipe

FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED)


def _left_by_a_lost_worker(run: TaggingRun, *, attempts: int = 1) -> None:
    """As a worker killed mid-run leaves it: running, claimed, and past the lease of its task's time limit."""
    now = timezone.now()
    TaggingRun.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING,
        claimed_by="delivery-of-a-dead-worker",
        attempts=attempts,
        started_at=now - timedelta(hours=1),
        lease_expires_at=now - timedelta(seconds=1),
    )


def _message_lost(run: TaggingRun) -> None:
    """A queued run whose message never reached a worker (the broker lost it), past its queued lease."""
    TaggingRun.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def _run(recipe: Recipe) -> TaggingRun:
    return run_create(recipe=recipe, config=TaggingConfig(categories=("cuisine",), k=2))


def _finished(run_id: int) -> TaggingRun:
    done = wait_for(lambda: TaggingRun.objects.filter(pk=run_id, status__in=FINISHED).exists(), timeout=60)
    assert done, "the worker did not finish the run within 60 s; see the test-worker log in .data/"
    return TaggingRun.objects.get(pk=run_id)


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[int] = []

    def __call__(self, run_ids: Sequence[int]) -> None:
        self.sent.extend(run_ids)


def test_beat_runs_the_sweep_every_minute_by_default() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["tagging-requeue-stale-runs"]

    assert entry["task"] == runs_sweep_task.name == "tagging.runs_sweep"
    assert entry["schedule"] == 60.0


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_it_requeues_a_run_whose_worker_was_lost_and_the_worker_finishes_it(
    worker: Any, demo_recipes: list[dict[str, Any]]
) -> None:
    run = _run(demo_recipe(demo_recipes, "Beef Tacos"))
    _left_by_a_lost_worker(run)

    assert runs_sweep_task() == {"requeued": 1, "failed": 0, "batches_polled": 0}

    finished = _finished(run.pk)
    assert finished.status == RunStatus.SUCCEEDED, finished.error
    assert finished.attempts == 2
    assert finished.claimed_by not in ("", "delivery-of-a-dead-worker")
    assert TagAssignment.objects.filter(run=finished).exists()


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_it_requeues_a_queued_run_whose_message_was_lost(worker: Any, demo_recipes: list[dict[str, Any]]) -> None:
    run = _run(demo_recipe(demo_recipes, "Miso Ramen"))
    _message_lost(run)

    assert runs_sweep_task() == {"requeued": 1, "failed": 0, "batches_polled": 0}

    finished = _finished(run.pk)
    assert finished.status == RunStatus.SUCCEEDED, finished.error
    # The lost message counts as a delivery, the worker's claim as another.
    assert finished.attempts == 2


@pytest.mark.django_db
def test_it_fails_a_run_that_lost_its_worker_max_attempts_times(
    taxonomy: dict[str, Any], carbonara: Recipe, settings: Any
) -> None:
    settings.TAGGING_RUN_MAX_ATTEMPTS = 2
    run = _run(carbonara)
    _left_by_a_lost_worker(run, attempts=2)

    assert runs_sweep_task() == {"requeued": 0, "failed": 1, "batches_polled": 0}

    failed = TaggingRun.objects.get(pk=run.pk)
    assert failed.status == RunStatus.FAILED
    assert failed.error_code == RUN_ABANDONED
    assert "delivered 2 times" in failed.error
    assert failed.finished_at is not None
    assert not TagAssignment.objects.filter(run=failed).exists()


@pytest.mark.django_db
def test_a_run_is_requeued_until_its_attempts_run_out_then_failed(
    taxonomy: dict[str, Any], carbonara: Recipe, settings: Any
) -> None:
    settings.TAGGING_RUN_MAX_ATTEMPTS = 3
    run = _run(carbonara)
    recorder = _Recorder()
    outcomes = []
    for _ in range(4):
        _message_lost(run)
        swept = runs_requeue_stale(enqueue=recorder, include_queued=True)
        outcomes.append((swept.requeued, swept.failed))

    assert outcomes == [([run.pk], []), ([run.pk], []), ([], [run.pk]), ([], [])]
    assert recorder.sent == [run.pk, run.pk]
    abandoned = TaggingRun.objects.get(pk=run.pk)
    assert (abandoned.status, abandoned.error_code, abandoned.attempts) == (RunStatus.FAILED, RUN_ABANDONED, 3)


@pytest.mark.django_db
def test_it_leaves_runs_within_their_lease_alone(taxonomy: dict[str, Any], carbonara: Recipe) -> None:
    queued = _run(carbonara)
    running = _run(carbonara)
    _left_by_a_lost_worker(running)
    TaggingRun.objects.filter(pk=running.pk).update(lease_expires_at=timezone.now() + timedelta(minutes=5))
    recorder = _Recorder()

    swept = runs_requeue_stale(enqueue=recorder, include_queued=True)

    assert (swept.requeued, swept.failed, recorder.sent) == ([], [], [])
    assert TaggingRun.objects.get(pk=queued.pk).status == RunStatus.QUEUED
    assert TaggingRun.objects.get(pk=running.pk).claimed_by == "delivery-of-a-dead-worker"


@pytest.mark.django_db
def test_queued_runs_are_left_alone_while_messages_wait_in_the_queue(
    taxonomy: dict[str, Any], carbonara: Recipe
) -> None:
    # A long queue keeps runs waiting past their lease; only a worker's lost run is certainly lost.
    waiting = _run(carbonara)
    _message_lost(waiting)
    lost = _run(carbonara)
    _left_by_a_lost_worker(lost)
    recorder = _Recorder()

    swept = runs_requeue_stale(enqueue=recorder, include_queued=False)

    assert swept.requeued == recorder.sent == [lost.pk]
    waiting.refresh_from_db()
    assert (waiting.status, waiting.attempts) == (RunStatus.QUEUED, 0)


@pytest.mark.django_db
def test_a_job_run_never_handed_to_the_broker_is_taken_back_once_stale(
    taxonomy: dict[str, Any], carbonara: Recipe, settings: Any
) -> None:
    # The job's dispatch task was lost before it gave this run a lease.
    run = _run(carbonara)
    TaggingRun.objects.filter(pk=run.pk).update(
        lease_expires_at=None, created_at=timezone.now() - timedelta(seconds=settings.TAGGING_RUN_STALE_SECONDS + 1)
    )
    recorder = _Recorder()

    swept = runs_requeue_stale(enqueue=recorder, include_queued=True)

    assert swept.requeued == [run.pk]
    run.refresh_from_db()
    assert run.lease_expires_at is not None
    assert run.lease_expires_at > timezone.now()
