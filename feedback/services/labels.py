"""Gold labels: the tags people (or a labelled dataset) say a recipe has, which the tagger learns from."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, TypeAlias

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction

from autotagger.redis import redis_client
from feedback.models import GoldLabel, GoldLabelSource
from feedback.tasks import tagger_refit_task
from feedback.training import REFIT_KEY
from tagging.models import Recipe
from taxonomy.models import Tag

User: TypeAlias = AbstractBaseUser | AnonymousUser | None


def user_or_none(*, user: User) -> Any:
    return user if user is not None and user.is_authenticated else None


def labels_replace(*, tag_ids_by_recipe: dict[int, set[int]], source: str, user: User) -> tuple[int, int]:
    """Within the caller's transaction: returns (labels from `source` afterwards, rows added or deleted)."""
    if source not in GoldLabelSource.values:
        raise ValueError(f"Unknown gold label source {source!r}.")
    recipe_ids = sorted(tag_ids_by_recipe)
    # Two replaces of one recipe at once would both insert the same (recipe, tag): the second waits here.
    list(Recipe.objects.select_for_update().filter(pk__in=recipe_ids).order_by("id").values_list("id", flat=True))
    present: dict[int, set[int]] = defaultdict(set)
    stale: list[int] = []
    kept = 0
    rows = GoldLabel.objects.filter(recipe_id__in=recipe_ids).values_list("id", "recipe_id", "tag_id", "source")
    for label_id, recipe_id, tag_id, label_source in rows:
        present[recipe_id].add(tag_id)
        if label_source != source:
            continue
        if tag_id in tag_ids_by_recipe[recipe_id]:
            kept += 1
        else:
            stale.append(label_id)
    new = [
        GoldLabel(recipe_id=recipe_id, tag_id=tag_id, source=source, created_by=user_or_none(user=user))
        for recipe_id in recipe_ids
        for tag_id in sorted(tag_ids_by_recipe[recipe_id] - present[recipe_id])
    ]
    if stale:
        GoldLabel.objects.filter(id__in=stale).delete()
    GoldLabel.objects.bulk_create(new, batch_size=1000)
    return kept + len(new), len(stale) + len(new)


@transaction.atomic
def gold_labels_replace(*, recipe: Recipe, tags: Iterable[Tag], source: str, user: User = None) -> int:
    """Make the recipe's gold labels from `source` exactly `tags`; returns how many it has from `source`.

    Labels from the other source are untouched: a tag the recipe already has from there keeps that
    label (and is not counted here). This does not call `labels_changed()`; callers do, once per batch.
    """
    count, _ = labels_replace(tag_ids_by_recipe={recipe.pk: {tag.pk for tag in tags}}, source=source, user=user)
    return count


def labels_changed() -> None:
    """Gold labels changed: once committed, the learned tagger refits (debounced)."""
    tagger_refit_schedule()


def gold_labels_move(source: Tag, target: Tag) -> None:
    """A merge of `source` into `target` (taxonomy.services.changes): gold labels of `source` become labels
    of `target`, unless the recipe has `target` already; without this they would go with the merged tag."""
    has_target = GoldLabel.objects.filter(tag=target).values("recipe_id")
    GoldLabel.objects.filter(tag=source, recipe_id__in=has_target).delete()
    if GoldLabel.objects.filter(tag=source).update(tag=target):
        labels_changed()


def tagger_refit_schedule() -> None:
    """Ask for a refit after the current transaction commits, debounced by TAGGER_REFIT_DEBOUNCE_SECONDS:
    each request pushes the fit back, so a burst of label changes makes one fit."""

    def enqueue() -> None:
        requested_at = time.time()
        redis_client().set(REFIT_KEY, str(requested_at), ex=24 * 3600)
        tagger_refit_task.apply_async(
            kwargs={"requested_at": requested_at}, countdown=settings.TAGGER_REFIT_DEBOUNCE_SECONDS
        )

    # robust: a broker outage must not undo a saved label; the periodic check refits later.
    transaction.on_commit(enqueue, robust=True)
