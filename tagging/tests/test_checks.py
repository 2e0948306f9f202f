"""tagging.checks: a tagging run on the worker must outlast the longest LLM call, or nothing starts."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from autotagger.checks import checks_enforce
from prompts.gateway import llm_call_budget_seconds
from tagging.checks import RUN_OVERHEAD_SECONDS, lost_runs_settings_check, run_time_limits_check
from tagging.services.runs import RUN_CLAIM, RUN_SOFT_TIME_LIMIT, RUN_TIME_LIMIT
from tagging.tasks import run_execute_task


def test_the_default_llm_settings_fit_a_call_in_a_tagging_run() -> None:
    assert llm_call_budget_seconds() + RUN_OVERHEAD_SECONDS <= RUN_SOFT_TIME_LIMIT
    assert run_time_limits_check() == []


def test_it_refuses_llm_settings_whose_call_would_outlast_the_run_task(settings: Any) -> None:
    settings.LLM_TIMEOUT_SECONDS = 600

    errors = run_time_limits_check()

    assert [error.id for error in errors] == ["tagging.E001"]
    assert f"{llm_call_budget_seconds():g}s" in errors[0].msg
    assert f"soft time limit of {RUN_SOFT_TIME_LIMIT}s" in errors[0].msg


def test_a_web_or_worker_process_refuses_to_start_on_such_settings(settings: Any) -> None:
    settings.LLM_MAX_RETRIES = 50

    with pytest.raises(ImproperlyConfigured, match=r"tagging\.E001"):
        checks_enforce()


def test_the_run_task_and_the_claim_on_a_started_run_share_one_time_limit() -> None:
    assert run_execute_task.soft_time_limit == RUN_SOFT_TIME_LIMIT
    assert run_execute_task.time_limit == RUN_TIME_LIMIT
    assert RUN_CLAIM.total_seconds() == RUN_TIME_LIMIT > RUN_SOFT_TIME_LIMIT


def test_the_default_lost_run_settings_pass() -> None:
    assert lost_runs_settings_check() == []


@pytest.mark.parametrize("name", ["TAGGING_RUN_MAX_ATTEMPTS", "TAGGING_RUN_STALE_SECONDS", "TAGGING_JOB_CHUNK_SIZE"])
def test_it_refuses_a_lost_run_bound_under_one(settings: Any, name: str) -> None:
    setattr(settings, name, 0)

    errors = lost_runs_settings_check()

    assert [error.id for error in errors] == ["tagging.E002"]
    assert name in errors[0].msg
    with pytest.raises(ImproperlyConfigured, match=r"tagging\.E002"):
        checks_enforce()
