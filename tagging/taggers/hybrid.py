"""The `hybrid` strategy: the similarity tagger shortlists, the LLM decides the uncertain middle.

Per category, tags scoring at or above HYBRID_ACCEPT are accepted without the LLM, tags below
HYBRID_FLOOR are dropped, and only the uncertain middle (at most 3k, best first) goes to the LLM, for
the slots the accepted tags left. A category with nothing uncertain (or no slot left) makes no call,
and a recipe whose categories are all decided makes none at all.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from django.conf import settings

from autotagger.recipe_text import RecipeText
from prompts.sources import LLMSourceConfig
from tagging.taggers.base import CategoryRequest, ScoredTag, TaggerOutput
from tagging.taggers.llm import LLMStats, llm_pick
from tagging.taggers.similarity import SimilarityTagger
from taxonomy.models import Tag

SHORTLIST_PER_K = 3


@dataclass
class HybridPlan:
    accepted: dict[int, list[ScoredTag]]  # category id -> tags taken without the LLM
    shortlist: dict[int, list[ScoredTag]]  # category id -> the uncertain middle, for the LLM
    slots: dict[int, int]  # category id -> how many tags the LLM may still add
    dropped: int  # tags below the floor
    ruled_out_accepted: dict[int, list[ScoredTag]] = field(default_factory=dict)  # sure, but ruled out
    ruled_out: int = 0  # tags of the middle that the recipe's ingredients rule out, never offered


def hybrid_plan(
    *, scored: TaggerOutput, requests: Sequence[CategoryRequest], ruled_out: Collection[int] = frozenset()
) -> HybridPlan:
    """Split every category's scored tags into accepted, shortlisted (at most 3k) and dropped. A tag of
    `ruled_out` (the recipe's ingredients contradict it) takes no slot and is never offered to the model."""
    accept, floor = settings.HYBRID_ACCEPT, settings.HYBRID_FLOOR
    plan = HybridPlan(accepted={}, shortlist={}, slots={}, dropped=0)
    for request in requests:
        tags = scored.tags.get(request.category.pk, [])
        sure = [t for t in tags if t.score >= accept]
        plan.accepted[request.category.pk] = [t for t in sure if t.tag_id not in ruled_out][: request.k]
        plan.ruled_out_accepted[request.category.pk] = [t for t in sure[: request.k] if t.tag_id in ruled_out]
        middle = [t for t in tags if floor <= t.score < accept]
        plan.ruled_out += sum(1 for t in middle if t.tag_id in ruled_out)
        middle = [t for t in middle if t.tag_id not in ruled_out]
        plan.dropped += sum(1 for t in tags if t.score < floor)
        plan.slots[request.category.pk] = request.k - len(plan.accepted[request.category.pk])
        if plan.slots[request.category.pk] > 0 and middle:
            plan.shortlist[request.category.pk] = middle[: SHORTLIST_PER_K * request.k]
    return plan


class HybridTagger:
    def __init__(self, *, similarity: SimilarityTagger, source: LLMSourceConfig) -> None:
        self.similarity = similarity
        self.source = source

    def tag(
        self,
        *,
        recipe: RecipeText,
        embedding: np.ndarray,
        requests: Sequence[CategoryRequest],
        run_id: int | None,
        ruled_out: Collection[int] = frozenset(),
    ) -> tuple[TaggerOutput, LLMStats]:
        started = time.perf_counter()
        scored = self.similarity.score_all(recipe=recipe, embedding=embedding, requests=requests)
        plan = hybrid_plan(scored=scored, requests=requests, ruled_out=ruled_out)
        accepted, shortlist, slots = plan.accepted, plan.shortlist, plan.slots
        asked = [r for r in requests if r.category.pk in shortlist]
        picked: dict[int, list[ScoredTag]] = {}
        stats = LLMStats()
        if asked:
            tag_rows = Tag.objects.in_bulk([t.tag_id for tags in shortlist.values() for t in tags])
            tags = {pk: [tag_rows[t.tag_id] for t in candidates] for pk, candidates in shortlist.items()}
            picked, stats = llm_pick(
                recipe=recipe, requests=asked, tags=tags, source=self.source, run_id=run_id, slots=slots
            )
        output = TaggerOutput()
        decided_by_llm = 0
        for request in requests:
            chosen = list(accepted[request.category.pk])
            # What similarity saw of a tag the model picked stays its evidence, the model's decision on top.
            seen = {t.tag_id: t.evidence for t in shortlist.get(request.category.pk, [])}
            from_llm = [
                replace(t, evidence={**seen.get(t.tag_id, {}), **t.evidence})
                for t in picked.get(request.category.pk, [])[: slots[request.category.pk]]
            ]
            decided_by_llm += len(from_llm)
            chosen.extend(from_llm)
            if request.override is not None:
                chosen = [t for t in chosen if t.score >= request.override]
            # Ruled-out tags similarity was sure of go first, to be removed (and shown removed) with the
            # output of every strategy; they took no slot from the others.
            output.tags[request.category.pk] = plan.ruled_out_accepted[request.category.pk] + chosen[: request.k]
        stats.extra = {
            "decided_by_similarity": sum(len(v) for v in accepted.values()),
            "decided_by_llm": decided_by_llm,
            "shortlisted": sum(len(v) for v in shortlist.values()),
            "dropped_below_floor": plan.dropped,
            "ruled_out_of_shortlist": plan.ruled_out,
            "llm_categories": len(asked),
        }
        output.timings_ms = {**scored.timings_ms, "hybrid_ms": round((time.perf_counter() - started) * 1000, 2)}
        return output, stats
