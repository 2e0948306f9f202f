"""A batch of runs on the real worker: submitted here, polled and collected by the Celery worker over real
HTTP (the scripted server), with the runs sent live when the batch is refused."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from conftest import wait_for
from prompts.tests.conftest import LLMSourceFactory
from prompts.tests.openai_server import OpenAIServer
from tagging.dispatch import runs_submit_batch_or_live
from tagging.models import LLMBatch, LLMBatchStatus, Recipe, RunStatus, TaggingRun
from tagging.services.config import TaggingConfig
from tagging.services.runs import run_create
from tagging.tests.conftest import demo_recipe
from tagging.tests.helpers import slugs_offered, tags_stored

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


def first_offered(request: dict[str, Any]) -> dict[str, list[str]]:
    return {category: slugs[:1] for category, slugs in slugs_offered(request).items()}


def finished(run_id: int) -> TaggingRun:
    done = wait_for(
        lambda: TaggingRun.objects.filter(pk=run_id, status__in=[RunStatus.SUCCEEDED, RunStatus.FAILED]).exists(),
        timeout=90,
    )
    assert done, "the worker did not finish the run within 90 s; see the test-worker log in .data/"
    return TaggingRun.objects.get(pk=run_id)


@pytest.fixture
def recipes(demo_recipes: list[dict[str, Any]]) -> list[Recipe]:
    return [demo_recipe(demo_recipes, title) for title in ("Beef Tacos", "Greek Salad")]


def queued(recipes: list[Recipe], source: str) -> list[TaggingRun]:
    config = TaggingConfig(strategy="llm", categories=("cuisine",), k=1, source=source)
    return [run_create(recipe=recipe, config=config) for recipe in recipes]


def test_the_worker_polls_a_batch_until_it_completes_and_stores_its_runs(
    worker: Any, openai_server: OpenAIServer, recipes: list[Recipe]
) -> None:
    LLMSourceFactory(name="batchy", base_url=openai_server.url, model="batch-model", supports_batch=True)
    runs = queued(recipes, "batchy")
    openai_server.script_batch(in_progress=2)
    openai_server.reply_computed(first_offered, times=len(runs))

    batch = runs_submit_batch_or_live(run_ids=[run.pk for run in runs])

    assert batch is not None
    stored = [finished(run.pk) for run in runs]
    assert [run.status for run in stored] == [RunStatus.SUCCEEDED, RunStatus.SUCCEEDED], [r.error for r in stored]
    assert all(len(tags_stored(run)["cuisine"]) == 1 for run in stored)
    batch.refresh_from_db()
    assert batch.status == LLMBatchStatus.COLLECTED
    assert batch.polls == 3
    assert openai_server.requests == []


def test_runs_whose_source_has_no_batch_api_are_sent_live_to_the_worker(
    worker: Any, openai_server: OpenAIServer, recipes: list[Recipe]
) -> None:
    LLMSourceFactory(name="live-only", base_url=openai_server.url, model="live-model", probed_at=timezone.now())
    runs = queued(recipes, "live-only")
    openai_server.reply_computed(first_offered, times=len(runs))

    batch = runs_submit_batch_or_live(run_ids=[run.pk for run in runs])

    assert batch is None
    stored = [finished(run.pk) for run in runs]
    assert [run.status for run in stored] == [RunStatus.SUCCEEDED, RunStatus.SUCCEEDED], [r.error for r in stored]
    assert len(openai_server.requests) == 2
    assert not LLMBatch.objects.exists()
