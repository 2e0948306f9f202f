"""Learning curves: what the learned tagger gains from each batch of reviews (pure numpy and scikit-learn).

A labelled set is replayed as if reviewers corrected its recipes a batch at a time: a fixed held-out part
(fold HELD_OUT_FOLD of HELD_OUT_FOLDS, by a hash of the recipe id, as the evaluation folds) is never
reviewed and scores the tagger; the rest is the pool reviewers draw from. After each batch the tagger is
refitted on every recipe reviewed so far exactly as the service refits it (tagging.learning.fit on the
gold labels), and its micro-F1 on the held-out part is recorded.

Two orders are compared:
- uncertainty: the next batch is the pool's least sure recipes as the tagger fitted so far scores them, by an
  acquisition (ACQUISITIONS):
  - "margin": the recipe's decision margin (tagging.uncertainty.decision_margins, what the review queue sorts
    by), combined across categories by `aggregate`;
  - "rotation": each category's least sure recipes in turn (the recipes sorted by the best rank of their
    margin within any one category), so that no category whose margins always run small takes every batch;
  - "density": uncertainty (1 - mean margin) times how typical the recipe is of the pool (mean cosine to its
    DENSITY_NEIGHBOURS nearest), so that doubtful outliers teach less than doubtful common dishes;
  - "explore": EXPLORE_SHARE of each batch at random, the rest by margin;
- random: the pool in a random order (several seeds, averaged).
The first batch has no tagger to ask (nothing was learned yet), so both orders start from the same
random batch of the first seed. Beside them, the cross-validated micro-F1 on every label of the set
(folds by a hash of the id, as `manage.py evaluate --folds`) is what all the labels would give.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from feedback.evaluation import metrics
from feedback.evaluation.datasets import fold_of
from tagging import learning
from tagging.uncertainty import (
    DEFAULT_MARGIN_AGGREGATE,
    MARGIN_AGGREGATES,
    MarginAggregate,
    category_margins,
    decision_margins,
)

Progress = Callable[[str], None]

HELD_OUT_FOLDS = 5
HELD_OUT_FOLD = 0
DEFAULT_BATCH = 100
DEFAULT_LIMIT = 1000
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_CV_FOLDS = 5
# Diverse batches: the least sure recipes are taken in order, skipping any this close (cosine) to one
# already in the batch: ten near-copies of one doubtful dish teach what one of them does.
DIVERSITY_SIMILARITY = 0.9
Acquisition = Literal["margin", "rotation", "density", "explore"]
ACQUISITIONS: tuple[Acquisition, ...] = ("margin", "rotation", "density", "explore")
DEFAULT_ACQUISITION: Acquisition = "margin"
# Density: how typical a recipe is of the pool, the mean cosine to this many of its nearest pool recipes.
DENSITY_NEIGHBOURS = 10
# Explore: this share of each batch is drawn at random, so that recipes the tagger is wrongly sure about are
# reviewed too.
EXPLORE_SHARE = 0.2


class ReplayError(ValueError):
    """The labelled set or the options cannot make a learning curve; the message says why."""


@dataclass(frozen=True)
class ReplaySet:
    """Labelled recipes to replay: `ids` (stable, for the held-out fold) aligned with `data`."""

    ids: Sequence[str]
    data: learning.LabelledSet
    categories: Sequence[learning.CategorySpec]


@dataclass(frozen=True)
class CurvePoint:
    reviews: int
    uncertainty_f1: float
    random_f1: float  # mean over the seeds
    random_f1_runs: tuple[float, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "reviews": self.reviews,
            "uncertainty_f1": round(self.uncertainty_f1, 4),
            "random_f1": round(self.random_f1, 4),
            "random_f1_runs": [round(f, 4) for f in self.random_f1_runs],
        }


@dataclass
class LearningCurveResult:
    recipes: int
    held_out: int
    pool: int
    batch: int
    limit: int  # reviews asked for; the last point may be fewer when the pool is smaller
    k: int
    seeds: tuple[int, ...]
    aggregate: MarginAggregate
    diverse: bool
    points: list[CurvePoint]
    cv_f1: float | None  # None: not computed; with cv_folds 0, a value measured beforehand
    cv_folds: int
    seconds: float = 0.0
    categories: list[str] = field(default_factory=list)
    acquisition: Acquisition = DEFAULT_ACQUISITION
    # The ids of the recipes reviewed in uncertainty order, in that order (not stored).
    uncertainty_reviewed: list[str] = field(default_factory=list, repr=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "recipes": self.recipes,
            "held_out": self.held_out,
            "pool": self.pool,
            "batch": self.batch,
            "limit": self.limit,
            "k": self.k,
            "seeds": list(self.seeds),
            "aggregate": self.aggregate,
            "acquisition": self.acquisition,
            "diverse": self.diverse,
            "cv_folds": self.cv_folds,
            "cv_f1": None if self.cv_f1 is None else round(self.cv_f1, 4),
            "categories": self.categories,
            "seconds": round(self.seconds, 1),
            "points": [p.as_json() for p in self.points],
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> LearningCurveResult:
        """A stored curve (`as_json`), read back: its numbers as rounded when stored."""
        return cls(
            recipes=value["recipes"],
            held_out=value["held_out"],
            pool=value["pool"],
            batch=value["batch"],
            limit=value["limit"],
            k=value["k"],
            seeds=tuple(value["seeds"]),
            aggregate=value["aggregate"],
            diverse=value["diverse"],
            points=[
                CurvePoint(
                    reviews=p["reviews"],
                    uncertainty_f1=p["uncertainty_f1"],
                    random_f1=p["random_f1"],
                    random_f1_runs=tuple(p["random_f1_runs"]),
                )
                for p in value["points"]
            ],
            cv_f1=value["cv_f1"],
            cv_folds=value["cv_folds"],
            seconds=value.get("seconds", 0.0),
            categories=list(value.get("categories", [])),
            # Curves stored before acquisitions were named all ordered by the margin.
            acquisition=value.get("acquisition", DEFAULT_ACQUISITION),
        )


def _subset(data: learning.LabelledSet, rows: Sequence[int]) -> learning.LabelledSet:
    rows = list(rows)
    return learning.LabelledSet(
        embeddings=data.embeddings[rows], texts=[data.texts[i] for i in rows], labels=[data.labels[i] for i in rows]
    )


class _Replayer:
    def __init__(
        self,
        replay_set: ReplaySet,
        *,
        k: int,
        floors: dict[str, float | None],
        aggregate: MarginAggregate,
        diverse: bool,
        acquisition: Acquisition = DEFAULT_ACQUISITION,
        pool: Sequence[int] = (),
    ) -> None:
        self.set = replay_set
        self.k = k
        self.floors = floors
        self.aggregate = aggregate
        self.diverse = diverse
        self.acquisition = acquisition
        self.density = pool_density(replay_set.data.embeddings, pool) if acquisition == "density" else None
        self.slugs = [c.slug for c in replay_set.categories]
        self.taxonomy = {c.slug: {t.slug for t in c.tags} for c in replay_set.categories}

    def fit(self, rows: Sequence[int]) -> learning.LearnedModel:
        # In the set's order, as the service reads gold-labelled recipes (by id): the fit's inner folds follow
        # row order, and the order reviews came in must not change what the same recipes teach.
        return learning.fit(
            data=_subset(self.set.data, sorted(rows)),
            categories=self.set.categories,
            k=self.k,
            precision_floors=self.floors,
        )

    def f1(self, model: learning.LearnedModel, rows: Sequence[int]) -> float:
        data = _subset(self.set.data, rows)
        returned = model.predict(embeddings=data.embeddings, texts=data.texts, category_slugs=self.slugs, k=self.k)
        predicted = [{slug: {tag for tag, _ in tags} for slug, tags in result.items()} for result in returned]
        report = metrics.score(gold=data.labels, predicted=predicted, categories=self.slugs, k=self.k)
        return report.overall_f1

    def _unsureness(self, model: learning.LearnedModel, candidates: Sequence[int]) -> np.ndarray:
        """Per candidate, lower is reviewed sooner, by the acquisition."""
        data = _subset(self.set.data, candidates)
        probabilities = model.probabilities(embeddings=data.embeddings, texts=data.texts, category_slugs=self.slugs)
        thresholds = {slug: m.threshold for slug, m in model.categories.items()}
        per_category = category_margins(probabilities, thresholds)
        if len(per_category) != len(candidates) or per_category.shape[1] == 0:
            return np.zeros(len(candidates))  # no category learned yet: every candidate is as unsure
        if self.acquisition == "rotation":
            return rotation_keys(per_category)
        if self.acquisition == "density":
            assert self.density is not None
            return -(1.0 - per_category.mean(axis=1)) * self.density[list(candidates)]
        return decision_margins(probabilities, thresholds, aggregate=self.aggregate)

    def least_sure(self, model: learning.LearnedModel, candidates: Sequence[int], n: int) -> list[int]:
        # Ties (nothing learned yet in any category) keep the candidates' order, which is random.
        order = [candidates[i] for i in np.argsort(self._unsureness(model, candidates), kind="stable")]
        if self.acquisition == "explore":
            # The candidates come in a random order: their head is the random share.
            explored = list(candidates[: round(n * EXPLORE_SHARE)])
            taken = set(explored)
            return explored + [row for row in order if row not in taken][: n - len(explored)]
        if not self.diverse:
            return order[:n]
        chosen: list[int] = []
        for row in order:
            if len(chosen) == n:
                break
            if chosen:
                sims = self.set.data.embeddings[chosen] @ self.set.data.embeddings[row]
                if float(sims.max()) >= DIVERSITY_SIMILARITY:
                    continue
            chosen.append(row)
        # Too few distinct recipes left: the closest copies after all, least sure first.
        chosen.extend(row for row in order if row not in set(chosen))
        return chosen[:n]


def rotation_keys(per_category: np.ndarray) -> np.ndarray:
    """Sort keys (lower first) that take each category's least sure recipe in turn: a recipe's best rank of
    its margin within any one category, ties between categories in column order. Sorting by them is the
    round robin over the categories' own orders (a recipe least sure in two categories counts once)."""
    rows, columns = per_category.shape
    ranks = np.empty_like(per_category)
    for column in range(columns):
        ranks[np.argsort(per_category[:, column], kind="stable"), column] = np.arange(rows)
    best = ranks.min(axis=1)
    first_column = ranks.argmin(axis=1)
    return best * columns + first_column


