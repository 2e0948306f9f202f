"""Every path that finishes a run records what decided it (taxonomy version, content hash, tagger state, and for
the LLM strategies the prompt version, source and model), and a success moves the recipe's current-run pointer
unless the run is a dry run."""

from __future__ import annotations

import pickle
import zlib
from typing import Any

import pytest

from autotagger.embeddings import embedding_model_name
from prompts.selectors import prompt_version_active_row
from prompts.tests.openai_server import OpenAIServer
from tagging.learning import MODEL_VERSION
from tagging.models import Recipe, RunStatus, TaggerState, TaggingRun
from tagging.services.config import TaggingConfig
from tagging.services.current_runs import NotACurrentRun, recipe_current_run_set, recipes_current_run_set
from tagging.services.runs import recipe_tag, recipes_tag_bulk, run_create, run_execute
from tagging.tests.conftest import TaggingRunFactory, demo_recipe
from tagging.tests.helpers import run_executed, run_failed, run_queued
from taxonomy.models import TaxonomyVersion

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy")]


@pytest.fixture
def taxonomy_version_7() -> int:
    TaxonomyVersion.objects.create(number=7, changes=[], snapshot={})
    return 7


def _tagger_state() -> TaggerState:
    """A learned state that has learned nothing (no category): in use, and zero-shot everywhere."""
    artifacts = {"prototypes": {}, "support": {}, "neighbour_labels": {}, "text_model": None}
    return TaggerState.objects.create(
        active=True,
        embedding_model=embedding_model_name(),
        fitted_on={"version": MODEL_VERSION},
        parameters={},
        artifacts=zlib.compress(pickle.dumps(artifacts)),
    )


def test_tagging_now_records_the_taxonomy_version_and_the_recipes_content(
    carbonara: Recipe, taxonomy_version_7: int
) -> None:
    run = recipe_tag(recipe=carbonara, config=TaggingConfig())

    run.refresh_from_db()
    assert run.taxonomy_version == 7
    assert run.content_hash == carbonara.content_hash
    assert run.tagger_state is None
    assert run.prompt_version is None
    assert (run.llm_source, run.llm_model) == ("", "")


def test_tagging_now_records_the_tagger_state_in_use(carbonara: Recipe) -> None:
    state = _tagger_state()

    run = recipe_tag(recipe=carbonara, config=TaggingConfig())

    run.refresh_from_db()
    assert run.tagger_state == state


def test_a_retired_or_foreign_tagger_state_is_not_recorded(carbonara: Recipe) -> None:
    state = _tagger_state()
    TaggerState.objects.filter(pk=state.pk).update(fitted_on={"version": MODEL_VERSION - 1})

    run = recipe_tag(recipe=carbonara, config=TaggingConfig())

    run.refresh_from_db()
    assert run.tagger_state is None


def test_a_queued_run_records_its_inputs_when_the_worker_executes_it(
    carbonara: Recipe, taxonomy_version_7: int
) -> None:
    run = run_create(recipe=carbonara, config=TaggingConfig())
    TaxonomyVersion.objects.create(number=8, changes=[], snapshot={})

    run_execute(run_id=run.pk)

    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.taxonomy_version == 8
    assert run.content_hash == carbonara.content_hash


def test_an_llm_run_records_the_prompt_version_source_and_model_it_asked(
    llm_settings: Any, openai_server: OpenAIServer, carbonara: Recipe, taxonomy_version_7: int
) -> None:
    openai_server.reply_json({"cuisine": ["italian"]})

    run = run_executed(run_queued(carbonara, categories=("cuisine",)))

    assert run.status == RunStatus.SUCCEEDED, run.error
    active = prompt_version_active_row()
    assert active is not None
    assert run.prompt_version == active
    assert (run.llm_source, run.llm_model) == ("default", "test-model")
    assert run.taxonomy_version == 7
    assert run.content_hash == carbonara.content_hash


def test_bulk_tagging_records_the_inputs_of_every_run(
    demo_recipes: list[dict[str, Any]], taxonomy_version_7: int
) -> None:
    recipes = [demo_recipe(demo_recipes, "Spaghetti Carbonara"), demo_recipe(demo_recipes, "Beef Tacos")]

    runs = recipes_tag_bulk(recipes=recipes, config=TaggingConfig())

    stored = list(TaggingRun.objects.filter(pk__in=[r.pk for r in runs]).order_by("id"))
    assert [(r.taxonomy_version, r.content_hash) for r in stored] == [(7, x.content_hash) for x in recipes]


