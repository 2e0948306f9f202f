"""Two Celery worker processes on one queue share an evaluation job's chunks: each chunk is claimed once, both
workers take some, every recipe is asked once, and the stored result is the one a single process gets."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from conftest import wait_for
from feedback.dispatch import evaluation_job_enqueue
from feedback.evaluation.jobs import evaluation_job_chunks_create, evaluation_job_run_here, evaluation_job_start
from feedback.models import EvaluationChunk, EvaluationChunkStatus, EvaluationItem, EvaluationJob, EvaluationJobStatus
from feedback.tests.evaluation_jobs import comparable, dataset_bytes, half_right
from prompts.models import LLMSource
from prompts.tests.openai_server import OpenAIServer

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]

RECIPES = 16


def _finished_steps(log_path: Path) -> set[str]:
    """Ids of the evaluation steps a worker's log says it finished."""
    return set(re.findall(r"Task feedback\.evaluation_job_step\[([0-9a-f-]+)\] succeeded", log_path.read_text()))


def test_two_workers_share_the_chunks_of_an_evaluation_job_and_store_what_one_process_stores(
    two_celery_workers: list[tuple[subprocess.Popen[bytes], Path]],
    openai_server: OpenAIServer,
    taxonomy: dict[str, Any],
    settings: Any,
) -> None:
    # A source row the worker processes read too (settings changed here stay in this process).
    LLMSource.objects.create(name="scripted", base_url=openai_server.url, model="test-model", probed_at=timezone.now())
    openai_server.reply_computed(half_right, times=RECIPES)
    job = evaluation_job_start(
        content=dataset_bytes(RECIPES), name="many", strategy="llm", source="scripted", k=1, categories=["cuisine"]
    )
    assert evaluation_job_chunks_create(job_id=job.pk, size=2) == 8

    evaluation_job_enqueue(job=job)

    finished = wait_for(
        lambda: (
            EvaluationJob.objects.get(pk=job.pk).status in (EvaluationJobStatus.SUCCEEDED, EvaluationJobStatus.FAILED)
        ),
        timeout=300,
        interval=0.5,
    )
    job.refresh_from_db()
    chunks = list(EvaluationChunk.objects.filter(job=job).values_list("claimed_by", "status", "attempts"))
    assert finished, chunks
    assert job.status == EvaluationJobStatus.SUCCEEDED, job.error
    assert len(chunks) == 8
    assert {(status, attempts) for _, status, attempts in chunks} == {(EvaluationChunkStatus.DONE, 1)}
    # Each chunk was claimed by one step, and each of those steps ran on one worker, once; both workers took some.
    claimed_by = [claimed for claimed, _, _ in chunks]
    finished_by = [_finished_steps(log_path) for _, log_path in two_celery_workers]
    assert len(set(claimed_by)) == 8
    assert set(claimed_by) <= finished_by[0] | finished_by[1]
    assert not finished_by[0] & finished_by[1]
    assert all(set(claimed_by) & steps for steps in finished_by), [len(steps) for steps in finished_by]
    assert len(openai_server.requests) == RECIPES, "every recipe was asked once"
    assert EvaluationItem.objects.filter(job=job).count() == RECIPES
    assert job.run is not None

    # The same job done by this one process, in chunks of another size (its answers come from the first job's).
    alone = evaluation_job_start(
        content=dataset_bytes(RECIPES), name="many", strategy="llm", source="scripted", k=1, categories=["cuisine"]
    )
    evaluation_job_chunks_create(job_id=alone.pk, size=5)
    one_process = evaluation_job_run_here(job_id=alone.pk)

    assert one_process.run is not None
    assert comparable(job.run.metrics) == comparable(one_process.run.metrics)
    assert job.run.metrics["categories"]["cuisine"]["recall"] == 0.5
    assert len(openai_server.requests) == RECIPES
