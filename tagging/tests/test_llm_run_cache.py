"""Reusing an LLM answer for the same question, asking again when the question changed, and executing
a run that was delivered twice."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pytest
from django.db import connection

from conftest import wait_for
from prompts.models import LLMCall
from prompts.tests.openai_server import OpenAIServer
from tagging.models import Recipe, RunStatus, TagAssignment, TaggingRun
from tagging.services.config import TaggingConfig
from tagging.services.llm_runs import LLMFailed
from tagging.services.runs import run_create, run_execute
from tagging.tests.conftest import demo_recipe
from tagging.tests.helpers import run_executed, run_queued, tags_stored, user_prompt
from taxonomy.models import Category, Tag

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy_without_rules")]


def test_a_recipe_with_the_same_content_reuses_the_answer_until_the_taxonomy_changes(
    llm_settings: Any, openai_server: OpenAIServer, taxonomy: dict[str, Any], demo_recipes: list[dict[str, Any]]
) -> None:
    first = demo_recipe(demo_recipes, "Beef Tacos")
    twin = demo_recipe(demo_recipes, "Beef Tacos", source="blog")
    third = demo_recipe(demo_recipes, "Beef Tacos", source="newsletter")
    openai_server.reply_json({"cuisine": ["mexican"], "diet": ["high-protein"]})
    openai_server.reply_json({"cuisine": ["mexican", "american"], "diet": []}, logprobs=False)
    original = run_executed(run_queued(first, categories=("cuisine", "diet")))

    cached = run_executed(run_queued(twin, categories=("cuisine", "diet")))

    assert len(openai_server.requests) == 1
    assert cached.status == RunStatus.SUCCEEDED, cached.error
    assert cached.stats["cache_hit"] is True
    assert cached.stats["llm_calls"] == 0
    assert cached.stats["cache_key"] == original.stats["cache_key"]
    assert tags_stored(cached) == tags_stored(original)
    assert tags_stored(cached)["cuisine"][0][0] == "mexican"
    assert not LLMCall.objects.filter(run_id=cached.pk).exists()

    mexican = Tag.objects.get(category__slug="cuisine", slug="mexican")
    mexican.description = "Tex-Mex and regional Mexican cooking"
    mexican.save()

    changed = run_executed(run_queued(third, categories=("cuisine", "diet")))

    assert len(openai_server.requests) == 2
    assert "Tex-Mex and regional Mexican cooking" in user_prompt(openai_server.requests[1])
    assert changed.stats["cache_hit"] is False
    assert changed.stats["llm_calls"] == 1
    assert changed.stats["cache_key"] != original.stats["cache_key"]
    assert tags_stored(changed) == {"cuisine": [("mexican", 0.8), ("american", 0.8)]}


def test_a_run_answered_from_the_cache_shows_the_earlier_runs_evidence(
    llm_settings: Any, openai_server: OpenAIServer, taxonomy: dict[str, Any], demo_recipes: list[dict[str, Any]]
) -> None:
    first = demo_recipe(demo_recipes, "Beef Tacos")
    twin = demo_recipe(demo_recipes, "Beef Tacos", source="blog")
    openai_server.reply_json({"cuisine": [{"tag": "mexican", "reason": "Tortillas, salsa and cumin."}]}, logprobs=False)
    original = run_executed(run_queued(first, categories=("cuisine",)))

    cached = run_executed(run_queued(twin, categories=("cuisine",)))

    assert cached.stats["cache_hit"] is True
    [assignment] = TagAssignment.objects.filter(run=cached)
    assert assignment.evidence == {
        "decided_by": "llm",
        "score_from": "fixed",
        "reason": "Tortillas, salsa and cumin.",
        "rule": "no rule",
    }
    assert assignment.evidence == TagAssignment.objects.get(run=original).evidence


def test_it_asks_again_for_other_settings_of_the_same_recipe(
    llm_settings: Any, openai_server: OpenAIServer, carbonara: Recipe
) -> None:
    openai_server.reply_json({"cuisine": ["italian"]}, logprobs=False)
    openai_server.reply_json({"cuisine": ["italian", "greek"]}, logprobs=False)
    run_executed(run_queued(carbonara, categories=("cuisine",), k=1))

    again = run_executed(run_queued(carbonara, categories=("cuisine",), k=2))

    assert len(openai_server.requests) == 2
    assert again.stats["cache_hit"] is False
    assert tags_stored(again) == {"cuisine": [("italian", 0.8), ("greek", 0.8)]}


def test_executing_a_run_again_neither_calls_the_model_nor_duplicates_its_tags(
    llm_settings: Any, openai_server: OpenAIServer, carbonara: Recipe
) -> None:
    openai_server.reply_json({"cuisine": ["italian"], "diet": ["vegetarian"]})
    openai_server.reply_json({"cuisine": ["greek"], "diet": []})
    run = run_executed(run_queued(carbonara, categories=("cuisine", "diet")))
    assignments = sorted(TagAssignment.objects.filter(run=run).values_list("tag_id", "score", "rank"))

    again = run_execute(run_id=run.pk)

    assert again.status == RunStatus.SUCCEEDED
    assert len(openai_server.requests) == 1
    assert LLMCall.objects.count() == 1
    assert sorted(TagAssignment.objects.filter(run=run).values_list("tag_id", "score", "rank")) == assignments
    assert len(assignments) == 2
    assert TaggingRun.objects.get(pk=run.pk).finished_at == run.finished_at


def test_editing_a_categorys_description_sent_in_the_prompt_makes_the_next_run_ask_again(
    llm_settings: Any, openai_server: OpenAIServer, taxonomy: dict[str, Any], demo_recipes: list[dict[str, Any]]
) -> None:
    openai_server.reply_json({"cuisine": ["mexican"]}, logprobs=False)
    openai_server.reply_json({"cuisine": ["american"]}, logprobs=False)
    run_executed(run_queued(demo_recipe(demo_recipes, "Beef Tacos"), categories=("cuisine",)))
    cuisine = Category.objects.get(slug="cuisine")
    cuisine.description = "The country whose home cooks would recognise the dish"
    cuisine.save()

    again = run_executed(run_queued(demo_recipe(demo_recipes, "Beef Tacos", source="blog"), categories=("cuisine",)))

    assert len(openai_server.requests) == 2
    assert again.stats["cache_hit"] is False
    assert tags_stored(again) == {"cuisine": [("american", 0.8)]}


@pytest.mark.django_db(transaction=True)
def test_a_redelivered_copy_that_fails_late_does_not_mark_the_succeeded_run_failed(
    llm_settings: Any, openai_server: OpenAIServer, carbonara: Recipe
) -> None:
    llm_settings.LLM_MAX_RETRIES = 0
    # The first copy gets a good reply after 0.3 s, the re-delivered copy a 500 after 1 s.
    openai_server.reply_json({"cuisine": ["italian"]}, logprobs=False, delay=0.3)
    openai_server.reply_status(500, delay=1.0)
    # run_create, not recipe_tag_async: this test commits, and the session's worker must not take the run.
    run = run_create(recipe=carbonara, config=TaggingConfig(strategy="llm", categories=("cuisine",)))

    def first_copy() -> None:
        try:
            run_execute(run_id=run.pk)
        finally:
            connection.close()

    first = threading.Thread(target=first_copy)
    first.start()
    assert wait_for(lambda: len(openai_server.requests) == 1, timeout=5, interval=0.01)
    with contextlib.suppress(LLMFailed):
        run_execute(run_id=run.pk)
    first.join(timeout=10)

    run.refresh_from_db()
    assert tags_stored(run) == {"cuisine": [("italian", 0.8)]}
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.error == ""
