"""Fixtures of the re-tagging tests: recipes with a known current run, and a job executed in this process."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest

from retagging.models import RetagJob
from retagging.services.chunks import retag_chunk_execute
from tagging.models import Recipe, RunStatus, Strategy, TagAssignment, TaggingRun
from tagging.services.recipes import recipe_create
from taxonomy.models import Tag


def run_with_tags(recipe: Recipe, tags: Iterable[str], *, current: bool = True) -> TaggingRun:
    """A succeeded similarity run of `recipe` with exactly `tags` ("category/slug"), made its current run."""
    tags = list(tags)
    run = TaggingRun.objects.create(
        recipe=recipe,
        strategy=Strategy.SIMILARITY,
        status=RunStatus.SUCCEEDED,
        config={"category_slugs": sorted({t.split("/")[0] for t in tags})},
    )
    for rank, name in enumerate(tags, start=1):
        category, slug = name.split("/")
        TagAssignment.objects.create(
            run=run, tag=Tag.objects.get(category__slug=category, slug=slug), score=0.9, rank=rank
        )
    if current:
        Recipe.objects.filter(pk=recipe.pk).update(current_run=run)
    return run


def tags_of(run_id: int | None) -> set[str]:
    return {
        f"{c}/{s}"
        for c, s in TagAssignment.objects.filter(run_id=run_id).values_list("tag__category__slug", "tag__slug")
    }


def current_run_id(recipe: Recipe) -> int | None:
    return Recipe.objects.values_list("current_run_id", flat=True).get(pk=recipe.pk)


def job_execute(job: RetagJob) -> RetagJob:
    """Execute every chunk of a similarity job here, as a worker would, in order."""
    for chunk_id in job.chunks.order_by("number").values_list("id", flat=True):
        retag_chunk_execute(chunk_id=chunk_id, delivery=None, send_runs=_no_runs, schedule_collect=_no_collect)
    job.refresh_from_db()
    return job


def _no_runs(run_ids: Any) -> None:
    raise AssertionError(f"a similarity job queued runs {run_ids}")


def _no_collect(chunk_id: int, countdown: int) -> None:
    raise AssertionError(f"a similarity job scheduled a collect for chunk {chunk_id}")


@pytest.fixture
def kitchen(taxonomy: dict[str, Any], demo_recipes: list[dict[str, Any]]) -> dict[str, Recipe]:
    """The demo recipes, stored, by title."""
    return {
        data["title"]: recipe_create(
            title=data["title"], ingredients=data["ingredients"], instructions=data["instructions"]
        )
        for data in demo_recipes
    }


@pytest.fixture
def recipe_titled(kitchen: dict[str, Recipe]) -> Callable[[str], Recipe]:
    return lambda title: kitchen[title]
