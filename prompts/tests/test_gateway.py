"""prompts.gateway against a real OpenAI-compatible HTTP server (prompts/tests/openai_server.py)."""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.contrib import admin
from django.db import connection
from django.test.client import Client
from django.urls import path, reverse
from django.utils import timezone

from prompts.gateway import (
    LLMBadReply,
    LLMBusy,
    LLMRateLimited,
    LLMSpendingCapReached,
    LLMUnavailable,
    chat_json,
    spend_today,
)
from prompts.models import LLMCall, LLMSource
from prompts.selectors import llm_calls_of_run
from prompts.sources import LLMNotConfigured, LLMSourceConfig, llm_source_get, llm_sources_available
from prompts.tests.conftest import LLMCallFactory, LLMSourceFactory
from prompts.tests.openai_server import OpenAIServer

pytestmark = pytest.mark.django_db

# The admin pages are served from this module's URLs, so they work whether or not tagging/admin.py has
# imported tagging.admin_llm yet (the project's URLconf may have been built before this module loaded).
urlpatterns = [path("admin/", admin.site.urls)]

SCHEMA = {
    "type": "object",
    "properties": {"tags": {"type": "array", "items": {"type": "string"}}},
    "required": ["tags"],
    "additionalProperties": False,
}


def _ask(source: LLMSourceConfig, **kwargs: Any) -> Any:
    params: dict[str, Any] = {
        "system": "You tag recipes.",
        "user": "Spaghetti carbonara",
        "schema": SCHEMA,
        "schema_name": "recipe_tags",
        "want_logprobs": False,
        "prompt_version": "tags-v1",
    }
    return chat_json(source=source, **{**params, **kwargs})


def _outcomes() -> list[str]:
    return list(LLMCall.objects.order_by("id").values_list("outcome", flat=True))


def _db_source(server: OpenAIServer, **fields: Any) -> LLMSource:
    """A source staff added in admin, at the test server."""
    return LLMSourceFactory(base_url=server.url, **fields)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- Requests -------------------------------------------------------------------------------------


