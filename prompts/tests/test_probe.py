"""prompts.gateway.llm_source_probe against scripted servers: what it asks, what it concludes, what it
records (the source's row or this process, and the call ledger), and that it stays bounded."""

from __future__ import annotations

import time
from typing import Any

import pytest

from prompts.gateway import PROBE_MAX_TOKENS, PROBE_WORD, LLMSpendingCapReached, llm_source_probe
from prompts.models import LLMCall
from prompts.sources import LLMCapabilities, llm_source_get
from prompts.tests.helpers import ask, db_source, outcomes
from prompts.tests.openai_server import DEFAULT_USAGE, OpenAIServer, ScriptedReply, _usage

pytestmark = pytest.mark.django_db

LLAMA_CPP_REFUSAL = "Input should be 'text' or 'json_object'"


def reply_tool_call(server: OpenAIServer, name: str) -> None:
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": name, "arguments": '{"ok": true}'}}],
    }
    body = {
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls", "logprobs": None}],
        "usage": _usage(DEFAULT_USAGE),
    }
    server.reply(ScriptedReply(body=body, logprobs=False))


def script_llama_cpp(server: OpenAIServer) -> None:
    """What llama.cpp's server answers to the five probe requests."""
    server.reply_status(500, LLAMA_CPP_REFUSAL)
    server.reply_json({"probe": PROBE_WORD}, logprobs=False)
    server.reply_json({"ok": True}, logprobs=False)
    server.reply_text("ok", logprobs=True)
    reply_tool_call(server, "record_answer")


