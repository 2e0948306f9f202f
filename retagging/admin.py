"""Admin for re-tagging jobs: the list with progress, a read-only record with its summary and report, and the
actions that apply, roll back or cancel (one service call each). A job is started from the job form, which
creates it through retag_job_create. Schedules are saved and deleted with their beat PeriodicTask
(retagging.services.schedules), the crontab shown field by field, problems named on their fields."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from autotagger.errors import DomainError
from retagging.models import ItemStatus, RetagJob, RetagSchedule
from retagging.selectors import retag_schedule_last_job
from retagging.services.jobs import retag_job_apply, retag_job_cancel, retag_job_rollback
from retagging.services.schedules import (
    InvalidSchedule,
    retag_schedule_delete,
    retag_schedule_save,
    retag_schedule_validate,
)


def _each(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[RetagJob],
    service: Callable[..., Any],
    done: str,
) -> None:
    for job in queryset.order_by("id"):
        try:
            service(job=job, user=request.user)
        except DomainError as exc:
            modeladmin.message_user(request, f"Job {job.pk}: {exc.message}", messages.ERROR)
        else:
            modeladmin.message_user(request, f"Job {job.pk}: {done}.", messages.SUCCESS)


@admin.register(RetagJob)
class RetagJobAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "selection_shown",
        "dry_run",
        "status",
        "progress_total",
        "progress_done",
        "progress_changed",
        "progress_failed",
        "schedule_name",
        "created_at",
        "report",
    )
    list_filter = ("status", "strategy", "dry_run", "schedule_name")
    ordering = ("-created_at", "-id")
    actions = ("apply_jobs", "roll_back_jobs", "cancel_jobs")
    readonly_fields = (
        "report",
        "selection",
        "strategy",
        "config",
        "dry_run",
        "use_batch",
        "status",
        "total",
        "error",
        "summary_shown",
        "schedule_name",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
        "applied_at",
        "applied_by",
        "rolled_back_at",
        "rolled_back_by",
        "cancelled_at",
        "cancelled_by",
    )
    exclude = ("summary",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[RetagJob]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_done=Count("items", filter=Q(items__status=ItemStatus.DONE)),
                n_changed=Count("items", filter=Q(items__status=ItemStatus.DONE, items__changed=True)),
                n_failed=Count("items", filter=Q(items__status=ItemStatus.FAILED)),
            )
        )

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        # Jobs are created by the service (selection checked and resolved once, chunks queued): its form.
        return HttpResponseRedirect(reverse("retagging:new"))

    def has_change_permission(self, request: HttpRequest, obj: RetagJob | None = None) -> bool:
        # The record is read-only; acting on it goes through the actions (which check change permission).
        return False if obj is not None else super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: RetagJob | None = None) -> bool:
        return False

    @admin.display(description="Selection")
    def selection_shown(self, job: RetagJob) -> str:
        return " ".join(str(part) for part in (job.selection.get("kind"), job.selection.get("value")) if part)

    @admin.display(description="Total", ordering="total")
    def progress_total(self, job: RetagJob) -> int:
        return job.total

    @admin.display(description="Done")
    def progress_done(self, job: Any) -> int:
        return int(job.n_done)

    @admin.display(description="Changed")
    def progress_changed(self, job: Any) -> int:
        return int(job.n_changed)

    @admin.display(description="Failed")
    def progress_failed(self, job: Any) -> int:
        return int(job.n_failed)

    @admin.display(description="Report")
    def report(self, job: RetagJob) -> str:
        return format_html('<a href="{}">Diff report</a>', reverse("retagging:detail", kwargs={"job_id": job.pk}))

    @admin.display(description="Summary")
    def summary_shown(self, job: RetagJob) -> str:
        return format_html("<pre>{}</pre>", json.dumps(job.summary, indent=2, sort_keys=True))

    @admin.action(description="Apply the selected dry runs", permissions=["retag"])
    def apply_jobs(self, request: HttpRequest, queryset: QuerySet[RetagJob]) -> None:
        _each(self, request, queryset, retag_job_apply, "applied")

    @admin.action(description="Roll back the selected jobs", permissions=["retag"])
    def roll_back_jobs(self, request: HttpRequest, queryset: QuerySet[RetagJob]) -> None:
        _each(self, request, queryset, retag_job_rollback, "rolled back")

    @admin.action(description="Cancel the selected jobs", permissions=["retag"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[RetagJob]) -> None:
        _each(self, request, queryset, retag_job_cancel, "cancelled")

    def has_retag_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("retagging.change_retagjob"))


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
        url = reverse("admin:retagging_retagjob_change", args=[job.pk])
        return format_html('<a href="{}">#{} {}</a>', url, job.pk, job.get_status_display())

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
