"""Start-up checks of the LLM settings (Django system checks; the web and worker processes run them before
serving, see autotagger.checks)."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core import checks
from django.db import DatabaseError

from prompts.endpoints import DEFAULT_SOURCE_KEY_ENV, base_url_problem
from prompts.models import LLMSource


def _cap() -> float:
    return float(settings.LLM_DAILY_SPEND_CAP or 0.0)


def llm_settings_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The default source's settings: a cap over it priced at 0 can never trigger (every call would count
    as free); its base URL must pass prompts.endpoints; a left-over LLM_API_KEY is named (no longer read)."""
    errors: list[checks.CheckMessage] = []
    default_source = bool(settings.LLM_BASE_URL and settings.LLM_MODEL)
    unpriced = float(settings.LLM_PRICE_INPUT_PER_1K) <= 0 and float(settings.LLM_PRICE_OUTPUT_PER_1K) <= 0
    if _cap() > 0 and default_source and unpriced:
        errors.append(
            checks.Error(
                "LLM_DAILY_SPEND_CAP is set but the default LLM source has no prices: its calls would count "
                "as free and never reach the cap.",
                hint="Set LLM_PRICE_INPUT_PER_1K and LLM_PRICE_OUTPUT_PER_1K (USD per 1,000 tokens), or unset "
                "LLM_DAILY_SPEND_CAP.",
                id="prompts.E001",
            )
        )
    if os.environ.get("LLM_API_KEY") and not settings.LLM_API_KEY:
        errors.append(
            checks.Warning(
                "LLM_API_KEY is set but no longer read: the default LLM source would call without a key.",
                hint=f"Rename it {DEFAULT_SOURCE_KEY_ENV} (every LLM key comes from an AUTOTAGGER_LLM_KEY_... "
                "variable).",
                id="prompts.W001",
            )
        )
    if settings.LLM_BASE_URL:
        problem = base_url_problem(str(settings.LLM_BASE_URL))
        if problem:
            errors.append(checks.Error(f"LLM_BASE_URL is refused: {problem}", hint="Use https.", id="prompts.E003"))
    return errors


def llm_sources_priced_check(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """The same for the sources staff added, when the checks may read the database (migrate, check
    --database default; the gateway refuses an unpriced source under a cap at call time too)."""
    if not databases or _cap() <= 0:
        return []
    try:
        names = list(
            LLMSource.objects.filter(active=True, price_input_per_1k__lte=0, price_output_per_1k__lte=0)
            .order_by("name")
            .values_list("name", flat=True)
        )
    except DatabaseError:
        return []  # before the first migration: nothing to check yet
    if not names:
        return []
    return [
        checks.Error(
            f"LLM_DAILY_SPEND_CAP is set but these active LLM sources have no prices: {', '.join(names)}.",
            hint="Set their prices in admin (LLM sources), deactivate them, or unset LLM_DAILY_SPEND_CAP.",
            id="prompts.E002",
        )
    ]
