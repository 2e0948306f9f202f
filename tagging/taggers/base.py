from __future__ import annotations

from dataclasses import dataclass, field

from taxonomy.models import Category


@dataclass(frozen=True)
class ScoredTag:
    tag_id: int
    slug: str
    name: str
    score: float


@dataclass(frozen=True)
class CategoryRequest:
    """One category to tag: up to `k` tags scoring at least `threshold` (the zero-shot threshold), or
    `override` when the request set one (it then applies to learned scores too)."""

    category: Category
    k: int
    threshold: float
    override: float | None = None


@dataclass
class TaggerOutput:
    tags: dict[int, list[ScoredTag]] = field(default_factory=dict)  # category id -> tags, best first
    timings_ms: dict[str, float] = field(default_factory=dict)
