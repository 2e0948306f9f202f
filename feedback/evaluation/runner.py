"""Runs an evaluation: the learned similarity tagger and the reference baselines on the same folds,
scored by the same metrics."""

from __future__ import annotations

import tempfile
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.utils.text import slugify

from feedback.evaluation import metrics
from feedback.evaluation.baselines import BASELINES, Baseline, Split
from feedback.evaluation.datasets import Dataset, DatasetRecipe, DatasetSummary, dataset_batches, fold_of
from tagging import learning
from tagging.calibration import top_k_pairs
from taxonomy.models import Category, Tag

Embed = Callable[[Sequence[str]], np.ndarray]
Progress = Callable[[str], None]
# What the tagger as deployed returns for each recipe: category slug -> [(tag slug, score)].
Predict = Callable[..., list[dict[str, list[tuple[str, float]]]]]
# The database's labelled recipes as the learner reads them (feedback.training.labelled_data).
Labelled = tuple[Sequence[Any], learning.LabelledSet, Sequence[learning.CategorySpec]]
# Category slug -> (scores, 1 where the tag is a gold one) of the tags the tagger scored for a recipe.
ScorePairs = dict[str, tuple[list[float], list[float]]]


@dataclass
class EvaluationResult:
    dataset: str
    dataset_sha256: str
    strategy: str
    k: int
    recipes: int
    categories: list[str]
    report: metrics.Report
    baselines: dict[str, metrics.Report]
    latency_ms: dict[str, float]
    config: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, dict[str, Any]] = field(default_factory=dict)
    comparison: dict[str, dict[str, Any]] = field(default_factory=dict)
    precision_floors: dict[str, float | None] = field(default_factory=dict)
    # What only some strategies have: "llm" (tokens, cost, failures) and "hybrid" (the shortlist's recall).
    extra: dict[str, Any] = field(default_factory=dict)
    # Per recipe of the dataset, in order: the tagger's tags and the gold ones (category slug -> tag slugs). Not
    # stored: what an LLM judge (--judge) reads.
    predicted: list[dict[str, set[str]]] = field(default_factory=list, repr=False)
    gold: list[dict[str, set[str]]] = field(default_factory=list, repr=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "strategy": self.strategy,
            "k": self.k,
            "recipes": self.recipes,
            "overall": {
                "precision": round(self.report.overall_precision, 4),
                "recall": round(self.report.overall_recall, 4),
                "f1": round(self.report.overall_f1, 4),
            },
            "categories": {slug: self.report.categories[slug].as_dict() for slug in self.categories},
            "baselines": {
                name: {
                    slug: {
                        key: value
                        for key, value in report.categories[slug].as_dict().items()
                        if key in ("precision", "recall", "f1")
                    }
                    for slug in self.categories
                }
                for name, report in self.baselines.items()
            },
            "latency_ms": {key: round(value, 2) for key, value in self.latency_ms.items()},
            "adherence": {"unknown_tags": self.report.unknown_tags, "over_k": self.report.over_k},
            "calibration": self.calibration,
            "comparison": self.comparison,
            "precision_floors": self.precision_floors,
            **self.extra,
        }


def category_specs(
    *, vocabulary: dict[str, dict[str, str]], categories: Sequence[str], embed: Embed
) -> list[learning.CategorySpec]:
    """The taxonomy of a dataset: its category names as slugs, each tag embedded by its name."""
    specs = []
    for slug in categories:
        words = vocabulary.get(slug, {})
        tag_slugs = list(words)
        vectors = embed([words[s] for s in tag_slugs]) if tag_slugs else np.zeros((0, 1), dtype=np.float32)
        specs.append(
            learning.CategorySpec(
                slug=slug,
                tags=tuple(
                    learning.TagSpec(slug=s, name=words[s], synonyms=(), embedding=v)
                    for s, v in zip(tag_slugs, vectors, strict=True)
                ),
            )
        )
    return specs


