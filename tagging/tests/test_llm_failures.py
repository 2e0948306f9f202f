"""A run whose model fails: a failed run, a clear error, no tags; and what the retries cost."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from prompts.gateway import LLMBadReply, LLMRateLimited, LLMSpendingCapReached, LLMTimeout, LLMUnavailable
from prompts.models import LLMCall, LLMCallOutcome
from prompts.tests.conftest import LLMCallFactory
from prompts.tests.openai_server import OpenAIServer
from tagging.models import Recipe, RunStatus, TagAssignment
from tagging.tests.helpers import plan_of, run_executed, run_failed, run_queued, tags_stored
from taxonomy.models import Category

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy")]


@pytest.mark.parametrize(
    ("script", "outcome", "message", "provider_text"),
    [
        pytest.param(
            lambda server: server.reply_status(500, "upstream exploded"),
            LLMCallOutcome.SERVER_ERROR,
            LLMUnavailable.default_message,
            "upstream exploded",
            id="500 every time",
        ),
        pytest.param(
            lambda server: server.reply_status(429, "slow down"),
            LLMCallOutcome.RATE_LIMITED,
            LLMRateLimited.default_message,
            "slow down",
            id="429 every time",
        ),
        pytest.param(
            lambda server: server.reply_text('{"cuisine": ["ital'),
            LLMCallOutcome.BAD_REPLY,
            LLMBadReply.default_message,
            "ital",
            id="malformed JSON every time",
        ),
        pytest.param(
            lambda server: server.reply_refusal("I can't help with that."),
            LLMCallOutcome.REFUSED,
            LLMBadReply.default_message,
            "I can't help with that.",
            id="a refusal every time",
        ),
        pytest.param(
            lambda server: server.reply_empty(),
            LLMCallOutcome.BAD_REPLY,
            LLMBadReply.default_message,
            "Empty reply",
            id="an empty reply every time",
        ),
    ],
)
def test_it_fails_the_run_without_tags_when_the_model_never_answers_usably(
    llm_settings: Any,
    openai_server: OpenAIServer,
    carbonara: Recipe,
    script: Callable[[OpenAIServer], Any],
    outcome: str,
    message: str,
    provider_text: str,
) -> None:
    attempts = llm_settings.LLM_MAX_RETRIES + 1
    for _ in range(attempts + 1):  # one more than it may use
        script(openai_server)
    run = run_queued(carbonara, categories=("cuisine", "diet"))

    run = run_failed(run)

    assert run.status == RunStatus.FAILED
    assert run.error == message
    assert provider_text not in run.error
    assert all(
        provider_text in error for error in LLMCall.objects.filter(run_id=run.pk).values_list("error", flat=True)
    )
    assert run.finished_at is not None
    assert not TagAssignment.objects.filter(run=run).exists()
    assert len(openai_server.requests) == attempts
    assert openai_server.pending == 1
    assert list(LLMCall.objects.filter(run_id=run.pk).order_by("attempt").values_list("attempt", "outcome")) == [
        (n, outcome) for n in range(1, attempts + 1)
    ]


def test_it_fails_the_run_when_every_attempt_times_out_within_the_bound(
    llm_settings: Any, openai_server: OpenAIServer, carbonara: Recipe
) -> None:
    llm_settings.LLM_TIMEOUT_SECONDS = 0.3
    llm_settings.LLM_MAX_RETRIES = 2
    for _ in range(4):
        openai_server.reply_delay(2.0, {"cuisine": ["italian"]})
    run = run_queued(carbonara, categories=("cuisine",))
    started = time.monotonic()

    run = run_failed(run)

    elapsed = time.monotonic() - started
    assert run.status == RunStatus.FAILED
    assert run.error == LLMTimeout.default_message
    assert not TagAssignment.objects.filter(run=run).exists()
    assert len(openai_server.requests) == 3
    assert list(LLMCall.objects.filter(run_id=run.pk).values_list("outcome", flat=True)) == [LLMCallOutcome.TIMEOUT] * 3
    assert elapsed < 3 * 0.3 + 1.5


def test_it_succeeds_when_a_retry_gets_a_good_reply(
    llm_settings: Any, openai_server: OpenAIServer, carbonara: Recipe
) -> None:
    openai_server.reply_status(500).reply_json({"cuisine": ["italian"]}, logprobs=False)
    run = run_queued(carbonara, categories=("cuisine",))

    run = run_executed(run)

    assert run.status == RunStatus.SUCCEEDED, run.error
    assert tags_stored(run) == {"cuisine": [("italian", 0.8)]}
    assert len(openai_server.requests) == 2
    assert run.stats["llm_calls"] == 2
    assert list(LLMCall.objects.filter(run_id=run.pk).order_by("attempt").values_list("outcome", flat=True)) == [
        LLMCallOutcome.SERVER_ERROR,
        LLMCallOutcome.OK,
    ]


def test_it_makes_no_request_and_fails_the_run_once_todays_spend_is_over_the_cap(
    llm_settings: Any, openai_server: OpenAIServer, carbonara: Recipe
) -> None:
    llm_settings.LLM_DAILY_SPEND_CAP = 0.01
    LLMCallFactory(source="default", model="test-model", cost=0.02)
    openai_server.reply_json({"cuisine": ["italian"]})
    run = run_queued(carbonara, categories=("cuisine",))

    run = run_failed(run)

    assert run.status == RunStatus.FAILED
    assert run.error == LLMSpendingCapReached.default_message
    assert openai_server.requests == []
    assert not TagAssignment.objects.filter(run=run).exists()
    assert LLMCall.objects.count() == 1


def test_a_hybrid_run_whose_llm_fails_stores_not_even_the_tags_similarity_accepted(
    llm_settings: Any, openai_server: OpenAIServer, carbonara: Recipe
) -> None:
    llm_settings.LLM_MAX_RETRIES = 0
    llm_settings.HYBRID_ZERO_SHOT_ACCEPT = llm_settings.HYBRID_ACCEPT  # nothing learned: let its surest guess stand
    plan = plan_of(carbonara, ("cuisine", "diet"), k=2)
    assert plan.accepted[Category.objects.get(slug="cuisine").pk], "the premise: similarity accepts a cuisine"
    openai_server.reply_status(503)
    run = run_queued(carbonara, strategy="hybrid", categories=("cuisine", "diet"), k=2)

    run = run_failed(run)

    assert run.status == RunStatus.FAILED
    assert run.error == LLMUnavailable.default_message
    assert not TagAssignment.objects.filter(run=run).exists()
    assert len(openai_server.requests) == 1


def test_the_runs_cost_includes_the_attempts_that_were_retried(
    llm_settings: Any, openai_server: OpenAIServer, carbonara: Recipe
) -> None:
    openai_server.reply_text("not json").reply_json({"cuisine": ["italian"]})
    run = run_queued(carbonara, categories=("cuisine",))

    run = run_executed(run)

    spent = sum(LLMCall.objects.filter(run_id=run.pk).values_list("cost", flat=True))
    assert spent == pytest.approx(0.16)
    assert run.stats["llm_calls"] == 2
    assert run.stats["input_tokens"] == 200
    assert run.stats["cost"] == pytest.approx(spent)
