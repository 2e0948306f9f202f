"""Factories for the tagging models and the fixtures the tagging tests share."""

from __future__ import annotations

import subprocess
from typing import Any

import factory
import pytest
from factory.django import DjangoModelFactory

from tagging.models import Recipe, Strategy, TagAssignment, TaggingRun
from tagging.services.recipes import recipe_content_hash, recipe_create
from taxonomy.models import IngredientGroup, Tag
from taxonomy.tests.conftest import TagFactory


class RecipeFactory(DjangoModelFactory):
    """A stored recipe, written directly (no embedding); `recipe_create` is the service's way in."""

    class Meta:
        model = Recipe

    title = "Spaghetti carbonara"
    ingredients = factory.LazyFunction(lambda: ["spaghetti", "eggs", "guanciale"])
    instructions = ""
    content_hash = factory.LazyAttribute(
        lambda recipe: recipe_content_hash(
            title=recipe.title, ingredients=recipe.ingredients, instructions=recipe.instructions
        )
    )


class TaggingRunFactory(DjangoModelFactory):
    class Meta:
        model = TaggingRun

    recipe = factory.SubFactory(RecipeFactory)
    strategy = Strategy.SIMILARITY


class TagAssignmentFactory(DjangoModelFactory):
    class Meta:
        model = TagAssignment

    run = factory.SubFactory(TaggingRunFactory)
    tag = factory.SubFactory(TagFactory)
    score = 0.5
    rank = 1


def demo_recipe(demo_recipes: list[dict[str, Any]], title: str, **fields: Any) -> Recipe:
    """The demo recipe called `title`, stored through `recipe_create`."""
    data = next(r for r in demo_recipes if r["title"] == title)
    return recipe_create(
        title=data["title"], ingredients=data["ingredients"], instructions=data["instructions"], **fields
    )


@pytest.fixture
def carbonara(db: None, demo_recipes: list[dict[str, Any]], api_client_user: Any) -> Recipe:
    """The carbonara, stored by the API client of `token_client`."""
    return demo_recipe(demo_recipes, "Spaghetti Carbonara", created_by=api_client_user)


@pytest.fixture
def worker(celery_worker_process: subprocess.Popen[bytes], taxonomy: dict[str, Any]) -> subprocess.Popen[bytes]:
    """The worker, with the taxonomy committed where it can see it."""
    assert celery_worker_process.poll() is None, "the Celery worker has exited; see the test-worker log in .data/"
    return celery_worker_process


@pytest.fixture
def taxonomy_without_rules(taxonomy: dict[str, Any]) -> dict[str, Any]:
    """The default taxonomy without its ingredient rules: for tests of what a tagger itself chooses (the
    rules have their own tests, in test_rules.py)."""
    IngredientGroup.objects.all().delete()
    Tag.objects.exclude(required_terms=[]).update(required_terms=[])
    return taxonomy
