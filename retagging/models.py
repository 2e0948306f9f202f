"""Re-tagging jobs: a snapshot of recipes to tag again, cut into chunks any worker may take, one item per
recipe recording the run it had, the run it got, and what changed between them."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from tagging.models import Strategy


class SelectionKind(models.TextChoices):
    ALL = "all", "All recipes"
    STALE = "stale", "Stale recipes"
    CATEGORY = "category", "Recipes with a tag in a category"
    TAG = "tag", "Recipes with a tag"
    SOURCE = "source", "Recipes from a source"
    CHANGED_SINCE = "changed_since", "Recipes changed since"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class RetagJob(models.Model):
    """Tagging a fixed set of recipes again with one strategy and config. A dry run stores new runs without
    moving any recipe's current-tags pointer, for staff to review and apply; an applying job moves pointers as
    it goes. Its progress is the state of its items."""

    selection = models.JSONField(help_text='What was asked for: {"kind": ..., "value": ..., "causes": [...]}.')
    strategy = models.CharField(max_length=20, choices=Strategy.choices)
    config = models.JSONField(default=dict, blank=True, help_text="The TaggingConfig (k, categories, source...).")
    dry_run = models.BooleanField(default=True)
    use_batch = models.BooleanField(default=False, help_text="Send LLM requests through the provider's Batch API.")
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED)
    total = models.PositiveIntegerField(default=0, help_text="Recipes in the snapshot taken at creation.")
    error = models.TextField(blank=True)
    summary = models.JSONField(default=dict, blank=True, help_text="Recorded once, when the job finishes.")
    schedule_name = models.CharField(max_length=200, blank=True, help_text="The schedule that created it, if any.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    applied_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    rolled_back_at = models.DateTimeField(null=True, blank=True)
    rolled_back_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(status__in=JobStatus.values), name="retagging_job_status_valid"),
            models.CheckConstraint(condition=Q(strategy__in=Strategy.values), name="retagging_job_strategy_valid"),
            models.CheckConstraint(
                condition=Q(selection__kind__in=SelectionKind.values), name="retagging_job_selection_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(finished_at__isnull=True) | Q(status__in=FINISHED_STATUSES),
                name="retagging_job_finished_only_when_finished",
            ),
            models.CheckConstraint(
                condition=Q(cancelled_at__isnull=True) | Q(status=JobStatus.CANCELLED),
                name="retagging_job_cancelled_at_only_when_cancelled",
            ),
            # Only a dry run is applied (an applying job moved its pointers as it went), and only once finished.
            models.CheckConstraint(
                condition=Q(applied_at__isnull=True) | (Q(dry_run=True) & Q(finished_at__isnull=False)),
                name="retagging_job_only_finished_dry_runs_applied",
            ),
            # A dry run moved nothing until applied: nothing to roll back before.
            models.CheckConstraint(
                condition=Q(rolled_back_at__isnull=True) | Q(dry_run=False) | Q(applied_at__isnull=False),
                name="retagging_job_rolled_back_only_what_moved",
            ),
        ]
        indexes = [models.Index(fields=["-created_at"], name="retagging_job_recent")]

    def __str__(self) -> str:
        return f"Re-tag job {self.pk} ({self.strategy}, {'dry run' if self.dry_run else 'apply'}, {self.status})"

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES


class ChunkStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class RetagChunk(models.Model):
    """A slice of a job's items that one worker takes at a time. Whoever claims it (row lock, skip locked)
    holds it until `lease_expires_at`; past that, the sweep hands it to another worker, which skips the items
    already done."""

    job = models.ForeignKey(RetagJob, on_delete=models.CASCADE, related_name="chunks")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=ChunkStatus.choices, default=ChunkStatus.PENDING)
    claimed_by = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "number"], name="retagging_chunk_unique_number_per_job"),
            models.CheckConstraint(condition=Q(status__in=ChunkStatus.values), name="retagging_chunk_status_valid"),
        ]
        indexes = [
            models.Index(
                fields=["lease_expires_at"],
                condition=Q(status__in=["pending", "running"]),
                name="retagging_chunk_unfinished",
            ),
        ]

    def __str__(self) -> str:
        return f"Chunk {self.number} of job {self.job_id} ({self.status})"


class ItemStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


class RetagItem(models.Model):
    """One recipe of a job: its current run when re-tagged, the new run, and the tags the new run adds and
    removes ("category/slug"), leaving out categories where gold labels decide."""

    job = models.ForeignKey(RetagJob, on_delete=models.CASCADE, related_name="items")
    chunk = models.ForeignKey(RetagChunk, on_delete=models.CASCADE, related_name="items")
    recipe = models.ForeignKey("tagging.Recipe", on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=20, choices=ItemStatus.choices, default=ItemStatus.PENDING)
    previous_run = models.ForeignKey(
        "tagging.TaggingRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    new_run = models.ForeignKey(
        "tagging.TaggingRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    added = ArrayField(models.CharField(max_length=201), default=list, blank=True)
    removed = ArrayField(models.CharField(max_length=201), default=list, blank=True)
    changed = models.BooleanField(default=False)
    # When this job pointed the recipe's current tags at `new_run` (applying job: as it went; dry run: on
    # apply); a rollback points back only these.
    moved_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "recipe"], name="retagging_item_unique_recipe_per_job"),
            models.CheckConstraint(condition=Q(status__in=ItemStatus.values), name="retagging_item_status_valid"),
            models.CheckConstraint(
                condition=~Q(status="done") | Q(new_run__isnull=False), name="retagging_item_done_has_new_run"
            ),
            models.CheckConstraint(
                condition=Q(moved_at__isnull=True) | Q(status="done"), name="retagging_item_moved_only_when_done"
            ),
        ]
        indexes = [
            models.Index(fields=["chunk", "status"], name="retagging_item_chunk_status"),
            models.Index(fields=["job", "status"], name="retagging_item_job_status"),
        ]

    def __str__(self) -> str:
        return f"Item {self.recipe_id} of job {self.job_id} ({self.status})"


class RetagSchedule(models.Model):
    """A re-tagging job created on a schedule (celery beat). The PeriodicTask that beat reads is kept in step
    by `retag_schedule_save` / `retag_schedule_delete`: edit schedules here, not in the beat tables."""

    name = models.CharField(max_length=150, unique=True)
    selection = models.JSONField(help_text='Which recipes: {"kind": "stale"}, {"kind": "all"}, {"kind": "tag", ...}.')
    strategy = models.CharField(max_length=20, choices=Strategy.choices)
    config = models.JSONField(default=dict, blank=True, help_text="The TaggingConfig (k, categories, source...).")
    dry_run = models.BooleanField(default=True, help_text="Store a diff report for review instead of applying.")
    use_batch = models.BooleanField(default=False, help_text="Send LLM requests through the provider's Batch API.")
    enabled = models.BooleanField(default=False)
    # A crontab, field by field as cron reads them (in CELERY_TIMEZONE), unless an interval is given.
    minute = models.CharField(max_length=60, default="0")
    hour = models.CharField(max_length=60, default="3")
    day_of_month = models.CharField(max_length=60, default="*")
    month_of_year = models.CharField(max_length=60, default="*")
    day_of_week = models.CharField(max_length=60, default="*", help_text="0-6, Sunday = 0, or mon-sun.")
    interval_minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Every this many minutes instead of the crontab fields (empty: crontab)."
    )
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        null=True,
        blank=True,
        editable=False,
        on_delete=models.SET_NULL,
        related_name="retag_schedule",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(strategy__in=Strategy.values), name="retagging_schedule_strategy_valid"),
            models.CheckConstraint(
                condition=Q(selection__kind__in=SelectionKind.values), name="retagging_schedule_selection_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(interval_minutes__isnull=True) | Q(interval_minutes__gt=0),
                name="retagging_schedule_interval_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def cron(self) -> str:
        return " ".join((self.minute, self.hour, self.day_of_month, self.month_of_year, self.day_of_week))

    @property
    def timing(self) -> str:
        if self.interval_minutes:
            return f"every {self.interval_minutes} min"
        return self.cron
