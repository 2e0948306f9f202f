"""Bulk accept on the review queue: every suggested tag at or above a score, on each filtered run, after a
confirmation step that shows the counts."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings

from feedback.models import Feedback, GoldLabel
from feedback.selectors import QueueFilters
from feedback.services.leases import review_lease_take
from feedback.services.review_queue import review_bulk_accept
from feedback.tests.review_helpers import signed_in, waiting_run
from taxonomy.models import Category, Tag

pytestmark = pytest.mark.django_db


@pytest.fixture
def tags(cuisine: Category) -> dict[str, Tag]:
    return {tag.slug: tag for tag in cuisine.tags.all()}


@pytest.fixture
def runs(tags: dict[str, Tag]) -> list[Any]:
    return [
        waiting_run({tags["italian"]: 0.95, tags["mexican"]: 0.4}, title="Carbonara"),
        waiting_run({tags["italian"]: 0.92, tags["mexican"]: 0.91}, title="Fusion"),
        waiting_run({tags["mexican"]: 0.6}, title="Tacos"),
        waiting_run({tags["italian"]: 0.99}, strategy="similarity", title="Lasagne"),
    ]


def test_the_first_step_shows_the_counts_and_stores_nothing(reviewer: Any, runs: list[Any]) -> None:
    response = signed_in(reviewer).post("/review/bulk-accept", {"strategy": "llm", "min_score": "0.9"})

    content = response.content.decode()
    assert response.status_code == 200
    assert "<strong>3 tags</strong>" in content
    assert "<strong>2 recipes</strong>" in content
    assert 'name="confirm" value="1"' in content
    assert 'name="strategy" value="llm"' in content
    assert not Feedback.objects.exists()


def test_confirmed_it_accepts_each_tag_at_or_above_the_score_once_per_recipe(reviewer: Any, runs: list[Any]) -> None:
    response = signed_in(reviewer).post(
        "/review/bulk-accept", {"strategy": "llm", "min_score": "0.9", "confirm": "1"}, follow=True
    )

    assert "Accepted 3 tags on 2 recipes" in response.content.decode()
    rows = set(Feedback.objects.values_list("recipe__title", "tag__slug", "decision", "reviewer"))
    assert rows == {
        ("Carbonara", "italian", "accept", reviewer.pk),
        ("Fusion", "italian", "accept", reviewer.pk),
        ("Fusion", "mexican", "accept", reviewer.pk),
    }
    labels = set(GoldLabel.objects.values_list("recipe__title", "tag__slug"))
    assert labels == {("Carbonara", "italian"), ("Fusion", "italian"), ("Fusion", "mexican")}
    # Back on the queue with the same filter: the reviewed recipes left it, the rest still wait.
    assert response.redirect_chain[-1][0] == "/review/?strategy=llm"
    assert [r.recipe.title for r in response.context["runs"]] == ["Tacos"]


def test_it_skips_a_recipe_another_reviewer_holds(reviewer: Any, staff: Any, runs: list[Any]) -> None:
    review_lease_take(recipe_id=runs[0].recipe_id, reviewer=staff)

    result = review_bulk_accept(filters=QueueFilters(strategy="llm"), reviewer=reviewer, min_score=0.9)

    assert (result.recipes, result.tags) == (1, 2)
    assert set(Feedback.objects.values_list("recipe__title", flat=True)) == {"Fusion"}


@override_settings(REVIEW_BULK_MAX=1)
def test_one_bulk_accept_reviews_at_most_the_configured_number_of_recipes(reviewer: Any, runs: list[Any]) -> None:
    preview = signed_in(reviewer).post("/review/bulk-accept", {"min_score": "0.9"}).content.decode()

    result = review_bulk_accept(filters=QueueFilters(), reviewer=reviewer, min_score=0.9)

    assert "More recipes match" in preview
    assert result.recipes == 1
    assert Feedback.objects.values("recipe").distinct().count() == 1


def test_a_score_out_of_range_is_refused(reviewer: Any, runs: list[Any]) -> None:
    response = signed_in(reviewer).post("/review/bulk-accept", {"min_score": "1.5", "confirm": "1"})

    assert response.status_code == 400
    assert "Nothing was accepted" in response.content.decode()
    assert not Feedback.objects.exists()