def _split(recipes: Sequence[DatasetRecipe], embeddings: np.ndarray, specs: Sequence[learning.CategorySpec]) -> Split:
    labels = {}
    for spec in specs:
        index = {t.slug: j for j, t in enumerate(spec.tags)}
        matrix = np.zeros((len(recipes), len(spec.tags)), dtype=np.float32)
        for i, recipe in enumerate(recipes):
            for slug in recipe.labels.get(spec.slug, ()):
                if slug in index:
                    matrix[i, index[slug]] = 1.0
        labels[spec.slug] = matrix
    return Split(embeddings=embeddings, texts=[r.text for r in recipes], labels=labels)


def precision_floors(slugs: Sequence[str]) -> dict[str, float | None]:
    """The precision floor staff set on the taxonomy category of each slug (None: none, or no such category)."""
    floors = dict(Category.objects.filter(slug__in=list(slugs)).values_list("slug", "precision_floor"))
    return {slug: floors.get(slug) for slug in slugs}


def _learned_predictions(
    train: Split,
    train_labels: list[dict[str, set[str]]],
    test: Split,
    specs: Sequence[learning.CategorySpec],
    k: int,
    floors: dict[str, float | None],
    pairs: ScorePairs,
) -> tuple[list[dict[str, set[str]]], list[float]]:
    """The tagger's predictions for `test` and its latencies; adds the scores of each recipe's top k tags
    (calibrated probabilities, whether or not above the threshold) to `pairs`."""
    model = learning.fit(
        data=learning.LabelledSet(embeddings=train.embeddings, texts=train.texts, labels=train_labels),
        categories=specs,
        k=k,
        precision_floors=floors,
    )
    slugs = [s.slug for s in specs]
    predictions: list[dict[str, set[str]]] = []
    latencies: list[float] = []
    # One recipe at a time, as the service tags them, so the latency is per recipe.
    for i in range(len(test.texts)):
        started = time.perf_counter()
        probabilities = model.probabilities(
            embeddings=test.embeddings[i : i + 1], texts=test.texts[i : i + 1], category_slugs=slugs
        )
        result = model.choose(probabilities, k=k, rows=1)
        latencies.append((time.perf_counter() - started) * 1000)
        predictions.append({slug: {tag for tag, _ in tags} for slug, tags in result[0].items()})
        for slug, matrix in probabilities.items():
            scores, truth = top_k_pairs(matrix, test.labels[slug][i : i + 1], k)
            pairs.setdefault(slug, ([], []))[0].extend(scores.tolist())
            pairs[slug][1].extend(truth.tolist())
    return predictions, latencies


