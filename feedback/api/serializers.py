"""Input and output of POST /api/v1/recipes/import, POST /api/v1/runs/{id}/feedback and GET /api/v1/feedback."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from autotagger.api.fields import QueryBooleanField, StrictBooleanField, StrictCharField, StrictSlugField
from feedback.models import FeedbackChannel, FeedbackDecision
from feedback.services.imports import ImportReport
from tagging.models import Strategy


class ImportRecipeSerializer(serializers.Serializer):
    """One recipe of an import, as documented. The import checks each one itself, so that a bad recipe is
    reported by its position and skipped while the others are stored."""

    id = StrictCharField(max_length=200, help_text="Stable and unique within the source: re-importing updates.")
    title = StrictCharField(max_length=500)
    ingredients = serializers.ListField(child=StrictCharField(), required=False)
    instructions = StrictCharField(allow_blank=True, required=False)
    tags = serializers.DictField(
        child=serializers.ListField(child=StrictCharField()),
        required=False,
        help_text="Category name → tag names; stored as gold labels with `labeled`.",
    )


@extend_schema_field(ImportRecipeSerializer(many=True))
class ImportRecipesField(serializers.ListField):
    child = serializers.JSONField()


class RecipeImportRequestSerializer(serializers.Serializer):
    recipes = ImportRecipesField(help_text="The recipes; errors report their 1-based position as `line`.")
    labeled = StrictBooleanField(default=False, help_text="Store the recipes' tags as their gold labels.")
    create_taxonomy = StrictBooleanField(
        default=False, help_text="Create missing categories and tags instead of reporting them as unmapped."
    )
    # Declared fields are popped off the class, so these names shadow nothing at runtime (mypy cannot tell).
    source = StrictCharField(  # type: ignore[assignment]
        max_length=100, default="api", help_text="Recipes are matched on (source, id)."
    )
    map = serializers.DictField(
        child=serializers.DictField(child=StrictCharField()),
        required=False,
        allow_null=True,
        default=None,
        help_text='{"dataset category": {"dataset tag name": "tag_slug" or "category_slug/tag_slug"}}',
    )


class RecipeImportOptionsSerializer(serializers.Serializer):
    """Options of a JSON-lines or bare-array body, from the query string."""

    labeled = QueryBooleanField(default=False, help_text="Store the tags as gold labels.")
    create_taxonomy = QueryBooleanField(default=False, help_text="Create missing categories and tags.")
    source = serializers.CharField(  # type: ignore[assignment]
        max_length=100, default="api", help_text='The source name ("api").'
    )


class ImportLineErrorSerializer(serializers.Serializer):
    line = serializers.IntegerField(help_text="1-based line of a JSON-lines body, or position in `recipes`.")
    message = serializers.CharField()


class RecipeImportReportSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField(help_text="Recipes whose title, ingredients or instructions changed.")
    unchanged = serializers.IntegerField()
    labels = serializers.IntegerField(help_text="The imported recipes' gold labels from imports, afterwards.")
    categories_created = serializers.IntegerField()
    tags_created = serializers.IntegerField()
    errors = serializers.SerializerMethodField(  # type: ignore[assignment]
        help_text="The lines that were skipped, and why."
    )
    unmapped = serializers.DictField(
        child=serializers.DictField(child=serializers.IntegerField()),
        help_text="Category → tag name → recipes: tags found in no category of the taxonomy (not stored).",
    )

    @extend_schema_field(ImportLineErrorSerializer(many=True))
    def get_errors(self, report: ImportReport) -> list[dict[str, object]]:
        return [{"line": line, "message": message} for line, message in report.errors]


# POST /api/v1/runs/{id}/feedback and GET /api/v1/feedback.

MAX_DECISIONS = 500


class FeedbackDecisionInputSerializer(serializers.Serializer):
    category = StrictSlugField(help_text="The tag's category slug, as in a run's `categories`.")
    tag = StrictSlugField(help_text="The tag's slug within that category.")
    decision = serializers.ChoiceField(
        choices=FeedbackDecision.choices,
        help_text="`accept` or `reject` a tag the run suggested; `add` an active tag it did not suggest.",
    )


class RunFeedbackRequestSerializer(serializers.Serializer):
    decisions = FeedbackDecisionInputSerializer(  # type: ignore[call-arg]  # ListSerializer's, absent from the stubs
        many=True, allow_empty=False, max_length=MAX_DECISIONS, help_text="One decision per tag."
    )


class FeedbackItemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    recipe_id = serializers.IntegerField()
    run_id = serializers.IntegerField(allow_null=True, help_text="Null for a run since deleted.")
    category = serializers.CharField(source="tag.category.slug")
    tag = serializers.CharField(source="tag.slug")
    tag_name = serializers.CharField(source="tag.name")
    decision = serializers.ChoiceField(choices=FeedbackDecision.choices)
    channel = serializers.ChoiceField(choices=FeedbackChannel.choices)
    score = serializers.FloatField(allow_null=True, help_text="The run's score for the tag; null for an added tag.")
    strategy = serializers.CharField(help_text="The run's strategy; empty without a run.")
    prompt_version_id = serializers.IntegerField(allow_null=True)
    prompt_version = serializers.CharField(
        source="prompt_version.label", allow_null=True, help_text='The run\'s prompt version ("tagging-default v2").'
    )
    reviewer = serializers.CharField(source="reviewer.username", allow_null=True, help_text="Who decided.")
    created_at = serializers.DateTimeField()


class RunFeedbackResultSerializer(serializers.Serializer):
    run_id = serializers.IntegerField()
    recipe_id = serializers.IntegerField()
    feedback = FeedbackItemSerializer(many=True, help_text="What was recorded, one row per decision.")
    gold_labels = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="The recipe's gold labels afterwards: category slug → tag slugs.",
    )


class FeedbackListQuerySerializer(serializers.Serializer):
    recipe = serializers.IntegerField(required=False, min_value=1, help_text="Only this recipe's feedback.")
    run = serializers.IntegerField(required=False, min_value=1, help_text="Only feedback on this run's tags.")
    category = serializers.SlugField(required=False, help_text="Only tags of this category (slug).")
    tag = serializers.SlugField(required=False, help_text="Only this tag (slug; with `category`, of that category).")
    decision = serializers.ChoiceField(choices=FeedbackDecision.choices, required=False)
    channel = serializers.ChoiceField(choices=FeedbackChannel.choices, required=False)
    strategy = serializers.ChoiceField(choices=Strategy.choices, required=False)
    prompt_version = serializers.IntegerField(required=False, min_value=1, help_text="A prompt version's id.")
    reviewer = serializers.CharField(required=False, max_length=150, help_text="The reviewer's username.")
    since = serializers.DateTimeField(required=False, help_text="Recorded at or after this time.")
    until = serializers.DateTimeField(required=False, help_text="Recorded before this time.")
    page = serializers.IntegerField(required=False, min_value=1, help_text="Page number (20 per page).")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("since") and attrs.get("until") and attrs["since"] >= attrs["until"]:
            raise serializers.ValidationError({"until": ["Must be after `since`."]})
        return attrs
