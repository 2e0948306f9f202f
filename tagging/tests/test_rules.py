"""Ingredient rules applied after every strategy (tagging.services.rules): a tag the recipe's ingredients
contradict is never stored or returned, and the run keeps it as removed by rule, visible in the API and on
the run page."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.client import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from autotagger.embeddings import embeddings_create
from prompts.tests.openai_server import OpenAIServer
from tagging.models import Recipe, RunStatus, TagAssignment, TaggingRun
from tagging.services.config import TaggingConfig
from tagging.services.recipes import recipe_create
from tagging.services.runs import recipe_tag, recipes_predict, recipes_tag_bulk
from tagging.tests.helpers import run_executed, run_queued, slugs_offered, tags_stored
from taxonomy.models import IngredientGroup, Tag

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy")]

TACOS = {
    "title": "Beef tacos",
    "ingredients": ["500 g ground beef", "1 onion", "2 tsp chili powder", "8 corn tortillas", "100 g cheddar"],
    "instructions": "Brown the beef with onion and spices and serve in warm tortillas with cheese.",
}


@pytest.fixture
def tacos() -> Recipe:
    return recipe_create(**TACOS)


def _require(category: str, slug: str, *terms: str) -> None:
    Tag.objects.filter(category__slug=category, slug=slug).update(required_terms=list(terms))


def _cuisines(run: TaggingRun) -> list[str]:
    return [slug for slug, _ in tags_stored(run).get("cuisine", [])]


# --- similarity ---------------------------------------------------------------------------------


def test_it_removes_a_tag_whose_rule_the_recipe_breaks_and_keeps_it_on_the_run(tacos: Recipe) -> None:
    before = recipe_tag(recipe=tacos, config=TaggingConfig(categories=("cuisine",), k=1))
    assert _cuisines(before) == ["mexican"], "the premise: similarity calls beef tacos Mexican"
    _require("cuisine", "mexican", "kimchi")

    run = recipe_tag(recipe=tacos, config=TaggingConfig(categories=("cuisine",), k=1))

    assert "mexican" not in _cuisines(run)
    assert run.removed_by_rule == [
        {
            "category": "cuisine",
            "tag": "mexican",
            "name": "Mexican",
            "score": pytest.approx(tags_stored(before)["cuisine"][0][1]),
            "rule": "requires one of: kimchi",
        }
    ]


def test_a_removed_tag_leaves_its_place_to_the_next_one_above_the_threshold(tacos: Recipe) -> None:
    ranked = _cuisines(recipe_tag(recipe=tacos, config=TaggingConfig(categories=("cuisine",), k=3, threshold=0.0)))
    _require("cuisine", ranked[0], "kimchi")

    run = recipe_tag(recipe=tacos, config=TaggingConfig(categories=("cuisine",), k=2, threshold=0.0))

    assert _cuisines(run) == ranked[1:3]


def test_the_default_rules_keep_meat_recipes_out_of_vegetarian_diets(tacos: Recipe) -> None:
    run = recipe_tag(recipe=tacos, config=TaggingConfig(categories=("diet",), k=20, threshold=0.0))

    diets = {slug for slug, _ in tags_stored(run).get("diet", [])}
    removed = {r["tag"]: r["rule"] for r in run.removed_by_rule}
    assert diets, "the premise: some diet scores above 0"
    assert not diets & {"vegetarian", "vegan", "pescatarian", "eggetarian"}
    assert removed["vegetarian"] == "excluded by Meat ('beef')"


def test_every_kept_tag_says_which_rule_let_it_through(tacos: Recipe) -> None:
    _require("cuisine", "mexican", "kimchi", "tortilla")
    Tag.objects.get(category__slug="cuisine", slug="mexican").excluded_by.set(
        IngredientGroup.objects.filter(name__in=["Fish", "Shellfish"])
    )

    run = recipe_tag(recipe=tacos, config=TaggingConfig(categories=("cuisine", "main_ingredient"), k=3, threshold=0.0))

    rules = {a.tag.slug: a.evidence["rule"] for a in run.assignments.select_related("tag")}
    assert rules["mexican"] == "requires one of: kimchi, tortilla, found 'tortilla'; none of Fish, Shellfish found"
    assert rules["beef"].startswith("requires one of: beef, steak")
    assert rules["beef"].endswith("found 'beef'")
    others = [rule for slug, rule in rules.items() if slug not in ("mexican", "beef")]
    assert others, "the premise: other main ingredients are chosen too"
    assert all(rule.startswith("requires one of: ") and ", found '" in rule for rule in others)


def test_bulk_tagging_gives_evidence_without_a_query_per_tag(tacos: Recipe) -> None:
    recipes = [tacos, recipe_create(title="Paneer tikka", ingredients=["paneer", "yoghurt"], instructions="")]
    recipes_tag_bulk(recipes=recipes, config=TaggingConfig(k=1))  # embeds the recipes once

    with CaptureQueriesContext(connection) as few:
        recipes_tag_bulk(recipes=recipes, config=TaggingConfig(k=1, threshold=0.0))
    with CaptureQueriesContext(connection) as many:
        runs = recipes_tag_bulk(recipes=recipes, config=TaggingConfig(k=10, threshold=0.0))

    assignments = TagAssignment.objects.filter(run__in=runs)
    assert assignments.count() > 4 * len(recipes)
    assert all(a.evidence["decided_by"] == "zero_shot" and a.evidence["rule"] for a in assignments)
    assert len(many.captured_queries) == len(few.captured_queries)


def test_bulk_tagging_applies_the_rules_to_every_recipe(tacos: Recipe) -> None:
    _require("cuisine", "mexican", "kimchi")

    [run] = recipes_tag_bulk(recipes=[tacos], config=TaggingConfig(categories=("cuisine",), k=3, threshold=0.0))

    assert "mexican" not in _cuisines(run)
    assert [r["tag"] for r in TaggingRun.objects.get(pk=run.pk).removed_by_rule] == ["mexican"]


def test_predictions_for_evaluation_apply_the_rules(tacos: Recipe) -> None:
    embedding = embeddings_create(texts=[tacos.text.for_embedding()]).vectors
    before = recipes_predict(texts=[tacos.text], embeddings=embedding, category_slugs=["cuisine"], k=1)
    assert before[0]["cuisine"][0][0] == "mexican"
    _require("cuisine", "mexican", "kimchi")

    [predicted] = recipes_predict(texts=[tacos.text], embeddings=embedding, category_slugs=["cuisine"], k=1)

    assert "mexican" not in [slug for slug, _ in predicted["cuisine"]]


# --- llm and hybrid -----------------------------------------------------------------------------


def test_it_removes_the_contradicting_tags_a_model_picked(
    llm_settings: Any, openai_server: OpenAIServer, tacos: Recipe
) -> None:
    openai_server.reply_json(
        {"diet": ["vegetarian", "gluten-free"], "main_ingredient": ["beef", "paneer"]}, logprobs=False
    )

    run = run_executed(run_queued(tacos, strategy="llm", categories=("diet", "main_ingredient"), k=3))

    assert run.status == RunStatus.SUCCEEDED, run.error
    assert {slug: [tag for tag, _ in tags] for slug, tags in tags_stored(run).items()} == {
        "diet": ["gluten-free"],
        "main_ingredient": ["beef"],
    }
    assert [(r["category"], r["tag"], r["rule"]) for r in run.removed_by_rule] == [
        ("main_ingredient", "paneer", "requires one of: paneer"),
        ("diet", "vegetarian", "excluded by Meat ('beef')"),
    ]


def test_a_run_answered_from_the_cache_shows_the_same_removed_tags(
    llm_settings: Any, openai_server: OpenAIServer, tacos: Recipe
) -> None:
    openai_server.reply_json({"diet": ["vegetarian", "gluten-free"]}, logprobs=False)
    first = run_executed(run_queued(tacos, strategy="llm", categories=("diet",), k=3))

    second = run_executed(run_queued(tacos, strategy="llm", categories=("diet",), k=3))

    assert second.stats["cache_hit"] is True
    assert tags_stored(second) == tags_stored(first)
    assert second.removed_by_rule == first.removed_by_rule != []


def test_hybrid_never_offers_the_model_a_tag_the_ingredients_rule_out(
    llm_settings: Any, openai_server: OpenAIServer, tacos: Recipe
) -> None:
    llm_settings.HYBRID_ACCEPT = 1.01  # nothing is sure: every tag above the floor is for the model to decide
    llm_settings.HYBRID_FLOOR = 0.0
    openai_server.reply_json({"diet": ["vegetarian", "gluten-free"]}, logprobs=False)

    run = run_executed(run_queued(tacos, strategy="hybrid", categories=("diet",), k=5))

    offered = slugs_offered(openai_server.requests[0])["diet"]
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert "gluten-free" in offered
    assert not {"vegetarian", "vegan", "pescatarian", "eggetarian"} & set(offered)
    assert run.stats["ruled_out_of_shortlist"] >= 4
    assert [tag for tag, _ in tags_stored(run)["diet"]] == ["gluten-free"]
    assert run.stats["unknown_dropped"] == 1


def test_hybrid_removes_a_ruled_out_tag_similarity_was_sure_of_without_losing_its_place(
    llm_settings: Any, openai_server: OpenAIServer, tacos: Recipe
) -> None:
    # Similarity (zero-shot here) is sure of everything: no call.
    llm_settings.HYBRID_ACCEPT = llm_settings.HYBRID_ZERO_SHOT_ACCEPT = 0.0
    _require("cuisine", "mexican", "kimchi")

    run = run_executed(run_queued(tacos, strategy="hybrid", categories=("cuisine",), k=2))

    assert openai_server.requests == []
    assert len(tags_stored(run)["cuisine"]) == 2
    assert "mexican" not in _cuisines(run)
    assert [r["tag"] for r in run.removed_by_rule] == ["mexican"]


# --- where people see it --------------------------------------------------------------------------


def test_the_api_returns_the_removed_tags_with_their_rule(token_client: APIClient) -> None:
    _require("cuisine", "mexican", "kimchi")

    response = token_client.post("/api/v1/tag", {**TACOS, "categories": ["cuisine"], "k": 1}, format="json")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert [t["slug"] for c in body["categories"] for t in c["tags"]] != ["mexican"]
    assert body["removed_by_rule"][0]["tag"] == "mexican"
    assert body["removed_by_rule"][0]["rule"] == "requires one of: kimchi"
    assert token_client.get(f"/api/v1/runs/{body['id']}").json()["removed_by_rule"] == body["removed_by_rule"]


def test_the_run_page_shows_the_removed_tags_with_their_rule(staff_browser: Client, tacos: Recipe) -> None:
    run = recipe_tag(recipe=tacos, config=TaggingConfig(categories=("diet",), k=20, threshold=0.0))

    page = staff_browser.get(f"/runs/{run.pk}/").content.decode()

    assert "Removed by rule" in page
    assert "excluded by Meat (&#x27;beef&#x27;)" in page
    assert "diet/vegetarian" in page
