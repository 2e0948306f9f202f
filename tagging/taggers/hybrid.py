"""The `hybrid` strategy: the similarity tagger shortlists, the LLM decides what it is not sure of.

Per category, best first, after the tags the recipe's ingredients rule out (never offered):
- **accepted** without the LLM: tags whose calibrated probability is at least HYBRID_ACCEPT (nearly
  certain), at most k; a zero-shot guess only at HYBRID_ZERO_SHOT_ACCEPT (by default never);
- **shortlisted** for the LLM, for the slots the accepted tags left: sized for recall. Where the scores
  are calibrated probabilities (a learned category: see tagging.calibration), their sum over the tags not
  offered is the expected number of gold tags the model never sees, so tags are added best first until
  that sum is at most HYBRID_MISS_SHARE of the category's expected gold tags, or the next tag's probability
  is under HYBRID_FLOOR (none by default); never fewer than HYBRID_SHORTLIST_MIN tags, never more than
  HYBRID_SHORTLIST_MAX_PER_K per slot of k. A confident category gets a short list, an unsure one a long
  one (the defaults were tuned against an oracle on the shared datasets: bench/llm_quality.py). Zero-shot
  scores (no labels for the category, or a tag added since the last fit) are not probabilities and say
  little about how much is left out, so those tags are offered generously: the best HYBRID_ZERO_SHOT_PER_K
  per slot of k.
- the rest is dropped.

A category with nothing to shortlist (or no slot left) makes no call, and a recipe whose categories are
all decided makes none at all. The run's stats say, per category slug, what was accepted and shortlisted
and what similarity alone would have returned, so that an evaluation can measure how much of the gold
reached the model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np
from django.conf import settings

from autotagger.recipe_text import RecipeText
from prompts.models import HYBRID_TAGGING_PROMPT
from prompts.rendering import FewShotExample, PromptTemplates
from prompts.selectors import prompt_version_active
from prompts.sources import LLMSourceConfig
from tagging.taggers.base import CategoryRequest, ScoredTag, TaggerOutput
from tagging.taggers.llm import LLMAsk, LLMStats, QuestionDeferred, llm_pick
from tagging.taggers.similarity import SimilarityTagger
from taxonomy.limits import MAX_TAGS_PER_CATEGORY
from taxonomy.models import Tag


@dataclass(frozen=True)
class ShortlistPolicy:
    """How the shortlist is chosen (the HYBRID_* settings; see the module docstring)."""

    accept: float
    miss_share: float
    floor: float
    minimum: int
    max_per_k: float
    zero_shot_per_k: float
    # A zero-shot score at or above this is taken without the model; above 1 (the default): never, since a
    # guess no label has confirmed is no probability (a Pad Thai once scored 0.95 for "chinese").
    zero_shot_accept: float = 1.01

    @classmethod
    def from_settings(cls) -> ShortlistPolicy:
        return cls(
            accept=float(settings.HYBRID_ACCEPT),
            miss_share=float(settings.HYBRID_MISS_SHARE),
            floor=float(settings.HYBRID_FLOOR),
            minimum=int(settings.HYBRID_SHORTLIST_MIN),
            max_per_k=float(settings.HYBRID_SHORTLIST_MAX_PER_K),
            zero_shot_per_k=float(settings.HYBRID_ZERO_SHOT_PER_K),
            zero_shot_accept=float(settings.HYBRID_ZERO_SHOT_ACCEPT),
        )


def is_calibrated(tag: ScoredTag) -> bool:
    """Whether the tag's score is a calibrated probability (the learned model's), not a zero-shot guess."""
    return tag.evidence.get("decided_by") == "learned"


def calibrated_shortlist_size(probabilities: Sequence[float], *, slots: int, policy: ShortlistPolicy) -> int:
    """How many of `probabilities` (calibrated, best first) to offer the model for `slots` places: enough
    that the probabilities left out sum to at most `miss_share` of them all (the expected share of gold
    tags the model never sees), stopping at a tag under `floor`; at least `minimum`, at most
    `max_per_k` per slot."""
    cap = min(len(probabilities), math.ceil(policy.max_per_k * slots))
    left = math.fsum(probabilities)
    allowed = policy.miss_share * left
    size = 0
    while size < cap:
        if size >= policy.minimum and (left <= allowed or probabilities[size] < policy.floor):
            break
        left -= probabilities[size]
        size += 1
    return size


def shortlist_reach(
    *, gold: Collection[str], accepted: Collection[str], shortlisted: Collection[str]
) -> tuple[int, int]:
    """(gold tags accepted without the model or offered to it, gold tags) of one category of one recipe: summed
    over recipes, their ratio is the shortlist's recall, the best recall any model could reach through it."""
    wanted = set(gold)
    return len(wanted & (set(accepted) | set(shortlisted))), len(wanted)


