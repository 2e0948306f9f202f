"""Reviews: people accepting, rejecting or adding a recipe's tags. Each decision is kept as a Feedback row, and the
recipe's gold labels follow them in the same transaction; the learned tagger then refits (debounced), so every
review teaches it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction

from autotagger.errors import DomainError
from feedback.models import Feedback, FeedbackChannel, FeedbackDecision, GoldLabel, GoldLabelSource
from feedback.services.labels import User, labels_changed, user_or_none
from tagging.models import Recipe, RunStatus, TaggingRun
from taxonomy.models import Tag


class ReviewError(DomainError):
    code = "review_invalid"
    status = 400


@dataclass(frozen=True)
class TagDecision:
    tag_id: int
    decision: str  # a FeedbackDecision value


def _suggested(run: TaggingRun | None) -> dict[int, float]:
    if run is None:
        return {}
    return dict(run.assignments.values_list("tag_id", "score"))


def _check(*, recipe: Recipe, run: TaggingRun | None, decisions: Sequence[TagDecision]) -> dict[int, Tag]:
    if not decisions:
        raise ReviewError("A review needs at least one decision (accept, reject or add a tag).")
    if run is not None and run.recipe_id != recipe.pk:
        raise ReviewError(f"Run {run.pk} tagged another recipe, not recipe {recipe.pk}.")
    if run is not None and run.status != RunStatus.SUCCEEDED:
        raise ReviewError(f"Run {run.pk} has no tags to review: it is {run.status}.")
    seen: set[int] = set()
    for item in decisions:
        if item.decision not in FeedbackDecision.values:
            raise ReviewError(
                f"Unknown decision {item.decision!r}: use one of {', '.join(FeedbackDecision.values)}.",
                details={"tag_id": item.tag_id},
            )
        if item.tag_id in seen:
            raise ReviewError(
                f"Tag {item.tag_id} has two decisions; give one per tag.", details={"tag_id": item.tag_id}
            )
        seen.add(item.tag_id)
    tags = Tag.objects.select_related("category").in_bulk(sorted(seen))
    missing = sorted(seen - set(tags))
    if missing:
        raise ReviewError(f"No tag has the id {missing[0]}.", details={"tag_ids": missing})
    suggested = _suggested(run)
    for item in decisions:
        tag = tags[item.tag_id]
        if item.decision == FeedbackDecision.ADD:
            if not (tag.active and tag.category.active):
                raise ReviewError(
                    f"{tag.category.slug}/{tag.slug} is not an active tag: only those can be added.",
                    details={"tag_id": tag.pk},
                )
        elif tag.pk not in suggested:
            where = f"run {run.pk}" if run is not None else "no run"
            raise ReviewError(
                f"{tag.category.slug}/{tag.slug} was not suggested by {where}: it can only be added, not "
                f"{item.decision}ed.",
                details={"tag_id": tag.pk},
            )
    return tags


@transaction.atomic
def recipe_review_submit(
    *,
    recipe: Recipe,
    run: TaggingRun | None,
    decisions: Sequence[TagDecision],
    reviewer: User,
    channel: str = FeedbackChannel.REVIEW,
) -> list[Feedback]:
    """Record one Feedback per decision and make the recipe's gold labels agree with them: an accepted or added
    tag becomes a review label (a label it has already is kept as it is), a rejected tag loses its label from
    any source, since a person has now said it is wrong. Raises ReviewError naming the first bad decision;
    then nothing is stored."""
    # Two reviewers submitting the same recipe at once: the second waits here and builds on the first.
    Recipe.objects.select_for_update().filter(pk=recipe.pk).exists()
    tags = _check(recipe=recipe, run=run, decisions=decisions)
    suggested = _suggested(run)
    version_id = (run.stats or {}).get("prompt_version_id") if run is not None else None
    who = user_or_none(user=reviewer)
    rows = Feedback.objects.bulk_create(
        [
            Feedback(
                recipe=recipe,
                run=run,
                tag_id=item.tag_id,
                decision=item.decision,
                channel=channel,
                score=None if item.decision == FeedbackDecision.ADD else suggested[item.tag_id],
                strategy=run.strategy if run is not None else "",
                prompt_version_id=version_id,
                reviewer=who,
            )
            for item in decisions
        ]
    )
    rejected = [item.tag_id for item in decisions if item.decision == FeedbackDecision.REJECT]
    kept = [item.tag_id for item in decisions if item.decision != FeedbackDecision.REJECT]
    removed, _ = GoldLabel.objects.filter(recipe=recipe, tag_id__in=rejected).delete()
    present = set(GoldLabel.objects.filter(recipe=recipe, tag_id__in=kept).values_list("tag_id", flat=True))
    added = GoldLabel.objects.bulk_create(
        [
            GoldLabel(recipe=recipe, tag=tags[tag_id], source=GoldLabelSource.REVIEW, created_by=who)
            for tag_id in kept
            if tag_id not in present
        ]
    )
    if removed or added:
        labels_changed()
    return rows
