"""The llm and hybrid strategies against a real llama.cpp server with Gemma 3 270M (the session fixture
`llama_server`, prompts/tests/llama_server.py), executed as the worker executes runs. The model is too small
to tag well, so these tests check the protocol, never the quality: the server refuses json_schema and the
gateway falls back once to json_object with a schema, replies parse, every tag kept is an active tag of a
requested category, at most k of them, and every request is in the ledger with the server's token counts."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from prompts.gateway import LLMTimeout
from prompts.models import LLMCall, LLMCallOutcome, LLMSource
from prompts.tests.llama_server import LlamaServer
from tagging.models import Recipe, RunStatus, TagAssignment, TaggingRun
from tagging.tests.conftest import demo_recipe
from tagging.tests.helpers import active_slugs, llama_source_create, run_executed, run_failed, run_queued, tags_stored

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy_without_rules")]

# One small category and k=1 keep the prompt short and the constrained reply a few tokens long: decoding by
# a grammar checks every token of Gemma's 262,144 against it, up to seconds a token on a busy machine.
CATEGORIES = ("meal_type",)
K = 1


# Named for this process: concurrency slots are kept in a Redis that parallel test runs share.
SOURCE = f"llama-{os.getpid()}"


@pytest.fixture
def llama_source(settings: Any, llama_server: LlamaServer) -> LLMSource:
    """A source at the real server as staff would add it, asked in json_schema first as any new server."""
    return llama_source_create(settings, llama_server, name=SOURCE)


def run_on_llama(recipe: Recipe, strategy: str) -> TaggingRun:
    return run_executed(run_queued(recipe, strategy=strategy, categories=CATEGORIES, k=K, source=SOURCE))


def assert_protocol_kept(run: TaggingRun) -> None:
    """The run succeeded, kept only active tags of the requested categories (at most K each, scores in
    [0, 1]), and each of its requests is in the ledger, the answered one with the server's usage."""
    assert run.status == RunStatus.SUCCEEDED, run.error
    for category, tags in tags_stored(run).items():
        assert category in CATEGORIES
        assert len(tags) <= K
        assert {slug for slug, _ in tags} <= active_slugs(category)
        assert all(0.0 <= score <= 1.0 for _, score in tags)
    calls = LLMCall.objects.filter(run_id=run.pk).order_by("id")
    assert calls.count() == run.stats["llm_calls"]
    if not run.stats["llm_calls"]:
        return
    answered = calls.last()
    assert answered is not None
    assert answered.outcome == LLMCallOutcome.OK
    assert answered.input_tokens > 0
    assert answered.output_tokens > 0
    assert answered.cost == pytest.approx((answered.input_tokens * 0.5 + answered.output_tokens * 1.5) / 1000)
    assert run.stats["input_tokens"] == answered.input_tokens
    assert run.stats["mode"] == "json_object_schema"
    assert set(calls.values_list("outcome", flat=True)) <= {LLMCallOutcome.OK, LLMCallOutcome.FORMAT_REFUSED}


def test_llm_runs_on_a_real_model_parse_stay_in_the_taxonomy_and_record_usage(
    llama_source: LLMSource, demo_recipes: list[dict[str, Any]]
) -> None:
    recipes = [demo_recipe(demo_recipes, title) for title in ("Greek Salad", "Blueberry Pancakes")]

    runs = [run_on_llama(recipe, "llm") for recipe in recipes]

    for run in runs:
        assert run.stats["llm_calls"] >= 1
        assert_protocol_kept(run)
    # json_schema is refused once, then the source asks this server in the mode that worked.
    assert list(LLMCall.objects.filter(run_id=runs[0].pk).order_by("id").values_list("outcome", flat=True)) == [
        LLMCallOutcome.FORMAT_REFUSED,
        LLMCallOutcome.OK,
    ]
    assert list(LLMCall.objects.filter(run_id=runs[1].pk).values_list("outcome", flat=True)) == [LLMCallOutcome.OK]
    assert LLMSource.objects.get(name=SOURCE).supports_json_schema is False


def test_hybrid_runs_on_a_real_model_parse_stay_in_the_taxonomy_and_record_usage(
    llama_source: LLMSource, demo_recipes: list[dict[str, Any]]
) -> None:
    recipe = demo_recipe(demo_recipes, "Blueberry Pancakes")

    run = run_on_llama(recipe, "hybrid")

    assert run.stats["llm_calls"] >= 1, "the premise: the similarity tagger left the choice to the model"
    assert_protocol_kept(run)


def test_a_source_that_times_out_fails_the_run_clearly_and_quickly(
    llama_source: LLMSource, settings: Any, carbonara: Recipe
) -> None:
    LLMSource.objects.filter(pk=llama_source.pk).update(timeout_seconds=0.05, supports_json_schema=False)
    settings.LLM_MAX_RETRIES = 0
    run = run_queued(carbonara, strategy="llm", categories=CATEGORIES, k=K, source=SOURCE)
    started = time.monotonic()

    run = run_failed(run)

    elapsed = time.monotonic() - started
    assert run.status == RunStatus.FAILED
    assert run.error == LLMTimeout.default_message
    assert not TagAssignment.objects.filter(run=run).exists()
    assert LLMCall.objects.filter(run_id=run.pk).last().outcome == LLMCallOutcome.TIMEOUT  # type: ignore[union-attr]
    assert elapsed < 5.0
