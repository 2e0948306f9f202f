"""Admin for LLM sources (staff-editable endpoints) and the LLM call ledger (read-only, with totals)."""

from __future__ import annotations

import os
from typing import Any

from django.contrib import admin
from django.db.models import Count, Sum
from django.db.models.functions import TruncDate
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from prompts.models import LLMCall, LLMSource

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
        "supports_json_schema",
        "updated_at",
    )
    list_filter = ("active", "supports_json_schema")
    search_fields = ("name", "model", "base_url")
    ordering = ("name", "id")
    readonly_fields = ("created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "active", "base_url", "model")}),
        (
            "API key",
            {
                "fields": ("api_key_env",),
                "description": (
                    "Enter the NAME of an environment variable (e.g. OPENAI_API_KEY), not the key: the key "
                    "stays in the environment of the web and worker processes and is never stored here."
                ),
            },
        ),
        ("Limits", {"fields": ("timeout_seconds", "max_concurrency")}),
        ("Prices (USD per 1,000 tokens)", {"fields": ("price_input_per_1k", "price_output_per_1k")}),
        ("Capabilities", {"fields": ("supports_json_schema",)}),
        (None, {"fields": ("created_at", "updated_at")}),
    )

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
