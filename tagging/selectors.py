from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.db.models import Count, Exists, OuterRef, Prefetch, QuerySet, Subquery
from pgvector.django import CosineDistance

from tagging.models import Recipe, RunStatus, TagAssignment, TaggingJob, TaggingRun, TrainingExample
from taxonomy.models import Category, Tag


@dataclass(frozen=True)
class TagCandidate:
    id: int
    category_id: int
    slug: str
    name: str
    synonyms: tuple[str, ...]
    similarity: float  # cosine similarity to the recipe, -1..1


def tags_with_similarity(*, embedding: np.ndarray, category_ids: Sequence[int], model: str) -> list[TagCandidate]:
    """Active tags of these categories with their cosine similarity to `embedding`, best first.

    Only tags embedded by `model` are compared: vectors of different models are never mixed.
    """
    rows = (
        Tag.objects.filter(category_id__in=list(category_ids), active=True, embedding_model=model)
        .exclude(embedding__isnull=True)
        .annotate(distance=CosineDistance("embedding", embedding))
        # Every tag of the categories is scored, exactly: a taxonomy is small enough for a sequential scan,
        # and an approximate index would stop after ef_search rows and drop tags of the filtered categories.
        .order_by("id")
        .values_list("id", "category_id", "slug", "name", "synonyms", "distance")
    )
    candidates = [
        TagCandidate(
            id=tag_id,
            category_id=category_id,
            slug=slug,
            name=name,
            synonyms=tuple(synonyms),
            similarity=1.0 - float(distance),
        )
        for tag_id, category_id, slug, name, synonyms, distance in rows
    ]
    candidates.sort(key=lambda c: (-c.similarity, c.id))
    return candidates


def recipe_embedding_cached(*, content_hash: str, model: str) -> np.ndarray | None:
    """An embedding already computed for the same recipe content by the same model, if any."""
    row = (
        Recipe.objects.filter(content_hash=content_hash, embedding_model=model, embedding__isnull=False)
        .order_by("-updated_at", "id")
        .values_list("embedding", flat=True)
        .first()
    )
    return None if row is None else np.asarray(row, dtype=np.float32)


def _latest_succeeded_run_id() -> Subquery:
    return Subquery(
        TaggingRun.objects.filter(recipe=OuterRef("pk"), status=RunStatus.SUCCEEDED)
        .order_by("-created_at", "-id")
        .values("id")[:1]
    )


def recipes_list(*, tag_slug: str | None = None, category_slug: str | None = None) -> QuerySet[Recipe]:
    """Recipes, newest first; with `tag_slug`, only those whose latest successful run assigned that tag."""
    recipes = Recipe.objects.annotate(latest_run_id=_latest_succeeded_run_id()).defer("embedding")
    if tag_slug:
        assignments = TagAssignment.objects.filter(run_id=OuterRef("latest_run_id"), tag__slug=tag_slug)
        if category_slug:
            assignments = assignments.filter(tag__category__slug=category_slug)
        recipes = recipes.filter(Exists(assignments))
    return recipes.order_by("-created_at", "-id")


def recipe_latest_run(*, recipe: Recipe) -> TaggingRun | None:
    return (
        runs_with_assignments().filter(recipe=recipe, status=RunStatus.SUCCEEDED).order_by("-created_at", "-id").first()
    )


def runs_with_assignments() -> QuerySet[TaggingRun]:
    assignments = TagAssignment.objects.select_related("tag__category").order_by(
        "tag__category__position", "tag__category__id", "rank", "id"
    )
    return TaggingRun.objects.select_related("recipe").prefetch_related(Prefetch("assignments", queryset=assignments))


def run_get(*, run_id: int) -> TaggingRun | None:
    return runs_with_assignments().filter(pk=run_id).first()


def runs_recent(*, limit: int = 20) -> list[TaggingRun]:
    """The latest runs with their recipe and `tag_count`."""
    return list(
        TaggingRun.objects.select_related("recipe")
        .defer("recipe__embedding")
        .annotate(tag_count=Count("assignments"))
        .order_by("-created_at", "-id")[:limit]
    )


def run_tags_by_category(*, run: TaggingRun) -> list[dict[str, object]]:
    """The run's tags grouped by category in taxonomy order; every category the run covered appears,
    with an empty list when nothing in it was relevant."""
    slugs = run.config.get("category_slugs") or []
    categories = {c.slug: c for c in Category.objects.filter(slug__in=slugs)}
    groups: dict[str, dict[str, object]] = {}
    for slug in slugs:
        if slug in categories:
            groups[slug] = {
                "slug": slug,
                "name": categories[slug].name,
                "position": categories[slug].position,
                "tags": [],
            }
    for assignment in run.assignments.all():
        category = assignment.tag.category
        group = groups.setdefault(
            category.slug, {"slug": category.slug, "name": category.name, "position": category.position, "tags": []}
        )
        group["tags"].append(  # type: ignore[attr-defined]
            {
                "slug": assignment.tag.slug,
                "name": assignment.tag.name,
                "score": assignment.score,
                "rank": assignment.rank,
                "evidence": assignment.evidence,
            }
        )
    ordered = sorted(groups.values(), key=lambda g: (g["position"], g["slug"]))  # type: ignore[arg-type]
    for group in ordered:
        group.pop("position")
    return ordered


def training_examples_nearest(*, state_id: int, embedding: np.ndarray, limit: int) -> list[tuple[int, float]]:
    """(example id, cosine similarity) of the `limit` labelled recipes of a tagger state nearest to
    `embedding`, best first. Only the active state has examples, so the HNSW index serves this."""
    rows = (
        TrainingExample.objects.filter(state_id=state_id)
        .annotate(distance=CosineDistance("embedding", embedding))
        .order_by("distance")
        .values_list("id", "distance")[:limit]
    )
    return [(example_id, 1.0 - float(distance)) for example_id, distance in rows]


def recipes_for_job(*, recipe_ids: Sequence[int] | None, filters: dict[str, object] | None, limit: int) -> list[Recipe]:
    """The recipes a tagging job covers: by id, or by filter (`source`, `tag` slug of the latest
    tagging, `untagged`: never successfully tagged). At most `limit`, oldest first."""
    if recipe_ids is not None:
        recipes = Recipe.objects.filter(pk__in=list(recipe_ids))
    else:
        filters = filters or {}
        recipes = recipes_list(tag_slug=str(filters["tag"]) if filters.get("tag") else None)
        if filters.get("source"):
            recipes = recipes.filter(source=filters["source"])
        if filters.get("untagged"):
            recipes = recipes.filter(latest_run_id__isnull=True)  # type: ignore[misc]  # an annotation
    return list(recipes.defer("embedding").order_by("id")[:limit])


@dataclass(frozen=True)
class JobProgress:
    total: int
    done: int
    failed: int
    pending: int

    @property
    def finished(self) -> bool:
        return self.pending == 0

    @property
    def percent(self) -> int:
        return round(100 * (self.done + self.failed) / self.total) if self.total else 100


def job_progress(*, job: TaggingJob) -> JobProgress:
    counts = dict(job.runs.values_list("status").annotate(n=Count("id")).order_by())
    done, failed = counts.get(RunStatus.SUCCEEDED, 0), counts.get(RunStatus.FAILED, 0)
    return JobProgress(total=job.total, done=done, failed=failed, pending=max(job.total - done - failed, 0))


def jobs_recent(*, limit: int = 10) -> list[tuple[TaggingJob, JobProgress]]:
    return [(job, job_progress(job=job)) for job in TaggingJob.objects.order_by("-created_at", "-id")[:limit]]
