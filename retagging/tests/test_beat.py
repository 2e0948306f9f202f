"""A schedule that is due makes a job: a real `celery beat` (the django-celery-beat DatabaseScheduler on the test
database) sends the schedule's task, and the real test worker creates the job and runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from conftest import BASE_DIR, _worker_database_url, wait_for, worker_stop
from retagging.models import FINISHED_STATUSES, RetagJob, RetagSchedule
from retagging.services.schedules import retag_schedule_save
from tagging.services.recipes import recipe_create

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def beat(celery_worker_process: subprocess.Popen[bytes], taxonomy: Any, tmp_path: Any) -> Iterator[Any]:
    """`celery beat` with the DatabaseScheduler, waking every second, on the test database and queue; stopped
    before the test's rows are flushed."""
    log_path = tmp_path / "beat.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "autotagger.settings.test",
        "DATABASE_URL": _worker_database_url(),
        "TEST_REDIS_URL": settings.REDIS_URL,
        "AUTOTAGGER_TEST_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
    }
    log = open(log_path, "wb")  # noqa: SIM115 - beat writes to it until it stops
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "autotagger",
            "beat",
            "--scheduler",
            "django_celery_beat.schedulers:DatabaseScheduler",
            "--max-interval",
            "1",
            "--pidfile=",
            "--loglevel=INFO",
        ],
        env=env,
        cwd=BASE_DIR,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    yield process, log_path
    worker_stop(process)


def test_a_schedule_that_is_due_makes_beat_create_its_job(beat: Any) -> None:
    process, log_path = beat
    recipe_create(title="Green curry", ingredients=["coconut milk", "green curry paste", "chicken"], instructions="")
    recipe_create(title="Carbonara", ingredients=["spaghetti", "eggs", "pecorino", "guanciale"], instructions="")
    saved = retag_schedule_save(
        schedule=RetagSchedule(
            name="every minute",
            selection={"kind": "all"},
            strategy="similarity",
            config={"k": 2},
            dry_run=True,
            enabled=True,
            minute="*",
            hour="*",
        )
    )
    # Last run well over a minute ago: due at beat's first tick, rather than at the next minute.
    PeriodicTask.objects.filter(pk=saved.periodic_task_id).update(last_run_at=timezone.now() - timedelta(minutes=5))

    created = wait_for(lambda: RetagJob.objects.filter(schedule_name="every minute").exists(), timeout=60)

    assert created, log_path.read_text()[-3000:]
    assert process.poll() is None
    # The first of them: at a minute's turn beat may send the next one too.
    job = RetagJob.objects.filter(schedule_name="every minute").order_by("id").first()
    assert job is not None
    assert (job.strategy, job.dry_run, job.total, job.selection["kind"]) == ("similarity", True, 2, "all")
    # The worker runs the job it was given; let it end before the database is flushed under it.
    RetagSchedule.objects.filter(pk=saved.pk).update(enabled=False)
    PeriodicTask.objects.filter(pk=saved.periodic_task_id).update(enabled=False)
    assert wait_for(lambda: not RetagJob.objects.exclude(status__in=FINISHED_STATUSES).exists(), timeout=60), (
        "the worker did not finish the scheduled jobs within 60 s"
    )
