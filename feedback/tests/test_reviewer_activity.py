"""The staff page of reviewers (/feedback/reviewers/): activity per reviewer and where reviewers disagree."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from feedback.models import Feedback
from feedback.selectors import reviewer_activity, reviewer_disagreements
from feedback.services.reviews import TagDecision, recipe_review_submit
from tagging.models import RunStatus
from tagging.tests.conftest import RecipeFactory, TagAssignmentFactory, TaggingRunFactory
from taxonomy.models import Category, Tag
from taxonomy.tests.conftest import TagFactory

pytestmark = pytest.mark.django_db
PAGE = "/feedback/reviewers/"


@pytest.fixture
def tags(cuisine: Category) -> dict[str, Tag]:
    return {tag.slug: tag for tag in cuisine.tags.all()} | {"greek": TagFactory(category=cuisine, slug="greek")}


@pytest.fixture
def run(tags: dict[str, Tag]) -> Any:
    run = TaggingRunFactory(recipe=RecipeFactory(title="Moussaka"), status=RunStatus.SUCCEEDED, strategy="llm")
    TagAssignmentFactory(run=run, tag=tags["italian"], score=0.9, rank=1)
    TagAssignmentFactory(run=run, tag=tags["mexican"], score=0.3, rank=2)
    return run


def review(run: Any, user: Any, tags: dict[str, Tag], channel: str = "review", **decisions: str) -> None:
    recipe_review_submit(
        recipe=run.recipe,
        run=run,
        decisions=[TagDecision(tag_id=tags[slug].pk, decision=decision) for slug, decision in decisions.items()],
        reviewer=user,
        channel=channel,
    )


@pytest.fixture
def colleague(django_user_model: Any) -> Any:
    from conftest import reviewers_group

    user = django_user_model.objects.create_user(username="colleague")
    user.groups.add(reviewers_group())
    return user


def test_it_counts_each_reviewers_decisions_by_kind_and_day(
    run: Any, tags: dict[str, Tag], reviewer: Any, colleague: Any
) -> None:
    review(run, reviewer, tags, italian="accept", mexican="reject", greek="add")
    review(run, colleague, tags, italian="accept")
    Feedback.objects.filter(reviewer=reviewer, tag=tags["greek"]).update(created_at=timezone.now() - timedelta(days=2))

    activities = {a.username: a for a in reviewer_activity(days=7)}

    mine = activities["reviewer"]
    assert (mine.total, mine.accepted, mine.rejected, mine.added) == (3, 1, 1, 1)
    assert len(mine.per_day) == 7
    assert [count for _, count in mine.per_day][-3:] == [1, 0, 2]
    assert mine.per_day[-1][0] == timezone.localdate()
    assert (activities["colleague"].total, activities["colleague"].accepted) == (1, 1)
    assert [a.username for a in reviewer_activity()] == ["reviewer", "colleague"]


def test_it_leaves_out_feedback_sent_through_the_api(
    run: Any, tags: dict[str, Tag], api_client_user: Any, reviewer: Any
) -> None:
    review(run, api_client_user, tags, channel="api", italian="accept")

    assert reviewer_activity() == []


def test_it_finds_reviewers_who_answered_the_same_tag_differently(
    run: Any, tags: dict[str, Tag], reviewer: Any, colleague: Any
) -> None:
    review(run, reviewer, tags, italian="accept", mexican="reject")
    review(run, colleague, tags, italian="reject", mexican="reject", greek="add")

    (found,) = reviewer_disagreements()

    assert (found.recipe_id, found.recipe_title, found.category, found.tag) == (
        run.recipe_id,
        "Moussaka",
        "cuisine",
        "italian",
    )
    assert [(d.username, d.decision) for d in found.decisions] == [("reviewer", "accept"), ("colleague", "reject")]


def test_it_takes_a_reviewer_changing_their_mind_for_no_disagreement(
    run: Any, tags: dict[str, Tag], reviewer: Any, colleague: Any
) -> None:
    review(run, reviewer, tags, italian="reject")
    review(run, reviewer, tags, italian="add")
    review(run, colleague, tags, italian="accept")

    assert reviewer_disagreements() == []


def test_an_added_tag_agrees_with_an_accepted_one(
    run: Any, tags: dict[str, Tag], reviewer: Any, colleague: Any
) -> None:
    review(run, reviewer, tags, greek="add")
    review(run, colleague, tags, greek="add", italian="accept")

    assert reviewer_disagreements() == []


def test_the_page_shows_activity_and_links_each_disagreement_to_its_recipe(
    run: Any, tags: dict[str, Tag], reviewer: Any, colleague: Any, staff_browser: Client
) -> None:
    review(run, reviewer, tags, italian="accept", mexican="reject")
    review(run, colleague, tags, italian="reject")

    response = staff_browser.get(PAGE)

    assert response.status_code == 200
    html = response.content.decode()
    assert "colleague" in html
    assert 'aria-label="Decisions per day of reviewer"' in html
    assert f'href="/admin/tagging/recipe/{run.recipe_id}/change/"' in html
    assert "cuisine/italian" in html


def test_the_page_reads_the_database_a_bounded_number_of_times(
    tags: dict[str, Tag], django_user_model: Any, staff_browser: Client
) -> None:
    def one_more_pair(n: int) -> None:
        run = TaggingRunFactory(recipe=RecipeFactory(title=f"Dish {n}"), status=RunStatus.SUCCEEDED)
        TagAssignmentFactory(run=run, tag=tags["italian"], score=0.9, rank=1)
        a = django_user_model.objects.create_user(username=f"a{n}")
        b = django_user_model.objects.create_user(username=f"b{n}")
        review(run, a, tags, italian="accept")
        review(run, b, tags, italian="reject")

    one_more_pair(0)
    with CaptureQueriesContext(connection) as few:
        staff_browser.get(PAGE)
    for n in range(1, 6):
        one_more_pair(n)

    with CaptureQueriesContext(connection) as many:
        response = staff_browser.get(PAGE)

    assert response.content.decode().count("cuisine/italian") == 6
    assert len(many) == len(few)


@pytest.mark.parametrize(("who", "status"), [("reviewer", 403), ("api_client_user", 403), ("staff", 200)])
def test_only_staff_see_the_page(request: pytest.FixtureRequest, client: Client, who: str, status: int) -> None:
    client.force_login(request.getfixturevalue(who))

    assert client.get(PAGE).status_code == status


def test_anonymous_visitors_are_sent_to_sign_in(client: Client) -> None:
    response = client.get(PAGE)

    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]
