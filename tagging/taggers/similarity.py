"""The LLM-free tagger.

Where the tagger has learned from gold labels (an active TaggerState, see tagging.learning), a
category's tags are scored by its learned model: a calibrated probability from zero-shot similarity,
the votes of the nearest labelled recipes (pgvector), tag prototypes, lexical evidence and a text
model, with a threshold fitted on the labels; the score is calibrated on the labels into the probability
that a reviewer accepts the tag (tagging.calibration).

Elsewhere (no labels yet, a category without enough of them, a tag added since the fit) it is
zero-shot: cosine similarity in pgvector between the recipe and each tag's description, sharpened by
lexical evidence. Raw cosine similarities of a small sentence model sit in a narrow band (roughly
0.0–0.6 here) and are not comparable across recipes, so they are calibrated into a [0, 1] score:
- `semantic`: the similarity mapped linearly from [SIM_FLOOR, SIM_CEILING] onto [0, 1];
- `lexical`: how strongly the tag's name or a synonym appears (title beats ingredients beats
  instructions);
- evidence = 1 - (1 - semantic) * (1 - LEXICAL_STRENGTH * lexical), a noisy-OR: either signal alone
  can carry a tag, and both together make it strong;
- score = the evidence, with its upper half (above ZERO_SHOT_KNEE) pressed into
  [ZERO_SHOT_KNEE, ZERO_SHOT_CEILING]: a guess that no label has confirmed is never shown as certain
  (1.00), and thresholds up to the knee keep what they returned.
A tag whose similarity trails the category's best by more than RELATIVE_MARGIN, with no lexical
evidence, is dropped: a description that fits every recipe a little is not evidence for this one.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from autotagger.recipe_text import RecipeText
from tagging.features import lexical_evidence, lexical_matches
from tagging.learning import Explained, LearnedModel
from tagging.selectors import TagCandidate, tags_with_similarity
from tagging.taggers.base import CategoryRequest, ScoredTag, TaggerOutput
from tagging.uncertainty import decision_margins

SIM_FLOOR = 0.15
SIM_CEILING = 0.55
LEXICAL_STRENGTH = 0.6
RELATIVE_MARGIN = 0.08
# Evidence above the knee is pressed into [knee, ceiling]. The knee is at the hybrid tagger's default
# acceptance (0.85), so no default decision changes; only what the score claims does.
ZERO_SHOT_KNEE = 0.85
ZERO_SHOT_CEILING = 0.95


def calibrated_score(*, similarity: float, lexical: float) -> float:
    """The zero-shot score in [0, ZERO_SHOT_CEILING]: increasing in both signals, conservative at the top."""
    semantic = min(1.0, max(0.0, (similarity - SIM_FLOOR) / (SIM_CEILING - SIM_FLOOR)))
    evidence = 1.0 - (1.0 - semantic) * (1.0 - LEXICAL_STRENGTH * lexical)
    if evidence > ZERO_SHOT_KNEE:
        evidence = ZERO_SHOT_KNEE + (evidence - ZERO_SHOT_KNEE) * (ZERO_SHOT_CEILING - ZERO_SHOT_KNEE) / (
            1.0 - ZERO_SHOT_KNEE
        )
    return round(evidence, 4)


class SimilarityTagger:
    def __init__(self, *, model: str, learned: LearnedModel | None = None) -> None:
        self.model = model
        self.learned = learned

    def tag(self, *, recipe: RecipeText, embedding: np.ndarray, requests: Sequence[CategoryRequest]) -> TaggerOutput:
        """Up to k tags per category, each at or above its threshold, best first."""
        return self._run(recipe=recipe, embedding=embedding, requests=requests, everything=False)

    def score_all(
        self, *, recipe: RecipeText, embedding: np.ndarray, requests: Sequence[CategoryRequest]
    ) -> TaggerOutput:
        """Every active tag of each category with its score, best first: no threshold, no k (the hybrid
        tagger decides what to do with each)."""
        return self._run(recipe=recipe, embedding=embedding, requests=requests, everything=True)

    def _run(
        self, *, recipe: RecipeText, embedding: np.ndarray, requests: Sequence[CategoryRequest], everything: bool
    ) -> TaggerOutput:
        started = time.perf_counter()
        by_category: dict[int, list[TagCandidate]] = defaultdict(list)
        for tag in tags_with_similarity(
            embedding=embedding, category_ids=[r.category.pk for r in requests], model=self.model
        ):
            by_category[tag.category_id].append(tag)
        queried = time.perf_counter()

        learned_slugs = [
            r.category.slug for r in requests if self.learned is not None and r.category.slug in self.learned.categories
        ]
        probabilities: dict[str, np.ndarray] = {}
        explained: Explained | None = None
        if self.learned is not None and learned_slugs:
            probabilities, explained = self.learned.probabilities_explained(
                embeddings=embedding[None, :], texts=[recipe], category_slugs=learned_slugs
            )
        learned_at = time.perf_counter()

        fields = recipe.lexical_fields()
        output = TaggerOutput()
        if probabilities and self.learned is not None:
            thresholds = {slug: self.learned.categories[slug].threshold for slug in probabilities}
            output.uncertainty_margin = round(float(decision_margins(probabilities, thresholds)[0]), 4)
        for request in requests:
            candidates = by_category.get(request.category.pk, [])
            if request.category.slug in probabilities:
                assert explained is not None
                scored = self._learned(
                    request,
                    candidates,
                    probabilities[request.category.slug][0],
                    explained,
                    fields,
                    everything=everything,
                )
            else:
                scored = self._zero_shot(request, candidates, fields, everything=everything)
            scored.sort(key=lambda s: (-s.score, s.slug))
            output.tags[request.category.pk] = scored if everything else scored[: request.k]
        output.timings_ms = {
            "query_ms": round((queried - started) * 1000, 2),
            "learned_ms": round((learned_at - queried) * 1000, 2),
            "score_ms": round((time.perf_counter() - learned_at) * 1000, 2),
        }
        return output

    def _zero_shot(
        self,
        request: CategoryRequest,
        candidates: list[TagCandidate],
        fields: dict[str, str],
        *,
        everything: bool = False,
    ) -> list[ScoredTag]:
        if not candidates:
            return []
        best = max(tag.similarity for tag in candidates)
        scored = []
        for tag in candidates:
            lexical = lexical_evidence(tag.name, tag.synonyms, fields)
            score = calibrated_score(similarity=tag.similarity, lexical=lexical)
            if not everything:
                if lexical == 0.0 and tag.similarity < best - RELATIVE_MARGIN:
                    continue
                if score < request.threshold or score <= 0.0:
                    continue
            evidence = {
                "decided_by": "zero_shot",
                "matched": lexical_matches(tag.name, tag.synonyms, fields) if lexical > 0.0 else {},
                "similarity": round(tag.similarity, 4),
            }
            scored.append(ScoredTag(tag_id=tag.id, slug=tag.slug, name=tag.name, score=score, evidence=evidence))
        return scored

    def _learned(
        self,
        request: CategoryRequest,
        candidates: list[TagCandidate],
        probabilities: np.ndarray,
        explained: Explained,
        fields: dict[str, str],
        *,
        everything: bool = False,
    ) -> list[ScoredTag]:
        assert self.learned is not None
        model = self.learned.categories[request.category.slug]
        threshold = request.override if request.override is not None else model.threshold
        if everything:
            threshold = 0.0
        position = {slug: j for j, slug in enumerate(model.tag_slugs)}
        scored = []
        unseen = []
        for tag in candidates:  # only active tags embedded by the current model
            j = position.get(tag.slug)
            if j is None:
                unseen.append(tag)
            elif probabilities[j] >= threshold:
                evidence = {
                    "decided_by": "learned",
                    "matched": lexical_matches(tag.name, tag.synonyms, fields),
                    "similarity": round(tag.similarity, 4),
                    **self.learned.evidence(explained=explained, category_slug=request.category.slug, row=0, column=j),
                }
                scored.append(
                    ScoredTag(
                        tag_id=tag.id,
                        slug=tag.slug,
                        name=tag.name,
                        score=round(float(probabilities[j]), 4),
                        evidence=evidence,
                    )
                )
        if unseen:
            # Tags added since the fit have no learned weights yet: they compete on zero-shot evidence.
            scored.extend(self._zero_shot(request, unseen, fields, everything=everything))
        return scored
