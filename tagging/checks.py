"""Start-up checks of the tagging app's settings (Django system checks; the web and worker processes run
them before serving, see autotagger.checks)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from prompts.gateway import llm_call_budget_seconds
from tagging.services.runs import RUN_SOFT_TIME_LIMIT

# What a run does besides its LLM call: embedding the recipe, the similarity shortlist, storing the result.
RUN_OVERHEAD_SECONDS = 30


def run_time_limits_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The run task must outlast the longest LLM call, or a slow provider kills runs mid-call."""
    budget = llm_call_budget_seconds()
    if budget + RUN_OVERHEAD_SECONDS <= RUN_SOFT_TIME_LIMIT:
        return []
    return [
        checks.Error(
            f"An LLM call may take up to {budget:g}s ((LLM_MAX_RETRIES + 1) x (LLM_SLOT_WAIT_SECONDS + "
            f"LLM_TIMEOUT_SECONDS) + LLM_MAX_RETRIES x LLM_RETRY_MAX_SECONDS); with {RUN_OVERHEAD_SECONDS}s for "
            f"the rest of a run it does not fit the run task's soft time limit of {RUN_SOFT_TIME_LIMIT}s.",
            hint="Lower LLM_TIMEOUT_SECONDS, LLM_MAX_RETRIES or LLM_SLOT_WAIT_SECONDS, or raise "
            "TAGGING_RUN_SOFT_TIME_LIMIT_SECONDS.",
            id="tagging.E001",
        )
    ]


def lost_runs_settings_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The sweep and job fan-out need positive bounds: 0 attempts would fail every run at its first claim."""
    names = ("TAGGING_RUN_MAX_ATTEMPTS", "TAGGING_RUN_STALE_SECONDS", "TAGGING_JOB_CHUNK_SIZE")
    return [
        checks.Error(
            f"{name} is {getattr(settings, name)!r}; it must be a whole number of at least 1.", id="tagging.E002"
        )
        for name in names
        if not isinstance(getattr(settings, name), int) or getattr(settings, name) < 1
    ]