def test_it_sends_the_schema_as_a_strict_json_schema_response_format(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    openai_server.reply_json({"tags": ["italian", "pasta"]})

    result = _ask(llm_source_get())

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


def test_it_asks_for_a_json_object_when_the_source_has_no_strict_schema_support(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    _db_source(openai_server, supports_json_schema=False)
    openai_server.reply_json({"tags": ["italian"]})

    result = _ask(llm_source_get(name="openrouter"))

    assert openai_server.requests[0]["response_format"] == {"type": "json_object"}
    assert openai_server.requests[0]["model"] == "db-model"
    assert result.mode == "json_object"
    assert result.data == {"tags": ["italian"]}


def test_it_asks_for_a_json_object_when_no_schema_is_given(llm_settings: Any, openai_server: OpenAIServer) -> None:
    openai_server.reply_json({"tags": []})

    result = _ask(llm_source_get(), schema=None)

    assert openai_server.requests[0]["response_format"] == {"type": "json_object"}
    assert result.mode == "json_object"


def test_it_requests_logprobs_and_returns_them_per_token(llm_settings: Any, openai_server: OpenAIServer) -> None:
    tokens = [('{"', -0.001), ("tags", -0.02), ('":["', -0.003), ("italian", -0.69), ('"]}', -0.0001)]
    openai_server.reply_json({"tags": ["italian"]}, logprobs=tokens)

    result = _ask(llm_source_get(), want_logprobs=True)

    assert openai_server.requests[0]["logprobs"] is True
    assert result.token_logprobs == tokens


# --- Retries --------------------------------------------------------------------------------------


def test_it_retries_a_500_then_returns_the_reply(llm_settings: Any, openai_server: OpenAIServer) -> None:
    openai_server.reply_status(500).reply_status(503).reply_json({"tags": ["vegan"]})

    result = _ask(llm_source_get())

    assert result.data == {"tags": ["vegan"]}
    assert result.attempts == 3
    assert len(openai_server.requests) == 3
    assert _outcomes() == ["server_error", "server_error", "ok"]


def test_it_gives_up_on_a_server_error_after_the_retries_with_llm_unavailable(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    for _ in range(4):
        openai_server.reply_status(502, "upstream overloaded")

    with pytest.raises(LLMUnavailable) as excinfo:
        _ask(llm_source_get())

    assert excinfo.value.code == "llm_unavailable"
    assert excinfo.value.retryable is True
    assert "after 4 attempts" in excinfo.value.message
    assert "upstream overloaded" in excinfo.value.message
    assert len(openai_server.requests) == 4  # LLM_MAX_RETRIES = 3


def test_its_backoff_grows_but_never_waits_longer_than_the_cap(llm_settings: Any, openai_server: OpenAIServer) -> None:
    llm_settings.LLM_RETRY_BASE_SECONDS = 0.2
    llm_settings.LLM_RETRY_MAX_SECONDS = 0.25
    openai_server.reply_status(500).reply_status(500).reply_status(500).reply_json({"tags": []})

    started = time.monotonic()
    _ask(llm_source_get())
    elapsed = time.monotonic() - started

    # Sleeps of 0.1-0.2 s, then 0.125-0.25 s twice (capped): between 0.35 and 0.7 s in all.
    assert 0.35 <= elapsed < 1.5


def test_it_retries_a_timeout_and_gives_up_within_the_bound(llm_settings: Any, openai_server: OpenAIServer) -> None:
    llm_settings.LLM_TIMEOUT_SECONDS = 0.3
    llm_settings.LLM_MAX_RETRIES = 2
    for _ in range(3):
        openai_server.reply_delay(5, {"tags": []})

    started = time.monotonic()
    with pytest.raises(LLMUnavailable) as excinfo:
        _ask(llm_source_get())
    elapsed = time.monotonic() - started

    assert len(openai_server.requests) == 3
    assert _outcomes() == ["timeout", "timeout", "timeout"]
    assert "timed out" in excinfo.value.message
    assert 0.9 <= elapsed < 3


def test_it_returns_the_reply_that_comes_in_time_after_a_timeout(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    llm_settings.LLM_TIMEOUT_SECONDS = 0.3
    openai_server.reply_delay(5, {"tags": ["late"]}).reply_json({"tags": ["on time"]})

    result = _ask(llm_source_get())

    assert result.data == {"tags": ["on time"]}
    assert result.attempts == 2
    assert _outcomes() == ["timeout", "ok"]


def test_it_reports_a_refused_connection_as_llm_unavailable(llm_settings: Any) -> None:
    llm_settings.LLM_BASE_URL = f"http://127.0.0.1:{_free_port()}/v1"
    llm_settings.LLM_MAX_RETRIES = 1

    with pytest.raises(LLMUnavailable):
        _ask(llm_source_get())

    assert _outcomes() == ["connection", "connection"]


def test_it_waits_as_long_as_retry_after_asks_on_a_429(llm_settings: Any, openai_server: OpenAIServer) -> None:
    llm_settings.LLM_RETRY_MAX_SECONDS = 2.0
    openai_server.reply_status(429, "slow down", headers={"Retry-After": "0.5"}).reply_json({"tags": ["soup"]})

    started = time.monotonic()
    result = _ask(llm_source_get())
    elapsed = time.monotonic() - started

    assert result.data == {"tags": ["soup"]}
    assert _outcomes() == ["rate_limited", "ok"]
    assert 0.5 <= elapsed < 2


def test_it_waits_no_longer_than_the_cap_whatever_retry_after_says(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    llm_settings.LLM_RETRY_MAX_SECONDS = 0.1
    openai_server.reply_status(429, headers={"Retry-After": "60"}).reply_json({"tags": []})

    started = time.monotonic()
    _ask(llm_source_get())

    assert time.monotonic() - started < 1


def test_it_raises_llm_rate_limited_when_429s_outlast_the_retries(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    for _ in range(4):
        openai_server.reply_status(429, "Rate limit reached for requests")

    with pytest.raises(LLMRateLimited) as excinfo:
        _ask(llm_source_get())

    assert excinfo.value.code == "llm_rate_limited"
    assert excinfo.value.retryable is True
    assert "Rate limit reached for requests" in excinfo.value.message
    assert _outcomes() == ["rate_limited"] * 4


def test_it_does_not_retry_a_400_and_passes_on_the_providers_message(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    openai_server.reply_status(400, "Invalid schema for response_format 'recipe_tags'").reply_json({"tags": []})

    with pytest.raises(LLMUnavailable) as excinfo:
        _ask(llm_source_get())

    assert "Invalid schema for response_format 'recipe_tags'" in excinfo.value.message
    assert excinfo.value.retryable is False
    assert len(openai_server.requests) == 1
    assert _outcomes() == ["client_error"]


def test_it_retries_malformed_empty_and_refused_replies_then_raises_llm_bad_reply(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    openai_server.reply_text("not json").reply_empty().reply_refusal("I can't help with that.")
    openai_server.reply_content("", finish_reason="content_filter")

    with pytest.raises(LLMBadReply) as excinfo:
        _ask(llm_source_get())

    assert excinfo.value.code == "llm_bad_reply"
    assert excinfo.value.details["attempts"] == 4
    assert "content filter" in excinfo.value.message
    assert _outcomes() == ["bad_reply", "bad_reply", "refused", "refused"]
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

    result = _ask(llm_source_get())

    assert result.data == {"tags": ["italian"]}
    assert result.attempts == 2
    assert _outcomes() == ["bad_reply", "ok"]


# --- Accounting -----------------------------------------------------------------------------------


def test_it_records_every_attempt_with_its_tokens_and_cost(llm_settings: Any, openai_server: OpenAIServer) -> None:
    run_id = 4242
    openai_server.reply_text("not json", usage={"prompt_tokens": 1000, "completion_tokens": 10})
    openai_server.reply_json(
        {"tags": ["italian"]}, usage={"prompt_tokens": 1200, "completion_tokens": 300, "cached_tokens": 200}
    )

    result = _ask(llm_source_get(), run_id=run_id)

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
        _ask(llm_source_get())

    assert excinfo.value.code == "llm_spending_cap"
    assert "$2.0000" in excinfo.value.message
    assert "$2.00 (LLM_DAILY_SPEND_CAP)" in excinfo.value.message
    assert excinfo.value.details == {"cap": 2.0, "spent_today": 2.0}
    assert openai_server.requests == []


def test_the_cap_is_checked_again_before_each_retry(llm_settings: Any, openai_server: OpenAIServer) -> None:
    llm_settings.LLM_DAILY_SPEND_CAP = 0.5
    openai_server.reply_text("not json", usage={"prompt_tokens": 1000, "completion_tokens": 20})
    openai_server.reply_json({"tags": []})

    with pytest.raises(LLMSpendingCapReached):
        _ask(llm_source_get())

    assert len(openai_server.requests) == 1


def test_yesterdays_spend_does_not_count_toward_the_cap(llm_settings: Any, openai_server: OpenAIServer) -> None:
    llm_settings.LLM_DAILY_SPEND_CAP = 1.0
    old = LLMCallFactory(source="default", cost=5.0)
    LLMCall.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=1))
    openai_server.reply_json({"tags": ["ok"]})

    result = _ask(llm_source_get())

    assert result.data == {"tags": ["ok"]}
    assert spend_today() == pytest.approx(0.1 * 0.5 + 0.02 * 1.5)  # the server's default usage: 100 in, 20 out


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
    monkeypatch.delenv("AUTOTAGGER_TEST_OPENROUTER_KEY", raising=False)
    _db_source(openai_server, api_key_env="AUTOTAGGER_TEST_OPENROUTER_KEY")

    with pytest.raises(LLMNotConfigured) as excinfo:
        llm_source_get(name="openrouter")

    assert "AUTOTAGGER_TEST_OPENROUTER_KEY" in excinfo.value.message
    assert excinfo.value.details["missing_env"] == "AUTOTAGGER_TEST_OPENROUTER_KEY"


def test_a_db_source_sends_the_key_from_the_variable_it_names(
    llm_settings: Any, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOTAGGER_TEST_OPENROUTER_KEY", "sk-from-env")
    _db_source(openai_server, api_key_env="AUTOTAGGER_TEST_OPENROUTER_KEY", timeout_seconds=12, max_concurrency=2)
    openai_server.reply_json({"tags": []})

    source = llm_source_get(name="openrouter")
    _ask(source)

    assert (source.api_key, source.timeout_seconds, source.max_concurrency) == ("sk-from-env", 12.0, 2)
    assert "sk-from-env" not in repr(source)
    assert openai_server.request_headers[0]["authorization"] == "Bearer sk-from-env"
    assert LLMCall.objects.get().source == "openrouter"


def test_an_unknown_source_name_lists_the_allowed_ones(llm_settings: Any, openai_server: OpenAIServer) -> None:
    _db_source(openai_server, name="openrouter")
    _db_source(openai_server, name="retired", active=False)

    with pytest.raises(LLMNotConfigured) as excinfo:
        llm_source_get(name="antropic")

    assert "'antropic'" in excinfo.value.message
    assert "default, openrouter" in excinfo.value.message
    assert excinfo.value.details["available"] == ["default", "openrouter"]


def test_an_inactive_db_source_is_not_available(llm_settings: Any, openai_server: OpenAIServer) -> None:
    _db_source(openai_server, name="retired", active=False)

    with pytest.raises(LLMNotConfigured) as excinfo:
        llm_source_get(name="retired")

    assert "inactive" in excinfo.value.message
    assert llm_sources_available() == ["default"]


def test_a_db_source_named_default_wins_over_the_settings(llm_settings: Any, openai_server: OpenAIServer) -> None:
    _db_source(openai_server, name="default", model="db-default-model", price_input_per_1k="0.25")
    openai_server.reply_json({"tags": []})

    source = llm_source_get()
    _ask(source)

    assert (source.model, source.price_input_per_1k, source.api_key) == ("db-default-model", 0.25, "")
    assert openai_server.requests[0]["model"] == "db-default-model"
    assert llm_sources_available() == ["default"]


def test_no_name_means_the_source_named_by_llm_default_source(llm_settings: Any, openai_server: OpenAIServer) -> None:
    _db_source(openai_server, name="openrouter")
    llm_settings.LLM_DEFAULT_SOURCE = "openrouter"

    assert llm_source_get().name == "openrouter"


# --- Concurrency ----------------------------------------------------------------------------------


def test_the_concurrency_slot_is_released_after_errors(llm_settings: Any, openai_server: OpenAIServer) -> None:
    llm_settings.LLM_SLOT_WAIT_SECONDS = 0.3
    llm_settings.LLM_MAX_RETRIES = 0
    # Its own name per process: the slots live in Redis, shared with any other test run.
    _db_source(openai_server, name=f"one-slot-{os.getpid()}", max_concurrency=1, timeout_seconds=0.3)
    source = llm_source_get(name=f"one-slot-{os.getpid()}")
    openai_server.reply_status(400).reply_status(500).reply_delay(5).reply_text("not json")
    openai_server.reply_json({"tags": ["still served"]})

    for expected in (LLMUnavailable, LLMUnavailable, LLMUnavailable, LLMBadReply):
        with pytest.raises(expected):
            _ask(source)
    result = _ask(source)

    assert result.data == {"tags": ["still served"]}
    assert _outcomes() == ["client_error", "server_error", "timeout", "bad_reply", "ok"]


@pytest.mark.django_db(transaction=True)
def test_a_call_raises_llm_busy_when_the_sources_slots_stay_full(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    llm_settings.LLM_SLOT_WAIT_SECONDS = 0.3
    name = f"busy-{os.getpid()}"
    _db_source(openai_server, name=name, max_concurrency=1)
    source = llm_source_get(name=name)
    openai_server.reply_delay(1.5, {"tags": ["first"]})
    results: list[Any] = []

    def hold_the_slot() -> None:
        try:
            results.append(_ask(source))
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_slot)
    holder.start()
    deadline = time.monotonic() + 5
    while not openai_server.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(LLMBusy) as excinfo:
        _ask(source)
    waited = time.monotonic() - started
    holder.join(timeout=10)

    assert excinfo.value.code == "llm_busy"
    assert name in excinfo.value.message
    assert 0.3 <= waited < 1.2
    assert len(openai_server.requests) == 1
    assert [result.data for result in results] == [{"tags": ["first"]}]


# --- Admin ----------------------------------------------------------------------------------------


@pytest.mark.urls(__name__)
def test_the_llm_source_admin_pages_render_for_staff(staff_browser: Client, openai_server: OpenAIServer) -> None:
    source = _db_source(openai_server, api_key_env="AUTOTAGGER_TEST_OPENROUTER_KEY")

    pages = [
        staff_browser.get(reverse("admin:prompts_llmsource_changelist")),
        staff_browser.get(reverse("admin:prompts_llmsource_add")),
        staff_browser.get(reverse("admin:prompts_llmsource_change", args=[source.pk])),
    ]

    assert [page.status_code for page in pages] == [200, 200, 200]
    assert "openrouter" in pages[0].content.decode()
    assert "NAME of an environment variable" in pages[1].content.decode()
    assert "AUTOTAGGER_TEST_OPENROUTER_KEY" in pages[2].content.decode()


@pytest.mark.urls(__name__)
def test_the_llm_call_list_shows_totals_per_day_and_source_for_the_filter(staff_browser: Client) -> None:
    today = timezone.localdate()
    for source, tokens, cost in (("default", 100, 0.25), ("default", 300, 0.5), ("openrouter", 1000, 2.0)):
        LLMCall.objects.create(
            source=source, model="m", outcome="ok", input_tokens=tokens, output_tokens=10, cached_tokens=5, cost=cost
        )
    old = LLMCall.objects.create(source="default", model="m", outcome="timeout", cost=0)
    LLMCall.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=1))
    url = reverse("admin:prompts_llmcall_changelist")

    everything = staff_browser.get(url)
    filtered = staff_browser.get(url, {"source": "default"})

    assert everything.status_code == 200
    assert [
        (row["day"], row["source"], row["calls"], row["input_tokens"], row["output_tokens"], row["cost"])
        for row in everything.context["llm_totals"]
    ] == [
        (today, "default", 2, 400, 20, 0.75),
        (today, "openrouter", 1, 1000, 10, 2.0),
        (today - timedelta(days=1), "default", 1, 0, 0, 0.0),
    ]
    assert everything.context["llm_grand_total"]["calls"] == 4
    assert everything.context["llm_grand_total"]["cost"] == pytest.approx(2.75)
    assert "Totals for the current filter" in everything.content.decode()
    assert "2.7500" in everything.content.decode()
    assert [row["source"] for row in filtered.context["llm_totals"]] == ["default", "default"]
    assert filtered.context["llm_grand_total"]["cost"] == pytest.approx(0.75)


@pytest.mark.urls(__name__)
def test_the_llm_call_ledger_is_read_only(staff_browser: Client) -> None:
    call = LLMCall.objects.create(source="default", model="m", outcome="bad_reply", error="not JSON")

    detail = staff_browser.get(reverse("admin:prompts_llmcall_change", args=[call.pk]))
    add = staff_browser.get(reverse("admin:prompts_llmcall_add"))
    delete = staff_browser.post(reverse("admin:prompts_llmcall_delete", args=[call.pk]), {"post": "yes"})

    assert detail.status_code == 200
    assert "not JSON" in detail.content.decode()
    assert add.status_code == 403
    assert delete.status_code == 403
    assert LLMCall.objects.filter(pk=call.pk).exists()
