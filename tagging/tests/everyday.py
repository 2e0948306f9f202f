"""Everyday recipes with the tags anyone would give them, and how to measure a strategy on them: tags that
contradict a recipe's own ingredients (none may be stored) and how many of the obvious tags it finds.

Shared by the tests (test_everyday_recipes.py) and the benchmark (bench/contradictions.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tagging.models import TagAssignment, TaggingRun
from tagging.services.rules import tags_ruled_out

EVERYDAY_RECIPES = Path(__file__).resolve().parent / "data" / "everyday_recipes.json"

# What a careless model adds to its answers: the diets, allergen-free tags, main ingredients and occasions
# the issue saw contradicting recipes (chicken tikka masala -> paneer, eggetarian; beef tacos -> vegetarian).
CARELESS_TAGS = {
    "diet": ["vegetarian", "vegan", "pescatarian", "eggetarian", "gluten-free", "dairy-free", "nut-free", "halal"],
    "main_ingredient": ["paneer", "tofu", "seafood"],
    "occasion": ["passover", "ramadan"],
}


def everyday_recipes() -> list[dict[str, Any]]:
    """[{"title", "ingredients", "instructions", "expected": {category slug: [tag slugs]}}]."""
    return list(json.loads(EVERYDAY_RECIPES.read_text()))


def _offered(request: dict[str, Any]) -> dict[str, list[str]]:
    schema = request["response_format"]["json_schema"]["schema"]
    return {slug: spec["items"]["properties"]["tag"]["enum"] for slug, spec in schema["properties"].items()}


def careless_model(recipes: Sequence[dict[str, Any]]) -> Callable[[dict[str, Any]], dict[str, list[str]]]:
    """A model (for OpenAIServer.reply_computed) that answers every category with the recipe's obvious tags
    it was offered, then whatever CARELESS_TAGS it was offered, whatever the ingredients say."""
    by_title = {r["title"]: r for r in recipes}

    def respond(request: dict[str, Any]) -> dict[str, list[str]]:
        prompt = next(m["content"] for m in request["messages"] if m["role"] == "user")
        recipe = by_title[re.findall(r"^Title: (.*)$", prompt, flags=re.MULTILINE)[-1]]
        return {
            category: [
                slug
                for slug in dict.fromkeys([*recipe["expected"].get(category, []), *CARELESS_TAGS.get(category, [])])
                if slug in allowed
            ]
            for category, allowed in _offered(request).items()
        }

    return respond


@dataclass
class Measured:
    runs: int = 0
    tags: int = 0
    contradictions: list[str] = field(default_factory=list)  # "title: category/tag (rule)" stored anyway
    removed_by_rule: int = 0  # what the rules took out of the strategy's answers
    obvious: int = 0
    obvious_found: int = 0
    missed: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.obvious_found / self.obvious if self.obvious else 1.0


def runs_measure(*, runs: Sequence[TaggingRun], recipes: Sequence[dict[str, Any]]) -> Measured:
    """Contradictions among the tags `runs` stored (checked against the rules as they are now) and recall
    of the recipes' obvious tags; `runs[i]` tagged `recipes[i]`."""
    measured = Measured()
    for run, recipe in zip(runs, recipes, strict=True):
        assert run.status == "succeeded", run.error
        assignments = list(TagAssignment.objects.filter(run=run).select_related("tag__category").order_by("id"))
        stored = {(a.tag.category.slug, a.tag.slug) for a in assignments}
        broken = tags_ruled_out(recipe=run.recipe.text, tag_ids=[a.tag_id for a in assignments])
        measured.runs += 1
        measured.tags += len(assignments)
        measured.removed_by_rule += len(run.removed_by_rule)
        measured.contradictions += [
            f"{recipe['title']}: {a.tag.category.slug}/{a.tag.slug} ({broken[a.tag_id]})"
            for a in assignments
            if a.tag_id in broken
        ]
        for category, slugs in recipe["expected"].items():
            for slug in slugs:
                measured.obvious += 1
                if (category, slug) in stored:
                    measured.obvious_found += 1
                else:
                    measured.missed.append(f"{recipe['title']}: {category}/{slug}")
    return measured
