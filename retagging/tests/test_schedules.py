"""Re-tagging schedules: saving one keeps its beat PeriodicTask in step, a bad one is refused naming the field,
and running one creates the job it describes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django_celery_beat.models import PeriodicTask

from retagging.models import RetagJob, RetagSchedule
from retagging.scheduling import retag_schedule_run
from retagging.services.schedules import (
    SCHEDULE_TASK,
    InvalidSchedule,
    retag_schedule_delete,
    retag_schedule_save,
)
from tagging.services.recipes import recipe_create

pytestmark = pytest.mark.django_db


def schedule(**fields: Any) -> RetagSchedule:
    values: dict[str, Any] = {
        "name": "weekly similarity",
        "selection": {"kind": "all"},
        "strategy": "similarity",
        "config": {"k": 3},
        "dry_run": True,
        "enabled": True,
        "minute": "30",
        "hour": "4",
        "day_of_week": "0",
        **fields,
    }
    return RetagSchedule(**values)


def test_saving_a_schedule_creates_its_periodic_task(taxonomy: Any) -> None:
    saved = retag_schedule_save(schedule=schedule())

    task = PeriodicTask.objects.get(pk=saved.periodic_task_id)
    assert task.task == SCHEDULE_TASK
    assert json.loads(task.kwargs) == {"schedule_id": saved.pk}
    assert task.enabled
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("30", "4", "0")
    assert (task.crontab.day_of_month, task.crontab.month_of_year) == ("*", "*")
    assert task.interval is None


def test_changing_a_schedule_updates_its_periodic_task(taxonomy: Any) -> None:
    saved = retag_schedule_save(schedule=schedule())
    saved.enabled = False
    saved.hour = "2"
    saved.name = "weekly, earlier"

    retag_schedule_save(schedule=saved)

    task = PeriodicTask.objects.get(pk=saved.periodic_task_id)
    assert not task.enabled
    assert task.crontab.hour == "2"
    assert task.name == "Re-tag: weekly, earlier"


def test_an_interval_replaces_the_crontab(taxonomy: Any) -> None:
    saved = retag_schedule_save(schedule=schedule())
    saved.interval_minutes = 90

    retag_schedule_save(schedule=saved)

    task = PeriodicTask.objects.get(pk=saved.periodic_task_id)
    assert task.crontab is None
    assert (task.interval.every, task.interval.period) == (90, "minutes")


def test_deleting_a_schedule_deletes_its_periodic_task(taxonomy: Any) -> None:
    saved = retag_schedule_save(schedule=schedule())

    retag_schedule_delete(schedule=saved)

    assert not RetagSchedule.objects.filter(name="weekly similarity").exists()
    assert not PeriodicTask.objects.filter(pk=saved.periodic_task_id).exists()


def test_a_schedule_naming_an_unknown_category_is_refused_and_nothing_is_stored(taxonomy: Any) -> None:
    with pytest.raises(InvalidSchedule) as raised:
        retag_schedule_save(schedule=schedule(selection={"kind": "category", "value": "planets"}))

    assert "planets" in raised.value.details["selection"]
    assert not RetagSchedule.objects.filter(name="weekly similarity").exists()
    assert not PeriodicTask.objects.filter(name="Re-tag: weekly similarity").exists()


def test_each_wrong_field_is_named(taxonomy: Any) -> None:
    with pytest.raises(InvalidSchedule) as raised:
        retag_schedule_save(schedule=schedule(hour="25", strategy="guesswork", selection={"kind": "everything"}))

    assert set(raised.value.details) == {"hour", "strategy", "selection"}
    assert "'25'" in raised.value.details["hour"]


def test_a_batch_schedule_needs_an_llm_strategy(taxonomy: Any) -> None:
    with pytest.raises(InvalidSchedule) as raised:
        retag_schedule_save(schedule=schedule(use_batch=True))

    assert "Batch API" in raised.value.details["use_batch"]


def test_running_a_schedule_creates_the_job_it_describes(taxonomy: Any) -> None:
    recipe_create(title="Pad thai", ingredients=["rice noodles", "peanuts"], instructions="Stir-fry.")
    saved = retag_schedule_save(schedule=schedule(config={"k": 2}))

    job = retag_schedule_run(schedule_id=saved.pk)

    assert job is not None
    assert (job.schedule_name, job.strategy, job.dry_run, job.total) == ("weekly similarity", "similarity", True, 1)
    assert job.config["k"] == 2
    assert job.selection["kind"] == "all"


def test_a_disabled_schedule_creates_no_job(taxonomy: Any) -> None:
    recipe_create(title="Pad thai", ingredients=["rice noodles", "peanuts"], instructions="Stir-fry.")
    saved = retag_schedule_save(schedule=schedule(enabled=False))

    assert retag_schedule_run(schedule_id=saved.pk) is None
    assert not RetagJob.objects.exists()


def test_the_two_example_schedules_are_there_and_disabled() -> None:
    examples = {s.name: s for s in RetagSchedule.objects.select_related("periodic_task")}

    nightly = examples["nightly: stale recipes with hybrid (apply)"]
    weekly = examples["weekly: everything with similarity (dry run)"]
    assert (nightly.selection, nightly.strategy, nightly.dry_run) == ({"kind": "stale"}, "hybrid", False)
    assert (weekly.selection, weekly.strategy, weekly.dry_run) == ({"kind": "all"}, "similarity", True)
    assert not nightly.enabled
    assert not weekly.enabled
    assert nightly.periodic_task is not None
    assert not nightly.periodic_task.enabled
    assert weekly.periodic_task is not None
    assert weekly.periodic_task.task == SCHEDULE_TASK


def test_the_admin_names_a_wrong_crontab_field(staff_browser: Any, taxonomy: Any) -> None:
    form = {
        "name": "hourly",
        "selection": '{"kind": "stale"}',
        "strategy": "similarity",
        "config": "{}",
        "dry_run": "on",
        "enabled": "on",
        "minute": "61",
        "hour": "*",
        "day_of_month": "*",
        "month_of_year": "*",
        "day_of_week": "*",
    }

    response = staff_browser.post("/admin/retagging/retagschedule/add/", form)

    assert response.status_code == 200
    [message] = response.context["adminform"].form.errors["minute"]
    assert message.startswith("'61' is not a crontab minute")
    assert not RetagSchedule.objects.filter(name="hourly").exists()


def test_the_admin_saves_a_schedule_with_its_periodic_task(staff_browser: Any, taxonomy: Any) -> None:
    form = {
        "name": "hourly",
        "selection": '{"kind": "stale"}',
        "strategy": "similarity",
        "config": "{}",
        "enabled": "on",
        "minute": "5",
        "hour": "*",
        "day_of_month": "*",
        "month_of_year": "*",
        "day_of_week": "*",
    }

    response = staff_browser.post("/admin/retagging/retagschedule/add/", form)

    assert response.status_code == 302
    saved = RetagSchedule.objects.get(name="hourly")
    assert saved.periodic_task is not None
    assert saved.periodic_task.crontab.minute == "5"
    assert saved.dry_run is False
