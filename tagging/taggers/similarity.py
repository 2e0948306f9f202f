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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

import numpy as np

from autotagger.recipe_text import RecipeText
from tagging.features import RecipeWords, lexical_words
from tagging.learning import Explained, LearnedModel
from tagging.selectors import TagRow
from tagging.tag_matrix import CategoryTags, tag_matrix_current, unit_rows
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
# Recipes scored together by tag_many: the learned signals of a batch hold (recipes x tags x signals) floats,
# so a long evaluation is scored in slices of this many.
TAG_MANY_BATCH = 256


def calibrated_score(*, similarity: float, lexical: float) -> float:
    """The zero-shot score in [0, ZERO_SHOT_CEILING]: increasing in both signals, conservative at the top."""
    semantic = min(1.0, max(0.0, (similarity - SIM_FLOOR) / (SIM_CEILING - SIM_FLOOR)))
    evidence = 1.0 - (1.0 - semantic) * (1.0 - LEXICAL_STRENGTH * lexical)
    if evidence > ZERO_SHOT_KNEE:
        evidence = ZERO_SHOT_KNEE + (evidence - ZERO_SHOT_KNEE) * (ZERO_SHOT_CEILING - ZERO_SHOT_KNEE) / (
            1.0 - ZERO_SHOT_KNEE
        )
    return round(evidence, 4)


def _evidence_unrounded(similarity: np.ndarray, lexical: np.ndarray) -> np.ndarray:
    """`calibrated_score` before its rounding, for arrays: the same float operations in the same order, so each
    value is the very float the scalar function computes."""
    semantic = np.minimum(1.0, np.maximum(0.0, (similarity - SIM_FLOOR) / (SIM_CEILING - SIM_FLOOR)))
    evidence = 1.0 - (1.0 - semantic) * (1.0 - LEXICAL_STRENGTH * lexical)
    pressed = ZERO_SHOT_KNEE + (evidence - ZERO_SHOT_KNEE) * (ZERO_SHOT_CEILING - ZERO_SHOT_KNEE) / (
        1.0 - ZERO_SHOT_KNEE
    )
    return np.where(evidence > ZERO_SHOT_KNEE, pressed, evidence)


def calibrated_scores(*, similarities: np.ndarray, lexical: np.ndarray) -> list[float]:
    """`calibrated_score` of each pair (float64 arrays of one shape, flattened), equal to it value for value."""
    # Python's round on each float: numpy's rounds by scaling, which can differ in the last place.
    return [round(value, 4) for value in _evidence_unrounded(similarities, lexical).ravel().tolist()]


