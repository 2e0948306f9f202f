from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Count
from django.utils import timezone
from django.utils.text import slugify

from taxonomy.models import Category, Tag
from taxonomy.selectors import tags_needing_embedding

logger = logging.getLogger(__name__)

EMBEDDED_FIELDS = frozenset({"name", "description", "synonyms"})


class TaxonomyError(Exception):
    """A taxonomy change that cannot be made; the message says why."""

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


@dataclass
class TaxonomyImportResult:
    categories_created: int = 0
    categories_updated: int = 0
    tags_created: int = 0
    tags_updated: int = 0
    tag_ids_to_embed: list[int] = field(default_factory=list)


def tags_embed(*, tag_ids: list[int] | None = None) -> int:
    """(Re)compute embeddings: of `tag_ids`, or of every tag whose vector is missing or from another model.

    Returns how many tags were embedded. Safe to run twice.
    """
    from tagging.embeddings import embedding_model_name, embeddings_create

    model = embedding_model_name()
    if tag_ids is None:
        tags = list(tags_needing_embedding(model=model))
    else:
        tags = list(Tag.objects.filter(id__in=tag_ids).order_by("id"))
    if not tags:
        return 0
    batch = embeddings_create(texts=[tag.embedding_text for tag in tags])
    # Stamped after the read, so that the vector never looks older than the text it was made from.
    now = timezone.now()
    for tag, vector in zip(tags, batch.vectors, strict=True):
        tag.embedding = vector
        tag.embedding_model = batch.model
        tag.embedded_at = now
    Tag.objects.bulk_update(tags, ["embedding", "embedding_model", "embedded_at"], batch_size=500)
    logger.info("Embedded %d tags with %s in %.2fs", len(tags), batch.model, batch.seconds)
    return len(tags)


def tags_schedule_embedding(*, tag_ids: list[int]) -> None:
    """Queue a re-embedding of these tags once the surrounding transaction has committed."""
    if not tag_ids:
        return
    from taxonomy.tasks import tags_embed_task

    ids = sorted(set(tag_ids))
    # robust: a broker outage must not turn a saved edit into an error page. The tags stay stale
    # until the next tagging request or the periodic pass embeds them (see tags_needing_embedding).
    transaction.on_commit(lambda: tags_embed_task.delay(tag_ids=ids), robust=True)


def tag_changed_fields_need_embedding(*, changed_fields: list[str] | set[str]) -> bool:
    return bool(EMBEDDED_FIELDS.intersection(changed_fields))


def tags_set_active(*, tag_ids: list[int], active: bool) -> int:
    return Tag.objects.filter(id__in=tag_ids).update(active=active, updated_at=timezone.now())


def categories_set_active(*, category_ids: list[int], active: bool) -> int:
    return Category.objects.filter(id__in=category_ids).update(active=active, updated_at=timezone.now())


@transaction.atomic
def tag_merge(*, source: Tag, target: Tag) -> Tag:
    """Fold `source` into `target`: its assignments move over, its name and synonyms become synonyms of
    `target`, and `source` is deleted. Both must be in the same category.
    """
    from tagging.models import TagAssignment

    if source.pk == target.pk:
        raise TaxonomyError("A tag cannot be merged into itself.")
    if source.category_id != target.category_id:
        raise TaxonomyError(
            "Only tags of the same category can be merged.",
            details={"source": str(source), "target": str(target)},
        )
    source = Tag.objects.select_for_update().get(pk=source.pk)
    target = Tag.objects.select_for_update().get(pk=target.pk)

    runs_with_target = TagAssignment.objects.filter(tag=target).values("run_id")
    # Where a run already has the target, keep the higher score and drop the source's row.
    for duplicate in TagAssignment.objects.filter(tag=source, run_id__in=runs_with_target):
        TagAssignment.objects.filter(tag=target, run_id=duplicate.run_id, score__lt=duplicate.score).update(
            score=duplicate.score
        )
        duplicate.delete()
    TagAssignment.objects.filter(tag=source).update(tag=target)

    known = {s.lower() for s in target.synonyms} | {target.name.lower()}
    for word in [source.name, *source.synonyms]:
        if word.lower() not in known:
            target.synonyms.append(word)
            known.add(word.lower())
    if not target.description and source.description:
        target.description = source.description
    target.save(update_fields=["synonyms", "description", "updated_at"])
    source.delete()
    tags_schedule_embedding(tag_ids=[target.pk])
    return target


SLUG = re.compile(r"^[-a-zA-Z0-9_]+$")


def _clean_slug(value: str, *, where: str) -> str:
    if not SLUG.match(value):
        raise TaxonomyError(f"{where}: slug {value!r} may contain only letters, digits, hyphens and underscores.")
    return value


def _clean_str(value: Any, *, where: str, name: str, required: bool = False, max_length: int = 100) -> str:
    if value is None and required:
        raise TaxonomyError(f"{where}: '{name}' is required.")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TaxonomyError(f"{where}: '{name}' must be a string.")
    value = value.strip()
    if required and not value:
        raise TaxonomyError(f"{where}: '{name}' is required.")
    if len(value) > max_length:
        raise TaxonomyError(f"{where}: '{name}' is longer than {max_length} characters.")
    return value


def _clean_bool(value: Any, *, where: str, name: str) -> bool:
    if not isinstance(value, bool):
        raise TaxonomyError(f"{where}: '{name}' must be true or false.")
    return value