@dataclass
class HybridPlan:
    accepted: dict[int, list[ScoredTag]]  # category id -> tags taken without the LLM
    shortlist: dict[int, list[ScoredTag]]  # category id -> the uncertain ones, for the LLM
    slots: dict[int, int]  # category id -> how many tags the LLM may still add
    dropped: int  # tags neither accepted nor shortlisted (ruled-out ones not counted)
    ruled_out_accepted: dict[int, list[ScoredTag]] = field(default_factory=dict)  # sure, but ruled out
    ruled_out: int = 0  # tags not accepted that the recipe's ingredients rule out, never offered


def _tags_dump(tags: dict[int, list[ScoredTag]]) -> dict[str, list[dict[str, Any]]]:
    return {str(pk): [asdict(t) for t in scored] for pk, scored in tags.items()}


def _tags_load(data: dict[str, list[dict[str, Any]]]) -> dict[int, list[ScoredTag]]:
    return {int(pk): [ScoredTag(**t) for t in scored] for pk, scored in data.items()}


def hybrid_plan_dump(plan: HybridPlan) -> dict[str, Any]:
    """`plan` as JSON, to keep it while a batch answers (`hybrid_plan_load` reads it back)."""
    return {
        "accepted": _tags_dump(plan.accepted),
        "shortlist": _tags_dump(plan.shortlist),
        "slots": {str(pk): n for pk, n in plan.slots.items()},
        "dropped": plan.dropped,
        "ruled_out_accepted": _tags_dump(plan.ruled_out_accepted),
        "ruled_out": plan.ruled_out,
    }


def hybrid_plan_load(data: dict[str, Any]) -> HybridPlan:
    return HybridPlan(
        accepted=_tags_load(data["accepted"]),
        shortlist=_tags_load(data["shortlist"]),
        slots={int(pk): int(n) for pk, n in data["slots"].items()},
        dropped=int(data["dropped"]),
        ruled_out_accepted=_tags_load(data["ruled_out_accepted"]),
        ruled_out=int(data["ruled_out"]),
    )


def hybrid_plan(
    *,
    scored: TaggerOutput,
    requests: Sequence[CategoryRequest],
    ruled_out: Collection[int] = frozenset(),
    policy: ShortlistPolicy | None = None,
) -> HybridPlan:
    """Split every category's scored tags (best first, as SimilarityTagger.score_all returns them) into
    accepted, shortlisted and dropped. A tag of `ruled_out` (the recipe's ingredients contradict it) takes
    no slot and is never offered to the model."""
    policy = policy or ShortlistPolicy.from_settings()
    plan = HybridPlan(accepted={}, shortlist={}, slots={}, dropped=0)
    for request in requests:
        pk = request.category.pk
        tags = scored.tags.get(pk, [])
        sure = [t for t in tags if t.score >= (policy.accept if is_calibrated(t) else policy.zero_shot_accept)]
        plan.accepted[pk] = [t for t in sure if t.tag_id not in ruled_out][: request.k]
        plan.ruled_out_accepted[pk] = [t for t in sure[: request.k] if t.tag_id in ruled_out]
        taken = {t.tag_id for t in plan.accepted[pk]} | {t.tag_id for t in plan.ruled_out_accepted[pk]}
        rest = [t for t in tags if t.tag_id not in taken]
        plan.ruled_out += sum(1 for t in rest if t.tag_id in ruled_out)
        rest = [t for t in rest if t.tag_id not in ruled_out]
        slots = request.k - len(plan.accepted[pk])
        plan.slots[pk] = slots
        shortlist: list[ScoredTag] = []
        if slots > 0:
            learned = [t for t in rest if is_calibrated(t)]
            guessed = [t for t in rest if not is_calibrated(t)]
            size = calibrated_shortlist_size([t.score for t in learned], slots=slots, policy=policy)
            shortlist = learned[:size] + guessed[: math.ceil(policy.zero_shot_per_k * slots)]
            # Stable: tags of equal rounded score keep the tagger's order (by the unrounded score).
            shortlist.sort(key=lambda t: -t.score)
        if shortlist:
            plan.shortlist[pk] = shortlist
        plan.dropped += len(rest) - len(shortlist)
    return plan


@dataclass
class HybridStats(LLMStats):
    """The call's stats, and per category slug the tag slugs of the plan and of similarity alone (the top k
    above its thresholds, as the similarity strategy would answer)."""

    accepted: dict[str, list[str]] = field(default_factory=dict)
    shortlist: dict[str, list[str]] = field(default_factory=dict)
    similarity_alone: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, stats: LLMStats) -> HybridStats:
        return cls(**{f.name: getattr(stats, f.name) for f in fields(LLMStats)})

    def as_dict(self) -> dict[str, object]:
        return {
            **super().as_dict(),
            "accepted": self.accepted,
            "shortlist": self.shortlist,
            "similarity_alone": self.similarity_alone,
        }


