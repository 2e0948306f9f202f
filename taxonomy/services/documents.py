"""Taxonomy documents (JSON): validated as a whole, then imported by slug; nothing is ever deleted."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils.text import slugify

from taxonomy.embedding import tags_embed
from taxonomy.limits import DEFAULT_TAGS_PER_CATEGORY, MAX_TAGS_PER_CATEGORY
from taxonomy.models import Category, IngredientGroup, Tag
from taxonomy.rules import terms_clean
from taxonomy.services.changes import TaxonomyError, tag_changed_fields_need_embedding, tags_schedule_embedding


@dataclass
class TaxonomyImportResult:
    categories_created: int = 0
    categories_updated: int = 0
    tags_created: int = 0
    tags_updated: int = 0
    ingredient_groups_created: int = 0
    ingredient_groups_updated: int = 0
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


def _clean_terms(value: Any, *, where: str, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TaxonomyError(f"{where}: '{name}' must be a list of strings.")
    if any(len(v.strip()) > 100 for v in value):
        raise TaxonomyError(f"{where}: an entry of '{name}' is longer than 100 characters.")
    return terms_clean(value)


def _parse_ingredient_groups(data: dict[str, Any]) -> list[dict[str, Any]]:
    raw_groups = data.get("ingredient_groups", [])
    if not isinstance(raw_groups, list):
        raise TaxonomyError("'ingredient_groups' must be a list.")
    groups: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_groups):
        where = f"ingredient_groups[{index}]"
        if not isinstance(raw, dict):
            raise TaxonomyError(f"{where} must be an object.")
        name = _clean_str(raw.get("name"), where=where, name="name", required=True)
        slug = _clean_str(raw.get("slug") or slugify(name), where=where, name="slug")
        if not slug:
            raise TaxonomyError(f"{where}: no slug could be made from the name {name!r}; give a 'slug'.")
        _clean_slug(slug, where=where)
        if slug in seen:
            raise TaxonomyError(f"{where}: ingredient group slug '{slug}' appears twice.")
        seen.add(slug)
        terms = _clean_terms(raw.get("terms"), where=where, name="terms")
        if not terms:
            raise TaxonomyError(f"{where}: 'terms' must name at least one ingredient.")
        groups.append(
            {
                "slug": slug,
                "name": name,
                "description": _clean_str(raw.get("description"), where=where, name="description", max_length=2000),
                "terms": terms,
                "exceptions": _clean_terms(raw.get("exceptions", []), where=where, name="exceptions"),
            }
        )
    return groups


def _parse_tag_rules(raw_tag: dict[str, Any], *, where: str, group_slugs: set[str]) -> dict[str, Any]:
    """A tag's rules as given: a key the document leaves out leaves that rule of an existing tag as it is."""
    rules: dict[str, Any] = {}
    if "excluded_by" in raw_tag:
        excluded_by = _clean_terms(raw_tag["excluded_by"], where=where, name="excluded_by")
        unknown = [slug for slug in excluded_by if slug not in group_slugs]
        if unknown:
            raise TaxonomyError(
                f"{where}: 'excluded_by' names unknown ingredient groups: {', '.join(unknown)} "
                "(define them in 'ingredient_groups')."
            )
        rules["excluded_by"] = excluded_by
    if "required_terms" in raw_tag:
        rules["required_terms"] = _clean_terms(raw_tag["required_terms"], where=where, name="required_terms")
    return rules


def _parse_document(data: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if not isinstance(data, dict) or not isinstance(data.get("categories"), list):
        raise TaxonomyError("A taxonomy document is a JSON object with a 'categories' list.")
    groups = _parse_ingredient_groups(data)
    group_slugs = {g["slug"] for g in groups} | set(IngredientGroup.objects.values_list("slug", flat=True))
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
        floor = raw.get("precision_floor")
        if floor is not None and (
            not isinstance(floor, (int, float)) or isinstance(floor, bool) or not 0 <= floor <= 1
        ):
            raise TaxonomyError(f"{where}: 'precision_floor' must be a number from 0 to 1, or null.")
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
                    **_parse_tag_rules(raw_tag, where=tag_where, group_slugs=group_slugs),
                }
            )
        categories.append(
            {
                "slug": slug,
                "name": name,
                "description": _clean_str(raw.get("description"), where=where, name="description", max_length=2000),
                "default_max_tags": max_tags,
                "relevance_threshold": threshold,
                # Only when the document says: an older document keeps the floor staff set in admin.
                **({"precision_floor": floor} if "precision_floor" in raw else {}),
                "position": _clean_position(raw.get("position", index), where=where),
                "active": _clean_bool(raw.get("active", True), where=where, name="active"),
                "tags": tags,
            }
        )
    return groups, categories


def _ingredient_groups_import(groups: list[dict[str, Any]], result: TaxonomyImportResult) -> dict[str, IngredientGroup]:
    existing = {group.slug: group for group in IngredientGroup.objects.all()}
    for item in groups:
        group = existing.get(item["slug"])
        if group is None:
            existing[item["slug"]] = IngredientGroup.objects.create(**item)
            result.ingredient_groups_created += 1
            continue
        changed = [name for name, value in item.items() if getattr(group, name) != value]
        if changed:
            for name in changed:
                setattr(group, name, item[name])
            group.save()
            result.ingredient_groups_updated += 1
    return existing


@transaction.atomic
def taxonomy_import(*, data: Any, embed_now: bool = False) -> TaxonomyImportResult:
    """Create or update categories and tags (matched by slug) from a taxonomy document.

    The whole document is validated before anything is written; nothing is deleted. Tags whose
    embedded text changed are re-embedded: by the worker after commit, or here with `embed_now`.
    """
    groups, categories = _parse_document(data)
    result = TaxonomyImportResult()
    groups_by_slug = _ingredient_groups_import(groups, result)
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
        existing = {tag.slug: tag for tag in Tag.objects.filter(category=category).prefetch_related("excluded_by")}
        for tag_data in tags:
            excluded_by = tag_data.pop("excluded_by", None)
            tag = existing.get(tag_data["slug"])
            if tag is None:
                tag = Tag.objects.create(category=category, **tag_data)
                tag.excluded_by.set([groups_by_slug[slug] for slug in excluded_by or []])
                result.tags_created += 1
                result.tag_ids_to_embed.append(tag.pk)
                continue
            changed = [name for name, value in tag_data.items() if getattr(tag, name) != value]
            if excluded_by is not None and set(excluded_by) != {g.slug for g in tag.excluded_by.all()}:
                tag.excluded_by.set([groups_by_slug[slug] for slug in excluded_by])
                # Saving the tag marks the change: cached LLM answers are keyed on tags' updated_at.
                changed.append("excluded_by")
            if changed:
                for name in changed:
                    if name in tag_data:
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
