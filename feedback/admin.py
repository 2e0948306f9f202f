"""Gold labels in admin: read-only (they come from imports and review), plus the dataset upload page; the
evaluation runs, read-only, linking to their pages; feedback, read-only, with its acceptance rates; and, on
recipes, the export of their gold labels as fine-tuning data."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.html import format_html

from autotagger.permissions import can_import_recipes
from autotagger.uploads import json_upload_load
from feedback.finetune import TRAIN_FILE, VALIDATION_FILE, finetune_export_build
from feedback.models import EvaluationRun, Feedback, GoldLabel
from feedback.selectors import AcceptanceBy, feedback_acceptance
from feedback.services.imports import ImportConfigError, ImportReport, recipes_import
from tagging.admin import RecipeAdmin
from tagging.models import Recipe

IMPORT_MAX_BYTES = 20 * 1024 * 1024
FINETUNE_VALIDATION_SHARE = 0.1
MAPPING_MAX_BYTES = 1024 * 1024
ERRORS_SHOWN = 50


class RecipeImportForm(forms.Form):
    file = forms.FileField(
        label="Recipes (JSONL)",
        help_text="One JSON object a line: id, title, ingredients, instructions and, optionally, tags "
        "({category: [tag names]}). Up to 20 MB.",
    )
    source = forms.CharField(
        max_length=100,
        required=False,
        help_text="Recipes are matched on (source, id), so importing the same file again updates them. "
        "Empty: the file's name without extension (themealdb.jsonl → themealdb).",
    )
    labeled = forms.BooleanField(
        required=False, initial=True, label="Labelled", help_text="Store the recipes' tags as their gold labels."
    )
    create_taxonomy = forms.BooleanField(
        required=False,
        label="Create taxonomy",
        help_text="Create the categories and tags the taxonomy lacks; otherwise they are listed as unmapped.",
    )
    mapping = forms.FileField(
        required=False,
        label="Mapping (JSON)",
        help_text='Optional: {"dataset category": {"dataset tag name": "tag_slug" or "category_slug/tag_slug"}}.',
    )

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > IMPORT_MAX_BYTES:
            raise ValidationError(
                "The file is larger than %(limit)d MB (%(size)s bytes): split it, or use “manage.py import_recipes”.",
                params={"size": f"{upload.size:,}", "limit": IMPORT_MAX_BYTES // (1024 * 1024)},
                code="too_large",
            )
        return upload

    def clean_mapping(self) -> Any:
        """The parsed mapping (its tags are checked by the import, before anything is written)."""
        upload = self.cleaned_data["mapping"]
        if not upload:
            return None
        if upload.size > MAPPING_MAX_BYTES:
            raise ValidationError("The mapping file is over 1 MB.", code="too_large")
        return json_upload_load(upload, label="The mapping file")

    def source_name(self) -> str:
        return self.cleaned_data["source"].strip() or Path(self.cleaned_data["file"].name).stem


class RecordAdmin(admin.ModelAdmin):
    """Rows that record what happened to a recipe's tags: read here, never written here. Deleting a gold label
    would not tell the learned tagger (labels change by importing or reviewing again), and a decision someone
    made stays on record."""

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).defer("recipe__embedding", "tag__embedding")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(GoldLabel)
class GoldLabelAdmin(RecordAdmin):
    list_display = ("recipe", "tag", "source", "created_by", "created_at")
    list_filter = ("source", "tag__category")
    list_select_related = ("recipe", "tag__category", "created_by")
    search_fields = ("recipe__title", "tag__slug")
    ordering = ("-created_at", "-id")
    change_list_template = "admin/feedback/goldlabel/change_list.html"

    def get_urls(self) -> list[URLPattern]:
        info = (self.opts.app_label, self.opts.model_name)
        custom = [path("import/", self.admin_site.admin_view(self.import_view), name="{}_{}_import".format(*info))]
        # Before the defaults, whose "<path:object_id>/" would swallow it.
        return custom + super().get_urls()

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra_context = {**(extra_context or {}), "can_import_recipes": can_import_recipes(request.user)}
        return super().changelist_view(request, extra_context=extra_context)

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not can_import_recipes(request.user):
            raise PermissionDenied
        report: ImportReport | None = None
        source = ""
        if request.method == "POST":
            form = RecipeImportForm(request.POST, request.FILES)
            if (
                form.is_valid()
                and form.cleaned_data["create_taxonomy"]
                and not can_import_recipes(request.user, create_taxonomy=True)
            ):
                form.add_error("create_taxonomy", "You may not add categories and tags.")
            if form.is_valid():
                report, source = self._import(request, form)
            else:
                self.message_user(request, "Nothing was imported: please correct the errors below.", messages.ERROR)
        else:
            form = RecipeImportForm()
        context = {
            **self.admin_site.each_context(request),
            "title": "Import labelled recipes (JSONL)",
            "opts": self.opts,
            "form": form,
            "report": report,
            "source": source,
            "errors_shown": report.errors[:ERRORS_SHOWN] if report else [],
            "errors_more": max(0, len(report.errors) - ERRORS_SHOWN) if report else 0,
            "unmapped": _unmapped_rows(report) if report else [],
            "max_megabytes": IMPORT_MAX_BYTES // (1024 * 1024),
        }
        return TemplateResponse(request, "admin/feedback/goldlabel/import.html", context)

    def _import(self, request: HttpRequest, form: RecipeImportForm) -> tuple[ImportReport | None, str]:
        source = form.source_name()
        try:
            report = recipes_import(
                # Bytes lines, from disk for a large upload: a line that is not UTF-8 is reported, not fatal.
                lines=iter(form.cleaned_data["file"]),
                source=source,
                labeled=form.cleaned_data["labeled"],
                create_taxonomy=form.cleaned_data["create_taxonomy"],
                mapping=form.cleaned_data["mapping"],
                user=request.user,
            )
        except ImportConfigError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return None, source
        self.message_user(
            request,
            f"Imported “{source}”: {report.created} recipes created, {report.updated} updated, "
            f"{report.unchanged} unchanged; {report.labels} labels; {report.categories_created} categories and "
            f"{report.tags_created} tags created.",
            messages.SUCCESS,
        )
        if report.errors:
            self.message_user(request, f"{len(report.errors)} bad lines were skipped (listed below).", messages.WARNING)
        if report.unmapped:
            count = sum(len(names) for names in report.unmapped.values())
            self.message_user(
                request, f"{count} tags are not in the taxonomy and were not stored (listed below).", messages.WARNING
            )
        return report, source


def _unmapped_rows(report: ImportReport) -> list[tuple[str, list[tuple[str, int]]]]:
    return [
        (category, sorted(counts.items(), key=lambda item: (-item[1], item[0])))
        for category, counts in sorted(report.unmapped.items())
    ]


@admin.register(EvaluationRun)
class EvaluationRunAdmin(admin.ModelAdmin):
    """Runs come from `manage.py evaluate`; their numbers are not edited. Deleting a run is allowed."""

    list_display = ("id", "dataset", "strategy", "k", "recipes", "overall_f1", "code_version", "created_at", "page")
    list_display_links = ("id", "dataset")
    list_filter = ("dataset", "strategy")
    list_select_related = ("created_by",)
    ordering = ("-created_at", "-id")
    fields = (
        "page",
        "dataset",
        "dataset_sha256",
        "strategy",
        "config",
        "prompt_version",
        "code_version",
        "recipes",
        "overall_f1",
        "duration_seconds",
        "metrics",
        "created_by",
        "created_at",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[EvaluationRun]:
        # Per-category metrics of every run are not needed to list them.
        return super().get_queryset(request).defer("metrics")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="k")
    def k(self, run: EvaluationRun) -> Any:
        return run.config.get("k")

    @admin.display(description="Report")
    def page(self, run: EvaluationRun) -> str:
        return format_html('<a href="{}">View report</a>', run.get_absolute_url())


ACCEPTANCE_GROUPS: tuple[tuple[AcceptanceBy, str], ...] = (
    ("category", "Category"),
    ("strategy", "Strategy"),
    ("prompt_version", "Prompt version"),
    ("tag", "Tag"),
)


@admin.register(Feedback)
class FeedbackAdmin(RecordAdmin):
    """Feedback is a record of what people decided: listed and filtered, never edited. Above the list, the
    acceptance rates of the suggested tags per category, strategy, prompt version and tag."""

    list_display = (
        "created_at",
        "recipe",
        "tag",
        "decision",
        "channel",
        "score",
        "strategy",
        "prompt_version",
        "reviewer",
    )
    list_filter = ("decision", "channel", "strategy", "tag__category", "prompt_version")
    list_select_related = ("recipe", "tag__category", "prompt_version__prompt", "reviewer")
    search_fields = ("recipe__title", "tag__slug", "reviewer__username")
    ordering = ("-created_at", "-id")
    date_hierarchy = "created_at"
    change_list_template = "admin/feedback/feedback/change_list.html"

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        acceptance = [(label, feedback_acceptance(by=by)) for by, label in ACCEPTANCE_GROUPS]
        extra_context = {**(extra_context or {}), "acceptance": acceptance}
        return super().changelist_view(request, extra_context=extra_context)


class RecipeWithExportAdmin(RecipeAdmin):
    """Tagging's recipe admin, plus an action of this app: gold labels live here, a layer above recipes."""

    # Whatever actions tagging gives recipes, and this one.
    actions = (*(RecipeAdmin.actions or ()), "export_finetune")  # type: ignore[misc]

    @admin.action(
        description="Export the selected recipes' gold labels as fine-tuning data (JSONL)", permissions=["view"]
    )
    def export_finetune(self, request: HttpRequest, queryset: QuerySet[Recipe]) -> HttpResponse | None:
        export = finetune_export_build(recipes=queryset, validation_share=FINETUNE_VALIDATION_SHARE)
        if not export.recipes:
            self.message_user(
                request,
                "None of the selected recipes has a gold label of an active tag: nothing to export.",
                messages.WARNING,
            )
            return None
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(TRAIN_FILE, "".join(f"{line}\n" for line in export.train))
            archive.writestr(VALIDATION_FILE, "".join(f"{line}\n" for line in export.validation))
        response = HttpResponse(buffer.getvalue(), content_type="application/zip")
        response["Content-Disposition"] = 'attachment; filename="finetune.zip"'
        return response


admin.site.unregister(Recipe)
admin.site.register(Recipe, RecipeWithExportAdmin)
