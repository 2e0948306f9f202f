"""What a re-tag changes for a recipe: the tags its new run adds and removes against the run it replaces, and
the categories the new run did not tag, carried over from the previous run so that moving the pointer never
loses them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from feedback.selectors import gold_labels_by_recipe
from tagging.models import TagAssignment, TaggingRun


@dataclass(frozen=True)
class RecipeDiff:
    added: list[str]
    removed: list[str]

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


def _tags_by_run(run_ids: Iterable[int]) -> dict[int, set[tuple[str, str]]]:
    tags: dict[int, set[tuple[str, str]]] = defaultdict(set)
    rows = TagAssignment.objects.filter(run_id__in=list(run_ids)).values_list(
        "run_id", "tag__category__slug", "tag__slug"
    )
    for run_id, category, slug in rows:
        tags[run_id].add((category, slug))
    return tags


def diffs_compute(*, pairs: dict[int, tuple[int | None, int]]) -> dict[int, RecipeDiff]:
    """Recipe id -> its diff, for `pairs` of recipe id -> (previous run id or None, new run id). Categories in
    which the recipe has gold labels are left out: the labels decide there, whatever a run says."""
    run_ids = {run for previous, new in pairs.values() for run in (previous, new) if run is not None}
    tags = _tags_by_run(run_ids)
    gold = gold_labels_by_recipe(recipe_ids=pairs.keys())
    diffs = {}
    for recipe_id, (previous, new) in pairs.items():
        labelled = set(gold.get(recipe_id, {}))
        before = {t for t in tags.get(previous, set()) if t[0] not in labelled} if previous else set()
        after = {t for t in tags.get(new, set()) if t[0] not in labelled}
        diffs[recipe_id] = RecipeDiff(
            added=sorted(f"{c}/{s}" for c, s in after - before),
            removed=sorted(f"{c}/{s}" for c, s in before - after),
        )
    return diffs


def assignments_carry_over(*, runs: Iterable[TaggingRun], previous: dict[int, int | None]) -> int:
    """Within the caller's transaction: give each new run the previous run's tags (`previous`: recipe id ->
    run id) in the active categories it was not asked to tag; returns how many were copied."""
    runs = list(runs)
    previous_ids = [previous[run.recipe_id] for run in runs if previous.get(run.recipe_id)]
    if not previous_ids:
        return 0
    # Categories every new run tagged have nothing to carry over (a re-tag of every category: all of them).
    tagged_by_all = set.intersection(*(set(run.config.get("category_slugs") or []) for run in runs))
    by_run: dict[int, list[TagAssignment]] = defaultdict(list)
    rows = (
        TagAssignment.objects.filter(run_id__in=previous_ids, tag__category__active=True)
        .exclude(tag__category__slug__in=tagged_by_all)
        .select_related("tag__category")
        .order_by("run_id", "rank", "id")
    )
    for assignment in rows:
        by_run[assignment.run_id].append(assignment)
    copies = []
    for run in runs:
        previous_id = previous.get(run.recipe_id)
        if not previous_id:
            continue
        tagged = set(run.config.get("category_slugs") or [])
        for old in by_run.get(previous_id, []):
            if old.tag.category.slug in tagged:
                continue
            copies.append(
                TagAssignment(
                    run=run,
                    tag_id=old.tag_id,
                    score=old.score,
                    rank=old.rank,
                    evidence={**old.evidence, "carried_over_from_run": previous_id},
                )
            )
    TagAssignment.objects.bulk_create(copies, batch_size=1000)
    return len(copies)