def pool_density(embeddings: np.ndarray, pool: Sequence[int]) -> np.ndarray:
    """Per row of `embeddings` (0 outside `pool`), the mean cosine to its DENSITY_NEIGHBOURS nearest pool
    recipes (itself excluded); the embeddings are unit vectors."""
    density = np.zeros(len(embeddings))
    rows = np.asarray(pool, dtype=int)
    if len(rows) < 2:
        return density
    neighbours = min(DENSITY_NEIGHBOURS, len(rows) - 1)
    vectors = np.asarray(embeddings[rows], dtype=np.float32)
    for start in range(0, len(rows), 1024):
        sims = vectors[start : start + 1024] @ vectors.T
        sims[np.arange(len(sims)), np.arange(start, start + len(sims))] = -np.inf
        nearest = np.partition(sims, -neighbours, axis=1)[:, -neighbours:]
        density[rows[start : start + len(sims)]] = nearest.mean(axis=1)
    return density


def _sizes(pool: int, batch: int, limit: int) -> list[int]:
    last = min(pool, limit)
    sizes = list(range(batch, last + 1, batch))
    if not sizes or sizes[-1] != last:
        sizes.append(last)
    return sizes


def _seeded_order(ids: Sequence[str], rows: Sequence[int], seed: int) -> list[int]:
    """`rows` in a random order that depends only on the seed and the recipes' ids (not the file order)."""
    return sorted(rows, key=lambda i: hashlib.sha1(f"{seed}:{ids[i]}".encode()).hexdigest())


