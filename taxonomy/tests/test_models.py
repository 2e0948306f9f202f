"""Integrity rules that PostgreSQL enforces for taxonomy and tagging rows, whatever code writes them."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.db import IntegrityError, connection, transaction

from tagging.models import Recipe, TagAssignment, TaggingRun
from tagging.tests.conftest import RecipeFactory, TagAssignmentFactory, TaggingRunFactory
from taxonomy.models import Category, Tag
from taxonomy.tests.conftest import CategoryFactory, TagFactory

pytestmark = pytest.mark.django_db


def _category(slug: str = "cuisine", **fields: Any) -> Category:
    return CategoryFactory(slug=slug, **fields)


def _tag(category: Category, slug: str = "italian", **fields: Any) -> Tag:
    return TagFactory(category=category, slug=slug, **fields)


def _recipe(**fields: Any) -> Recipe:
    fields.setdefault("title", "Spaghetti Carbonara")
    fields.setdefault("ingredients", ["200 g spaghetti", "2 eggs"])
    fields.setdefault("instructions", "Cook the pasta; toss with the eggs off the heat.")
    return RecipeFactory(**fields)


def _run() -> TaggingRun:
    return TaggingRunFactory(recipe=_recipe())


def _refused(constraint: str) -> Any:
    """Expect PostgreSQL to refuse the write because of `constraint` (not for some other reason)."""
    return pytest.raises(IntegrityError, match=f'constraint "{constraint}"')


def test_a_tag_slug_is_unique_within_its_category() -> None:
    cuisine = _category("cuisine")
    _tag(cuisine, "italian")

    with _refused("taxonomy_tag_unique_slug_per_category"), transaction.atomic():
        _tag(cuisine, "italian", name="Italian again")

    assert Tag.objects.filter(category=cuisine, slug="italian").count() == 1


def test_the_same_tag_slug_may_be_used_in_two_categories() -> None:
    cuisine = _category("cuisine")
    occasion = _category("occasion")

    _tag(cuisine, "summer")
    _tag(occasion, "summer")

    assert sorted(Tag.objects.filter(slug="summer").values_list("category__slug", flat=True)) == [
        "cuisine",
        "occasion",
    ]


def test_a_tag_with_an_empty_slug_is_refused() -> None:
    cuisine = _category()

    with _refused("taxonomy_tag_slug_not_empty"), transaction.atomic():
        _tag(cuisine, "", name="Italian")

    assert not Tag.objects.exists()


def test_a_tag_with_an_empty_name_is_refused() -> None:
    cuisine = _category()

    with _refused("taxonomy_tag_name_not_empty"), transaction.atomic():
        _tag(cuisine, "italian", name="")

    assert not Tag.objects.exists()


def test_a_category_with_an_empty_slug_is_refused() -> None:
    with _refused("taxonomy_category_slug_not_empty"), transaction.atomic():
        Category.objects.create(name="Cuisine", slug="")

    assert not Category.objects.exists()


@pytest.mark.parametrize("max_tags", [0, 21])
def test_a_default_max_tags_outside_1_to_20_is_refused(max_tags: int) -> None:
    with _refused("taxonomy_category_default_max_tags_range"), transaction.atomic():
        _category(default_max_tags=max_tags)

    assert not Category.objects.exists()


def test_a_default_max_tags_of_1_or_20_is_accepted() -> None:
    _category("one", default_max_tags=1)
    _category("twenty", default_max_tags=20)

    assert sorted(Category.objects.values_list("default_max_tags", flat=True)) == [1, 20]


@pytest.mark.parametrize("threshold", [-0.01, 1.01])
def test_a_relevance_threshold_outside_0_to_1_is_refused(threshold: float) -> None:
    with _refused("taxonomy_category_threshold_range"), transaction.atomic():
        _category(relevance_threshold=threshold)

    assert not Category.objects.exists()


@pytest.mark.parametrize("floor", [-0.01, 1.01])
def test_a_precision_floor_outside_0_to_1_is_refused(floor: float) -> None:
    with _refused("taxonomy_category_precision_floor_range"), transaction.atomic():
        _category(precision_floor=floor)

    assert not Category.objects.exists()


def test_a_category_has_no_precision_floor_unless_staff_set_one() -> None:
    _category("plain")
    _category("strict", precision_floor=0.5)

    assert dict(Category.objects.values_list("slug", "precision_floor")) == {"plain": None, "strict": 0.5}


def test_a_relevance_threshold_of_0_1_or_none_is_accepted() -> None:
    _category("low", relevance_threshold=0.0)
    _category("high", relevance_threshold=1.0)
    _category("calibrated", relevance_threshold=None)

    assert dict(Category.objects.values_list("slug", "relevance_threshold")) == {
        "low": 0.0,
        "high": 1.0,
        "calibrated": None,
    }


@pytest.mark.parametrize("score", [-0.1, 1.1])
def test_an_assignment_score_outside_0_to_1_is_refused(score: float) -> None:
    run = _run()
    tag = _tag(_category())

    with _refused("tagging_assignment_score_range"), transaction.atomic():
        TagAssignment.objects.create(run=run, tag=tag, score=score, rank=1)

    assert not TagAssignment.objects.exists()


def test_an_assignment_score_of_0_or_1_is_accepted() -> None:
    run = _run()
    category = _category()

    TagAssignmentFactory(run=run, tag=_tag(category, "italian"), score=0.0, rank=2)
    TagAssignmentFactory(run=run, tag=_tag(category, "french"), score=1.0, rank=1)

    assert sorted(TagAssignment.objects.values_list("score", flat=True)) == [0.0, 1.0]


def test_the_same_tag_twice_in_one_run_is_refused() -> None:
    run = _run()
    tag = _tag(_category())
    TagAssignment.objects.create(run=run, tag=tag, score=0.9, rank=1)

    with _refused("tagging_assignment_unique_tag_per_run"), transaction.atomic():
        TagAssignment.objects.create(run=run, tag=tag, score=0.8, rank=2)

    assert TagAssignment.objects.get().score == 0.9


def test_the_same_tag_in_two_runs_is_accepted() -> None:
    tag = _tag(_category())

    TagAssignment.objects.create(run=_run(), tag=tag, score=0.9, rank=1)
    TagAssignment.objects.create(run=_run(), tag=tag, score=0.7, rank=1)

    assert TagAssignment.objects.filter(tag=tag).count() == 2


def test_a_recipe_with_an_empty_title_is_refused() -> None:
    with _refused("tagging_recipe_title_not_empty"), transaction.atomic():
        _recipe(title="")

    assert not Recipe.objects.exists()


def test_a_recipe_with_neither_ingredients_nor_instructions_is_refused() -> None:
    with _refused("tagging_recipe_has_ingredients_or_instructions"), transaction.atomic():
        _recipe(ingredients=[], instructions="")

    assert not Recipe.objects.exists()


def test_a_recipe_with_only_ingredients_or_only_instructions_is_accepted() -> None:
    _recipe(title="Salad", ingredients=["1 lettuce"], instructions="")
    _recipe(title="Toast", ingredients=[], instructions="Toast the bread.")

    assert sorted(Recipe.objects.values_list("title", flat=True)) == ["Salad", "Toast"]


def test_the_same_external_id_twice_in_one_source_is_refused() -> None:
    _recipe(source="demo", external_id="carbonara")

    with _refused("tagging_recipe_unique_external_id_per_source"), transaction.atomic():
        _recipe(source="demo", external_id="carbonara")

    assert Recipe.objects.count() == 1


def test_the_same_external_id_in_two_sources_is_accepted() -> None:
    _recipe(source="demo", external_id="carbonara")
    _recipe(source="import", external_id="carbonara")

    assert sorted(Recipe.objects.values_list("source", flat=True)) == ["demo", "import"]


def test_two_recipes_without_an_external_id_are_accepted() -> None:
    _recipe(source="api", external_id=None)
    _recipe(source="api", external_id=None)

    assert Recipe.objects.filter(source="api", external_id__isnull=True).count() == 2


def test_the_tag_embedding_column_has_the_configured_dimension() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'taxonomy_tag'::regclass AND attname = 'embedding'"
        )
        (column_type,) = cursor.fetchone()

    assert column_type == f"vector({settings.EMBEDDING_DIMENSIONS})"


def test_tag_embeddings_have_no_approximate_index_that_could_drop_tags_from_a_scan() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'taxonomy_tag' AND indexdef LIKE '%%hnsw%%'")
        rows = cursor.fetchall()

    assert rows == []
