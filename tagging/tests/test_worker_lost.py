"""A worker process killed with SIGKILL in the middle of a batch job: the broker re-delivers the message it
held (reject_on_worker_lost), the replacement process takes the run over, and every recipe ends up tagged
exactly once."""

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
from rest_framework.test import APIClient

from conftest import BASE_DIR, wait_for, worker_start, worker_stop
from tagging.models import Recipe, RunStatus, TagAssignment, TaggingRun
from tagging.services.recipes import recipe_content_hash

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]

INGREDIENTS = [
    ["spaghetti", "eggs", "pecorino"],
    ["tortillas", "beef", "salsa"],
    ["rice", "miso", "tofu"],
    ["lettuce", "feta", "olives"],
    ["chickpeas", "tahini", "lemon"],
]
# Enough that the job is far from done when the child is killed (after 10 runs), few enough to finish quickly:
# how many recipes there are is not what this test is about.
RECIPES = 50


@pytest.fixture
def prefork_worker(taxonomy: dict[str, Any], settings: Any) -> Iterator[subprocess.Popen[bytes]]:
    """A worker with one prefork child (the parent notices when its child dies and starts another), on a
    queue of its own that this process sends to, so no other test worker takes the job's tasks."""
    queue = f"autotagger-test-killed-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    log_path = BASE_DIR / ".data" / f"test-worker-killed-{os.getpid()}.log"
    process = worker_start(queue=queue, log_path=log_path, pool=("--pool=prefork", "--concurrency=1"))
    yield process
    worker_stop(process)
    log_path.unlink(missing_ok=True)
    from autotagger.redis import redis_client

    redis_client().delete(queue)


def _child(worker: subprocess.Popen[bytes]) -> psutil.Process:
    """The worker's pool process (the parent replaces one that died)."""
    assert wait_for(lambda: psutil.Process(worker.pid).children(), timeout=30), "the worker has no pool process"
    child: psutil.Process = psutil.Process(worker.pid).children()[0]
    return child


def _kill_mid_run(worker: subprocess.Popen[bytes], job_id: int) -> int:
    """SIGKILL the worker's child while it holds a run of the job (frozen with SIGSTOP to look); the run's id."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        child = _child(worker)
        child.send_signal(signal.SIGSTOP)
        holding = TaggingRun.objects.filter(job_id=job_id, status=RunStatus.RUNNING).values_list("id", flat=True)
        if len(holding) == 1:
            child.send_signal(signal.SIGKILL)
            return holding[0]
        child.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    pytest.fail("the worker was never caught holding a run of the job")


def test_a_worker_killed_mid_job_leaves_every_recipe_tagged_exactly_once(
    prefork_worker: subprocess.Popen[bytes], token_client: APIClient, api_client_user: Any
) -> None:
    recipes = Recipe.objects.bulk_create(
        [
            Recipe(
                created_by=api_client_user,
                title=f"Dish {i}",
                ingredients=INGREDIENTS[i % len(INGREDIENTS)],
                content_hash=recipe_content_hash(
                    title=f"Dish {i}", ingredients=INGREDIENTS[i % len(INGREDIENTS)], instructions=""
                ),
            )
            for i in range(RECIPES)
        ]
    )
    response = token_client.post(
        "/api/v1/recipes/tag",
        {"recipe_ids": [r.pk for r in recipes], "strategy": "similarity", "categories": ["cuisine"], "k": 1},
        format="json",
    )
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    runs = TaggingRun.objects.filter(job_id=job_id)
    assert wait_for(lambda: runs.filter(status=RunStatus.SUCCEEDED).count() >= 10, timeout=180)

    killed_run = _kill_mid_run(prefork_worker, job_id)

    finished = wait_for(lambda: runs.filter(status=RunStatus.SUCCEEDED).count() == RECIPES, timeout=400, interval=0.5)
    assert finished, f"{runs.exclude(status=RunStatus.SUCCEEDED).values_list('id', 'status', 'attempts')[:20]}"
    body = token_client.get(f"/api/v1/jobs/{job_id}").json()
    assert (body["status"], body["done"], body["failed"], body["pending"]) == ("finished", RECIPES, 0, 0)
    assert sorted(runs.values_list("recipe_id", flat=True)) == sorted(r.pk for r in recipes)
    # The killed child's message was delivered again and the new child took the run over.
    taken_over = TaggingRun.objects.get(pk=killed_run)
    assert taken_over.attempts == 2
    assert set(runs.exclude(pk=killed_run).values_list("attempts", flat=True)) == {1}
    # At most one assignment per run (k=1, one category): no run's result was stored twice.
    per_run = TagAssignment.objects.filter(run__job_id=job_id).values("run_id").annotate(n=Count("id"))
    assert {row["n"] for row in per_run} == {1}
    assert TagAssignment.objects.filter(run_id=killed_run).count() <= 1
    assert prefork_worker.poll() is None
