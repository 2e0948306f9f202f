from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypedDict

from django.db.models import CharField, Count, F, Max, Q, QuerySet, Value
from django.db.models.functions import Concat

from feedback.models import Feedback, FeedbackDecision, GoldLabel


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


@dataclass(frozen=True)
class Acceptance:
    """How people answered the tags of one group: suggested tags accepted or rejected, and tags they added
    that nothing suggested (what the tagger missed)."""

    key: str
    accepted: int
    rejected: int
    added: int

    @property
    def reviewed(self) -> int:
        return self.accepted + self.rejected

    @property
    def rate(self) -> float | None:
        """Accepted share of the suggested tags reviewed; None before any was."""
        return self.accepted / self.reviewed if self.reviewed else None


AcceptanceBy = Literal["tag", "category", "strategy", "prompt_version"]

_ACCEPTANCE_KEYS = {
    "tag": Concat(F("tag__category__slug"), Value("/"), F("tag__slug"), output_field=CharField()),
    "category": F("tag__category__slug"),
    "strategy": F("strategy"),
    "prompt_version": Concat(
        F("prompt_version__prompt__name"), Value(" v"), F("prompt_version__number"), output_field=CharField()
    ),
}


def feedback_acceptance(*, by: AcceptanceBy, prompt_version_id: int | None = None) -> list[Acceptance]:
    """Acceptance per tag, category, strategy or prompt version (optionally of one prompt version's tags), the
    groups with the most reviewed tags first. Feedback without the grouping field (a tag added on a recipe
    that had no run has no strategy or version) is left out of those groupings."""
    rows = Feedback.objects.all()
    if prompt_version_id is not None:
        rows = rows.filter(prompt_version_id=prompt_version_id)
    if by == "strategy":
        rows = rows.exclude(strategy="")
    if by == "prompt_version":
        rows = rows.filter(prompt_version__isnull=False)
    grouped = (
        rows.annotate(key=_ACCEPTANCE_KEYS[by])
        .values("key")
        .annotate(
            accepted=Count("id", filter=Q(decision=FeedbackDecision.ACCEPT)),
            rejected=Count("id", filter=Q(decision=FeedbackDecision.REJECT)),
            added=Count("id", filter=Q(decision=FeedbackDecision.ADD)),
        )
        .order_by("key")
    )
    result = [
        Acceptance(key=str(r["key"]), accepted=r["accepted"], rejected=r["rejected"], added=r["added"]) for r in grouped
    ]
    return sorted(result, key=lambda a: (-a.reviewed, a.key))


@dataclass(frozen=True)
class FeedbackFilters:
    """What GET /api/v1/feedback narrows the list by; None leaves a field unfiltered."""

    recipe_id: int | None = None
    run_id: int | None = None
    category: str | None = None  # category slug
    tag: str | None = None  # tag slug (with `category`, of that category)
    decision: str | None = None
    channel: str | None = None
    strategy: str | None = None
    prompt_version_id: int | None = None
    reviewer: str | None = None  # username
    since: datetime | None = None
    until: datetime | None = None


def _feedback_listed() -> QuerySet[Feedback]:
    """Feedback with what a listing shows of its tag, prompt version and reviewer, in one query."""
    return Feedback.objects.select_related("tag__category", "prompt_version__prompt", "reviewer").only(
        "id",
        "recipe_id",
        "run_id",
        "decision",
        "channel",
        "score",
        "strategy",
        "created_at",
        "tag__slug",
        "tag__name",
        "tag__category__slug",
        "prompt_version__number",
        "prompt_version__prompt__name",
        "reviewer__username",
    )


def feedback_get_many(*, ids: Iterable[int]) -> list[Feedback]:
    return list(_feedback_listed().filter(pk__in=list(ids)).order_by("id"))


def feedback_list(*, filters: FeedbackFilters) -> QuerySet[Feedback]:
    """Feedback newest first, narrowed by `filters`."""
    rows = _feedback_listed()
    exact = {
        "recipe_id": filters.recipe_id,
        "run_id": filters.run_id,
        "tag__category__slug": filters.category,
        "tag__slug": filters.tag,
        "decision": filters.decision,
        "channel": filters.channel,
        "strategy": filters.strategy,
        "prompt_version_id": filters.prompt_version_id,
        "reviewer__username": filters.reviewer,
        "created_at__gte": filters.since,
        "created_at__lt": filters.until,
    }
    rows = rows.filter(**{lookup: value for lookup, value in exact.items() if value is not None})
    return rows.order_by("-created_at", "-id")
