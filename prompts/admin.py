"""Admin for LLM sources (endpoints only superusers change: they decide where requests and keys go; staff
with the view permission see them), the LLM call ledger (read-only, with totals and the providers'
error bodies, for staff only), and prompts: a version is never changed, editing its templates saves a new
version (with the add permission on prompt versions), activating and rolling back need the change
permission, and any two versions of a prompt can be compared."""

from __future__ import annotations

import os
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.forms import ModelForm
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from prompts.endpoints import API_KEY_ENV_PREFIX
from prompts.gateway import llm_source_probe
from prompts.models import LLMCall, LLMSource, Prompt, PromptActivation, PromptVersion
from prompts.rendering import BUILTIN_PROMPT, TEMPLATE_VARIABLES_BY_PURPOSE, template_problems
from prompts.selectors import prompt_version_diff, prompt_versions_of
from prompts.services import (
    PromptError,
    prompt_version_activate,
    prompt_version_create,
    prompt_version_rollback,
)
from prompts.sources import CAPABILITY_FIELDS, LLMError, llm_source_get

# Rows of the per-day × source totals shown above the call list (newest days first).
TOTALS_ROWS = 60


@admin.register(LLMSource)
class LLMSourceAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "model",
        "base_url",
        "active",
        "api_key_env",
        "key_is_set",
        "max_concurrency",
        "timeout_seconds",
        "price_input_per_1k",
        "price_output_per_1k",
        "capabilities",
        "probed_at",
        "updated_at",
    )
    list_filter = (
        "active",
        "supports_json_schema",
        "supports_json_object_schema",
        "supports_logprobs",
        "supports_batch",
    )
    search_fields = ("name", "model", "base_url")
    ordering = ("name", "id")
    readonly_fields = ("probed_at", "probe_summary", "created_at", "updated_at")
    actions = ("probe_capabilities",)
    fieldsets = (
        (None, {"fields": ("name", "active", "base_url", "model")}),
        (
            "API key",
            {
                "fields": ("api_key_env",),
                "description": (
                    f"Enter the NAME of an environment variable starting with {API_KEY_ENV_PREFIX} (e.g. "
                    f"{API_KEY_ENV_PREFIX}OPENAI), not the key: the key stays in the environment of the web and "
                    "worker processes and is never stored here."
                ),
            },
        ),
        ("Limits", {"fields": ("timeout_seconds", "max_concurrency")}),
        ("Prices (USD per 1,000 tokens)", {"fields": ("price_input_per_1k", "price_output_per_1k")}),
        (
            "Capabilities",
            {
                "fields": (
                    *CAPABILITY_FIELDS.values(),
                    "capabilities_from_staff",
                    "supports_batch",
                    "probed_at",
                    "probe_summary",
                ),
                "description": (
                    "What the endpoint supports. A probe (a few tiny requests) fills them in when the source is "
                    "added or its URL, model or key changes, before its first call if never probed, and from "
                    'the "Probe capabilities" action; a mode the server refuses during a call is turned off. '
                    'Changing one here keeps your values ("Keep these capabilities"). The Batch API is only ever set '
                    "here."
                ),
            },
        ),
        ("Scores", {"fields": ("confidence_calibration",)}),
        (None, {"fields": ("created_at", "updated_at")}),
    )

    # A change to any of these means another endpoint: what the old one supported says nothing about it.
    PROBE_WHEN_CHANGED = frozenset({"base_url", "model", "api_key_env"})

    # Where requests go and which key they carry is for superusers only, whatever model permissions say.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser and super().has_delete_permission(request, obj)

    @admin.display(description="Capabilities")
    def capabilities(self, obj: LLMSource) -> str:
        labels = {"json_schema": "json_schema", "json_object_schema": "json_object+schema"}
        names = [labels.get(name, name) for name, field in CAPABILITY_FIELDS.items() if getattr(obj, field)]
        return ", ".join(names) or "none (plain requests)"

    def save_model(self, request: HttpRequest, obj: LLMSource, form: ModelForm[LLMSource], change: bool) -> None:
        changed = set(form.changed_data)
        if changed & set(CAPABILITY_FIELDS.values()) and "capabilities_from_staff" not in changed:
            obj.capabilities_from_staff = True
        super().save_model(request, obj, form, change)
        if obj.active and (not change or changed & self.PROBE_WHEN_CHANGED):
            # After commit: the probe's call records must not roll back with the form, and it takes seconds.
            transaction.on_commit(lambda: self._probe(request, obj))

    @admin.action(description="Probe capabilities", permissions=["change"])
    def probe_capabilities(self, request: HttpRequest, queryset: QuerySet[LLMSource]) -> None:
        for obj in queryset.order_by("name", "id"):
            self._probe(request, obj)

    def _probe(self, request: HttpRequest, obj: LLMSource) -> None:
        try:
            source = llm_source_get(name=obj.name)
        except LLMError as exc:
            self.message_user(request, f"Probe of {obj.name}: not probed: {exc.message}", messages.WARNING)
            return
        probe = llm_source_probe(source=source)
        level = messages.INFO if probe.finished else messages.WARNING
        self.message_user(request, f"Probe of {obj.name}: {probe.summary}", level)

    @admin.display(description="Key set here", boolean=True)
    def key_is_set(self, obj: LLMSource) -> bool | None:
        """Whether this (web) process sees the variable; workers read their own environment."""
        if not obj.api_key_env:
            return None
        return bool(os.environ.get(obj.api_key_env))