def evaluate(
    *,
    test: Dataset,
    train: Dataset | None,
    folds: int | None,
    k: int,
    categories: Sequence[str] | None,
    embed: Embed,
    progress: Progress | None = None,
) -> EvaluationResult:
    """With `folds`, cross-validate on `test` (folds by a hash of the id: a fold's recipes never reach
    the tagger that scores them); with `train`, learn from it and score `test`."""
    if (folds is None) == (train is None):
        raise ValueError("give folds or a training dataset, not both")
    say = progress or (lambda message: None)
    vocabulary = {slug: dict(words) for slug, words in test.vocabulary.items()}
    if train is not None:
        for slug, words in train.vocabulary.items():
            vocabulary.setdefault(slug, {}).update(
                {s: n for s, n in words.items() if s not in vocabulary.get(slug, {})}
            )
    slugs = list(categories) if categories else list(vocabulary)
    specs = category_specs(vocabulary=vocabulary, categories=slugs, embed=embed)

    started = time.perf_counter()
    test_embeddings = embed([r.text.for_embedding() for r in test.recipes])
    say(f"Embedded {len(test.recipes)} recipes in {time.perf_counter() - started:.1f}s")
    predictions: dict[str, list[dict[str, set[str]]]] = {"tagger": [{} for _ in test.recipes]}
    predictions.update({b.name: [{} for _ in test.recipes] for b in BASELINES})
    latencies: list[float] = []
    pairs: ScorePairs = {}
    floors = precision_floors(slugs)

    if train is not None:
        train_embeddings = embed([r.text.for_embedding() for r in train.recipes])
        plans = [(list(range(len(train.recipes))), list(range(len(test.recipes))), train.recipes, train_embeddings)]
    else:
        assert folds is not None
        fold = np.array([fold_of(r.id, folds) for r in test.recipes])
        plans = [
            (
                list(np.flatnonzero(fold != f)),
                list(np.flatnonzero(fold == f)),
                test.recipes,
                test_embeddings,
            )
            for f in range(folds)
        ]
    for number, (train_rows, test_rows, source, source_embeddings) in enumerate(plans, start=1):
        train_recipes = [source[i] for i in train_rows]
        train_split = _split(train_recipes, source_embeddings[train_rows], specs)
        test_recipes = [test.recipes[i] for i in test_rows]
        test_split = _split(test_recipes, test_embeddings[test_rows], specs)
        learned, fold_latencies = _learned_predictions(
            train_split, [r.labels for r in train_recipes], test_split, specs, k, floors, pairs
        )
        latencies.extend(fold_latencies)
        for row, prediction in zip(test_rows, learned, strict=True):
            predictions["tagger"][row] = prediction
        for baseline_class in BASELINES:
            baseline = baseline_class()
            baseline.fit(train_split, specs, k)
            for row, prediction in zip(test_rows, baseline.predict(test_split, k), strict=True):
                predictions[baseline_class.name][row] = prediction
        say(f"Fold {number}/{len(plans)}: trained on {len(train_rows)}, scored {len(test_rows)}")

    return _result(
        test=test,
        k=k,
        categories=slugs,
        gold=[r.labels for r in test.recipes],
        predictions=predictions,
        taxonomy={spec.slug: {t.slug for t in spec.tags} for spec in specs},
        latencies=latencies,
        config={"folds": folds, "train": train.name if train else None, "categories": slugs},
        pairs=pairs,
        pairs_population="top_k",
        floors=floors,
    )


def learned_report(*, test: Dataset, folds: int, k: int, embed: Embed) -> metrics.Report:
    """The learned tagger alone, cross-validated as `evaluate` does it (same folds, same fit, same metrics)
    but without the baselines and their tuning: for comparing embedding models on large datasets."""
    slugs = list(test.vocabulary)
    specs = category_specs(vocabulary=test.vocabulary, categories=slugs, embed=embed)
    embeddings = embed([r.text.for_embedding() for r in test.recipes])
    floors: dict[str, float | None] = {slug: None for slug in slugs}
    predicted: list[dict[str, set[str]]] = [{} for _ in test.recipes]
    fold = np.array([fold_of(r.id, folds) for r in test.recipes])
    for f in range(folds):
        train_rows, test_rows = list(np.flatnonzero(fold != f)), list(np.flatnonzero(fold == f))
        train_recipes = [test.recipes[i] for i in train_rows]
        learned, _ = _learned_predictions(
            _split(train_recipes, embeddings[train_rows], specs),
            [r.labels for r in train_recipes],
            _split([test.recipes[i] for i in test_rows], embeddings[test_rows], specs),
            specs,
            k,
            floors,
            {},
        )
        for row, prediction in zip(test_rows, learned, strict=True):
            predicted[row] = prediction
    taxonomy = {spec.slug: {t.slug for t in spec.tags} for spec in specs}
    return metrics.score(
        gold=[r.labels for r in test.recipes], predicted=predicted, categories=slugs, k=k, taxonomy=taxonomy
    )