def _acquisition_name(acquisition: Acquisition, aggregate: MarginAggregate) -> str:
    return f"{aggregate} margin" if acquisition == "margin" else acquisition


def cross_validated_f1(
    replay_set: ReplaySet, *, k: int, folds: int, floors: dict[str, float | None], progress: Progress | None = None
) -> float:
    """Micro-F1 over every recipe, each scored by a tagger fitted on the other folds (by a hash of the id)."""
    say = progress or (lambda message: None)
    replayer = _Replayer(replay_set, k=k, floors=floors, aggregate=DEFAULT_MARGIN_AGGREGATE, diverse=False)
    fold = np.array([fold_of(str(i), folds) for i in replay_set.ids])
    gold: list[dict[str, set[str]]] = []
    predicted: list[dict[str, set[str]]] = []
    for f in range(folds):
        train = [int(i) for i in np.flatnonzero(fold != f)]
        test = [int(i) for i in np.flatnonzero(fold == f)]
        if not test or not train:
            continue
        model = replayer.fit(train)
        data = _subset(replay_set.data, test)
        returned = model.predict(embeddings=data.embeddings, texts=data.texts, category_slugs=replayer.slugs, k=k)
        predicted.extend({slug: {tag for tag, _ in tags} for slug, tags in r.items()} for r in returned)
        gold.extend(data.labels)
        say(f"Cross-validation fold {f + 1}/{folds}: trained on {len(train)}, scored {len(test)}")
    return metrics.score(gold=gold, predicted=predicted, categories=replayer.slugs, k=k).overall_f1


