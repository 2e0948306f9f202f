"""The llm strategy asks in the wording of the default tagging prompt's active version, the hybrid in that of its own
prompt (`tagging-hybrid`); each records which version it used, and does not reuse an answer given in another
wording."""

from __future__ import annotations

from typing import Any

import pytest

from prompts.models import DEFAULT_TAGGING_PROMPT, HYBRID_TAGGING_PROMPT, LLMCall, Prompt, PromptVersion
from prompts.services import prompt_version_activate, prompt_version_create, prompt_version_rollback
from prompts.tests.openai_server import OpenAIServer
from tagging.models import Recipe, RunStatus
from tagging.tests.conftest import demo_recipe
from tagging.tests.helpers import run_executed, run_queued, user_prompt

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy_without_rules")]

WORDING = "Prefer the cuisine the recipe names itself."


def system_prompt(request: dict[str, Any]) -> str:
    return next(m["content"] for m in request["messages"] if m["role"] == "system")


def second_version(staff: Any, name: str = DEFAULT_TAGGING_PROMPT) -> PromptVersion:
    prompt = Prompt.objects.get(name=name)
    first = PromptVersion.objects.get(prompt=prompt, number=1)
    return prompt_version_create(
        prompt=prompt,
        system_template=first.system_template + "\n" + WORDING,
        user_template=first.user_template.replace(
            "Tag the recipe above.", "Tag the recipe above, at most $k a category."
        ),
        notes="Names its cuisine.",
        author=staff,
        parent=first,
    )


def test_a_run_asks_in_the_active_versions_wording_and_records_it(
    llm_settings: Any, openai_server: OpenAIServer, carbonara: Recipe, staff: Any
) -> None:
    version = second_version(staff)
    openai_server.reply_json({"cuisine": ["italian"]})
    openai_server.reply_json({"cuisine": ["italian"]})
    before = run_executed(run_queued(carbonara, categories=("cuisine",), k=2))

    prompt_version_activate(version=version, actor=staff)
    after = run_executed(run_queued(carbonara, categories=("cuisine",), k=2))

    assert after.status == RunStatus.SUCCEEDED, after.error
    first_request, second_request = openai_server.requests
    assert WORDING not in system_prompt(first_request)
    assert "Tag the recipe above. Answer only" in user_prompt(first_request)
    assert system_prompt(second_request).endswith(WORDING)
    assert "Tag the recipe above, at most 2 a category." in user_prompt(second_request)
    assert (before.stats["prompt_version"], before.stats["prompt_version_id"]) == (
        f"{DEFAULT_TAGGING_PROMPT} v1",
        version.parent_id,
    )
    assert (after.stats["prompt_version"], after.stats["prompt_version_id"]) == (
        f"{DEFAULT_TAGGING_PROMPT} v2",
        version.pk,
    )
    assert LLMCall.objects.get(run_id=after.pk).prompt_version == f"{DEFAULT_TAGGING_PROMPT} v2"
    assert LLMCall.objects.get(run_id=before.pk).prompt_version == f"{DEFAULT_TAGGING_PROMPT} v1"


def test_activating_another_version_changes_the_cache_key_and_a_rollback_finds_the_old_answer(
    llm_settings: Any, openai_server: OpenAIServer, demo_recipes: list[dict[str, Any]], staff: Any
) -> None:
    first, twin, third = (demo_recipe(demo_recipes, "Beef Tacos", source=s) for s in ("a", "b", "c"))
    version = second_version(staff)
    openai_server.reply_json({"cuisine": ["mexican"]})
    openai_server.reply_json({"cuisine": ["american"]})
    original = run_executed(run_queued(first, categories=("cuisine",)))

    prompt_version_activate(version=version, actor=staff)
    reworded = run_executed(run_queued(twin, categories=("cuisine",)))
    prompt_version_rollback(prompt=version.prompt, actor=staff)
    rolled_back = run_executed(run_queued(third, categories=("cuisine",)))

    assert len(openai_server.requests) == 2
    assert reworded.stats["cache_hit"] is False
    assert reworded.stats["cache_key"] != original.stats["cache_key"]
    assert rolled_back.stats["cache_hit"] is True
    assert rolled_back.stats["cache_key"] == original.stats["cache_key"]
    assert rolled_back.stats["prompt_version"] == f"{DEFAULT_TAGGING_PROMPT} v1"


def test_the_hybrid_strategy_asks_in_its_own_prompts_active_wording(
    llm_settings: Any, openai_server: OpenAIServer, carbonara: Recipe, staff: Any
) -> None:
    llm_settings.HYBRID_ACCEPT = 1.01  # nothing accepted without the model: it is asked about every category
    prompt_version_activate(version=second_version(staff), actor=staff)
    prompt_version_activate(version=second_version(staff, HYBRID_TAGGING_PROMPT), actor=staff)
    openai_server.reply_json({"cuisine": ["italian"]}, logprobs=False)

    run = run_executed(run_queued(carbonara, strategy="hybrid", categories=("cuisine",), k=2))

    assert run.status == RunStatus.SUCCEEDED, run.error
    system = system_prompt(openai_server.requests[0])
    assert system.startswith("Tag the recipe: for each category")
    assert system.endswith(WORDING)
    assert "Answer keys" not in user_prompt(openai_server.requests[0])
    assert run.stats["prompt_version"] == f"{HYBRID_TAGGING_PROMPT} v2"
    assert LLMCall.objects.get(run_id=run.pk).prompt_version == f"{HYBRID_TAGGING_PROMPT} v2"


def test_a_new_version_of_the_llm_strategys_prompt_leaves_the_hybrids_wording_alone(
    llm_settings: Any, openai_server: OpenAIServer, carbonara: Recipe, staff: Any
) -> None:
    llm_settings.HYBRID_ACCEPT = 1.01
    prompt_version_activate(version=second_version(staff), actor=staff)
    openai_server.reply_json({"cuisine": ["italian"]}, logprobs=False)

    run = run_executed(run_queued(carbonara, strategy="hybrid", categories=("cuisine",), k=2))

    assert run.status == RunStatus.SUCCEEDED, run.error
    assert WORDING not in system_prompt(openai_server.requests[0])
    assert run.stats["prompt_version"] == f"{HYBRID_TAGGING_PROMPT} v1"
