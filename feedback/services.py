"""Gold labels, the import of labelled recipe datasets (JSON lines, see ../shared/datasets/README.md), and
evaluation runs that score a tagging strategy on such a dataset."""

from __future__ import annotations

import functools
import json
import logging
import operator
import re
import subprocess
import time
import tomllib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import DatabaseError, transaction
from django.db.models import Max, Q
from django.utils import timezone
from django.utils.text import slugify

from feedback.evaluation import runner
from feedback.evaluation.datasets import Dataset, dataset_read
from feedback.models import EvaluationRun, GoldLabel, GoldLabelSource
from tagging.models import Recipe, Strategy
from tagging.services import TaggingError, _recipe_build, embeddings_cached
from taxonomy.models import Category, Tag
from taxonomy.services import tags_schedule_embedding

logger = logging.getLogger(__name__)

# Lines per transaction: big enough to batch the queries, small enough that memory stays flat and a
# database error costs at most this many lines.
CHUNK_LINES = 500
MAX_TITLE_LENGTH = 500
MAX_EXTERNAL_ID_LENGTH = 200
MAX_SOURCE_LENGTH = 100
MAX_NAME_LENGTH = 100

_SLUG = re.compile(r"^[a-z0-9_-]+$")

User: TypeAlias = AbstractBaseUser | AnonymousUser | None


class ImportConfigError(TaggingError):
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


# --- Gold labels -------------------------------------------------------------------------------------


def _user_or_none(user: User) -> Any:
    return user if user is not None and user.is_authenticated else None


def _labels_replace(*, tag_ids_by_recipe: dict[int, set[int]], source: str, user: User) -> tuple[int, int]:
    """Within the caller's transaction: returns (labels from `source` afterwards, rows added or deleted)."""
    if source not in GoldLabelSource.values:
        raise ValueError(f"Unknown gold label source {source!r}.")
    recipe_ids = sorted(tag_ids_by_recipe)
    # Two replaces of one recipe at once would both insert the same (recipe, tag): the second waits here.
    list(Recipe.objects.select_for_update().filter(pk__in=recipe_ids).order_by("id").values_list("id", flat=True))
    present: dict[int, set[int]] = defaultdict(set)
    stale: list[int] = []
    kept = 0
    rows = GoldLabel.objects.filter(recipe_id__in=recipe_ids).values_list("id", "recipe_id", "tag_id", "source")
    for label_id, recipe_id, tag_id, label_source in rows:
        present[recipe_id].add(tag_id)
        if label_source != source:
            continue
        if tag_id in tag_ids_by_recipe[recipe_id]:
            kept += 1
        else:
            stale.append(label_id)
    new = [
        GoldLabel(recipe_id=recipe_id, tag_id=tag_id, source=source, created_by=_user_or_none(user))
        for recipe_id in recipe_ids
        for tag_id in sorted(tag_ids_by_recipe[recipe_id] - present[recipe_id])
    ]
    if stale:
        GoldLabel.objects.filter(id__in=stale).delete()
    GoldLabel.objects.bulk_create(new, batch_size=1000)
    return kept + len(new), len(stale) + len(new)


@transaction.atomic
def gold_labels_replace(*, recipe: Recipe, tags: Iterable[Tag], source: str, user: User = None) -> int:
    """Make the recipe's gold labels from `source` exactly `tags`; returns how many it has from `source`.

    Labels from the other source are untouched: a tag the recipe already has from there keeps that
    label (and is not counted here). This does not call `labels_changed()`; callers do, once per batch.
    """
    count, _ = _labels_replace(tag_ids_by_recipe={recipe.pk: {tag.pk for tag in tags}}, source=source, user=user)
    return count


def labels_changed() -> None:
    """Gold labels changed: once committed, the learned tagger refits (debounced)."""
    from tagging.training import tagger_refit_schedule

    tagger_refit_schedule()


# --- Reading the lines -------------------------------------------------------------------------------


class _BadLine(Exception):
    pass


