"""Admin for LLM sources (endpoints only superusers change: they decide where requests and keys go; staff
with the view permission see them) and the LLM call ledger (read-only, with totals and the providers'
error bodies, for staff only)."""

from __future__ import annotations

import os
from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from prompts.endpoints import API_KEY_ENV_PREFIX
from prompts.gateway import llm_source_probe
from prompts.models import LLMCall, LLMSource
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
    list_filter = ("active", "supports_json_schema", "supports_json_object_schema", "supports_logprobs")
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
                "fields": (*CAPABILITY_FIELDS.values(), "capabilities_from_staff", "probed_at", "probe_summary"),
                "description": (
                    "What the endpoint supports. A probe (a few tiny requests) fills them in when the source is "
                    "added or its URL, model or key changes, before its first call if never probed, and from "
                    'the "Probe capabilities" action; a mode the server refuses during a call is turned off. '
                    'Changing one here keeps your values ("Keep these capabilities").'
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
