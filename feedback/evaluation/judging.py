"""What an LLM judge's verdicts on an evaluation's predicted tags say: pure arithmetic, no database.

- Judged precision: each predicted tag counts VERDICT_CREDIT of its verdict (relevant 1, partly 0.5, not
  relevant 0); the mean per category and over all judged tags.
- Agreement with gold: Cohen's kappa between the judge's decision (a tag is relevant when the verdict is
  "relevant"; "partly" and "not_relevant" count as not) and whether the tag is among the recipe's gold tags,
  over the judged tags of categories the recipe is labelled in. Kappa is (p_o - p_e) / (1 - p_e), p_o the share
  of tags where both agree and p_e the agreement expected by chance from each side's share of "relevant";
  undefined (None) when p_e is 1 (both sides say the same of every tag) or there is nothing to compare.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prompts.judging import RELEVANT, VERDICT_CREDIT


@dataclass(frozen=True)
class JudgedPrediction:
    category: str
    tag: str
    verdict: str
    in_gold: bool | None  # None: the recipe has no gold labels in this category


def cohen_kappa(pairs: Sequence[tuple[bool, bool]]) -> float | None:
    """Cohen's kappa of two yes/no raters over `pairs` (rater A, rater B); None when undefined."""
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(1 for a, b in pairs if a == b) / n
    a_yes = sum(1 for a, _ in pairs if a) / n
    b_yes = sum(1 for _, b in pairs if b) / n
    expected = a_yes * b_yes + (1 - a_yes) * (1 - b_yes)
    if expected == 1:
        return None
    return (observed - expected) / (1 - expected)


def judge_metrics(judged: Sequence[JudgedPrediction], *, categories: Sequence[str]) -> dict[str, Any]:
    """Judged precision per category (None where nothing was judged) and overall, and kappa with gold."""
    by_category: dict[str, dict[str, Any]] = {}
    for slug in categories:
        rows = [j for j in judged if j.category == slug]
        credit = sum(VERDICT_CREDIT[j.verdict] for j in rows)
        by_category[slug] = {
            "judged": len(rows),
            "judged_precision": round(credit / len(rows), 4) if rows else None,
            "verdicts": {verdict: sum(1 for j in rows if j.verdict == verdict) for verdict in VERDICT_CREDIT},
        }
    scored = [j for j in judged if j.category in by_category]
    pairs = [(j.verdict == RELEVANT, j.in_gold) for j in scored if j.in_gold is not None]
    kappa = cohen_kappa([(a, bool(b)) for a, b in pairs])
    return {
        "judged": len(scored),
        "judged_precision": round(sum(VERDICT_CREDIT[j.verdict] for j in scored) / len(scored), 4) if scored else None,
        "categories": by_category,
        "gold_compared": len(pairs),
        "kappa": round(kappa, 4) + 0.0 if kappa is not None else None,  # + 0.0: never -0.0
    }