def _clean_position(value: Any, *, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TaxonomyError(f"{where}: 'position' must be a whole number, 0 or more.")
    return value


def _parse_document(data: Any) -> list[dict[str, Any]]:
    if not isinstance(data, dict) or not isinstance(data.get("categories"), list):
        raise TaxonomyError("A taxonomy document is a JSON object with a 'categories' list.")
    categories: list[dict[str, Any]] = []
    seen_categories: set[str] = set()
    for index, raw in enumerate(data["categories"]):
        where = f"categories[{index}]"
        if not isinstance(raw, dict):
            raise TaxonomyError(f"{where} must be an object.")
        name = _clean_str(raw.get("name"), where=where, name="name", required=True)
        slug = _clean_str(raw.get("slug") or slugify(name).replace("-", "_"), where=where, name="slug")
        if slug in seen_categories:
            raise TaxonomyError(f"{where}: category slug '{slug}' appears twice.")
        seen_categories.add(slug)
        if not slug:
            raise TaxonomyError(f"{where}: no slug could be made from the name {name!r}; give a 'slug'.")
        _clean_slug(slug, where=where)
        max_tags = raw.get("default_max_tags", 3)
        if not isinstance(max_tags, int) or isinstance(max_tags, bool) or not 1 <= max_tags <= 20:
            raise TaxonomyError(f"{where}: 'default_max_tags' must be a whole number from 1 to 20.")
        threshold = raw.get("relevance_threshold")
        if threshold is not None and (
            not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0 <= threshold <= 1
        ):
            raise TaxonomyError(f"{where}: 'relevance_threshold' must be a number from 0 to 1, or null.")
        if not isinstance(raw.get("tags", []), list):
            raise TaxonomyError(f"{where}: 'tags' must be a list.")
        tags: list[dict[str, Any]] = []
        seen_tags: set[str] = set()
        for tag_index, raw_tag in enumerate(raw.get("tags", [])):
            tag_where = f"{where}.tags[{tag_index}]"
            if not isinstance(raw_tag, dict):
                raise TaxonomyError(f"{tag_where} must be an object.")
            tag_name = _clean_str(raw_tag.get("name"), where=tag_where, name="name", required=True)
            tag_slug = _clean_str(raw_tag.get("slug") or slugify(tag_name), where=tag_where, name="slug")
            if not tag_slug:
                raise TaxonomyError(f"{tag_where}: no slug could be made from the name {tag_name!r}.")
            _clean_slug(tag_slug, where=tag_where)
            if tag_slug in seen_tags:
                raise TaxonomyError(f"{tag_where}: tag slug '{tag_slug}' appears twice in '{slug}'.")
            seen_tags.add(tag_slug)
            synonyms = raw_tag.get("synonyms", [])
            if not isinstance(synonyms, list) or not all(isinstance(s, str) for s in synonyms):
                raise TaxonomyError(f"{tag_where}: 'synonyms' must be a list of strings.")
            if any(len(s.strip()) > 100 for s in synonyms):
                raise TaxonomyError(f"{tag_where}: a synonym is longer than 100 characters.")
            tags.append(
                {
                    "slug": tag_slug,
                    "name": tag_name,
                    "description": _clean_str(
                        raw_tag.get("description"), where=tag_where, name="description", max_length=2000
                    ),
                    "synonyms": [s.strip() for s in synonyms if s.strip()],
                    "active": _clean_bool(raw_tag.get("active", True), where=tag_where, name="active"),
                }
            )
        categories.append(
            {
                "slug": slug,
                "name": name,
                "description": _clean_str(raw.get("description"), where=where, name="description", max_length=2000),
                "default_max_tags": max_tags,
                "relevance_threshold": threshold,
                "position": _clean_position(raw.get("position", index), where=where),
                "active": _clean_bool(raw.get("active", True), where=where, name="active"),
                "tags": tags,
            }
        )
    return categories


@transaction.atomic
def taxonomy_import(*, data: Any, embed_now: bool = False) -> TaxonomyImportResult:
    """Create or update categories and tags (matched by slug) from a taxonomy document.

    The whole document is validated before anything is written; nothing is deleted. Tags whose
    embedded text changed are re-embedded: by the worker after commit, or here with `embed_now`.
    """
    categories = _parse_document(data)
    result = TaxonomyImportResult()
    for item in categories:
        tags = item.pop("tags")
        category = Category.objects.filter(slug=item["slug"]).first()
        if category is None:
            category = Category.objects.create(**item)
            result.categories_created += 1
        else:
            changed = [name for name, value in item.items() if getattr(category, name) != value]
            if changed:
                for name in changed:
                    setattr(category, name, item[name])
                category.save()
                result.categories_updated += 1
        existing = {tag.slug: tag for tag in Tag.objects.filter(category=category)}
        for tag_data in tags:
            tag = existing.get(tag_data["slug"])
            if tag is None:
                tag = Tag.objects.create(category=category, **tag_data)
                result.tags_created += 1
                result.tag_ids_to_embed.append(tag.pk)
                continue
            changed = [name for name, value in tag_data.items() if getattr(tag, name) != value]
            if changed:
                for name in changed:
                    setattr(tag, name, tag_data[name])
                tag.save()
                result.tags_updated += 1
                if tag_changed_fields_need_embedding(changed_fields=changed):
                    result.tag_ids_to_embed.append(tag.pk)
    if embed_now:
        tags_embed(tag_ids=result.tag_ids_to_embed)
    else:
        tags_schedule_embedding(tag_ids=result.tag_ids_to_embed)
    return result


def taxonomy_counts() -> dict[str, int]:
    counts = Category.objects.aggregate(categories=Count("id", distinct=True), tags=Count("tags", distinct=True))
    return {"categories": counts["categories"] or 0, "tags": counts["tags"] or 0}
