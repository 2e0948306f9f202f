"""An evaluation job cut into chunks: each chunk is worked once, a chunk whose worker disappeared is taken
over (and no recipe asked twice), a chunk a live worker holds is left to it, and the job is scored once from
the chunks' partial counts, as scoring every answer at once would score it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from feedback.evaluation.jobs import (
    EvaluationJobBusy,
    evaluation_job_chunks_create,
    evaluation_job_run_here,
    evaluation_job_start,
    evaluation_job_step,
)
from feedback.models import EvaluationChunk, EvaluationChunkStatus, EvaluationItem, EvaluationJobStatus
from feedback.tests.evaluation_jobs import comparable, dataset_bytes, half_right
from prompts.tests.openai_server import OpenAIServer

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy")]

RECIPES = 11


@pytest.fixture
def one_at_a_time(settings: Any) -> Any:
    # The test's transaction is invisible to other connections: answers are asked from this thread.
    settings.EVALUATION_LLM_CONCURRENCY = 1
    return settings


def _start(strategy: str = "llm") -> int:
    job = evaluation_job_start(
        content=dataset_bytes(RECIPES), name="many", strategy=strategy, source=None, k=1, categories=["cuisine"]
    )
    return job.pk


def _answer_r4_stored_by_a_dead_worker(job_id: int) -> None:
    """Recipe r4's right answer, stored by a worker that died before finishing its chunk."""
    EvaluationItem.objects.create(
        job_id=job_id,
        position=4,
        recipe_id="r4",
        cache_key="asked-by-the-dead-worker",
        ok=True,
        predicted={"cuisine": [["italian", 0.9]]},
        stats={"stated_confidence": {"cuisine": {"italian": 0.9}}},
        latency_ms=12.0,
    )


def test_a_job_is_cut_into_chunks_of_its_lines_and_each_is_worked_once(
    llm_settings: Any, openai_server: OpenAIServer, one_at_a_time: Any
) -> None:
    openai_server.reply_computed(half_right, times=RECIPES)
    job_id = _start()

    assert evaluation_job_chunks_create(job_id=job_id, size=3) == 4
    assert evaluation_job_chunks_create(job_id=job_id, size=3) == 0
    job = evaluation_job_run_here(job_id=job_id)

    assert job.status == EvaluationJobStatus.SUCCEEDED, job.error
    chunks = list(
        EvaluationChunk.objects.filter(job_id=job_id)
        .order_by("number")
        .values_list("first", "size", "status", "attempts")
    )
    assert chunks == [(0, 3, "done", 1), (3, 3, "done", 1), (6, 3, "done", 1), (9, 2, "done", 1)]
    assert len(openai_server.requests) == RECIPES
    items = EvaluationItem.objects.filter(job_id=job_id).order_by("position")
    assert [item.recipe_id for item in items] == [f"r{i}" for i in range(RECIPES)]
    assert job.run is not None
    # Even-numbered recipes right (6 of 11), the others wrong: the stored scores add the chunks up.
    assert job.run.metrics["categories"]["cuisine"]["recall"] == round(6 / 11, 4)
    assert job.run.metrics["llm"]["confidence"]["pairs"] == RECIPES


def test_a_chunk_whose_worker_disappeared_is_taken_over_without_asking_twice(
    llm_settings: Any, openai_server: OpenAIServer, one_at_a_time: Any
) -> None:
    openai_server.reply_computed(half_right, times=RECIPES)
    job_id = _start()
    evaluation_job_chunks_create(job_id=job_id, size=4)
    # What a worker killed in the middle of chunk 2 leaves: one answer stored, the chunk held, its lease run out.
    assert evaluation_job_step(job_id=job_id, token="first-worker") is True
    lost = EvaluationChunk.objects.get(job_id=job_id, number=2)
    EvaluationChunk.objects.filter(pk=lost.pk).update(
        status=EvaluationChunkStatus.RUNNING, claimed_by="dead-worker", attempts=1, lease_until=timezone.now()
    )
    _answer_r4_stored_by_a_dead_worker(job_id)
    already = len(openai_server.requests)

    job = evaluation_job_run_here(job_id=job_id)

    assert job.status == EvaluationJobStatus.SUCCEEDED, job.error
    lost.refresh_from_db()
    assert lost.status == EvaluationChunkStatus.DONE
    assert lost.attempts == 2
    assert lost.claimed_by != "dead-worker"
    assert already == 4
    assert len(openai_server.requests) == RECIPES - 1, "every recipe was asked once, the dead worker's answer kept"
    assert EvaluationItem.objects.filter(job_id=job_id).count() == RECIPES
    assert job.run is not None
    assert job.run.metrics["categories"]["cuisine"]["recall"] == round(6 / 11, 4)


