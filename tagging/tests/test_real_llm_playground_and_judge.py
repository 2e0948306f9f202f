"""The prompt playground's comparison and the LLM judge against the real llama.cpp server with Gemma 3 270M (the
session fixture `llama_server`, prompts/tests/llama_server.py). The model is too small to tag or judge well, so
these check the protocol, never the quality: replies parse in the mode the server takes, tags stay in the
taxonomy and within k, verdicts are among those allowed, and every request is in the ledger with its usage."""

from __future__ import annotations

import os
from typing import Any

import pytest

from autotagger.recipe_text import RecipeText
from prompts.models import LLMCall, LLMCallOutcome, LLMSource, PromptPurpose
from prompts.selectors import prompt_version_active
from prompts.sources import llm_source_get
from prompts.tests.llama_server import LlamaServer
from tagging.models import JudgeVerdict, RunStatus, TagAssignment, TaggingRun, TagJudgement
from tagging.services.judging import run_judge
from tagging.services.playground import PLAYGROUND_LABEL_SUFFIX, PlaygroundSide, prompt_playground_run
from tagging.tests.conftest import TagAssignmentFactory, TaggingRunFactory
from tagging.tests.helpers import active_slugs, llama_source_create
from taxonomy.models import Tag

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy_without_rules")]

# One small category and k=1 keep the prompt short and the constrained reply a few tokens long (see
# test_real_llm_server.py: decoding by a grammar is slow on a busy machine).
CATEGORY = "meal_type"
K = 1
# Named for this process: concurrency slots are kept in a Redis that parallel test runs share.
SOURCE = f"llama-playground-{os.getpid()}"


@pytest.fixture
def llama_source(settings: Any, llama_server: LlamaServer) -> LLMSource:
    # A constrained reply takes a minute on two cores busy with other work: the budget of a call must hold it.
    settings.LLM_TIMEOUT_SECONDS = 180.0
    # As the probe finds it (test_real_llm_server.py proves the fallback from json_schema): one call per side.
    return llama_source_create(settings, llama_server, name=SOURCE, supports_json_schema=False, timeout_seconds=180)


def assert_side_kept_the_protocol(side: PlaygroundSide) -> None:
    assert not side.error, side.error
    assert side.mode == "json_object_schema"
    assert side.input_tokens > 0
    assert side.output_tokens > 0
    assert [c.slug for c in side.categories] == [CATEGORY]
    tags = side.categories[0].tags
    assert len(tags) <= K
    assert {t.slug for t in tags} <= active_slugs(CATEGORY)
    assert all(0.0 <= t.score <= 1.0 for t in tags)


def test_the_playground_compares_a_draft_with_the_active_version_on_a_real_model(llama_source: LLMSource) -> None:
    active = prompt_version_active()

    comparison = prompt_playground_run(
        draft_system="Answer briefly. " + active.system_template,
        draft_user=active.user_template,
        draft_label=f"draft from {active.label}",
        active=active,
        recipe=RecipeText(
            title="Blueberry pancakes",
            ingredients=["flour", "milk", "eggs", "blueberries"],
            instructions="Whisk, fry small pancakes, serve with syrup.",
        ),
        source=llm_source_get(name=SOURCE),
        categories=(CATEGORY,),
        k=K,
    )

    assert_side_kept_the_protocol(comparison.draft)
    assert_side_kept_the_protocol(comparison.active)
    assert comparison.draft.system.startswith("Answer briefly. ")
    calls = list(LLMCall.objects.order_by("id"))
    assert [c.outcome for c in calls] == [LLMCallOutcome.OK, LLMCallOutcome.OK]
    assert all(c.input_tokens > 0 for c in calls)
    assert {c.run_id for c in calls} == {None}
    assert [c.prompt_version for c in calls] == [
        f"draft from {active.label}{PLAYGROUND_LABEL_SUFFIX}",
        f"{active.label}{PLAYGROUND_LABEL_SUFFIX}",
    ]
    assert not TaggingRun.objects.exists()
    assert not TagAssignment.objects.exists()


def test_the_judge_rates_a_runs_tags_on_a_real_model(llama_source: LLMSource) -> None:
    run = TaggingRunFactory(status=RunStatus.SUCCEEDED)
    for rank, slug in enumerate(("breakfast", "dinner"), start=1):
        TagAssignmentFactory(run=run, tag=Tag.objects.get(category__slug=CATEGORY, slug=slug), rank=rank, score=0.8)

    result = run_judge(run=run, source=SOURCE)

    assert result.judged + result.missing == 2
    assert result.judged >= 1, "a reply decoded by the schema names every tag asked about"
    judgements = list(TagJudgement.objects.filter(assignment__run=run))
    assert len(judgements) == result.judged
    assert {j.verdict for j in judgements} <= set(JudgeVerdict.values)
    assert all(len(j.reason) <= 80 for j in judgements)
    label = prompt_version_active(purpose=PromptPurpose.JUDGING).label
    calls = list(LLMCall.objects.filter(run_id=run.pk).order_by("id"))
    assert len(calls) == result.calls
    assert {c.prompt_version for c in calls} == {label}
    answered = calls[-1]
    assert answered.outcome == LLMCallOutcome.OK
    assert answered.input_tokens > 0
    assert answered.output_tokens > 0
