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

    # No index of its own: the (recipe, tag) unique constraint's index starts with recipe.
    recipe = models.ForeignKey("tagging.Recipe", on_delete=models.CASCADE, related_name="gold_labels", db_index=False)
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