@admin.register(LLMCall)
class LLMCallAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "source",
        "model",
        "prompt_version",
        "run_id",
        "attempt",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "cost",
        "outcome",
        "latency_ms",
    )
    list_filter = ("source", "outcome", "model")
    search_fields = ("prompt_version", "model", "error")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    readonly_fields = tuple(field.name for field in LLMCall._meta.fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the ledger is what the spending cap sums

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        # Only a rendered list has a filtered queryset (an invalid filter redirects instead).
        if not isinstance(response, TemplateResponse) or response.context_data is None:
            return response
        changelist = response.context_data.get("cl")
        if changelist is None:
            return response
        calls = changelist.queryset.order_by()
        sums = {
            "calls": Count("id"),
            "input_tokens": Sum("input_tokens"),
            "output_tokens": Sum("output_tokens"),
            "cached_tokens": Sum("cached_tokens"),
            "cost": Sum("cost"),
        }
        rows = list(
            calls.annotate(day=TruncDate("created_at"))
            .values("day", "source")
            .annotate(**sums)
            .order_by("-day", "source")[: TOTALS_ROWS + 1]
        )
        response.context_data.update(
            llm_totals=rows[:TOTALS_ROWS],
            llm_totals_truncated=len(rows) > TOTALS_ROWS,
            llm_grand_total=calls.aggregate(**sums),
        )
        return response


# --- Prompts --------------------------------------------------------------------------------------

ADD_VERSION, ACTIVATE_VERSION = "prompts.add_promptversion", "prompts.change_promptversion"
TEMPLATE_HELP = "Variables ($name; $$ for a dollar sign), by the prompt's purpose: " + " ".join(
    f"{purpose.capitalize()}: " + "; ".join(f"${name}: {meaning}" for name, meaning in variables.items()) + "."
    for purpose, variables in TEMPLATE_VARIABLES_BY_PURPOSE.items()
)


def _template_errors(form: forms.BaseForm, system_template: str, user_template: str, purpose: str) -> None:
    problems_by_field = template_problems(system_template=system_template, user_template=user_template, purpose=purpose)
    for field_name, problems in problems_by_field.items():
        for problem in problems:
            form.add_error(field_name, problem)


def _user(request: HttpRequest) -> Any:
    return request.user if request.user.is_authenticated else None


class PromptAddForm(forms.ModelForm):  # type: ignore[type-arg]
    """A new prompt with its first version (active from the start)."""

    system_template = forms.CharField(widget=forms.Textarea(attrs={"rows": 12, "cols": 100}), help_text=TEMPLATE_HELP)
    user_template = forms.CharField(widget=forms.Textarea(attrs={"rows": 12, "cols": 100}), help_text=TEMPLATE_HELP)
    notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 2, "cols": 100}), required=False)

    class Meta:
        model = Prompt
        fields = ("name", "purpose", "description")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "system_template" in data and "user_template" in data and "purpose" in data:
            _template_errors(self, data["system_template"], data["user_template"], data["purpose"])
        return data


