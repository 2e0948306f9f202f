"""The import of recipe datasets (JSON lines, see ../shared/datasets/README.md): recipes created or updated
by (source, id), and with `labeled` their tags as gold labels."""

from __future__ import annotations

import functools
import logging
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, transaction
from django.db.models import Max, Q
from django.utils import timezone

from autotagger.errors import DomainError
from feedback.jsonl import BadLine, RecipeLine, category_slug, recipe_line_parse, tag_slug
from feedback.models import GoldLabelSource
from feedback.services.labels import User, labels_changed, labels_replace
from tagging.models import Recipe
from tagging.services.recipes import recipe_build
from taxonomy.limits import DEFAULT_TAGS_PER_CATEGORY
from taxonomy.models import Category, Tag
from taxonomy.services.changes import tags_schedule_embedding

logger = logging.getLogger(__name__)

CHUNK_LINES = 500
MAX_SOURCE_LENGTH = 100


class ImportConfigError(DomainError):
    """The import cannot start (a bad mapping or source); nothing was written."""

    code = "invalid_import_config"


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    # The imported recipes' labels from this import (after it), not only the ones it added.
    labels: int = 0
    categories_created: int = 0
    tags_created: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    # Dataset category name → tag name as written → how many recipes carried it.
    unmapped: dict[str, dict[str, int]] = field(default_factory=dict)

    def _add(self, other: ImportReport) -> None:
        for name in ("created", "updated", "unchanged", "labels", "categories_created", "tags_created"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.extend(other.errors)
        for category, names in other.unmapped.items():
            counts = self.unmapped.setdefault(category, {})
            for name, count in names.items():
                counts[name] = counts.get(name, 0) + count


def _mapping_resolve(mapping: Any) -> dict[tuple[str, str], int]:
    """(dataset category, casefolded tag name) → tag id; ImportConfigError names every value that is no tag."""
    if mapping is None:
        return {}
    if not isinstance(mapping, dict) or not all(
        isinstance(names, dict) and all(isinstance(name, str) for name in names) for names in mapping.values()
    ):
        raise ImportConfigError(
            "The mapping must be an object of {dataset category: {dataset tag name: tag}}, where a tag is "
            "'tag_slug' (in the category of the same slug) or 'category_slug/tag_slug'."
        )
    wanted: list[tuple[str, str, str, str]] = []
    problems: list[str] = []
    for category, names in mapping.items():
        for name, target in names.items():
            if not isinstance(target, str) or not target.strip():
                problems.append(f"{category} → {name!r}: the value must be 'tag_slug' or 'category_slug/tag_slug'")
                continue
            wanted_category, _, wanted_tag = target.strip().rpartition("/")
            wanted.append((category.strip(), name.strip(), wanted_category or category_slug(category), wanted_tag))
    pairs = {(wanted_category, wanted_tag) for *_, wanted_category, wanted_tag in wanted}
    found: dict[tuple[str, str], int] = {}
    if pairs:
        query = functools.reduce(operator.or_, (Q(category__slug=c, slug=t) for c, t in pairs))
        found = {(c, t): pk for pk, c, t in Tag.objects.filter(query).values_list("id", "category__slug", "slug")}
    resolved: dict[tuple[str, str], int] = {}
    for category, name, wanted_category, wanted_tag in wanted:
        tag_id = found.get((wanted_category, wanted_tag))
        if tag_id is None:
            problems.append(f"{category} → {name!r} → '{wanted_category}/{wanted_tag}' is no existing tag")
        else:
            resolved[(category, name.casefold())] = tag_id
    if problems:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise ImportConfigError(f"Nothing was imported: the mapping is wrong: {shown}.", details={"mapping": problems})
    return resolved


@dataclass
class _CategoryTags:
    category: Category
    by_slug: dict[str, int]
    # Casefolded names and synonyms (a name wins over another tag's synonym).
    by_name: dict[str, int]


class _TagResolver:
    """Finds (and with `create`, makes) the tag for a dataset's (category, tag name), caching per import."""

    def __init__(self, *, mapped: dict[tuple[str, str], int], create: bool) -> None:
        self._mapped = mapped
        self._create = create
        self._categories: dict[str, _CategoryTags | None] = {}
        self.new_tag_ids: list[int] = []

    def forget(self) -> None:
        """After a rollback: what this chunk created no longer exists."""
        self._categories.clear()
        self.new_tag_ids.clear()

    def resolve(self, category_name: str, tag_name: str, *, report: ImportReport) -> int | None:
        mapped = self._mapped.get((category_name, tag_name.casefold()))
        if mapped is not None:
            return mapped
        tags = self._category_tags(category_name, report=report)
        if tags is None:
            return None
        slug = tag_slug(tag_name)
        found = (tags.by_slug.get(slug) if slug else None) or tags.by_name.get(tag_name.casefold())
        if found is None and self._create and slug:
            tag = Tag.objects.create(category=tags.category, name=tag_name, slug=slug, description="")
            tags.by_slug[slug] = tags.by_name[tag_name.casefold()] = found = tag.pk
            self.new_tag_ids.append(tag.pk)
            report.tags_created += 1
        return found

    def _category_tags(self, name: str, *, report: ImportReport) -> _CategoryTags | None:
        if name in self._categories:
            return self._categories[name]
        slug = category_slug(name)
        category = Category.objects.filter(slug=slug).first() if slug else None
        if category is None and self._create and slug:
            last = Category.objects.aggregate(last=Max("position"))["last"]
            category = Category.objects.create(
                name=name.replace("_", " ").strip().title(),
                slug=slug,
                position=0 if last is None else last + 1,
                default_max_tags=DEFAULT_TAGS_PER_CATEGORY,
            )
            report.categories_created += 1
        entry = None
        if category is not None:
            entry = _CategoryTags(category=category, by_slug={}, by_name={})
            tags = Tag.objects.filter(category=category).order_by("-id").values_list("id", "slug", "name", "synonyms")
            rows = list(tags)
            for pk, _, _, synonyms in rows:
                entry.by_name.update({synonym.casefold(): pk for synonym in synonyms})
            for pk, slug, tag_name, _ in rows:
                entry.by_slug[slug] = pk
                entry.by_name[tag_name.casefold()] = pk
        self._categories[name] = entry
        return entry


def _source_clean(source: Any) -> str:
    if not isinstance(source, str) or not source.strip():
        raise ImportConfigError("The source name is empty; give the dataset's name (such as 'themealdb').")
    if len(source.strip()) > MAX_SOURCE_LENGTH:
        raise ImportConfigError(f"The source name is longer than {MAX_SOURCE_LENGTH} characters.")
    return source.strip()


def _chunk_write(
    records: list[RecipeLine], *, source: str, labeled: bool, resolver: _TagResolver, user: User, report: ImportReport
) -> int:
    """Store one chunk (in the caller's transaction); returns how many label rows changed."""
    existing = {
        recipe.external_id: recipe
        for recipe in Recipe.objects.filter(source=source, external_id__in=[r.external_id for r in records]).defer(
            "embedding"
        )
    }
    new: list[Recipe] = []
    changed: list[Recipe] = []
    stored: list[tuple[RecipeLine, Recipe]] = []
    now = timezone.now()
    for record in records:
        built = recipe_build(
            title=record.title,
            ingredients=record.ingredients,
            instructions=record.instructions,
            external_id=record.external_id,
            source=source,
        )
        recipe = existing.get(record.external_id)
        if recipe is None:
            new.append(built)
            recipe = built
        elif recipe.content_hash == built.content_hash:
            report.unchanged += 1
        else:
            recipe.title, recipe.ingredients, recipe.instructions = built.title, built.ingredients, built.instructions
            recipe.content_hash = built.content_hash
            # The stored vector was made from the old text.
            recipe.embedding, recipe.embedding_model, recipe.updated_at = None, "", now
            changed.append(recipe)
        stored.append((record, recipe))
    Recipe.objects.bulk_create(new)
    Recipe.objects.bulk_update(
        changed,
        ["title", "ingredients", "instructions", "content_hash", "embedding", "embedding_model", "updated_at"],
    )
    report.created += len(new)
    report.updated += len(changed)
    if not labeled:
        return 0
    tag_ids_by_recipe: dict[int, set[int]] = {}
    for record, recipe in stored:
        tag_ids = tag_ids_by_recipe.setdefault(recipe.pk, set())
        for category, names in record.tags.items():
            for name in names:
                tag_id = resolver.resolve(category, name, report=report)
                if tag_id is None:
                    counts = report.unmapped.setdefault(category, {})
                    counts[name] = counts.get(name, 0) + 1
                else:
                    tag_ids.add(tag_id)
    labels, label_changes = labels_replace(
        tag_ids_by_recipe=tag_ids_by_recipe, source=GoldLabelSource.IMPORT, user=user
    )
    report.labels += labels
    tags_schedule_embedding(tag_ids=resolver.new_tag_ids)
    resolver.new_tag_ids = []
    return label_changes


def _chunk_import(
    records: list[RecipeLine], *, source: str, labeled: bool, resolver: _TagResolver, user: User, report: ImportReport
) -> int:
    """Store one chunk in its own transaction; a database error there costs only these lines."""
    part = ImportReport()
    try:
        with transaction.atomic():
            label_changes = _chunk_write(
                records, source=source, labeled=labeled, resolver=resolver, user=user, report=part
            )
    except DatabaseError as exc:
        first, last = records[0].line, records[-1].line
        logger.exception("Unable to import lines %d–%d from source %s", first, last, source)
        resolver.forget()
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        report.errors.extend(
            (record.line, f"not stored: the database refused lines {first}–{last} ({reason})") for record in records
        )
        return 0
    report._add(part)
    return label_changes


def recipes_import(
    *,
    lines: Iterable[str | bytes],
    source: str,
    labeled: bool,
    create_taxonomy: bool,
    mapping: dict[str, dict[str, str]] | None,
    user: User = None,
    progress: Callable[[int], None] | None = None,
    chunk_lines: int = CHUNK_LINES,
) -> ImportReport:
    """Create or update recipes from JSON lines, matched on (`source`, `id`); with `labeled`, their tags
    become their gold labels (source `import`).

    A bad line is reported with its number and skipped; the others are stored, `chunk_lines` lines per
    transaction. Tags are found by `mapping`, else by slug, name or synonym in the category of the same
    slug; with `create_taxonomy` missing categories and tags are created (and embedded after commit),
    without it they are counted in `unmapped`. A bad `mapping` or `source` raises ImportConfigError
    before anything is written. `progress` is called with the number of lines read since its last call.
    """
    source = _source_clean(source)
    resolver = _TagResolver(mapped=_mapping_resolve(mapping), create=create_taxonomy)
    report = ImportReport()
    first_line_of: dict[str, int] = {}
    records: list[RecipeLine] = []
    read = 0
    label_changes = 0

    def flush() -> None:
        nonlocal records, read, label_changes
        if records:
            label_changes += _chunk_import(
                records, source=source, labeled=labeled, resolver=resolver, user=user, report=report
            )
        if progress is not None and read:
            progress(read)
        records, read = [], 0

    for number, raw in enumerate(lines, start=1):
        read += 1
        text = raw.lstrip("\ufeff") if isinstance(raw, str) else raw
        if text.strip():
            try:
                record = recipe_line_parse(text, line=number, labeled=labeled)
            except BadLine as exc:
                report.errors.append((number, str(exc)))
            else:
                first = first_line_of.setdefault(record.external_id, number)
                if first != number:
                    report.errors.append((number, f"id {record.external_id!r} already appeared on line {first}"))
                else:
                    records.append(record)
        if read >= chunk_lines:
            flush()
    flush()
    report.errors.sort()
    if label_changes:
        labels_changed()
    logger.info(
        "Imported recipes from %s: %d created, %d updated, %d unchanged, %d labels, %d bad lines",
        source,
        report.created,
        report.updated,
        report.unchanged,
        report.labels,
        len(report.errors),
    )
    return report
