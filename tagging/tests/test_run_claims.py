"""Who executes a queued run (run_execute, what the worker's task calls): one delivery at a time, a lost
worker's run taken over, a run that keeps losing its worker failed rather than tried for ever."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from tagging.models import Recipe, RunStatus, TagAssignment, TaggingRun
from tagging.services.config import TaggingConfig
from tagging.services.runs import RUN_ABANDONED, run_create, run_execute

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy")]


def _claimed(run: TaggingRun, *, delivery: str, attempts: int = 1, lease_left: timedelta) -> TaggingRun:
    """`run` as a worker left it when it claimed the run for `delivery` (and, if the lease has run out, died)."""
    now = timezone.now()
    TaggingRun.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING,
        claimed_by=delivery,
        attempts=attempts,
        started_at=now - timedelta(seconds=30),
        lease_expires_at=now + lease_left,
    )
    return TaggingRun.objects.get(pk=run.pk)


@pytest.fixture
def queued(carbonara: Recipe) -> TaggingRun:
    return run_create(recipe=carbonara, config=TaggingConfig(categories=("cuisine",), k=2))


def test_a_new_run_is_queued_with_a_lease_and_no_attempt(queued: TaggingRun, settings: Any) -> None:
    assert queued.status == RunStatus.QUEUED
    assert queued.attempts == 0
    assert queued.claimed_by == ""
    assert queued.lease_expires_at is not None
    expected = timezone.now() + timedelta(seconds=settings.TAGGING_RUN_STALE_SECONDS)
    assert abs((queued.lease_expires_at - expected).total_seconds()) < 60


def test_it_claims_a_queued_run_for_its_delivery_and_counts_the_attempt(queued: TaggingRun) -> None:
    run_execute(run_id=queued.pk, delivery="delivery-1")

    run = TaggingRun.objects.get(pk=queued.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert (run.claimed_by, run.attempts, run.error_code) == ("delivery-1", 1, "")
    assert run.lease_expires_at is not None
    assert run.started_at is not None
    assert run.lease_expires_at > run.started_at
    assert TagAssignment.objects.filter(run=run).exists()


def test_another_delivery_leaves_a_run_claimed_by_a_live_one_alone(queued: TaggingRun) -> None:
    _claimed(queued, delivery="delivery-1", lease_left=timedelta(minutes=5))

    run_execute(run_id=queued.pk, delivery="delivery-2")

    run = TaggingRun.objects.get(pk=queued.pk)
    assert (run.status, run.claimed_by, run.attempts) == (RunStatus.RUNNING, "delivery-1", 1)
    assert not TagAssignment.objects.filter(run=run).exists()


def test_the_same_delivery_again_takes_over_at_once_because_its_worker_was_lost(queued: TaggingRun) -> None:
    # The broker only delivers a message again when the worker holding it died (reject_on_worker_lost).
    _claimed(queued, delivery="delivery-1", lease_left=timedelta(minutes=5))

    run_execute(run_id=queued.pk, delivery="delivery-1")

    run = TaggingRun.objects.get(pk=queued.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.attempts == 2
    assert TagAssignment.objects.filter(run=run).exists()


def test_another_delivery_takes_over_once_the_lease_has_run_out(queued: TaggingRun) -> None:
    _claimed(queued, delivery="delivery-1", lease_left=-timedelta(seconds=1))

    run_execute(run_id=queued.pk, delivery="delivery-2")

    run = TaggingRun.objects.get(pk=queued.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert (run.claimed_by, run.attempts) == ("delivery-2", 2)


def test_a_run_that_lost_its_worker_max_attempts_times_is_failed_and_not_run_again(
    queued: TaggingRun, settings: Any
) -> None:
    _claimed(queued, delivery="delivery-1", attempts=settings.TAGGING_RUN_MAX_ATTEMPTS, lease_left=timedelta(0))

    run_execute(run_id=queued.pk, delivery="delivery-1")

    run = TaggingRun.objects.get(pk=queued.pk)
    assert run.status == RunStatus.FAILED
    assert run.error_code == RUN_ABANDONED
    assert f"delivered {settings.TAGGING_RUN_MAX_ATTEMPTS} times" in run.error
    assert run.finished_at is not None
    assert run.attempts == settings.TAGGING_RUN_MAX_ATTEMPTS
    assert not TagAssignment.objects.filter(run=run).exists()


def test_a_failure_is_recorded_with_its_error_code(queued: TaggingRun) -> None:
    TaggingRun.objects.filter(pk=queued.pk).update(
        config={**queued.config, "category_slugs": ["no-such-category"], "categories": ["no-such-category"]}
    )

    with pytest.raises(Exception, match="no-such-category"):
        run_execute(run_id=queued.pk, delivery="delivery-1")

    run = TaggingRun.objects.get(pk=queued.pk)
    assert run.status == RunStatus.FAILED
    assert run.error_code == "unknown_category"
