"""The arithmetic of an LLM judge's verdicts (feedback.evaluation.judging): judged precision and Cohen's kappa
with gold, against hand-computed values."""

from __future__ import annotations

import pytest

from feedback.evaluation.judging import JudgedPrediction, cohen_kappa, judge_metrics


def test_perfect_agreement_is_a_kappa_of_1() -> None:
    assert cohen_kappa([(True, True), (False, False), (True, True), (False, False)]) == 1.0


def test_agreement_no_better_than_chance_is_a_kappa_of_0() -> None:
    # Each says yes half the time, independently: p_o = 0.5 = p_e.
    assert cohen_kappa([(True, True), (True, False), (False, True), (False, False)]) == 0.0


def test_a_hand_computed_kappa() -> None:
    # 10 tags: both yes 4, A yes B no 2, A no B yes 1, both no 3. p_o = 0.7; A yes 0.6, B yes 0.5:
    # p_e = 0.6 * 0.5 + 0.4 * 0.5 = 0.5; kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4.
    pairs = [(True, True)] * 4 + [(True, False)] * 2 + [(False, True)] + [(False, False)] * 3

    assert cohen_kappa(pairs) == pytest.approx(0.4)


@pytest.mark.parametrize("pairs", [[], [(True, True), (True, True)]])
def test_kappa_is_undefined_without_pairs_or_when_both_always_say_the_same(pairs: list[tuple[bool, bool]]) -> None:
    assert cohen_kappa(pairs) is None


def test_judged_precision_credits_partly_with_half_per_category_and_overall() -> None:
    judged = [
        JudgedPrediction("cuisine", "italian", "relevant", True),
        JudgedPrediction("cuisine", "french", "not_relevant", False),
        JudgedPrediction("diet", "vegan", "partly", False),
        JudgedPrediction("diet", "keto", "relevant", None),
    ]

    report = judge_metrics(judged, categories=["cuisine", "diet", "course"])

    assert report["categories"]["cuisine"]["judged_precision"] == 0.5
    assert report["categories"]["diet"]["judged_precision"] == 0.75
    assert report["categories"]["diet"]["verdicts"] == {"relevant": 1, "partly": 1, "not_relevant": 0}
    assert report["categories"]["course"] == {
        "judged": 0,
        "judged_precision": None,
        "verdicts": {"relevant": 0, "partly": 0, "not_relevant": 0},
    }
    assert (report["judged"], report["judged_precision"]) == (4, 0.625)
    # Gold known for 3 tags: judge yes/no/no against gold yes/no/no: perfect agreement.
    assert (report["gold_compared"], report["kappa"]) == (3, 1.0)