@dataclass
class ChunkScores:
    """The scores of a run of recipes, kept as what adds up: per predictor ("tagger" first, then the baselines)
    the metrics' counts, the tagger's calibration bins per category, and per recipe the counts the bootstrap
    resamples ((recipes, predictors, categories, 3) correct/returned/gold, in dataset order). Chunks scored
    apart and merged give the report of the whole dataset (`result_from_scores`)."""

    predictors: list[str]
    categories: list[str]
    scores: dict[str, metrics.ScoreTally]
    bins: dict[str, metrics.BinTally]
    recipes: int
    counts: np.ndarray = field(repr=False)

    def merge(self, other: ChunkScores) -> ChunkScores:
        """Add `other`'s counts (not its per-recipe rows, which the bootstrap reads in order on its own); a
        predictor only one side has is dropped (the baselines learn from gold labels, which may come mid-job)."""
        self.predictors = [name for name in self.predictors if name in other.predictors]
        self.scores = {name: self.scores[name].merge(other.scores[name]) for name in self.predictors}
        for slug, bins in other.bins.items():
            self.bins.setdefault(slug, metrics.BinTally()).merge(bins)
        self.recipes += other.recipes
        self.counts = np.zeros((0, len(self.predictors), len(self.categories), 3), dtype=np.int16)
        return self

    def as_json(self) -> dict[str, Any]:
        return {
            "predictors": self.predictors,
            "categories": self.categories,
            "scores": {name: tally.as_json() for name, tally in self.scores.items()},
            "bins": {slug: bins.as_json() for slug, bins in self.bins.items()},
            "recipes": self.recipes,
        }

    def counts_bytes(self) -> bytes:
        return self.counts.astype(np.int16).tobytes()

    @classmethod
    def from_json(cls, data: dict[str, Any], counts: bytes = b"") -> ChunkScores:
        shape = (-1, len(data["predictors"]), len(data["categories"]), 3)
        return cls(
            predictors=list(data["predictors"]),
            categories=list(data["categories"]),
            scores={name: metrics.ScoreTally.from_json(tally) for name, tally in data["scores"].items()},
            bins={slug: metrics.BinTally.from_json(bins) for slug, bins in data["bins"].items()},
            recipes=int(data["recipes"]),
            counts=np.frombuffer(bytes(counts), dtype=np.int16).reshape(shape),
        )


def chunk_score(
    *,
    gold: Sequence[dict[str, set[str]]],
    predictions: dict[str, list[dict[str, set[str]]]],
    categories: list[str],
    k: int,
    taxonomy: dict[str, set[str]],
    pairs: ScorePairs,
) -> ChunkScores:
    """Score the predictions of "tagger" and each baseline for a run of recipes against `gold`; `pairs` are the
    tagger's (score, right) pairs per category, for its calibration."""
    predictors = list(predictions)
    counts = np.zeros((len(gold), len(predictors), len(categories), 3), dtype=np.int16)
    for p, name in enumerate(predictors):
        for c, slug in enumerate(categories):
            counts[:, p, c] = metrics.recipe_counts(gold=gold, predicted=predictions[name], category=slug)
    return ChunkScores(
        predictors=predictors,
        categories=list(categories),
        scores={
            name: metrics.ScoreTally().add(
                gold=gold, predicted=predicted, categories=categories, k=k, taxonomy=taxonomy
            )
            for name, predicted in predictions.items()
        },
        bins={slug: metrics.BinTally().add(*pairs.get(slug, ([], []))) for slug in categories},
        recipes=len(gold),
        counts=counts,
    )