class HybridTagger:
    def __init__(
        self,
        *,
        similarity: SimilarityTagger,
        source: LLMSourceConfig,
        examples: Sequence[FewShotExample] = (),
        prompt: PromptTemplates | None = None,
        ask: LLMAsk | None = None,
    ) -> None:
        self.similarity = similarity
        self.source = source
        self.examples = examples  # labelled recipes shown to the model (tagging.services.few_shot)
        self.prompt = prompt  # None: the active version of the hybrid's prompt (HYBRID_TAGGING_PROMPT)
        self.ask = ask  # None: live

    def tag(
        self,
        *,
        recipe: RecipeText,
        embedding: np.ndarray,
        requests: Sequence[CategoryRequest],
        run_id: int | None,
        ruled_out: Collection[int] = frozenset(),
        plan: HybridPlan | None = None,
    ) -> tuple[TaggerOutput, HybridStats]:
        """Tag `recipe`; `plan` (what an earlier pass decided without the model, e.g. before asking through a
        batch) is kept as it was rather than decided again. When `ask` defers the question (QuestionDeferred),
        the plan leaves with it."""
        started = time.perf_counter()
        scored = TaggerOutput()
        if plan is None:
            scored = self.similarity.score_all(recipe=recipe, embedding=embedding, requests=requests)
            plan = hybrid_plan(scored=scored, requests=requests, ruled_out=ruled_out)
        accepted, shortlist, slots = plan.accepted, plan.shortlist, plan.slots
        asked = [r for r in requests if r.category.pk in shortlist]
        picked: dict[int, list[ScoredTag]] = {}
        stats = HybridStats()
        if asked:
            tag_rows = Tag.objects.in_bulk([t.tag_id for tags in shortlist.values() for t in tags])
            # A tag deleted since a kept plan was made is no longer offered.
            tags = {
                pk: [tag_rows[t.tag_id] for t in candidates if t.tag_id in tag_rows]
                for pk, candidates in shortlist.items()
            }
            try:
                picked, llm_stats = llm_pick(
                    recipe=recipe,
                    requests=asked,
                    tags=tags,
                    source=self.source,
                    run_id=run_id,
                    slots=slots,
                    examples=self.examples,
                    brief_tags=bool(settings.HYBRID_BRIEF_TAGS),
                    recipe_max_tokens=int(settings.HYBRID_RECIPE_MAX_TOKENS) or None,
                    prompt=self.prompt or prompt_version_active(name=HYBRID_TAGGING_PROMPT),
                    ask=self.ask,
                )
            except QuestionDeferred as deferred:
                deferred.plan = plan
                raise
            stats = HybridStats.of(llm_stats)
        output = TaggerOutput()
        decided_by_llm = 0
        for request in requests:
            chosen = list(accepted.get(request.category.pk, []))
            # What similarity saw of a tag the model picked stays its evidence, the model's decision on top.
            seen = {t.tag_id: t.evidence for t in shortlist.get(request.category.pk, [])}
            from_llm = [
                replace(t, evidence={**seen.get(t.tag_id, {}), **t.evidence})
                for t in picked.get(request.category.pk, [])[: slots.get(request.category.pk, request.k)]
            ]
            decided_by_llm += len(from_llm)
            chosen.extend(from_llm)
            if request.override is not None:
                chosen = [t for t in chosen if t.score >= request.override]
            # Ruled-out tags similarity was sure of go first, to be removed (and shown removed) with the
            # output of every strategy; they took no slot from the others.
            ruled_out_accepted = plan.ruled_out_accepted.get(request.category.pk, [])
            output.tags[request.category.pk] = ruled_out_accepted + chosen[: request.k]
        stats.extra = {
            "decided_by_similarity": sum(len(v) for v in accepted.values()),
            "decided_by_llm": decided_by_llm,
            "shortlisted": sum(len(v) for v in shortlist.values()),
            "dropped": plan.dropped,
            "ruled_out_of_shortlist": plan.ruled_out,
            "llm_categories": len(asked),
        }
        by_slug = {r.category.pk: r.category.slug for r in requests}
        stats.accepted = {by_slug[pk]: [t.slug for t in tags] for pk, tags in accepted.items() if tags}
        stats.shortlist = {by_slug[pk]: [t.slug for t in tags] for pk, tags in shortlist.items()}
        stats.similarity_alone = self._similarity_alone(
            recipe=recipe, embedding=embedding, requests=requests, ruled_out=ruled_out
        )
        output.timings_ms = {**scored.timings_ms, "hybrid_ms": round((time.perf_counter() - started) * 1000, 2)}
        return output, stats

    def _similarity_alone(
        self,
        *,
        recipe: RecipeText,
        embedding: np.ndarray,
        requests: Sequence[CategoryRequest],
        ruled_out: Collection[int],
    ) -> dict[str, list[str]]:
        """Category slug -> what the similarity strategy would return: its tags above the thresholds, those the
        ingredients rule out taken out (the next one takes the place), at most k."""
        widened = [replace(r, k=MAX_TAGS_PER_CATEGORY) for r in requests]
        alone = self.similarity.tag(recipe=recipe, embedding=embedding, requests=widened)
        return {
            r.category.slug: [t.slug for t in alone.tags.get(r.category.pk, []) if t.tag_id not in ruled_out][: r.k]
            for r in requests
        }
