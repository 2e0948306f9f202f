from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse

from tagging.models import Strategy


class GoldLabelSource(models.TextChoices):
    IMPORT = "import", "Imported dataset"
    REVIEW = "review", "Human review"


class GoldLabel(models.Model):
    """A tag a person says a recipe has: what the learned tagger is fitted on and scored against."""

    # No index of its own: the (recipe, tag) unique constraint's index starts with recipe. PROTECT: deleting a
    # recipe never takes staff's labels with it; the labels have to go first (by importing again).
    recipe = models.ForeignKey("tagging.Recipe", on_delete=models.PROTECT, related_name="gold_labels", db_index=False)
    # Indexed by the named index in Meta rather than by the foreign key's unnamed one.
    tag = models.ForeignKey("taxonomy.Tag", on_delete=models.CASCADE, related_name="gold_labels", db_index=False)
    source = models.CharField(max_length=20, choices=GoldLabelSource.choices)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["recipe", "tag"], name="feedback_goldlabel_unique_tag_per_recipe"),
            models.CheckConstraint(
                condition=Q(source__in=GoldLabelSource.values), name="feedback_goldlabel_source_valid"
            ),
        ]
        indexes = [models.Index(fields=["tag"], name="feedback_goldlabel_tag")]

    def __str__(self) -> str:
        return f"{self.recipe_id} → {self.tag_id} ({self.source})"


class EvaluationRun(models.Model):
    """One measurement of a tagging strategy on a labelled dataset: the scores, and what produced them."""

    dataset = models.CharField(max_length=200)
    dataset_sha256 = models.CharField(max_length=64)
    strategy = models.CharField(max_length=20, choices=Strategy.choices)
    # k, folds, train (the training dataset's name) and categories (the slugs scored).
    config = models.JSONField(default=dict)
    # NULL: the strategy used no prompt (similarity); set once LLM prompts are versioned.
    prompt_version = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001
    code_version = models.CharField(max_length=40)
    # Exactly EvaluationResult.as_json(): what `manage.py evaluate --output` writes.
    metrics = models.JSONField()
    recipes = models.PositiveIntegerField()
    # Copied out of `metrics` (unrounded) to sort and list runs without reading the JSON.
    overall_f1 = models.FloatField()
    duration_seconds = models.FloatField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(overall_f1__gte=0) & Q(overall_f1__lte=1), name="feedback_evaluationrun_f1_range"
            ),
            models.CheckConstraint(
                condition=Q(duration_seconds__gte=0), name="feedback_evaluationrun_duration_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(strategy__in=Strategy.values), name="feedback_evaluationrun_strategy_valid"
            ),
        ]
        indexes = [models.Index(fields=["-created_at", "-id"], name="feedback_evalrun_created")]

    def __str__(self) -> str:
        return f"Evaluation #{self.pk} of {self.dataset} ({self.strategy})"

    def get_absolute_url(self) -> str:
        return reverse("evaluations:detail", kwargs={"run_id": self.pk})


class EvaluationJobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class EvaluationJob(models.Model):
    """An evaluation of the llm or hybrid strategy on a labelled dataset, cut into chunks (EvaluationChunk)
    that any worker takes: each recipe's answer is kept as an EvaluationItem, so a restarted worker resumes
    where it stopped, and a recipe already answered to the same question (same cache key) is not asked
    again. When every chunk is done, their partial counts are added up into an EvaluationRun."""

    dataset = models.CharField(max_length=200)
    dataset_sha256 = models.CharField(max_length=64)
    # The labelled JSONL itself: a worker on another machine has no access to the file it came from.
    dataset_content = models.BinaryField()
    strategy = models.CharField(max_length=20, choices=Strategy.choices)
    source = models.CharField(max_length=50)
    k = models.PositiveSmallIntegerField()
    categories = models.JSONField(default=list)  # the dataset category slugs scored
    status = models.CharField(max_length=20, choices=EvaluationJobStatus.choices, default=EvaluationJobStatus.QUEUED)
    total = models.PositiveIntegerField()
    error = models.TextField(blank=True)
    # Jobs from before chunks were leased one at a time by this; a chunk's own lease is what counts now.
    lease_until = models.DateTimeField(null=True, blank=True)
    run = models.OneToOneField(EvaluationRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="job")
    # The prompt asked with, fixed when the job starts (an activation meanwhile changes nothing): its label
    # ("tagging-default v2", or "draft from tagging-default v2" for a playground draft), the stored version
    # (none for a draft or the built-in prompt) and the templates themselves, which the worker renders.
    # Jobs from before prompts were recorded have empty templates and ask with the active version.
    prompt_label = models.CharField(max_length=100, blank=True)
    prompt_version = models.ForeignKey(
        "prompts.PromptVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    system_template = models.TextField(blank=True)
    user_template = models.TextField(blank=True)
    # A playground draft's job: the active version's job on the same data, shown beside it.
    compared_with = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="drafts_compared"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(strategy__in=["llm", "hybrid"]), name="feedback_evaluationjob_llm_strategy"
            ),
            models.CheckConstraint(
                condition=(Q(system_template="") & Q(user_template=""))
                | (~Q(system_template="") & ~Q(user_template="")),
                name="feedback_evaluationjob_templates_both_or_neither",
            ),
            models.CheckConstraint(
                condition=Q(status__in=EvaluationJobStatus.values), name="feedback_evaluationjob_status_valid"
            ),
            models.CheckConstraint(condition=Q(k__gte=1), name="feedback_evaluationjob_k_min_1"),
        ]
        indexes = [models.Index(fields=["-created_at", "-id"], name="feedback_evaljob_created")]

    def __str__(self) -> str:
        return f"Evaluation job #{self.pk} of {self.dataset} ({self.strategy}, {self.source})"


