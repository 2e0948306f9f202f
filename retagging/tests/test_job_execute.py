"""A re-tagging job executed chunk by chunk: a dry run stores runs and an exact diff without moving a pointer;
applying moves pointers and keeps the previous; rolling back restores them; gold-labelled categories stay out
of every diff; ingredient rules apply; categories not re-tagged are carried over; cancelling stops the rest."""

from __future__ import annotations

from typing import Any

import pytest

from feedback.models import GoldLabel, GoldLabelSource
from retagging.dispatch import retag_job_create
from retagging.models import ChunkStatus, ItemStatus, JobStatus, RetagItem, RetagJob
from retagging.selectors import retag_job_progress, retag_job_tag_totals
from retagging.services.chunks import retag_chunk_execute
from retagging.services.jobs import RetagJobState, retag_job_apply, retag_job_cancel, retag_job_rollback
from retagging.tests.conftest import current_run_id, job_execute, run_with_tags, tags_of
from tagging.models import Recipe, TaggingRun
from tagging.services.rules import tags_ruled_out
from taxonomy.limits import MAX_TAGS_PER_CATEGORY
from taxonomy.models import Tag

pytestmark = pytest.mark.django_db

TACOS, SALAD, CARBONARA = "Beef Tacos", "Greek Salad", "Spaghetti Carbonara"


def _job(
    *, dry_run: bool = True, config: dict[str, Any] | None = None, selection: dict[str, Any] | None = None
) -> RetagJob:
    return retag_job_create(
        selection=selection or {"kind": "all"},
        strategy="similarity",
        config=config if config is not None else {"categories": ["cuisine", "course"], "k": 1},
        dry_run=dry_run,
    )


def test_a_dry_run_moves_no_pointer_and_its_diff_is_exact(kitchen: dict[str, Recipe]) -> None:
    previous = {title: run_with_tags(recipe, ["cuisine/french", "course/dessert"]) for title, recipe in kitchen.items()}

    job = job_execute(_job())

    assert job.status == JobStatus.SUCCEEDED
    assert {title: current_run_id(r) for title, r in kitchen.items()} == {t: run.pk for t, run in previous.items()}
    items = {item.recipe_id: item for item in job.items.all()}
    for title, recipe in kitchen.items():
        item = items[recipe.pk]
        new = tags_of(item.new_run_id)
        assert item.previous_run_id == previous[title].pk
        assert item.added == sorted(new - {"cuisine/french", "course/dessert"})
        assert item.removed == sorted({"cuisine/french", "course/dessert"} - new)
        assert item.changed == bool(item.added or item.removed)
        assert TaggingRun.objects.get(pk=item.new_run_id).sets_current is False
    assert "course/dessert" in items[kitchen[TACOS].pk].removed
    assert "cuisine/mexican" in items[kitchen[TACOS].pk].added


def test_the_report_totals_each_tag_over_the_recipes(kitchen: dict[str, Recipe]) -> None:
    for recipe in kitchen.values():
        run_with_tags(recipe, ["course/dessert"])

    job = job_execute(_job(config={"categories": ["course"], "k": 1}))

    totals = {t.tag: (t.added, t.removed) for t in retag_job_tag_totals(job=job)}
    removed = RetagItem.objects.filter(job=job, removed__contains=["course/dessert"]).count()
    assert totals["course/dessert"] == (0, removed)
    assert removed == len(kitchen) - RetagItem.objects.filter(job=job, changed=False).count()
    assert sum(added for added, _ in totals.values()) == sum(len(i.added) for i in job.items.all())


def test_applying_a_dry_run_moves_pointers_and_keeps_the_previous_run(kitchen: dict[str, Recipe], staff: Any) -> None:
    previous = {title: run_with_tags(recipe, ["cuisine/french"]) for title, recipe in kitchen.items()}
    job = job_execute(_job())
    # Tagged again after the dry run: the dry run's comparison no longer holds for this recipe.
    newer = run_with_tags(kitchen[SALAD], ["cuisine/greek"])

    moved = retag_job_apply(job=job, user=staff)

    items = {item.recipe_id: item for item in job.items.all()}
    assert moved.left == [kitchen[SALAD].pk]
    assert moved.moved == len(kitchen) - 1
    assert current_run_id(kitchen[SALAD]) == newer.pk
    for title, recipe in kitchen.items():
        if title != SALAD:
            assert current_run_id(recipe) == items[recipe.pk].new_run_id
            assert items[recipe.pk].previous_run_id == previous[title].pk
    job.refresh_from_db()
    assert (job.applied_by, job.summary["apply"]["changed_since_dry_run"]) == (staff, [kitchen[SALAD].pk])
    with pytest.raises(RetagJobState, match="already applied"):
        retag_job_apply(job=job, user=staff)


def test_rolling_back_restores_every_pointer_exactly(kitchen: dict[str, Recipe], staff: Any) -> None:
    before = {title: run_with_tags(recipe, ["cuisine/french"]).pk for title, recipe in kitchen.items()}
    Recipe.objects.filter(pk=kitchen[CARBONARA].pk).update(current_run=None)
    before[CARBONARA] = None  # type: ignore[assignment]
    job = job_execute(_job())
    retag_job_apply(job=job, user=staff)

    restored = retag_job_rollback(job=job, user=staff)

    assert restored.moved == len(kitchen)
    assert {title: current_run_id(r) for title, r in kitchen.items()} == before
    job.refresh_from_db()
    assert job.rolled_back_by == staff
    with pytest.raises(RetagJobState, match="already rolled back"):
        retag_job_rollback(job=job, user=staff)


