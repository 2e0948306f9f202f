"""LLM_DAILY_SPEND_CAP: each request reserves the most it can cost before it is sent and settles at its real
cost after, so requests at once never spend past the cap; a cap over a source without prices stops the
process at start-up (test_checks.py)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from prompts.gateway import LLMSourceRefused, LLMSpendingCapReached, spend_today
from prompts.models import LLMCall
from prompts.sources import llm_source_get
from prompts.tests.helpers import ask, db_source
from prompts.tests.openai_server import OpenAIServer

# Usage the test server reports for each reply: $0.20 + $0.15 = $0.35 at the llm_settings prices, within the
# most a request here can cost (a body of a few hundred bytes, 100 reply tokens).
USAGE = {"prompt_tokens": 400, "completion_tokens": 100}
COST = 0.35


@pytest.mark.django_db(transaction=True)
def test_calls_at_once_never_spend_past_the_cap(llm_settings: Any, openai_server: OpenAIServer) -> None:
    llm_settings.LLM_DAILY_SPEND_CAP = 1.0
    llm_settings.LLM_MAX_OUTPUT_TOKENS = 100
    llm_settings.LLM_MAX_CONCURRENCY = 10
    callers = 8
    for _ in range(callers):
        openai_server.reply_json({"tags": ["soup"]}, usage=USAGE, delay=0.5)
    source = llm_source_get()
    answered: list[Any] = []
    refused: list[Exception] = []
    start = threading.Barrier(callers)

    def call() -> None:
        try:
            start.wait(timeout=10)
            answered.append(ask(source))
        except LLMSpendingCapReached as exc:
            refused.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert answered, "some calls fit under the cap"
    assert len(refused) == callers - len(answered)
    assert len(openai_server.requests) == len(answered)
    assert [result.cost for result in answered] == [pytest.approx(COST)] * len(answered)
    assert spend_today() == pytest.approx(COST * len(answered))
    assert spend_today() <= 1.0


@pytest.mark.django_db
def test_settled_spend_frees_what_a_call_reserved_beyond_its_cost(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    llm_settings.LLM_DAILY_SPEND_CAP = 1.0
    llm_settings.LLM_MAX_OUTPUT_TOKENS = 100
    for _ in range(3):
        openai_server.reply_json({"tags": []}, usage={"prompt_tokens": 10, "completion_tokens": 10})

    for _ in range(3):  # each reserves ~$0.4 but costs $0.02: the next still fits
        ask(llm_source_get())

    assert len(openai_server.requests) == 3
    assert spend_today() == pytest.approx(3 * 0.02)


@pytest.mark.django_db
def test_a_source_without_prices_is_not_called_under_a_cap(llm_settings: Any, openai_server: OpenAIServer) -> None:
    llm_settings.LLM_DAILY_SPEND_CAP = 1.0
    db_source(openai_server)  # prices 0
    openai_server.reply_json({"tags": []})

    with pytest.raises(LLMSourceRefused):
        ask(llm_source_get(name="openrouter"))

    assert openai_server.requests == []
    assert not LLMCall.objects.exists()
