from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from taxonomy.models import Category


@dataclass(frozen=True)
class ScoredTag:
    tag_id: int
    slug: str
    name: str
    score: float
    # Why the tag was chosen, JSON-able and small (stored on its TagAssignment): "decided_by" ("zero_shot",
    # "learned" or "llm") and what that path saw ("matched" words, "similarity", "signals", "neighbours",
    # "reason"); the ingredient rules add "rule".
    evidence: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


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
    # How unsure the learned tagger is about the recipe (tagging.uncertainty.decision_margins, lower is less
    # sure); None when no requested category has been learned.
    uncertainty_margin: float | None = None