class SimilarityTagger:
    """Scores a zero-shot category's tags with one product against the cached tag matrix (tagging.tag_matrix), a
    learned category's with the learned model's signals for all its tags at once (tagging.learning: its own
    product, so the tag matrix is read only for the tags added since the fit and those returned), and lexical
    evidence for the tags whose words the recipe contains (tagging.features.LexicalIndex). Only the tags that
    pass the threshold (or, for `score_all`, every tag) are turned into ScoredTags with their evidence.
    `tag_many` does the same for many recipes with one product per category, one neighbour search and one
    text-model pass."""

    def __init__(self, *, model: str, learned: LearnedModel | None = None) -> None:
        self.model = model
        self.learned = learned

    def tag(self, *, recipe: RecipeText, embedding: np.ndarray, requests: Sequence[CategoryRequest]) -> TaggerOutput:
        """Up to k tags per category, each at or above its threshold, best first."""
        return self._run(recipes=[recipe], embeddings=embedding[None, :], requests=requests, everything=False)[0]

    def tag_many(
        self, *, recipes: Sequence[RecipeText], embeddings: np.ndarray, requests: Sequence[CategoryRequest]
    ) -> list[TaggerOutput]:
        """`tag` of each recipe (row i of `embeddings` is recipe i's vector), computed for all of them at once.
        Each output's timings are its share of the batch's."""
        outputs: list[TaggerOutput] = []
        for start in range(0, len(recipes), TAG_MANY_BATCH):
            outputs.extend(
                self._run(
                    recipes=recipes[start : start + TAG_MANY_BATCH],
                    embeddings=np.asarray(embeddings[start : start + TAG_MANY_BATCH]),
                    requests=requests,
                    everything=False,
                )
            )
        return outputs

    def score_all(
        self, *, recipe: RecipeText, embedding: np.ndarray, requests: Sequence[CategoryRequest]
    ) -> TaggerOutput:
        """Every active tag of each category with its score, best first: no threshold, no k (the hybrid
        tagger decides what to do with each)."""
        return self._run(recipes=[recipe], embeddings=embedding[None, :], requests=requests, everything=True)[0]

    def _run(
        self,
        *,
        recipes: Sequence[RecipeText],
        embeddings: np.ndarray,
        requests: Sequence[CategoryRequest],
        everything: bool,
    ) -> list[TaggerOutput]:
        started = time.perf_counter()
        matrix = tag_matrix_current(model=self.model)
        learned_slugs = [
            r.category.slug for r in requests if self.learned is not None and r.category.slug in self.learned.categories
        ]
        # A learned category's model computes its own similarity to every tag; the tag matrix is read there only
        # for the few tags that need its own (those added since the fit, those returned), row by row.
        units = unit_rows(embeddings)
        similarities = {
            r.category.pk: matrix.category(r.category.pk).similarities(embeddings)
            for r in requests
            if r.category.slug not in learned_slugs
        }  # category id -> (m, T)
        queried = time.perf_counter()

        fields_of = [recipe.lexical_fields() for recipe in recipes]
        words_of = [lexical_words(fields) for fields in fields_of]
        probabilities: dict[str, np.ndarray] = {}
        explained: Explained | None = None
        if self.learned is not None and learned_slugs:
            probabilities, explained = self.learned.probabilities_explained(
                embeddings=np.asarray(embeddings, dtype=np.float32),
                texts=recipes,
                category_slugs=learned_slugs,
                read=list(zip(fields_of, words_of, strict=True)),
            )
        learned_at = time.perf_counter()

        outputs = [TaggerOutput() for _ in recipes]
        if probabilities and self.learned is not None:
            thresholds = {slug: self.learned.categories[slug].threshold for slug in probabilities}
            for output, margin in zip(outputs, decision_margins(probabilities, thresholds), strict=True):
                output.uncertainty_margin = round(float(margin), 4)
        # Zero-shot categories (the common case in bulk) are scored for the whole batch at once.
        batched = {
            request.category.pk: self._zero_shot_many(
                request, matrix.category(request.category.pk), similarities[request.category.pk], fields_of, words_of
            )
            for request in requests
            if not everything and request.category.slug not in probabilities
        }
        # Which of a learned category's tags pass its threshold, for the whole batch at once.
        passing = {
            request.category.slug: self._learned_passing(
                request, matrix.category(request.category.pk), probabilities[request.category.slug], everything
            )
            for request in requests
            if request.category.slug in probabilities
        }
        for i, output in enumerate(outputs):
            fields, words = fields_of[i], words_of[i]
            for request in requests:
                tags = matrix.category(request.category.pk)
                if request.category.pk in batched:
                    output.tags[request.category.pk] = batched[request.category.pk][i]
                    continue
                if request.category.slug in probabilities:
                    assert explained is not None
                    learned_columns, positions = passing[request.category.slug]
                    scored = self._learned(
                        request,
                        tags,
                        units[i],
                        probabilities[request.category.slug][i],
                        explained,
                        i,
                        fields,
                        words,
                        learned_columns,
                        positions[i],
                        everything=everything,
                    )
                else:
                    sims = similarities[request.category.pk][i]
                    scored = self._zero_shot(
                        request, tags, np.arange(len(tags.rows)), sims, fields, words, everything=everything
                    )
                # Evidence (the words matched, the neighbours) is gathered only for the tags returned.
                scored.sort(key=lambda s: (-s.rank, s.slug))
                output.tags[request.category.pk] = [s.build() for s in (scored if everything else scored[: request.k])]
        finished = time.perf_counter()
        share = 1000 / len(recipes)
        for output in outputs:
            output.timings_ms = {
                "query_ms": round((queried - started) * share, 2),
                "learned_ms": round((learned_at - queried) * share, 2),
                "score_ms": round((finished - learned_at) * share, 2),
            }
        return outputs

    def _zero_shot_many(
        self,
        request: CategoryRequest,
        tags: CategoryTags,
        sims: np.ndarray,
        fields_of: Sequence[dict[str, str]],
        words_of: Sequence[RecipeWords],
    ) -> list[list[ScoredTag]]:
        """`_zero_shot` of every tag for each recipe of a batch (`sims`: (m, T)), cut to the request's k and
        built: the arithmetic on the whole batch in numpy, Python only for the tags that pass."""
        m, width = sims.shape
        if width == 0:
            return [[] for _ in range(m)]
        lexical_of = [tags.lexical.evidence(fields, words) for fields, words in zip(fields_of, words_of, strict=True)]
        lexical = np.zeros((m, width))
        for i, found in enumerate(lexical_of):
            if found:
                lexical[i, list(found)] = list(found.values())
        best = sims.max(axis=1, keepdims=True)
        unrounded = _evidence_unrounded(sims, lexical)
        # Rounding moves a score by at most 5e-5: the allowance keeps every tag whose rounded score can pass.
        passing = (unrounded >= request.threshold - 1e-3) & (unrounded > 0.0)
        passing &= (lexical > 0.0) | ~(sims < best - RELATIVE_MARGIN)
        if request.k < width:
            # A tag more than twice the rounding below a recipe's k-th best cannot reach its first k places.
            masked = np.where(passing, unrounded, -np.inf)
            kth = np.partition(masked, width - request.k, axis=1)[:, width - request.k, None]
            passing &= masked >= kth - 1e-4
        rows, columns = np.nonzero(passing)
        candidates: list[list[tuple[float, str, int]]] = [[] for _ in range(m)]
        for i, j, value in zip(rows.tolist(), columns.tolist(), unrounded[rows, columns].tolist(), strict=True):
            score = round(value, 4)
            if score >= request.threshold and score > 0.0:
                candidates[i].append((-score, tags.slugs[j], j))
        results = []
        for i, chosen in enumerate(candidates):
            chosen.sort()
            built = []
            for negative, _, j in chosen[: request.k]:
                tag, weight = tags.rows[j], lexical_of[i].get(j, 0.0)
                evidence = _zero_shot_evidence(tags, j, float(sims[i, j]), weight, fields_of[i], words_of[i])
                built.append(ScoredTag(tag_id=tag.id, slug=tag.slug, name=tag.name, score=-negative, evidence=evidence))
            results.append(built)
        return results

    def _zero_shot(
        self,
        request: CategoryRequest,
        tags: CategoryTags,
        columns: np.ndarray,
        sims: np.ndarray,
        fields: dict[str, str],
        words: RecipeWords,
        *,
        everything: bool = False,
    ) -> list[_Scored]:
        """The zero-shot scores of the category's tags at `columns` (`sims`: the similarity of each of its
        tags; `fields`: the recipe's lexical fields, `words` their lexical_words)."""
        if not len(columns):
            return []
        lexical = tags.lexical.evidence(fields, words)
        candidate_sims = sims[columns]
        best = float(candidate_sims.max())
        if everything:
            chosen = columns
        else:
            # Which tags can reach the threshold, from the evidence before its rounding and its knee (both
            # increasing, so a small allowance below the threshold keeps every tag that can); each is then
            # scored exactly as calibrated_score does, and checked again.
            lexical_all = np.zeros(len(sims))
            lexical_all[list(lexical)] = list(lexical.values())
            lexical_column = lexical_all[columns]
            semantic = np.clip((candidate_sims - SIM_FLOOR) / (SIM_CEILING - SIM_FLOOR), 0.0, 1.0)
            evidence = 1.0 - (1.0 - semantic) * (1.0 - LEXICAL_STRENGTH * lexical_column)
            close = (lexical_column > 0.0) | (candidate_sims >= best - RELATIVE_MARGIN - 1e-9)
            chosen = columns[close & (evidence >= request.threshold - 1e-3) & (evidence > 0.0)]
        scored = []
        for j in chosen:
            tag = tags.rows[int(j)]
            similarity = float(sims[int(j)])
            weight = lexical.get(int(j), 0.0)
            score = calibrated_score(similarity=similarity, lexical=weight)
            if not everything:
                if weight == 0.0 and similarity < best - RELATIVE_MARGIN:
                    continue
                if score < request.threshold or score <= 0.0:
                    continue
            scored.append(
                _Scored(score, tag, partial(_zero_shot_evidence, tags, int(j), similarity, weight, fields, words))
            )
        return scored

    def _learned_passing(
        self, request: CategoryRequest, tags: CategoryTags, probabilities: np.ndarray, everything: bool
    ) -> tuple[np.ndarray, list[list[int]]]:
        """For a learned category: the column of each of its tags in the learned model (-1: added since the fit),
        and for each recipe (row of `probabilities`, (m, the model's tags)) the positions among the category's
        tags of the known ones that reach the threshold, ascending."""
        assert self.learned is not None
        model = self.learned.categories[request.category.slug]
        threshold = request.override if request.override is not None else model.threshold
        if everything:
            threshold = 0.0
        learned_columns = _learned_columns(model.tag_slugs, tags.slugs)
        known = learned_columns >= 0
        tag_probabilities = np.where(known, probabilities[:, np.maximum(learned_columns, 0)], -1.0)
        rows, positions = np.nonzero(known & (tag_probabilities >= threshold))
        per_row: list[list[int]] = [[] for _ in range(len(probabilities))]
        for row, position in zip(rows.tolist(), positions.tolist(), strict=True):
            per_row[row].append(position)
        return learned_columns, per_row

    def _learned(
        self,
        request: CategoryRequest,
        tags: CategoryTags,
        unit: np.ndarray,
        probabilities: np.ndarray,
        explained: Explained,
        row: int,
        fields: dict[str, str],
        words: RecipeWords,
        learned_columns: np.ndarray,
        positions: list[int],
        *,
        everything: bool = False,
    ) -> list[_Scored]:
        """The learned category's tags at `positions` (those that pass, `_learned_passing`) for recipe `row`, and
        the tags added since the fit on zero-shot evidence."""
        scored = []
        for position in positions:
            tag, j = tags.rows[position], int(learned_columns[position])
            evidence = partial(
                self._learned_evidence,
                tags,
                unit,
                position,
                explained,
                request.category.slug,
                row,
                j,
                fields,
                words,
            )
            probability = float(probabilities[j])
            scored.append(_Scored(round(probability, 4), tag, evidence, order=probability))
        unseen = np.flatnonzero(learned_columns < 0)
        if len(unseen):
            # Tags added since the fit have no learned weights yet: they compete on zero-shot evidence, which
            # reads their similarities alone (the other entries are never read).
            sims = np.full(len(tags.rows), np.nan)
            sims[unseen] = tags.similarities_at(unit, unseen)
            scored.extend(self._zero_shot(request, tags, unseen, sims, fields, words, everything=everything))
        return scored

    def _learned_evidence(
        self,
        tags: CategoryTags,
        unit: np.ndarray,
        position: int,
        explained: Explained,
        category_slug: str,
        row: int,
        column: int,
        fields: dict[str, str],
        words: RecipeWords,
    ) -> dict[str, Any]:
        assert self.learned is not None
        return {
            "decided_by": "learned",
            "matched": tags.lexical.matches(position, fields, words),
            "similarity": round(float(tags.similarities_at(unit, np.array([position]))[0]), 4),
            **self.learned.evidence(explained=explained, category_slug=category_slug, row=row, column=column),
        }


