"""taxonomy.services: importing and exporting the taxonomy, merging tags, and embedding tags."""

from __future__ import annotations

import copy
import re
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from django.conf import settings
from django.utils import timezone

from tagging.models import TagAssignment, TaggingRun
from tagging.tests.conftest import TagAssignmentFactory, TaggingRunFactory
from taxonomy.embedding import tags_embed
from taxonomy.models import Category, Tag
from taxonomy.selectors import taxonomy_export
from taxonomy.services.changes import TaxonomyError, tag_merge
from taxonomy.services.documents import taxonomy_import

pytestmark = pytest.mark.django_db


def _document() -> dict[str, Any]:
    return {
        "categories": [
            {
                "slug": "cuisine",
                "name": "Cuisine",
                "description": "Where a recipe comes from.",
                "default_max_tags": 2,
                "relevance_threshold": 0.7,
                "position": 1,
                "tags": [
                    {
                        "slug": "italian",
                        "name": "Italian",
                        "description": "Pasta, risotto, pizza, olive oil and parmesan.",
                        "synonyms": ["tuscan", "sicilian"],
                    },
                    {"slug": "french", "name": "French", "description": "Butter, cream, shallots and wine sauces."},
                ],
            },
            {
                # No slugs: they are made from the names.
                "name": "Course",
                "position": 2,
                "tags": [{"name": "Main Course"}, {"name": "Dessert", "active": False}],
            },
        ]
    }


def _tag(category: str, slug: str) -> Tag:
    return Tag.objects.get(category__slug=category, slug=slug)


def _run_with(*scored: tuple[Tag, float]) -> TaggingRun:
    run = TaggingRunFactory(recipe__title="Risotto", recipe__ingredients=["rice"], recipe__instructions="Stir.")
    for rank, (tag, score) in enumerate(scored, start=1):
        TagAssignmentFactory(run=run, tag=tag, score=score, rank=rank)
    return run


def _scores(run: TaggingRun) -> dict[str, float]:
    return {a.tag.slug: a.score for a in TagAssignment.objects.filter(run=run).select_related("tag")}


# --- taxonomy_import --------------------------------------------------------------------------


def test_it_creates_categories_and_tags_from_a_document() -> None:
    result = taxonomy_import(data=_document())

    assert (result.categories_created, result.categories_updated) == (2, 0)
    assert (result.tags_created, result.tags_updated) == (4, 0)
    cuisine = Category.objects.get(slug="cuisine")
    assert (cuisine.name, cuisine.default_max_tags, cuisine.relevance_threshold) == ("Cuisine", 2, 0.7)
    course = Category.objects.get(slug="course")
    assert (course.default_max_tags, course.relevance_threshold, course.active) == (3, None, True)
    assert sorted(Tag.objects.values_list("category__slug", "slug", "active")) == [
        ("course", "dessert", False),
        ("course", "main-course", True),
        ("cuisine", "french", True),
        ("cuisine", "italian", True),
    ]
    assert _tag("cuisine", "italian").synonyms == ["tuscan", "sicilian"]
    assert sorted(result.tag_ids_to_embed) == sorted(Tag.objects.values_list("id", flat=True))


def test_reimporting_the_same_document_creates_and_changes_no_tag() -> None:
    taxonomy_import(data=_document())
    before = taxonomy_export()

    result = taxonomy_import(data=_document())

    assert (result.categories_created, result.tags_created, result.tags_updated) == (0, 0, 0)
    assert result.tag_ids_to_embed == []
    assert (Category.objects.count(), Tag.objects.count()) == (2, 4)
    assert taxonomy_export() == before


def test_reimporting_the_same_document_counts_and_saves_no_category_as_updated() -> None:
    taxonomy_import(data=_document())
    updated_at = dict(Category.objects.values_list("slug", "updated_at"))

    result = taxonomy_import(data=_document())

    assert result.categories_updated == 0
    assert dict(Category.objects.values_list("slug", "updated_at")) == updated_at


def test_a_changed_category_is_counted_as_updated() -> None:
    taxonomy_import(data=_document())
    document = _document()
    document["categories"][1]["default_max_tags"] = 5

    result = taxonomy_import(data=document)

    assert (result.categories_created, result.categories_updated) == (0, 1)
    assert Category.objects.get(slug="course").default_max_tags == 5


def test_a_changed_description_lists_the_tag_for_re_embedding() -> None:
    taxonomy_import(data=_document())
    document = _document()
    document["categories"][0]["tags"][0]["description"] = "Neapolitan pizza and fresh pasta."

    result = taxonomy_import(data=document)

    italian = _tag("cuisine", "italian")
    assert result.tags_updated == 1
    assert result.tag_ids_to_embed == [italian.pk]
    assert italian.description == "Neapolitan pizza and fresh pasta."


