"""An evaluation scored a chunk at a time: the chunks' partial counts, stored as JSON and packed bytes and
added up in any grouping, give the report that scoring every recipe at once gives."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression

from feedback.evaluation import metrics, runner
from feedback.evaluation.confidence import (
    confidence_calibration_fit,
    confidence_calibration_fit_counts,
    stated_histogram,
    stated_merge,
)
from tagging.calibration import expected_calibration_error

CATEGORIES = ["cuisine", "course"]
TAGS = {"cuisine": ["italian", "indian", "thai", "greek"], "course": ["main", "dessert", "starter"]}
TAXONOMY = {slug: set(tags) for slug, tags in TAGS.items()}


def _recipes(n: int, seed: int = 7) -> tuple[list[dict[str, set[str]]], dict[str, list[dict[str, set[str]]]], Any]:
    """`n` recipes' gold labels, the predictions of a tagger and two baselines (some wrong, some tags unknown,
    some over k), and the tagger's scored tags per recipe."""
    rng = random.Random(seed)
    gold = [{slug: set(rng.sample(tags, rng.choice([0, 1, 1, 2]))) for slug, tags in TAGS.items()} for _ in range(n)]
    predictions: dict[str, list[dict[str, set[str]]]] = {"tagger": [], "majority": [], "knn15": []}
    scored: list[dict[str, list[tuple[str, float]]]] = []
    for labels in gold:
        returned: dict[str, list[tuple[str, float]]] = {}
        for slug, tags in TAGS.items():
            chosen = set(labels[slug]) if rng.random() < 0.6 else set(rng.sample(tags, rng.choice([0, 1, 2, 3])))
            if rng.random() < 0.05:
                chosen.add("not-in-the-taxonomy")
            returned[slug] = [(tag, round(rng.random(), 3)) for tag in sorted(chosen)]
        scored.append(returned)
        predictions["tagger"].append({slug: {t for t, _ in tags} for slug, tags in returned.items()})
        predictions["majority"].append({"cuisine": {"italian"}, "course": {"main"}})
        predictions["knn15"].append({slug: set(rng.sample(tags, 1)) for slug, tags in TAGS.items()})
    return gold, predictions, scored


def _pairs(gold: list[dict[str, set[str]]], scored: list[dict[str, list[tuple[str, float]]]]) -> runner.ScorePairs:
    pairs: runner.ScorePairs = {}
    for labels, returned in zip(gold, scored, strict=True):
        for slug, tags in returned.items():
            pairs.setdefault(slug, ([], []))
            pairs[slug][0].extend(score for _, score in tags)
            pairs[slug][1].extend(float(tag in labels[slug]) for tag, _ in tags)
    return pairs


def _score(rows: range, gold: Any, predictions: Any, scored: Any) -> runner.ChunkScores:
    part_gold = [gold[i] for i in rows]
    return runner.chunk_score(
        gold=part_gold,
        predictions={name: [predicted[i] for i in rows] for name, predicted in predictions.items()},
        categories=CATEGORIES,
        k=2,
        taxonomy=TAXONOMY,
        pairs=_pairs(part_gold, [scored[i] for i in rows]),
    )


def _result(scores: runner.ChunkScores, counts: list[np.ndarray]) -> dict[str, Any]:
    return runner.result_from_scores(
        dataset="made-up",
        dataset_sha256="0" * 64,
        strategy="llm",
        k=2,
        scores=scores,
        counts=counts,
        latency_ms={"p50": 1.0, "p95": 2.0},
        config={},
        pairs_population="returned",
        floors={},
    ).as_json()


def test_chunks_scored_apart_and_added_up_give_the_report_of_all_recipes_scored_at_once() -> None:
    gold, predictions, scored = _recipes(503)
    whole = _score(range(503), gold, predictions, scored)
    bounds = [0, 1, 40, 41, 200, 333, 503]  # uneven chunks, one of a single recipe

    total: runner.ChunkScores | None = None
    stored_counts = []
    for start, end in itertools.pairwise(bounds):
        part = _score(range(start, end), gold, predictions, scored)
        # What a chunk row keeps: JSON and packed bytes.
        stored, packed = json.loads(json.dumps(part.as_json())), part.counts_bytes()
        again = runner.ChunkScores.from_json(stored, packed)
        stored_counts.append(again.counts)
        total = again if total is None else total.merge(again)
    assert total is not None

    added_up = _result(total, stored_counts)
    at_once = _result(whole, [whole.counts])
    assert added_up == at_once
    assert added_up["recipes"] == 503
    assert added_up["adherence"]["unknown_tags"] > 0
    assert added_up["adherence"]["over_k"] > 0
    assert set(added_up["comparison"]) == set(CATEGORIES)
    assert added_up["calibration"]["cuisine"]["pairs"] > 500


