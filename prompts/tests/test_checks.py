"""prompts.checks: start-up refuses a spending cap that cannot trigger (a source without prices) and a default
source that would send its key in clear, and names a key variable that is no longer read."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from autotagger.checks import checks_enforce
from prompts.checks import llm_settings_check, llm_sources_priced_check
from prompts.tests.helpers import db_source
from prompts.tests.openai_server import OpenAIServer


def test_the_start_up_check_refuses_a_cap_over_the_default_source_without_prices(settings: Any) -> None:
    settings.LLM_BASE_URL = "https://api.example.com/v1"
    settings.LLM_MODEL = "m"
    settings.LLM_DAILY_SPEND_CAP = 5.0
    settings.LLM_PRICE_INPUT_PER_1K = 0.0
    settings.LLM_PRICE_OUTPUT_PER_1K = 0.0

    errors = llm_settings_check()

    assert [error.id for error in errors] == ["prompts.E001"]
    assert errors[0].level == checks.ERROR
    with pytest.raises(ImproperlyConfigured, match=r"prompts\.E001"):
        checks_enforce()


def test_the_start_up_check_passes_a_cap_with_prices_or_no_cap(settings: Any) -> None:
    settings.LLM_BASE_URL = "https://api.example.com/v1"
    settings.LLM_MODEL = "m"
    settings.LLM_PRICE_INPUT_PER_1K = 0.0
    settings.LLM_PRICE_OUTPUT_PER_1K = 0.0
    settings.LLM_DAILY_SPEND_CAP = 0.0
    uncapped = llm_settings_check()
    settings.LLM_DAILY_SPEND_CAP = 5.0
    settings.LLM_PRICE_OUTPUT_PER_1K = 0.6

    priced = llm_settings_check()

    assert (uncapped, priced) == ([], [])


def test_the_start_up_check_refuses_a_default_source_over_plain_http_to_a_host_not_allowed(settings: Any) -> None:
    settings.LLM_BASE_URL = "http://evil.example/v1"
    settings.LLM_MODEL = "m"
    settings.LLM_ALLOWED_HOSTS = []

    assert [error.id for error in llm_settings_check()] == ["prompts.E003"]


def test_a_left_over_llm_api_key_is_named_at_start_up(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_API_KEY", "sk-old")
    settings.LLM_API_KEY = ""

    assert [warning.id for warning in llm_settings_check()] == ["prompts.W001"]


@pytest.mark.django_db
def test_the_database_check_names_the_active_sources_without_prices(settings: Any, openai_server: OpenAIServer) -> None:
    settings.LLM_DAILY_SPEND_CAP = 5.0
    db_source(openai_server, name="free")
    db_source(openai_server, name="retired", active=False)
    db_source(openai_server, name="priced", price_output_per_1k="0.6")

    errors = llm_sources_priced_check(databases=["default"])

    assert [error.id for error in errors] == ["prompts.E002"]
    assert "free" in errors[0].msg
    assert "retired" not in errors[0].msg
    assert "priced" not in errors[0].msg