class PromptVersionInline(admin.TabularInline):  # type: ignore[type-arg]
    model = PromptVersion
    fk_name = "prompt"
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("number", "is_active", "notes", "author", "parent", "created_at")
    readonly_fields = fields
    ordering = ("-number", "-id")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PromptActivationInline(admin.TabularInline):  # type: ignore[type-arg]
    model = PromptActivation
    extra = 0
    can_delete = False
    fields = ("created_at", "version", "previous", "is_rollback", "actor")
    readonly_fields = fields
    ordering = ("-created_at", "-id")
    verbose_name_plural = "Activations"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "purpose", "active_version", "created_at")
    list_filter = ("purpose",)
    search_fields = ("name", "description")
    ordering = ("name", "id")
    inlines = (PromptVersionInline, PromptActivationInline)
    actions = ("roll_back",)

    def get_inlines(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.inlines if obj is not None else ()  # a new prompt has no versions yet

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = PromptAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ("name", "purpose", "description", "system_template", "user_template", "notes")
        return ("name", "purpose", "description", "created_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # Runs and calls record a version by its prompt's name: a prompt keeps the name it was made with.
        return () if obj is None else ("name", "purpose", "created_at")

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"system_template": BUILTIN_PROMPT.system_template, "user_template": BUILTIN_PROMPT.user_template}

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and request.user.has_perm(ADD_VERSION)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @transaction.atomic
    def save_model(self, request: HttpRequest, obj: Prompt, form: ModelForm[Prompt], change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            prompt_version_create(
                prompt=obj,
                system_template=form.cleaned_data["system_template"],
                user_template=form.cleaned_data["user_template"],
                notes=form.cleaned_data["notes"],
                author=_user(request),
            )

    @admin.display(description="Active version")
    def active_version(self, obj: Prompt) -> str:
        active = obj.versions.filter(is_active=True).first()
        return f"v{active.number}" if active else "none"

    def has_activate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(ACTIVATE_VERSION)

    @admin.action(description="Roll back to the version active before the last activation", permissions=["activate"])
    def roll_back(self, request: HttpRequest, queryset: QuerySet[Prompt]) -> None:
        for prompt in queryset.order_by("name", "id"):
            try:
                activation = prompt_version_rollback(prompt=prompt, actor=_user(request))
            except PromptError as exc:
                self.message_user(request, exc.message, messages.ERROR)
                continue
            self.message_user(request, f"{activation.version.label} is active again.")


class PromptVersionForm(forms.ModelForm):  # type: ignore[type-arg]
    """The templates of a version, to edit into a new one: saving never changes the version shown."""

    new_notes = forms.CharField(
        label="Notes for the new version",
        widget=forms.Textarea(attrs={"rows": 2, "cols": 100}),
        required=False,
        help_text="What changed and why.",
    )

    class Meta:
        model = PromptVersion
        fields = ("system_template", "user_template")
        widgets = {
            "system_template": forms.Textarea(attrs={"rows": 12, "cols": 100}),
            "user_template": forms.Textarea(attrs={"rows": 12, "cols": 100}),
        }
        help_texts = {"system_template": TEMPLATE_HELP, "user_template": TEMPLATE_HELP}

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "system_template" in data and "user_template" in data:
            _template_errors(self, data["system_template"], data["user_template"], self.instance.prompt.purpose)
        return data


@admin.register(PromptVersion)
class PromptVersionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """A version's page shows its templates to edit: saving them makes the next version (its parent this
    one) and opens it; the version shown stays as it was."""

    form = PromptVersionForm
    change_form_template = "admin/prompts/promptversion/change_form.html"
    list_display = ("__str__", "prompt", "number", "is_active", "author", "created_at", "diff_link")
    list_filter = ("prompt", "is_active")
    search_fields = ("prompt__name", "notes")
    ordering = ("prompt__name", "-number", "-id")
    list_select_related = ("prompt", "author", "parent")
    actions = ("activate",)
    fieldsets = (
        (None, {"fields": ("prompt", "number", "is_active", "parent", "author", "created_at", "notes")}),
        (
            "Templates (saving an edit makes a new version)",
            {"fields": ("system_template", "user_template", "new_notes")},
        ),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fixed = ("prompt", "number", "is_active", "parent", "author", "created_at", "notes")
        return fixed if self.has_change_permission(request, obj) else (*fixed, "system_template", "user_template")

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if self.has_change_permission(request, obj):
            return self.fieldsets
        return (self.fieldsets[0], ("Templates", {"fields": ("system_template", "user_template")}))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # versions are made by editing one (or with a new prompt)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # "Changing" a version saves a new one: the permission to add versions.
        return request.user.is_active and request.user.is_staff and request.user.has_perm(ADD_VERSION)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_activate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(ACTIVATE_VERSION)

    def save_model(
        self, request: HttpRequest, obj: PromptVersion, form: ModelForm[PromptVersion], change: bool
    ) -> None:
        edited = PromptVersion.objects.get(pk=obj.pk)
        if not {"system_template", "user_template"} & set(form.changed_data):
            obj._saved_as = None  # type: ignore[attr-defined]
            return
        obj._saved_as = prompt_version_create(  # type: ignore[attr-defined]
            prompt=edited.prompt,
            system_template=form.cleaned_data["system_template"],
            user_template=form.cleaned_data["user_template"],
            notes=form.cleaned_data["new_notes"],
            author=_user(request),
            parent=edited,
        )

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        pass  # nothing related is edited here, and the version shown is never saved

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        saved_as = getattr(obj, "_saved_as", None)
        return super().log_addition(request, saved_as, message) if saved_as is not None else None

    def response_change(self, request: HttpRequest, obj: PromptVersion) -> HttpResponse:
        saved_as = getattr(obj, "_saved_as", None)
        if saved_as is None:
            self.message_user(request, "The templates did not change: no new version saved.", messages.WARNING)
            return HttpResponseRedirect(reverse("admin:prompts_promptversion_change", args=[obj.pk]))
        self.message_user(request, f"Saved as {saved_as.label} (not active: activate it when ready).")
        return HttpResponseRedirect(reverse("admin:prompts_promptversion_change", args=[saved_as.pk]))

    @admin.display(description="Diff")
    def diff_link(self, obj: PromptVersion) -> str:
        if obj.parent_id is None:
            return "—"
        url = reverse("admin:prompts_promptversion_diff") + f"?old={obj.parent_id}&new={obj.pk}"
        return format_html('<a href="{}">against v{}</a>', url, obj.parent.number if obj.parent else "")

    @admin.action(description="Activate the selected version", permissions=["activate"])
    def activate(self, request: HttpRequest, queryset: QuerySet[PromptVersion]) -> None:
        chosen = list(queryset.select_related("prompt")[:2])
        if len(chosen) != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.ERROR)
            return
        self._activate(request, chosen[0])

    def _activate(self, request: HttpRequest, version: PromptVersion) -> None:
        try:
            prompt_version_activate(version=version, actor=_user(request))
        except PromptError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        self.message_user(request, f"{version.label} is now active.")

    def get_urls(self) -> list[URLPattern]:
        info = (self.opts.app_label, self.opts.model_name)
        custom = [
            path("diff/", self.admin_site.admin_view(self.diff_view), name="{}_{}_diff".format(*info)),
            path(
                "<int:object_id>/activate/",
                self.admin_site.admin_view(require_POST(self.activate_view)),
                name="{}_{}_activate".format(*info),
            ),
        ]
        # Before the defaults, whose "<path:object_id>/" would swallow them.
        return custom + super().get_urls()

    def activate_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if not self.has_activate_permission(request):
            raise PermissionDenied
        version = get_object_or_404(PromptVersion.objects.select_related("prompt"), pk=object_id)
        self._activate(request, version)
        return HttpResponseRedirect(reverse("admin:prompts_promptversion_change", args=[version.pk]))

    def diff_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            new = PromptVersion.objects.select_related("prompt").get(pk=int(request.GET.get("new", "")))
            old_id = int(request.GET.get("old") or new.parent_id or new.pk)
            old = PromptVersion.objects.select_related("prompt").get(pk=old_id, prompt=new.prompt)
        except (ValueError, PromptVersion.DoesNotExist) as exc:
            raise Http404("Choose two versions of the same prompt.") from exc
        diffs = prompt_version_diff(old=old, new=new)
        context = {
            **self.admin_site.each_context(request),
            "title": f"{old.label} → {new.label}",
            "opts": self.opts,
            "old": old,
            "new": new,
            "versions": prompt_versions_of(prompt=new.prompt),
            "diffs": [
                ("System template", diffs["system_template"]),
                ("User template", diffs["user_template"]),
            ],
        }
        return TemplateResponse(request, "admin/prompts/promptversion/diff.html", context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "can_activate": self.has_activate_permission(request),
            "diff_url": reverse("admin:prompts_promptversion_diff"),
            # The page lives in feedback (it reads runs, evaluations and reviews): named, never imported.
            "numbers_url": reverse("prompt_versions:detail", kwargs={"version_id": int(object_id)})
            if object_id.isdigit()
            else None,
        }
        return super().change_view(request, object_id, form_url, extra_context=extra_context)
