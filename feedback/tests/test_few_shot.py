"""Few-shot examples for the LLM prompt: the labelled recipes nearest to the one being tagged, with their gold
tags, and never the recipe itself (tagging.services.few_shot, used by the llm and hybrid strategies)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from feedback.tests.test_training import GROWN_UPS, KIDS, NEW_KIDS, labelled, verdicts  # noqa: F401 - fixtures
from feedback.training import tagger_fit
from prompts.rendering import EXAMPLE_OPEN
from prompts.tests.openai_server import OpenAIServer
from tagging.models import Recipe
from tagging.services.few_shot import few_shot_examples_select
from tagging.services.recipes import recipe_content_hash, recipe_create, recipe_embed_for_tagging
from tagging.services.tagger_state import learned_model_active
from tagging.tests.helpers import run_executed, run_queued, user_prompt
from taxonomy.models import Category

pytestmark = pytest.mark.django_db

KIDS_TITLES = {title for title, _ in KIDS}
GROWN_UP_TITLES = {title for title, _ in GROWN_UPS}


def _embedding(recipe: Recipe) -> np.ndarray:
    recipe_embed_for_tagging(recipe=recipe, requests=[])
    return np.asarray(recipe.embedding, dtype=np.float32)


@pytest.fixture
def fitted(labelled: Category) -> Category:  # noqa: F811 - the fixture imported above
    assert tagger_fit() is not None
    return labelled


def test_the_nearest_labelled_recipes_are_shown_with_their_gold_tags(fitted: Category) -> None:
    new = recipe_create(title=NEW_KIDS[0], ingredients=NEW_KIDS[1], instructions="")

    examples = few_shot_examples_select(
        model=learned_model_active(),
        embedding=_embedding(new),
        category_slugs=["family_verdict"],
        exclude_recipe_id=new.pk,
        exclude_content_hash=new.content_hash,
        limit=3,
    )

    assert len(examples) == 3
    assert examples[0].title in KIDS_TITLES, "the nearest labelled recipe is a pizza for kids"
    for example in examples:
        expected = "kids" if example.title in KIDS_TITLES else "grown-ups"
        assert example.tags == {"family_verdict": (expected,)}
        assert example.ingredients, "a stored labelled recipe shows its ingredients"


def test_the_recipe_being_tagged_is_never_its_own_example(fitted: Category) -> None:
    title, ingredients = KIDS[1]
    stored = Recipe.objects.get(title=title)
    model = learned_model_active()
    embedding = _embedding(stored)

    by_id = few_shot_examples_select(
        model=model,
        embedding=embedding,
        category_slugs=["family_verdict"],
        exclude_recipe_id=stored.pk,
        exclude_content_hash=None,
        limit=5,
    )
    # A copy of it from a dataset file is not stored: its content gives it away.
    by_content = few_shot_examples_select(
        model=model,
        embedding=embedding,
        category_slugs=["family_verdict"],
        exclude_recipe_id=None,
        exclude_content_hash=recipe_content_hash(title=title, ingredients=ingredients, instructions=""),
        limit=5,
    )
    unguarded = few_shot_examples_select(
        model=model,
        embedding=embedding,
        category_slugs=["family_verdict"],
        exclude_recipe_id=None,
        exclude_content_hash=None,
        limit=5,
    )

    assert unguarded[0].title == title, "the premise: unguarded, a labelled recipe is its own nearest example"
    assert title not in {e.title for e in by_id}
    assert title not in {e.title for e in by_content}
    assert len(by_id) == len(by_content) == 5


def test_nothing_learned_means_no_examples(verdicts: Category) -> None:  # noqa: F811 - a fixture
    assert learned_model_active() is None
    new = recipe_create(title=NEW_KIDS[0], ingredients=NEW_KIDS[1], instructions="")
    assert (
        few_shot_examples_select(
            model=None,
            embedding=_embedding(new),
            category_slugs=["family_verdict"],
            exclude_recipe_id=None,
            exclude_content_hash=None,
        )
        == []
    )


def test_the_llm_prompt_shows_neighbours_as_examples_but_never_the_recipe_itself(
    fitted: Category, llm_settings: Any, openai_server: OpenAIServer
) -> None:
    recipe = Recipe.objects.get(title=KIDS[1][0])
    openai_server.reply_json({"family_verdict": [{"tag": "kids", "reason": "cheese", "confidence": 0.9}]})

    run = run_executed(run_queued(recipe, categories=("family_verdict",), k=1))

    prompt = user_prompt(openai_server.requests[0])
    assert run.stats["few_shot_examples"] == 3
    assert prompt.count(EXAMPLE_OPEN) == 3
    assert prompt.count(f"Title: {recipe.title}") == 1, "the recipe appears once: as the recipe to tag"
    assert prompt.index(EXAMPLE_OPEN) < prompt.index(f"Title: {recipe.title}")


def test_the_hybrid_prompt_shows_no_examples_by_default(
    fitted: Category, llm_settings: Any, openai_server: OpenAIServer, settings: Any
) -> None:
    settings.HYBRID_ACCEPT = 1.01  # nothing taken without the model, so the category is asked
    recipe = Recipe.objects.get(title=KIDS[1][0])
    openai_server.reply_json({"family_verdict": [{"tag": "kids", "reason": "cheese", "confidence": 0.9}]})

    run = run_executed(run_queued(recipe, strategy="hybrid", categories=("family_verdict",), k=1))

    assert run.stats["few_shot_examples"] == 0
    assert EXAMPLE_OPEN not in user_prompt(openai_server.requests[0])


def test_the_hybrid_prompt_shows_as_many_examples_as_its_setting_asks(
    fitted: Category, llm_settings: Any, openai_server: OpenAIServer, settings: Any
) -> None:
    settings.HYBRID_ACCEPT = 1.01
    settings.HYBRID_FEW_SHOT_EXAMPLES = 2
    recipe = Recipe.objects.get(title=KIDS[1][0])
    openai_server.reply_json({"family_verdict": [{"tag": "kids", "reason": "cheese", "confidence": 0.9}]})

    run = run_executed(run_queued(recipe, strategy="hybrid", categories=("family_verdict",), k=1))

    assert run.stats["few_shot_examples"] == 2
    assert user_prompt(openai_server.requests[0]).count(EXAMPLE_OPEN) == 2
