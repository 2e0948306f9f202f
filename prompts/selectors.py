"""Reads of the LLM call ledger and of prompt versions."""

from __future__ import annotations

import difflib
from collections.abc import Collection
from typing import TypedDict

from django.db.models import Case, Count, QuerySet, Sum, When

from prompts.judging import BUILTIN_JUDGE_PROMPT
from prompts.models import (
    DEFAULT_JUDGING_PROMPT,
    DEFAULT_TAGGING_PROMPT,
    HYBRID_TAGGING_PROMPT,
    LLMCall,
    Prompt,
    PromptPurpose,
    PromptVersion,
)
from prompts.rendering import BUILTIN_HYBRID_PROMPT, BUILTIN_PROMPT, PromptTemplates


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


def prompt_version_active(*, purpose: str = PromptPurpose.TAGGING, name: str | None = None) -> PromptTemplates:
    """The templates to render for `purpose` now: the active version of the prompt `name` (by default the
    purpose's default prompt, DEFAULT_TAGGING_PROMPT or DEFAULT_JUDGING_PROMPT; HYBRID_TAGGING_PROMPT for the
    hybrid strategy), or that prompt's built-in one while the database has none (a database emptied since its
    migrations, as a transactional test leaves it)."""
    defaults = {PromptPurpose.TAGGING: DEFAULT_TAGGING_PROMPT, PromptPurpose.JUDGING: DEFAULT_JUDGING_PROMPT}
    builtins = {
        DEFAULT_TAGGING_PROMPT: BUILTIN_PROMPT,
        HYBRID_TAGGING_PROMPT: BUILTIN_HYBRID_PROMPT,
        DEFAULT_JUDGING_PROMPT: BUILTIN_JUDGE_PROMPT,
    }
    if purpose not in defaults:
        raise ValueError(f"No default prompt for {purpose!r}")
    name = name or defaults[PromptPurpose(purpose)]
    if name not in builtins:
        raise ValueError(f"No built-in prompt named {name!r}")
    version = (
        PromptVersion.objects.select_related("prompt")
        .filter(prompt__name=name, prompt__purpose=purpose, is_active=True)
        .first()
    )
    if version is None:
        return builtins[name]
    return PromptTemplates(
        label=version.label,
        system_template=version.system_template,
        user_template=version.user_template,
        version_id=version.pk,
    )


def prompt_versions_of(*, prompt: Prompt) -> list[PromptVersion]:
    return list(PromptVersion.objects.filter(prompt=prompt).select_related("author").order_by("-number", "-id"))


def prompt_version_diff(*, old: PromptVersion, new: PromptVersion) -> dict[str, list[str]]:
    """Unified diffs of the two versions' templates, per template ("system_template", "user_template"): the
    lines, without trailing newlines; an empty list where that template did not change."""
    diffs: dict[str, list[str]] = {}
    for field_name in ("system_template", "user_template"):
        diffs[field_name] = [
            line.rstrip("\n")
            for line in difflib.unified_diff(
                getattr(old, field_name).splitlines(),
                getattr(new, field_name).splitlines(),
                fromfile=old.label,
                tofile=new.label,
                lineterm="",
            )
        ]
    return diffs


def prompt_versions_for_tagging() -> QuerySet[PromptVersion]:
    """Every version of every tagging prompt, the default prompt's first, newest first."""
    return (
        PromptVersion.objects.select_related("prompt")
        .filter(prompt__purpose=PromptPurpose.TAGGING)
        .annotate(is_default=Case(When(prompt__name=DEFAULT_TAGGING_PROMPT, then=0), default=1))
        .order_by("is_default", "prompt__name", "-number", "-id")
    )


def prompt_versions_active_ids(*, names: Collection[str]) -> dict[str, int]:
    """The active version's id of each tagging prompt in `names` that has one stored, in one query."""
    return dict(
        PromptVersion.objects.filter(
            prompt__name__in=list(names), prompt__purpose=PromptPurpose.TAGGING, is_active=True
        )
        .order_by("prompt__name", "id")
        .values_list("prompt__name", "id")
    )


def prompt_version_active_row(*, name: str = DEFAULT_TAGGING_PROMPT) -> PromptVersion | None:
    """The active version of the tagging prompt `name` (None while the database has none)."""
    return (
        PromptVersion.objects.select_related("prompt")
        .filter(prompt__name=name, prompt__purpose=PromptPurpose.TAGGING, is_active=True)
        .first()
    )
