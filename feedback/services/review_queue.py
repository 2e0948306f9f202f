"""Reviewing from the queue: a review submitted from the review page (which gives the recipe's lease back), and
bulk accept (every suggested tag scored at or above a threshold, on each filtered run)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef

from feedback.models import Feedback, ReviewLease
from feedback.selectors import QueueFilters, review_lease_holder, review_queue
from feedback.services.leases import LeaseHeld, review_lease_try
from feedback.services.reviews import TagDecision, recipe_review_submit
from tagging.models import Recipe, TagAssignment, TaggingRun

logger = logging.getLogger(__name__)


@transaction.atomic
def review_page_submit(
    *, recipe: Recipe, run: TaggingRun | None, decisions: Sequence[TagDecision], reviewer: Any
) -> list[Feedback]:
    """The review page's submit: refused (LeaseHeld) while another reviewer holds the recipe; otherwise the
    decisions are recorded by recipe_review_submit and the reviewer's lease is released, all or nothing (a
    refused review leaves the lease as it was)."""
    # Taking (or renewing) the lease, rather than only looking for another's, leaves no moment in which another
    # reviewer could take the recipe between the check and the review.
    if not review_lease_try(recipe_id=recipe.pk, reviewer=reviewer):
        holder = review_lease_holder(recipe_id=recipe.pk, reviewer=reviewer)
        who = holder.reviewer.get_username() if holder is not None else "Another reviewer"
        raise LeaseHeld(f"{who} is reviewing this recipe now; nothing was saved.", details={"recipe_id": recipe.pk})
    rows = recipe_review_submit(recipe=recipe, run=run, decisions=decisions, reviewer=reviewer)
    ReviewLease.objects.filter(recipe_id=recipe.pk, reviewer_id=reviewer.pk).delete()
    return rows


@dataclass(frozen=True)
class BulkPreview:
    recipes: int  # runs with at least one tag at or above the score (at most REVIEW_BULK_MAX)
    tags: int
    more: bool  # more runs qualify than one bulk accept takes


@dataclass(frozen=True)
class BulkResult:
    recipes: int
    tags: int
    skipped: int  # recipes another reviewer took, or reviewed, in the meantime


def _bulk_runs(*, filters: QueueFilters, reviewer: Any, min_score: float) -> list[TaggingRun]:
    limit = int(settings.REVIEW_BULK_MAX)
    above = TagAssignment.objects.filter(run_id=OuterRef("pk"), score__gte=min_score)
    runs = review_queue(filters=filters, reviewer=reviewer).filter(Exists(above))
    return list(runs.prefetch_related("assignments")[: limit + 1])


def review_bulk_preview(*, filters: QueueFilters, reviewer: Any, min_score: float) -> BulkPreview:
    """What review_bulk_accept would do now: the confirmation step's counts."""
    runs = _bulk_runs(filters=filters, reviewer=reviewer, min_score=min_score)
    limit = int(settings.REVIEW_BULK_MAX)
    kept = runs[:limit]
    tags = sum(1 for run in kept for a in run.assignments.all() if a.score >= min_score)
    return BulkPreview(recipes=len(kept), tags=tags, more=len(runs) > limit)


def review_bulk_accept(*, filters: QueueFilters, reviewer: Any, min_score: float) -> BulkResult:
    """Accept every suggested tag scored at or above `min_score` on the waiting runs matching `filters` (at most
    REVIEW_BULK_MAX, least sure first), one recipe_review_submit per recipe, each in its own transaction with
    the recipe leased for it: a recipe another reviewer holds, or reviewed meanwhile, is skipped. Tags below the
    score are left undecided."""
    recipes = tags = skipped = 0
    runs = _bulk_runs(filters=filters, reviewer=reviewer, min_score=min_score)[: int(settings.REVIEW_BULK_MAX)]
    for run in runs:
        decisions = [
            TagDecision(tag_id=a.tag_id, decision="accept") for a in run.assignments.all() if a.score >= min_score
        ]
        with transaction.atomic():
            still_waiting = review_queue(filters=QueueFilters(), reviewer=reviewer).filter(pk=run.pk).exists()
            if not still_waiting or not review_lease_try(recipe_id=run.recipe_id, reviewer=reviewer):
                skipped += 1
                continue
            recipe_review_submit(recipe=run.recipe, run=run, decisions=decisions, reviewer=reviewer)
            ReviewLease.objects.filter(recipe_id=run.recipe_id, reviewer_id=reviewer.pk).delete()
        recipes += 1
        tags += len(decisions)
    logger.info("Bulk accept by %s: %s tags on %s recipes (%s skipped)", reviewer.pk, tags, recipes, skipped)
    return BulkResult(recipes=recipes, tags=tags, skipped=skipped)