def test_a_successful_run_becomes_the_recipes_current_run(carbonara: Recipe) -> None:
    first = recipe_tag(recipe=carbonara, config=TaggingConfig())
    second = recipe_tag(recipe=carbonara, config=TaggingConfig())

    carbonara.refresh_from_db()
    assert carbonara.current_run == second
    assert first != second


def test_a_dry_run_leaves_the_current_run_where_it_was(carbonara: Recipe) -> None:
    current = recipe_tag(recipe=carbonara, config=TaggingConfig())

    dry = recipe_tag(recipe=carbonara, config=TaggingConfig(), sets_current=False)

    carbonara.refresh_from_db()
    assert dry.status == RunStatus.SUCCEEDED
    assert carbonara.current_run == current


def test_a_queued_dry_run_leaves_the_current_run_where_it_was(carbonara: Recipe) -> None:
    current = recipe_tag(recipe=carbonara, config=TaggingConfig())
    dry = run_create(recipe=carbonara, config=TaggingConfig(), sets_current=False)

    run_execute(run_id=dry.pk)

    carbonara.refresh_from_db()
    assert carbonara.current_run == current


def test_a_failed_run_leaves_the_current_run_where_it_was(
    llm_settings: Any, openai_server: OpenAIServer, carbonara: Recipe
) -> None:
    current = recipe_tag(recipe=carbonara, config=TaggingConfig())
    for _ in range(llm_settings.LLM_MAX_RETRIES + 2):
        openai_server.reply_status(500)

    failed = run_failed(run_queued(carbonara, categories=("cuisine",)))

    carbonara.refresh_from_db()
    assert failed.status == RunStatus.FAILED
    assert carbonara.current_run == current


def test_a_run_that_finishes_late_does_not_replace_the_tags_of_a_run_asked_later(carbonara: Recipe) -> None:
    early = run_create(recipe=carbonara, config=TaggingConfig())
    later = recipe_tag(recipe=carbonara, config=TaggingConfig())

    run_execute(run_id=early.pk)

    carbonara.refresh_from_db()
    assert carbonara.current_run == later


def test_bulk_tagging_moves_every_recipes_pointer_unless_it_is_a_dry_run(demo_recipes: list[dict[str, Any]]) -> None:
    recipes = [demo_recipe(demo_recipes, "Spaghetti Carbonara"), demo_recipe(demo_recipes, "Beef Tacos")]
    runs = recipes_tag_bulk(recipes=recipes, config=TaggingConfig())

    recipes_tag_bulk(recipes=recipes, config=TaggingConfig(), sets_current=False)

    assert [Recipe.objects.get(pk=r.pk).current_run_id for r in recipes] == [run.pk for run in runs]


def test_pointers_can_be_moved_back_to_an_older_run_as_a_rollback_does(carbonara: Recipe) -> None:
    older = recipe_tag(recipe=carbonara, config=TaggingConfig())
    recipe_tag(recipe=carbonara, config=TaggingConfig())

    moved = recipes_current_run_set(runs=[older])

    carbonara.refresh_from_db()
    assert moved == 1
    assert carbonara.current_run == older


def test_only_newer_pointers_move_when_asked_so(carbonara: Recipe) -> None:
    older = recipe_tag(recipe=carbonara, config=TaggingConfig())
    newer = recipe_tag(recipe=carbonara, config=TaggingConfig())

    moved = recipes_current_run_set(runs=[older], only_newer=True)

    carbonara.refresh_from_db()
    assert moved == 0
    assert carbonara.current_run == newer


def test_a_failed_or_foreign_run_cannot_become_a_recipes_current_run(
    carbonara: Recipe, demo_recipes: list[dict[str, Any]]
) -> None:
    tacos = demo_recipe(demo_recipes, "Beef Tacos")
    failed = TaggingRunFactory(recipe=carbonara, status=RunStatus.FAILED)
    foreign = TaggingRunFactory(recipe=tacos, status=RunStatus.SUCCEEDED)

    with pytest.raises(NotACurrentRun):
        recipe_current_run_set(recipe=carbonara, run=failed)
    with pytest.raises(NotACurrentRun):
        recipe_current_run_set(recipe=carbonara, run=foreign)
    with pytest.raises(NotACurrentRun):
        recipes_current_run_set(runs=[failed])

    carbonara.refresh_from_db()
    assert carbonara.current_run is None
