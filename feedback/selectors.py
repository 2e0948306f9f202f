from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal, TypedDict

from django.db.models import CharField, Count, F, Max, Q, QuerySet, Value
from django.db.models.functions import Concat, TruncDate
from django.utils import timezone

from feedback.models import Feedback, FeedbackChannel, FeedbackDecision, GoldLabel


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


@dataclass(frozen=True)
class ReviewerActivity:
    """What one person decided on the review screen: counts, the last time, and decisions per day."""

    reviewer_id: int
    username: str
    accepted: int
    rejected: int
    added: int
    last_at: datetime
    per_day: tuple[tuple[date, int], ...]  # oldest first, every day of the window (0 on a quiet day)

    @property
    def total(self) -> int:
        return self.accepted + self.rejected + self.added


def reviewer_activity(*, days: int = 14, today: date | None = None) -> list[ReviewerActivity]:
    """Every person with decisions on the review screen, the most decisions first; `per_day` covers the last
    `days` days up to `today`. Two queries, however many reviewers."""
    today = today or timezone.localdate()
    first_day = today - timedelta(days=days - 1)
    reviewed = Feedback.objects.filter(channel=FeedbackChannel.REVIEW, reviewer__isnull=False)
    totals = (
        reviewed.values("reviewer_id", "reviewer__username")
        .annotate(
            accepted=Count("id", filter=Q(decision=FeedbackDecision.ACCEPT)),
            rejected=Count("id", filter=Q(decision=FeedbackDecision.REJECT)),
            added=Count("id", filter=Q(decision=FeedbackDecision.ADD)),
            last_at=Max("created_at"),
        )
        .order_by("reviewer_id")
    )
    daily: dict[int, dict[date, int]] = defaultdict(dict)
    rows = (
        reviewed.filter(created_at__date__gte=first_day)
        .annotate(day=TruncDate("created_at"))
        .values_list("reviewer_id", "day")
        .annotate(count=Count("id"))
        .order_by("reviewer_id", "day")
    )
    for reviewer_id, day, count in rows:
        daily[reviewer_id][day] = count
    window = [first_day + timedelta(days=n) for n in range(days)]
    result = [
        ReviewerActivity(
            reviewer_id=row["reviewer_id"],
            username=row["reviewer__username"],
            accepted=row["accepted"],
            rejected=row["rejected"],
            added=row["added"],
            last_at=row["last_at"],
            per_day=tuple((day, daily[row["reviewer_id"]].get(day, 0)) for day in window),
        )
        for row in totals
    ]
    return sorted(result, key=lambda a: (-a.total, a.username))


@dataclass(frozen=True)
class ReviewerDecision:
    username: str
    decision: str
    created_at: datetime


@dataclass(frozen=True)
class Disagreement:
    """Reviewers who said opposite things of one tag of one recipe: one that it applies (accepted or added it),
    one that it does not (rejected it). Each reviewer's latest decision counts: changing one's own mind is no
    disagreement."""

    recipe_id: int
    recipe_title: str
    category: str
    tag: str
    decisions: tuple[ReviewerDecision, ...]  # each reviewer's latest, oldest first
    last_at: datetime


def reviewer_disagreements(*, limit: int = 100) -> list[Disagreement]:
    """The latest `limit` disagreements between reviewers on the review screen, newest first. Two queries: the
    (recipe, tag) pairs where two reviewers and both answers appear, then those pairs' decisions."""
    reviewed = Feedback.objects.filter(channel=FeedbackChannel.REVIEW, reviewer__isnull=False)
    says_no = Q(decision=FeedbackDecision.REJECT)
    candidates = list(
        reviewed.values("recipe_id", "tag_id")
        .annotate(
            reviewers=Count("reviewer_id", distinct=True),
            no=Count("id", filter=says_no),
            yes=Count("id", filter=~says_no),
            last_at=Max("created_at"),
        )
        .filter(reviewers__gte=2, no__gte=1, yes__gte=1)
        .order_by("-last_at", "recipe_id", "tag_id")
        .values_list("recipe_id", "tag_id")[: limit * 4]
    )
    if not candidates:
        return []
    pairs = Q(pk__in=[])
    for recipe_id, tag_id in candidates:
        pairs |= Q(recipe_id=recipe_id, tag_id=tag_id)
    rows = (
        reviewed.filter(pairs)
        .select_related("recipe", "tag__category", "reviewer")
        .only(
            "recipe_id",
            "recipe__title",
            "tag__slug",
            "tag__category__slug",
            "reviewer__username",
            "decision",
            "created_at",
        )
        .order_by("recipe_id", "tag_id", "created_at", "id")
    )
    latest: dict[tuple[int, int], dict[int, Feedback]] = defaultdict(dict)
    for row in rows:
        latest[row.recipe_id, row.tag_id][row.reviewer_id or 0] = row  # later rows replace earlier ones
    found: list[Disagreement] = []
    for key in candidates:
        by_reviewer = sorted(latest[key].values(), key=lambda f: (f.created_at, f.pk))
        answers = {f.decision == FeedbackDecision.REJECT for f in by_reviewer}
        if len(by_reviewer) < 2 or answers != {True, False}:
            continue
        first = by_reviewer[0]
        found.append(
            Disagreement(
                recipe_id=first.recipe_id,
                recipe_title=first.recipe.title,
                category=first.tag.category.slug,
                tag=first.tag.slug,
                decisions=tuple(
                    ReviewerDecision(f.reviewer.username if f.reviewer else "", f.decision, f.created_at)
                    for f in by_reviewer
                ),
                last_at=by_reviewer[-1].created_at,
            )
        )
    return found[:limit]
