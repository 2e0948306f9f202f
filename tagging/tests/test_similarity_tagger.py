"""The similarity tagger's contract, through `recipe_tag`, on every demo recipe."""

from __future__ import annotations

import json
from typing import Any
from unittest.mock import Mock

import numpy as np
import pytest
from django.conf import settings

from conftest import DEMO_RECIPES
from tagging.models import Recipe, RunStatus, TagAssignment, TaggingRun
from tagging.selectors import run_tags_by_category, runs_with_assignments
from tagging.services import recipes as recipe_services
from tagging.services.config import TaggingConfig
from tagging.services.recipes import recipe_create
from tagging.services.runs import recipe_tag
from tagging.taggers.similarity import ZERO_SHOT_KNEE, calibrated_score, calibrated_scores
from tagging.tests.conftest import demo_recipe
from taxonomy.models import Category, Tag

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy_without_rules")]

Scored = tuple[str, float, int]  # (tag slug, score, rank)

DEMO = json.loads(DEMO_RECIPES.read_text())


@pytest.fixture(params=[r["title"] for r in DEMO], ids=[r["external_id"].removeprefix("demo-") for r in DEMO])
def recipe(request: pytest.FixtureRequest, taxonomy: dict[str, Any], demo_recipes: list[dict[str, Any]]) -> Recipe:
    return demo_recipe(demo_recipes, request.param)


def _tags(run: TaggingRun) -> dict[str, list[Scored]]:
    """Every category the run covered (in the order it lists them), with its tags in rank order."""
    assert run.status == RunStatus.SUCCEEDED, run.error
    by_category: dict[str, list[Scored]] = {slug: [] for slug in run.config["category_slugs"]}
    assignments = (
        TagAssignment.objects.filter(run=run)
        .select_related("tag__category")
        .order_by("tag__category__position", "rank", "id")
    )
    for assignment in assignments:
        by_category.setdefault(assignment.tag.category.slug, []).append(
            (assignment.tag.slug, assignment.score, assignment.rank)
        )
    return by_category


def _slugs(tags: list[Scored]) -> list[str]:
    return [slug for slug, _, _ in tags]


def _candidates(recipe: Recipe) -> dict[str, list[Scored]]:
    """Everything the tagger considers relevant at all (no threshold, the largest k), best first.

    Each contract test checks its run against this, so a limit that removes nothing cannot pass unnoticed.
    """
    candidates = _tags(recipe_tag(recipe=recipe, config=TaggingConfig(k=20, threshold=0.0)))
    assert all(len(tags) < 20 for tags in candidates.values()), "k=20 truncated the reference run"
    return candidates


def _best(candidates: list[Scored], *, k: int, threshold: float) -> list[tuple[str, float]]:
    return [(slug, score) for slug, score, _ in candidates if score >= threshold][:k]


def _without_rank(tags: list[Scored]) -> list[tuple[str, float]]:
    return [(slug, score) for slug, score, _ in tags]


# --- How many tags ----------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3])
def test_it_never_returns_more_than_k_tags_per_category(recipe: Recipe, k: int) -> None:
    candidates = _candidates(recipe)

    tags = _tags(recipe_tag(recipe=recipe, config=TaggingConfig(k=k, threshold=0.0)))

    assert list(tags) == list(candidates)
    for slug, returned in tags.items():
        assert len(returned) <= k
        assert _without_rank(returned) == _best(candidates[slug], k=k, threshold=0.0)
    assert any(len(candidates[slug]) > k for slug in candidates), "no category had more than k candidates"


def test_it_returns_at_most_each_categorys_default_max_tags_when_k_is_not_given(recipe: Recipe) -> None:
    categories = {c.slug: c for c in Category.objects.all()}
    candidates = _candidates(recipe)

    tags = _tags(recipe_tag(recipe=recipe, config=TaggingConfig(k=None, threshold=0.0)))

    for slug, returned in tags.items():
        limit = categories[slug].default_max_tags
        assert len(returned) <= limit
        assert _without_rank(returned) == _best(candidates[slug], k=limit, threshold=0.0)


# --- Which tags -------------------------------------------------------------------------------------


