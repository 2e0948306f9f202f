from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.db.models.fields.json import KeyTransform
from pgvector.django import HnswIndex, VectorField

from autotagger.recipe_text import RecipeText


class Strategy(models.TextChoices):
    SIMILARITY = "similarity", "Similarity (no LLM)"
    LLM = "llm", "LLM"
    HYBRID = "hybrid", "Hybrid"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class Recipe(models.Model):
    title = models.CharField(max_length=500)
    ingredients = ArrayField(models.TextField(), default=list, blank=True)
    instructions = models.TextField(blank=True)
    # NULL, not "", for "no external id": the per-source uniqueness constraint skips NULLs.
    external_id = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    source = models.CharField(max_length=100, default="api")
    content_hash = models.CharField(max_length=64, db_index=True, editable=False)
    embedding = VectorField(dimensions=settings.EMBEDDING_DIMENSIONS, null=True, blank=True, editable=False)
    embedding_model = models.CharField(max_length=200, blank=True, editable=False)
    # The API client that created it; NULL for imported datasets and recipes stored before owners were kept.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The run whose tags are the recipe's current tags (with its gold labels, which win in their categories).
    # An explicit pointer, not "the latest run": a dry-run re-tag adds runs without moving it, and rolling a
    # re-tagging job back moves it back.
    current_run = models.ForeignKey(
        "TaggingRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(title=""), name="tagging_recipe_title_not_empty"),
            models.CheckConstraint(
                condition=~Q(ingredients=[]) | ~Q(instructions=""),
                name="tagging_recipe_has_ingredients_or_instructions",
            ),
            models.UniqueConstraint(
                fields=["source", "external_id"],
                condition=Q(external_id__isnull=False),
                name="tagging_recipe_unique_external_id_per_source",
            ),
        ]
        indexes = [
            HnswIndex(
                name="tagging_recipe_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def text(self) -> RecipeText:
        """What the taggers read of this recipe."""
        return RecipeText(title=self.title, ingredients=self.ingredients, instructions=self.instructions)


class TaggingJob(models.Model):
    """Tagging of many recipes at once: one run per recipe, executed on the worker. Its progress is
    the state of its runs."""

    strategy = models.CharField(max_length=20, choices=Strategy.choices)
    config = models.JSONField(default=dict, blank=True)
    selection = models.JSONField(default=dict, blank=True, help_text="The recipe ids or filter it was asked for.")
    total = models.PositiveIntegerField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Job {self.pk} ({self.strategy}, {self.total} recipes)"


class TaggingRun(models.Model):
    recipe = models.ForeignKey(Recipe, on_delete=models.CASCADE, related_name="runs")
    job = models.ForeignKey(TaggingJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    strategy = models.CharField(max_length=20, choices=Strategy.choices)
    config = models.JSONField(default=dict, blank=True)
    embedding_model = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.QUEUED)
    error = models.TextField(blank=True)
    timings = models.JSONField(default=dict, blank=True)
    # How the run was decided: LLM calls, tokens, cost, cache hit, tags decided by each path.
    stats = models.JSONField(default=dict, blank=True)
    # Tags a strategy chose that the recipe's ingredients contradict (taxonomy ingredient rules), kept to show
    # why they are missing: [{"category", "tag", "name", "score", "rule"}].
    removed_by_rule = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # A stable reason for a failure that clients can act on (the message in `error` may change).
    error_code = models.CharField(max_length=50, blank=True)
    # Who holds an unfinished run and until when, so that work lost with a worker is taken back: the task
    # delivery (Celery task id) that claimed it while `running`, and the end of its lease (queued: the broker's,
    # running: the task's hard time limit). Past the lease, the sweep re-queues the run.
    claimed_by = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # What decided the run, to tell when the recipe's current tags are stale (tagging.selectors.recipes_stale):
    # NULL/blank on runs stored before these were recorded.
    taxonomy_version = models.PositiveIntegerField(null=True, blank=True)
    prompt_version = models.ForeignKey(
        "prompts.PromptVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    llm_source = models.CharField(max_length=50, blank=True)
    llm_model = models.CharField(max_length=200, blank=True)
    tagger_state = models.ForeignKey("TaggerState", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    content_hash = models.CharField(max_length=64, blank=True, help_text="The recipe's content hash when tagged.")
    sets_current = models.BooleanField(
        default=True,
        help_text="Whether success makes this run the recipe's current tags (a dry-run re-tag's runs do not).",
    )
    attempts = models.PositiveSmallIntegerField(
        default=0,
        help_text="Deliveries of this run that a worker started, or that were lost before one did; a run is "
        "failed rather than tried again after TAGGING_RUN_MAX_ATTEMPTS.",
    )

    class Meta:
        indexes = [
            models.Index(fields=["recipe", "-created_at"], name="tagging_run_recipe_recent"),
            models.Index(
                fields=["lease_expires_at"],
                condition=Q(status__in=["queued", "running"]),
                name="tagging_run_unfinished_lease",
            ),
            # The runs of a prompt version (feedback's version pages: usage, judged precision).
            models.Index(KeyTransform("prompt_version_id", "stats"), name="tagging_run_prompt_version"),
        ]

    def __str__(self) -> str:
        return f"Run {self.pk} ({self.strategy}, {self.status})"


class TagAssignment(models.Model):
    run = models.ForeignKey(TaggingRun, on_delete=models.CASCADE, related_name="assignments")
    tag = models.ForeignKey("taxonomy.Tag", on_delete=models.CASCADE, related_name="assignments")
    score = models.FloatField()
    rank = models.PositiveSmallIntegerField()
    evidence = models.JSONField(
        default=dict,
        blank=True,
        help_text="Why the tag was chosen: the path that decided, the words matched, the nearest labelled "
        "recipes that carry it, the learned signals' shares, the model's reason, the rule that let it through.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "tag"], name="tagging_assignment_unique_tag_per_run"),
            models.CheckConstraint(condition=Q(score__gte=0) & Q(score__lte=1), name="tagging_assignment_score_range"),
            models.CheckConstraint(condition=Q(rank__gte=1), name="tagging_assignment_rank_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.tag} {self.score:.2f}"


class JudgeVerdict(models.TextChoices):
    RELEVANT = "relevant", "Relevant"
    PARTLY = "partly", "Partly relevant"
    NOT_RELEVANT = "not_relevant", "Not relevant"


class TagJudgement(models.Model):
    """What the LLM judge (tagging.services.judging) said of a suggested tag: one verdict per prompt version
    and source (judging again with both the same replaces it)."""

    assignment = models.ForeignKey(TagAssignment, on_delete=models.CASCADE, related_name="judgements")
    verdict = models.CharField(max_length=20, choices=JudgeVerdict.choices)
    reason = models.CharField(max_length=80, blank=True)
    prompt_version = models.CharField(max_length=100, help_text='The judging prompt, as "judging-default v1".')
    source = models.CharField(max_length=50, help_text="The LLM source's name.")
    shuffle_seed = models.BigIntegerField(help_text="The seed that ordered the run's tags in the question.")
    position = models.PositiveSmallIntegerField(help_text="Where the tag was listed in the question, from 1.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["assignment", "prompt_version", "source"], name="tagging_judgement_unique_per_judge"
            ),
            models.CheckConstraint(
                condition=Q(verdict__in=JudgeVerdict.values), name="tagging_judgement_verdict_valid"
            ),
            models.CheckConstraint(condition=Q(position__gte=1), name="tagging_judgement_position_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.assignment} {self.verdict} ({self.prompt_version}, {self.source})"


class EmbeddingCacheEntry(models.Model):
    """A vector for a text, by hash, so that evaluations and imports never embed the same text twice."""

    model = models.CharField(max_length=200)
    text_sha256 = models.CharField(max_length=64)
    embedding = VectorField(dimensions=settings.EMBEDDING_DIMENSIONS)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model", "text_sha256"], name="tagging_embedding_cache_unique_text"),
        ]

    def __str__(self) -> str:
        return f"{self.model}:{self.text_sha256[:12]}"


class TaggerState(models.Model):
    """What the similarity tagger learned from gold labels: per-category weights and thresholds, the
    text model, and (in related rows) the labelled recipes it votes with and the tags' prototypes.

    At most one state is active per embedding model (the full one, and the fast mode's); refitting makes a new
    one and retires the previous.
    """

    created_at = models.DateTimeField(auto_now_add=True)
    active = models.BooleanField(default=True)
    embedding_model = models.CharField(max_length=200)
    fitted_on = models.JSONField(help_text="The gold labels it was fitted on: counts, last label id, per category.")
    parameters = models.JSONField(help_text="Per category: tag slugs, weights, bias, threshold, support, fit F1.")
    # Pickled (zlib) numpy arrays and the fitted text model: prototypes, label matrices, TF-IDF weights.
    # Only this project writes it, from its own database; it is never read from elsewhere.
    artifacts = models.BinaryField()
    duration_seconds = models.FloatField(default=0.0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["embedding_model"], condition=Q(active=True), name="tagging_one_active_tagger_state_per_model"
            ),
        ]

    def __str__(self) -> str:
        return f"Tagger state {self.pk} ({'active' if self.active else 'retired'})"


class TrainingExample(models.Model):
    """A labelled recipe as the active tagger state knows it; its nearest neighbours vote for tags."""

    state = models.ForeignKey(TaggerState, on_delete=models.CASCADE, related_name="examples")
    recipe = models.ForeignKey(Recipe, null=True, on_delete=models.SET_NULL, related_name="+")
    row = models.PositiveIntegerField(help_text="Position in the state's label matrices.")
    embedding = VectorField(dimensions=settings.EMBEDDING_DIMENSIONS)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["state", "row"], name="tagging_training_example_unique_row"),
        ]
        indexes = [
            HnswIndex(
                name="tagging_example_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
        ]

    def __str__(self) -> str:
        return f"Example {self.row} of state {self.state_id}"


class LLMBatchStatus(models.TextChoices):
    SUBMITTED = "submitted", "Submitted (waiting for the provider)"
    COLLECTED = "collected", "Collected"
    GIVEN_UP = "given_up", "Given up (not finished within LLM_BATCH_MAX_WAIT_HOURS)"


class LLMBatch(models.Model):
    """Runs asked through a provider's Batch API (tagging.services.batches): one uploaded file of chat requests,
    polled until the provider finishes it, then collected. Its runs stay `queued`, claimed by the batch
    (`TaggingRun.claimed_by` = `claim`) with a lease past LLM_BATCH_MAX_WAIT_HOURS, so the sweep leaves them."""

    source = models.CharField(max_length=50, help_text="The LLM source's name.")
    round = models.PositiveSmallIntegerField(
        default=1, help_text="1 for a first batch; a batch of runs an earlier one left unanswered counts on."
    )
    prompt = models.JSONField(
        default=dict, blank=True, help_text="The prompt version its runs were asked with (label, templates, id)."
    )
    provider_batch_id = models.CharField(max_length=200, blank=True)
    input_file_id = models.CharField(max_length=200, blank=True)
    output_file_id = models.CharField(max_length=200, blank=True)
    error_file_id = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=20, choices=LLMBatchStatus.choices, default=LLMBatchStatus.SUBMITTED)
    provider_status = models.CharField(max_length=30, blank=True, help_text="What the provider last said.")
    submitted_at = models.DateTimeField(null=True, blank=True)
    polled_at = models.DateTimeField(null=True, blank=True)
    polls = models.PositiveIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "LLM batch"
        verbose_name_plural = "LLM batches"
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=LLMBatchStatus.values), name="tagging_llm_batch_status_valid"
            ),
            models.CheckConstraint(condition=Q(round__gte=1), name="tagging_llm_batch_round_min_1"),
        ]

    def __str__(self) -> str:
        return f"Batch {self.pk} ({self.source}, {self.status})"

    @property
    def claim(self) -> str:
        """What the runs of this batch carry in `claimed_by` while it holds them."""
        return f"llm-batch-{self.pk}"