def result_from_scores(
    *,
    dataset: str,
    dataset_sha256: str,
    strategy: str,
    k: int,
    scores: ChunkScores,
    counts: Iterable[np.ndarray],
    latency_ms: dict[str, float],
    config: dict[str, Any],
    pairs_population: str,
    floors: dict[str, float | None],
) -> EvaluationResult:
    """The evaluation's result from merged chunk scores and the chunks' per-recipe counts (`counts`, each
    (recipes, predictors, categories, 3), in dataset order, read once): the tagger's and each baseline's
    report, the tagger's calibration, and its margin over the best baseline per category."""
    categories = scores.categories
    reports = {name: scores.scores[name].report(categories) for name in scores.predictors}
    calibration = {}
    for slug in categories:
        bins = scores.bins.get(slug, metrics.BinTally())
        ece, table = bins.ece()
        calibration[slug] = {
            "ece": round(ece, 4) if bins.pairs else None,  # None: the tagger scored nothing here (not learned)
            "pairs": bins.pairs,
            "population": pairs_population,
            "bins": [
                {
                    "lower": round(lower, 2),
                    "upper": round(upper, 2),
                    "count": count,
                    "mean_score": round(mean_score, 4),
                    "accuracy": round(accuracy, 4),
                }
                for lower, upper, count, mean_score, accuracy in table
            ],
        }
    comparison = {}
    baseline_names = [name for name in scores.predictors if name != "tagger"]
    if baseline_names:
        best = {
            slug: max(baseline_names, key=lambda name: (reports[name].categories[slug].f1, name)) for slug in categories
        }
        # One pass over the per-recipe rows for every category: the tagger's and its best baseline's side by side,
        # under the same resamples, as bootstrap_margin draws them for each category.
        tagger_at = scores.predictors.index("tagger")
        columns = [(tagger_at, scores.predictors.index(best[slug]), c) for c, slug in enumerate(categories)]
        stream = metrics.BootstrapStream(n=scores.recipes, width=2 * len(categories))
        for block in counts:
            picked = [block[:, p, c] for tagger, baseline, c in columns for p in (tagger, baseline)]
            stream.add(np.stack(picked, axis=1))
        for c, slug in enumerate(categories):
            tagger_f1, best_f1 = reports["tagger"].categories[slug].f1, reports[best[slug]].categories[slug].f1
            spread, lower, upper = stream.margin(first=2 * c, second=2 * c + 1)
            comparison[slug] = {
                "best_baseline": best[slug],
                "tagger_f1": round(tagger_f1, 4),
                "baseline_f1": round(best_f1, 4),
                "margin": round(tagger_f1 - best_f1, 4),
                "margin_sd": round(spread, 4),
                "interval_95": [round(lower, 4), round(upper, 4)],
            }
    return EvaluationResult(
        dataset=dataset,
        dataset_sha256=dataset_sha256,
        strategy=strategy,
        k=k,
        recipes=scores.recipes,
        categories=categories,
        report=reports.pop("tagger"),
        baselines=reports,
        latency_ms=latency_ms,
        config=config,
        calibration=calibration,
        comparison=comparison,
        precision_floors={slug: floors.get(slug) for slug in categories},
    )


def _result(
    *,
    test: Dataset,
    k: int,
    categories: list[str],
    gold: list[dict[str, set[str]]],
    predictions: dict[str, list[dict[str, set[str]]]],
    taxonomy: dict[str, set[str]],
    latencies: list[float],
    config: dict[str, Any],
    pairs: ScorePairs,
    pairs_population: str,
    floors: dict[str, float | None],
) -> EvaluationResult:
    """Score the tagger's (`predictions["tagger"]`) and each baseline's predictions against `gold`; the
    calibration of the tagger's scores (`pairs`), and its margin over the best baseline per category. The
    whole dataset as one chunk: the same code as a job that scores it a chunk at a time."""
    scores = chunk_score(gold=gold, predictions=predictions, categories=categories, k=k, taxonomy=taxonomy, pairs=pairs)
    result = result_from_scores(
        dataset=test.name,
        dataset_sha256=test.sha256,
        strategy="similarity",
        k=k,
        scores=scores,
        counts=[scores.counts],
        latency_ms=_percentiles(latencies),
        config=config,
        pairs_population=pairs_population,
        floors=floors,
    )
    result.predicted, result.gold = predictions["tagger"], gold
    return result


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0}
    ordered = np.sort(np.asarray(values))
    return {"p50": float(np.percentile(ordered, 50)), "p95": float(np.percentile(ordered, 95))}


