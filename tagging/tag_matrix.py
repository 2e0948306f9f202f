"""The taxonomy as the similarity tagger scores it: per category, one matrix of its active tags' unit vectors
and an index of their words, built once per process and rebuilt when the tags move.

Scoring a recipe against a category is then one matrix product and a few dictionary lookups, whatever the
number of tags, instead of a pgvector query returning every tag row for every recipe (or every batch).
The cache is keyed by the embedding model and the tags' version (taxonomy.selectors.tags_version: raised by
PostgreSQL on any write to the tags or their vectors), read by primary key on every use, so a changed
description, a (de)activated tag or a new model is seen at once, at a cost that does not grow with the tags.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from tagging.features import LexicalIndex
from tagging.selectors import TagRow, tags_embedded
from tagging.signals import row_products
from taxonomy.selectors import tags_version


@dataclass(frozen=True)
class CategoryTags:
    """The active, embedded tags of one category, in id order."""

    rows: tuple[TagRow, ...]
    # (T, d) unit rows, float64: the cosine similarity of a recipe is one product, as close to pgvector's as
    # the stored float32 vectors allow.
    matrix: np.ndarray
    lexical: LexicalIndex
    slugs: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "slugs", tuple(row.slug for row in self.rows))

    def similarities(self, embeddings: np.ndarray) -> np.ndarray:
        """(m, T) cosine similarity of each recipe to each tag."""
        if not self.rows:
            return np.zeros((len(embeddings), 0))
        return row_products(unit_rows(embeddings), self.matrix)

    def similarities_at(self, unit: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """The cosine similarity of one recipe (`unit`: a row of `unit_rows`) to the tags at `columns` alone:
        where only a few tags need one (the learned tagger's), the product leaves the others' rows unread."""
        if not len(columns):
            return np.zeros(0)
        return self.matrix[columns] @ unit


def unit_rows(embeddings: np.ndarray) -> np.ndarray:
    """The recipes' vectors scaled to unit length, in float64 as the tag matrix."""
    vectors = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


EMPTY = CategoryTags(rows=(), matrix=np.zeros((0, 0)), lexical=LexicalIndex([]))


@dataclass(frozen=True)
class TagMatrix:
    key: tuple[object, ...]
    categories: dict[int, CategoryTags]

    def category(self, category_id: int) -> CategoryTags:
        return self.categories.get(category_id, EMPTY)


def _build(key: tuple[object, ...], model: str) -> TagMatrix:
    by_category: dict[int, list[TagRow]] = {}
    for row in tags_embedded(model=model):
        by_category.setdefault(row.category_id, []).append(row)
    categories = {}
    for category_id, rows in by_category.items():
        matrix = np.stack([row.embedding for row in rows]).astype(np.float64)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        categories[category_id] = CategoryTags(
            rows=tuple(rows),
            matrix=matrix / np.where(norms == 0, 1.0, norms),
            lexical=LexicalIndex([(row.name, row.synonyms) for row in rows]),
        )
    return TagMatrix(key=key, categories=categories)


_cache: dict[str, TagMatrix] = {}
_lock = threading.Lock()


def tag_matrix_current(*, model: str) -> TagMatrix:
    """The tag matrix of `model` as the tags are now (built on first use, and again after any change)."""
    key = (model, tags_version())
    cached = _cache.get(model)
    if cached is not None and cached.key == key:
        return cached
    with _lock:
        cached = _cache.get(model)
        if cached is None or cached.key != key:
            cached = _build(key, model)
            # One model's matrix at a time: a process serves the configured model.
            _cache.clear()
            _cache[model] = cached
        return cached