def test_it_only_returns_tags_of_the_selected_categories(recipe: Recipe) -> None:
    run = recipe_tag(recipe=recipe, config=TaggingConfig(categories=("cuisine", "diet"), k=3, threshold=0.0))

    tags = _tags(run)

    # _tags adds any category an assignment belongs to, so a stray one would show up here.
    assert list(tags) == ["cuisine", "diet"]
    assert run.config["category_slugs"] == ["cuisine", "diet"]
    assert tags["cuisine"] or tags["diet"], "threshold 0 should leave something in cuisine or diet"


def test_it_never_returns_an_inactive_tag(recipe: Recipe) -> None:
    before = _tags(recipe_tag(recipe=recipe, config=TaggingConfig()))
    returned = {(category, slug) for category, tags in before.items() for slug in _slugs(tags)}
    assert returned, "the default run returned no tag to deactivate"
    for category, slug in returned:
        Tag.objects.filter(category__slug=category, slug=slug).update(active=False)

    after = _tags(recipe_tag(recipe=recipe, config=TaggingConfig()))

    assert not returned & {(category, slug) for category, tags in after.items() for slug in _slugs(tags)}


def test_it_drops_italian_from_the_carbonara_once_italian_is_deactivated(
    taxonomy: dict[str, Any], demo_recipes: list[dict[str, Any]]
) -> None:
    carbonara = demo_recipe(demo_recipes, "Spaghetti Carbonara")
    assert "italian" in _slugs(_tags(recipe_tag(recipe=carbonara, config=TaggingConfig()))["cuisine"])
    Tag.objects.filter(category__slug="cuisine", slug="italian").update(active=False)

    tags = _tags(recipe_tag(recipe=carbonara, config=TaggingConfig()))

    assert "italian" not in _slugs(tags["cuisine"])
    assert "pasta" in _slugs(tags["dish_type"])


# --- Scores and ranks -------------------------------------------------------------------------------


def test_it_orders_tags_by_descending_score_and_ranks_them_from_one(recipe: Recipe) -> None:
    run = recipe_tag(recipe=recipe, config=TaggingConfig(k=5, threshold=0.0))

    tags = _tags(run)

    for returned in tags.values():
        scores = [score for _, score, _ in returned]
        assert scores == sorted(scores, reverse=True)
        assert [rank for _, _, rank in returned] == list(range(1, len(returned) + 1))
    assert sum(len(returned) for returned in tags.values()) >= 5


def test_it_keeps_every_score_between_zero_and_one_and_none_below_the_threshold(recipe: Recipe) -> None:
    candidates = _candidates(recipe)

    tags = _tags(recipe_tag(recipe=recipe, config=TaggingConfig(k=20, threshold=0.6)))

    for slug, returned in tags.items():
        assert all(0.0 <= score <= 1.0 for _, score, _ in candidates[slug])
        assert all(score >= 0.6 for _, score, _ in returned)
        assert _without_rank(returned) == _best(candidates[slug], k=20, threshold=0.6)


def test_it_applies_each_categorys_own_threshold_when_the_request_sets_none(recipe: Recipe) -> None:
    thresholds = {"cuisine": 0.9, "meal_type": 0.3, "course": 0.5, "dish_type": 0.95, "main_ingredient": 0.6}
    for slug, threshold in thresholds.items():
        Category.objects.filter(slug=slug).update(relevance_threshold=threshold)
    Category.objects.filter(slug__in=["diet", "cooking_method", "occasion"]).update(relevance_threshold=None)
    candidates = _candidates(recipe)

    tags = _tags(recipe_tag(recipe=recipe, config=TaggingConfig(k=20)))

    for slug, returned in tags.items():
        # A category without a threshold of its own falls back to TAGGING_DEFAULT_THRESHOLD.
        threshold = thresholds.get(slug, settings.TAGGING_DEFAULT_THRESHOLD)
        expected = _best(candidates[slug], k=20, threshold=threshold)
        assert _without_rank(returned) == expected


def test_it_lets_the_requests_threshold_admit_a_tag_below_the_categorys_own(
    taxonomy: dict[str, Any], demo_recipes: list[dict[str, Any]]
) -> None:
    curry = demo_recipe(demo_recipes, "Vegan Red Lentil Curry with Coconut Milk")
    cuisine = Category.objects.get(slug="cuisine")
    default = _tags(recipe_tag(recipe=curry, config=TaggingConfig(k=3, categories=("cuisine",))))["cuisine"]
    assert "indian" not in _slugs(default)

    lowered = _tags(recipe_tag(recipe=curry, config=TaggingConfig(k=3, categories=("cuisine",), threshold=0.6)))

    indian = next(score for slug, score, _ in lowered["cuisine"] if slug == "indian")
    assert 0.6 <= indian < cuisine.relevance_threshold