def database_labels(recipe: DatasetRecipe, tags_by_name: dict[str, dict[str, str]]) -> dict[str, set[str]]:
    """The recipe's dataset labels in the database's tag slugs where a tag matches (slug, name or
    synonym); a label no tag matches keeps its own slug, so it counts as missed."""
    labels = {}
    for category, slugs in recipe.labels.items():
        known = tags_by_name.get(category, {})
        labels[category] = {known.get(slug, slug) for slug in slugs}
    return labels


def database_categories(
    *, test: Dataset, categories: Sequence[str] | None, progress: Progress | None = None
) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The dataset categories that are active taxonomy categories (matched by slug), and per category the
    taxonomy's tag slug of every name a dataset label may use (slug, name or synonym)."""
    say = progress or (lambda message: None)
    wanted = list(categories) if categories else list(test.vocabulary)
    present = set(Category.objects.filter(slug__in=wanted, active=True).values_list("slug", flat=True))
    missing = [slug for slug in wanted if slug not in present]
    if missing:
        say(f"Not in the taxonomy, so not scored: {', '.join(missing)}")
    slugs = [slug for slug in wanted if slug in present]
    if not slugs:
        raise ValueError("none of the dataset's categories is an active category of the taxonomy")
    tags_by_name: dict[str, dict[str, str]] = {}
    for tag in Tag.objects.filter(category__slug__in=slugs).select_related("category"):
        names = tags_by_name.setdefault(tag.category.slug, {})
        for word in [*tag.synonyms, tag.name, tag.slug]:
            names[slugify(word) or word] = tag.slug
    return slugs, tags_by_name


def database_gold(test: Dataset, tags_by_name: dict[str, dict[str, str]]) -> list[dict[str, set[str]]]:
    """Each recipe's labels in the taxonomy's tag slugs (`database_labels`)."""
    return [database_labels(r, tags_by_name) for r in test.recipes]


def evaluate_with_database(
    *,
    test: Dataset,
    k: int,
    categories: Sequence[str] | None,
    embed: Embed,
    predict: Predict,
    labelled: Labelled | None,
    progress: Progress | None = None,
) -> EvaluationResult:
    """Tag `test` with the tagger as deployed (the database's taxonomy and what it learned from the gold
    labels); the file's labels are only compared, never learned from. The baselines learn from the
    database's gold labels (`labelled`, None when there are none). `predict` is the tagger as deployed
    (tagging.services.runs.recipes_predict). Dataset categories are matched to taxonomy categories by slug."""
    say = progress or (lambda message: None)
    slugs, tags_by_name = database_categories(test=test, categories=categories, progress=progress)
    started = time.perf_counter()
    embeddings = embed([r.text.for_embedding() for r in test.recipes])
    say(f"Embedded {len(test.recipes)} recipes in {time.perf_counter() - started:.1f}s")
    latencies: list[float] = []
    returned: list[dict[str, list[tuple[str, float]]]] = []
    for recipe, embedding in zip(test.recipes, embeddings, strict=True):
        started = time.perf_counter()
        returned.append(predict(texts=[recipe.text], embeddings=embedding[None, :], category_slugs=slugs, k=k)[0])
        latencies.append((time.perf_counter() - started) * 1000)
    return evaluate_returned(
        test=test,
        k=k,
        slugs=slugs,
        tags_by_name=tags_by_name,
        embeddings=embeddings,
        returned=returned,
        latencies=latencies,
        labelled=labelled,
        strategy="similarity",
        progress=progress,
    )


