"""What hybrid offers the model: accepted only when nearly certain, a shortlist sized by how sure similarity is,
generous where its scores are no probabilities, never a ruled-out tag; and the arithmetic of its recall."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from bench.oracle_server import Answer, TaggingServer, careless_answer, oracle_answer, recipe_key
from tagging.models import Recipe
from tagging.taggers.base import CategoryRequest, ScoredTag, TaggerOutput
from tagging.taggers.hybrid import (
    HybridPlan,
    ShortlistPolicy,
    calibrated_shortlist_size,
    hybrid_plan,
    shortlist_reach,
)
from tagging.tests.helpers import active_slugs, plan_of, run_executed, run_queued, tags_stored
from taxonomy.models import Category, Tag

POLICY = ShortlistPolicy(accept=0.95, miss_share=0.05, floor=0.01, minimum=2, max_per_k=4.0, zero_shot_per_k=5.0)
CUISINE = Category(pk=1, slug="cuisine", name="Cuisine")


def scored(scores: Sequence[float], *, decided_by: str = "learned", first_id: int = 1) -> list[ScoredTag]:
    """Tags t1, t2, ... with these scores, best first, as SimilarityTagger.score_all returns them."""
    tags = [
        ScoredTag(
            tag_id=first_id + i,
            slug=f"t{first_id + i}",
            name=f"T{first_id + i}",
            score=s,
            evidence={"decided_by": decided_by},
        )
        for i, s in enumerate(scores)
    ]
    return sorted(tags, key=lambda t: (-t.score, t.slug))


def plan(
    tags: list[ScoredTag], *, k: int = 3, ruled_out: frozenset[int] = frozenset(), policy: ShortlistPolicy = POLICY
) -> HybridPlan:
    return hybrid_plan(
        scored=TaggerOutput(tags={CUISINE.pk: tags}),
        requests=[CategoryRequest(category=CUISINE, k=k, threshold=0.5)],
        ruled_out=ruled_out,
        policy=policy,
    )


def slugs(tags: Sequence[ScoredTag]) -> list[str]:
    return [t.slug for t in tags]


# --- shortlist recall --------------------------------------------------------------------------------


def test_the_shortlist_reaches_the_gold_tags_accepted_or_offered() -> None:
    reached = shortlist_reach(gold={"a", "b", "c", "d"}, accepted=["a"], shortlisted=["b", "x", "y"])

    assert reached == (2, 4)


def test_a_gold_tag_both_accepted_and_offered_counts_once() -> None:
    assert shortlist_reach(gold=["a", "a", "b"], accepted=["a"], shortlisted=["a", "b"]) == (2, 2)


def test_a_category_without_gold_tags_reaches_nothing_and_costs_no_recall() -> None:
    assert shortlist_reach(gold=set(), accepted=["a"], shortlisted=["b"]) == (0, 0)


# --- accepted without the model ------------------------------------------------------------------------


def test_it_accepts_only_what_is_nearly_certain() -> None:
    result = plan(scored([0.97, 0.94, 0.5, 0.1]))

    assert slugs(result.accepted[CUISINE.pk]) == ["t1"]
    assert "t2" in slugs(result.shortlist[CUISINE.pk])
    assert result.slots[CUISINE.pk] == 2


def test_it_accepts_at_most_k_and_asks_nothing_when_they_fill_the_slots() -> None:
    result = plan(scored([0.99, 0.98, 0.97, 0.96, 0.2]), k=3)

    assert slugs(result.accepted[CUISINE.pk]) == ["t1", "t2", "t3"]
    assert result.slots[CUISINE.pk] == 0
    assert CUISINE.pk not in result.shortlist


# --- how long the shortlist is -------------------------------------------------------------------------


def test_a_confident_category_gets_a_shorter_shortlist_than_an_unsure_one() -> None:
    confident = plan(scored([0.9, 0.06, 0.02, 0.01, 0.005, 0.005, 0.005, 0.005]))
    unsure = plan(scored([0.3, 0.25, 0.2, 0.15, 0.1, 0.08, 0.05, 0.03]))

    assert len(confident.shortlist[CUISINE.pk]) < len(unsure.shortlist[CUISINE.pk])


def test_it_offers_tags_best_first_until_what_is_left_out_is_a_small_share() -> None:
    probabilities = [0.5, 0.2, 0.1, 0.08, 0.05, 0.03, 0.02, 0.01, 0.01]

    result = plan(scored(probabilities), policy=replace(POLICY, max_per_k=10.0))

    offered = len(result.shortlist[CUISINE.pk])
    left_out = sum(probabilities[offered:])
    assert left_out <= POLICY.miss_share * sum(probabilities)
    assert sum(probabilities[offered - 1 :]) > POLICY.miss_share * sum(probabilities), "one fewer would leave out more"
    assert slugs(result.shortlist[CUISINE.pk]) == [f"t{i}" for i in range(1, offered + 1)]


@pytest.mark.parametrize("seed", range(20))
def test_every_shortlist_stops_at_the_first_size_where_the_share_the_floor_or_the_cap_says_so(seed: int) -> None:
    rng = np.random.default_rng(seed)
    probabilities = sorted((rng.dirichlet(np.ones(30) * 0.3) * rng.uniform(0.2, 2.0)).clip(0.005, 0.99), reverse=True)
    slots = int(rng.integers(1, 4))

    size = calibrated_shortlist_size(probabilities, slots=slots, policy=POLICY)

    def enough(n: int) -> bool:
        left_out = sum(probabilities[n:]) <= POLICY.miss_share * sum(probabilities)
        return left_out or probabilities[n] < POLICY.floor

    cap = math.ceil(POLICY.max_per_k * slots)
    assert POLICY.minimum <= size <= cap
    assert size == cap or enough(size)
    assert not any(enough(n) for n in range(POLICY.minimum, size)), "it never stops later than it should"


def test_it_offers_at_least_the_minimum_however_sure_it_is() -> None:
    result = plan(scored([0.9, 0.004, 0.003, 0.002]))

    assert slugs(result.shortlist[CUISINE.pk]) == ["t1", "t2"]


def test_it_never_offers_more_than_the_cap_per_open_slot() -> None:
    flat = scored([0.05] * 40)

    assert len(plan(flat, k=3).shortlist[CUISINE.pk]) == 12
    assert len(plan(flat, k=1).shortlist[CUISINE.pk]) == 4


def test_zero_shot_scores_are_no_probabilities_so_the_shortlist_is_generous() -> None:
    scores = [0.9, 0.06, 0.02, 0.01, 0.005] + [0.004] * 20
    learned = plan(scored(scores, decided_by="learned"))

    guessed = plan(scored(scores, decided_by="zero_shot"))

    assert len(guessed.shortlist[CUISINE.pk]) == 15
    assert len(learned.shortlist[CUISINE.pk]) < len(guessed.shortlist[CUISINE.pk])


def test_tags_added_since_the_fit_are_offered_beside_the_learned_ones() -> None:
    learned = scored([0.9, 0.05, 0.01, 0.005, 0.005])
    new = scored([0.4], decided_by="zero_shot", first_id=100)

    result = plan(sorted(learned + new, key=lambda t: -t.score))

    assert "t100" in slugs(result.shortlist[CUISINE.pk])
    assert slugs(result.shortlist[CUISINE.pk])[:2] == ["t1", "t100"], "best first, whichever kind of score"


# --- ingredient rules ----------------------------------------------------------------------------------


def test_a_ruled_out_tag_is_never_offered_and_takes_no_slot() -> None:
    tags = scored([0.99, 0.6, 0.3, 0.2, 0.1])

    result = plan(tags, ruled_out=frozenset({1, 2}))

    assert slugs(result.ruled_out_accepted[CUISINE.pk]) == ["t1"]
    assert result.accepted[CUISINE.pk] == []
    assert result.slots[CUISINE.pk] == 3
    assert not {"t1", "t2"} & set(slugs(result.shortlist[CUISINE.pk]))
    assert result.ruled_out == 1


# --- settings ------------------------------------------------------------------------------------------


def test_the_policy_comes_from_the_hybrid_settings(settings: Any) -> None:
    settings.HYBRID_ACCEPT = 0.5
    settings.HYBRID_SHORTLIST_MAX_PER_K = 1.0
    tags = scored([0.6, 0.3, 0.2, 0.1, 0.05])

    result = hybrid_plan(
        scored=TaggerOutput(tags={CUISINE.pk: tags}), requests=[CategoryRequest(category=CUISINE, k=3, threshold=0.5)]
    )

    assert slugs(result.accepted[CUISINE.pk]) == ["t1"]
    assert slugs(result.shortlist[CUISINE.pk]) == ["t2", "t3"]


# --- with the benchmark's rule-following models (bench/oracle_server.py), through the service ----------


@pytest.fixture
def rule_model(settings: Any) -> Iterator[Callable[[Answer], TaggingServer]]:
    """Starts a bench server answering with the given rule and makes it the "default" LLM source."""
    servers: list[TaggingServer] = []

    def start(answer: Answer) -> TaggingServer:
        server = TaggingServer(answer=answer, count_tokens=lambda text: len(text.split())).__enter__()
        servers.append(server)
        settings.LLM_BASE_URL, settings.LLM_MODEL, settings.LLM_API_KEY = server.url, "rule-model", "bench"
        settings.LLM_DEFAULT_SOURCE, settings.LLM_MAX_RETRIES = "default", 0
        return server

    yield start
    for server in servers:
        server.__exit__()


@pytest.mark.django_db
@pytest.mark.usefixtures("taxonomy_without_rules")
def test_an_oracle_gets_from_hybrid_the_gold_tags_its_shortlist_reached_and_from_llm_all_of_them(
    rule_model: Callable[[Answer], TaggingServer], carbonara: Recipe, settings: Any
) -> None:
    settings.HYBRID_ZERO_SHOT_PER_K = 3  # a shortlist shorter than the diets, so one gold diet is never offered
    categories = ("cuisine", "dish_type", "diet")
    plan = plan_of(carbonara, categories, k=2)
    diet = Category.objects.get(slug="diet")
    offered = {t.slug for t in plan.shortlist[diet.pk]} | {t.slug for t in plan.accepted[diet.pk]}
    missed = sorted(active_slugs("diet") - offered)[0]
    gold = {"cuisine": {"italian"}, "dish_type": {"pasta"}, "diet": {missed, sorted(offered)[0]}}
    server = rule_model(oracle_answer({recipe_key(carbonara.title, carbonara.ingredients): gold}))

    hybrid = run_executed(run_queued(carbonara, strategy="hybrid", categories=categories, k=2))
    llm = run_executed(run_queued(carbonara, strategy="llm", categories=categories, k=2))

    reached = {
        slug: gold[slug] & (set(hybrid.stats["accepted"].get(slug, [])) | set(hybrid.stats["shortlist"].get(slug, [])))
        for slug in categories
    }
    assert reached["diet"] == {sorted(offered)[0]}, "the premise: one gold diet never reaches the model"
    assert {slug: {tag for tag, _ in tags} for slug, tags in tags_stored(hybrid).items()} == {
        slug: tags for slug, tags in reached.items() if tags
    }
    assert {slug: {tag for tag, _ in tags} for slug, tags in tags_stored(llm).items()} == gold
    assert 0 < hybrid.stats["input_tokens"] < llm.stats["input_tokens"]
    assert server.prompt_tokens == hybrid.stats["input_tokens"] + llm.stats["input_tokens"]


@pytest.mark.django_db
@pytest.mark.usefixtures("taxonomy_without_rules")
def test_a_careless_model_gets_the_first_tag_each_strategy_offers(
    rule_model: Callable[[Answer], TaggingServer], carbonara: Recipe
) -> None:
    categories = ("cuisine", "diet")
    plan = plan_of(carbonara, categories, k=2)
    rule_model(careless_answer)

    hybrid = run_executed(run_queued(carbonara, strategy="hybrid", categories=categories, k=2))
    llm = run_executed(run_queued(carbonara, strategy="llm", categories=categories, k=2))

    first_by_name = {
        slug: Tag.objects.filter(category__slug=slug, active=True).order_by("name", "id").first() for slug in categories
    }
    assert {slug: [tag for tag, _ in tags] for slug, tags in tags_stored(llm).items()} == {
        slug: [tag.slug] for slug, tag in first_by_name.items() if tag is not None
    }
    ids = {c.slug: c.pk for c in Category.objects.filter(slug__in=categories)}
    assert {slug: [tag for tag, _ in tags] for slug, tags in tags_stored(hybrid).items()} == {
        slug: [t.slug for t in plan.accepted[pk]] + [plan.shortlist[pk][0].slug] for slug, pk in ids.items()
    }
