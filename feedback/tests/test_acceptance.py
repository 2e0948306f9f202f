"""feedback.selectors.feedback_acceptance: how often people accept what the tagger suggests, per group."""

from __future__ import annotations

from typing import Any

import pytest

from feedback.selectors import feedback_acceptance
from feedback.services.reviews import TagDecision, recipe_review_submit
from tagging.models import RunStatus
from tagging.tests.conftest import RecipeFactory, TagAssignmentFactory, TaggingRunFactory
from taxonomy.models import Category
from taxonomy.tests.conftest import TagFactory

pytestmark = pytest.mark.django_db


def reviewed_run(*, strategy: str, decisions: dict[Any, str], reviewer: Any, added: Any = None) -> None:
    run = TaggingRunFactory(recipe=RecipeFactory(), strategy=strategy, status=RunStatus.SUCCEEDED)
    for rank, tag in enumerate(decisions, start=1):
        TagAssignmentFactory(run=run, tag=tag, score=0.5, rank=rank)
    choices = [TagDecision(tag_id=tag.pk, decision=d) for tag, d in decisions.items()]
    if added is not None:
        choices.append(TagDecision(tag_id=added.pk, decision="add"))
    recipe_review_submit(recipe=run.recipe, run=run, decisions=choices, reviewer=reviewer)


def test_it_counts_accepted_rejected_and_added_tags_per_category(cuisine: Category, reviewer: Any) -> None:
    italian, mexican = cuisine.tags.order_by("slug")
    course = TagFactory(slug="main").category
    main = course.tags.get()
    reviewed_run(strategy="llm", decisions={italian: "accept", mexican: "reject", main: "accept"}, reviewer=reviewer)
    reviewed_run(strategy="similarity", decisions={italian: "accept"}, reviewer=reviewer, added=mexican)

    by_category = {a.key: a for a in feedback_acceptance(by="category")}

    assert (by_category["cuisine"].accepted, by_category["cuisine"].rejected, by_category["cuisine"].added) == (2, 1, 1)
    assert by_category["cuisine"].rate == pytest.approx(2 / 3)
    assert by_category[course.slug].rate == 1.0


def test_it_groups_by_strategy_and_by_tag(cuisine: Category, reviewer: Any) -> None:
    italian, mexican = cuisine.tags.order_by("slug")
    reviewed_run(strategy="llm", decisions={italian: "reject", mexican: "reject"}, reviewer=reviewer)
    reviewed_run(strategy="hybrid", decisions={italian: "accept"}, reviewer=reviewer)

    by_strategy = {a.key: a.rate for a in feedback_acceptance(by="strategy")}
    by_tag = {a.key: (a.accepted, a.rejected) for a in feedback_acceptance(by="tag")}

    assert by_strategy == {"llm": 0.0, "hybrid": 1.0}
    assert by_tag == {"cuisine/italian": (1, 1), "cuisine/mexican": (0, 1)}


def test_it_lists_the_most_reviewed_groups_first(cuisine: Category, reviewer: Any) -> None:
    italian, mexican = cuisine.tags.order_by("slug")
    reviewed_run(strategy="llm", decisions={mexican: "accept"}, reviewer=reviewer)
    reviewed_run(strategy="llm", decisions={mexican: "accept"}, reviewer=reviewer)
    reviewed_run(strategy="llm", decisions={italian: "accept"}, reviewer=reviewer)

    assert [a.key for a in feedback_acceptance(by="tag")] == ["cuisine/mexican", "cuisine/italian"]


def test_it_has_no_rate_before_any_suggested_tag_was_reviewed(cuisine: Category, reviewer: Any) -> None:
    recipe = RecipeFactory()
    recipe_review_submit(
        recipe=recipe,
        run=None,
        decisions=[TagDecision(tag_id=cuisine.tags.first().pk, decision="add")],
        reviewer=reviewer,
    )

    (only,) = feedback_acceptance(by="category")

    assert (only.added, only.reviewed, only.rate) == (1, 0, None)
