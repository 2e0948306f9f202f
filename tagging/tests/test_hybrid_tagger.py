"""The hybrid strategy: similarity decides what it is sure of, the model only the shortlist it is not."""

from __future__ import annotations

from typing import Any

import pytest

from prompts.tests.openai_server import OpenAIServer
from tagging.models import Recipe, RunStatus
from tagging.services.config import TaggingConfig
from tagging.services.runs import recipe_tag
from tagging.taggers.similarity import ZERO_SHOT_CEILING
from tagging.tests.helpers import (
    active_slugs,
    plan_of,
    run_executed,
    run_queued,
    slugs_offered,
    tags_stored,
    user_prompt,
)
from taxonomy.models import Category

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy_without_rules", "zero_shot_accepted")]


@pytest.fixture
def zero_shot_accepted(settings: Any) -> None:
    """These tests tag zero-shot (nothing learned): let its surest guesses stand in for certainty, as staff
    can with HYBRID_ZERO_SHOT_ACCEPT (by default a guess is never taken without the model)."""
    settings.HYBRID_ZERO_SHOT_ACCEPT = settings.HYBRID_ACCEPT


def test_by_default_a_zero_shot_guess_is_never_taken_without_the_model(carbonara: Recipe, settings: Any) -> None:
    settings.HYBRID_ZERO_SHOT_ACCEPT = 1.01
    plan = plan_of(carbonara, ("cuisine",), k=2)
    cuisine = Category.objects.get(slug="cuisine").pk

    assert plan.accepted[cuisine] == []
    assert "italian" in [t.slug for t in plan.shortlist[cuisine]]


def test_it_offers_the_model_only_the_shortlist(
    llm_settings: Any, openai_server: OpenAIServer, carbonara: Recipe
) -> None:
    categories = ("cuisine", "dish_type", "diet")
    plan = plan_of(carbonara, categories, k=2)
    ids = {c.slug: c.pk for c in Category.objects.filter(slug__in=categories)}
    shortlist = {slug: [t.slug for t in plan.shortlist.get(pk, [])] for slug, pk in ids.items()}
    accepted = {slug: [t.slug for t in plan.accepted[pk]] for slug, pk in ids.items()}
    assert accepted["cuisine"] == ["italian"], "the premise: similarity is sure carbonara is Italian"
    assert shortlist["diet"], "the premise: similarity is unsure about its diet"
    openai_server.reply_json({"dish_type": [shortlist["dish_type"][0]], "diet": [shortlist["diet"][0]]}, logprobs=False)
    openai_server.reply_json({"cuisine": ["italian"]}, logprobs=False)

    hybrid = run_executed(run_queued(carbonara, strategy="hybrid", categories=categories, k=2))
    llm = run_executed(run_queued(carbonara, strategy="llm", categories=categories, k=2))

    assert hybrid.status == RunStatus.SUCCEEDED, hybrid.error
    hybrid_offered, llm_offered = slugs_offered(openai_server.requests[0]), slugs_offered(openai_server.requests[1])
    assert hybrid_offered == {slug: slugs for slug, slugs in shortlist.items() if slugs}
    assert "italian" not in hybrid_offered["cuisine"]
    assert sum(map(len, hybrid_offered.values())) < sum(map(len, llm_offered.values()))
    assert len(user_prompt(openai_server.requests[0])) < len(user_prompt(openai_server.requests[1]))
    assert hybrid.stats["decided_by_similarity"] == sum(map(len, accepted.values()))
    assert hybrid.stats["decided_by_llm"] == 2
    assert hybrid.stats["shortlisted"] == sum(map(len, shortlist.values()))
    assert hybrid.stats["llm_calls"] == 1
    assert hybrid.stats["tags_offered"] == hybrid.stats["shortlisted"]
    stored = {slug: [tag for tag, _ in tags] for slug, tags in tags_stored(hybrid).items()}
    assert stored == {
        "cuisine": accepted["cuisine"],
        "dish_type": [*accepted["dish_type"], shortlist["dish_type"][0]],
        "diet": [shortlist["diet"][0]],
    }
    assert llm.stats["tags_offered"] == sum(len(active_slugs(slug)) for slug in categories)


