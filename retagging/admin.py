"""Admin for re-tagging schedules: each saved and deleted with its beat PeriodicTask (retagging.services.schedules),
the crontab shown field by field, problems named on their fields."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from retagging.models import RetagSchedule
from retagging.selectors import retag_schedule_last_job
from retagging.services.schedules import (
    InvalidSchedule,
    retag_schedule_delete,
    retag_schedule_save,
    retag_schedule_validate,
)


class RetagScheduleForm(forms.ModelForm):
    """Checks a schedule as beat and a job would read it (retag_schedule_validate), each problem on its field."""

    class Meta:
        model = RetagSchedule
        fields = (
            "name",
            "enabled",
            "selection",
            "strategy",
            "config",
            "dry_run",
            "use_batch",
            "minute",
            "hour",
            "day_of_month",
            "month_of_year",
            "day_of_week",
            "interval_minutes",
        )

    def _post_clean(self) -> None:
        # After the instance is built from the cleaned data (the ModelForm's own step), before it is saved.
        super()._post_clean()  # type: ignore[misc]
        if self.errors:
            return
        try:
            retag_schedule_validate(schedule=self.instance)
        except InvalidSchedule as exc:
            for field, message in exc.details.items():
                self.add_error(field if field in self.fields else None, message)


@admin.register(RetagSchedule)
class RetagScheduleAdmin(admin.ModelAdmin):
    form = RetagScheduleForm
    list_display = ("name", "enabled", "timing", "strategy", "selection_text", "dry_run", "use_batch", "last_job")
    list_filter = ("enabled", "strategy", "dry_run")
    search_fields = ("name",)
    ordering = ("name", "id")
    readonly_fields = ("periodic_task_link", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "enabled")}),
        ("What to re-tag", {"fields": ("selection", "strategy", "config", "dry_run", "use_batch")}),
        (
            "When (CELERY_TIMEZONE)",
            {
                "fields": (("minute", "hour", "day_of_month", "month_of_year", "day_of_week"), "interval_minutes"),
                "description": (
                    "A crontab, field by field as cron reads them: minute 0, hour 3, the rest * is every night at "
                    "3:00; day of week 0 (Sunday) for once a week. Or an interval in minutes, which replaces the "
                    "crontab."
                ),
            },
        ),
        ("Beat", {"fields": ("periodic_task_link", "created_at", "updated_at")}),
    )

    @admin.display(description="Selection")
    def selection_text(self, obj: RetagSchedule) -> str:
        return json.dumps(obj.selection, sort_keys=True)

    @admin.display(description="Last job")
    def last_job(self, obj: RetagSchedule) -> str:
        job = retag_schedule_last_job(schedule=obj)
        if job is None:
            return "—"
        return format_html("#{} {}", job.pk, job.get_status_display())

    @admin.display(description="Periodic task")
    def periodic_task_link(self, obj: RetagSchedule) -> str:
        if obj.periodic_task_id is None:
            return "— (saved with the schedule)"
        url = reverse("admin:django_celery_beat_periodictask_change", args=[obj.periodic_task_id])
        return format_html('<a href="{}">{}</a>', url, obj.periodic_task)

    def save_model(self, request: HttpRequest, obj: RetagSchedule, form: Any, change: bool) -> None:
        retag_schedule_save(schedule=obj)

    def delete_model(self, request: HttpRequest, obj: RetagSchedule) -> None:
        retag_schedule_delete(schedule=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[RetagSchedule]) -> None:
        for schedule in queryset:
            retag_schedule_delete(schedule=schedule)
