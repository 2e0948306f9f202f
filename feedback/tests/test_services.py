"""feedback.services: gold labels and the import of labelled recipe datasets (plus the selectors that read them)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.db import IntegrityError

from feedback.models import GoldLabel, GoldLabelSource
from feedback.selectors import gold_label_stats, gold_labels_by_recipe
from feedback.services.imports import ImportConfigError, recipes_import
from feedback.services.labels import gold_labels_replace
from tagging.models import Recipe
from tagging.services.recipes import recipe_content_hash
from tagging.tests.conftest import RecipeFactory
from taxonomy import tasks
from taxonomy.models import Category, Tag
from taxonomy.tests.conftest import CategoryFactory, TagFactory

pytestmark = pytest.mark.django_db


def _recipe(external_id: str, title: str | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "id": external_id,
        "title": title or f"Recipe {external_id}",
        "ingredients": fields.pop("ingredients", ["200 g spaghetti", "2 eggs"]),
        "instructions": fields.pop("instructions", "Boil. Toss."),
        **fields,
    }


def _lines(*recipes: dict[str, Any]) -> list[str]:
    return [json.dumps(recipe) for recipe in recipes]


def _import(lines: list[str], **options: Any) -> Any:
    options.setdefault("source", "testset")
    options.setdefault("labeled", True)
    options.setdefault("create_taxonomy", False)
    options.setdefault("mapping", None)
    return recipes_import(lines=lines, **options)


def _labels(source: str = "testset") -> dict[str, dict[str, set[str]]]:
    """External id → category slug → tag slugs, for the recipes of `source`."""
    ids = dict(Recipe.objects.filter(source=source).values_list("id", "external_id"))
    return {ids[recipe_id]: labels for recipe_id, labels in gold_labels_by_recipe(recipe_ids=list(ids)).items()}


@pytest.fixture
def small_taxonomy() -> dict[str, Category]:
    cuisine = CategoryFactory(name="Cuisine", slug="cuisine", position=0)
    course = CategoryFactory(name="Course", slug="course", position=1)
    dish_type = CategoryFactory(name="Dish type", slug="dish_type", position=4)
    TagFactory(category=cuisine, name="Italian", slug="italian", synonyms=["Italiano"])
    TagFactory(category=cuisine, name="Mexican", slug="mexican")
    TagFactory(category=course, name="Main course", slug="main")
    TagFactory(category=course, name="Dessert", slug="dessert")
    TagFactory(category=dish_type, name="Pasta", slug="pasta")
    return {"cuisine": cuisine, "course": course, "dish_type": dish_type}


def _run(callbacks: list[Callable[[], Any]]) -> None:
    for callback in callbacks:
        callback()


# --- Storing recipes and labels --------------------------------------------------------------------


def test_it_stores_the_recipes_and_their_tags_as_gold_labels(small_taxonomy: dict[str, Category], staff: Any) -> None:
    lines = _lines(
        _recipe("a", "Carbonara", tags={"cuisine": ["Italian"], "dish_type": ["Pasta"]}),
        _recipe("b", "Tacos", tags={"cuisine": ["Mexican"]}),
    )

    report = _import(lines, user=staff)

    assert (report.created, report.updated, report.unchanged, report.labels) == (2, 0, 0, 3)
    assert report.errors == []
    assert report.unmapped == {}
    assert _labels() == {"a": {"cuisine": {"italian"}, "dish_type": {"pasta"}}, "b": {"cuisine": {"mexican"}}}
    recipe = Recipe.objects.get(source="testset", external_id="a")
    assert (recipe.title, recipe.ingredients, recipe.instructions) == (
        "Carbonara",
        ["200 g spaghetti", "2 eggs"],
        "Boil. Toss.",
    )
    assert recipe.content_hash == recipe_content_hash(
        title="Carbonara", ingredients=["200 g spaghetti", "2 eggs"], instructions="Boil. Toss."
    )
    assert set(GoldLabel.objects.values_list("source", "created_by")) == {(GoldLabelSource.IMPORT, staff.pk)}


def test_it_finds_a_tag_by_its_slug_its_name_or_a_synonym_whatever_the_case(
    small_taxonomy: dict[str, Category],
) -> None:
    lines = _lines(
        _recipe("by-slug", tags={"cuisine": ["MEXICAN"]}),
        _recipe("by-name", tags={"course": ["main COURSE"]}),
        _recipe("by-synonym", tags={"cuisine": ["italiano"]}),
    )

    report = _import(lines)

    assert report.unmapped == {}
    assert _labels() == {
        "by-slug": {"cuisine": {"mexican"}},
        "by-name": {"course": {"main"}},
        "by-synonym": {"cuisine": {"italian"}},
    }


def test_importing_the_same_file_twice_stores_each_recipe_and_label_once(small_taxonomy: dict[str, Category]) -> None:
    lines = _lines(
        _recipe("a", tags={"cuisine": ["Italian"], "dish_type": ["Pasta"]}),
        _recipe("b", tags={"cuisine": ["Mexican"]}),
    )
    first = _import(lines)

    second = _import(lines)

    assert (first.created, first.unchanged, first.labels) == (2, 0, 3)
    assert (second.created, second.updated, second.unchanged, second.labels) == (0, 0, 2, 3)
    assert Recipe.objects.count() == 2
    assert GoldLabel.objects.count() == 3


def test_the_same_id_from_another_source_is_another_recipe(small_taxonomy: dict[str, Category]) -> None:
    _import(_lines(_recipe("a")), source="one")

    report = _import(_lines(_recipe("a")), source="two")

    assert report.created == 1
    assert sorted(Recipe.objects.values_list("source", "external_id")) == [("one", "a"), ("two", "a")]


def test_a_changed_title_updates_the_recipe_and_drops_its_embedding(small_taxonomy: dict[str, Category]) -> None:
    _import(_lines(_recipe("a", "Carbonara"), _recipe("b", "Tacos")))
    Recipe.objects.update(embedding=[0.1] * settings.EMBEDDING_DIMENSIONS, embedding_model="some-model")

    report = _import(_lines(_recipe("a", "Spaghetti carbonara"), _recipe("b", "Tacos")))

    assert (report.created, report.updated, report.unchanged) == (0, 1, 1)
    changed = Recipe.objects.get(external_id="a")
    assert changed.title == "Spaghetti carbonara"
    assert changed.content_hash == recipe_content_hash(
        title="Spaghetti carbonara", ingredients=["200 g spaghetti", "2 eggs"], instructions="Boil. Toss."
    )
    assert (changed.embedding, changed.embedding_model) == (None, "")
    kept = Recipe.objects.get(external_id="b")
    assert (kept.embedding is not None, kept.embedding_model) == (True, "some-model")
    assert Recipe.objects.count() == 2


def test_reimporting_replaces_the_imported_labels_and_keeps_the_reviewed_ones(
    small_taxonomy: dict[str, Category],
) -> None:
    _import(_lines(_recipe("a", tags={"cuisine": ["Italian"], "dish_type": ["Pasta"]})))
    recipe = Recipe.objects.get(external_id="a")
    dessert = Tag.objects.get(slug="dessert")
    gold_labels_replace(recipe=recipe, tags=[dessert], source=GoldLabelSource.REVIEW)

    report = _import(_lines(_recipe("a", tags={"cuisine": ["Mexican"]})))

    assert report.labels == 1
    assert set(GoldLabel.objects.values_list("tag__slug", "source")) == {
        ("mexican", GoldLabelSource.IMPORT),
        ("dessert", GoldLabelSource.REVIEW),
    }


def test_gold_labels_replace_makes_the_labels_of_one_source_exactly_the_tags_given(
    small_taxonomy: dict[str, Category], staff: Any
) -> None:
    recipe = RecipeFactory(title="Carbonara", ingredients=["pasta"], content_hash="x")
    italian, mexican, pasta, dessert = (Tag.objects.get(slug=s) for s in ("italian", "mexican", "pasta", "dessert"))
    gold_labels_replace(recipe=recipe, tags=[italian, mexican], source=GoldLabelSource.IMPORT)
    gold_labels_replace(recipe=recipe, tags=[dessert], source=GoldLabelSource.REVIEW, user=staff)

    # Pasta is new; Mexican goes; Dessert is a reviewed label already, which stays as it is.
    count = gold_labels_replace(recipe=recipe, tags=[italian, pasta, dessert], source=GoldLabelSource.IMPORT)

    assert count == 2
    assert set(GoldLabel.objects.values_list("tag__slug", "source", "created_by")) == {
        ("italian", GoldLabelSource.IMPORT, None),
        ("pasta", GoldLabelSource.IMPORT, None),
        ("dessert", GoldLabelSource.REVIEW, staff.pk),
    }


def test_without_labeled_the_files_tags_are_ignored_entirely(small_taxonomy: dict[str, Category]) -> None:
    lines = _lines(_recipe("a", tags={"cuisine": ["Italian"], "occasion": ["Picnic"], "spaceship": 3}))

    report = _import(lines, labeled=False, create_taxonomy=True)

    assert (report.created, report.labels, report.categories_created, report.tags_created) == (1, 0, 0, 0)
    assert report.errors == []
    assert report.unmapped == {}
    assert GoldLabel.objects.count() == 0
    assert not Category.objects.filter(slug="occasion").exists()


# --- Bad lines ---------------------------------------------------------------------------------------


def test_bad_lines_are_reported_with_their_numbers_and_the_good_lines_are_stored(
    small_taxonomy: dict[str, Category],
) -> None:
    lines = [
        json.dumps(_recipe("good-1")),
        '{"id": "broken", "title": ',
        "",
        '["an", "array"]',
        json.dumps({"title": "No id", "ingredients": ["x"]}),
        json.dumps(_recipe("   ")),
        json.dumps(_recipe("no-title", title=None) | {"title": ""}),
        json.dumps(_recipe("long-title", "x" * 501)),
        json.dumps(_recipe("bad-ingredients", ingredients="eggs")),
        json.dumps(_recipe("bad-instructions", instructions=["step 1"])),
        json.dumps(_recipe("empty", ingredients=[" "], instructions="")),
        json.dumps(_recipe("bad-tags", tags={"cuisine": "Italian"})),
        json.dumps(_recipe("good-1", "Same id again")),
        json.dumps(_recipe(12345, "A numeric id is fine")),
        "   ",
        json.dumps(_recipe("good-2")),
    ]

    report = _import(lines)

    assert report.errors == [
        (2, "invalid JSON: Expecting value (column 27)"),
        (4, "expected a JSON object, got an array"),
        (5, "'id' is missing"),
        (6, "'id' is empty"),
        (7, "'title' is empty"),
        (8, "'title' is longer than 500 characters (501)"),
        (9, "'ingredients' must be a list of strings"),
        (10, "'instructions' must be a string, not an array"),
        (11, "the recipe has no ingredients and no instructions"),
        (12, "'tags.cuisine' must be a list of strings"),
        (13, "id 'good-1' already appeared on line 1"),
    ]
    assert report.created == 3
    assert sorted(Recipe.objects.values_list("external_id", flat=True)) == ["12345", "good-1", "good-2"]
    assert Recipe.objects.get(external_id="good-1").title == "Recipe good-1"


def test_a_line_that_is_not_utf8_is_reported_and_the_others_are_stored(small_taxonomy: dict[str, Category]) -> None:
    lines = [
        json.dumps(_recipe("a")).encode(),
        b'{"id": "b", "title": "Cr\xe8me"}\n',
        json.dumps(_recipe("c")).encode(),
    ]

    report = _import(lines)

    assert report.errors == [(2, "not UTF-8 text")]
    assert report.created == 2


def test_a_database_error_costs_only_the_lines_of_its_chunk(
    small_taxonomy: dict[str, Category], monkeypatch: pytest.MonkeyPatch
) -> None:
    bulk_create = Recipe.objects.bulk_create

    def failing_bulk_create(objs: list[Recipe], *args: Any, **kwargs: Any) -> list[Recipe]:
        if any(recipe.title == "Poison" for recipe in objs):
            raise IntegrityError("simulated failure")
        return bulk_create(objs, *args, **kwargs)

    monkeypatch.setattr(Recipe.objects, "bulk_create", failing_bulk_create)
    lines = _lines(
        _recipe("1", tags={"occasion": ["Picnic"]}),
        _recipe("2"),
        _recipe("3", tags={"season": ["Summer"]}),
        _recipe("4", "Poison"),
        _recipe("5", tags={"season": ["Summer"]}),
    )

    report = _import(lines, create_taxonomy=True, chunk_lines=2)

    assert report.errors == [
        (3, "not stored: the database refused lines 3–4 (simulated failure)"),
        (4, "not stored: the database refused lines 3–4 (simulated failure)"),
    ]
    assert sorted(Recipe.objects.values_list("external_id", flat=True)) == ["1", "2", "5"]
    # The failed chunk's new category was rolled back, and made again by the next chunk.
    assert (report.categories_created, report.tags_created, report.labels) == (2, 2, 2)
    assert _labels() == {"1": {"occasion": {"picnic"}}, "5": {"season": {"summer"}}}


def test_progress_is_told_how_many_lines_were_read_after_each_chunk(small_taxonomy: dict[str, Category]) -> None:
    calls: list[int] = []
    lines = [*_lines(_recipe("1"), _recipe("2"), _recipe("3")), "", "not json"]

    _import(lines, progress=calls.append, chunk_lines=2)

    assert calls == [2, 2, 1]


def test_an_empty_source_name_is_refused(small_taxonomy: dict[str, Category]) -> None:
    with pytest.raises(ImportConfigError, match="source name is empty"):
        _import(_lines(_recipe("a")), source="  ")

    assert Recipe.objects.count() == 0


# --- Finding the tags --------------------------------------------------------------------------------


def test_a_mapping_sends_tags_where_it_says_including_to_another_category(
    small_taxonomy: dict[str, Category],
) -> None:
    lines = _lines(_recipe("a", tags={"cuisine": ["Tex-Mex"], "category": ["Pasta", "Dessert"]}))
    mapping = {"cuisine": {"tex-mex": "mexican"}, "category": {"Pasta": "dish_type/pasta", "Dessert": "course/dessert"}}

    report = _import(lines, mapping=mapping)

    assert report.unmapped == {}
    assert _labels() == {"a": {"cuisine": {"mexican"}, "dish_type": {"pasta"}, "course": {"dessert"}}}
    assert not Category.objects.filter(slug="category").exists()


def test_a_mapping_naming_a_missing_tag_is_refused_before_anything_is_written(
    small_taxonomy: dict[str, Category],
) -> None:
    lines = _lines(_recipe("a", tags={"cuisine": ["Tex-Mex"], "occasion": ["Picnic"]}))
    mapping = {"cuisine": {"Tex-Mex": "texmex"}, "category": {"Pasta": "dish_type/pasta", "Soup": "dish_type/soup"}}

    with pytest.raises(ImportConfigError) as raised:
        _import(lines, mapping=mapping, create_taxonomy=True)

    assert raised.value.message == (
        "Nothing was imported: the mapping is wrong: cuisine → 'Tex-Mex' → 'cuisine/texmex' is no existing tag; "
        "category → 'Soup' → 'dish_type/soup' is no existing tag."
    )
    assert (Recipe.objects.count(), GoldLabel.objects.count(), Category.objects.count(), Tag.objects.count()) == (
        0,
        0,
        3,
        5,
    )


def test_a_mapping_that_is_not_an_object_of_objects_is_refused(small_taxonomy: dict[str, Category]) -> None:
    with pytest.raises(ImportConfigError, match="The mapping must be an object"):
        _import(_lines(_recipe("a")), mapping={"cuisine": ["italian"]})

    assert Recipe.objects.count() == 0


def test_without_create_taxonomy_unknown_categories_and_tags_are_reported_as_unmapped(
    small_taxonomy: dict[str, Category],
) -> None:
    lines = _lines(
        _recipe("a", tags={"cuisine": ["Italian", "Klingon"], "main_ingredient": ["Beef"]}),
        _recipe("b", tags={"main_ingredient": ["Beef", "Goat"]}),
    )

    report = _import(lines)

    assert report.unmapped == {"cuisine": {"Klingon": 1}, "main_ingredient": {"Beef": 2, "Goat": 1}}
    assert (report.labels, report.categories_created, report.tags_created) == (1, 0, 0)
    assert _labels() == {"a": {"cuisine": {"italian"}}}
    assert not Category.objects.filter(slug="main_ingredient").exists()


def test_create_taxonomy_makes_the_missing_categories_and_tags_and_queues_their_embedding(
    small_taxonomy: dict[str, Category],
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queued: list[list[int]] = []
    monkeypatch.setattr(tasks.tags_embed_task, "delay", lambda *, tag_ids: queued.append(tag_ids))
    lines = _lines(
        _recipe("a", tags={"cuisine": ["Italian", "Klingon"], "main_ingredient": ["Beef"]}),
        _recipe("b", tags={"main_ingredient": ["beef", "Sweet Potato"]}),
    )

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        report = _import(lines, create_taxonomy=True)
    _run(callbacks)

    assert (report.categories_created, report.tags_created, report.labels, report.unmapped) == (1, 3, 5, {})
    category = Category.objects.get(slug="main_ingredient")
    assert (category.name, category.position, category.default_max_tags, category.active) == (
        "Main Ingredient",
        5,
        3,
        True,
    )
    new_tags = Tag.objects.filter(slug__in=["klingon", "beef", "sweet-potato"]).order_by("id")
    assert [(t.category.slug, t.name, t.slug, t.description) for t in new_tags] == [
        ("cuisine", "Klingon", "klingon", ""),
        ("main_ingredient", "Beef", "beef", ""),
        ("main_ingredient", "Sweet Potato", "sweet-potato", ""),
    ]
    assert queued == [[tag.pk for tag in new_tags]]
    assert _labels() == {
        "a": {"cuisine": {"italian", "klingon"}, "main_ingredient": {"beef"}},
        "b": {"main_ingredient": {"beef", "sweet-potato"}},
    }


# --- Telling the learned tagger ----------------------------------------------------------------------


def _refit_requests(callbacks: list[Callable[[], Any]]) -> int:
    return sum(1 for callback in callbacks if callback.__qualname__.startswith("tagger_refit_schedule."))


def test_an_import_that_changes_labels_asks_for_one_refit_after_commit(
    small_taxonomy: dict[str, Category], django_capture_on_commit_callbacks: Any
) -> None:
    lines = _lines(_recipe("a", tags={"cuisine": ["Italian"]}), _recipe("b", tags={"cuisine": ["Mexican"]}))

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _import(lines, chunk_lines=1)

    assert _refit_requests(callbacks) == 1


def test_an_import_that_changes_no_label_asks_for_no_refit(
    small_taxonomy: dict[str, Category], django_capture_on_commit_callbacks: Any
) -> None:
    lines = _lines(_recipe("a", tags={"cuisine": ["Italian"]}))
    _import(lines)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _import(lines)
        _import(lines, labeled=False)

    assert _refit_requests(callbacks) == 0


# --- What the learned tagger reads -------------------------------------------------------------------


def test_the_selectors_describe_the_labels_by_recipe_and_in_total(small_taxonomy: dict[str, Category]) -> None:
    _import(
        _lines(
            _recipe("a", tags={"cuisine": ["Italian"], "dish_type": ["Pasta"]}),
            _recipe("b", tags={"cuisine": ["Mexican"], "course": ["Dessert"]}),
            _recipe("c"),
        )
    )
    a, b = (Recipe.objects.get(external_id=external_id).pk for external_id in ("a", "b"))

    by_recipe = gold_labels_by_recipe(recipe_ids=[b])
    stats = gold_label_stats()

    assert by_recipe == {b: {"cuisine": {"mexican"}, "course": {"dessert"}}}
    assert set(gold_labels_by_recipe()) == {a, b}
    assert stats == {
        "labels": 4,
        "labelled_recipes": 2,
        "last_label_id": GoldLabel.objects.order_by("-id").values_list("id", flat=True)[0],
        "categories": {"course": 1, "cuisine": 2, "dish_type": 1},
    }
