"""Reads of re-tagging jobs: progress, the diff report, the lists the pages show."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from django.db import connection
from django.db.models import Count, F, Func, IntegerField, Q, QuerySet

from retagging.models import FINISHED_STATUSES, ItemStatus, RetagItem, RetagJob, RetagSchedule


class Cardinality(Func):
    """PostgreSQL's cardinality(): how many elements an array holds."""

    function = "cardinality"
    output_field = IntegerField()


@dataclass(frozen=True)
class RetagProgress:
    total: int
    done: int
    changed: int
    unchanged: int
    failed: int
    skipped: int
    pending: int

    @property
    def percent(self) -> int:
        return round(100 * (self.total - self.pending) / self.total) if self.total else 100

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "percent": self.percent}


def retag_job_progress(*, job: RetagJob) -> RetagProgress:
    """The job's counters, from its items in one query."""
    counts = RetagItem.objects.filter(job_id=job.pk).aggregate(
        total=Count("id"),
        done=Count("id", filter=Q(status=ItemStatus.DONE)),
        changed=Count("id", filter=Q(status=ItemStatus.DONE, changed=True)),
        failed=Count("id", filter=Q(status=ItemStatus.FAILED)),
        skipped=Count("id", filter=Q(status=ItemStatus.SKIPPED)),
        pending=Count("id", filter=Q(status=ItemStatus.PENDING)),
    )
    return RetagProgress(unchanged=counts["done"] - counts["changed"], **counts)


def retag_jobs_recent(*, limit: int = 50) -> QuerySet[RetagJob]:
    return RetagJob.objects.select_related("created_by").order_by("-created_at", "-id")[:limit]


def retag_job_get(*, job_id: int) -> RetagJob | None:
    return (
        RetagJob.objects.select_related("created_by", "applied_by", "rolled_back_by", "cancelled_by")
        .filter(pk=job_id)
        .first()
    )


@dataclass(frozen=True)
class TagTotal:
    tag: str  # "category/slug"
    added: int
    removed: int

    @property
    def net(self) -> int:
        return self.added - self.removed


def retag_job_tag_totals(*, job: RetagJob) -> list[TagTotal]:
    """Per tag, how many recipes the job adds it to and removes it from; largest net change first."""
    table = RetagItem._meta.db_table
    sql = f"""
        SELECT tag, SUM(added)::int, SUM(removed)::int FROM (
            SELECT unnest(added) AS tag, 1 AS added, 0 AS removed FROM {table} WHERE job_id = %s AND changed
            UNION ALL
            SELECT unnest(removed), 0, 1 FROM {table} WHERE job_id = %s AND changed
        ) AS moves GROUP BY tag
    """  # the table name is the model's, not input
    with connection.cursor() as cursor:
        cursor.execute(sql, [job.pk, job.pk])
        totals = [TagTotal(tag=tag, added=added, removed=removed) for tag, added, removed in cursor.fetchall()]
    return sorted(totals, key=lambda t: (-abs(t.net), -(t.added + t.removed), t.tag))


def retag_job_changed_items(*, job: RetagJob) -> QuerySet[RetagItem]:
    """The recipes whose tags the job changes, most changes first (the page paginates them)."""
    return (
        RetagItem.objects.filter(job_id=job.pk, changed=True)
        .select_related("recipe")
        .only("id", "recipe_id", "recipe__title", "added", "removed", "previous_run_id", "new_run_id", "moved_at")
        .annotate(moves=Cardinality("added") + Cardinality("removed"))
        .order_by("-moves", "recipe_id")
    )


def retag_job_failed_items(*, job: RetagJob, limit: int = 20) -> list[RetagItem]:
    return list(
        RetagItem.objects.filter(job_id=job.pk, status=ItemStatus.FAILED)
        .select_related("recipe")
        .only("id", "recipe_id", "recipe__title", "error")
        .order_by("id")[:limit]
    )


def retag_jobs_progress(*, job_ids: Sequence[int]) -> dict[int, RetagProgress]:
    """Each job's counters, for a page of jobs in one query."""
    rows = (
        RetagItem.objects.filter(job_id__in=list(job_ids))
        .values("job_id")
        .annotate(
            total=Count("id"),
            done=Count("id", filter=Q(status=ItemStatus.DONE)),
            changed=Count("id", filter=Q(status=ItemStatus.DONE, changed=True)),
            failed=Count("id", filter=Q(status=ItemStatus.FAILED)),
            skipped=Count("id", filter=Q(status=ItemStatus.SKIPPED)),
            pending=Count("id", filter=Q(status=ItemStatus.PENDING)),
        )
        .order_by()
    )
    progress = {job_id: RetagProgress(0, 0, 0, 0, 0, 0, 0) for job_id in job_ids}
    for row in rows:
        progress[row["job_id"]] = RetagProgress(
            total=row["total"],
            done=row["done"],
            changed=row["changed"],
            unchanged=row["done"] - row["changed"],
            failed=row["failed"],
            skipped=row["skipped"],
            pending=row["pending"],
        )
    return progress


def retag_jobs_list() -> QuerySet[RetagJob]:
    return RetagJob.objects.order_by("-created_at", "-id")


def retag_jobs_running(*, limit: int) -> QuerySet[RetagJob]:
    return RetagJob.objects.exclude(status__in=FINISHED_STATUSES).order_by("-created_at", "-id")[:limit]


def retag_jobs_ended(*, limit: int) -> QuerySet[RetagJob]:
    """The jobs that ended last, each with the summary recorded then."""
    return RetagJob.objects.filter(status__in=FINISHED_STATUSES).order_by(
        F("finished_at").desc(nulls_last=True), "-id"
    )[:limit]


def retag_schedule_last_job(*, schedule: RetagSchedule) -> RetagJob | None:
    return RetagJob.objects.filter(schedule_name=schedule.name).order_by("-created_at", "-id").first()
