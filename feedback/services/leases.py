"""Review leases: a reviewer who opens a recipe from the review queue holds it for REVIEW_LEASE_SECONDS, so
that two reviewers never review the same recipe at once. The lease is taken by one INSERT ... ON CONFLICT
statement on the one-lease-per-recipe constraint: of two reviewers racing for a recipe, PostgreSQL lets exactly
one insert (or take over an expired lease), and the other sees no row come back and moves on to the next."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from autotagger.errors import DomainError
from feedback.models import ReviewLease
from feedback.selectors import QueueFilters, review_lease_holder, review_queue
from tagging.models import TaggingRun

# How many of the least sure runs "next" tries to lease before giving up: each try only fails when another
# reviewer took that recipe in the meantime.
NEXT_CANDIDATES = 25


class LeaseHeld(DomainError):
    code = "review_leased"
    status = 409


_TAKE = f"""
INSERT INTO {ReviewLease._meta.db_table} (recipe_id, reviewer_id, taken_at, expires_at)
VALUES (%s, %s, %s, %s)
ON CONFLICT ON CONSTRAINT feedback_reviewlease_one_per_recipe DO UPDATE
    SET reviewer_id = EXCLUDED.reviewer_id, taken_at = EXCLUDED.taken_at, expires_at = EXCLUDED.expires_at
    WHERE {ReviewLease._meta.db_table}.expires_at <= EXCLUDED.taken_at
       OR {ReviewLease._meta.db_table}.reviewer_id = EXCLUDED.reviewer_id
RETURNING id
"""


def review_lease_try(*, recipe_id: int, reviewer: Any) -> bool:
    """Lease the recipe to `reviewer` if nobody else holds it (True), within the caller's transaction."""
    now = timezone.now()
    expires = now + timedelta(seconds=int(settings.REVIEW_LEASE_SECONDS))
    with connection.cursor() as cursor:
        cursor.execute(_TAKE, [recipe_id, reviewer.pk, now, expires])
        taken = cursor.fetchone() is not None
    if taken:
        # A reviewer works on one recipe at a time: the one they left goes back to the queue.
        ReviewLease.objects.filter(reviewer_id=reviewer.pk).exclude(recipe_id=recipe_id).delete()
    return taken


@transaction.atomic
def review_lease_take(*, recipe_id: int, reviewer: Any) -> ReviewLease:
    """Lease the recipe to `reviewer` (renewing their own lease), releasing any other recipe they held.
    Raises LeaseHeld when another reviewer holds an unexpired lease on it."""
    if not review_lease_try(recipe_id=recipe_id, reviewer=reviewer):
        holder = review_lease_holder(recipe_id=recipe_id, reviewer=reviewer)
        who = holder.reviewer.get_username() if holder is not None else "another reviewer"
        until = f" until {timezone.localtime(holder.expires_at):%H:%M}" if holder is not None else ""
        raise LeaseHeld(
            f"{who} is reviewing this recipe{until}; pick another from the queue.",
            details={"recipe_id": recipe_id},
        )
    return ReviewLease.objects.get(recipe_id=recipe_id)


def review_lease_release(*, recipe_id: int, reviewer: Any) -> None:
    """Give the recipe back (only the reviewer's own lease: someone else's is theirs to keep)."""
    ReviewLease.objects.filter(recipe_id=recipe_id, reviewer_id=reviewer.pk).delete()


def review_next(*, filters: QueueFilters, reviewer: Any, skip_recipe_id: int | None = None) -> TaggingRun | None:
    """Lease the least sure waiting run matching `filters` that nobody else holds and return it (None: the
    queue is empty for this reviewer). `skip_recipe_id`: a recipe the reviewer passed over."""
    candidates = review_queue(filters=filters, reviewer=reviewer)
    if skip_recipe_id is not None:
        candidates = candidates.exclude(recipe_id=skip_recipe_id)
    for run in candidates[:NEXT_CANDIDATES]:
        with transaction.atomic():
            if review_lease_try(recipe_id=run.recipe_id, reviewer=reviewer):
                return run
    return None
