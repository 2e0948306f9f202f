"""Feedback in admin: a read-only record, filtered, with the acceptance rates above the list."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from feedback.models import Feedback
from feedback.services.reviews import TagDecision, recipe_review_submit
from tagging.models import RunStatus
from tagging.tests.conftest import RecipeFactory, TagAssignmentFactory, TaggingRunFactory
from taxonomy.models import Category, Tag

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/feedback/feedback/"


@pytest.fixture
def feedback(cuisine: Category, reviewer: Any) -> list[Feedback]:
    tags: dict[str, Tag] = {tag.slug: tag for tag in cuisine.tags.all()}
    rows: list[Feedback] = []
    for strategy, italian in (("llm", "accept"), ("similarity", "accept"), ("similarity", "reject")):
        run = TaggingRunFactory(recipe=RecipeFactory(), status=RunStatus.SUCCEEDED, strategy=strategy)
        TagAssignmentFactory(run=run, tag=tags["italian"], score=0.8, rank=1)
        TagAssignmentFactory(run=run, tag=tags["mexican"], score=0.4, rank=2)
        rows += recipe_review_submit(
            recipe=run.recipe,
            run=run,
            decisions=[
                TagDecision(tag_id=tags["italian"].pk, decision=italian),
                TagDecision(tag_id=tags["mexican"].pk, decision="reject"),
            ],
            reviewer=reviewer,
        )
    return rows


def test_the_list_shows_acceptance_rates_per_category_strategy_and_tag(
    feedback: list[Feedback], staff_browser: Client
) -> None:
    response = staff_browser.get(CHANGELIST)

    assert response.status_code == 200
    html = " ".join(response.content.decode().split())
    assert "<tr><td>cuisine</td><td>2</td><td>4</td><td>0.33</td><td>0</td></tr>" in html
    assert "<tr><td>similarity</td><td>1</td><td>3</td><td>0.25</td><td>0</td></tr>" in html
    assert "<tr><td>llm</td><td>1</td><td>1</td><td>0.50</td><td>0</td></tr>" in html
    assert "<tr><td>cuisine/italian</td><td>2</td><td>1</td><td>0.67</td><td>0</td></tr>" in html
    assert 'href="/feedback/reviewers/"' in html


def test_the_list_filters_by_decision_and_strategy(feedback: list[Feedback], staff_browser: Client) -> None:
    response = staff_browser.get(CHANGELIST, {"decision": "accept", "strategy": "similarity"})

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [
        f for f in feedback if f.decision == "accept" and f.strategy == "similarity"
    ]


def test_feedback_is_a_record_no_one_adds_changes_or_deletes_in_admin(
    feedback: list[Feedback], staff_browser: Client
) -> None:
    row = feedback[0]

    add = staff_browser.get(f"{CHANGELIST}add/")
    change = staff_browser.post(f"{CHANGELIST}{row.pk}/change/", {"decision": "reject"})
    delete = staff_browser.post(f"{CHANGELIST}{row.pk}/delete/", {"post": "yes"})

    assert add.status_code == 403
    assert change.status_code == 403
    assert delete.status_code == 403
    assert Feedback.objects.get(pk=row.pk).decision == row.decision
    assert staff_browser.get(f"{CHANGELIST}{row.pk}/change/").status_code == 200  # viewing it is fine
