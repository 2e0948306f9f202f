"""prompts.gateway.chat_json against a server that refuses a request format: it falls back at once to the
next mode (json_schema → json_object with a schema → json_object → none) instead of retrying, and the
source remembers it (on the row, or in this process for the settings source)."""

from __future__ import annotations

from typing import Any

import pytest

from prompts.gateway import LLMUnavailable
from prompts.models import LLMSource
from prompts.sources import LLMNotConfigured, llm_source_get
from prompts.tests.helpers import SCHEMA, ask, db_source, outcomes
from prompts.tests.openai_server import OpenAIServer

pytestmark = pytest.mark.django_db

LLAMA_CPP_REFUSAL = "Input should be 'text' or 'json_object'"  # what llama.cpp's server answers to json_schema


def formats(server: OpenAIServer) -> list[str | None]:
    """The response_format of each request: its type, "+schema" when it carried one, None when absent."""
    sent = [request.get("response_format") for request in server.requests]
    return [None if f is None else f["type"] + ("+schema" if "schema" in f else "") for f in sent]


def test_a_server_that_refuses_json_schema_gets_one_json_object_request_not_four_retries(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    openai_server.reply_status(500, LLAMA_CPP_REFUSAL).reply_json({"tags": ["italian"]})
    openai_server.reply_status(500, "Scripted: a fifth request is not expected")

    result = ask(llm_source_get())

    assert formats(openai_server) == ["json_schema", "json_object+schema"]
    assert openai_server.requests[1]["response_format"] == {"type": "json_object", "schema": SCHEMA}
    assert outcomes() == ["format_refused", "ok"]
    assert result.mode == "json_object_schema"
    assert result.constrained is True
    assert result.attempts == 2
    assert result.data == {"tags": ["italian"]}


def test_the_settings_source_starts_the_next_call_in_the_mode_that_worked(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    openai_server.reply_status(400, LLAMA_CPP_REFUSAL).reply_json({"tags": []}).reply_json({"tags": []})
    ask(llm_source_get())

    result = ask(llm_source_get())

    assert formats(openai_server) == ["json_schema", "json_object+schema", "json_object+schema"]
    assert result.attempts == 1
    assert llm_source_get().capabilities.json_schema is False


def test_a_db_source_remembers_the_refused_mode_on_its_row(llm_settings: Any, openai_server: OpenAIServer) -> None:
    row = db_source(openai_server)
    openai_server.reply_status(400, "response_format json_schema is not supported by this model")
    openai_server.reply_json({"tags": []}).reply_json({"tags": []})
    ask(llm_source_get(name="openrouter"))

    ask(llm_source_get(name="openrouter"))

    row.refresh_from_db()
    assert (row.supports_json_schema, row.supports_json_object_schema, row.supports_json_object) == (
        False,
        True,
        True,
    )
    assert formats(openai_server) == ["json_schema", "json_object+schema", "json_object+schema"]


def test_it_falls_back_through_every_mode_down_to_a_plain_request(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    row = db_source(openai_server)
    openai_server.reply_status(400, "Unknown response_format type 'json_schema'")
    openai_server.reply_status(400, "Extra inputs are not permitted: response_format.schema")
    openai_server.reply_status(500, "This server cannot use response_format json_object")
    openai_server.reply_json({"tags": ["italian"]})

    result = ask(llm_source_get(name="openrouter"))

    assert formats(openai_server) == ["json_schema", "json_object+schema", "json_object", None]
    assert result.mode == "none"
    assert result.constrained is False
    assert outcomes() == ["format_refused"] * 3 + ["ok"]
    row.refresh_from_db()
    assert (row.supports_json_schema, row.supports_json_object_schema, row.supports_json_object) == (False,) * 3


def test_a_server_fault_that_names_no_format_is_retried_in_the_same_mode(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    openai_server.reply_status(500, "CUDA out of memory").reply_status(503).reply_json({"tags": []})

    result = ask(llm_source_get())

    assert formats(openai_server) == ["json_schema"] * 3
    assert outcomes() == ["server_error", "server_error", "ok"]
    assert result.mode == "json_schema"


def test_a_refused_schema_falls_back_for_this_call_but_the_source_keeps_the_mode(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    row = db_source(openai_server)
    openai_server.reply_status(400, "Invalid schema for response_format 'recipe_tags': 'maxItems' is not permitted")
    openai_server.reply_json({"tags": []})

    result = ask(llm_source_get(name="openrouter"))

    assert result.mode == "json_object_schema"
    row.refresh_from_db()
    assert row.supports_json_schema is True


def test_refused_logprobs_are_dropped_at_once_and_remembered(llm_settings: Any, openai_server: OpenAIServer) -> None:
    row = db_source(openai_server)
    openai_server.reply_status(400, "logprobs are not supported with this model").reply_json({"tags": []})

    result = ask(llm_source_get(name="openrouter"), want_logprobs=True)

    assert [r.get("logprobs") for r in openai_server.requests] == [True, None]
    assert formats(openai_server) == ["json_schema", "json_schema"]
    assert result.mode == "json_schema"
    row.refresh_from_db()
    assert row.supports_logprobs is False


def test_a_refusal_of_a_plain_request_is_a_client_error_not_a_fallback(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    db_source(openai_server, supports_json_schema=False, supports_json_object_schema=False, supports_json_object=False)
    openai_server.reply_status(400, "Invalid schema in messages")

    with pytest.raises(LLMUnavailable) as excinfo:
        ask(llm_source_get(name="openrouter"))

    assert excinfo.value.retryable is False
    assert outcomes() == ["client_error"]


def test_llm_response_format_sets_where_the_settings_source_starts(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    llm_settings.LLM_RESPONSE_FORMAT = "json_object_schema"
    openai_server.reply_json({"tags": []})

    result = ask(llm_source_get())

    assert formats(openai_server) == ["json_object+schema"]
    assert result.mode == "json_object_schema"


def test_llm_supports_json_schema_false_still_means_json_object(llm_settings: Any, openai_server: OpenAIServer) -> None:
    llm_settings.LLM_SUPPORTS_JSON_SCHEMA = False
    openai_server.reply_json({"tags": []})

    result = ask(llm_source_get())

    assert formats(openai_server) == ["json_object"]
    assert result.mode == "json_object"


def test_an_unknown_llm_response_format_is_refused_by_name(llm_settings: Any) -> None:
    llm_settings.LLM_RESPONSE_FORMAT = "xml"

    with pytest.raises(LLMNotConfigured) as excinfo:
        llm_source_get()

    assert "LLM_RESPONSE_FORMAT" in excinfo.value.message
    assert "json_object_schema" in excinfo.value.message
    assert LLMSource.objects.count() == 0
