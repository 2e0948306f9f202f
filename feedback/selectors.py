from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TypedDict

from django.db.models import CharField, Count, F, Max, Q, Value
from django.db.models.functions import Concat

from feedback.models import Feedback, FeedbackDecision, GoldLabel, LearningCurve


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
