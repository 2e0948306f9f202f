"""The evaluation metrics on cases small enough to compute by hand."""

from __future__ import annotations

import pytest

from feedback.evaluation.metrics import score

TAXONOMY = {"cuisine": {"italian", "japanese", "mexican"}, "course": {"main", "dessert"}}

# Four recipes, k = 2.
GOLD = [
    {"cuisine": {"italian"}, "course": {"main"}},
    {"cuisine": {"japanese"}, "course": {"dessert"}},
    {"cuisine": {"mexican", "italian"}},
    {},
]
PREDICTED = [
    {"cuisine": {"italian"}, "course": {"main"}},
    {"cuisine": {"italian", "japanese"}, "course": {"main"}},
    {"cuisine": set(), "course": {"main", "dessert", "starter"}},
    {"cuisine": {"japanese"}},
]


def test_precision_recall_and_f1_are_micro_averaged_over_recipes() -> None:
    report = score(gold=GOLD, predicted=PREDICTED, categories=["cuisine", "course"], k=2, taxonomy=TAXONOMY)

    # cuisine: correct = italian (r1) + japanese (r2) = 2; returned = 1 + 2 + 0 + 1 = 4; gold = 1 + 1 + 2 + 0 = 4.
    # precision = 2/4, recall = 2/4, F1 = 0.5.
    cuisine = report.categories["cuisine"]
    assert (cuisine.true_positives, cuisine.predicted, cuisine.gold) == (2, 4, 4)
    assert cuisine.precision == pytest.approx(0.5)
    assert cuisine.recall == pytest.approx(0.5)
    assert cuisine.f1 == pytest.approx(0.5)
    # course: correct = main (r1) = 1; returned = 1 + 1 + 3 = 5; gold = 1 + 1 = 2.
    # precision = 1/5, recall = 1/2, F1 = 2 * 0.2 * 0.5 / 0.7 = 2/7.
    course = report.categories["course"]
    assert course.precision == pytest.approx(0.2)
    assert course.recall == pytest.approx(0.5)
    assert course.f1 == pytest.approx(2 / 7)
    # Overall: correct 3, returned 9, gold 6 -> precision 1/3, recall 1/2, F1 = (1/3) / (5/6) = 0.4.
    assert report.overall_precision == pytest.approx(1 / 3)
    assert report.overall_recall == pytest.approx(0.5)
    assert report.overall_f1 == pytest.approx(0.4)


def test_macro_f1_averages_the_f1_of_every_tag_seen_in_gold_or_predictions() -> None:
    report = score(gold=GOLD, predicted=PREDICTED, categories=["cuisine"], k=2)

    # italian: tp 1 (r1), fp 1 (r2), fn 1 (r3) -> P 1/2, R 1/2, F1 1/2.
    # japanese: tp 1 (r2), fp 1 (r4) -> P 1/2, R 1, F1 2/3.
    # mexican: fn 1 (r3) -> F1 0.
    # macro-F1 = (1/2 + 2/3 + 0) / 3 = 7/18.
    assert report.categories["cuisine"].macro_f1 == pytest.approx(7 / 18)


def test_coverage_is_the_share_of_recipes_with_gold_tags_that_got_any_tag() -> None:
    report = score(gold=GOLD, predicted=PREDICTED, categories=["cuisine", "course"], k=2)

    # cuisine: r1, r2, r3 have gold tags (support 3); r3 got none -> 2/3. r4 has no gold and does not count.
    assert report.categories["cuisine"].support == 3
    assert report.categories["cuisine"].coverage == pytest.approx(2 / 3)
    # course: r1, r2 have gold tags, both got tags -> 1.
    assert report.categories["course"].support == 2
    assert report.categories["course"].coverage == pytest.approx(1.0)


def test_tags_outside_the_taxonomy_and_answers_over_k_are_counted() -> None:
    report = score(gold=GOLD, predicted=PREDICTED, categories=["cuisine", "course"], k=2, taxonomy=TAXONOMY)

    # r3's course answer has 3 tags (k = 2), one of them ("starter") not in the taxonomy.
    assert report.over_k == 1
    assert report.unknown_tags == 1


def test_unknown_tags_are_not_counted_without_a_taxonomy() -> None:
    report = score(gold=GOLD, predicted=PREDICTED, categories=["course"], k=3)

    assert report.unknown_tags == 0
    assert report.over_k == 0


def test_empty_predictions_score_zero_without_dividing_by_zero() -> None:
    predicted: list[dict[str, set[str]]] = [{} for _ in GOLD]

    report = score(gold=GOLD, predicted=predicted, categories=["cuisine", "course"], k=2, taxonomy=TAXONOMY)

    cuisine = report.categories["cuisine"]
    assert (cuisine.precision, cuisine.recall, cuisine.f1, cuisine.macro_f1, cuisine.coverage) == (0, 0, 0, 0, 0)
    assert cuisine.support == 3
    assert (report.overall_precision, report.overall_recall, report.overall_f1) == (0, 0, 0)
    assert (report.unknown_tags, report.over_k) == (0, 0)


def test_perfect_predictions_score_one_everywhere() -> None:
    report = score(gold=GOLD, predicted=GOLD, categories=["cuisine", "course"], k=2, taxonomy=TAXONOMY)

    for metrics in report.categories.values():
        assert (metrics.precision, metrics.recall, metrics.f1, metrics.macro_f1, metrics.coverage) == (1, 1, 1, 1, 1)
    assert report.overall_f1 == 1


def test_the_json_form_rounds_to_four_places_and_keeps_the_support() -> None:
    report = score(gold=GOLD, predicted=PREDICTED, categories=["cuisine"], k=2)

    assert report.categories["cuisine"].as_dict() == {
        "precision": 0.5,
        "recall": 0.5,
        "f1": 0.5,
        "macro_f1": 0.3889,
        "coverage": 0.6667,
        "support": 3,
    }


def test_gold_and_predictions_must_describe_the_same_recipes() -> None:
    with pytest.raises(ValueError, match="same recipes"):
        score(gold=GOLD, predicted=PREDICTED[:2], categories=["cuisine"], k=2)
