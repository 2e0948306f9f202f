"""Scores of the tags a reply keeps (prompts.rendering.reply_validate): token probabilities only for a freely
decoded reply, else the model's stated confidence (calibrated), else the fixed score; and the calibration."""

from __future__ import annotations

import json
import math

import pytest

from prompts.rendering import LLM_FIXED_SCORE, confidence_calibrated, reply_validate
from prompts.tests.test_rendering import CATEGORIES

REPLY = {
    "cuisine": [
        {"tag": "italian", "reason": "pasta", "confidence": 0.9},
        {"tag": "mexican", "reason": "no", "confidence": 0.2},
    ],
    "diet": [{"tag": "vegan", "reason": "plants"}],
}
TEXT = json.dumps(REPLY)


def tokens_with(logprobs: dict[str, float]) -> list[tuple[str, float]]:
    """Tokens spelling TEXT: each slug one token with its log-probability, the rest certain."""
    tokens: list[tuple[str, float]] = []
    rest = TEXT
    for slug, logprob in logprobs.items():
        before, rest = rest.split(f'"{slug}"', 1)
        tokens += [(before + '"', 0.0), (slug, logprob)]
        rest = '"' + rest
    return [*tokens, (rest, 0.0)]


LOGPROBS = tokens_with({"italian": math.log(0.5), "mexican": math.log(0.25), "vegan": math.log(0.1)})


def test_a_constrained_reply_is_scored_by_its_stated_confidence_not_its_token_probabilities() -> None:
    validated = reply_validate(data=REPLY, categories=CATEGORIES, text=TEXT, token_logprobs=LOGPROBS, constrained=True)

    assert validated.scores == {
        ("cuisine", "italian"): 0.9,
        ("cuisine", "mexican"): 0.2,
        ("diet", "vegan"): LLM_FIXED_SCORE,
    }
    assert validated.score_kinds == {
        ("cuisine", "italian"): "stated",
        ("cuisine", "mexican"): "stated",
        ("diet", "vegan"): "fixed",
    }
    assert validated.confidences == {("cuisine", "italian"): 0.9, ("cuisine", "mexican"): 0.2}


def test_a_freely_decoded_reply_is_scored_by_its_token_probabilities() -> None:
    validated = reply_validate(data=REPLY, categories=CATEGORIES, text=TEXT, token_logprobs=LOGPROBS, constrained=False)

    assert validated.scores == {("cuisine", "italian"): 0.5, ("cuisine", "mexican"): 0.25, ("diet", "vegan"): 0.1}
    assert set(validated.score_kinds.values()) == {"logprob"}


def test_a_freely_decoded_reply_without_logprobs_falls_back_to_the_stated_confidence() -> None:
    validated = reply_validate(data=REPLY, categories=CATEGORIES, text=TEXT, token_logprobs=None, constrained=False)

    assert validated.score_kinds == {
        ("cuisine", "italian"): "stated",
        ("cuisine", "mexican"): "stated",
        ("diet", "vegan"): "fixed",
    }


def test_a_stated_confidence_is_mapped_through_the_calibration() -> None:
    table = [(0.0, 0.0), (1.0, 0.5)]

    validated = reply_validate(data=REPLY, categories=CATEGORIES, calibration=table)

    assert validated.scores[("cuisine", "italian")] == 0.45
    assert validated.scores[("cuisine", "mexican")] == 0.1
    assert validated.confidences[("cuisine", "italian")] == 0.9  # what the model said, before calibration


@pytest.mark.parametrize(
    ("stated", "expected"),
    [(1.7, 1.0), (-3, 0.0), (85, 1.0), (0, 0.0), (1, 1.0)],
)
def test_a_stated_confidence_is_clamped_to_zero_and_one(stated: float, expected: float) -> None:
    reply = {"cuisine": [{"tag": "italian", "reason": "", "confidence": stated}]}

    validated = reply_validate(data=reply, categories=CATEGORIES)

    assert validated.scores == {("cuisine", "italian"): expected}
    assert validated.score_kinds == {("cuisine", "italian"): "stated"}


@pytest.mark.parametrize("stated", ["0.9", True, None, float("nan"), float("inf"), [0.9], {"value": 0.9}])
def test_a_confidence_that_is_not_a_finite_number_is_missing(stated: object) -> None:
    reply = {"cuisine": [{"tag": "italian", "reason": "", "confidence": stated}]}

    validated = reply_validate(data=reply, categories=CATEGORIES)

    assert validated.scores == {("cuisine", "italian"): LLM_FIXED_SCORE}
    assert validated.score_kinds == {("cuisine", "italian"): "fixed"}
    assert validated.confidences == {}


def test_only_kept_tags_get_a_score() -> None:
    reply = {"cuisine": [{"tag": t, "confidence": 0.5} for t in ("italian", "tacos", "mexican", "japanese")]}

    validated = reply_validate(data=reply, categories=CATEGORIES)

    assert set(validated.scores) == set(validated.score_kinds) == {("cuisine", "italian"), ("cuisine", "mexican")}


def test_calibration_without_a_table_is_the_identity() -> None:
    assert confidence_calibrated(value=0.37, table=None) == 0.37
    assert confidence_calibrated(value=0.37, table=[]) == 0.37
    assert confidence_calibrated(value=1.4, table=None) == 1.0


def test_calibration_interpolates_between_sorted_points_and_holds_the_ends() -> None:
    table = [(0.9, 0.6), (0.5, 0.2), (0.7, 0.5)]  # unsorted on purpose

    assert confidence_calibrated(value=0.6, table=table) == pytest.approx(0.35)
    assert confidence_calibrated(value=0.8, table=table) == pytest.approx(0.55)
    assert confidence_calibrated(value=0.7, table=table) == pytest.approx(0.5)
    assert confidence_calibrated(value=0.1, table=table) == pytest.approx(0.2)
    assert confidence_calibrated(value=0.99, table=table) == pytest.approx(0.6)


def test_calibration_averages_points_with_the_same_stated_value() -> None:
    assert confidence_calibrated(value=0.5, table=[(0.5, 0.2), (0.5, 0.4), (1.0, 1.0)]) == pytest.approx(0.3)
