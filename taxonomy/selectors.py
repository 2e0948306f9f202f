from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import connection
from django.db.models import (
    Case,
    CharField,
    Exists,
    F,
    Func,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Value,
    When,
)

from autotagger.embeddings import EmbeddingMode, embedding_model_name
from taxonomy.models import Category, IngredientGroup, Tag, TagEmbedding, TaxonomyVersion
from taxonomy.rules import IngredientMatcher, TagRule


def categories_list(*, active_only: bool = False) -> QuerySet[Category]:
    categories = Category.objects.all()
    if active_only:
        categories = categories.filter(active=True)
    tags = Tag.objects.order_by("name", "id")
    if active_only:
        tags = tags.filter(active=True)
    return categories.prefetch_related(Prefetch("tags", queryset=tags)).order_by("position", "name", "id")


def tags_addable() -> QuerySet[Tag]:
    """Tags a person may give a recipe: active ones of active categories, in taxonomy order."""
    return (
        Tag.objects.filter(active=True, category__active=True)
        .select_related("category")
        .order_by("category__position", "category__name", "name", "id")
    )


def tags_search(*, query: str, limit: int) -> list[Tag]:
    """Active tags whose name, slug or a synonym contains `query` (case-insensitive): names that start with it
    first, then other name matches, then slug and synonym matches."""
    query = query.strip()
    if not query:
        return []
    synonyms = Func(F("synonyms"), Value(" "), function="array_to_string", output_field=CharField())
    matches = (
        tags_addable()
        .annotate(synonym_text=synonyms)
        .filter(Q(name__icontains=query) | Q(slug__icontains=query) | Q(synonym_text__icontains=query))
        .annotate(
            rank=Case(
                When(name__istartswith=query, then=Value(0)),
                When(name__icontains=query, then=Value(1)),
                default=Value(2),
                output_field=IntegerField(),
            )
        )
        .order_by("rank", "name", "category__position", "id")
    )
    return list(matches[:limit])


def categories_by_slugs(*, slugs: Iterable[str]) -> tuple[list[Category], list[str]]:
    """The active categories named by `slugs` (in taxonomy order) and the slugs that match none."""
    wanted = list(dict.fromkeys(slugs))
    found = list(Category.objects.filter(slug__in=wanted, active=True).order_by("position", "name", "id"))
    known = {c.slug for c in found}
    return found, [s for s in wanted if s not in known]


def tags_needing_embedding(*, model: str, category_ids: Iterable[int] | None = None) -> QuerySet[Tag]:
    """Tags with no vector, a vector of another model, or edits made after their vector was computed.

    The fast model's vectors are kept in TagEmbedding, beside the full model's in Tag.embedding."""
    if model == embedding_model_name(mode=EmbeddingMode.FAST):
        fresh = TagEmbedding.objects.filter(tag=OuterRef("pk"), model=model, embedded_at__gte=OuterRef("updated_at"))
        tags = Tag.objects.filter(~Exists(fresh))
    else:
        tags = Tag.objects.filter(
            Q(embedding__isnull=True)
            | ~Q(embedding_model=model)
            | Q(embedded_at__isnull=True)
            | Q(embedded_at__lt=F("updated_at"))
        )
    if category_ids is not None:
        tags = tags.filter(category_id__in=list(category_ids))
    return tags.select_related("category").order_by("id")


def ingredient_matcher(group: IngredientGroup) -> IngredientMatcher:
    return IngredientMatcher(
        slug=group.slug, name=group.name, terms=tuple(group.terms), exceptions=tuple(group.exceptions)
    )


def tag_rules(*, tag_ids: Iterable[int]) -> dict[int, TagRule]:
    """The ingredient rules of the tags among `tag_ids` that have any (two queries)."""
    tags = (
        Tag.objects.filter(pk__in=list(tag_ids))
        .filter(Q(excluded_by__isnull=False) | ~Q(required_terms=[]))
        .distinct()
        .only("id", "required_terms")
        .prefetch_related(Prefetch("excluded_by", queryset=IngredientGroup.objects.order_by("name", "id")))
    )
    return {
        tag.pk: TagRule(
            excluded_by=tuple(ingredient_matcher(group) for group in tag.excluded_by.all()),
            required_terms=tuple(tag.required_terms),
        )
        for tag in tags
    }