def test_a_chunk_that_lost_its_worker_too_often_is_given_up_and_the_job_still_ends(
    llm_settings: Any, openai_server: OpenAIServer, one_at_a_time: Any
) -> None:
    llm_settings.EVALUATION_CHUNK_MAX_ATTEMPTS = 3
    openai_server.reply_computed(half_right, times=RECIPES)
    job_id = _start()
    evaluation_job_chunks_create(job_id=job_id, size=4)
    # Chunk 2 (recipes 4-7) killed its worker on each of its three deliveries; one answer was stored first.
    EvaluationChunk.objects.filter(job_id=job_id, number=2).update(
        status=EvaluationChunkStatus.RUNNING, claimed_by="dead-worker", attempts=3, lease_until=timezone.now()
    )
    _answer_r4_stored_by_a_dead_worker(job_id)

    job = evaluation_job_run_here(job_id=job_id)

    assert job.status == EvaluationJobStatus.SUCCEEDED, job.error
    given_up = EvaluationChunk.objects.get(job_id=job_id, number=2)
    assert (given_up.status, given_up.attempts) == (EvaluationChunkStatus.DONE, 4)
    assert len(openai_server.requests) == RECIPES - 4, "nothing of the given-up chunk was asked again"
    failed = EvaluationItem.objects.filter(job_id=job_id, ok=False).order_by("position")
    assert [item.recipe_id for item in failed] == ["r5", "r6", "r7"]
    assert all("delivered 3 times without finishing" in item.error for item in failed)
    assert job.run is not None
    # The given-up recipes count as returning nothing: 5 of 11 right (r0, r2, r4, r8, r10).
    assert job.run.metrics["categories"]["cuisine"]["recall"] == round(5 / 11, 4)


def test_a_chunk_a_live_worker_holds_is_left_to_it(
    llm_settings: Any, openai_server: OpenAIServer, one_at_a_time: Any
) -> None:
    openai_server.reply_computed(half_right, times=RECIPES)
    job_id = _start()
    evaluation_job_chunks_create(job_id=job_id, size=6)
    EvaluationChunk.objects.filter(job_id=job_id, number=2).update(
        status=EvaluationChunkStatus.RUNNING,
        claimed_by="live-worker",
        attempts=1,
        lease_until=timezone.now() + timedelta(minutes=5),
    )

    assert evaluation_job_step(job_id=job_id, token="another") is True
    with pytest.raises(EvaluationJobBusy):
        evaluation_job_step(job_id=job_id, token="another")

    assert EvaluationItem.objects.filter(job_id=job_id).count() == 6
    held = EvaluationChunk.objects.get(job_id=job_id, number=2)
    assert (held.claimed_by, held.attempts) == ("live-worker", 1)
    # Its own re-delivered message takes it back at once.
    assert evaluation_job_step(job_id=job_id, token="live-worker") is False
    held.refresh_from_db()
    assert (held.status, held.attempts) == (EvaluationChunkStatus.DONE, 2)


def test_the_same_answers_chunked_differently_score_the_same(
    llm_settings: Any, openai_server: OpenAIServer, one_at_a_time: Any
) -> None:
    openai_server.reply_computed(half_right, times=RECIPES)
    first = _start("hybrid")
    evaluation_job_chunks_create(job_id=first, size=2)
    in_small_chunks = evaluation_job_run_here(job_id=first)

    # The same questions again: answered from the first job's items, all in one chunk.
    second = _start("hybrid")
    evaluation_job_chunks_create(job_id=second, size=RECIPES)
    in_one_chunk = evaluation_job_run_here(job_id=second)

    assert in_small_chunks.run is not None
    assert in_one_chunk.run is not None
    assert in_one_chunk.run.metrics["llm"]["cache_hits"] == RECIPES
    assert comparable(in_small_chunks.run.metrics) == comparable(in_one_chunk.run.metrics)
    assert "hybrid" in in_one_chunk.run.metrics
    assert in_one_chunk.run.metrics["llm"]["tokens"]["prompt"] > 0
