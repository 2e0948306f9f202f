"""prompts.gateway: one call to a model never takes longer than its budget, whatever the source's timeout."""

from __future__ import annotations

import time
from typing import Any

import pytest

from prompts.gateway import LLMUnavailable, chat_json, llm_call_budget_seconds
from prompts.models import LLMCall
from prompts.sources import llm_source_get
from prompts.tests.conftest import LLMSourceFactory
from prompts.tests.openai_server import OpenAIServer


def _ask_slow_source(server: OpenAIServer) -> None:
    LLMSourceFactory(name="slow", base_url=server.url, timeout_seconds=30)
    chat_json(
        source=llm_source_get(name="slow"),
        system="You tag recipes.",
        user="Spaghetti carbonara",
        schema=None,
        schema_name="recipe_tags",
        want_logprobs=False,
        prompt_version="tags-v1",
    )


def test_the_budget_is_every_attempt_waiting_for_a_slot_and_a_reply_plus_the_backoffs(settings: Any) -> None:
    settings.LLM_MAX_RETRIES = 3
    settings.LLM_SLOT_WAIT_SECONDS = 30
    settings.LLM_TIMEOUT_SECONDS = 30
    settings.LLM_RETRY_MAX_SECONDS = 8

    assert llm_call_budget_seconds() == 4 * (30 + 30) + 3 * 8


@pytest.mark.django_db
def test_a_source_with_a_longer_timeout_is_cut_off_at_the_budget(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    llm_settings.LLM_TIMEOUT_SECONDS = 0.4
    llm_settings.LLM_SLOT_WAIT_SECONDS = 0.3
    llm_settings.LLM_MAX_RETRIES = 1
    llm_settings.LLM_RETRY_MAX_SECONDS = 0.05
    openai_server.reply_delay(5, {"tags": []}).reply_delay(5, {"tags": []})
    budget = llm_call_budget_seconds()

    started = time.monotonic()
    with pytest.raises(LLMUnavailable):
        _ask_slow_source(openai_server)
    elapsed = time.monotonic() - started

    # The source would wait 30 s for each of two replies; the budget (1.45 s) allows one attempt.
    assert budget == pytest.approx(2 * (0.3 + 0.4) + 0.05)
    assert elapsed < budget + 1.0
    assert list(LLMCall.objects.values_list("outcome", flat=True)) == ["timeout"]
    assert len(openai_server.requests) == 1