def test_it_finds_what_a_llama_cpp_like_server_supports_and_records_it_on_the_row(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    row = db_source(openai_server, probed_at=None, supports_tools=False, supports_logprobs=False)
    script_llama_cpp(openai_server)

    probe = llm_source_probe(source=llm_source_get(name="openrouter"))

    assert probe.finished is True
    assert probe.calls == 5
    assert probe.seen == LLMCapabilities(
        json_schema=False, json_object_schema=True, json_object=True, tools=True, logprobs=True
    )
    row.refresh_from_db()
    assert row.probed_at is not None
    assert (
        row.supports_json_schema,
        row.supports_json_object_schema,
        row.supports_json_object,
        row.supports_tools,
        row.supports_logprobs,
    ) == (False, True, True, True, True)
    assert row.probe_summary.startswith(f"json_schema: refused (HTTP 500: {LLAMA_CPP_REFUSAL})")
    assert "json_object+schema: enforced; json_object: accepted; logprobs: returned; tools: called" in (
        row.probe_summary
    )
    assert probe.source.capabilities == probe.seen
    assert probe.source.probed is True


def test_every_probe_request_is_tiny_and_in_the_ledger(llm_settings: Any, openai_server: OpenAIServer) -> None:
    db_source(openai_server, probed_at=None)
    script_llama_cpp(openai_server)

    llm_source_probe(source=llm_source_get(name="openrouter"))

    requests = openai_server.requests
    assert [r.get("max_tokens") for r in requests] == [PROBE_MAX_TOKENS, PROBE_MAX_TOKENS, 1, 1, PROBE_MAX_TOKENS]
    assert requests[0]["response_format"]["type"] == "json_schema"
    assert requests[1]["response_format"]["type"] == "json_object"
    assert PROBE_WORD in str(requests[1]["response_format"]["schema"])
    assert all(PROBE_WORD not in str(r["messages"]) for r in requests)  # only the decoder can write it
    assert requests[3]["logprobs"] is True
    assert requests[4]["tool_choice"] == {"type": "function", "function": {"name": "record_answer"}}
    calls = list(LLMCall.objects.order_by("id").values_list("prompt_version", "source", "input_tokens"))
    assert calls == [("probe", "openrouter", 0)] + [("probe", "openrouter", 100)] * 4  # a refusal has no usage
    assert outcomes() == ["server_error", "ok", "ok", "ok", "ok"]


def test_a_schema_the_server_accepts_but_ignores_counts_as_unsupported(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    db_source(openai_server, probed_at=None)
    openai_server.reply_json({"ok": True}).reply_json({"probe": PROBE_WORD}).reply_json({"ok": True})
    openai_server.reply_text("ok", logprobs=False).reply_json({"ok": True})

    probe = llm_source_probe(source=llm_source_get(name="openrouter"))

    assert probe.seen == LLMCapabilities(
        json_schema=False, json_object_schema=True, json_object=True, tools=False, logprobs=False
    )
    assert "json_schema: accepted, not enforced" in probe.summary
    assert "tools: ignored" in probe.summary
    assert "logprobs: not returned" in probe.summary


def test_a_server_fault_leaves_that_capability_as_it_was(llm_settings: Any, openai_server: OpenAIServer) -> None:
    db_source(openai_server, probed_at=None, supports_json_schema=True)
    openai_server.reply_status(503, "overloaded")
    openai_server.reply_json({"probe": PROBE_WORD}).reply_json({"ok": True})
    openai_server.reply_text("ok", logprobs=True).reply_status(400, "tools are not supported")

    probe = llm_source_probe(source=llm_source_get(name="openrouter"))

    assert probe.seen.json_schema is True
    assert probe.seen.tools is False
    assert "json_schema: inconclusive (server_error" in probe.summary
    assert "tools: refused (HTTP 400: tools are not supported)" in probe.summary


def test_a_server_that_does_not_answer_stops_the_probe_quickly_and_changes_nothing(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    row = db_source(openai_server, probed_at=None, timeout_seconds=0.3, supports_json_schema=True)
    openai_server.reply_delay(5.0)

    started = time.monotonic()
    probe = llm_source_probe(source=llm_source_get(name="openrouter"))
    elapsed = time.monotonic() - started

    assert elapsed < 2.0
    assert probe.finished is False
    assert probe.calls == 1
    assert outcomes() == ["timeout"]
    row.refresh_from_db()
    assert row.probed_at is None  # probed again at its next use
    assert row.supports_json_schema is True
    assert row.probe_summary.startswith("not probed: json_schema: timeout")


def test_a_probe_cut_short_keeps_what_it_saw_and_leaves_the_rest(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    row = db_source(openai_server, probed_at=None, timeout_seconds=0.3, supports_tools=True)
    openai_server.reply_status(500, LLAMA_CPP_REFUSAL).reply_json({"probe": PROBE_WORD})
    openai_server.reply_json({"ok": True}).reply_text("ok", logprobs=False).reply_delay(5.0)

    probe = llm_source_probe(source=llm_source_get(name="openrouter"))

    assert probe.finished is False
    assert probe.calls == 5
    row.refresh_from_db()
    assert row.probed_at is not None
    assert (row.supports_json_schema, row.supports_json_object_schema, row.supports_logprobs) == (False, True, False)
    assert row.supports_tools is True  # not seen: as it was
    assert row.probe_summary.endswith("stopped, the rest unchanged: tools: timeout (Request timed out.)")


def test_capabilities_staff_set_are_kept_while_the_probe_records_what_it_saw(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    row = db_source(openai_server, probed_at=None, supports_json_schema=True, capabilities_from_staff=True)
    script_llama_cpp(openai_server)

    probe = llm_source_probe(source=llm_source_get(name="openrouter"))

    row.refresh_from_db()
    assert probe.seen.json_schema is False
    assert row.supports_json_schema is True
    assert row.probed_at is not None
    assert row.probe_summary.endswith("(capabilities kept as staff set them)")


def test_a_source_never_probed_is_probed_before_its_first_call(llm_settings: Any, openai_server: OpenAIServer) -> None:
    db_source(openai_server, probed_at=None)
    script_llama_cpp(openai_server)
    openai_server.reply_json({"tags": ["italian"]}).reply_json({"tags": []})

    result = ask(llm_source_get(name="openrouter"))
    ask(llm_source_get(name="openrouter"))

    assert len(openai_server.requests) == 5 + 2
    assert openai_server.requests[5]["response_format"]["type"] == "json_object"
    assert "schema" in openai_server.requests[5]["response_format"]
    assert result.mode == "json_object_schema"
    assert result.attempts == 1


def test_the_settings_source_with_auto_is_probed_once_per_process(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    llm_settings.LLM_RESPONSE_FORMAT = "auto"
    script_llama_cpp(openai_server)
    openai_server.reply_json({"tags": []}).reply_json({"tags": []})

    first = ask(llm_source_get())
    second = ask(llm_source_get())

    assert len(openai_server.requests) == 5 + 2
    assert first.mode == second.mode == "json_object_schema"
    assert llm_source_get().probed is True
    assert llm_source_get().capabilities.tools is True


def test_the_probe_spends_nothing_once_the_daily_cap_is_reached(llm_settings: Any, openai_server: OpenAIServer) -> None:
    llm_settings.LLM_DAILY_SPEND_CAP = 0.01
    db_source(openai_server, probed_at=None, price_input_per_1k="0.5")
    LLMCall.objects.create(source="x", model="m", cost=1.0, outcome="ok")

    probe = llm_source_probe(source=llm_source_get(name="openrouter"))

    assert probe.finished is False
    assert openai_server.requests == []
    assert LLMSpendingCapReached.default_message in probe.summary
