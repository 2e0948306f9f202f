"""/review/: which runs wait for review, the filters, the order (least sure first), the progress, pagination."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from feedback.models import Feedback
from feedback.selectors import QueueFilters, review_progress, review_queue, review_run_latest
from feedback.services.reviews import TagDecision, recipe_review_submit
from feedback.tests.review_helpers import signed_in, waiting_run
from tagging.models import Recipe, RunStatus, TaggingRun
from tagging.tests.conftest import TaggingRunFactory
from taxonomy.models import Category, Tag
from taxonomy.tests.conftest import CategoryFactory, TagFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def tags(cuisine: Category) -> dict[str, Tag]:
    diet = CategoryFactory(slug="diet", name="Diet")
    return {tag.slug: tag for tag in cuisine.tags.all()} | {"vegan": TagFactory(category=diet, slug="vegan")}


def titles(runs: Any) -> list[str]:
    return [run.recipe.title for run in runs]


def queue(reviewer: Any, sort: str = "uncertainty", **filters: Any) -> list[str]:
    return titles(review_queue(filters=QueueFilters(**filters), reviewer=reviewer, sort=sort))


def review(run: Any, reviewer: Any) -> None:
    tag_id = run.assignments.first().tag_id
    recipe_review_submit(
        recipe=run.recipe, run=run, decisions=[TagDecision(tag_id=tag_id, decision="accept")], reviewer=reviewer
    )


def test_it_lists_the_least_sure_run_first(reviewer: Any, tags: dict[str, Tag]) -> None:
    waiting_run({tags["italian"]: 0.95}, title="Sure")
    waiting_run({tags["italian"]: 0.97, tags["mexican"]: 0.52}, title="Unsure")
    waiting_run({tags["italian"]: 0.7}, title="Middling")
    waiting_run({}, title="Nothing suggested")

    assert queue(reviewer) == ["Unsure", "Middling", "Sure", "Nothing suggested"]


def test_the_other_sorts_order_by_date_or_by_confidence(reviewer: Any, tags: dict[str, Tag]) -> None:
    now = timezone.now()
    waiting_run({tags["italian"]: 0.6}, title="Old", created_at=now - timedelta(days=2))
    waiting_run({tags["italian"]: 0.9}, title="New", created_at=now)

    assert queue(reviewer, sort="newest") == ["New", "Old"]
    assert queue(reviewer, sort="oldest") == ["Old", "New"]
    assert queue(reviewer, sort="confident") == ["New", "Old"]


def test_only_a_recipes_latest_succeeded_run_waits(reviewer: Any, tags: dict[str, Tag]) -> None:
    first = waiting_run({tags["italian"]: 0.6}, created_at=timezone.now() - timedelta(hours=1))
    latest = waiting_run({tags["mexican"]: 0.8}, recipe=first.recipe)
    TaggingRunFactory(recipe=first.recipe, status=RunStatus.FAILED)

    runs = list(review_queue(filters=QueueFilters(), reviewer=reviewer))

    assert [run.pk for run in runs] == [latest.pk]


def test_a_dry_run_proposal_waits_for_review_only_once_applied(reviewer: Any, tags: dict[str, Tag]) -> None:
    current = waiting_run({tags["italian"]: 0.6}, created_at=timezone.now() - timedelta(hours=1))
    proposal = waiting_run({tags["mexican"]: 0.8}, recipe=current.recipe)
    TaggingRun.objects.filter(pk=proposal.pk).update(sets_current=False)

    before = [run.pk for run in review_queue(filters=QueueFilters(), reviewer=reviewer)]
    Recipe.objects.filter(pk=current.recipe_id).update(current_run=proposal)
    after = [run.pk for run in review_queue(filters=QueueFilters(), reviewer=reviewer)]

    assert (before, after) == ([current.pk], [proposal.pk])
    assert review_run_latest(recipe_id=current.recipe_id) == proposal


def test_a_reviewed_recipe_leaves_the_queue_until_a_newer_run(reviewer: Any, tags: dict[str, Tag]) -> None:
    run = waiting_run({tags["italian"]: 0.6})
    review(run, reviewer)
    assert queue(reviewer) == []

    waiting_run({tags["italian"]: 0.7}, recipe=run.recipe)

    assert queue(reviewer) == ["Spaghetti carbonara"]


def test_feedback_from_the_api_counts_as_a_review(reviewer: Any, tags: dict[str, Tag]) -> None:
    run = waiting_run({tags["italian"]: 0.6})

    Feedback.objects.create(recipe=run.recipe, run=run, tag=tags["italian"], decision="accept", channel="api")

    assert queue(reviewer) == []


def test_it_filters_by_strategy_source_and_prompt_version(reviewer: Any, tags: dict[str, Tag]) -> None:
    waiting_run({tags["italian"]: 0.6}, strategy="similarity", title="Quiche by similarity")
    waiting_run({tags["italian"]: 0.6}, stats={"source": "local", "prompt_version_id": 7}, title="Local v7")
    waiting_run({tags["italian"]: 0.6}, strategy="hybrid", stats={"source": "cloud"}, title="Cloud")

    assert queue(reviewer, strategy="similarity") == ["Quiche by similarity"]
    assert queue(reviewer, source="similarity") == ["Quiche by similarity"]
    assert queue(reviewer, source="cloud") == ["Cloud"]
    assert queue(reviewer, prompt_version_id=7) == ["Local v7"]


def test_it_filters_by_category_and_score_range_on_the_same_tag(reviewer: Any, tags: dict[str, Tag]) -> None:
    waiting_run({tags["italian"]: 0.9, tags["vegan"]: 0.3}, title="Italian sure, vegan not")
    waiting_run({tags["vegan"]: 0.8}, title="Vegan sure")

    assert queue(reviewer, category="cuisine") == ["Italian sure, vegan not"]
    assert queue(reviewer, score_min=0.85) == ["Italian sure, vegan not"]
    assert queue(reviewer, category="diet", score_min=0.7) == ["Vegan sure"]
    assert queue(reviewer, category="diet", score_max=0.5) == ["Italian sure, vegan not"]


def test_a_category_filter_orders_by_that_categorys_least_sure_tag(reviewer: Any, tags: dict[str, Tag]) -> None:
    waiting_run({tags["italian"]: 0.5, tags["vegan"]: 0.95}, title="Unsure cuisine")
    waiting_run({tags["italian"]: 0.9, tags["vegan"]: 0.6}, title="Unsure diet")

    assert queue(reviewer, category="diet") == ["Unsure diet", "Unsure cuisine"]


def test_it_filters_by_the_runs_day(reviewer: Any, tags: dict[str, Tag]) -> None:
    today = timezone.localdate()
    waiting_run({tags["italian"]: 0.6}, title="Last week", created_at=timezone.now() - timedelta(days=7))
    waiting_run({tags["italian"]: 0.6}, title="Today")

    assert queue(reviewer, date_from=today) == ["Today"]
    assert queue(reviewer, date_to=today - timedelta(days=1)) == ["Last week"]


def test_progress_counts_reviewed_and_waiting_recipes_overall_and_for_the_filter(
    reviewer: Any, tags: dict[str, Tag]
) -> None:
    for title in ("A", "B", "C"):
        waiting_run({tags["italian"]: 0.6}, title=title)
    review(waiting_run({tags["italian"]: 0.6}, strategy="similarity", title="D"), reviewer)
    review(waiting_run({tags["italian"]: 0.6}, title="E"), reviewer)

    overall = review_progress()
    similarity = review_progress(filters=QueueFilters(strategy="similarity"))

    assert (overall.reviewed, overall.waiting, overall.percent) == (2, 3, 40)
    assert (similarity.reviewed, similarity.waiting) == (1, 0)


def test_the_page_shows_progress_and_filters_and_paginates(reviewer: Any, tags: dict[str, Tag]) -> None:
    for n in range(27):
        waiting_run({tags["italian"]: 0.5 + n / 100}, title=f"Recipe {n:02d}")
    waiting_run({tags["italian"]: 0.6}, strategy="similarity", title="Quiche by similarity")
    browser = signed_in(reviewer)

    first = browser.get("/review/?strategy=llm").content.decode()
    second = browser.get("/review/?strategy=llm&sort=uncertainty&page=2").content.decode()

    assert "0 reviewed · 28 waiting" in first
    assert "0 reviewed · 27 waiting" in first
    assert "Recipe 00" in first
    assert "Recipe 24" in first
    assert "Recipe 25" not in first
    assert "Quiche by similarity" not in first
    assert "Recipe 25" in second
    assert "Recipe 26" in second
    assert "page=2" in first


def test_an_invalid_filter_is_answered_400_naming_it(reviewer: Any) -> None:
    response = signed_in(reviewer).get("/review/?score_min=0.9&score_max=0.2")

    assert response.status_code == 400
    assert "The score range is empty" in response.content.decode()


def test_the_queue_page_takes_the_same_few_queries_for_3_runs_or_30(reviewer: Any, tags: dict[str, Tag]) -> None:
    browser = signed_in(reviewer)
    browser.get("/review/")

    def queries_for_page() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert browser.get("/review/?category=cuisine").status_code == 200
        return len(queries)

    for n in range(3):
        waiting_run({tags["italian"]: 0.6, tags["vegan"]: 0.3}, title=f"Recipe {n}")
    few = queries_for_page()
    for n in range(3, 30):
        waiting_run({tags["italian"]: 0.6, tags["vegan"]: 0.3}, title=f"Recipe {n}")
    many = queries_for_page()

    assert few == many
    assert many <= 12


def test_a_learned_runs_own_margin_orders_it_before_the_least_sure_tag_of_others(
    reviewer: Any, tags: dict[str, Tag]
) -> None:
    waiting_run({tags["italian"]: 0.55}, title="Unsure tag")
    waiting_run(
        {tags["italian"]: 0.99}, title="Learned, unsure", strategy="similarity", stats={"uncertainty_margin": 0.01}
    )
    waiting_run(
        {tags["italian"]: 0.51}, title="Learned, sure", strategy="similarity", stats={"uncertainty_margin": 0.4}
    )

    assert queue(reviewer) == ["Learned, unsure", "Unsure tag", "Learned, sure"]
    assert queue(reviewer, category="cuisine") == ["Learned, sure", "Unsure tag", "Learned, unsure"]
