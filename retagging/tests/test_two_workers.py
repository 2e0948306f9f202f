"""Two Celery worker processes on one queue share a re-tagging job's chunks: each chunk is executed by exactly
one of them, once, and every recipe ends with exactly one new run."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.db.models import Count

from conftest import wait_for
from retagging.dispatch import retag_job_create
from retagging.models import ChunkStatus, ItemStatus, JobStatus, RetagJob
from tagging.models import Recipe, TaggingRun
from tagging.services.recipes import recipe_content_hash

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]

DISHES = [
    ("Spaghetti carbonara", ["spaghetti", "eggs", "pecorino", "guanciale"]),
    ("Beef tacos", ["tortillas", "beef", "salsa", "lime"]),
    ("Miso soup", ["dashi", "white miso", "tofu", "spring onion"]),
    ("Greek salad", ["tomatoes", "cucumber", "feta", "olives"]),
    ("Hummus", ["chickpeas", "tahini", "lemon", "garlic"]),
]


def _finished_chunk_tasks(log_path: Path) -> list[str]:
    """Ids of the chunk tasks a worker's log says it finished."""
    return re.findall(r"Task retagging\.chunk_execute\[([0-9a-f-]+)\] succeeded", log_path.read_text())


def test_two_workers_execute_every_chunk_of_a_job_once_and_tag_every_recipe_once(
    two_celery_workers: list[tuple[subprocess.Popen[bytes], Path]], taxonomy: dict[str, Any], settings: Any
) -> None:
    settings.RETAG_CHUNK_SIZE = 6
    recipes = Recipe.objects.bulk_create(
        [
            Recipe(
                title=f"{title} no. {i}",
                ingredients=ingredients,
                content_hash=recipe_content_hash(title=f"{title} no. {i}", ingredients=ingredients, instructions=""),
            )
            for i in range(48)
            for title, ingredients in [DISHES[i % len(DISHES)]]
        ]
    )

    job = retag_job_create(
        selection={"kind": "all"}, strategy="similarity", config={"categories": ["cuisine"], "k": 1}, dry_run=False
    )

    finished = wait_for(lambda: RetagJob.objects.get(pk=job.pk).finished, timeout=300, interval=0.5)
    job.refresh_from_db()
    assert finished, list(job.chunks.values_list("number", "status", "attempts"))
    assert job.status == JobStatus.SUCCEEDED
    assert job.summary["done"] == job.summary["total"] == 48
    chunks = list(job.chunks.values_list("claimed_by", "status", "attempts"))
    assert len(chunks) == 8
    assert {(status, attempts) for _, status, attempts in chunks} == {(ChunkStatus.DONE, 1)}
    # Each chunk's one message was finished by one worker, once; and both workers took some.
    finished_by = [_finished_chunk_tasks(log_path) for _, log_path in two_celery_workers]
    executed = finished_by[0] + finished_by[1]
    assert sorted(executed) == sorted(claimed_by for claimed_by, _, _ in chunks)
    assert all(finished_by), [len(tasks) for tasks in finished_by]
    per_recipe = TaggingRun.objects.filter(recipe__in=recipes).values("recipe_id").annotate(n=Count("id"))
    assert sorted(row["recipe_id"] for row in per_recipe) == sorted(r.pk for r in recipes)
    assert {row["n"] for row in per_recipe} == {1}
    assert set(job.items.values_list("status", flat=True)) == {ItemStatus.DONE}
    items = dict(job.items.values_list("recipe_id", "new_run_id"))
    assert dict(Recipe.objects.filter(pk__in=items).values_list("id", "current_run_id")) == items