class EvaluationItem(models.Model):
    """One recipe of an evaluation job, answered: what the strategy returned and what it cost."""

    job = models.ForeignKey(EvaluationJob, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField(help_text="The recipe's place in the dataset, from 0.")
    recipe_id = models.CharField(max_length=200)
    # Everything that decides the answer, hashed (tagging.services.llm_runs.llm_cache_key).
    cache_key = models.CharField(max_length=64)
    ok = models.BooleanField()
    # Category slug -> [[tag slug, score], ...] as returned (ingredient rules applied).
    predicted = models.JSONField(default=dict)
    # The strategy's stats: tokens, cost, what hybrid shortlisted and accepted.
    stats = models.JSONField(default=dict)
    latency_ms = models.FloatField(default=0.0)
    cached = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "position"], name="feedback_evaluationitem_unique_position"),
        ]
        indexes = [models.Index(fields=["cache_key"], name="feedback_evalitem_cache_key")]

    def __str__(self) -> str:
        return f"Item {self.position} of job {self.job_id}"


class EvaluationChunkStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"


class EvaluationChunk(models.Model):
    """A run of consecutive recipes of an evaluation job that any worker may take: claimed under a lease (a
    worker that died leaves it to the next after the lease), and once every recipe in it is answered, scored
    into partial counts that the job's final step adds up, so scoring never holds the whole dataset."""

    job = models.ForeignKey(EvaluationJob, on_delete=models.CASCADE, related_name="chunks")
    number = models.PositiveIntegerField()
    # Dataset positions [first, first + size), and where their lines lie in the job's dataset_content, so a
    # worker reads its own lines and not the whole file.
    first = models.PositiveIntegerField()
    size = models.PositiveIntegerField()
    byte_start = models.BigIntegerField()
    byte_end = models.BigIntegerField()
    status = models.CharField(
        max_length=20, choices=EvaluationChunkStatus.choices, default=EvaluationChunkStatus.PENDING
    )
    # The task delivery that holds it (a re-delivery of the same message takes it back at once).
    claimed_by = models.CharField(max_length=64, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Set when done: the chunk's additive counts (feedback.evaluation.tally.Tally.as_json) and, per recipe,
    # the correct/returned/gold counts of every predictor the bootstrap interval resamples (int16, packed).
    partial = models.JSONField(default=dict)
    recipe_counts = models.BinaryField(default=bytes)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "number"], name="feedback_evaluationchunk_unique_number"),
            models.CheckConstraint(
                condition=Q(status__in=EvaluationChunkStatus.values), name="feedback_evaluationchunk_status_valid"
            ),
            models.CheckConstraint(condition=Q(size__gte=1), name="feedback_evaluationchunk_size_min_1"),
            models.CheckConstraint(
                condition=Q(byte_end__gte=models.F("byte_start")), name="feedback_evaluationchunk_bytes_ordered"
            ),
        ]

    def __str__(self) -> str:
        return f"Chunk {self.number} of evaluation job {self.job_id}"


class FeedbackDecision(models.TextChoices):
    ACCEPT = "accept", "Accepted"
    REJECT = "reject", "Rejected"
    ADD = "add", "Added"