class LLMBatchItemOutcome(models.TextChoices):
    WAITING = "waiting", "Waiting for the batch"
    SUCCEEDED = "succeeded", "Stored"
    FAILED = "failed", "Failed"
    REQUEUED = "requeued", "No usable answer: re-queued"
    SKIPPED = "skipped", "Skipped (the run was finished elsewhere)"


class LLMBatchItem(models.Model):
    """One run in a batch: its line's custom_id, and what the run decided before the model (`pending`: the mode
    asked in, hybrid's accepted tags and shortlist), kept until the answer comes."""

    batch = models.ForeignKey(LLMBatch, on_delete=models.CASCADE, related_name="items")
    run = models.ForeignKey(TaggingRun, on_delete=models.CASCADE, related_name="batch_items")
    custom_id = models.CharField(max_length=64)
    pending = models.JSONField(default=dict, blank=True)
    outcome = models.CharField(max_length=20, choices=LLMBatchItemOutcome.choices, default=LLMBatchItemOutcome.WAITING)
    error_code = models.CharField(max_length=50, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["batch", "custom_id"], name="tagging_llm_batch_item_custom_id_unique"),
            models.UniqueConstraint(fields=["batch", "run"], name="tagging_llm_batch_item_run_unique"),
            models.CheckConstraint(
                condition=Q(outcome__in=LLMBatchItemOutcome.values), name="tagging_llm_batch_item_outcome_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.custom_id} in batch {self.batch_id}"
