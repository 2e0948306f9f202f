from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from autotagger.api.fields import (
    QueryBooleanField,
    StrictBooleanField,
    StrictCharField,
    StrictFloatField,
    StrictIntegerField,
    StrictSlugField,
)
from autotagger.embeddings import EmbeddingMode
from tagging.models import JudgeVerdict, Recipe, RunStatus, Strategy, TaggingRun
from tagging.selectors import recipe_stale_causes, run_tags_by_category
from tagging.services.config import TaggingConfig
from tagging.staleness import STALE_CAUSES
from taxonomy.limits import MAX_TAGS_PER_CATEGORY

MAX_INGREDIENTS = 200


def _validate_content(attrs: dict[str, Any]) -> dict[str, Any]:
    ingredients = [i for i in attrs.get("ingredients", []) if i.strip()]
    if not ingredients and not attrs.get("instructions", "").strip():
        raise serializers.ValidationError(
            {"ingredients": ["Give ingredients, instructions or both: a recipe with neither cannot be tagged."]}
        )
    return attrs


class RecipeContentInputSerializer(serializers.Serializer):
    title = StrictCharField(max_length=500, trim_whitespace=True)
    ingredients = serializers.ListField(
        child=StrictCharField(max_length=1000, allow_blank=True),
        max_length=MAX_INGREDIENTS,
        required=False,
        default=list,
    )
    instructions = StrictCharField(max_length=50_000, allow_blank=True, required=False, default="")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return _validate_content(attrs)


class TaggingConfigInputSerializer(serializers.Serializer):
    strategy = serializers.ChoiceField(choices=Strategy.choices, default=Strategy.SIMILARITY)
    k = StrictIntegerField(
        min_value=1,
        max_value=MAX_TAGS_PER_CATEGORY,
        required=False,
        allow_null=True,
        help_text="At most this many tags per category (1–20); each category's default when omitted.",
    )
    categories = serializers.ListField(
        child=StrictSlugField(),
        required=False,
        allow_null=True,
        allow_empty=False,
        max_length=100,
        help_text="Category slugs to tag; all active categories when omitted.",
    )
    threshold = StrictFloatField(
        min_value=0.0,
        max_value=1.0,
        required=False,
        allow_null=True,
        help_text="Override every category's relevance threshold (0–1) for this request.",
    )

    source = StrictSlugField(  # type: ignore[assignment]  # a field named "source", as DRF allows
        required=False,
        allow_null=True,
        help_text="For llm and hybrid: an LLM source name (staff manage them in admin); the default when omitted.",
    )
    embedding = serializers.ChoiceField(
        choices=EmbeddingMode.choices,
        default=EmbeddingMode.FULL,
        help_text="similarity: `fast` embeds with the distilled static model (~100x faster, some quality lost; "
        "`manage.py evaluate --compare-fast` measures it); `full` (default) with the full model.",
    )
    wait = StrictFloatField(
        min_value=0.0,
        max_value=settings.TAGGING_MAX_WAIT_SECONDS,
        required=False,
        allow_null=True,
        help_text="For work on the worker: seconds to wait for the result before answering 202.",
    )

    def to_config(self) -> TaggingConfig:
        data = self.validated_data
        categories = data.get("categories")
        return TaggingConfig(
            strategy=data["strategy"],
            k=data.get("k"),
            categories=tuple(categories) if categories is not None else None,
            threshold=data.get("threshold"),
            source=data.get("source"),
            embedding=data["embedding"],
        )


class TagRequestSerializer(RecipeContentInputSerializer, TaggingConfigInputSerializer):
    """An ad-hoc recipe and how to tag it."""


class RecipeTagRequestSerializer(TaggingConfigInputSerializer):
    async_ = StrictBooleanField(
        required=False,
        default=False,
        help_text="Run on the Celery worker and answer 202 at once; poll GET /api/v1/runs/{id}.",
    )

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        # `async` is a Python keyword, so the field is declared as async_ and exposed as async.
        fields["async"] = fields.pop("async_")
        return fields