def tags_version() -> int:
    """A number that changes with every write to the tags or their vectors (Tag, TagEmbedding), however made, and
    never comes back: kept by PostgreSQL triggers (migration 0008_tags_version) and read by primary key, so that a
    cache of what the taggers read of the tags costs one cheap query per use, whatever the taxonomy's size. A
    change is seen as soon as its transaction commits (or at once inside it)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT number FROM taxonomy_tags_version WHERE id = 1")
        row = cursor.fetchone()
    if row is None:
        raise RuntimeError("taxonomy_tags_version has no row: run the taxonomy migrations")
    return int(row[0])


def ingredient_groups_version() -> str:
    """Changes whenever an ingredient group is added, edited or removed (a tag's own rules change its row)."""
    return repr(list(IngredientGroup.objects.order_by("id").values_list("id", "updated_at")))


def taxonomy_export() -> dict[str, Any]:
    """The whole taxonomy as the JSON document `taxonomy_import` reads back."""
    return {
        "format": "autotagger-taxonomy",
        "version": 1,
        "ingredient_groups": [
            {
                "slug": group.slug,
                "name": group.name,
                "description": group.description,
                "terms": list(group.terms),
                "exceptions": list(group.exceptions),
            }
            for group in IngredientGroup.objects.order_by("name", "id")
        ],
        "categories": [
            {
                "slug": category.slug,
                "name": category.name,
                "description": category.description,
                "default_max_tags": category.default_max_tags,
                "relevance_threshold": category.relevance_threshold,
                "precision_floor": category.precision_floor,
                "position": category.position,
                "active": category.active,
                "tags": [
                    {
                        "slug": tag.slug,
                        "name": tag.name,
                        "description": tag.description,
                        "synonyms": list(tag.synonyms),
                        "active": tag.active,
                        "excluded_by": sorted(group.slug for group in tag.excluded_by.all()),
                        "required_terms": list(tag.required_terms),
                    }
                    for tag in category.tags.all()
                ],
            }
            for category in categories_list().prefetch_related("tags__excluded_by")
        ],
    }


def taxonomy_version_current() -> int:
    """The number of the taxonomy's latest recorded version (1 while none is recorded): one index scan."""
    number = TaxonomyVersion.objects.order_by("-number").values_list("number", flat=True).first()
    return number or 1


def taxonomy_version_latest() -> TaxonomyVersion | None:
    return TaxonomyVersion.objects.order_by("-number").first()


def taxonomy_snapshot() -> dict[str, dict[str, dict[str, Any]]]:
    """What of the taxonomy decides a recipe's tags, keyed for comparison: categories by slug, tags by
    "category/slug", ingredient groups by slug. Thresholds, positions and k are left out: they are settings of
    a request, not of what a tag means. Keep in step with the copy in migration 0006_taxonomy_versions."""
    tags = Tag.objects.select_related("category").prefetch_related(
        Prefetch("excluded_by", queryset=IngredientGroup.objects.order_by("slug"))
    )
    return {
        "categories": {
            category.slug: {
                "name": category.name,
                "description": category.description,
                "active": category.active,
            }
            for category in Category.objects.order_by("slug")
        },
        "tags": {
            f"{tag.category.slug}/{tag.slug}": {
                "name": tag.name,
                "description": tag.description,
                "synonyms": list(tag.synonyms),
                "active": tag.active,
                "required_terms": list(tag.required_terms),
                "excluded_by": [group.slug for group in tag.excluded_by.all()],
            }
            for tag in tags.order_by("category__slug", "slug")
        },
        "ingredient_groups": {
            group.slug: {"terms": list(group.terms), "exceptions": list(group.exceptions)}
            for group in IngredientGroup.objects.order_by("slug")
        },
    }
