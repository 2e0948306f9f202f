from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import TypedDict

from django.db.models import Count, Max

from feedback.models import GoldLabel


class GoldLabelStats(TypedDict):
    labels: int
    labelled_recipes: int
    # With `labels`, a cheap fingerprint of the data: any added label raises it, any removal lowers `labels`.
    last_label_id: int | None
    categories: dict[str, int]


def gold_labels_by_recipe(*, recipe_ids: Iterable[int] | None = None) -> dict[int, dict[str, set[str]]]:
    """Recipe id → category slug → tag slugs, from every source (inactive tags included: a label is a
    fact about the recipe, and whoever fits on it decides what to leave out)."""
    labels = GoldLabel.objects.all()
    if recipe_ids is not None:
        labels = labels.filter(recipe_id__in=list(recipe_ids))
    result: dict[int, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    rows = labels.order_by("recipe_id", "id").values_list("recipe_id", "tag__category__slug", "tag__slug")
    for recipe_id, category_slug, tag_slug in rows.iterator(chunk_size=5000):
        result[recipe_id][category_slug].add(tag_slug)
    return {recipe_id: dict(categories) for recipe_id, categories in result.items()}


def gold_label_stats() -> GoldLabelStats:
    totals = GoldLabel.objects.aggregate(
        labels=Count("id"), labelled_recipes=Count("recipe_id", distinct=True), last_label_id=Max("id")
    )
    per_category = (
        GoldLabel.objects.values_list("tag__category__slug").annotate(count=Count("id")).order_by("tag__category__slug")
    )
    return {
        "labels": totals["labels"],
        "labelled_recipes": totals["labelled_recipes"],
        "last_label_id": totals["last_label_id"],
        "categories": dict(per_category),
    }
