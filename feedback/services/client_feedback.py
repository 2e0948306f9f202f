"""Feedback through the API: an app that collects its own users' opinion of the tags of its runs sends their
decisions here, named as the rest of the API names tags (category slug and tag slug), and they are recorded as
any review is (recipe_review_submit, channel `api`).

Whose word counts. A client's recipe has no gold labels but those its own feedback gave it until a curator (staff
or a reviewer) reviews it or an import labels it; from then on the curators' labels are what the learned tagger
is fitted on and scored against, and a client's feedback would overwrite them (a rejection removes a label from
any source), so it is refused as every other change of a gold-labelled recipe by a client is
(`recipe_gold_labelled`, autotagger/permissions.py). Before that, a client correcting its own feedback changes
only its own labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Q

from autotagger.errors import DomainError
from autotagger.permissions import can_change_gold_labelled_recipes
from feedback.models import Feedback, FeedbackChannel, GoldLabel
from feedback.services.labels import User
from feedback.services.reviews import TagDecision, recipe_review_submit
from tagging.models import Recipe, RunStatus, TaggingRun
from tagging.services.recipes import RecipeGoldLabelled
from taxonomy.models import Tag


class UnknownTag(DomainError):
    code = "unknown_tag"
    status = 400


class RunNotReviewable(DomainError):
    """Only a succeeded run has tags to accept or reject."""

    code = "run_not_succeeded"
    status = 409


@dataclass(frozen=True)
class NamedTagDecision:
    category: str  # category slug
    tag: str  # tag slug within that category
    decision: str  # a FeedbackDecision value


def _curated_by_others(*, recipe_id: int, user: User) -> bool:
    """Whether anyone but `user` labelled or reviewed the recipe (an import's labels have no author)."""
    pk = getattr(user, "pk", None)
    labels = GoldLabel.objects.filter(recipe_id=recipe_id).exclude(created_by_id=pk)
    reviews = Feedback.objects.filter(recipe_id=recipe_id).exclude(reviewer_id=pk)
    return labels.exists() or reviews.exists()


def _tag_ids(decisions: Sequence[NamedTagDecision]) -> dict[tuple[str, str], int]:
    names = {(d.category, d.tag) for d in decisions}
    matches = Q(pk__in=[])
    for category, slug in sorted(names):
        matches |= Q(category__slug=category, slug=slug)
    found = {(c, s): pk for pk, c, s in Tag.objects.filter(matches).values_list("id", "category__slug", "slug")}
    missing = sorted(f"{c}/{s}" for c, s in names - set(found))
    if missing:
        raise UnknownTag(
            f"No tag {missing[0]} in the taxonomy (tags are named by their category's slug and their own).",
            details={"tags": missing},
        )
    return found


@transaction.atomic
def run_feedback_submit(*, run: TaggingRun, decisions: Sequence[NamedTagDecision], user: User) -> list[Feedback]:
    """Record `user`'s decisions on the tags of `run` (which the caller has checked `user` may see) as review
    feedback of the API channel, the recipe's gold labels following them. Raises RunNotReviewable (409) for a run
    that has not succeeded, RecipeGoldLabelled (403) when a client would overrule curators, UnknownTag (400) for
    a tag the taxonomy lacks and ReviewError (400) for a decision the run does not allow; then nothing is
    stored."""
    if run.status != RunStatus.SUCCEEDED:
        raise RunNotReviewable(
            f"Run {run.pk} is {run.status}: only a succeeded run's tags can be reviewed.",
            details={"status": run.status},
        )
    # Taken before the check, so that a curator's review landing meanwhile is seen (recipe_review_submit locks
    # the same row again, within this transaction).
    recipe = Recipe.objects.select_for_update().defer("embedding").get(pk=run.recipe_id)
    if not can_change_gold_labelled_recipes(user) and _curated_by_others(recipe_id=recipe.pk, user=user):
        raise RecipeGoldLabelled(
            f"Recipe {recipe.pk} has gold labels from curators (staff or reviewers); only they change them.",
            details={"recipe_id": recipe.pk},
        )
    tag_ids = _tag_ids(decisions)
    return recipe_review_submit(
        recipe=recipe,
        run=run,
        decisions=[TagDecision(tag_id=tag_ids[d.category, d.tag], decision=d.decision) for d in decisions],
        reviewer=user,
        channel=FeedbackChannel.API,
    )