def test_a_change_of_only_active_does_not_list_the_tag_for_re_embedding() -> None:
    taxonomy_import(data=_document())
    document = _document()
    document["categories"][0]["tags"][1]["active"] = False

    result = taxonomy_import(data=document)

    assert result.tags_updated == 1
    assert result.tag_ids_to_embed == []
    assert _tag("cuisine", "french").active is False


def _invalid(mutate: Any) -> dict[str, Any]:
    document = _document()
    mutate(document)
    return document


@pytest.mark.parametrize(
    ("document", "message"),
    [
        pytest.param(
            [{"name": "Cuisine"}],
            "A taxonomy document is a JSON object with a 'categories' list.",
            id="not-an-object",
        ),
        pytest.param(
            _invalid(lambda d: d["categories"][1].pop("name")),
            "categories[1]: 'name' is required.",
            id="missing-name",
        ),
        pytest.param(
            _invalid(lambda d: d["categories"][1]["tags"][1].update(name="")),
            "categories[1].tags[1]: 'name' is required.",
            id="empty-tag-name",
        ),
        pytest.param(
            _invalid(lambda d: d["categories"][0]["tags"].append({"slug": "italian", "name": "Italiano"})),
            "categories[0].tags[2]: tag slug 'italian' appears twice in 'cuisine'.",
            id="duplicate-tag-slug",
        ),
        pytest.param(
            _invalid(lambda d: d["categories"][1].update(default_max_tags=0)),
            "categories[1]: 'default_max_tags' must be a whole number from 1 to 20.",
            id="default-max-tags-0",
        ),
        pytest.param(
            _invalid(lambda d: d["categories"][1]["tags"][0].update(synonyms="entree")),
            "categories[1].tags[0]: 'synonyms' must be a list of strings.",
            id="synonyms-not-a-list",
        ),
        pytest.param(
            _invalid(lambda d: d["categories"][1].update(relevance_threshold=2)),
            "categories[1]: 'relevance_threshold' must be a number from 0 to 1, or null.",
            id="threshold-2",
        ),
        pytest.param(
            _invalid(lambda d: d["categories"][1].update(position=-1)),
            "categories[1]: 'position' must be a whole number, 0 or more.",
            id="negative-position",
        ),
        pytest.param(
            _invalid(lambda d: d["categories"][1].update(position="second")),
            "categories[1]: 'position' must be a whole number, 0 or more.",
            id="position-not-a-number",
        ),
        pytest.param(
            _invalid(lambda d: d["categories"][1].update(name="???")),
            "categories[1]: no slug could be made from the name '???'; give a 'slug'.",
            id="name-without-a-slug",
        ),
        pytest.param(
            _invalid(lambda d: d["categories"][1]["tags"][0].update(synonyms=["x" * 101])),
            "categories[1].tags[0]: a synonym is longer than 100 characters.",
            id="synonym-over-100-characters",
        ),
        pytest.param(
            _invalid(lambda d: d["categories"][1]["tags"][0].update(active="false")),
            "categories[1].tags[0]: 'active' must be true or false.",
            id="active-not-a-boolean",
        ),
    ],
)
def test_it_refuses_an_invalid_document_naming_the_place_and_writes_nothing(document: Any, message: str) -> None:
    with pytest.raises(TaxonomyError, match=f"^{re.escape(message)}$"):
        taxonomy_import(data=document)

    assert (Category.objects.count(), Tag.objects.count()) == (0, 0)


def test_an_exported_taxonomy_imports_into_an_empty_database_as_the_same_taxonomy(taxonomy: Any) -> None:
    exported = taxonomy_export()
    Category.objects.all().delete()

    result = taxonomy_import(data=copy.deepcopy(exported))

    assert taxonomy_export() == exported
    assert result.categories_created == len(taxonomy["categories"])
    assert result.tags_created == sum(len(c["tags"]) for c in taxonomy["categories"])


# --- tag_merge --------------------------------------------------------------------------------


@pytest.fixture
def cuisine_tags() -> tuple[Tag, Tag]:
    taxonomy_import(data=_document())
    french = _tag("cuisine", "french")
    french.synonyms = ["provencal", "TUSCAN"]
    french.save()
    return _tag("cuisine", "italian"), french


def test_merging_moves_the_source_assignments_to_the_target(cuisine_tags: tuple[Tag, Tag]) -> None:
    italian, french = cuisine_tags
    run = _run_with((italian, 0.9))

    tag_merge(source=italian, target=french)

    assert _scores(run) == {"french": 0.9}


def test_merging_keeps_one_row_with_the_higher_score_in_a_run_that_had_both(cuisine_tags: tuple[Tag, Tag]) -> None:
    italian, french = cuisine_tags
    source_higher = _run_with((italian, 0.8), (french, 0.6))
    target_higher = _run_with((french, 0.7), (italian, 0.3))

    tag_merge(source=italian, target=french)

    assert _scores(source_higher) == {"french": 0.8}
    assert _scores(target_higher) == {"french": 0.7}


