"""Labelled recipe datasets in the JSONL format of shared/datasets/README.md, read for evaluation."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from django.utils.text import slugify

from tagging.learning import RecipeText


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


def tag_slug(name: str) -> str:
    return slugify(name) or hashlib.sha1(name.encode()).hexdigest()[:10]


def dataset_read(path: Path) -> Dataset:
    """Read a labelled JSONL file. Category names are kept as slugs verbatim (`main_ingredient`)."""
    digest = hashlib.sha256()
    recipes: list[DatasetRecipe] = []
    vocabulary: dict[str, dict[str, str]] = {}
    seen: set[str] = set()
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            digest.update(raw)
            if not raw.strip():
                continue
            try:
                item = json.loads(raw)
            except ValueError as exc:
                raise DatasetError(f"{path.name} line {number}: not valid JSON ({exc})") from exc
            recipe = _recipe(item, where=f"{path.name} line {number}", vocabulary=vocabulary)
            if recipe.id in seen:
                raise DatasetError(f"{path.name} line {number}: id {recipe.id!r} appears twice")
            seen.add(recipe.id)
            recipes.append(recipe)
    return Dataset(name=path.stem, sha256=digest.hexdigest(), recipes=recipes, vocabulary=vocabulary)


def _recipe(item: object, *, where: str, vocabulary: dict[str, dict[str, str]]) -> DatasetRecipe:
    if not isinstance(item, dict):
        raise DatasetError(f"{where}: a recipe must be a JSON object")
    recipe_id, title = item.get("id"), item.get("title")
    ingredients, instructions = item.get("ingredients", []), item.get("instructions", "")
    if not isinstance(recipe_id, (str, int)) or not str(recipe_id).strip():
        raise DatasetError(f"{where}: 'id' is missing")
    if not isinstance(title, str) or not title.strip():
        raise DatasetError(f"{where}: 'title' is missing or empty")
    if not isinstance(ingredients, list) or not all(isinstance(i, str) for i in ingredients):
        raise DatasetError(f"{where}: 'ingredients' must be a list of strings")
    if not isinstance(instructions, str):
        raise DatasetError(f"{where}: 'instructions' must be a string")
    tags = item.get("tags") or {}
    if not isinstance(tags, dict):
        raise DatasetError(f"{where}: 'tags' must be an object of category -> list of tags")
    labels: dict[str, set[str]] = {}
    for category, names in tags.items():
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DatasetError(f"{where}: tags of {category!r} must be a list of strings")
        words = vocabulary.setdefault(category, {})
        for name in names:
            slug = tag_slug(name)
            words.setdefault(slug, name)
            labels.setdefault(category, set()).add(slug)
    return DatasetRecipe(
        id=str(recipe_id),
        text=RecipeText(title=title, ingredients=ingredients, instructions=instructions),
        labels=labels,
    )


def fold_of(recipe_id: str, folds: int) -> int:
    """Stable fold of a recipe: a hash of its id, so the folds do not depend on file order."""
    return int(hashlib.sha1(recipe_id.encode("utf-8")).hexdigest(), 16) % folds


def texts(recipes: Iterable[DatasetRecipe]) -> list[str]:
    return [r.text.for_embedding() for r in recipes]
