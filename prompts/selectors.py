"""Reads of the LLM call ledger."""

from __future__ import annotations

from typing import TypedDict

from django.db.models import Count, Sum

from prompts.models import LLMCall


class LLMUsage(TypedDict):
    llm_calls: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost: float


def llm_calls_of_run(*, run_id: int) -> list[LLMCall]:
    return list(LLMCall.objects.filter(run_id=run_id).order_by("created_at", "id"))


def llm_usage_of_run(*, run_id: int) -> LLMUsage:
    """What every attempt made for the run used and cost (a retried call pays for each try)."""
    spent = LLMCall.objects.filter(run_id=run_id).aggregate(
        calls=Count("id"),
        input=Sum("input_tokens"),
        output=Sum("output_tokens"),
        cached=Sum("cached_tokens"),
        cost=Sum("cost"),
    )
    return {
        "llm_calls": spent["calls"] or 0,
        "input_tokens": spent["input"] or 0,
        "output_tokens": spent["output"] or 0,
        "cached_tokens": spent["cached"] or 0,
        "cost": round(spent["cost"] or 0.0, 6),
    }