def _zero_shot_evidence(
    tags: CategoryTags, column: int, similarity: float, lexical: float, fields: dict[str, str], words: RecipeWords
) -> dict[str, Any]:
    return {
        "decided_by": "zero_shot",
        "matched": tags.lexical.matches(column, fields, words) if lexical > 0.0 else {},
        "similarity": round(similarity, 4),
    }


@dataclass(frozen=True)
class _Scored:
    """A tag's score, and how to gather its evidence should it be returned."""

    score: float
    tag: TagRow
    evidence: Callable[[], dict[str, Any]]
    # What orders the tags: the score before rounding where there is one. Calibration squeezes a learned
    # category's unlikely tags into a few ten-thousandths above PROBABILITY_MIN, so their rounded scores tie,
    # and a tie broken by slug offered a hybrid's shortlist the tail in alphabetical order (basedcooking:
    # gold cuisines ranked 30th-39th behind "american", "asian", ...).
    order: float | None = None

    @property
    def rank(self) -> float:
        return self.score if self.order is None else self.order

    @property
    def slug(self) -> str:
        return self.tag.slug

    def build(self) -> ScoredTag:
        tag = self.tag
        return ScoredTag(tag_id=tag.id, slug=tag.slug, name=tag.name, score=self.score, evidence=self.evidence())


def _learned_columns(learned_slugs: Sequence[str], slugs: Sequence[str]) -> np.ndarray:
    """For each of `slugs`, its position in `learned_slugs`, or -1."""
    return _columns_cached(tuple(learned_slugs), tuple(slugs))


@lru_cache(maxsize=64)
def _columns_cached(learned_slugs: tuple[str, ...], slugs: tuple[str, ...]) -> np.ndarray:
    position = {slug: j for j, slug in enumerate(learned_slugs)}
    columns = np.array([position.get(slug, -1) for slug in slugs], dtype=np.int64)
    columns.setflags(write=False)
    return columns
