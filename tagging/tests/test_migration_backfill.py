"""Migration 0015: what can be known of runs stored before they recorded their inputs, and each recipe's current
run (its latest succeeded one). The migration's statements are run again here on rows made as old code made
them."""

from __future__ import annotations

import importlib
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from prompts.selectors import prompt_version_active_row
from tagging.models import Recipe, RunStatus, Strategy, TaggingRun
from tagging.tests.conftest import RecipeFactory, TaggingRunFactory

pytestmark = pytest.mark.django_db

BACKFILL = importlib.import_module("tagging.migrations.0015_runs_backfill_inputs_and_current_run").BACKFILL


def _backfill() -> None:
    with connection.cursor() as cursor:
        for sql in BACKFILL:
            cursor.execute(sql)


def test_each_recipe_points_at_its_latest_succeeded_run() -> None:
    recipe, untagged = RecipeFactory(), RecipeFactory(title="Toast")
    TaggingRunFactory(recipe=recipe, status=RunStatus.SUCCEEDED)
    latest = TaggingRunFactory(recipe=recipe, status=RunStatus.SUCCEEDED)
    TaggingRunFactory(recipe=recipe, status=RunStatus.FAILED)
    TaggingRunFactory(recipe=untagged, status=RunStatus.FAILED)

    _backfill()

    assert Recipe.objects.get(pk=recipe.pk).current_run == latest
    assert Recipe.objects.get(pk=untagged.pk).current_run is None


def test_an_llm_run_gets_the_prompt_version_source_and_model_its_stats_kept() -> None:
    version = prompt_version_active_row()
    assert version is not None
    run = TaggingRunFactory(
        strategy=Strategy.LLM,
        status=RunStatus.SUCCEEDED,
        stats={"prompt_version_id": version.pk, "source": "default", "llm_model": "gpt-x"},
    )
    gone = TaggingRunFactory(strategy=Strategy.LLM, status=RunStatus.SUCCEEDED, stats={"prompt_version_id": 999_999})

    _backfill()

    run.refresh_from_db()
    gone.refresh_from_db()
    assert (run.prompt_version, run.llm_source, run.llm_model) == (version, "default", "gpt-x")
    assert gone.prompt_version is None


def test_a_run_gets_its_recipes_content_hash_only_if_the_recipe_was_not_saved_since() -> None:
    unchanged = TaggingRunFactory(status=RunStatus.SUCCEEDED)
    edited = TaggingRunFactory(status=RunStatus.SUCCEEDED, recipe=RecipeFactory(title="Edited"))
    Recipe.objects.filter(pk=edited.recipe_id).update(updated_at=timezone.now() + timedelta(minutes=1))

    _backfill()

    assert TaggingRun.objects.get(pk=unchanged.pk).content_hash == unchanged.recipe.content_hash
    assert TaggingRun.objects.get(pk=edited.pk).content_hash == ""
    assert TaggingRun.objects.get(pk=unchanged.pk).taxonomy_version is None