class RecipeListQuerySerializer(serializers.Serializer):
    tag = serializers.CharField(
        required=False, allow_blank=True, help_text="Only recipes whose latest tagging assigned this tag slug."
    )
    category = serializers.CharField(required=False, allow_blank=True, help_text="With `tag`: the tag's category slug.")
    page = serializers.IntegerField(required=False, min_value=1, help_text="Page number (20 per page).")
    stale = QueryBooleanField(
        required=False,
        help_text="true: only recipes whose current tags are stale (for any cause, or those of `stale_cause`); "
        "false: only those stale for no cause.",
    )
    stale_cause = serializers.ListField(
        child=serializers.ChoiceField(choices=STALE_CAUSES),
        required=False,
        allow_empty=False,
        help_text="Only recipes stale for one of these causes (repeat the parameter for several).",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("stale") is False and attrs.get("stale_cause"):
            raise serializers.ValidationError({"stale_cause": ["stale_cause lists stale recipes: drop stale=false."]})
        return attrs


class RecipeCreateSerializer(RecipeContentInputSerializer):
    external_id = StrictCharField(max_length=200, required=False, allow_null=True, allow_blank=True)
    # `source` shadows Field.source in the stubs; it is a field name here, as DRF allows.
    source = StrictCharField(max_length=100, required=False, default="api")  # type: ignore[assignment]


class RecipeUpdateSerializer(serializers.Serializer):
    title = StrictCharField(max_length=500, required=False)
    ingredients = serializers.ListField(
        child=StrictCharField(max_length=1000, allow_blank=True), max_length=MAX_INGREDIENTS, required=False
    )
    instructions = StrictCharField(max_length=50_000, allow_blank=True, required=False)
    external_id = StrictCharField(max_length=200, required=False, allow_null=True, allow_blank=True)
    source = StrictCharField(max_length=100, required=False)  # type: ignore[assignment]


class EvidenceNeighbourSerializer(serializers.Serializer):
    recipe_id = serializers.IntegerField(allow_null=True, help_text="Null when the labelled recipe was deleted.")
    title = serializers.CharField()


class TagEvidenceSerializer(serializers.Serializer):
    """Every key is optional: a path gives what it saw (runs stored before evidence existed give none)."""

    decided_by = serializers.ChoiceField(
        choices=["zero_shot", "learned", "llm"],
        required=False,
        help_text="What chose the tag: zero-shot similarity, the learned tagger or the language model (in "
        "hybrid runs, similarity accepted the tag unless this is llm).",
    )
    matched = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Words of the tag's name or synonyms found, per field (title, ingredients, instructions).",
    )
    similarity = serializers.FloatField(required=False, help_text="Cosine similarity of recipe and tag.")
    signals = serializers.DictField(
        child=serializers.FloatField(),
        required=False,
        help_text="Learned tagger: each signal's signed share of the score (absolute values sum to 1).",
    )
    neighbours = EvidenceNeighbourSerializer(
        many=True, required=False, help_text="Learned tagger: the nearest labelled recipes that carry the tag."
    )
    reason = serializers.CharField(required=False, help_text="The language model's short reason, when it gave one.")
    rule = serializers.CharField(
        required=False,
        help_text="The ingredient rule that let the tag through: \"requires one of: paneer, found 'paneer'; none "
        'of Meat found", or "no rule".',
    )


class TagJudgementSerializer(serializers.Serializer):
    verdict = serializers.ChoiceField(choices=JudgeVerdict.choices)
    verdict_label = serializers.CharField()
    reason = serializers.CharField(help_text="The judge's reason, one line of at most 80 characters.")
    prompt_version = serializers.CharField(help_text="The judging prompt's version that asked.")
    # Declared fields are popped off the class, so this name shadows nothing at runtime (mypy cannot tell).
    source = serializers.CharField(help_text="The LLM source that judged.")  # type: ignore[assignment]


class ScoredTagSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    score = serializers.FloatField(help_text="Relevance in [0, 1]; higher is more relevant.")
    rank = serializers.IntegerField(help_text="1 for the best tag of its category.")
    evidence = TagEvidenceSerializer(help_text="Why the tag was chosen.")
    judgements = TagJudgementSerializer(
        many=True, help_text="What an LLM judge said of the tag, newest first; empty until one is asked."
    )


class CategoryTagsSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    tags = ScoredTagSerializer(many=True)


class RemovedByRuleSerializer(serializers.Serializer):
    category = serializers.CharField(help_text="The category's slug.")
    tag = serializers.CharField(help_text="The tag's slug.")
    name = serializers.CharField()
    score = serializers.FloatField(help_text="The score the strategy gave it.")
    rule = serializers.CharField(
        help_text='Why the recipe contradicts the tag: "excluded by Meat (\'chicken\')" or "requires one of: paneer".'
    )


class TaggingRunSerializer(serializers.ModelSerializer):
    recipe_id = serializers.IntegerField()
    model = serializers.CharField(source="embedding_model", help_text="The embedding model the run used.")
    categories = serializers.SerializerMethodField()
    removed_by_rule = RemovedByRuleSerializer(
        many=True,
        read_only=True,
        help_text="Tags the strategy chose that the recipe's title or ingredients contradict (the taxonomy's "
        "ingredient rules); they are not in `categories`.",
    )

    class Meta:
        model = TaggingRun
        fields = [
            "id",
            "recipe_id",
            "strategy",
            "status",
            "model",
            "config",
            "timings",
            "stats",
            "error",
            "error_code",
            "created_at",
            "started_at",
            "finished_at",
            "categories",
            "removed_by_rule",
        ]

    @extend_schema_field(CategoryTagsSerializer(many=True))
    def get_categories(self, run: TaggingRun) -> list[dict[str, object]]:
        """Empty until the run has succeeded, so "not done yet" never reads as "nothing relevant"."""
        if run.status != RunStatus.SUCCEEDED:
            return []
        return run_tags_by_category(run=run)


