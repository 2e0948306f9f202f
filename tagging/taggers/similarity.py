"""The LLM-free tagger: cosine similarity in pgvector between the recipe and each tag's description,
sharpened by lexical evidence (a tag's name or synonym written in the recipe).

Raw cosine similarities of a small sentence model sit in a narrow band (roughly 0.0–0.6 here) and
are not comparable across recipes, so they are calibrated into a [0, 1] score before the
per-category threshold is applied:
- `semantic`: the similarity mapped linearly from [SIM_FLOOR, SIM_CEILING] onto [0, 1];
- `lexical`: LEXICAL_WEIGHTS of the field the name or synonym was found in (title beats ingredients
  beats instructions);
- score = 1 - (1 - semantic) * (1 - LEXICAL_STRENGTH * lexical), a noisy-OR: either signal alone
  can carry a tag, and both together make it nearly certain.
A tag whose similarity trails the category's best by more than RELATIVE_MARGIN, with no lexical
evidence, is dropped: a description that fits every recipe a little is not evidence for this one.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tagging.selectors import TagCandidate, tags_with_similarity
from tagging.taggers.base import CategoryRequest, ScoredTag, TaggerOutput

SIM_FLOOR = 0.15
SIM_CEILING = 0.55
LEXICAL_STRENGTH = 0.6
LEXICAL_WEIGHTS = {"title": 1.0, "ingredients": 0.75, "instructions": 0.4}
RELATIVE_MARGIN = 0.08


@dataclass(frozen=True)
class RecipeText:
    title: str
    ingredients: Sequence[str]
    instructions: str

    def for_embedding(self) -> str:
        ingredients = "; ".join(i.strip() for i in self.ingredients if i.strip())
        parts = [self.title.strip() + "."]
        if ingredients:
            parts.append(f"Ingredients: {ingredients}.")
        if self.instructions.strip():
            parts.append(self.instructions.strip())
        return " ".join(parts)


@lru_cache(maxsize=4096)
def _phrase_pattern(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    words = [re.escape(p.lower()) for p in phrases if len(p.strip()) >= 3]
    if not words:
        return None
    # Plural forms count ("lentils", "tomatoes"), longer words do not ("minced" is not "mince").
    return re.compile(r"(?<![\w-])(?:" + "|".join(words) + r")(?:s|es)?(?![\w-])")


def lexical_evidence(tag: TagCandidate, fields: dict[str, str]) -> float:
    pattern = _phrase_pattern(tuple(sorted({tag.name, *tag.synonyms})))
    if pattern is None:
        return 0.0
    return max((LEXICAL_WEIGHTS[name] for name, text in fields.items() if pattern.search(text)), default=0.0)


def calibrated_score(*, similarity: float, lexical: float) -> float:
    semantic = min(1.0, max(0.0, (similarity - SIM_FLOOR) / (SIM_CEILING - SIM_FLOOR)))
    return round(1.0 - (1.0 - semantic) * (1.0 - LEXICAL_STRENGTH * lexical), 4)


class SimilarityTagger:
    def __init__(self, *, model: str) -> None:
        self.model = model

    def tag(self, *, recipe: RecipeText, embedding: np.ndarray, requests: Sequence[CategoryRequest]) -> TaggerOutput:
        started = time.perf_counter()
        by_category: dict[int, list[TagCandidate]] = defaultdict(list)
        for tag in tags_with_similarity(
            embedding=embedding, category_ids=[r.category.pk for r in requests], model=self.model
        ):
            by_category[tag.category_id].append(tag)
        queried = time.perf_counter()

        fields = {
            "title": recipe.title.lower(),
            "ingredients": "\n".join(recipe.ingredients).lower(),
            "instructions": recipe.instructions.lower(),
        }
        output = TaggerOutput()
        for request in requests:
            candidates = by_category.get(request.category.pk, [])
            if not candidates:
                output.tags[request.category.pk] = []
                continue
            best = candidates[0].similarity
            scored: list[ScoredTag] = []
            for tag in candidates:
                lexical = lexical_evidence(tag, fields)
                if lexical == 0.0 and tag.similarity < best - RELATIVE_MARGIN:
                    continue
                score = calibrated_score(similarity=tag.similarity, lexical=lexical)
                if score >= request.threshold and score > 0.0:
                    scored.append(ScoredTag(tag_id=tag.id, slug=tag.slug, name=tag.name, score=score))
            scored.sort(key=lambda s: (-s.score, s.slug))
            output.tags[request.category.pk] = scored[: request.k]
        output.timings_ms = {
            "query_ms": round((queried - started) * 1000, 2),
            "score_ms": round((time.perf_counter() - queried) * 1000, 2),
        }
        return output
