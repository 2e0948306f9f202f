"""tagging.selectors.recipes_stale / staleness_counts: a recipe is stale for each input of its current run that
has moved on since (or its content), and not stale when nothing has."""

from __future__ import annotations

import pickle
import zlib
from typing import Any

import pytest

from autotagger.embeddings import embedding_model_name
from prompts.selectors import prompt_version_active_row
from prompts.services import prompt_version_activate, prompt_version_create
from prompts.tests.conftest import LLMSourceFactory
from tagging.learning import MODEL_VERSION
from tagging.models import Recipe, RunStatus, Strategy, TaggerState
from tagging.selectors import (
    UnknownStaleCause,
    recipe_stale_causes,
    recipes_fresh,
    recipes_stale,
    staleness_counts,
    tagger_state_in_use_id,
    tagging_prompt_name,
)
from tagging.services.config import TaggingConfig
from tagging.services.runs import recipe_tag
from tagging.staleness import STALE_CAUSES
from tagging.tests.conftest import RecipeFactory, TaggingRunFactory
from taxonomy.models import TaxonomyVersion
from taxonomy.selectors import taxonomy_version_current

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def default_source(settings: Any) -> None:
    settings.LLM_MODEL = "test-model"


def _tagged(recipe: Recipe | None = None, **run: Any) -> Recipe:
    """A recipe whose current run read everything as it is now, but for `run`'s fields."""
    recipe = recipe or RecipeFactory(title=f"Recipe {Recipe.objects.count() + 1}")
    strategy = run.get("strategy", Strategy.SIMILARITY)
    fields: dict[str, Any] = {
        "strategy": strategy,
        "status": RunStatus.SUCCEEDED,
        "embedding_model": embedding_model_name(),
        "taxonomy_version": taxonomy_version_current(),
        "content_hash": recipe.content_hash,
        "tagger_state_id": tagger_state_in_use_id(),
    }
    if strategy != Strategy.SIMILARITY:
        prompt = prompt_version_active_row(name=tagging_prompt_name(strategy=strategy))
        fields.update(prompt_version=prompt, llm_source="default", llm_model="test-model")
    current = TaggingRunFactory(recipe=recipe, **{**fields, **run})
    Recipe.objects.filter(pk=recipe.pk).update(current_run=current)
    recipe.refresh_from_db()
    return recipe


def _state() -> TaggerState:
    artifacts = {"prototypes": {}, "support": {}, "neighbour_labels": {}, "text_model": None}
    return TaggerState.objects.create(
        active=True,
        embedding_model=embedding_model_name(),
        fitted_on={"version": MODEL_VERSION},
        parameters={},
        artifacts=zlib.compress(pickle.dumps(artifacts)),
    )


def test_a_recipe_tagged_with_everything_current_is_not_stale() -> None:
    similarity, llm, hybrid = _tagged(), _tagged(strategy=Strategy.LLM), _tagged(strategy=Strategy.HYBRID)

    assert list(recipes_stale()) == []
    assert [recipe_stale_causes(r) for r in (similarity, llm, hybrid)] == [[], [], []]
    assert set(recipes_fresh()) == {similarity, llm, hybrid}


def test_a_recipe_just_tagged_by_the_tagger_is_not_stale(taxonomy: dict[str, Any]) -> None:
    recipe = RecipeFactory()

    recipe_tag(recipe=recipe, config=TaggingConfig())

    assert recipe_stale_causes(recipe) == []


def test_a_recipe_never_tagged_is_stale_as_never_tagged() -> None:
    recipe = RecipeFactory()
    TaggingRunFactory(recipe=recipe, status=RunStatus.FAILED)

    assert recipe_stale_causes(recipe) == ["never_tagged"]
    assert list(recipes_stale(causes=["never_tagged"])) == [recipe]


def test_a_recipe_edited_since_its_current_run_is_stale_by_content() -> None:
    recipe = _tagged()

    Recipe.objects.filter(pk=recipe.pk).update(content_hash="0" * 64)

    assert recipe_stale_causes(recipe) == ["content"]


def test_a_run_whose_content_is_unknown_counts_as_stale_by_content() -> None:
    recipe = _tagged(content_hash="")

    assert recipe_stale_causes(recipe) == ["content"]


def test_a_newer_taxonomy_version_makes_the_recipe_stale_by_taxonomy() -> None:
    recipe = _tagged()

    TaxonomyVersion.objects.create(number=taxonomy_version_current() + 1, changes=[], snapshot={})

    assert recipe_stale_causes(recipe) == ["taxonomy"]