class StaleCausesField(serializers.ListField):
    """Why the recipe's current tags are stale (tagging.staleness), empty when they are not."""

    child = serializers.ChoiceField(choices=STALE_CAUSES)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, recipe: Recipe) -> list[str]:  # type: ignore[override]
        return recipe_stale_causes(recipe)


class RecipeSerializer(serializers.ModelSerializer):
    latest_run = serializers.SerializerMethodField()
    current_run_id = serializers.IntegerField(
        allow_null=True, read_only=True, help_text="The run whose tags are the recipe's current tags."
    )
    stale_causes = StaleCausesField()

    class Meta:
        model = Recipe
        fields = [
            "id",
            "title",
            "ingredients",
            "instructions",
            "external_id",
            "source",
            "content_hash",
            "created_at",
            "updated_at",
            "latest_run",
            "current_run_id",
            "stale_causes",
        ]

    @extend_schema_field(TaggingRunSerializer(allow_null=True))
    def get_latest_run(self, recipe: Recipe) -> dict[str, Any] | None:
        run = self.context.get("latest_run")
        return TaggingRunSerializer(run).data if run is not None else None


class RecipeListItemSerializer(serializers.ModelSerializer):
    latest_run_id = serializers.IntegerField(
        allow_null=True, read_only=True, help_text="The run whose tags are the recipe's current tags."
    )
    stale_causes = StaleCausesField()

    class Meta:
        model = Recipe
        fields = [
            "id",
            "title",
            "ingredients",
            "instructions",
            "external_id",
            "source",
            "created_at",
            "latest_run_id",
            "stale_causes",
        ]


class StalenessCountsSerializer(serializers.Serializer):
    taxonomy_version = serializers.IntegerField(help_text="The taxonomy's current version.")
    recipes = serializers.IntegerField(help_text="Recipes you may read.")
    stale = serializers.IntegerField(help_text="Of those, the recipes stale for any cause (each counted once).")
    causes = serializers.DictField(
        child=serializers.IntegerField(), help_text=f"Stale recipes per cause: {', '.join(STALE_CAUSES)}."
    )


class JobFilterSerializer(serializers.Serializer):
    source = StrictCharField(max_length=100, required=False)  # type: ignore[assignment]
    tag = serializers.SlugField(required=False, help_text="Recipes whose latest tagging assigned this tag.")
    untagged = StrictBooleanField(required=False, default=False, help_text="Only recipes never tagged successfully.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("source") and not attrs.get("tag") and not attrs.get("untagged"):
            raise serializers.ValidationError("A filter needs source, tag or untagged (or give recipe_ids).")
        return attrs


class JobRequestSerializer(TaggingConfigInputSerializer):
    recipe_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), required=False, allow_empty=False, max_length=10_000
    )
    filter = JobFilterSerializer(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("recipe_ids" in attrs) == ("filter" in attrs):
            raise serializers.ValidationError({"recipe_ids": ["Give either recipe_ids or filter."]})
        return attrs


class TaggingJobSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    strategy = serializers.CharField()
    config = serializers.JSONField()
    selection = serializers.JSONField()
    total = serializers.IntegerField()
    done = serializers.IntegerField(help_text="Runs that succeeded.")
    failed = serializers.IntegerField(help_text="Runs that failed (see each run's error).")
    pending = serializers.IntegerField(help_text="Runs queued or running.")
    percent = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["running", "finished"])
    created_at = serializers.DateTimeField()


class RunJudgeRequestSerializer(serializers.Serializer):
    source = StrictSlugField(  # type: ignore[assignment]  # a field named "source", as DRF allows
        required=False,
        allow_null=True,
        max_length=50,
        help_text="The LLM source to judge with (staff manage them in admin); the default source when omitted.",
    )


class RunJudgeQueuedSerializer(serializers.Serializer):
    run_id = serializers.IntegerField(help_text="The run whose tags the judge rates.")
    source = serializers.CharField(help_text="The LLM source that will judge.")  # type: ignore[assignment]
    status = serializers.CharField(help_text="Always `queued`: the judge runs on the worker.")
    run_url = serializers.CharField(help_text="Poll this: each tag's `judgements` fill in once the judge answered.")
    page_url = serializers.CharField(help_text="The run's page, which shows each tag's verdict.")