def baselines_fit(
    *, labelled: Labelled | None, slugs: Sequence[str], k: int, progress: Progress | None = None
) -> list[Baseline] | None:
    """The reference baselines learned from the database's gold labels (`labelled`) for `slugs`; None when
    there are none to learn from."""
    specs = {s.slug: s for s in labelled[2]} if labelled else {}
    if labelled is None or not all(slug in specs for slug in slugs):
        if progress is not None:
            progress("No gold labels in the database: the baselines, which learn from them, are not run")
        return None
    _, data, _ = labelled
    scored_specs = [specs[slug] for slug in slugs]
    train_split = Split(
        embeddings=data.embeddings,
        texts=data.texts,
        labels=learning.TrainingLabels.build(data, scored_specs).matrices,
    )
    fitted = []
    for baseline_class in BASELINES:
        baseline = baseline_class()
        baseline.fit(train_split, scored_specs, k)
        fitted.append(baseline)
    return fitted


def returned_score(
    *,
    recipes: Sequence[DatasetRecipe],
    gold: Sequence[dict[str, set[str]]],
    k: int,
    slugs: list[str],
    tags_by_name: dict[str, dict[str, str]],
    embeddings: np.ndarray,
    returned: Sequence[dict[str, list[tuple[str, float]]]],
    baselines: Sequence[Baseline] | None,
) -> ChunkScores:
    """Score what a strategy as deployed returned for a run of recipes (category slug -> [(tag slug, score)])
    against their labels in the taxonomy's slugs (`gold`, database_gold), beside the fitted `baselines`."""
    tagger: list[dict[str, set[str]]] = []
    # The tagger as deployed returns only the tags above its thresholds: their scores are what is checked.
    pairs: ScorePairs = {}
    for result, labels in zip(returned, gold, strict=True):
        tagger.append({slug: {tag for tag, _ in tags} for slug, tags in result.items()})
        for slug, tags in result.items():
            scored = pairs.setdefault(slug, ([], []))
            scored[0].extend(score for _, score in tags)
            scored[1].extend(float(tag in labels.get(slug, set())) for tag, _ in tags)
    predictions: dict[str, list[dict[str, set[str]]]] = {"tagger": tagger}
    if baselines:
        test_split = Split(embeddings=embeddings, texts=[r.text for r in recipes], labels={})
        for baseline in baselines:
            predictions[baseline.name] = baseline.predict(test_split, k)
    return chunk_score(
        gold=gold,
        predictions=predictions,
        categories=slugs,
        k=k,
        taxonomy={slug: set(tags_by_name.get(slug, {}).values()) for slug in slugs},
        pairs=pairs,
    )


def evaluate_returned(
    *,
    test: Dataset,
    k: int,
    slugs: list[str],
    tags_by_name: dict[str, dict[str, str]],
    embeddings: np.ndarray,
    returned: Sequence[dict[str, list[tuple[str, float]]]],
    latencies: Sequence[float],
    labelled: Labelled | None,
    strategy: str,
    progress: Progress | None = None,
) -> EvaluationResult:
    """Score what a strategy as deployed returned for each recipe of `test` (category slug -> [(tag slug,
    score)]) against the file's labels, beside the baselines learned from the database's gold labels."""
    gold = database_gold(test, tags_by_name)
    scores = returned_score(
        recipes=test.recipes,
        gold=gold,
        k=k,
        slugs=slugs,
        tags_by_name=tags_by_name,
        embeddings=embeddings,
        returned=returned,
        baselines=baselines_fit(labelled=labelled, slugs=slugs, k=k, progress=progress),
    )
    result = result_from_scores(
        dataset=test.name,
        dataset_sha256=test.sha256,
        strategy=strategy,
        k=k,
        scores=scores,
        counts=[scores.counts],
        latency_ms=_percentiles(latencies),
        config={"folds": None, "train": "database", "categories": slugs},
        pairs_population="returned",
        floors=precision_floors(slugs),
    )
    result.predicted = [{slug: {tag for tag, _ in tags} for slug, tags in r.items()} for r in returned]
    result.gold = gold
    return result