class FeedbackChannel(models.TextChoices):
    REVIEW = "review", "Review screen"
    API = "api", "API (an app's own users)"


class Feedback(models.Model):
    """One person's decision on one tag of a recipe: a suggested tag accepted or rejected, or a tag added that
    no run suggested. What was suggested (run, strategy, prompt version, score) is copied in, so acceptance
    can be counted per strategy and prompt version after the run itself is gone."""

    recipe = models.ForeignKey("tagging.Recipe", on_delete=models.CASCADE, related_name="feedback", db_index=False)
    # NULL: a tag added on a recipe that had no run, or a run since deleted.
    run = models.ForeignKey(
        "tagging.TaggingRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="feedback"
    )
    tag = models.ForeignKey("taxonomy.Tag", on_delete=models.CASCADE, related_name="feedback")
    decision = models.CharField(max_length=10, choices=FeedbackDecision.choices)
    channel = models.CharField(max_length=10, choices=FeedbackChannel.choices, default=FeedbackChannel.REVIEW)
    # What the run said of the tag when it was reviewed; NULL for an added tag.
    score = models.FloatField(null=True, blank=True)
    strategy = models.CharField(max_length=20, blank=True)
    prompt_version = models.ForeignKey(
        "prompts.PromptVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="feedback"
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(decision__in=FeedbackDecision.values), name="feedback_feedback_decision_valid"
            ),
            models.CheckConstraint(
                condition=Q(channel__in=FeedbackChannel.values), name="feedback_feedback_channel_valid"
            ),
            models.CheckConstraint(
                condition=Q(score__isnull=True) | (Q(score__gte=0) & Q(score__lte=1)),
                name="feedback_feedback_score_range",
            ),
            # An added tag was not suggested: it carries no score.
            models.CheckConstraint(
                condition=~Q(decision="add") | Q(score__isnull=True), name="feedback_feedback_added_has_no_score"
            ),
        ]
        indexes = [
            models.Index(fields=["recipe", "-created_at"], name="feedback_feedback_recipe"),
            models.Index(fields=["-created_at", "-id"], name="feedback_feedback_created"),
        ]

    def __str__(self) -> str:
        return f"{self.decision} {self.tag_id} on recipe {self.recipe_id}"


class ReviewLease(models.Model):
    """A reviewer's short claim on a recipe they opened from the review queue, so that two reviewers never
    review the same recipe at once. Past `expires_at` the recipe is free again; submitting a review of it
    deletes the lease. One row per recipe (the constraint is what makes taking a lease atomic: see
    feedback.services.leases)."""

    recipe = models.ForeignKey("tagging.Recipe", on_delete=models.CASCADE, related_name="+", db_index=False)
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    taken_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["recipe"], name="feedback_reviewlease_one_per_recipe"),
            models.CheckConstraint(
                condition=Q(expires_at__gt=models.F("taken_at")), name="feedback_reviewlease_expires_after_taken"
            ),
        ]

    def __str__(self) -> str:
        return f"Recipe {self.recipe_id} leased to {self.reviewer_id} until {self.expires_at:%H:%M:%S}"


class LearningCurve(models.Model):
    """What reviews taught the learned tagger on one labelled set (feedback.evaluation.replay): micro-F1 on a
    held-out part after each batch of reviews, least sure first and in random order, beside the cross-validated
    F1 on every label. Written by `bench/learning_curve.py --save` (a shared dataset) and by
    `manage.py learning_curve` (this instance's gold labels); the feedback page draws the latest."""

    # The dataset's name, or GOLD_LABELS for this instance's own gold labels.
    dataset = models.CharField(max_length=200)
    recipes = models.PositiveIntegerField()
    # Exactly LearningCurveResult.as_json(): batch, limit, seeds, aggregate, held_out, pool and the points
    # ({reviews, uncertainty_f1, random_f1, random_f1_runs}).
    result = models.JSONField()
    cv_f1 = models.FloatField(null=True, blank=True)  # NULL: not computed
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(cv_f1__isnull=True) | (Q(cv_f1__gte=0) & Q(cv_f1__lte=1)),
                name="feedback_learningcurve_cv_f1_range",
            ),
        ]
        indexes = [models.Index(fields=["-created_at", "-id"], name="feedback_learningcurve_created")]

    def __str__(self) -> str:
        return f"Learning curve of {self.dataset} ({self.created_at:%Y-%m-%d %H:%M})"
