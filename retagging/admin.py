"""Admin for re-tagging jobs: the list with progress, a read-only record with its summary and report, and the
actions that apply, roll back or cancel (one service call each). A job is started from the job form, which
creates it through retag_job_create."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from autotagger.errors import DomainError
from retagging.models import ItemStatus, RetagJob
from retagging.services.jobs import retag_job_apply, retag_job_cancel, retag_job_rollback


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