def evaluate_with_database_streamed(
    *,
    path: Path,
    summary: DatasetSummary,
    k: int,
    categories: Sequence[str] | None,
    embed: Embed,
    predict: Predict,
    labelled: Labelled | None,
    batch_size: int,
    progress: Progress | None = None,
) -> EvaluationResult:
    """`evaluate_with_database` over a file of any size in bounded memory: the file, already checked
    (`summary`, datasets.dataset_scan), is read `batch_size` recipes at a time to tag and score them; each batch's
    scores are added up (ChunkScores), and the per-recipe counts the bootstrap needs go to a temporary file
    that is read back a block at a time. What grows with the file: the latencies (8 bytes a recipe, for the
    exact percentiles) and the ids seen while checking it. The report is the same as evaluate_with_database's."""
    say = progress or (lambda message: None)
    slugs, tags_by_name = database_categories(test=summary.as_dataset(), categories=categories, progress=progress)
    baselines = baselines_fit(labelled=labelled, slugs=slugs, k=k, progress=progress)
    total: ChunkScores | None = None
    latencies = array("d")
    started = time.perf_counter()
    with tempfile.TemporaryFile() as spill, path.open("rb") as handle:
        for batch in dataset_batches(lines=handle, size=batch_size, where=path.name):
            embeddings = embed([r.text.for_embedding() for r in batch])
            returned: list[dict[str, list[tuple[str, float]]]] = []
            for recipe, embedding in zip(batch, embeddings, strict=True):
                tagged = time.perf_counter()
                returned.append(
                    predict(texts=[recipe.text], embeddings=embedding[None, :], category_slugs=slugs, k=k)[0]
                )
                latencies.append((time.perf_counter() - tagged) * 1000)
            scores = returned_score(
                recipes=batch,
                gold=[database_labels(r, tags_by_name) for r in batch],
                k=k,
                slugs=slugs,
                tags_by_name=tags_by_name,
                embeddings=embeddings,
                returned=returned,
                baselines=baselines,
            )
            spill.write(scores.counts_bytes())
            total = scores if total is None else total.merge(scores)
            say(f"Tagged and scored {len(latencies)} of {summary.recipes} recipes")
        say(f"Tagged {summary.recipes} recipes in {time.perf_counter() - started:.1f}s")
        if total is None:
            raise ValueError(f"{path.name} holds no recipes")
        merged = total
        spill.seek(0)
        row = len(merged.predictors) * len(slugs) * 3 * 2  # int16

        def blocks() -> Iterator[np.ndarray]:
            while block := spill.read(row * batch_size):
                yield np.frombuffer(block, dtype=np.int16).reshape(-1, len(merged.predictors), len(slugs), 3)

        return result_from_scores(
            dataset=summary.name,
            dataset_sha256=summary.sha256,
            strategy="similarity",
            k=k,
            scores=merged,
            counts=blocks(),
            latency_ms=_percentiles(latencies),
            config={"folds": None, "train": "database", "categories": slugs},
            pairs_population="returned",
            floors=precision_floors(slugs),
        )


def embedding_comparison(*, full: dict[str, Any], fast: dict[str, Any]) -> dict[str, Any]:
    """The fast mode's quality loss: per category of both runs' metrics (EvaluationResult.as_json()) and overall,
    the full model's precision, recall and F1, the fast model's, and the F1 delta (fast minus full)."""

    def row(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for key in ("precision", "recall", "f1"):
            values[f"full_{key}"] = round(float(a[key]), 4)
            values[f"fast_{key}"] = round(float(b[key]), 4)
        values["f1_delta"] = round(float(b["f1"]) - float(a["f1"]), 4)
        return values

    categories = {
        slug: {
            "support": full["categories"][slug]["support"],
            **row(full["categories"][slug], fast["categories"][slug]),
        }
        for slug in full["categories"]
        if slug in fast["categories"]
    }
    return {"categories": categories, "overall": row(full["overall"], fast["overall"])}