def test_the_counts_report_what_scoring_every_recipe_at_once_reports() -> None:
    gold, predictions, _ = _recipes(300)

    report = metrics.score(gold=gold, predicted=predictions["tagger"], categories=CATEGORIES, k=2, taxonomy=TAXONOMY)

    # Counted by hand, the way the metrics are defined.
    for slug in CATEGORIES:
        tp = sum(len(p[slug] & g[slug]) for p, g in zip(predictions["tagger"], gold, strict=True))
        returned = sum(len(p[slug]) for p in predictions["tagger"])
        wanted = sum(len(g[slug]) for g in gold)
        assert report.categories[slug].precision == tp / returned
        assert report.categories[slug].recall == tp / wanted
        assert report.categories[slug].support == sum(1 for g in gold if g[slug])


def test_the_bootstrap_fed_in_blocks_of_any_size_gives_the_same_interval() -> None:
    gold, predictions, _ = _recipes(257)
    a = metrics.recipe_counts(gold=gold, predicted=predictions["tagger"], category="cuisine")
    b = metrics.recipe_counts(gold=gold, predicted=predictions["knn15"], category="cuisine")

    at_once = metrics.bootstrap_margin(a, b)
    stream = metrics.BootstrapStream(n=257)
    for start, end in [(0, 1), (1, 100), (100, 101), (101, 257)]:
        stream.add(np.stack([a[start:end], b[start:end]], axis=1))

    assert stream.margin() == at_once
    spread, lower, upper = at_once
    assert spread > 0
    assert lower < upper


def test_the_bootstrap_resamples_every_recipe_the_multinomial_way() -> None:
    # One recipe scored right and one wrong: each resample draws 2 recipes with replacement, so the margin
    # over a predictor that is always wrong is 1 (the right one twice), 0.5 (one of each) or 0 with probabilities
    # 1/4, 1/2, 1/4.
    right = np.array([[1.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    wrong = np.array([[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    stream = metrics.BootstrapStream(n=2, resamples=4000)
    stream.add(np.stack([right, wrong], axis=1))

    f1 = metrics._f1_of_counts(stream.sums[:, 0])
    shares = [float(np.mean(np.isclose(f1, value))) for value in (1.0, 0.5, 0.0)]

    assert np.allclose(shares, [0.25, 0.5, 0.25], atol=0.03)
    assert np.all(stream.sums[:, 0, 2] == 2)  # every resample holds exactly n recipes


def test_stated_confidences_counted_by_value_calibrate_as_the_pairs_themselves() -> None:
    rng = random.Random(3)
    stated = [
        {"cuisine": {tag: rng.choice([0.5, 0.7, 0.9, 0.95]) for tag in rng.sample(TAGS["cuisine"], 2)}}
        for _ in range(400)
    ]
    gold = [{"cuisine": set(rng.sample(TAGS["cuisine"], 1))} for _ in range(400)]
    counts: dict[str, list[float]] = {}
    for start in range(0, 400, 37):
        stated_merge(counts, stated_histogram(stated=stated[start : start + 37], gold=gold[start : start + 37]))

    from_counts = confidence_calibration_fit_counts(counts=counts)
    scores = np.array([c for s in stated for tags in s.values() for c in tags.values()])
    truth = np.array(
        [float(t in g["cuisine"]) for s, g in zip(stated, gold, strict=True) for tags in s.values() for t in tags]
    )
    # The calibration as fitted on every pair, by the library and the calibration error's own function.
    model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(scores, truth)
    grid = np.linspace(0.0, 1.0, 11)
    fitted = np.maximum.accumulate(model.predict(grid))

    assert from_counts["table"] == [[round(float(x), 4), round(float(y), 4)] for x, y in zip(grid, fitted, strict=True)]
    assert from_counts["ece_stated"] == round(expected_calibration_error(scores, truth)[0], 4)
    calibrated = np.interp(scores, grid, fitted)
    assert from_counts["ece_calibrated"] == round(expected_calibration_error(calibrated, truth)[0], 4)
    assert confidence_calibration_fit(scores=scores, truth=truth) == from_counts
    assert from_counts["pairs"] == 800
    assert from_counts["table"] is not None
    assert len(counts) == 4
