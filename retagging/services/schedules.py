"""Re-tagging schedules: a RetagSchedule and the django-celery-beat PeriodicTask that beat reads, saved and
deleted together (what beat then triggers is retagging.scheduling)."""

from __future__ import annotations

import json
from typing import Any

from celery.schedules import crontab
from django.conf import settings
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from autotagger.errors import DomainError
from retagging.models import RetagSchedule
from retagging.selection import selection_parse
from retagging.services.jobs import InvalidRetagJob, retag_config_parse

# The task name is the contract with the PeriodicTask rows in the database: it stays put when code moves.
SCHEDULE_TASK = "retagging.schedule_run"
CRON_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


class InvalidSchedule(DomainError):
    code = "invalid_schedule"


def retag_schedule_validate(*, schedule: RetagSchedule) -> None:
    """Raises InvalidSchedule whose details map each wrong field to what is wrong with it: the selection and
    config as a job would check them, and the crontab as beat would read it."""
    problems: dict[str, str] = {}
    try:
        selection_parse(selection=schedule.selection)
    except DomainError as exc:
        problems["selection"] = exc.message
    try:
        config = retag_config_parse(strategy=schedule.strategy, config=schedule.config)
    except DomainError as exc:
        field = "strategy" if isinstance(exc, InvalidRetagJob) and "strategy" in exc.details else "config"
        problems[field] = exc.message
    else:
        if schedule.use_batch and not config.uses_llm:
            problems["use_batch"] = "Only the llm and hybrid strategies can go through the Batch API."
    if schedule.interval_minutes is None:
        for field in CRON_FIELDS:
            value = str(getattr(schedule, field) or "").strip()
            if not value:
                problems[field] = f"The crontab's {field.replace('_', ' ')} is empty; use * for every one."
                continue
            try:
                crontab(**{field: value})
            except (ValueError, TypeError) as exc:
                problems[field] = f"{value!r} is not a crontab {field.replace('_', ' ')}: {exc}"
    elif schedule.interval_minutes <= 0:
        problems["interval_minutes"] = "The interval must be at least one minute."
    if problems:
        raise InvalidSchedule(" ".join(problems.values()), details=problems)


def _periodic_task_name(schedule: RetagSchedule) -> str:
    return f"Re-tag: {schedule.name}"


def _periodic_task_sync(schedule: RetagSchedule) -> PeriodicTask:
    timing: dict[str, Any]
    if schedule.interval_minutes:
        interval, _ = IntervalSchedule.objects.get_or_create(
            every=schedule.interval_minutes, period=IntervalSchedule.MINUTES
        )
        timing = {"interval": interval, "crontab": None}
    else:
        cron, _ = CrontabSchedule.objects.get_or_create(
            **{field: str(getattr(schedule, field)).strip() for field in CRON_FIELDS},
            timezone=settings.CELERY_TIMEZONE,
        )
        timing = {"interval": None, "crontab": cron}
    name = _periodic_task_name(schedule)
    task = schedule.periodic_task
    if task is None:
        # A row of the same name left by a schedule deleted around this service is taken over, not duplicated.
        task = PeriodicTask.objects.filter(name=name).first() or PeriodicTask(name=name)
    task.name = name
    task.task = SCHEDULE_TASK
    task.kwargs = json.dumps({"schedule_id": schedule.pk})
    task.enabled = schedule.enabled
    task.description = f"Created and kept in step by the re-tagging schedule {schedule.name!r}; edit it there."
    for field, value in timing.items():
        setattr(task, field, value)
    task.save()
    return task


@transaction.atomic
def retag_schedule_save(*, schedule: RetagSchedule) -> RetagSchedule:
    """Validate and store `schedule` (new or changed) with its PeriodicTask, which beat then follows."""
    retag_schedule_validate(schedule=schedule)
    schedule.save()
    task = _periodic_task_sync(schedule)
    if schedule.periodic_task_id != task.pk:
        schedule.periodic_task = task
        schedule.save(update_fields=["periodic_task"])
    return schedule


@transaction.atomic
def retag_schedule_delete(*, schedule: RetagSchedule) -> None:
    """Delete `schedule` and its PeriodicTask: beat stops triggering it."""
    if schedule.periodic_task_id is not None:
        PeriodicTask.objects.filter(pk=schedule.periodic_task_id).delete()
    schedule.delete()
