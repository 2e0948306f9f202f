"""Creating a re-tagging job: the selection resolved once to recipes, cut into chunks that cover every recipe
exactly once, and bad input refused with a message naming the problem, storing nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db.models import Count
from django.utils import timezone

from autotagger.errors import DomainError
from retagging.dispatch import retag_job_create
from retagging.models import JobStatus, RetagChunk, RetagItem, RetagJob
from retagging.tests.conftest import run_with_tags
from tagging.models import Recipe, TaggingRun
from taxonomy.selectors import taxonomy_version_current

pytestmark = pytest.mark.django_db


def _job(selection: dict[str, Any], **kwargs: Any) -> RetagJob:
    return retag_job_create(
        selection=selection,
        strategy=kwargs.pop("strategy", "similarity"),
        config=kwargs.pop("config", {}),
        dry_run=kwargs.pop("dry_run", True),
        **kwargs,
    )


def _recipe_ids(job: RetagJob) -> set[int]:
    return set(job.items.values_list("recipe_id", flat=True))


def test_all_selects_every_recipe(kitchen: dict[str, Recipe]) -> None:
    job = _job({"kind": "all"})

    assert _recipe_ids(job) == {r.pk for r in kitchen.values()}
    assert (job.total, job.status, job.dry_run) == (len(kitchen), JobStatus.QUEUED, True)


def test_a_source_selects_its_recipes(kitchen: dict[str, Recipe]) -> None:
    Recipe.objects.filter(pk=kitchen["Beef Tacos"].pk).update(source="blog")

    job = _job({"kind": "source", "value": "blog"})

    assert _recipe_ids(job) == {kitchen["Beef Tacos"].pk}


def test_a_tag_selects_recipes_whose_current_tags_have_it(kitchen: dict[str, Recipe]) -> None:
    run_with_tags(kitchen["Beef Tacos"], ["cuisine/mexican"])
    run_with_tags(kitchen["Greek Salad"], ["cuisine/greek"])
    run_with_tags(kitchen["Shakshuka"], ["cuisine/mexican"], current=False)

    job = _job({"kind": "tag", "value": "cuisine/mexican"})

    assert _recipe_ids(job) == {kitchen["Beef Tacos"].pk}


def test_a_category_selects_recipes_with_a_current_tag_in_it(kitchen: dict[str, Recipe]) -> None:
    run_with_tags(kitchen["Beef Tacos"], ["cuisine/mexican"])
    run_with_tags(kitchen["Greek Salad"], ["course/salad"])

    job = _job({"kind": "category", "value": "course"})

    assert _recipe_ids(job) == {kitchen["Greek Salad"].pk}


def test_changed_since_selects_recipes_updated_from_that_moment(kitchen: dict[str, Recipe]) -> None:
    Recipe.objects.update(updated_at=timezone.now() - timedelta(days=10))
    Recipe.objects.filter(pk=kitchen["Shakshuka"].pk).update(updated_at=timezone.now())

    job = _job({"kind": "changed_since", "value": (timezone.now() - timedelta(days=1)).date().isoformat()})

    assert _recipe_ids(job) == {kitchen["Shakshuka"].pk}


def test_stale_selects_the_recipes_stale_for_the_causes_asked(kitchen: dict[str, Recipe]) -> None:
    for title, recipe in kitchen.items():
        if title != "Shakshuka":
            run = run_with_tags(recipe, ["cuisine/french"])
            TaggingRun.objects.filter(pk=run.pk).update(
                content_hash=recipe.content_hash, taxonomy_version=taxonomy_version_current()
            )
    Recipe.objects.filter(pk=kitchen["Beef Tacos"].pk).update(content_hash="edited")

    never = _job({"kind": "stale", "causes": ["never_tagged"]})
    edited = _job({"kind": "stale", "causes": ["content"]})
    either = _job({"kind": "stale", "causes": ["never_tagged", "content"]})

    assert _recipe_ids(never) == {kitchen["Shakshuka"].pk}
    assert _recipe_ids(edited) == {kitchen["Beef Tacos"].pk}
    assert _recipe_ids(either) == {kitchen["Shakshuka"].pk, kitchen["Beef Tacos"].pk}
    assert edited.selection == {"kind": "stale", "value": None, "causes": ["content"]}


def test_chunks_cover_every_recipe_exactly_once(kitchen: dict[str, Recipe], settings: Any) -> None:
    settings.RETAG_CHUNK_SIZE = 4

    job = _job({"kind": "all"})

    assert list(job.chunks.order_by("number").values_list("number", flat=True)) == [1, 2, 3, 4]
    sizes = dict(RetagItem.objects.filter(job=job).values_list("chunk__number").annotate(n=Count("id")))
    assert sizes == {1: 4, 2: 4, 3: 4, 4: 2}
    assert sorted(job.items.values_list("recipe_id", flat=True)) == sorted(r.pk for r in kitchen.values())


def test_chunks_take_the_recipes_in_id_order_and_items_start_pending(kitchen: dict[str, Recipe], settings: Any) -> None:
    settings.RETAG_CHUNK_SIZE = 5

    job = _job({"kind": "all"})

    ids = sorted(r.pk for r in kitchen.values())
    for number in (1, 2, 3):
        chunk = job.chunks.get(number=number)
        assert sorted(chunk.items.values_list("recipe_id", flat=True)) == ids[(number - 1) * 5 : number * 5]
    assert list(job.items.values_list("status", "changed", "added", "removed", "error").distinct()) == [
        ("pending", False, [], [], "")
    ]
    assert job.total == len(ids) == job.items.count()


def test_a_selection_over_the_limit_is_refused_naming_it_and_stores_nothing(
    kitchen: dict[str, Recipe], settings: Any
) -> None:
    settings.RETAG_MAX_RECIPES = 3

    with pytest.raises(DomainError, match="at most 3 recipes") as raised:
        _job({"kind": "all"})

    assert raised.value.status == 400
    assert not RetagJob.objects.exists()
    assert not RetagItem.objects.exists()


def test_llm_jobs_have_smaller_chunks(kitchen: dict[str, Recipe], settings: Any, llm_settings: Any) -> None:
    settings.RETAG_CHUNK_SIZE, settings.RETAG_LLM_CHUNK_SIZE = 200, 5

    job = _job({"kind": "all"}, strategy="llm")

    assert job.chunks.count() == 3


@pytest.mark.parametrize(
    ("selection", "config", "strategy", "words"),
    [
        ({"kind": "everything"}, {}, "similarity", "Unknown selection kind 'everything'"),
        ({"kind": "stale", "causes": ["gremlins"]}, {}, "similarity", "Unknown staleness causes ['gremlins']"),
        ({"kind": "category", "value": "nope"}, {}, "similarity", "Unknown category 'nope'"),
        ({"kind": "tag", "value": "cuisine/klingon"}, {}, "similarity", "Unknown tag 'cuisine/klingon'"),
        ({"kind": "tag"}, {}, "similarity", "needs a value"),
        ({"kind": "source", "value": "nowhere"}, {}, "similarity", "No recipe comes from the source 'nowhere'"),
        ({"kind": "changed_since", "value": "yesterday"}, {}, "similarity", "'yesterday' is not a date"),
        ({"kind": "all"}, {}, "psychic", "Unknown strategy 'psychic'"),
        ({"kind": "all"}, {"categories": ["nope"]}, "similarity", "Unknown or inactive categories: nope"),
        ({"kind": "all"}, {"k": 0}, "similarity", "k must be between"),
        ({"kind": "all"}, {"colour": "red"}, "similarity", "Unknown config keys: colour"),
    ],
)
def test_bad_input_is_refused_naming_the_problem_and_stores_nothing(
    kitchen: dict[str, Recipe], selection: dict[str, Any], config: dict[str, Any], strategy: str, words: str
) -> None:
    with pytest.raises(DomainError) as raised:
        _job(selection, config=config, strategy=strategy)

    assert words in raised.value.message
    assert raised.value.status == 400
    assert not RetagJob.objects.exists()
    assert not RetagChunk.objects.exists()


def test_an_empty_selection_is_refused(taxonomy: dict[str, Any]) -> None:
    with pytest.raises(DomainError, match="No recipe matches the selection"):
        _job({"kind": "all"})