def learning_curve_replay(
    *,
    replay_set: ReplaySet,
    k: int,
    batch: int = DEFAULT_BATCH,
    limit: int = DEFAULT_LIMIT,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    aggregate: MarginAggregate = DEFAULT_MARGIN_AGGREGATE,
    diverse: bool = False,
    cv_folds: int = DEFAULT_CV_FOLDS,
    floors: dict[str, float | None] | None = None,
    progress: Progress | None = None,
    acquisition: Acquisition = DEFAULT_ACQUISITION,
    random_runs: Mapping[int, Sequence[float]] | None = None,
) -> LearningCurveResult:
    """Replay `replay_set` in uncertainty order and in random order (one replay per seed), `batch` recipes
    at a time up to `limit` (or the whole pool when it is smaller), refitting after each batch; score each fit
    on the held-out fold. `cv_folds` 0 skips the cross-validated F1. `random_runs`: the random order's F1 at
    each batch, by seed, measured beforehand with the same set and options (the random order does not depend
    on the acquisition); seeds missing from it are replayed."""
    say = progress or (lambda message: None)
    started = time.perf_counter()
    if batch < 1 or limit < 1:
        raise ReplayError(f"batch and limit must be at least 1, not {batch} and {limit}.")
    if not seeds:
        raise ReplayError("Give at least one seed for the random order.")
    if aggregate not in MARGIN_AGGREGATES:
        raise ReplayError(f"Unknown margin aggregate {aggregate!r}: the choices are {', '.join(MARGIN_AGGREGATES)}.")
    if acquisition not in ACQUISITIONS:
        raise ReplayError(f"Unknown acquisition {acquisition!r}: the choices are {', '.join(ACQUISITIONS)}.")
    if cv_folds == 1 or cv_folds < 0:
        raise ReplayError(f"cv_folds must be 0 (skip) or at least 2, not {cv_folds}.")
    ids = [str(i) for i in replay_set.ids]
    if len(ids) != len(replay_set.data) or len(set(ids)) != len(ids):
        raise ReplayError("Each labelled recipe needs one distinct id.")
    held_out = [i for i, rid in enumerate(ids) if fold_of(rid, HELD_OUT_FOLDS) == HELD_OUT_FOLD]
    pool = [i for i, rid in enumerate(ids) if fold_of(rid, HELD_OUT_FOLDS) != HELD_OUT_FOLD]
    if not held_out or len(pool) < 2:
        raise ReplayError(
            f"{len(ids)} labelled recipes are too few for a learning curve: it needs a held-out part and a pool."
        )
    floors = floors or {}
    replayer = _Replayer(
        replay_set, k=k, floors=floors, aggregate=aggregate, diverse=diverse, acquisition=acquisition, pool=pool
    )
    sizes = _sizes(len(pool), batch, limit)
    say(
        f"{len(ids)} labelled recipes: {len(held_out)} held out, a pool of {len(pool)}; "
        f"reviews after each batch: {', '.join(map(str, sizes))}"
    )

    random_runs_done: list[list[float]] = []
    for seed in seeds:
        known = (random_runs or {}).get(seed)
        if known is not None and len(known) == len(sizes):
            random_runs_done.append([float(f) for f in known])
            say(f"random (seed {seed}): measured beforehand, F1 at {sizes[-1]} reviews {known[-1]:.3f}")
            continue
        order = _seeded_order(ids, pool, seed)
        run = []
        for size in sizes:
            run.append(replayer.f1(replayer.fit(order[:size]), held_out))
            say(f"random (seed {seed}): {size} reviews, F1 {run[-1]:.3f}")
        random_runs_done.append(run)

    first = _seeded_order(ids, pool, seeds[0])
    chosen = first[: sizes[0]]
    uncertainty: list[float] = []
    for number, size in enumerate(sizes):
        model = replayer.fit(chosen)
        uncertainty.append(replayer.f1(model, held_out))
        how = _acquisition_name(acquisition, aggregate) + (", diverse" if diverse else "")
        say(f"uncertainty ({how}): {size} reviews, F1 {uncertainty[-1]:.3f}")
        if number + 1 < len(sizes):
            taken = set(chosen)
            # The candidates in the first seed's random order, so that ties fall at random.
            candidates = [row for row in first if row not in taken]
            chosen = chosen + replayer.least_sure(model, candidates, sizes[number + 1] - size)

    cv_f1 = None
    if cv_folds:
        cv_f1 = cross_validated_f1(replay_set, k=k, folds=cv_folds, floors=floors, progress=progress)
        say(f"cross-validated F1 on all {len(ids)} labelled recipes ({cv_folds} folds): {cv_f1:.3f}")
    points = [
        CurvePoint(
            reviews=size,
            uncertainty_f1=uncertainty[i],
            random_f1=float(np.mean([run[i] for run in random_runs_done])),
            random_f1_runs=tuple(run[i] for run in random_runs_done),
        )
        for i, size in enumerate(sizes)
    ]
    return LearningCurveResult(
        recipes=len(ids),
        held_out=len(held_out),
        pool=len(pool),
        batch=batch,
        limit=limit,
        k=k,
        seeds=tuple(seeds),
        aggregate=aggregate,
        diverse=diverse,
        acquisition=acquisition,
        points=points,
        cv_f1=cv_f1,
        cv_folds=cv_folds,
        seconds=time.perf_counter() - started,
        categories=[c.slug for c in replay_set.categories],
        uncertainty_reviewed=[ids[row] for row in chosen],
    )


