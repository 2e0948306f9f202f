"""Input and output of POST /api/v1/recipes/import."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from autotagger.api.fields import QueryBooleanField, StrictBooleanField, StrictCharField
from feedback.services.imports import ImportReport


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
