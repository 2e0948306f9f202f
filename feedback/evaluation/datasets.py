"""Labelled recipe datasets in the JSONL format of shared/datasets/README.md, read for evaluation."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotagger.recipe_text import RecipeText
from feedback.jsonl import BadLine, RecipeLine, recipe_line_parse, tag_slug


class DatasetError(Exception):
    """The file cannot be read as a labelled dataset; the message names the line."""


@dataclass
class DatasetRecipe:
    id: str
    text: RecipeText
    labels: dict[str, set[str]]  # category slug -> tag slugs


@dataclass
class Dataset:
    name: str
    sha256: str
    recipes: list[DatasetRecipe]
    # category slug -> tag slug -> tag name, in order of first appearance
    vocabulary: dict[str, dict[str, str]] = field(default_factory=dict)


def dataset_read(path: Path) -> Dataset:
    """Read a labelled JSONL file (feedback.jsonl reads each line, as for the import). Category names are kept
    as slugs verbatim (`main_ingredient`); tag names become slugs by feedback.jsonl.tag_slug."""
    with path.open("rb") as handle:
        return dataset_parse(name=path.stem, lines=handle, where=path.name)


def _recipes(
    lines: Iterable[bytes], *, where: str, digest: Any, vocabulary: dict[str, dict[str, str]]
) -> Iterator[DatasetRecipe]:
    """The recipes of a labelled JSONL's lines in order, each line added to `digest`; its tags' names to
    `vocabulary`. Raises DatasetError naming the line of the first that is wrong."""
    seen: set[str] = set()
    for number, raw in enumerate(lines, start=1):
        digest.update(raw)
        if not raw.strip():
            continue
        try:
            line = recipe_line_parse(raw, line=number, labeled=True)
        except BadLine as exc:
            raise DatasetError(f"{where} line {number}: {exc}") from exc
        if line.external_id in seen:
            raise DatasetError(f"{where} line {number}: id {line.external_id!r} appears twice")
        seen.add(line.external_id)
        yield _recipe(line, vocabulary)


def dataset_parse(*, name: str, lines: Iterable[bytes], where: str | None = None) -> Dataset:
    """`dataset_read` of lines already in hand (a dataset an evaluation job keeps in the database); errors
    name the line in `where` (default: `name`)."""
    digest = hashlib.sha256()
    vocabulary: dict[str, dict[str, str]] = {}
    recipes = list(_recipes(lines, where=where or name, digest=digest, vocabulary=vocabulary))
    return Dataset(name=name, sha256=digest.hexdigest(), recipes=recipes, vocabulary=vocabulary)


@dataclass
class DatasetSummary:
    """What checking a labelled dataset finds without keeping its recipes: a file of 100,000 recipes is read
    in the memory of one."""

    name: str
    sha256: str
    recipes: int
    vocabulary: dict[str, dict[str, str]]

    def as_dataset(self) -> Dataset:
        """A Dataset without recipes, for what reads only the name, hash and vocabulary."""
        return Dataset(name=self.name, sha256=self.sha256, recipes=[], vocabulary=self.vocabulary)


def dataset_scan(*, name: str, lines: Iterable[bytes], where: str | None = None) -> DatasetSummary:
    """Check every line as `dataset_parse` does (the same errors) and count the recipes, keeping none."""
    digest = hashlib.sha256()
    vocabulary: dict[str, dict[str, str]] = {}
    count = sum(1 for _ in _recipes(lines, where=where or name, digest=digest, vocabulary=vocabulary))
    return DatasetSummary(name=name, sha256=digest.hexdigest(), recipes=count, vocabulary=vocabulary)


def dataset_batches(*, lines: Iterable[bytes], size: int, where: str) -> Iterator[list[DatasetRecipe]]:
    """The recipes of a labelled dataset in order, `size` at a time."""
    batch: list[DatasetRecipe] = []
    for recipe in _recipes(lines, where=where, digest=hashlib.sha256(), vocabulary={}):
        batch.append(recipe)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def dataset_line_spans(*, content: bytes, size: int) -> list[tuple[int, int, int, int]]:
    """(first position, recipes, byte start, byte end) of each run of `size` consecutive recipes of a dataset
    `dataset_parse` accepted: the slice of `content` holding their lines (blank lines inside included)."""
    spans: list[tuple[int, int, int, int]] = []
    offset = position = 0
    for raw in io.BytesIO(content):  # line by line, never a list of every line
        start, offset = offset, offset + len(raw)
        if not raw.strip():
            continue
        if position % size == 0:
            spans.append((position, 0, start, offset))
        first, count, begin, _ = spans[-1]
        spans[-1] = (first, count + 1, begin, offset)
        position += 1
    return spans


def _recipe(line: RecipeLine, vocabulary: dict[str, dict[str, str]]) -> DatasetRecipe:
    """The dataset recipe of a parsed line; its tags' names are added to `vocabulary`."""
    labels: dict[str, set[str]] = {}
    for category, names in line.tags.items():
        words = vocabulary.setdefault(category, {})
        for tag_name in names:
            slug = tag_slug(tag_name)
            words.setdefault(slug, tag_name)
            labels.setdefault(category, set()).add(slug)
    text = RecipeText(title=line.title, ingredients=line.ingredients, instructions=line.instructions)
    return DatasetRecipe(id=line.external_id, text=text, labels=labels)


def dataset_recipes_at(*, lines: Iterable[bytes], positions: Collection[int]) -> dict[int, DatasetRecipe]:
    """The recipes at `positions` (indices into `Dataset.recipes`) of a dataset `dataset_parse` accepted, by
    position. Only those lines are parsed: a chunk of a 100,000-recipe dataset costs its own recipes, not the
    whole file's."""
    wanted = set(positions)
    found: dict[int, DatasetRecipe] = {}
    position = -1
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        position += 1
        if position in wanted:
            found[position] = _recipe(recipe_line_parse(raw, line=number, labeled=True), {})
            if len(found) == len(wanted):
                break
    return found


def fold_of(recipe_id: str, folds: int) -> int:
    """Stable fold of a recipe: a hash of its id, so the folds do not depend on file order."""
    return int(hashlib.sha1(recipe_id.encode("utf-8")).hexdigest(), 16) % folds


def texts(recipes: Iterable[DatasetRecipe]) -> list[str]:
    return [r.text.for_embedding() for r in recipes]
