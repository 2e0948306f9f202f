"""Admin for recipes and the record of tagging runs (runs are read-only: they are history)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.postgres.forms import SimpleArrayField
from django.db.models import Count, Field, Q, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse

from autotagger.queue import BrokerUnavailable
from tagging.models import LLMBatch, LLMBatchItem, LLMBatchItemOutcome, Recipe, RunStatus, TagAssignment, TaggingRun
from tagging.selectors import recipes_fresh, recipes_stale, staleness_counts
from tagging.services.recipes import recipe_update
from tagging.staleness import STALE_CAUSE_LABELS, STALE_CAUSES
from tagging.tasks import runs_judge_send

RECIPE_CONTENT_FIELDS = ("title", "ingredients", "instructions", "external_id", "source")


class IngredientsField(SimpleArrayField):
    """One ingredient per line: ingredients often contain commas, so the default comma list would split them."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 10}))
        super().__init__(forms.CharField(), delimiter="\n", **kwargs)

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str):
            value = "\n".join(line for line in value.splitlines() if line.strip())
        return super().to_python(value)


class StaleCauseFilter(admin.SimpleListFilter):
    title = "Stale: cause"
    parameter_name = "stale"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("any", "Stale (any cause)"), *STALE_CAUSE_LABELS.items(), ("fresh", "Not stale")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Recipe]) -> QuerySet[Recipe]:
        value = self.value()
        if value == "any":
            return recipes_stale(recipes=queryset)
        if value == "fresh":
            return recipes_fresh(recipes=queryset)
        if value in STALE_CAUSES:
            return recipes_stale(causes=[value], recipes=queryset)
        return queryset


@admin.register(Recipe)
class RecipeAdmin(admin.ModelAdmin):
    list_display = ("title", "source", "external_id", "created_by", "current_run", "created_at")
    list_filter = ("source", StaleCauseFilter)
    change_list_template = "admin/tagging/recipe/change_list.html"
    list_select_related = ("created_by", "current_run")
    search_fields = ("title", "external_id")
    ordering = ("-created_at", "-id")
    exclude = ("embedding",)
    readonly_fields = ("content_hash", "embedding_model", "created_by", "current_run", "created_at", "updated_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Recipe]:
        return super().get_queryset(request).defer("embedding")

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        # Counts over every recipe, whatever the filter: the summary says what a re-tag of stale ones would cover.
        counts = staleness_counts()
        extra_context = {
            **(extra_context or {}),
            "staleness": {
                "recipes": counts["recipes"],
                "stale": counts["stale"],
                "causes": [
                    {"cause": cause, "label": STALE_CAUSE_LABELS[cause], "count": counts[cause]}
                    for cause in STALE_CAUSES
                ],
            },
        }
        return super().changelist_view(request, extra_context=extra_context)

    def formfield_for_dbfield(self, db_field: Field, request: HttpRequest, **kwargs: Any) -> forms.Field | None:
        if db_field.name == "ingredients":
            return IngredientsField(required=False, help_text="One ingredient per line.")
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Recipe, form: ModelForm, change: bool) -> None:
        # Through the service, so the content hash follows the text and a stale embedding is dropped.
        changed = form.changed_data if change else RECIPE_CONTENT_FIELDS
        recipe_update(
            recipe=obj,
            data={name: form.cleaned_data[name] for name in changed if name in form.cleaned_data},
            actor=request.user,
        )


class TagAssignmentInline(admin.TabularInline):
    model = TagAssignment
    fields = ("tag", "score", "rank")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[TagAssignment]:
        return super().get_queryset(request).select_related("tag__category").order_by("rank", "id")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(TaggingRun)
class TaggingRunAdmin(admin.ModelAdmin):
    list_display = ("id", "recipe", "strategy", "status", "embedding_model", "created_at")
    list_filter = ("strategy", "status")
    list_select_related = ("recipe",)
    search_fields = ("recipe__title",)
    ordering = ("-created_at", "-id")
    fields = (
        "recipe",
        "strategy",
        "status",
        "config",
        "embedding_model",
        "error",
        "error_code",
        "timings",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
        "attempts",
        "claimed_by",
        "lease_expires_at",
    )
    readonly_fields = fields
    inlines = (TagAssignmentInline,)
    actions = ("judge_tags",)

    @admin.action(description="Ask the LLM judge about the selected runs' tags", permissions=["judge"])
    def judge_tags(self, request: HttpRequest, queryset: QuerySet[TaggingRun]) -> None:
        succeeded = list(queryset.filter(status=RunStatus.SUCCEEDED).order_by("id").values_list("id", flat=True))
        skipped = queryset.count() - len(succeeded)
        try:
            queued = runs_judge_send(succeeded)
        except BrokerUnavailable:
            self.message_user(request, "The task queue cannot be reached; nothing was queued.", messages.ERROR)
            return
        note = f"; {skipped} not succeeded, so with no tags to judge" if skipped else ""
        self.message_user(
            request,
            f"{queued} run(s) queued for the LLM judge (default source){note}. The verdicts show on each run's page.",
            messages.SUCCESS,
        )

    def has_judge_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("tagging.add_tagjudgement"))

    def get_queryset(self, request: HttpRequest) -> QuerySet[TaggingRun]:
        return super().get_queryset(request).select_related("recipe", "created_by").defer("recipe__embedding")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# The LLM sources and the accounting of LLM calls live in their own module.


class LLMBatchItemInline(admin.TabularInline):
    model = LLMBatchItem
    fields = ("custom_id", "run", "outcome", "error_code")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[LLMBatchItem]:
        return super().get_queryset(request).select_related("run").order_by("id")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(LLMBatch)
class LLMBatchAdmin(admin.ModelAdmin):
    """Batch API batches of runs: where each stands and what became of its runs (read-only: the poll task
    moves them; see tagging.services.batches)."""

    list_display = (
        "id",
        "source",
        "round",
        "status",
        "provider_status",
        "runs",
        "stored",
        "requeued",
        "polls",
        "submitted_at",
        "finished_at",
    )
    list_filter = ("status", "source", "provider_status")
    search_fields = ("provider_batch_id",)
    ordering = ("-created_at", "-id")
    fields = (
        "source",
        "round",
        "status",
        "provider_status",
        "provider_batch_id",
        "input_file_id",
        "output_file_id",
        "error_file_id",
        "submitted_at",
        "polled_at",
        "polls",
        "finished_at",
        "error",
        "created_at",
    )
    readonly_fields = fields
    inlines = (LLMBatchItemInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[LLMBatch]:
        outcome = LLMBatchItemOutcome
        return (
            super()
            .get_queryset(request)
            .annotate(
                item_count=Count("items"),
                stored_count=Count("items", filter=Q(items__outcome=outcome.SUCCEEDED)),
                requeued_count=Count("items", filter=Q(items__outcome=outcome.REQUEUED)),
            )
        )

    @admin.display(description="Runs", ordering="item_count")
    def runs(self, obj: Any) -> int:
        return int(obj.item_count)

    @admin.display(description="Stored", ordering="stored_count")
    def stored(self, obj: Any) -> int:
        return int(obj.stored_count)

    @admin.display(description="Re-queued", ordering="requeued_count")
    def requeued(self, obj: Any) -> int:
        return int(obj.requeued_count)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
