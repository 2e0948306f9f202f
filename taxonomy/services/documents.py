"""Taxonomy documents (JSON): validated as a whole, then imported by slug; nothing is ever deleted."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils.text import slugify

from taxonomy.embedding import tags_embed
from taxonomy.limits import DEFAULT_TAGS_PER_CATEGORY, MAX_TAGS_PER_CATEGORY
from taxonomy.models import Category, Tag
from taxonomy.services.changes import TaxonomyError, tag_changed_fields_need_embedding, tags_schedule_embedding


@dataclass
class TaxonomyImportResult:
    categories_created: int = 0
    categories_updated: int = 0
    tags_created: int = 0
    tags_updated: int = 0
    tag_ids_to_embed: list[int] = field(default_factory=list)


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
        max_tags = raw.get("default_max_tags", DEFAULT_TAGS_PER_CATEGORY)
        if not isinstance(max_tags, int) or isinstance(max_tags, bool) or not 1 <= max_tags <= MAX_TAGS_PER_CATEGORY:
            raise TaxonomyError(
                f"{where}: 'default_max_tags' must be a whole number from 1 to {MAX_TAGS_PER_CATEGORY}."
            )
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
