"""An llm re-tag: a chunk queues one run per recipe (carrying the categories not re-tagged over before the run
succeeds), and collecting finishes each item when its run ends: done with its diff, or failed with the run's
error; a run not finished in time fails its item."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from autotagger.errors import DomainError
from prompts.tests.openai_server import OpenAIServer
from retagging.dispatch import retag_job_create
from retagging.models import ChunkStatus, ItemStatus, JobStatus, RetagJob
from retagging.services.chunks import retag_chunk_collect, retag_chunk_execute
from retagging.tests.conftest import current_run_id, run_with_tags, tags_of
from tagging.models import Recipe, RunStatus, TaggingRun
from tagging.services.llm_runs import LLMFailed
from tagging.services.runs import run_execute

pytestmark = pytest.mark.django_db


class Queue:
    def __init__(self) -> None:
        self.runs: list[int] = []
        self.collects: list[tuple[int, int]] = []

    def send_runs(self, run_ids: Any) -> None:
        self.runs.extend(run_ids)

    def schedule_collect(self, chunk_id: int, countdown: int) -> None:
        self.collects.append((chunk_id, countdown))


def _llm_job(kitchen: dict[str, Recipe]) -> RetagJob:
    Recipe.objects.filter(pk__in=[kitchen["Beef Tacos"].pk, kitchen["Greek Salad"].pk]).update(source="blog")
    return retag_job_create(
        selection={"kind": "source", "value": "blog"},
        strategy="llm",
        config={"categories": ["cuisine"], "k": 1},
        dry_run=False,
    )


def test_an_llm_chunk_queues_runs_and_collecting_finishes_its_items(
    llm_settings: Any, openai_server: OpenAIServer, kitchen: dict[str, Recipe]
) -> None:
    tacos, salad = kitchen["Beef Tacos"], kitchen["Greek Salad"]
    previous = run_with_tags(tacos, ["cuisine/french", "course/dessert"])
    job = _llm_job(kitchen)
    chunk = job.chunks.get()
    queue = Queue()

    retag_chunk_execute(
        chunk_id=chunk.pk, delivery="d-1", send_runs=queue.send_runs, schedule_collect=queue.schedule_collect
    )

    runs = {run.recipe_id: run for run in TaggingRun.objects.filter(pk__in=queue.runs)}
    assert sorted(runs) == sorted([tacos.pk, salad.pk])
    assert all(run.status == RunStatus.QUEUED and run.sets_current for run in runs.values())
    assert tags_of(runs[tacos.pk].pk) == {"course/dessert"}
    assert queue.collects == [(chunk.pk, llm_settings.RETAG_COLLECT_INTERVAL_SECONDS)]

    openai_server.reply_json({"cuisine": ["mexican"]})
    run_execute(run_id=runs[tacos.pk].pk)
    openai_server.reply_status(400, "This model does not like salads")
    with pytest.raises(LLMFailed):
        run_execute(run_id=runs[salad.pk].pk)
    waiting = retag_chunk_collect(chunk_id=chunk.pk, schedule_collect=queue.schedule_collect)

    assert waiting == 0
    items = {item.recipe_id: item for item in job.items.all()}
    assert (items[tacos.pk].status, items[tacos.pk].previous_run_id) == (ItemStatus.DONE, previous.pk)
    assert (items[tacos.pk].added, items[tacos.pk].removed) == (["cuisine/mexican"], ["cuisine/french"])
    assert tags_of(items[tacos.pk].new_run_id) == {"cuisine/mexican", "course/dessert"}
    assert current_run_id(tacos) == runs[tacos.pk].pk
    assert items[salad.pk].status == ItemStatus.FAILED
    assert items[salad.pk].error == TaggingRun.objects.get(pk=runs[salad.pk].pk).error
    assert "rejected the request" in items[salad.pk].error
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert (job.summary["done"], job.summary["failed"]) == (1, 1)
    assert job.chunks.get().status == ChunkStatus.DONE


def test_a_chunk_taken_over_keeps_the_runs_it_queued(llm_settings: Any, kitchen: dict[str, Recipe]) -> None:
    job = _llm_job(kitchen)
    chunk = job.chunks.get()
    first, second = Queue(), Queue()
    retag_chunk_execute(
        chunk_id=chunk.pk, delivery="d-1", send_runs=first.send_runs, schedule_collect=first.schedule_collect
    )

    # The same message delivered again (its worker was lost): the chunk is taken over, no run is queued twice.
    retag_chunk_execute(
        chunk_id=chunk.pk, delivery="d-1", send_runs=second.send_runs, schedule_collect=second.schedule_collect
    )

    assert len(first.runs) == 2
    assert second.runs == []
    assert TaggingRun.objects.filter(recipe__source="blog").count() == 2
    assert len(second.collects) == 1


def test_runs_not_finished_in_time_fail_their_items(
    llm_settings: Any, kitchen: dict[str, Recipe], settings: Any
) -> None:
    job = _llm_job(kitchen)
    chunk = job.chunks.get()
    queue = Queue()
    retag_chunk_execute(
        chunk_id=chunk.pk, delivery="d-1", send_runs=queue.send_runs, schedule_collect=queue.schedule_collect
    )
    settings.RETAG_COLLECT_MAX_WAIT_SECONDS = 60
    job.chunks.update(started_at=timezone.now() - timezone.timedelta(seconds=61))

    retag_chunk_collect(chunk_id=chunk.pk, schedule_collect=queue.schedule_collect)

    assert set(job.items.values_list("status", flat=True)) == {ItemStatus.FAILED}
    assert "did not finish within 60 seconds" in job.items.first().error  # type: ignore[union-attr]
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED


def test_a_batch_job_sends_its_runs_through_the_batch_api(
    llm_settings: Any, kitchen: dict[str, Recipe], settings: Any
) -> None:
    settings.LLM_SUPPORTS_BATCH = True
    Recipe.objects.filter(pk=kitchen["Beef Tacos"].pk).update(source="blog")
    job = retag_job_create(
        selection={"kind": "source", "value": "blog"}, strategy="llm", config={}, dry_run=True, use_batch=True
    )
    live, batch = Queue(), Queue()

    retag_chunk_execute(
        chunk_id=job.chunks.get().pk,
        delivery="d-1",
        send_runs=live.send_runs,
        schedule_collect=live.schedule_collect,
        send_batch=batch.send_runs,
    )

    assert live.runs == []
    assert batch.runs == [job.items.get().new_run_id]
    assert live.collects == [(job.chunks.get().pk, settings.RETAG_BATCH_COLLECT_INTERVAL_SECONDS)]


def test_a_batch_job_needs_a_source_with_the_batch_api(llm_settings: Any, kitchen: dict[str, Recipe]) -> None:
    llm_settings.LLM_SUPPORTS_BATCH = False

    with pytest.raises(DomainError, match="does not offer the Batch API"):
        retag_job_create(selection={"kind": "all"}, strategy="llm", config={}, dry_run=True, use_batch=True)
    with pytest.raises(DomainError, match="Only the llm and hybrid strategies"):
        retag_job_create(selection={"kind": "all"}, strategy="similarity", config={}, dry_run=True, use_batch=True)