@dataclass(frozen=True)
class Target:
    name: str
    met: bool
    detail: str


def learning_curve_targets(curve: LearningCurveResult, *, tolerance: float = 0.02, within: int = 600) -> list[Target]:
    """The issue's targets, read off a curve: F1 rises with feedback; the uncertainty order reaches the random
    order's F1 at the last point with at most `within` reviews (scaled to the curve's length when the pool
    is smaller than 1,000: the same share of it); at the last point, F1 within `tolerance` of the
    cross-validated F1 on all labels."""
    points = curve.points
    first, last = points[0], points[-1]
    rises = last.uncertainty_f1 > first.uncertainty_f1 and last.random_f1 > first.random_f1
    targets = [
        Target(
            "F1 rises with feedback",
            rises,
            f"uncertainty {first.uncertainty_f1:.3f} -> {last.uncertainty_f1:.3f}, "
            f"random {first.random_f1:.3f} -> {last.random_f1:.3f} ({first.reviews} -> {last.reviews} reviews)",
        )
    ]
    budget = within if last.reviews >= DEFAULT_LIMIT else round(last.reviews * within / DEFAULT_LIMIT)
    reached = next((p.reviews for p in points if p.uncertainty_f1 >= last.random_f1), None)
    targets.append(
        Target(
            f"uncertainty order reaches random order's F1 at {last.reviews} with at most {budget} reviews",
            reached is not None and reached <= budget,
            f"random at {last.reviews}: {last.random_f1:.3f}; uncertainty reaches it "
            + (f"at {reached} reviews" if reached is not None else "at no point"),
        )
    )
    if curve.cv_f1 is not None:
        gap = curve.cv_f1 - last.uncertainty_f1
        targets.append(
            Target(
                f"at {last.reviews} reviews F1 within {tolerance} of the cross-validated F1 on all labels",
                gap <= tolerance,
                f"uncertainty {last.uncertainty_f1:.3f}, cross-validated {curve.cv_f1:.3f} (gap {gap:+.3f})",
            )
        )
    return targets


def learning_curve_report(curve: LearningCurveResult, *, name: str) -> list[str]:
    """The curve as printed by the bench and the management command: a table, the CV line, the targets."""
    lines = [
        f"{name}: micro-F1 on {curve.held_out} held-out recipes after each batch of reviews",
        f"uncertainty order: {_acquisition_name(curve.acquisition, curve.aggregate)}"
        + (", diverse batches" if curve.diverse else ""),
        f"{'reviews':>8}  {'uncertainty':>11}  {'random':>7}  random per seed",
    ]
    for point in curve.points:
        runs = " ".join(f"{f:.3f}" for f in point.random_f1_runs)
        lines.append(f"{point.reviews:>8}  {point.uncertainty_f1:>11.3f}  {point.random_f1:>7.3f}  {runs}")
    if curve.cv_f1 is not None:
        how = f"{curve.cv_folds} folds" if curve.cv_folds else "measured beforehand, not in this run"
        lines.append(f"cross-validated F1 on all {curve.recipes} labelled recipes ({how}): {curve.cv_f1:.3f}")
    if curve.pool < curve.limit:
        lines.append(f"The pool holds {curve.pool} recipes, fewer than {curve.limit}: the curve ends there.")
    lines.append("")
    lines.extend(
        f"[{'met' if target.met else 'MISSED'}] {target.name}: {target.detail}"
        for target in learning_curve_targets(curve)
    )
    return lines
