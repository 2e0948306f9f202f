"""prompts.sources: which model source a call uses, from settings or admin, and what is missing."""

from __future__ import annotations

from typing import Any

import pytest

from prompts.models import LLMCall
from prompts.sources import LLMNotConfigured, llm_source_get, llm_sources_available
from prompts.tests.helpers import ask, db_source
from prompts.tests.openai_server import OpenAIServer

pytestmark = pytest.mark.django_db


# --- Sources --------------------------------------------------------------------------------------


def test_not_configured_names_llm_base_url_when_it_is_unset(settings: Any) -> None:
    settings.LLM_BASE_URL = ""
    settings.LLM_MODEL = "gpt-4o-mini"

    with pytest.raises(LLMNotConfigured) as excinfo:
        llm_source_get()

    assert excinfo.value.code == "llm_not_configured"
    assert "LLM_BASE_URL" in excinfo.value.message
    assert "LLM_MODEL" not in excinfo.value.message
    assert excinfo.value.details["missing_settings"] == ["LLM_BASE_URL"]


def test_not_configured_names_both_settings_when_both_are_unset(settings: Any) -> None:
    settings.LLM_BASE_URL = ""
    settings.LLM_MODEL = ""

    with pytest.raises(LLMNotConfigured) as excinfo:
        llm_source_get(name="default")

    assert "LLM_BASE_URL and LLM_MODEL" in excinfo.value.message
    assert llm_sources_available() == []


def test_a_db_source_whose_key_variable_is_missing_names_the_variable(
    llm_settings: Any, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AUTOTAGGER_LLM_KEY_TEST_OPENROUTER", raising=False)
    db_source(openai_server, api_key_env="AUTOTAGGER_LLM_KEY_TEST_OPENROUTER")

    with pytest.raises(LLMNotConfigured) as excinfo:
        llm_source_get(name="openrouter")

    assert "AUTOTAGGER_LLM_KEY_TEST_OPENROUTER" in excinfo.value.message
    assert excinfo.value.details["missing_env"] == "AUTOTAGGER_LLM_KEY_TEST_OPENROUTER"


def test_a_db_source_sends_the_key_from_the_variable_it_names(
    llm_settings: Any, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOTAGGER_LLM_KEY_TEST_OPENROUTER", "sk-from-env")
    db_source(openai_server, api_key_env="AUTOTAGGER_LLM_KEY_TEST_OPENROUTER", timeout_seconds=12, max_concurrency=2)
    openai_server.reply_json({"tags": []})

    source = llm_source_get(name="openrouter")
    ask(source)

    assert (source.api_key, source.timeout_seconds, source.max_concurrency) == ("sk-from-env", 12.0, 2)
    assert "sk-from-env" not in repr(source)
    assert openai_server.request_headers[0]["authorization"] == "Bearer sk-from-env"
    assert LLMCall.objects.get().source == "openrouter"


def test_an_unknown_source_name_is_refused_without_naming_the_others(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    db_source(openai_server, name="openrouter")
    db_source(openai_server, name="retired", active=False)

    with pytest.raises(LLMNotConfigured) as excinfo:
        llm_source_get(name="antropic")

    assert excinfo.value.message == "There is no LLM source named 'antropic'."
    assert excinfo.value.details == {"source": "antropic"}


def test_an_inactive_db_source_is_not_available(llm_settings: Any, openai_server: OpenAIServer) -> None:
    db_source(openai_server, name="retired", active=False)

    with pytest.raises(LLMNotConfigured) as excinfo:
        llm_source_get(name="retired")

    assert excinfo.value.message == "The LLM source 'retired' is inactive."
    assert "default" not in str(excinfo.value.details)
    assert llm_sources_available() == ["default"]


def test_a_db_source_named_default_wins_over_the_settings(llm_settings: Any, openai_server: OpenAIServer) -> None:
    db_source(openai_server, name="default", model="db-default-model", price_input_per_1k="0.25")
    openai_server.reply_json({"tags": []})

    source = llm_source_get()
    ask(source)

    assert (source.model, source.price_input_per_1k, source.api_key) == ("db-default-model", 0.25, "")
    assert openai_server.requests[0]["model"] == "db-default-model"
    assert llm_sources_available() == ["default"]


def test_no_name_means_the_source_named_by_llm_default_source(llm_settings: Any, openai_server: OpenAIServer) -> None:
    db_source(openai_server, name="openrouter")
    llm_settings.LLM_DEFAULT_SOURCE = "openrouter"

    assert llm_source_get().name == "openrouter"
