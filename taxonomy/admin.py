"""Staff's editing UI for the taxonomy.

Every write that is more than saving one form goes through `taxonomy.services`; the only side effect added
here is scheduling a re-embedding (after commit) of tags whose embedded text staff changed.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, QuerySet
from django.forms import BaseInlineFormSet, ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from autotagger.uploads import json_upload_load
from taxonomy.models import Category, IngredientGroup, Tag, TaxonomyVersion
from taxonomy.rules import terms_clean
from taxonomy.selectors import taxonomy_export, taxonomy_version_current
from taxonomy.services.changes import (
    TaxonomyError,
    categories_set_active,
    tag_changed_fields_need_embedding,
    tag_merge,
    tags_schedule_embedding,
    tags_set_active,
)
from taxonomy.services.documents import taxonomy_import

TAXONOMY_IMPORT_MAX_BYTES = 5 * 1024 * 1024


def _tag_ids_needing_embedding(formset: BaseInlineFormSet) -> list[int]:
    """Tags an inline formset just created, or changed in a field that is part of the embedded text.

    Reads what `formset.save()` recorded, so it must run after the formset was saved.
    """
    ids = [tag.pk for tag in formset.new_objects]
    ids += [
        tag.pk
        for tag, changed_fields in formset.changed_objects
        if tag_changed_fields_need_embedding(changed_fields=changed_fields)
    ]
    return ids


def _has_perms(request: HttpRequest, *actions: str) -> bool:
    codenames = [
        f"{model._meta.app_label}.{get_permission_codename(action, model._meta)}"
        for model in (Category, Tag)
        for action in actions
    ]
    return request.user.has_perms(codenames)


class TaxonomyImportForm(forms.Form):
    file = forms.FileField(
        label="Taxonomy JSON file",
        help_text="A document made by “Export taxonomy JSON”, up to 5 MB. Categories and tags are matched "
        "by slug: new ones are created, existing ones updated, nothing is deleted.",
    )

    def clean_file(self) -> Any:
        """Return the parsed JSON document (not the upload)."""
        upload = self.cleaned_data["file"]
        if upload.size > TAXONOMY_IMPORT_MAX_BYTES:
            raise ValidationError(
                "The file is %(size).1f MB; the limit is 5 MB.",
                params={"size": upload.size / (1024 * 1024)},
                code="too_large",
            )
        return json_upload_load(upload, label="The file")


class TagInline(admin.TabularInline):
    model = Tag
    # A tag's excluded_by groups are edited on its own page (the change link): a multi-select per row
    # would make a category of forty tags unreadable.
    fields = ("name", "slug", "description", "synonyms", "required_terms", "active")
    prepopulated_fields = {"slug": ("name",)}
    show_change_link = True
    extra = 0

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tag]:
        # `category` for Tag.__str__ (shown by show_change_link); the vector is never shown or edited here.
        return super().get_queryset(request).select_related("category").defer("embedding").order_by("name", "id")


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "slug",
        "position",
        "default_max_tags",
        "relevance_threshold",
        "precision_floor",
        "active",
        "tag_count",
    )
    list_editable = ("position", "active")
    list_filter = ("active",)
    search_fields = ("name", "slug", "description")
    prepopulated_fields = {"slug": ("name",)}
    ordering = ("position", "name", "id")
    readonly_fields = ("created_at", "updated_at")
    inlines = (TagInline,)
    actions = ("activate", "deactivate")
    change_list_template = "admin/taxonomy/category/change_list.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Category]:
        return super().get_queryset(request).annotate(tag_count=Count("tags"))

    @admin.display(description="Tags", ordering="tag_count")
    def tag_count(self, obj: Category) -> int:
        return obj.tag_count  # type: ignore[attr-defined]

    @admin.action(description="Activate selected categories", permissions=["change"])
    def activate(self, request: HttpRequest, queryset: QuerySet[Category]) -> None:
        count = categories_set_active(category_ids=list(queryset.values_list("id", flat=True)), active=True)
        self.message_user(request, f"Activated {count} categor{'y' if count == 1 else 'ies'}.", messages.SUCCESS)

    @admin.action(description="Deactivate selected categories", permissions=["change"])
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Category]) -> None:
        count = categories_set_active(category_ids=list(queryset.values_list("id", flat=True)), active=False)
        self.message_user(request, f"Deactivated {count} categor{'y' if count == 1 else 'ies'}.", messages.SUCCESS)

    def save_formset(self, request: HttpRequest, form: ModelForm, formset: BaseInlineFormSet, change: bool) -> None:
        super().save_formset(request, form, formset, change)
        if formset.model is Tag:
            tags_schedule_embedding(tag_ids=_tag_ids_needing_embedding(formset))

    # --- Import / export of the whole taxonomy ----------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        info = (self.opts.app_label, self.opts.model_name)
        custom = [
            path("export/", self.admin_site.admin_view(self.export_view), name="{}_{}_export".format(*info)),
            path("import/", self.admin_site.admin_view(self.import_view), name="{}_{}_import".format(*info)),
        ]
        # Before the defaults, whose "<path:object_id>/" would swallow these.
        return custom + super().get_urls()

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "can_export_taxonomy": _has_perms(request, "change"),
            "can_import_taxonomy": _has_perms(request, "add", "change"),
            "taxonomy_version": taxonomy_version_current(),
        }
        return super().changelist_view(request, extra_context=extra_context)

    def export_view(self, request: HttpRequest) -> HttpResponse:
        if not _has_perms(request, "change"):
            raise PermissionDenied
        response = JsonResponse(taxonomy_export(), json_dumps_params={"indent": 2, "ensure_ascii": False})
        response["Content-Disposition"] = 'attachment; filename="taxonomy.json"'
        return response

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not _has_perms(request, "add", "change"):
            raise PermissionDenied
        if request.method == "POST":
            form = TaxonomyImportForm(request.POST, request.FILES)
            if form.is_valid():
                try:
                    result = taxonomy_import(data=form.cleaned_data["file"])
                except TaxonomyError as exc:
                    self.message_user(request, f"Nothing was imported: {exc}", messages.ERROR)
                else:
                    self.message_user(
                        request,
                        f"Imported the taxonomy: {result.categories_created} categories created, "
                        f"{result.categories_updated} updated; {result.tags_created} tags created, "
                        f"{result.tags_updated} updated. {len(result.tag_ids_to_embed)} tags are queued for "
                        f"re-embedding by the worker. Ingredient groups: {result.ingredient_groups_created} "
                        f"created, {result.ingredient_groups_updated} updated.",
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(reverse(f"{self.admin_site.name}:taxonomy_category_changelist"))
            else:
                self.message_user(request, "Nothing was imported: please correct the error below.", messages.ERROR)
        else:
            form = TaxonomyImportForm()
        context = {
            **self.admin_site.each_context(request),
            "title": "Import taxonomy JSON",
            "opts": self.opts,
            "form": form,
            "max_megabytes": TAXONOMY_IMPORT_MAX_BYTES // (1024 * 1024),
        }
        return TemplateResponse(request, "admin/taxonomy/category/import.html", context)


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "category", "active", "embedded", "embedding_model", "updated_at")
    list_filter = ("category", "active", "embedding_model")
    list_select_related = ("category",)
    search_fields = ("name", "slug", "synonyms", "description")
    prepopulated_fields = {"slug": ("name",)}
    ordering = ("category__position", "category__name", "name", "id")
    fields = (
        "category",
        "name",
        "slug",
        "description",
        "synonyms",
        "active",
        "excluded_by",
        "required_terms",
        "embedding_model",
        "embedded_at",
        "created_at",
        "updated_at",
    )
    readonly_fields = ("embedding_model", "embedded_at", "created_at", "updated_at")
    filter_horizontal = ("excluded_by",)
    actions = ("activate", "deactivate", "reembed", "merge_tags")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tag]:
        # The vector is never shown; not loading it also keeps a save from writing back a stale one.
        return super().get_queryset(request).defer("embedding")

    @admin.display(boolean=True, description="Embedded?", ordering="embedding_model")
    def embedded(self, obj: Tag) -> bool:
        return bool(obj.embedding_model)

    def save_model(self, request: HttpRequest, obj: Tag, form: ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change or tag_changed_fields_need_embedding(changed_fields=form.changed_data):
            tags_schedule_embedding(tag_ids=[obj.pk])

    @admin.action(description="Activate selected tags", permissions=["change"])
    def activate(self, request: HttpRequest, queryset: QuerySet[Tag]) -> None:
        count = tags_set_active(tag_ids=list(queryset.values_list("id", flat=True)), active=True)
        self.message_user(request, f"Activated {count} tag{'' if count == 1 else 's'}.", messages.SUCCESS)

    @admin.action(description="Deactivate selected tags", permissions=["change"])
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Tag]) -> None:
        count = tags_set_active(tag_ids=list(queryset.values_list("id", flat=True)), active=False)
        self.message_user(request, f"Deactivated {count} tag{'' if count == 1 else 's'}.", messages.SUCCESS)

    @admin.action(description="Re-embed selected tags", permissions=["change"])
    def reembed(self, request: HttpRequest, queryset: QuerySet[Tag]) -> None:
        tag_ids = list(queryset.values_list("id", flat=True))
        tags_schedule_embedding(tag_ids=tag_ids)
        self.message_user(
            request,
            f"Queued {len(tag_ids)} tag{'' if len(tag_ids) == 1 else 's'} for re-embedding. The worker updates "
            "the embeddings in the background; refresh this page in a moment to see them.",
            messages.SUCCESS,
        )

    def has_merge_permission(self, request: HttpRequest) -> bool:
        # A merge changes one tag and deletes the other.
        return self.has_change_permission(request) and self.has_delete_permission(request)

    @admin.action(description="Merge two tags", permissions=["merge"])
    def merge_tags(self, request: HttpRequest, queryset: QuerySet[Tag]) -> HttpResponse | None:
        tags = list(
            queryset.select_related("category").annotate(assignment_count=Count("assignments")).order_by("id")[:3]
        )
        if len(tags) != 2:
            self.message_user(request, "Select exactly two tags to merge.", messages.ERROR)
            return None
        if tags[0].category_id != tags[1].category_id:
            # tag_merge refuses this too; saying so here spares the user a confirmation page.
            self.message_user(
                request,
                f"Only tags of the same category can be merged: “{tags[0]}” and “{tags[1]}” are in "
                f"“{tags[0].category}” and “{tags[1].category}”.",
                messages.ERROR,
            )
            return None
        if request.POST.get("post") == "yes":
            by_id = {str(tag.pk): tag for tag in tags}
            target = by_id.get(request.POST.get("target", ""))
            if target is None:
                self.message_user(request, "Choose which tag to keep.", messages.ERROR)
            else:
                source = tags[1] if target is tags[0] else tags[0]
                source_label = str(source)
                try:
                    merged = tag_merge(source=source, target=target)
                except TaxonomyError as exc:
                    self.message_user(request, f"The tags were not merged: {exc}", messages.ERROR)
                    return None
                self.message_user(
                    request,
                    f"Merged “{source_label}” into “{merged}”: its assignments and synonyms moved over and it "
                    "was deleted. The kept tag is queued for re-embedding.",
                    messages.SUCCESS,
                )
                return None
        # The busier tag is the likelier keeper; the user decides.
        default_target = max(tags, key=lambda tag: (tag.assignment_count, -tag.pk))  # type: ignore[attr-defined]
        context = {
            **self.admin_site.each_context(request),
            "title": "Merge two tags",
            "subtitle": f"Category “{tags[0].category}”",
            "opts": self.opts,
            "tags": tags,
            "default_target_id": default_target.pk,
            "action_name": "merge_tags",
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(request, "admin/taxonomy/tag/merge.html", context)


class IngredientGroupForm(forms.ModelForm):
    class Meta:
        model = IngredientGroup
        fields = ("name", "slug", "description", "terms", "exceptions")
        widgets = {
            "terms": forms.Textarea(attrs={"rows": 4}),
            "exceptions": forms.Textarea(attrs={"rows": 3}),
        }

    def clean_terms(self) -> list[str]:
        return terms_clean(self.cleaned_data["terms"])

    def clean_exceptions(self) -> list[str]:
        return terms_clean(self.cleaned_data["exceptions"])


@admin.register(IngredientGroup)
class IngredientGroupAdmin(admin.ModelAdmin):
    """Ingredient groups ("meat", "dairy") that tag rules refer to; terms and exceptions are comma-separated."""

    form = IngredientGroupForm
    list_display = ("name", "slug", "term_count", "exception_count", "used_by", "updated_at")
    search_fields = ("name", "slug", "terms", "exceptions")
    prepopulated_fields = {"slug": ("name",)}
    ordering = ("name", "id")

    def get_queryset(self, request: HttpRequest) -> QuerySet[IngredientGroup]:
        return super().get_queryset(request).annotate(tag_count=Count("excluded_tags"))

    @admin.display(description="Terms")
    def term_count(self, obj: IngredientGroup) -> int:
        return len(obj.terms)

    @admin.display(description="Exceptions")
    def exception_count(self, obj: IngredientGroup) -> int:
        return len(obj.exceptions)

    @admin.display(description="Excludes tags", ordering="tag_count")
    def used_by(self, obj: IngredientGroup) -> int:
        return int(obj.tag_count)  # type: ignore[attr-defined]


@admin.register(TaxonomyVersion)
class TaxonomyVersionAdmin(admin.ModelAdmin):
    """The taxonomy's history, read-only: versions are recorded by taxonomy.services.versions, never edited."""

    list_display = ("number", "created_at", "changed_by", "change_count", "summary")
    list_select_related = ("changed_by",)
    ordering = ("-number",)
    fields = ("number", "created_at", "changed_by", "change_log")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[TaxonomyVersion]:
        # The snapshot is the whole taxonomy: never needed to list or show a version.
        return super().get_queryset(request).defer("snapshot")

    @admin.display(description="Changes")
    def change_count(self, obj: TaxonomyVersion) -> int:
        return len(obj.changes)

    @admin.display(description="What changed")
    def summary(self, obj: TaxonomyVersion) -> str:
        shown = [_change_text(change) for change in obj.changes[:3]]
        more = len(obj.changes) - len(shown)
        return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")

    @admin.display(description="Change log")
    def change_log(self, obj: TaxonomyVersion) -> str:
        if not obj.changes:
            return "The taxonomy as it was when versions started being recorded."
        return format_html(
            "<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((_change_text(c),) for c in obj.changes))
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _change_text(change: dict[str, Any]) -> str:
    """{"kind": "tag", "action": "changed", "object": "cuisine/thai", "fields": ["synonyms"]} as
    "tag cuisine/thai changed (synonyms)"."""
    text = f"{change['kind'].replace('_', ' ')} {change['object']} {change['action']}"
    return f"{text} ({', '.join(change['fields'])})" if change.get("fields") else text
