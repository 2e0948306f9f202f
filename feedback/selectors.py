from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal, TypedDict

from django.db import connection
from django.db.models import (
    Aggregate,
    CharField,
    Count,
    Exists,
    F,
    FloatField,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Abs, Cast, Coalesce, Concat, TruncDate
from django.utils import timezone

from feedback.models import (
    EvaluationChunk,
    EvaluationItem,
    EvaluationJob,
    Feedback,
    FeedbackChannel,
    FeedbackDecision,
    GoldLabel,
    LearningCurve,
    ReviewLease,
)
from tagging.models import RunStatus, Strategy, TagAssignment, TaggingRun


class PercentileCont(Aggregate):
    """PostgreSQL's percentile_cont(fraction) WITHIN GROUP (ORDER BY expression)."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, fraction: float, expression: str = "latency_ms") -> None:
        super().__init__(expression, fraction=float(fraction))


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
    # Every label: streamed by a server-side cursor. Some recipes' (a re-tagging chunk's): read at once, since
    # each server-side cursor has a new name, so a new statement text, and psycopg keeps the last 128 texts
    # it converted, each with a part per placeholder: a worker grew with every chunk until 128 were held.
    for recipe_id, category_slug, tag_slug in rows if recipe_ids is not None else rows.iterator(chunk_size=5000):
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


# --- The review queue ----------------------------------------------------------------------------------------
#
# What waits for review: a recipe's latest succeeded run (newest created_at, then highest id), when the recipe
# has no Feedback created at or after that run's created_at. Feedback on an older run, or through the API,
# counts too: a person has looked at the recipe since it was last tagged. A newer run puts the recipe back.
#
# Least sure first. A similarity run of a learned tagger records the tagger's own decision margin
# (stats["uncertainty_margin"], tagging.uncertainty.decision_margins: how close its calibrated scores come to the
# categories' thresholds, averaged over the categories): the order in which bench/learning_curve.py measured what
# reviews teach. Other runs (llm, hybrid, a zero-shot tagger), and every run when the queue is filtered by
# category, fall back to their least sure suggested tag: a learned score is the calibrated probability that a
# reviewer accepts the tag (tagging/calibration.py), so the margin is min |score - 0.5| over the run's tags (the
# filtered category's). A run with neither (it suggested nothing) comes last.

SIMILARITY_SOURCE = "similarity"
QUEUE_SORTS = {
    "uncertainty": ("Least sure first", ["margin", "-created_at", "-id"]),
    "newest": ("Newest runs first", ["-created_at", "-id"]),
    "oldest": ("Oldest runs first", ["created_at", "id"]),
    "confident": ("Most sure first", ["-top_score", "-created_at", "-id"]),
}
DEFAULT_QUEUE_SORT = "uncertainty"


@dataclass(frozen=True)
class QueueFilters:
    """Which waiting runs to show: every field left empty matches all."""

    strategy: str = ""
    category: str = ""  # a category slug: runs that suggested a tag in it
    prompt_version_id: int | None = None
    score_min: float | None = None  # with score_max: runs with a suggested tag (in `category`) scored within
    score_max: float | None = None
    source: str = ""  # an LLM source's name, or "similarity" for runs that asked no model
    date_from: date | None = None  # the run's creation day, inclusive
    date_to: date | None = None

    def as_query(self) -> dict[str, Any]:
        """The filters as the queue page's query parameters (empty ones left out)."""
        values = {
            "strategy": self.strategy,
            "category": self.category,
            "prompt_version": self.prompt_version_id,
            "score_min": self.score_min,
            "score_max": self.score_max,
            "source": self.source,
            "date_from": self.date_from.isoformat() if self.date_from else None,
            "date_to": self.date_to.isoformat() if self.date_to else None,
        }
        return {key: value for key, value in values.items() if value not in (None, "")}


@dataclass(frozen=True)
class QueueProgress:
    reviewed: int
    waiting: int

    @property
    def total(self) -> int:
        return self.reviewed + self.waiting

    @property
    def percent(self) -> int:
        return round(100 * self.reviewed / self.total) if self.total else 0


# A dry-run re-tag's runs (sets_current=False) are proposals, not the recipe's tags: they wait for review only
# once applied, i.e. when the recipe's current-run pointer is on them.
_REVIEWABLE = Q(status=RunStatus.SUCCEEDED) & (Q(sets_current=True) | Q(recipe__current_run=F("pk")))


def _latest_succeeded_runs() -> QuerySet[TaggingRun]:
    newer = TaggingRun.objects.filter(_REVIEWABLE, recipe_id=OuterRef("recipe_id")).filter(
        Q(created_at__gt=OuterRef("created_at")) | Q(created_at=OuterRef("created_at"), pk__gt=OuterRef("pk"))
    )
    return TaggingRun.objects.filter(_REVIEWABLE).exclude(Exists(newer))


def _reviewed() -> Exists:
    return Exists(Feedback.objects.filter(recipe_id=OuterRef("recipe_id"), created_at__gte=OuterRef("created_at")))


def _filtered(runs: QuerySet[TaggingRun], filters: QueueFilters) -> QuerySet[TaggingRun]:
    if filters.strategy:
        runs = runs.filter(strategy=filters.strategy)
    if filters.prompt_version_id is not None:
        runs = runs.filter(stats__prompt_version_id=filters.prompt_version_id)
    if filters.source == SIMILARITY_SOURCE:
        runs = runs.filter(strategy=Strategy.SIMILARITY)
    elif filters.source:
        runs = runs.filter(stats__source=filters.source)
    if filters.date_from is not None:
        runs = runs.filter(created_at__date__gte=filters.date_from)
    if filters.date_to is not None:
        runs = runs.filter(created_at__date__lte=filters.date_to)
    suggested = TagAssignment.objects.filter(run_id=OuterRef("pk"))
    if filters.category:
        suggested = suggested.filter(tag__category__slug=filters.category)
    if filters.score_min is not None:
        suggested = suggested.filter(score__gte=filters.score_min)
    if filters.score_max is not None:
        suggested = suggested.filter(score__lte=filters.score_max)
    if filters.category or filters.score_min is not None or filters.score_max is not None:
        runs = runs.filter(Exists(suggested))
    return runs


def _leased_by_others(reviewer: Any) -> Exists:
    return Exists(
        ReviewLease.objects.filter(recipe_id=OuterRef("recipe_id"), expires_at__gt=timezone.now()).exclude(
            reviewer_id=getattr(reviewer, "pk", None)
        )
    )


def review_queue(*, filters: QueueFilters, reviewer: Any, sort: str = DEFAULT_QUEUE_SORT) -> QuerySet[TaggingRun]:
    """The runs waiting for review that match `filters`, without the recipes another reviewer holds a lease
    on, in `sort` order (a QUEUE_SORTS key). Each run carries `margin` (its uncertainty margin), `top_score`,
    `suggested` (its tag count) and `leased_by_me`."""
    tags = TagAssignment.objects.filter(run_id=OuterRef("pk"))
    if filters.category:
        tags = tags.filter(tag__category__slug=filters.category)
    least_sure_tag = tags.annotate(margin=Abs(F("score") - 0.5)).order_by("margin").values("margin")[:1]
    margin: Any = Subquery(least_sure_tag, output_field=FloatField())
    if not filters.category:
        margin = Coalesce(Cast(KeyTextTransform("uncertainty_margin", "stats"), FloatField()), margin)
    top = tags.order_by("-score").values("score")[:1]
    count = TagAssignment.objects.filter(run_id=OuterRef("pk")).values("run_id").annotate(n=Count("id")).values("n")
    mine = ReviewLease.objects.filter(
        recipe_id=OuterRef("recipe_id"), reviewer_id=getattr(reviewer, "pk", None), expires_at__gt=timezone.now()
    )
    order = [
        F(key[1:]).desc(nulls_last=True) if key.startswith("-") else F(key).asc(nulls_last=True)
        for key in QUEUE_SORTS.get(sort, QUEUE_SORTS[DEFAULT_QUEUE_SORT])[1]
    ]
    return (
        _filtered(_latest_succeeded_runs(), filters)
        .exclude(_reviewed())
        .exclude(_leased_by_others(reviewer))
        .annotate(
            margin=margin,
            top_score=Subquery(top, output_field=FloatField()),
            suggested=Subquery(count),
            leased_by_me=Exists(mine),
        )
        .select_related("recipe")
        .order_by(*order)
    )


def review_progress(*, filters: QueueFilters | None = None) -> QueueProgress:
    """Recipes reviewed since their latest run, and recipes waiting (leased ones included), of the runs that
    match `filters` (None: all)."""
    runs = _latest_succeeded_runs()
    if filters is not None:
        runs = _filtered(runs, filters)
    counts = runs.aggregate(reviewed=Count("id", filter=_reviewed()), waiting=Count("id", filter=~_reviewed()))
    return QueueProgress(reviewed=counts["reviewed"], waiting=counts["waiting"])


def review_leased_elsewhere(*, filters: QueueFilters, reviewer: Any) -> int:
    """Waiting runs matching `filters` that other reviewers hold right now (hidden from this reviewer)."""
    waiting = _filtered(_latest_succeeded_runs(), filters).exclude(_reviewed())
    return waiting.filter(_leased_by_others(reviewer)).count()


def review_run_latest(*, recipe_id: int) -> TaggingRun | None:
    """The recipe's latest succeeded run (a dry run's only once applied): the one its review page shows."""
    return (
        TaggingRun.objects.filter(_REVIEWABLE, recipe_id=recipe_id)
        .select_related("recipe")
        .order_by("-created_at", "-id")
        .first()
    )


def review_lease_holder(*, recipe_id: int, reviewer: Any) -> ReviewLease | None:
    """Another reviewer's unexpired lease on the recipe, if there is one."""
    return (
        ReviewLease.objects.filter(recipe_id=recipe_id, expires_at__gt=timezone.now())
        .exclude(reviewer_id=getattr(reviewer, "pk", None))
        .select_related("reviewer")
        .first()
    )


@dataclass(frozen=True)
class SuggestedTag:
    tag_id: int
    slug: str
    name: str
    score: float
    rank: int
    evidence: dict[str, Any]
    labelled: bool  # the recipe has it as a gold label already


@dataclass(frozen=True)
class SuggestedGroup:
    slug: str
    name: str
    tags: list[SuggestedTag]


def review_suggestions(*, run: TaggingRun | None, recipe_id: int) -> list[SuggestedGroup]:
    """The run's suggested tags per category in taxonomy order, best ranked first, each marked if the recipe
    is already labelled with it."""
    if run is None:
        return []
    labelled = set(GoldLabel.objects.filter(recipe_id=recipe_id).values_list("tag_id", flat=True))
    groups: dict[str, SuggestedGroup] = {}
    rows = run.assignments.select_related("tag__category").order_by(
        "tag__category__position", "tag__category__name", "rank", "id"
    )
    for row in rows:
        category = row.tag.category
        group = groups.setdefault(category.slug, SuggestedGroup(slug=category.slug, name=category.name, tags=[]))
        group.tags.append(
            SuggestedTag(
                tag_id=row.tag_id,
                slug=row.tag.slug,
                name=row.tag.name,
                score=row.score,
                rank=row.rank,
                evidence=row.evidence or {},
                labelled=row.tag_id in labelled,
            )
        )
    return list(groups.values())


def learning_curves_latest(*, datasets: int = 3) -> list[LearningCurve]:
    """The latest learning curve of each dataset (this instance's gold labels count as one), newest first, for
    at most `datasets` datasets."""
    latest: dict[str, LearningCurve] = {}
    for curve in LearningCurve.objects.order_by("-created_at", "-id").iterator(chunk_size=100):
        if curve.dataset not in latest:
            latest[curve.dataset] = curve
            if len(latest) == datasets:
                break
    return list(latest.values())


def gold_labels_fingerprint() -> tuple[int, int | None]:
    """(labels, last label id): any added label raises the second, any removal lowers the first."""
    found = GoldLabel.objects.aggregate(labels=Count("id"), last=Max("id"))
    return int(found["labels"]), found["last"]


def evaluation_chunk_lines(*, chunk: EvaluationChunk) -> list[bytes]:
    """The dataset lines of an evaluation chunk, cut out by the database: a chunk of a 100,000-recipe job
    reads its own lines, not the whole stored file."""
    table = EvaluationJob._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT substring(dataset_content FROM %s FOR %s) FROM {table} WHERE id = %s",
            [chunk.byte_start + 1, chunk.byte_end - chunk.byte_start, chunk.job_id],
        )
        row = cursor.fetchone()
    return bytes(row[0]).splitlines(keepends=True) if row else []


def evaluation_job_latencies(*, job_id: int) -> dict[str, float]:
    """p50 and p95 of the latency of the job's answers the model gave (not reused from an earlier job),
    computed by the database (percentile_cont interpolates as numpy's default percentile does)."""
    found = EvaluationItem.objects.filter(job_id=job_id, ok=True, cached=False).aggregate(
        p50=PercentileCont(0.5), p95=PercentileCont(0.95)
    )
    return {"p50": float(found["p50"] or 0.0), "p95": float(found["p95"] or 0.0)}


def evaluation_job_failures(*, job_id: int, limit: int) -> tuple[int, list[str]]:
    """How many of the job's recipes failed, and the first `limit` of them (dataset order) with their errors."""
    failed = EvaluationItem.objects.filter(job_id=job_id, ok=False)
    examples = [
        f"{recipe_id}: {error[:300]}"
        for recipe_id, error in failed.order_by("position").values_list("recipe_id", "error")[:limit]
    ]
    return failed.count(), examples