@dataclass(frozen=True)
class _Record:
    line: int
    external_id: str
    title: str
    ingredients: list[str]
    instructions: str
    tags: dict[str, list[str]]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _text(data: dict[str, Any], name: str, *, max_length: int | None = None) -> str:
    value = data.get(name)
    if value is None:
        raise _BadLine(f"'{name}' is missing")
    if not isinstance(value, str):
        raise _BadLine(f"'{name}' must be a string, not {_kind(value)}")
    value = value.strip()
    if not value:
        raise _BadLine(f"'{name}' is empty")
    if max_length is not None and len(value) > max_length:
        raise _BadLine(f"'{name}' is longer than {max_length} characters ({len(value)})")
    return value


def _no_nul(*texts: str) -> None:
    if any("\x00" in text for text in texts):
        raise _BadLine("a text contains a NUL character (\\u0000), which the database cannot store")


def _tags(value: Any) -> dict[str, list[str]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _BadLine(f"'tags' must be an object of category → list of tag names, not {_kind(value)}")
    tags: dict[str, list[str]] = {}
    for raw_category, names in value.items():
        category = raw_category.strip()
        if not category or len(category) > MAX_NAME_LENGTH:
            raise _BadLine(f"tag category {raw_category!r} must have 1 to {MAX_NAME_LENGTH} characters")
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise _BadLine(f"'tags.{category}' must be a list of strings")
        cleaned = list(dict.fromkeys(name.strip() for name in names if name.strip()))
        too_long = [name for name in cleaned if len(name) > MAX_NAME_LENGTH]
        if too_long:
            name = too_long[0][:40]
            raise _BadLine(f"tag name {name!r}… in '{category}' is longer than {MAX_NAME_LENGTH} characters")
        _no_nul(category, *cleaned)
        if cleaned:
            # Two keys can become one once stripped ("cuisine " and "cuisine").
            tags[category] = list(dict.fromkeys([*tags.get(category, []), *cleaned]))
    return tags


def _record_parse(raw: str | bytes, *, line: int, labeled: bool) -> _Record:
    try:
        data = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise _BadLine("not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise _BadLine(f"invalid JSON: {exc.msg} (column {exc.colno})") from exc
    if not isinstance(data, dict):
        raise _BadLine(f"expected a JSON object, got {_kind(data)}")
    if isinstance(data.get("id"), int) and not isinstance(data["id"], bool):
        data["id"] = str(data["id"])
    external_id = _text(data, "id", max_length=MAX_EXTERNAL_ID_LENGTH)
    title = _text(data, "title", max_length=MAX_TITLE_LENGTH)
    ingredients = data.get("ingredients")
    if ingredients is None:
        ingredients = []
    if not isinstance(ingredients, list) or not all(isinstance(item, str) for item in ingredients):
        raise _BadLine("'ingredients' must be a list of strings")
    instructions = data.get("instructions")
    if instructions is None:
        instructions = ""
    if not isinstance(instructions, str):
        raise _BadLine(f"'instructions' must be a string, not {_kind(instructions)}")
    if not any(item.strip() for item in ingredients) and not instructions.strip():
        raise _BadLine("the recipe has no ingredients and no instructions")
    _no_nul(external_id, title, instructions, *ingredients)
    return _Record(
        line=line,
        external_id=external_id,
        title=title,
        ingredients=ingredients,
        instructions=instructions,
        tags=_tags(data.get("tags")) if labeled else {},
    )


# --- Resolving tags ----------------------------------------------------------------------------------


def _category_slug(name: str) -> str:
    """The dataset's category name itself when it is a slug (`main_ingredient` stays `main_ingredient`)."""
    name = name.strip()
    if _SLUG.match(name):
        return name[:100]
    return slugify(name).replace("-", "_")[:100]


def _tag_slug(name: str) -> str:
    return (slugify(name) or slugify(name, allow_unicode=True))[:100]


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
            category_slug, _, tag_slug = target.strip().rpartition("/")
            wanted.append((category.strip(), name.strip(), category_slug or _category_slug(category), tag_slug))
    pairs = {(category_slug, tag_slug) for *_, category_slug, tag_slug in wanted}
    found: dict[tuple[str, str], int] = {}
    if pairs:
        query = functools.reduce(operator.or_, (Q(category__slug=c, slug=t) for c, t in pairs))
        found = {(c, t): pk for pk, c, t in Tag.objects.filter(query).values_list("id", "category__slug", "slug")}
    resolved: dict[tuple[str, str], int] = {}
    for category, name, category_slug, tag_slug in wanted:
        tag_id = found.get((category_slug, tag_slug))
        if tag_id is None:
            problems.append(f"{category} → {name!r} → '{category_slug}/{tag_slug}' is no existing tag")
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
        slug = _tag_slug(tag_name)
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
        slug = _category_slug(name)
        category = Category.objects.filter(slug=slug).first() if slug else None
        if category is None and self._create and slug:
            last = Category.objects.aggregate(last=Max("position"))["last"]
            category = Category.objects.create(
                name=name.replace("_", " ").strip().title(),
                slug=slug,
                position=0 if last is None else last + 1,
                default_max_tags=3,
            )
            report.categories_created += 1
        entry = None
        if category is not None:
            entry = _CategoryTags(category=category, by_slug={}, by_name={})
            tags = Tag.objects.filter(category=category).order_by("-id").values_list("id", "slug", "name", "synonyms")
            rows = list(tags)
            for pk, _, _, synonyms in rows:
                entry.by_name.update({synonym.casefold(): pk for synonym in synonyms})
            for pk, tag_slug, tag_name, _ in rows:
                entry.by_slug[tag_slug] = pk
                entry.by_name[tag_name.casefold()] = pk
        self._categories[name] = entry
        return entry


# --- Importing ---------------------------------------------------------------------------------------


def _source_clean(source: Any) -> str:
    if not isinstance(source, str) or not source.strip():
        raise ImportConfigError("The source name is empty; give the dataset's name (such as 'themealdb').")
    if len(source.strip()) > MAX_SOURCE_LENGTH:
        raise ImportConfigError(f"The source name is longer than {MAX_SOURCE_LENGTH} characters.")
    return source.strip()


def _chunk_write(
    records: list[_Record], *, source: str, labeled: bool, resolver: _TagResolver, user: User, report: ImportReport
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
    stored: list[tuple[_Record, Recipe]] = []
    now = timezone.now()
    for record in records:
        built = _recipe_build(
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
    labels, label_changes = _labels_replace(
        tag_ids_by_recipe=tag_ids_by_recipe, source=GoldLabelSource.IMPORT, user=user
    )
    report.labels += labels
    tags_schedule_embedding(tag_ids=resolver.new_tag_ids)
    resolver.new_tag_ids = []
    return label_changes


def _chunk_import(
    records: list[_Record], *, source: str, labeled: bool, resolver: _TagResolver, user: User, report: ImportReport
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
    records: list[_Record] = []
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
                record = _record_parse(text, line=number, labeled=labeled)
            except _BadLine as exc:
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


# --- Evaluation --------------------------------------------------------------------------------------

MAX_EVALUATION_K = 20
GIT_TIMEOUT_SECONDS = 5
PYPROJECT = Path(settings.BASE_DIR) / "pyproject.toml"


class EvaluationError(TaggingError):
    """An evaluation that cannot start (bad options, a missing file); nothing was stored."""

    code = "invalid_evaluation"


def _evaluation_options_check(*, strategy: str, k: int, folds: int | None, train_path: Path | None) -> None:
    if strategy in (Strategy.LLM, Strategy.HYBRID):
        raise EvaluationError(
            f"The {strategy} strategy needs an LLM, and AutoTagger has no LLM tagger yet: "
            f"evaluate the {Strategy.SIMILARITY} strategy for now."
        )
    if strategy != Strategy.SIMILARITY:
        raise EvaluationError(f"Unknown strategy {strategy!r}: the choices are {', '.join(Strategy.values)}.")
    if not 1 <= k <= MAX_EVALUATION_K:
        raise EvaluationError(f"k must be between 1 and {MAX_EVALUATION_K}, not {k}.")
    if folds is not None and train_path is not None:
        raise EvaluationError(
            "Give folds (cross-validate on the dataset) or a training dataset (learn from it), not both."
        )
    if folds is not None and folds < 2:
        raise EvaluationError(f"folds must be at least 2, not {folds}.")


def _dataset_load(path: Path, *, role: str) -> Dataset:
    if not path.is_file():
        raise EvaluationError(f"The {role} dataset {path} does not exist.")
    # DatasetError (a line that is no labelled recipe) reaches the caller as it is: its message names the line.
    dataset = dataset_read(path)
    if not dataset.recipes:
        raise EvaluationError(f"The {role} dataset {path} holds no recipes.")
    return dataset


def _categories_check(categories: list[str] | None, *, dataset: Dataset) -> list[str] | None:
    if not dataset.vocabulary:
        raise EvaluationError(f"The dataset {dataset.name} has no tags to score against.")
    if categories is None:
        return None
    wanted = list(dict.fromkeys(c.strip() for c in categories if c.strip()))
    if not wanted:
        raise EvaluationError("Name at least one category, or none to score them all.")
    unknown = [c for c in wanted if c not in dataset.vocabulary]
    if unknown:
        raise EvaluationError(
            f"The dataset {dataset.name} has no tags in {', '.join(unknown)}; "
            f"its categories are {', '.join(dataset.vocabulary)}."
        )
    return wanted


def _taxonomy_check(categories: list[str], *, dataset: Dataset) -> None:
    """Without folds or training data the taxonomy's categories are scored: some must match the file's."""
    if not Category.objects.filter(slug__in=categories, active=True).exists():
        raise EvaluationError(
            f"None of the categories of {dataset.name} ({', '.join(categories)}) is an active category of the "
            "taxonomy, so the tagger as deployed has nothing to score: import the taxonomy, or evaluate with "
            "folds or a training dataset."
        )


def _code_version() -> str:
    """The commit checked out (`git rev-parse --short HEAD`); the package version where there is no Git
    checkout (the Docker image has no .git)."""
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        completed = None
    if completed is not None and completed.returncode == 0 and completed.stdout.strip():
        return completed.stdout.strip()[:40]
    try:
        return str(tomllib.loads(PYPROJECT.read_text())["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        logger.exception("Unable to read the package version from %s", PYPROJECT)
        return "unknown"


def _embed(texts: Sequence[str]) -> np.ndarray:
    return embeddings_cached(texts=list(texts))


def evaluation_run(
    *,
    path: Path,
    k: int,
    strategy: str,
    categories: list[str] | None,
    folds: int | None,
    train_path: Path | None,
    user: User = None,
    progress: Callable[[str], None] | None = None,
) -> EvaluationRun:
    """Score `strategy` on the labelled dataset at `path`, against the reference baselines, and store the run.

    With `folds`, cross-validate on the dataset (a fold's recipes never reach the tagger that scores
    them); with `train_path`, learn from that dataset and score this one; with neither, tag with what
    the database holds and only compare with the file's labels. `categories` (dataset category slugs)
    limits the scoring; None scores every category of the dataset.

    Raises EvaluationError for bad options or a missing or empty file, DatasetError (with the line) for
    a file that is no labelled dataset.
    """
    _evaluation_options_check(strategy=strategy, k=k, folds=folds, train_path=train_path)
    started = time.perf_counter()
    test = _dataset_load(path, role="evaluation")
    train = _dataset_load(train_path, role="training") if train_path is not None else None
    wanted = _categories_check(categories, dataset=test)
    if folds is not None and folds > len(test.recipes):
        raise EvaluationError(f"folds ({folds}) cannot exceed the dataset's {len(test.recipes)} recipes.")
    if progress is not None:
        progress(f"Read {len(test.recipes)} recipes from {path.name}")
        if train is not None and train_path is not None:
            progress(f"Read {len(train.recipes)} training recipes from {train_path.name}")
    if folds is None and train is None:
        _taxonomy_check(wanted or list(test.vocabulary), dataset=test)
        result = runner.evaluate_with_database(test=test, k=k, categories=wanted, embed=_embed, progress=progress)
    else:
        result = runner.evaluate(
            test=test, train=train, folds=folds, k=k, categories=wanted, embed=_embed, progress=progress
        )
    return EvaluationRun.objects.create(
        dataset=result.dataset,
        dataset_sha256=result.dataset_sha256,
        strategy=strategy,
        # "train" is the training dataset's name, or "database" when the tagger used what the database holds.
        config={
            "k": k,
            "folds": result.config.get("folds"),
            "train": result.config.get("train"),
            "categories": result.categories,
        },
        prompt_version=None,
        code_version=_code_version(),
        metrics=result.as_json(),
        recipes=result.recipes,
        overall_f1=result.report.overall_f1,
        duration_seconds=time.perf_counter() - started,
        created_by=_user_or_none(user),
    )