def test_a_dry_run_never_applied_has_nothing_to_roll_back(kitchen: dict[str, Recipe], staff: Any) -> None:
    job = job_execute(_job())

    with pytest.raises(RetagJobState, match="never applied"):
        retag_job_rollback(job=job, user=staff)


def test_an_applying_job_moves_pointers_as_it_goes_and_rolls_back(kitchen: dict[str, Recipe], staff: Any) -> None:
    before = {title: run_with_tags(recipe, ["cuisine/french"]).pk for title, recipe in kitchen.items()}

    job = job_execute(_job(dry_run=False))

    items = {item.recipe_id: item for item in job.items.all()}
    assert {current_run_id(r) for r in kitchen.values()} == {i.new_run_id for i in items.values()}
    assert all(item.moved_at is not None for item in items.values())
    assert all(TaggingRun.objects.get(pk=i.new_run_id).sets_current for i in items.values())
    with pytest.raises(RetagJobState, match="Only a dry run is applied"):
        retag_job_apply(job=job, user=staff)

    retag_job_rollback(job=job, user=staff)

    assert {title: current_run_id(r) for title, r in kitchen.items()} == before


def test_gold_labelled_categories_are_never_in_a_diff_and_the_labels_stay(kitchen: dict[str, Recipe]) -> None:
    tacos = kitchen[TACOS]
    run_with_tags(tacos, ["cuisine/french", "course/dessert"])
    label = GoldLabel.objects.create(
        recipe=tacos, tag=Tag.objects.get(category__slug="cuisine", slug="italian"), source=GoldLabelSource.REVIEW
    )

    job = job_execute(_job(selection={"kind": "source", "value": "api"}))

    item = job.items.get(recipe=tacos)
    assert not [t for t in item.added + item.removed if t.startswith("cuisine/")]
    assert "course/dessert" in item.removed
    assert list(GoldLabel.objects.values_list("pk", "recipe_id", "tag_id")) == [(label.pk, tacos.pk, label.tag_id)]


def test_ingredient_rules_apply_to_a_re_tag(kitchen: dict[str, Recipe]) -> None:
    config = {"categories": ["diet"], "k": MAX_TAGS_PER_CATEGORY, "threshold": 0.0}

    job = job_execute(_job(config=config))

    diet = Tag.objects.filter(category__slug="diet")
    for title in (TACOS, CARBONARA):
        item = job.items.get(recipe=kitchen[title])
        ids = tags_ruled_out(recipe=kitchen[title].text, tag_ids=diet.values_list("id", flat=True))
        ruled_out = {f"diet/{slug}" for slug in diet.filter(pk__in=ids).values_list("slug", flat=True)}
        removed = {f"diet/{r['tag']}" for r in TaggingRun.objects.get(pk=item.new_run_id).removed_by_rule}
        # Every diet tag scores above a threshold of 0: only the rules keep some out.
        assert "diet/vegetarian" in ruled_out
        assert removed
        assert removed <= ruled_out
        assert not tags_of(item.new_run_id) & ruled_out


def test_categories_not_re_tagged_are_carried_over_from_the_previous_run(kitchen: dict[str, Recipe]) -> None:
    previous = run_with_tags(kitchen[TACOS], ["cuisine/french", "course/dessert", "diet/vegan"])

    job = job_execute(_job(dry_run=False, config={"categories": ["cuisine"], "k": 1}))

    item = job.items.get(recipe=kitchen[TACOS])
    new = tags_of(item.new_run_id)
    assert {"course/dessert", "diet/vegan"} <= new
    assert "cuisine/french" not in new
    carried = TaggingRun.objects.get(pk=item.new_run_id).assignments.filter(tag__category__slug="course").get()
    assert carried.evidence["carried_over_from_run"] == previous.pk
    assert not [t for t in item.added + item.removed if not t.startswith("cuisine/")]


def test_cancelling_stops_the_chunks_not_yet_done(kitchen: dict[str, Recipe], settings: Any, staff: Any) -> None:
    settings.RETAG_CHUNK_SIZE = 4
    job = _job()
    first, *rest = job.chunks.order_by("number")
    retag_chunk_execute(chunk_id=first.pk, delivery=None, send_runs=list, schedule_collect=print)

    retag_job_cancel(job=job, user=staff)
    for chunk in rest:
        retag_chunk_execute(chunk_id=chunk.pk, delivery=None, send_runs=list, schedule_collect=print)

    job.refresh_from_db()
    progress = retag_job_progress(job=job)
    assert (job.status, job.cancelled_by) == (JobStatus.CANCELLED, staff)
    assert (progress.done, progress.skipped, progress.pending) == (4, len(kitchen) - 4, 0)
    assert TaggingRun.objects.filter(recipe__in=kitchen.values()).count() == 4
    assert set(job.chunks.exclude(pk=first.pk).values_list("status", flat=True)) == {ChunkStatus.CANCELLED}
    assert job.summary["skipped"] == len(kitchen) - 4
    with pytest.raises(RetagJobState, match="already finished"):
        retag_job_cancel(job=job, user=staff)


def test_a_job_finishes_once_with_a_summary(kitchen: dict[str, Recipe]) -> None:
    job = job_execute(_job())

    assert job.status == JobStatus.SUCCEEDED
    assert job.finished_at is not None
    assert job.summary["total"] == job.summary["done"] == len(kitchen)
    assert job.summary["changed"] + job.summary["unchanged"] == len(kitchen)
    assert job.summary["duration_seconds"] >= 0
    assert set(job.items.values_list("status", flat=True)) == {ItemStatus.DONE}
