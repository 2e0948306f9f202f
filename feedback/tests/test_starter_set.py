"""The labelled starter set that ships with the default taxonomy (feedback/data/starter_recipes.jsonl), and
`manage.py load_starter_set`, which loads it into an empty database and fits the learned tagger on it."""

from __future__ import annotations

import json
from collections import Counter
from io import StringIO
from pathlib import Path

from django.core.management import call_command

from conftest import DEFAULT_TAXONOMY
from feedback.jsonl import RecipeLine, recipe_line_parse
from feedback.management.commands.load_starter_set import STARTER_RECIPES
from feedback.models import GoldLabel
from tagging.models import Recipe, TaggerState
from tagging.tests.conftest import RecipeFactory

MIN_RECIPES = 500
MIN_RECIPES_PER_TAG = 3
# A slice of the set, labelled in one category only: fitting a category takes seconds whatever its size, and
# fitting all eight on the whole set takes minutes.
SLICE = 40
SLICE_CATEGORIES = ("course",)


def _starter_recipes() -> list[RecipeLine]:
    lines = STARTER_RECIPES.read_text(encoding="utf-8").splitlines()
    return [recipe_line_parse(line, line=number, labeled=True) for number, line in enumerate(lines, start=1)]


def _default_tags() -> dict[str, set[str]]:
    taxonomy = json.loads(DEFAULT_TAXONOMY.read_text(encoding="utf-8"))
    return {category["slug"]: {tag["slug"] for tag in category["tags"]} for category in taxonomy["categories"]}


def _call(*args: str) -> str:
    out = StringIO()
    call_command("load_starter_set", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_it_ships_at_least_500_recipes_with_unique_ids_and_titles() -> None:
    recipes = _starter_recipes()

    assert len(recipes) >= MIN_RECIPES
    assert len({recipe.external_id for recipe in recipes}) == len(recipes)
    assert len({recipe.title.casefold() for recipe in recipes}) == len(recipes)
    assert all(recipe.ingredients and recipe.instructions for recipe in recipes)


def test_it_labels_only_with_tags_of_the_default_taxonomy() -> None:
    default_tags = _default_tags()

    unknown = {
        f"{recipe.external_id}: {category}/{slug}"
        for recipe in _starter_recipes()
        for category, slugs in recipe.tags.items()
        for slug in slugs
        if slug not in default_tags.get(category, set())
    }

    assert unknown == set()


def test_it_covers_every_tag_of_the_default_taxonomy_at_least_three_times() -> None:
    counts = Counter(
        (category, slug) for recipe in _starter_recipes() for category, slugs in recipe.tags.items() for slug in slugs
    )

    rare = {
        f"{category}/{slug}": counts[(category, slug)]
        for category, slugs in _default_tags().items()
        for slug in slugs
        if counts[(category, slug)] < MIN_RECIPES_PER_TAG
    }

    assert rare == {}


def test_it_loads_the_starter_set_into_an_empty_database_and_fits_the_tagger(taxonomy: object, tmp_path: Path) -> None:
    recipes = [json.loads(line) for line in STARTER_RECIPES.read_text(encoding="utf-8").splitlines()[:SLICE]]
    for recipe in recipes:
        recipe["tags"] = {category: recipe["tags"][category] for category in SLICE_CATEGORIES}
    path = tmp_path / "starter.jsonl"
    path.write_text("".join(json.dumps(recipe) + "\n" for recipe in recipes), encoding="utf-8")
    labels = sum(len(slugs) for recipe in recipes for slugs in recipe["tags"].values())

    out = _call("--path", str(path))

    assert Recipe.objects.filter(source="starter").count() == SLICE
    assert GoldLabel.objects.count() == labels
    state = TaggerState.objects.get(active=True)
    assert state.fitted_on["labelled_recipes"] == SLICE
    assert sorted(state.parameters) == sorted(SLICE_CATEGORIES)
    assert f"Starter set: {SLICE} recipes and {labels} gold labels loaded" in out
    assert f"Tagger state {state.pk} fitted on {SLICE} labelled recipes" in out


def test_it_does_nothing_on_a_database_that_has_a_recipe(taxonomy: object) -> None:
    RecipeFactory()

    out = _call()

    assert Recipe.objects.count() == 1
    assert not GoldLabel.objects.exists()
    assert not TaggerState.objects.exists()
    assert out == "Starter set skipped: the database is not empty (1 recipes, 0 gold labels).\n"