def test_it_lets_the_requests_threshold_remove_a_tag_above_the_categorys_own(
    taxonomy: dict[str, Any], demo_recipes: list[dict[str, Any]]
) -> None:
    carbonara = demo_recipe(demo_recipes, "Spaghetti Carbonara")
    default = _tags(recipe_tag(recipe=carbonara, config=TaggingConfig(categories=("dish_type",))))["dish_type"]
    sauce = next(score for slug, score, _ in default if slug == "sauce")
    assert 0.7 <= sauce < 0.75

    raised = _tags(recipe_tag(recipe=carbonara, config=TaggingConfig(categories=("dish_type",), threshold=0.75)))

    assert _slugs(raised["dish_type"]) == ["pasta"]


# --- Nothing relevant -------------------------------------------------------------------------------


def test_it_returns_an_empty_list_for_every_category_when_nothing_reaches_the_threshold(
    taxonomy: dict[str, Any], demo_recipes: list[dict[str, Any]]
) -> None:
    pancakes = demo_recipe(demo_recipes, "Blueberry Pancakes")
    assert max(score for tags in _candidates(pancakes).values() for _, score, _ in tags) < 0.99

    run = recipe_tag(recipe=pancakes, config=TaggingConfig(threshold=0.99))

    assert run.status == RunStatus.SUCCEEDED
    assert not TagAssignment.objects.filter(run=run).exists()
    all_slugs = list(Category.objects.order_by("position", "id").values_list("slug", flat=True))
    assert run.config["category_slugs"] == all_slugs
    assert run_tags_by_category(run=runs_with_assignments().get(pk=run.pk)) == [
        {"slug": slug, "name": Category.objects.get(slug=slug).name, "tags": []} for slug in all_slugs
    ]


def test_it_still_lists_a_category_that_got_no_tags_beside_one_that_did(
    taxonomy: dict[str, Any], demo_recipes: list[dict[str, Any]]
) -> None:
    carbonara = demo_recipe(demo_recipes, "Spaghetti Carbonara")

    run = recipe_tag(recipe=carbonara, config=TaggingConfig(categories=("cuisine", "occasion")))

    groups = run_tags_by_category(run=runs_with_assignments().get(pk=run.pk))
    assert [group["slug"] for group in groups] == ["cuisine", "occasion"]
    assert [tag["slug"] for tag in groups[0]["tags"]] == ["italian"]  # type: ignore[index]
    assert groups[1] == {"slug": "occasion", "name": "Occasion", "tags": []}


# --- Relevance on clear cases -----------------------------------------------------------------------


def test_it_tags_the_carbonara_italian_and_pasta_and_not_japanese(
    taxonomy: dict[str, Any], demo_recipes: list[dict[str, Any]]
) -> None:
    carbonara = demo_recipe(demo_recipes, "Spaghetti Carbonara")

    tags = _tags(recipe_tag(recipe=carbonara, config=TaggingConfig()))

    assert "italian" in _slugs(tags["cuisine"])
    assert "japanese" not in _slugs(tags["cuisine"])
    assert "pasta" in _slugs(tags["dish_type"]) + _slugs(tags["main_ingredient"])


def test_it_tags_the_red_lentil_curry_vegan_and_not_beef(
    taxonomy: dict[str, Any], demo_recipes: list[dict[str, Any]]
) -> None:
    curry = demo_recipe(demo_recipes, "Vegan Red Lentil Curry with Coconut Milk")

    tags = _tags(recipe_tag(recipe=curry, config=TaggingConfig()))

    assert "vegan" in _slugs(tags["diet"])
    assert "beef" not in _slugs(tags["main_ingredient"])
    assert "lentils" in _slugs(tags["main_ingredient"])


def test_it_tags_the_beef_tacos_mexican_and_beef(taxonomy: dict[str, Any], demo_recipes: list[dict[str, Any]]) -> None:
    tacos = demo_recipe(demo_recipes, "Beef Tacos")

    tags = _tags(recipe_tag(recipe=tacos, config=TaggingConfig()))

    assert "mexican" in _slugs(tags["cuisine"])
    assert "beef" in _slugs(tags["main_ingredient"])


