"""Runs asked through the Batch API: the same question as live, answered at half price, stored as live runs
are; what a batch leaves unanswered is asked again, and only that (the provider is the scripted HTTP server,
prompts/tests/openai_server.py, its Files and Batches endpoints included)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from prompts.models import LLMCall, LLMCallOutcome
from prompts.selectors import prompt_version_active_row
from prompts.tests.openai_server import OpenAIServer
from tagging.dispatch import runs_submit_batch
from tagging.models import (
    LLMBatch,
    LLMBatchItem,
    LLMBatchItemOutcome,
    LLMBatchStatus,
    Recipe,
    RunStatus,
    TaggingRun,
)
from tagging.services.batches import BatchPolled, BatchUnsupported, llm_batch_poll, llm_batches_overdue
from tagging.tests.conftest import demo_recipe
from tagging.tests.helpers import plan_of, run_executed, run_queued, slugs_offered, tags_stored
from taxonomy.models import Category, Tag
from taxonomy.selectors import taxonomy_version_current

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy_without_rules")]

TITLES = ("Spaghetti Carbonara", "Beef Tacos", "Greek Salad")


@pytest.fixture
def batch_settings(llm_settings: Any) -> Any:
    """The default source offers the Batch API; polls are not spaced out (the tests poll by hand)."""
    llm_settings.LLM_SUPPORTS_BATCH = True
    llm_settings.LLM_BATCH_POLL_SECONDS = 0
    llm_settings.LLM_BATCH_MAX_WAIT_HOURS = 25.0
    llm_settings.LLM_BATCH_MAX_ROUNDS = 2
    return llm_settings


@pytest.fixture
def recipes(db: None, demo_recipes: list[dict[str, Any]]) -> list[Recipe]:
    return [demo_recipe(demo_recipes, title) for title in TITLES]


def greedy_model(request: dict[str, Any]) -> dict[str, list[str]]:
    """Picks every tag it is offered, best or not, and one the taxonomy does not have."""
    return {category: [*slugs, "made-up"] for category, slugs in slugs_offered(request).items()}


def queued(recipes: Sequence[Recipe], **config: Any) -> list[TaggingRun]:
    return [run_queued(recipe, **{"categories": ("cuisine", "diet"), "k": 2, **config}) for recipe in recipes]


def poll(batch: LLMBatch, live: list[int] | None = None) -> BatchPolled:
    """One poll, as the task makes it; the runs it sends live are added to `live`."""
    sent = live if live is not None else []
    polled = llm_batch_poll(batch_id=batch.pk, enqueue_live=sent.extend)
    return polled


def test_a_batched_run_asks_exactly_what_the_live_run_asks(
    batch_settings: Any, openai_server: OpenAIServer, recipes: list[Recipe]
) -> None:
    batched = queued(recipes[:1])[0]

    batch = runs_submit_batch(run_ids=[batched.pk])
    openai_server.reply_json({"cuisine": ["italian"], "diet": []})
    run_executed(queued(recipes[:1])[0])

    lines = openai_server.batch_lines(batch.provider_batch_id)
    assert [line["custom_id"] for line in lines] == [f"run-{batched.pk}"]
    assert lines[0]["method"] == "POST"
    assert lines[0]["url"] == "/v1/chat/completions"
    assert lines[0]["body"] == openai_server.requests[0]
    assert openai_server.batches[batch.provider_batch_id]["endpoint"] == "/v1/chat/completions"
    assert openai_server.batches[batch.provider_batch_id]["completion_window"] == "24h"
    assert openai_server.files[openai_server.batches[batch.provider_batch_id]["input_file_id"]]["purpose"] == "batch"


def test_a_batch_is_polled_until_completed_then_its_runs_are_stored_within_the_taxonomy_and_k(
    batch_settings: Any, openai_server: OpenAIServer, recipes: list[Recipe]
) -> None:
    runs = queued(recipes)
    openai_server.script_batch(in_progress=1)
    openai_server.reply_computed(greedy_model, times=len(runs))

    prompt = prompt_version_active_row()
    assert prompt is not None
    batch = runs_submit_batch(run_ids=[run.pk for run in runs])
    waiting = [TaggingRun.objects.get(pk=run.pk) for run in runs]
    first = poll(batch)
    second = poll(batch)

    assert all(run.status == RunStatus.QUEUED and run.claimed_by == batch.claim for run in waiting)
    assert first.again
    assert not first.stored
    assert not second.again
    assert sorted(second.stored) == sorted(run.pk for run in runs)
    batch.refresh_from_db()
    assert (batch.status, batch.provider_status, batch.polls) == (LLMBatchStatus.COLLECTED, "completed", 2)
    assert batch.output_file_id
    assert batch.input_file_id
    for run in runs:
        run.refresh_from_db()
        assert run.status == RunStatus.SUCCEEDED, run.error
        stored = tags_stored(run)
        assert set(stored) == {"cuisine", "diet"}
        for category, tags in stored.items():
            assert 1 <= len(tags) <= 2
            assert {slug for slug, _ in tags} <= set(
                Tag.objects.filter(category__slug=category, active=True).values_list("slug", flat=True)
            )
        assert run.stats["unknown_dropped"] == 2
        assert run.stats["over_k_dropped"] > 0
        assert (run.stats["input_tokens"], run.stats["output_tokens"]) == (100, 20)
        # (100 tokens x $0.5 + 20 x $1.5) per 1,000 is $0.08 live: half that in a batch.
        assert run.stats["cost"] == pytest.approx(0.04)
        calls = LLMCall.objects.filter(run_id=run.pk)
        assert [(c.outcome, c.cost) for c in calls] == [(LLMCallOutcome.OK, pytest.approx(0.04))]
        assert (run.llm_source, run.llm_model, run.prompt_version_id) == ("default", "test-model", prompt.pk)
        assert (run.taxonomy_version, run.content_hash) == (taxonomy_version_current(), run.recipe.content_hash)
        assert Recipe.objects.get(pk=run.recipe_id).current_run_id == run.pk
    assert set(LLMBatchItem.objects.filter(batch=batch).values_list("outcome", flat=True)) == {
        LLMBatchItemOutcome.SUCCEEDED
    }
    assert openai_server.requests == [], "nothing was asked live"


def test_an_error_line_and_a_missing_line_re_queue_exactly_those_two_runs(
    batch_settings: Any, openai_server: OpenAIServer, recipes: list[Recipe]
) -> None:
    answered, errored, missing = queued(recipes)
    openai_server.script_batch(errors={f"run-{errored.pk}": 500}, missing={f"run-{missing.pk}"})
    openai_server.script_batch()
    openai_server.reply_computed(greedy_model, times=3)

    batch = runs_submit_batch(run_ids=[answered.pk, errored.pk, missing.pk])
    polled = poll(batch)

    assert polled.stored == [answered.pk]
    assert polled.next_batch is not None
    assert polled.next_batch.round == 2
    again = [line["custom_id"] for line in openai_server.batch_lines(polled.next_batch.provider_batch_id)]
    assert sorted(again) == sorted([f"run-{errored.pk}", f"run-{missing.pk}"])
    outcomes = dict(LLMBatchItem.objects.filter(batch=batch).values_list("run_id", "error_code"))
    assert outcomes == {answered.pk: "", errored.pk: "llm_unavailable", missing.pk: "llm_batch_no_answer"}
    assert LLMCall.objects.filter(run_id=errored.pk, outcome=LLMCallOutcome.SERVER_ERROR).count() == 1

    second = poll(polled.next_batch)

    assert sorted(second.stored) == sorted([errored.pk, missing.pk])
    assert LLMCall.objects.filter(run_id=answered.pk).count() == 1
    for run in (answered, errored, missing):
        run.refresh_from_db()
        assert run.status == RunStatus.SUCCEEDED
    assert TaggingRun.objects.filter(pk__in=[r.pk for r in (answered, errored, missing)]).count() == 3


def test_after_the_last_round_the_runs_still_unanswered_go_live_and_only_those(
    batch_settings: Any, openai_server: OpenAIServer, recipes: list[Recipe]
) -> None:
    batch_settings.LLM_BATCH_MAX_ROUNDS = 1
    answered, missing, _ = queued(recipes)
    openai_server.script_batch(missing={f"run-{missing.pk}"})
    openai_server.reply_computed(greedy_model, times=1)
    live: list[int] = []

    batch = runs_submit_batch(run_ids=[answered.pk, missing.pk])
    polled = poll(batch, live)

    assert polled.next_batch is None
    assert polled.live == [missing.pk]
    missing.refresh_from_db()
    assert (missing.status, missing.claimed_by) == (RunStatus.QUEUED, "")


def test_an_expired_batch_stores_what_it_answered_and_re_queues_all_it_did_not(
    batch_settings: Any, openai_server: OpenAIServer, recipes: list[Recipe]
) -> None:
    runs = queued(recipes)
    unfinished = {f"run-{runs[1].pk}", f"run-{runs[2].pk}"}
    openai_server.script_batch(in_progress=1, outcome="expired", missing=unfinished)
    openai_server.script_batch(outcome="completed")
    openai_server.reply_computed(greedy_model, times=3)

    batch = runs_submit_batch(run_ids=[run.pk for run in runs])
    poll(batch)
    polled = poll(batch)

    batch.refresh_from_db()
    assert batch.provider_status == "expired"
    assert polled.stored == [runs[0].pk]
    assert polled.next_batch is not None
    assert {line["custom_id"] for line in openai_server.batch_lines(polled.next_batch.provider_batch_id)} == unfinished


def test_a_batch_the_provider_fails_re_queues_all_its_runs(
    batch_settings: Any, openai_server: OpenAIServer, recipes: list[Recipe]
) -> None:
    runs = queued(recipes[:2])
    openai_server.script_batch(outcome="failed")
    openai_server.script_batch(outcome="completed")
    openai_server.reply_computed(greedy_model, times=2)

    batch = runs_submit_batch(run_ids=[run.pk for run in runs])
    polled = poll(batch)

    batch.refresh_from_db()
    assert batch.provider_status == "failed"
    assert "refused" in batch.error
    assert polled.stored == []
    assert polled.next_batch is not None
    assert len(openai_server.batch_lines(polled.next_batch.provider_batch_id)) == 2


def test_a_source_without_the_batch_api_is_refused_and_its_runs_are_left_as_they_were(
    llm_settings: Any, openai_server: OpenAIServer, recipes: list[Recipe]
) -> None:
    runs = queued(recipes[:2])

    with pytest.raises(BatchUnsupported) as refused:
        runs_submit_batch(run_ids=[run.pk for run in runs])

    assert refused.value.code == "llm_batch_unsupported"
    assert "default" in refused.value.message
    assert not LLMBatch.objects.exists()
    assert openai_server.files == {}
    assert openai_server.batches == {}
    for run in runs:
        run.refresh_from_db()
        assert (run.status, run.claimed_by) == (RunStatus.QUEUED, "")


def test_polling_is_bounded_then_the_runs_go_live(
    batch_settings: Any, openai_server: OpenAIServer, recipes: list[Recipe]
) -> None:
    # Two hours at one poll an hour: three polls at most (the test polls at once rather than hourly).
    batch_settings.LLM_BATCH_POLL_SECONDS = 3600
    batch_settings.LLM_BATCH_MAX_WAIT_HOURS = 2
    runs = queued(recipes[:2])
    openai_server.script_batch(in_progress=1000)
    live: list[int] = []

    batch = runs_submit_batch(run_ids=[run.pk for run in runs])
    polls = [poll(batch, live) for _ in range(5)]

    assert [p.again for p in polls] == [True, True, False, False, False]
    batch.refresh_from_db()
    assert (batch.status, batch.polls) == (LLMBatchStatus.GIVEN_UP, 3)
    assert polls[2].live == [run.pk for run in runs]
    assert openai_server.batch_retrievals[batch.provider_batch_id] == 3


def test_a_batch_given_up_is_cancelled_at_the_provider_so_it_is_not_paid_for_twice(
    batch_settings: Any, openai_server: OpenAIServer, recipes: list[Recipe]
) -> None:
    batch_settings.LLM_BATCH_MAX_WAIT_HOURS = 0
    runs = queued(recipes[:2])
    openai_server.script_batch(in_progress=1000)

    batch = runs_submit_batch(run_ids=[run.pk for run in runs])
    polled = poll(batch)

    batch.refresh_from_db()
    assert openai_server.cancelled == [batch.provider_batch_id]
    assert (batch.status, batch.provider_status) == (LLMBatchStatus.GIVEN_UP, "cancelling")
    assert "cancelled at the provider" in batch.error
    assert polled.live == [run.pk for run in runs]


def test_a_cancel_the_provider_refuses_is_named_and_the_runs_still_go_live(
    batch_settings: Any, openai_server: OpenAIServer, recipes: list[Recipe]
) -> None:
    batch_settings.LLM_BATCH_MAX_WAIT_HOURS = 0
    runs = queued(recipes[:2])
    openai_server.script_batch(in_progress=1000)
    batch = runs_submit_batch(run_ids=[run.pk for run in runs])
    del openai_server.batches[batch.provider_batch_id]  # the provider no longer knows it

    polled = poll(batch)

    batch.refresh_from_db()
    assert openai_server.cancelled == []
    assert batch.status == LLMBatchStatus.GIVEN_UP
    assert "Cancelling it at the provider failed" in batch.error
    assert polled.live == [run.pk for run in runs]


def test_a_run_finished_live_meanwhile_is_not_stored_again(
    batch_settings: Any, openai_server: OpenAIServer, recipes: list[Recipe]
) -> None:
    run = queued(recipes[:1])[0]
    openai_server.reply_json({"cuisine": ["italian"], "diet": []})
    openai_server.reply_computed(greedy_model, times=1)

    batch = runs_submit_batch(run_ids=[run.pk])
    run_executed(run)
    polled = poll(batch)

    assert polled.stored == []
    assert LLMBatchItem.objects.get(batch=batch).outcome == LLMBatchItemOutcome.SKIPPED
    stored = tags_stored(TaggingRun.objects.get(pk=run.pk))
    assert {category: [slug for slug, _ in tags] for category, tags in stored.items()} == {"cuisine": ["italian"]}
    assert LLMCall.objects.filter(run_id=run.pk).count() == 2, "the live call and the batch's line"


def test_a_hybrid_run_through_a_batch_keeps_what_the_shortlist_accepted_when_it_was_asked(
    batch_settings: Any, openai_server: OpenAIServer, recipes: list[Recipe]
) -> None:
    batch_settings.HYBRID_ZERO_SHOT_ACCEPT = batch_settings.HYBRID_ACCEPT
    carbonara = recipes[0]
    plan = plan_of(carbonara, ("cuisine", "diet"), k=2)
    cuisine, diet = (Category.objects.get(slug=slug).pk for slug in ("cuisine", "diet"))
    accepted = [t.slug for t in plan.accepted[cuisine]]
    assert accepted == ["italian"], "the premise: similarity is sure carbonara is Italian"
    run = queued([carbonara], strategy="hybrid")[0]
    openai_server.reply_computed(greedy_model, times=1)

    batch = runs_submit_batch(run_ids=[run.pk])
    # Were the plan made again now, nothing would be taken without the model.
    batch_settings.HYBRID_ZERO_SHOT_ACCEPT = 1.01
    poll(batch)

    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    offered = slugs_offered(openai_server.batch_lines(batch.provider_batch_id)[0]["body"])
    assert "italian" not in offered.get("cuisine", [])
    stored = {slug: [tag for tag, _ in tags] for slug, tags in tags_stored(run).items()}
    assert stored["cuisine"][0] == "italian"
    assert 1 <= len(stored["diet"]) <= 2
    assert set(stored["diet"]) <= {t.slug for t in plan.shortlist[diet]}
    assert run.stats["accepted"] == {"cuisine": ["italian"]}
    assert run.stats["decided_by_similarity"] == 1


def test_a_batch_asks_each_run_in_its_strategys_prompt_and_records_it(
    batch_settings: Any, openai_server: OpenAIServer, recipes: list[Recipe]
) -> None:
    batch_settings.HYBRID_ACCEPT = 1.01  # nothing accepted without the model: the hybrid run asks too
    llm_run, hybrid_run = queued(recipes[:1])[0], queued(recipes[1:2], strategy="hybrid")[0]
    openai_server.reply_computed(greedy_model, times=2)

    batch = runs_submit_batch(run_ids=[llm_run.pk, hybrid_run.pk])
    poll(batch)

    bodies = {line["custom_id"]: line["body"] for line in openai_server.batch_lines(batch.provider_batch_id)}
    llm_system, hybrid_system = (
        next(m["content"] for m in bodies[f"run-{run.pk}"]["messages"] if m["role"] == "system")
        for run in (llm_run, hybrid_run)
    )
    assert llm_system.startswith("You tag recipes with tags from a fixed taxonomy.")
    assert hybrid_system.startswith("Tag the recipe: for each category")
    labels = {
        run.pk: (run.stats["prompt_version"], LLMCall.objects.get(run_id=run.pk).prompt_version)
        for run in TaggingRun.objects.filter(pk__in=[llm_run.pk, hybrid_run.pk])
    }
    assert labels == {
        llm_run.pk: ("tagging-default v1", "tagging-default v1"),
        hybrid_run.pk: ("tagging-hybrid v1", "tagging-hybrid v1"),
    }


def test_a_second_chain_of_polls_ends_at_its_first_poll(
    batch_settings: Any, openai_server: OpenAIServer, recipes: list[Recipe]
) -> None:
    run = queued(recipes[:1])[0]
    openai_server.script_batch(in_progress=10)
    batch = runs_submit_batch(run_ids=[run.pk])

    first = llm_batch_poll(batch_id=batch.pk, enqueue_live=list, after_polls=0)
    late = llm_batch_poll(batch_id=batch.pk, enqueue_live=list, after_polls=0)

    assert (first.again, first.polls) == (True, 1)
    assert (late.again, late.polls) == (False, 0)
    assert openai_server.batch_retrievals[batch.provider_batch_id] == 1


def test_the_sweep_finds_a_batch_whose_poll_is_overdue(
    batch_settings: Any, openai_server: OpenAIServer, recipes: list[Recipe]
) -> None:
    batch_settings.LLM_BATCH_POLL_SECONDS = 60
    run = queued(recipes[:1])[0]
    batch = runs_submit_batch(run_ids=[run.pk])
    fresh = llm_batches_overdue()
    LLMBatch.objects.filter(pk=batch.pk).update(
        submitted_at=timezone.now() - timedelta(minutes=10), polled_at=timezone.now() - timedelta(minutes=4)
    )

    overdue = llm_batches_overdue()

    assert fresh == []
    assert overdue == [(batch.pk, 0)]


def test_a_batch_left_unsubmitted_by_a_dead_process_is_given_up_and_its_runs_go_live(
    batch_settings: Any, recipes: list[Recipe]
) -> None:
    run = queued(recipes[:1])[0]
    batch = LLMBatch.objects.create(source="default", created_at=timezone.now())
    LLMBatch.objects.filter(pk=batch.pk).update(created_at=timezone.now() - timedelta(hours=4))
    TaggingRun.objects.filter(pk=run.pk).update(claimed_by=batch.claim)
    LLMBatchItem.objects.create(batch=batch, run=run, custom_id=f"run-{run.pk}", pending={"mode": "json_schema"})
    live: list[int] = []

    overdue = llm_batches_overdue()
    polled = poll(batch, live)

    assert overdue == [(batch.pk, 0)]
    assert polled.live == [run.pk]
    batch.refresh_from_db()
    assert (batch.status, batch.error) == (LLMBatchStatus.GIVEN_UP, "The batch was never submitted.")
    run.refresh_from_db()
    assert (run.status, run.claimed_by) == (RunStatus.QUEUED, "")


def test_a_download_failing_half_way_records_nothing_and_the_next_poll_collects_it_all_once(
    batch_settings: Any, openai_server: OpenAIServer, recipes: list[Recipe]
) -> None:
    answered, errored = queued(recipes[:2])
    openai_server.script_batch(errors={f"run-{errored.pk}": 500})
    openai_server.script_batch()
    openai_server.reply_computed(greedy_model, times=2)
    # The output file downloads, the error file does not.
    openai_server.download_statuses.extend([200, 500])

    batch = runs_submit_batch(run_ids=[answered.pk, errored.pk])
    failed = poll(batch)
    collected = poll(batch)

    assert failed.again
    assert failed.stored == []
    assert collected.stored == [answered.pk]
    assert LLMCall.objects.filter(run_id=answered.pk).count() == 1
    assert LLMCall.objects.filter(run_id=errored.pk).count() == 1
    batch.refresh_from_db()
    assert (batch.status, batch.polls) == (LLMBatchStatus.COLLECTED, 2)