def test_merging_adds_the_source_name_and_synonyms_to_the_target_synonyms_once(
    cuisine_tags: tuple[Tag, Tag],
) -> None:
    italian, french = cuisine_tags

    merged = tag_merge(source=italian, target=french)

    # "tuscan" is already there as "TUSCAN": synonyms are compared without case.
    expected = ["provencal", "TUSCAN", "Italian", "sicilian"]
    assert merged.synonyms == expected
    assert _tag("cuisine", "french").synonyms == expected


def test_merging_deletes_the_source(cuisine_tags: tuple[Tag, Tag]) -> None:
    italian, french = cuisine_tags

    tag_merge(source=italian, target=french)

    assert list(Tag.objects.filter(category__slug="cuisine").values_list("slug", flat=True)) == ["french"]


def test_merging_into_a_target_without_description_takes_the_source_description(
    cuisine_tags: tuple[Tag, Tag],
) -> None:
    italian, french = cuisine_tags
    Tag.objects.filter(pk=french.pk).update(description="")
    french.refresh_from_db()

    tag_merge(source=italian, target=french)

    assert _tag("cuisine", "french").description == "Pasta, risotto, pizza, olive oil and parmesan."


def test_it_refuses_to_merge_tags_of_two_categories(cuisine_tags: tuple[Tag, Tag]) -> None:
    italian, _ = cuisine_tags
    dessert = _tag("course", "dessert")
    run = _run_with((italian, 0.9))

    with pytest.raises(TaxonomyError, match=r"^Only tags of the same category can be merged\.$") as excinfo:
        tag_merge(source=italian, target=dessert)

    assert excinfo.value.details == {"source": "cuisine/italian", "target": "course/dessert"}
    assert Tag.objects.filter(pk__in=[italian.pk, dessert.pk]).count() == 2
    assert _scores(run) == {"italian": 0.9}


def test_it_refuses_to_merge_a_tag_into_itself(cuisine_tags: tuple[Tag, Tag]) -> None:
    italian, _ = cuisine_tags

    with pytest.raises(TaxonomyError, match=r"^A tag cannot be merged into itself\.$"):
        tag_merge(source=italian, target=italian)

    assert _tag("cuisine", "italian").synonyms == ["tuscan", "sicilian"]


# --- tags_embed -------------------------------------------------------------------------------


def test_it_embeds_every_tag_lacking_a_vector() -> None:
    taxonomy_import(data=_document())
    started = timezone.now()

    count = tags_embed()

    assert count == 4
    for tag in Tag.objects.order_by("id"):
        vector = np.asarray(tag.embedding)
        assert vector.shape == (settings.EMBEDDING_DIMENSIONS,)
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
        assert tag.embedding_model == settings.EMBEDDING_MODEL
        assert started <= tag.embedded_at <= timezone.now()


def test_it_gives_different_tags_different_vectors() -> None:
    taxonomy_import(data=_document())

    tags_embed()

    italian = np.asarray(_tag("cuisine", "italian").embedding)
    dessert = np.asarray(_tag("course", "dessert").embedding)
    assert float(italian @ dessert) < 0.9


def test_a_second_embedding_pass_with_nothing_stale_embeds_nothing() -> None:
    taxonomy_import(data=_document())
    tags_embed()
    embedded_at = dict(Tag.objects.values_list("slug", "embedded_at"))

    count = tags_embed()

    assert count == 0
    assert dict(Tag.objects.values_list("slug", "embedded_at")) == embedded_at


def test_it_re_embeds_a_tag_embedded_by_another_model() -> None:
    taxonomy_import(data=_document())
    tags_embed()
    old = timezone.now() - timedelta(days=1)
    Tag.objects.filter(slug="italian").update(embedding_model="an-older-model", embedded_at=old)

    count = tags_embed()

    italian = _tag("cuisine", "italian")
    assert count == 1
    assert italian.embedding_model == settings.EMBEDDING_MODEL
    assert italian.embedded_at > old


def test_a_categorys_precision_floor_travels_with_the_document_and_stays_when_a_document_omits_it() -> None:
    document = _document()
    document["categories"][0]["precision_floor"] = 0.6
    taxonomy_import(data=document)
    exported = taxonomy_export()

    taxonomy_import(data=_document())

    assert exported["categories"][0]["precision_floor"] == 0.6
    assert Category.objects.get(slug="cuisine").precision_floor == 0.6


def test_a_precision_floor_outside_zero_to_one_is_refused_naming_the_category() -> None:
    document = _document()
    document["categories"][0]["precision_floor"] = 1.5

    with pytest.raises(TaxonomyError, match=r"^categories\[0\]: 'precision_floor' must be a number from 0 to 1"):
        taxonomy_import(data=document)
