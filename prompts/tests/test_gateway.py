"""prompts.gateway against a real OpenAI-compatible HTTP server (prompts/tests/openai_server.py): requests,
retries, accounting and the concurrency slots."""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from prompts.gateway import (
    LLMBadReply,
    LLMBusy,
    LLMRateLimited,
    LLMRejected,
    LLMSpendingCapReached,
    LLMTimeout,
    LLMUnavailable,
    spend_today,
)
from prompts.models import LLMCall
from prompts.selectors import llm_calls_of_run
from prompts.sources import llm_source_get
from prompts.tests.conftest import LLMCallFactory
from prompts.tests.helpers import SCHEMA, ask, db_source, free_port, outcomes
from prompts.tests.openai_server import OpenAIServer

pytestmark = pytest.mark.django_db


# --- Requests -------------------------------------------------------------------------------------


def test_it_sends_the_schema_as_a_strict_json_schema_response_format(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    openai_server.reply_json({"tags": ["italian", "pasta"]})

    result = ask(llm_source_get())

    request = openai_server.requests[0]
    assert request["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "recipe_tags", "strict": True, "schema": SCHEMA},
    }
    assert request["model"] == "test-model"
    assert request["messages"] == [
        {"role": "system", "content": "You tag recipes."},
        {"role": "user", "content": "Spaghetti carbonara"},
    ]
    assert "logprobs" not in request
    assert openai_server.request_headers[0]["authorization"] == "Bearer test-key"
    assert result.data == {"tags": ["italian", "pasta"]}
    assert result.text == '{"tags": ["italian", "pasta"]}'
    assert result.mode == "json_schema"
    assert result.attempts == 1
    assert result.token_logprobs is None


def test_it_sends_the_schema_with_json_object_when_the_source_has_no_strict_schema_support(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    db_source(openai_server, supports_json_schema=False)
    openai_server.reply_json({"tags": ["italian"]})

    result = ask(llm_source_get(name="openrouter"))

    assert openai_server.requests[0]["response_format"] == {"type": "json_object", "schema": SCHEMA}
    assert openai_server.requests[0]["model"] == "db-model"
    assert result.mode == "json_object_schema"
    assert result.constrained is True
    assert result.data == {"tags": ["italian"]}


def test_it_asks_for_a_json_object_when_the_source_takes_no_schema(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    db_source(openai_server, supports_json_schema=False, supports_json_object_schema=False)
    openai_server.reply_json({"tags": ["italian"]})

    result = ask(llm_source_get(name="openrouter"))

    assert openai_server.requests[0]["response_format"] == {"type": "json_object"}
    assert result.mode == "json_object"
    assert result.constrained is False


def test_it_sends_no_response_format_to_a_source_without_json_modes(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    db_source(openai_server, supports_json_schema=False, supports_json_object_schema=False, supports_json_object=False)
    openai_server.reply_json({"tags": ["italian"]})

    result = ask(llm_source_get(name="openrouter"))

    assert "response_format" not in openai_server.requests[0]
    assert result.mode == "none"
    assert result.data == {"tags": ["italian"]}


def test_it_asks_for_a_json_object_when_no_schema_is_given(llm_settings: Any, openai_server: OpenAIServer) -> None:
    openai_server.reply_json({"tags": []})

    result = ask(llm_source_get(), schema=None)

    assert openai_server.requests[0]["response_format"] == {"type": "json_object"}
    assert result.mode == "json_object"


def test_it_requests_logprobs_and_returns_them_per_token(llm_settings: Any, openai_server: OpenAIServer) -> None:
    tokens = [('{"', -0.001), ("tags", -0.02), ('":["', -0.003), ("italian", -0.69), ('"]}', -0.0001)]
    openai_server.reply_json({"tags": ["italian"]}, logprobs=tokens)

    result = ask(llm_source_get(), want_logprobs=True)

    assert openai_server.requests[0]["logprobs"] is True
    assert result.token_logprobs == tokens


# --- Retries --------------------------------------------------------------------------------------


def test_it_retries_a_500_then_returns_the_reply(llm_settings: Any, openai_server: OpenAIServer) -> None:
    openai_server.reply_status(500).reply_status(503).reply_json({"tags": ["vegan"]})

    result = ask(llm_source_get())

    assert result.data == {"tags": ["vegan"]}
    assert result.attempts == 3
    assert len(openai_server.requests) == 3
    assert outcomes() == ["server_error", "server_error", "ok"]


def test_it_gives_up_on_a_server_error_after_the_retries_with_llm_unavailable(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    for _ in range(4):
        openai_server.reply_status(502, "upstream overloaded")

    with pytest.raises(LLMUnavailable) as excinfo:
        ask(llm_source_get())

    assert excinfo.value.code == "llm_unavailable"
    assert excinfo.value.retryable is True
    assert excinfo.value.details["attempts"] == 4
    assert excinfo.value.message == LLMUnavailable.default_message
    assert len(openai_server.requests) == 4  # LLM_MAX_RETRIES = 3


def test_its_backoff_grows_but_never_waits_longer_than_the_cap(llm_settings: Any, openai_server: OpenAIServer) -> None:
    llm_settings.LLM_RETRY_BASE_SECONDS = 0.2
    llm_settings.LLM_RETRY_MAX_SECONDS = 0.25
    openai_server.reply_status(500).reply_status(500).reply_status(500).reply_json({"tags": []})

    started = time.monotonic()
    ask(llm_source_get())
    elapsed = time.monotonic() - started

    # Sleeps of 0.1-0.2 s, then 0.125-0.25 s twice (capped): between 0.35 and 0.7 s in all.
    assert 0.35 <= elapsed < 1.5


def test_it_retries_a_timeout_and_gives_up_within_the_bound(llm_settings: Any, openai_server: OpenAIServer) -> None:
    llm_settings.LLM_TIMEOUT_SECONDS = 0.3
    llm_settings.LLM_MAX_RETRIES = 2
    for _ in range(3):
        openai_server.reply_delay(5, {"tags": []})

    started = time.monotonic()
    with pytest.raises(LLMTimeout) as excinfo:
        ask(llm_source_get())
    elapsed = time.monotonic() - started

    assert len(openai_server.requests) == 3
    assert outcomes() == ["timeout", "timeout", "timeout"]
    assert excinfo.value.code == "llm_timeout"
    assert 0.9 <= elapsed < 3


def test_it_returns_the_reply_that_comes_in_time_after_a_timeout(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    llm_settings.LLM_TIMEOUT_SECONDS = 0.3
    openai_server.reply_delay(5, {"tags": ["late"]}).reply_json({"tags": ["on time"]})

    result = ask(llm_source_get())

    assert result.data == {"tags": ["on time"]}
    assert result.attempts == 2
    assert outcomes() == ["timeout", "ok"]


def test_it_reports_a_refused_connection_as_llm_unavailable(llm_settings: Any) -> None:
    llm_settings.LLM_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"
    llm_settings.LLM_MAX_RETRIES = 1

    with pytest.raises(LLMUnavailable):
        ask(llm_source_get())

    assert outcomes() == ["connection", "connection"]


def test_it_waits_as_long_as_retry_after_asks_on_a_429(llm_settings: Any, openai_server: OpenAIServer) -> None:
    llm_settings.LLM_RETRY_MAX_SECONDS = 2.0
    openai_server.reply_status(429, "slow down", headers={"Retry-After": "0.5"}).reply_json({"tags": ["soup"]})

    started = time.monotonic()
    result = ask(llm_source_get())
    elapsed = time.monotonic() - started

    assert result.data == {"tags": ["soup"]}
    assert outcomes() == ["rate_limited", "ok"]
    assert 0.5 <= elapsed < 2


def test_it_waits_no_longer_than_the_cap_whatever_retry_after_says(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    llm_settings.LLM_RETRY_MAX_SECONDS = 0.1
    openai_server.reply_status(429, headers={"Retry-After": "60"}).reply_json({"tags": []})

    started = time.monotonic()
    ask(llm_source_get())

    assert time.monotonic() - started < 1


def test_it_raises_llm_rate_limited_when_429s_outlast_the_retries(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    for _ in range(4):
        openai_server.reply_status(429, "Rate limit reached for requests")

    with pytest.raises(LLMRateLimited) as excinfo:
        ask(llm_source_get())

    assert excinfo.value.code == "llm_rate_limited"
    assert excinfo.value.retryable is True
    assert excinfo.value.message == LLMRateLimited.default_message
    assert outcomes() == ["rate_limited"] * 4


def test_it_does_not_retry_a_400_and_keeps_the_providers_message_in_the_ledger(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    openai_server.reply_status(400, "The model `test-model` does not exist").reply_json({"tags": []})

    with pytest.raises(LLMRejected) as excinfo:
        ask(llm_source_get())

    assert (excinfo.value.code, excinfo.value.message) == ("llm_rejected", LLMRejected.default_message)
    assert "does not exist" not in str(excinfo.value.details)
    assert "The model `test-model` does not exist" in LLMCall.objects.get().error
    assert excinfo.value.retryable is False
    assert len(openai_server.requests) == 1
    assert outcomes() == ["client_error"]


def test_it_retries_malformed_empty_and_refused_replies_then_raises_llm_bad_reply(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    openai_server.reply_text("not json").reply_empty().reply_refusal("I can't help with that.")
    openai_server.reply_content("", finish_reason="content_filter")

    with pytest.raises(LLMBadReply) as excinfo:
        ask(llm_source_get())

    assert excinfo.value.code == "llm_bad_reply"
    assert excinfo.value.details["attempts"] == 4
    assert excinfo.value.message == LLMBadReply.default_message
    assert "content filter" in LLMCall.objects.get(attempt=4).error
    assert outcomes() == ["bad_reply", "bad_reply", "refused", "refused"]
    assert "I can't help with that." in LLMCall.objects.get(outcome="refused", attempt=3).error


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(lambda server: server.reply_text('{"tags": ["ita'), id="truncated JSON"),
        pytest.param(lambda server: server.reply_json(["italian"]), id="a JSON array"),
        pytest.param(lambda server: server.reply_raw("<html>Bad gateway</html>"), id="an HTML page"),
    ],
)
def test_it_retries_a_reply_that_is_not_a_json_object(
    llm_settings: Any, openai_server: OpenAIServer, script: Any
) -> None:
    script(openai_server)
    openai_server.reply_json({"tags": ["italian"]})

    result = ask(llm_source_get())

    assert result.data == {"tags": ["italian"]}
    assert result.attempts == 2
    assert outcomes() == ["bad_reply", "ok"]


# --- Accounting -----------------------------------------------------------------------------------


def test_it_records_every_attempt_with_its_tokens_and_cost(llm_settings: Any, openai_server: OpenAIServer) -> None:
    run_id = 4242
    openai_server.reply_text("not json", usage={"prompt_tokens": 1000, "completion_tokens": 10})
    openai_server.reply_json(
        {"tags": ["italian"]}, usage={"prompt_tokens": 1200, "completion_tokens": 300, "cached_tokens": 200}
    )

    result = ask(llm_source_get(), run_id=run_id)

    first, second = LLMCall.objects.order_by("id")
    assert (first.outcome, first.attempt, first.input_tokens, first.output_tokens) == ("bad_reply", 1, 1000, 10)
    assert first.cost == pytest.approx(0.5 + 0.015)
    assert "not valid JSON" in first.error
    assert (second.outcome, second.attempt) == ("ok", 2)
    assert (second.input_tokens, second.output_tokens, second.cached_tokens) == (1200, 300, 200)
    assert second.cost == pytest.approx(1.2 * 0.5 + 0.3 * 1.5)
    assert second.latency_ms > 0
    assert {call.source for call in (first, second)} == {"default"}
    assert {call.model for call in (first, second)} == {"test-model"}
    assert {call.prompt_version for call in (first, second)} == {"tags-v1"}
    assert list(llm_calls_of_run(run_id=run_id)) == [first, second]
    assert (result.input_tokens, result.output_tokens, result.cached_tokens) == (1200, 300, 200)
    assert result.cost == pytest.approx(1.05)
    assert spend_today() == pytest.approx(0.515 + 1.05)
    assert spend_today(source="default") == pytest.approx(0.515 + 1.05)
    assert spend_today(source="openrouter") == 0


def test_it_stops_before_calling_once_todays_spend_reaches_the_cap(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    llm_settings.LLM_DAILY_SPEND_CAP = 2.0
    LLMCallFactory(source="openrouter", cost=1.25)
    LLMCallFactory(source="default", cost=0.75)
    openai_server.reply_json({"tags": []})

    with pytest.raises(LLMSpendingCapReached) as excinfo:
        ask(llm_source_get())

    assert excinfo.value.code == "spending_cap_reached"
    assert excinfo.value.message == LLMSpendingCapReached.default_message
    assert excinfo.value.details == {"cap": 2.0}
    assert openai_server.requests == []


def test_the_cap_is_checked_again_before_each_retry(llm_settings: Any, openai_server: OpenAIServer) -> None:
    # A request here may cost at most ~$0.4 (a body of a few hundred bytes, 100 reply tokens); the first
    # attempt really costs $0.78, so the retry's reservation no longer fits.
    llm_settings.LLM_DAILY_SPEND_CAP = 0.9
    llm_settings.LLM_MAX_OUTPUT_TOKENS = 100
    openai_server.reply_text("not json", usage={"prompt_tokens": 1500, "completion_tokens": 20})
    openai_server.reply_json({"tags": []})

    with pytest.raises(LLMSpendingCapReached):
        ask(llm_source_get())

    assert len(openai_server.requests) == 1


def test_yesterdays_spend_does_not_count_toward_the_cap(llm_settings: Any, openai_server: OpenAIServer) -> None:
    llm_settings.LLM_DAILY_SPEND_CAP = 1.0
    llm_settings.LLM_MAX_OUTPUT_TOKENS = 100
    old = LLMCallFactory(source="default", cost=5.0)
    LLMCall.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=1))
    openai_server.reply_json({"tags": ["ok"]})

    result = ask(llm_source_get())

    assert result.data == {"tags": ["ok"]}
    assert spend_today() == pytest.approx(0.1 * 0.5 + 0.02 * 1.5)  # the server's default usage: 100 in, 20 out


# --- Concurrency ----------------------------------------------------------------------------------


def test_the_concurrency_slot_is_released_after_errors(llm_settings: Any, openai_server: OpenAIServer) -> None:
    llm_settings.LLM_SLOT_WAIT_SECONDS = 0.3
    llm_settings.LLM_MAX_RETRIES = 0
    # Its own name per process: the slots live in Redis, shared with any other test run.
    db_source(openai_server, name=f"one-slot-{os.getpid()}", max_concurrency=1, timeout_seconds=0.3)
    source = llm_source_get(name=f"one-slot-{os.getpid()}")
    openai_server.reply_status(400).reply_status(500).reply_delay(5).reply_text("not json")
    openai_server.reply_json({"tags": ["still served"]})

    for expected in (LLMUnavailable, LLMUnavailable, LLMUnavailable, LLMBadReply):
        with pytest.raises(expected):
            ask(source)
    result = ask(source)

    assert result.data == {"tags": ["still served"]}
    assert outcomes() == ["client_error", "server_error", "timeout", "bad_reply", "ok"]


@pytest.mark.django_db(transaction=True)
def test_a_call_raises_llm_busy_when_the_sources_slots_stay_full(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    llm_settings.LLM_SLOT_WAIT_SECONDS = 0.3
    name = f"busy-{os.getpid()}"
    db_source(openai_server, name=name, max_concurrency=1)
    source = llm_source_get(name=name)
    openai_server.reply_delay(1.5, {"tags": ["first"]})
    results: list[Any] = []

    def hold_the_slot() -> None:
        try:
            results.append(ask(source))
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_slot)
    holder.start()
    deadline = time.monotonic() + 5
    while not openai_server.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(LLMBusy) as excinfo:
        ask(source)
    waited = time.monotonic() - started
    holder.join(timeout=10)

    assert excinfo.value.code == "llm_busy"
    assert excinfo.value.details["source"] == name
    assert 0.3 <= waited < 1.2
    assert len(openai_server.requests) == 1
    assert [result.data for result in results] == [{"tags": ["first"]}]