def test_it_asks_for_no_more_tags_than_the_slots_similarity_left(
    llm_settings: Any, openai_server: OpenAIServer, carbonara: Recipe
) -> None:
    plan = plan_of(carbonara, ("cuisine",), k=2)
    shortlist = [t.slug for t in plan.shortlist[Category.objects.get(slug="cuisine").pk]]
    assert len(shortlist) >= 3
    openai_server.reply_json({"cuisine": shortlist[:3]}, logprobs=False)

    run = run_executed(run_queued(carbonara, strategy="hybrid", categories=("cuisine",), k=2))

    assert "\ncuisine: " in user_prompt(openai_server.requests[0])
    assert "Allowed tags per category, at most 1 each:" in user_prompt(openai_server.requests[0])
    assert [tag for tag, _ in tags_stored(run)["cuisine"]] == ["italian", shortlist[0]]
    assert run.stats["decided_by_llm"] == 1
    assert run.stats["over_k_dropped"] == 2


def test_it_makes_no_request_when_similarity_accepts_everything(
    llm_settings: Any, openai_server: OpenAIServer, carbonara: Recipe
) -> None:
    llm_settings.HYBRID_ACCEPT = llm_settings.HYBRID_ZERO_SHOT_ACCEPT = 0.0
    plan = plan_of(carbonara, ("cuisine", "diet"), k=2)
    expected = {
        slug: [(t.slug, t.score) for t in plan.accepted[Category.objects.get(slug=slug).pk]]
        for slug in ("cuisine", "diet")
    }

    run = run_executed(run_queued(carbonara, strategy="hybrid", categories=("cuisine", "diet"), k=2))

    assert run.status == RunStatus.SUCCEEDED, run.error
    assert openai_server.requests == []
    assert run.stats["llm_calls"] == 0
    assert run.stats["decided_by_similarity"] == 4
    assert run.stats["decided_by_llm"] == 0
    assert run.stats["shortlisted"] == 0
    assert tags_stored(run) == expected
    # A zero-shot guess is never shown as certain: its score stops at the ceiling.
    assert expected["cuisine"][0] == ("italian", ZERO_SHOT_CEILING)


def test_the_run_says_per_category_what_was_accepted_shortlisted_and_what_similarity_alone_returns(
    llm_settings: Any, openai_server: OpenAIServer, carbonara: Recipe
) -> None:
    categories = ("cuisine", "diet")
    plan = plan_of(carbonara, categories, k=2)
    ids = {c.slug: c.pk for c in Category.objects.filter(slug__in=categories)}
    openai_server.reply_json({"cuisine": [], "diet": []}, logprobs=False)
    similarity = recipe_tag(recipe=carbonara, config=TaggingConfig(categories=categories, k=2))

    run = run_executed(run_queued(carbonara, strategy="hybrid", categories=categories, k=2))

    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.stats["accepted"] == {
        slug: [t.slug for t in plan.accepted[pk]] for slug, pk in ids.items() if plan.accepted[pk]
    }
    assert run.stats["accepted"] == {"cuisine": ["italian"]}
    assert run.stats["shortlist"] == {
        slug: [t.slug for t in plan.shortlist[pk]] for slug, pk in ids.items() if pk in plan.shortlist
    }
    assert set(run.stats["shortlist"]) == {"cuisine", "diet"}
    alone = tags_stored(similarity)
    assert run.stats["similarity_alone"] == {slug: [tag for tag, _ in alone.get(slug, [])] for slug in categories}
    assert run.stats["similarity_alone"]["cuisine"][0] == "italian"


def test_every_tag_says_which_path_decided_it_with_what_similarity_saw(
    llm_settings: Any, openai_server: OpenAIServer, carbonara: Recipe
) -> None:
    categories = ("cuisine", "diet")
    plan = plan_of(carbonara, categories, k=2)
    diet = Category.objects.get(slug="diet")
    unsure = plan.shortlist[diet.pk][0]
    assert [t.slug for t in plan.accepted[Category.objects.get(slug="cuisine").pk]] == ["italian"], "the premise"
    openai_server.reply_json({"diet": [{"tag": unsure.slug, "reason": "No meat is named."}]}, logprobs=False)

    run = run_executed(run_queued(carbonara, strategy="hybrid", categories=categories, k=2))

    evidence = {a.tag.slug: a.evidence for a in run.assignments.select_related("tag")}
    assert set(evidence) == {"italian", unsure.slug}
    assert evidence["italian"]["decided_by"] == "zero_shot"
    assert -1.0 <= evidence["italian"]["similarity"] <= 1.0
    assert evidence["italian"]["rule"] == "no rule"
    assert evidence[unsure.slug] == {
        "decided_by": "llm",
        "score_from": "fixed",
        "reason": "No meat is named.",
        "matched": unsure.evidence["matched"],
        "similarity": unsure.evidence["similarity"],
        "rule": "no rule",
    }