def test_it_tags_the_miso_ramen_japanese(taxonomy: dict[str, Any], demo_recipes: list[dict[str, Any]]) -> None:
    ramen = demo_recipe(demo_recipes, "Miso Ramen")

    tags = _tags(recipe_tag(recipe=ramen, config=TaggingConfig()))

    assert _slugs(tags["cuisine"])[0] == "japanese"


# --- Embeddings -------------------------------------------------------------------------------------


def test_it_reuses_the_stored_embedding_of_identical_content_without_calling_the_model(
    taxonomy: dict[str, Any], demo_recipes: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = demo_recipe(demo_recipes, "Miso Ramen")
    first_run = recipe_tag(recipe=first, config=TaggingConfig())
    second = demo_recipe(demo_recipes, "Miso Ramen")
    assert second.content_hash == first.content_hash
    model = Mock(wraps=recipe_services.embeddings_create)
    monkeypatch.setattr(recipe_services, "embeddings_create", model)

    second_run = recipe_tag(recipe=second, config=TaggingConfig())

    model.assert_not_called()
    assert second_run.timings["embed_ms"] == 0
    first.refresh_from_db()
    second.refresh_from_db()
    assert second.embedding is not None
    assert np.array_equal(np.asarray(second.embedding), np.asarray(first.embedding))
    assert second.embedding_model == first.embedding_model == "all-MiniLM-L6-v2"
    assert _without_rank(_tags(second_run)["cuisine"]) == _without_rank(_tags(first_run)["cuisine"])


def test_it_embeds_changed_content_afresh(
    taxonomy: dict[str, Any], demo_recipes: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ramen = demo_recipe(demo_recipes, "Miso Ramen")
    recipe_tag(recipe=ramen, config=TaggingConfig())
    variant = recipe_create(
        title="Miso Ramen with Corn", ingredients=ramen.ingredients, instructions=ramen.instructions
    )
    model = Mock(wraps=recipe_services.embeddings_create)
    monkeypatch.setattr(recipe_services, "embeddings_create", model)

    recipe_tag(recipe=variant, config=TaggingConfig())

    model.assert_called_once()
    assert model.call_args.kwargs["texts"][0].startswith("Miso Ramen with Corn.")
    variant.refresh_from_db()
    ramen.refresh_from_db()
    assert variant.embedding is not None
    assert not np.array_equal(np.asarray(variant.embedding), np.asarray(ramen.embedding))


def test_every_tag_it_assigns_carries_the_words_that_matched_and_its_similarity(
    taxonomy: dict[str, Any], demo_recipes: list[dict[str, Any]]
) -> None:
    tacos = demo_recipe(demo_recipes, "Beef Tacos")

    run = recipe_tag(recipe=tacos, config=TaggingConfig())

    assignments = list(run.assignments.select_related("tag"))
    assert assignments
    for assignment in assignments:
        assert set(assignment.evidence) == {"decided_by", "matched", "similarity", "rule"}
        assert assignment.evidence["decided_by"] == "zero_shot"
        assert assignment.evidence["rule"] == "no rule"
        assert -1.0 <= assignment.evidence["similarity"] <= 1.0
    beef = next(a for a in assignments if a.tag.slug == "beef")
    assert beef.evidence["matched"]["title"] == ["beef"]
    assert beef.evidence["matched"]["ingredients"] == ["ground beef"]


def test_its_batched_zero_shot_scores_equal_the_calibrated_score_of_each_pair() -> None:
    rng = np.random.default_rng(7)
    similarities = np.concatenate([rng.uniform(-0.2, 0.8, 20_000), np.round(rng.uniform(0.1, 0.6, 5_000), 4)])
    lexical = rng.choice([0.0, 0.4, 0.75, 1.0], size=len(similarities))

    batched = calibrated_scores(similarities=similarities, lexical=lexical)

    expected = [
        calibrated_score(similarity=s, lexical=w) for s, w in zip(similarities.tolist(), lexical.tolist(), strict=True)
    ]
    assert batched == expected
    assert min(batched) == 0.0
    assert max(batched) > ZERO_SHOT_KNEE