def test_a_run_that_recorded_no_taxonomy_version_counts_as_stale_by_taxonomy() -> None:
    recipe = _tagged(taxonomy_version=None)

    assert recipe_stale_causes(recipe) == ["taxonomy"]


def _newer_version_activated(strategy: str) -> None:
    active = prompt_version_active_row(name=tagging_prompt_name(strategy=strategy))
    assert active is not None
    newer = prompt_version_create(
        prompt=active.prompt, system_template=active.system_template, user_template=active.user_template + "\n"
    )
    prompt_version_activate(version=newer, actor=None)


def test_a_new_version_of_the_llm_strategys_prompt_makes_only_llm_recipes_stale_by_prompt() -> None:
    llm, hybrid, similarity = _tagged(strategy=Strategy.LLM), _tagged(strategy=Strategy.HYBRID), _tagged()

    _newer_version_activated(Strategy.LLM)

    assert [recipe_stale_causes(r) for r in (llm, hybrid, similarity)] == [["prompt"], [], []]


def test_a_new_version_of_the_hybrids_prompt_makes_only_hybrid_recipes_stale_by_prompt() -> None:
    llm, hybrid, similarity = _tagged(strategy=Strategy.LLM), _tagged(strategy=Strategy.HYBRID), _tagged()

    _newer_version_activated(Strategy.HYBRID)

    assert [recipe_stale_causes(r) for r in (llm, hybrid, similarity)] == [[], ["prompt"], []]


def test_a_source_that_now_names_another_model_makes_its_recipes_stale_by_model(settings: Any) -> None:
    on_default, on_other = _tagged(strategy=Strategy.LLM), _tagged(strategy=Strategy.LLM, llm_source="other")
    LLMSourceFactory(name="other", model="test-model")
    assert recipe_stale_causes(on_other) == []

    settings.LLM_MODEL = "bigger-model"

    assert recipe_stale_causes(on_default) == ["model"]
    assert recipe_stale_causes(on_other) == []


def test_another_embedding_model_makes_similarity_recipes_stale_by_model() -> None:
    similarity = _tagged(embedding_model="an-older-embedder")
    llm = _tagged(strategy=Strategy.LLM, embedding_model="an-older-embedder")

    assert recipe_stale_causes(similarity) == ["model"]
    assert recipe_stale_causes(llm) == []


def test_a_newly_trained_tagger_makes_similarity_and_hybrid_recipes_stale_by_tagger() -> None:
    similarity, hybrid, llm = _tagged(), _tagged(strategy=Strategy.HYBRID), _tagged(strategy=Strategy.LLM)

    _state()

    assert [recipe_stale_causes(r) for r in (similarity, hybrid, llm)] == [["tagger"], ["tagger"], []]


def test_a_recipe_tagged_with_the_state_in_use_is_not_stale_by_tagger() -> None:
    state = _state()

    recipe = _tagged(tagger_state=state)

    assert recipe_stale_causes(recipe) == []


def test_it_counts_each_cause_and_each_stale_recipe_once() -> None:
    _tagged()
    RecipeFactory()
    _tagged(content_hash="", taxonomy_version=None)
    _tagged(strategy=Strategy.LLM, llm_model="old-model")

    counts = staleness_counts()

    assert counts == {
        "never_tagged": 1,
        "content": 1,
        "taxonomy": 1,
        "prompt": 0,
        "model": 1,
        "tagger": 0,
        "stale": 3,
        "recipes": 4,
    }


def test_it_lists_the_recipes_stale_for_the_causes_asked() -> None:
    _tagged()
    never = RecipeFactory()
    edited = _tagged(content_hash="")

    assert set(recipes_stale()) == {never, edited}
    assert list(recipes_stale(causes=["content"])) == [edited]
    assert list(recipes_stale(causes=["prompt", "tagger"])) == []


def test_it_refuses_an_unknown_cause() -> None:
    with pytest.raises(UnknownStaleCause, match="weather"):
        recipes_stale(causes=["weather"])


def test_counting_takes_one_query_whatever_the_number_of_recipes(django_assert_max_num_queries: Any) -> None:
    for _ in range(5):
        _tagged()
        RecipeFactory()

    with django_assert_max_num_queries(6):
        counts = staleness_counts()

    assert counts["recipes"] == 10
    assert set(STALE_CAUSES) <= set(counts)
