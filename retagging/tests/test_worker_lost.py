"""A worker process killed with SIGKILL in the middle of a re-tagging chunk: the broker re-delivers the chunk's
message (reject_on_worker_lost), the replacement process takes the chunk over and skips what was done, and the
job ends with every recipe re-tagged exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from django.db.models import Count

from conftest import BASE_DIR, wait_for, worker_start, worker_stop
from retagging.dispatch import retag_job_create
from retagging.models import ChunkStatus, ItemStatus, JobStatus, RetagChunk, RetagJob
from tagging.models import Recipe, TagAssignment, TaggingRun
from tagging.services.recipes import recipe_content_hash

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]

INGREDIENTS = [
    ["spaghetti", "eggs", "pecorino"],
    ["tortillas", "beef", "salsa"],
    ["rice", "miso", "tofu"],
    ["lettuce", "feta", "olives"],
    ["chickpeas", "tahini", "lemon"],
]
# Six chunks of ten: the job is far from done when the child is killed (after the first chunk), and finishes
# quickly; how many recipes there are is not what this test is about.
RECIPES = 60


@pytest.fixture
def prefork_worker(taxonomy: dict[str, Any], settings: Any) -> Iterator[subprocess.Popen[bytes]]:
    """A worker with one prefork child (the parent replaces one that dies), on a queue of its own."""
    queue = f"autotagger-test-retag-killed-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    log_path = BASE_DIR / ".data" / f"test-worker-retag-killed-{os.getpid()}.log"
    process = worker_start(queue=queue, log_path=log_path, pool=("--pool=prefork", "--concurrency=1"))
    yield process
    worker_stop(process)
    log_path.unlink(missing_ok=True)
    from autotagger.redis import redis_client

    redis_client().delete(queue)


def _kill_mid_chunk(worker: subprocess.Popen[bytes], job: RetagJob) -> int:
    """SIGKILL the worker's child while it holds a chunk of the job (frozen with SIGSTOP to look); the chunk."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert wait_for(lambda: psutil.Process(worker.pid).children(), timeout=30), "the worker has no pool process"
        child = psutil.Process(worker.pid).children()[0]
        child.send_signal(signal.SIGSTOP)
        holding = list(job.chunks.filter(status=ChunkStatus.RUNNING).values_list("id", flat=True))
        if len(holding) == 1:
            child.send_signal(signal.SIGKILL)
            return holding[0]
        child.send_signal(signal.SIGCONT)
        time.sleep(0.02)
    pytest.fail("the worker was never caught holding a chunk of the job")


def test_a_worker_killed_mid_chunk_leaves_every_recipe_re_tagged_exactly_once(
    prefork_worker: subprocess.Popen[bytes], settings: Any
) -> None:
    settings.RETAG_CHUNK_SIZE = 10
    recipes = Recipe.objects.bulk_create(
        [
            Recipe(
                title=f"Dish {i}",
                ingredients=INGREDIENTS[i % len(INGREDIENTS)],
                content_hash=recipe_content_hash(
                    title=f"Dish {i}", ingredients=INGREDIENTS[i % len(INGREDIENTS)], instructions=""
                ),
            )
            for i in range(RECIPES)
        ]
    )
    job = retag_job_create(
        selection={"kind": "all"}, strategy="similarity", config={"categories": ["cuisine"], "k": 1}, dry_run=False
    )
    assert wait_for(lambda: job.items.filter(status=ItemStatus.DONE).count() >= 10, timeout=180)

    killed = _kill_mid_chunk(prefork_worker, job)

    finished = wait_for(lambda: RetagJob.objects.get(pk=job.pk).finished, timeout=400, interval=0.5)
    job.refresh_from_db()
    assert finished, list(job.chunks.values_list("number", "status", "attempts"))
    assert job.status == JobStatus.SUCCEEDED
    assert job.summary["done"] == job.summary["total"] == RECIPES
    # The killed child's message came back and the new child took the chunk over.
    assert RetagChunk.objects.get(pk=killed).attempts == 2
    assert set(job.chunks.exclude(pk=killed).values_list("attempts", flat=True)) == {1}
    # One run per recipe, none lost, none doubled; every pointer on the job's run.
    per_recipe = TaggingRun.objects.filter(recipe__in=recipes).values("recipe_id").annotate(n=Count("id"))
    assert sorted(row["recipe_id"] for row in per_recipe) == sorted(r.pk for r in recipes)
    assert {row["n"] for row in per_recipe} == {1}
    items = dict(job.items.values_list("recipe_id", "new_run_id"))
    assert dict(Recipe.objects.filter(pk__in=items).values_list("id", "current_run_id")) == items
    per_run = TagAssignment.objects.filter(run_id__in=items.values()).values("run_id").annotate(n=Count("id"))
    assert {row["n"] for row in per_run} <= {1}
    assert prefork_worker.poll() is None
