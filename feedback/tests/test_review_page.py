"""/recipes/<id>/review/ as a plain HTML form: what it shows, and a submit that records the decisions, updates the
gold labels and opens the next recipe of the queue."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from feedback.models import Feedback, GoldLabel, ReviewLease
from feedback.tests.review_helpers import signed_in, waiting_run
from tagging.tests.conftest import RecipeFactory
from taxonomy.models import Category, Tag
from taxonomy.tests.conftest import TagFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def tags(cuisine: Category) -> dict[str, Tag]:
    return {tag.slug: tag for tag in cuisine.tags.all()} | {
        "greek": TagFactory(category=cuisine, slug="greek", name="Greek", synonyms=["hellenic"]),
        "old": TagFactory(category=cuisine, slug="old", name="Old", active=False),
    }


@pytest.fixture
def run(tags: dict[str, Tag]) -> Any:
    return waiting_run(
        {tags["italian"]: 0.9, tags["mexican"]: 0.55},
        stats={"source": "default", "prompt_version": "tagging-default v3"},
        evidence={"decided_by": "llm", "reason": "pasta with guanciale"},
    )


def test_it_shows_the_recipe_its_suggested_tags_and_why(reviewer: Any, run: Any) -> None:
    response = signed_in(reviewer).get(f"/recipes/{run.recipe_id}/review/")

    content = response.content.decode()
    assert response.status_code == 200
    assert "Spaghetti carbonara" in content
    assert "guanciale" in content
    assert f'name="tag-{run.assignments.get(score=0.9).tag_id}"' in content
    assert "0.90" in content
    assert "0.55" in content
    assert "pasta with guanciale" in content
    assert "language model" in content
    assert "tagging-default v3" in content
    assert "LLM" in content
    assert 'list="review-tag-options"' in content
    assert "cuisine/greek" in content
    assert "cuisine/old" not in content  # an inactive tag cannot be added


def test_it_leases_the_recipe_to_the_reviewer_who_opens_it(reviewer: Any, run: Any) -> None:
    signed_in(reviewer).get(f"/recipes/{run.recipe_id}/review/")

    assert list(ReviewLease.objects.values_list("recipe_id", "reviewer_id")) == [(run.recipe_id, reviewer.pk)]


def test_a_submitted_form_records_the_decisions_and_opens_the_next_recipe(
    reviewer: Any, run: Any, tags: dict[str, Tag]
) -> None:
    after = waiting_run({tags["mexican"]: 0.5}, title="Tacos al pastor")
    browser = signed_in(reviewer)
    browser.get(f"/recipes/{run.recipe_id}/review/")

    response = browser.post(
        f"/recipes/{run.recipe_id}/review/",
        {
            "run": run.pk,
            f"tag-{tags['italian'].pk}": "accept",
            f"tag-{tags['mexican'].pk}": "reject",
            "add": "Greek",
        },
        follow=True,
    )

    assert response.redirect_chain[0][0] == "/review/next"
    assert response.redirect_chain[-1][0] == f"/recipes/{after.recipe_id}/review/"
    assert "Tacos al pastor" in response.content.decode()
    assert "Saved 3 decisions" in response.content.decode()
    decisions = dict(Feedback.objects.filter(recipe=run.recipe).values_list("tag__slug", "decision"))
    assert decisions == {"italian": "accept", "mexican": "reject", "greek": "add"}
    assert set(GoldLabel.objects.filter(recipe=run.recipe).values_list("tag__slug", flat=True)) == {"italian", "greek"}
    assert not ReviewLease.objects.filter(recipe=run.recipe).exists()


def test_it_keeps_the_queue_filter_from_one_recipe_to_the_next(reviewer: Any, run: Any, tags: dict[str, Tag]) -> None:
    browser = signed_in(reviewer)
    page = browser.get(f"/recipes/{run.recipe_id}/review/?strategy=llm&score_min=0.2")
    assert 'name="queue" value="strategy=llm&amp;score_min=0.2"' in page.content.decode()

    response = browser.post(
        f"/recipes/{run.recipe_id}/review/",
        {"run": run.pk, f"tag-{tags['italian'].pk}": "accept", "queue": "strategy=llm&score_min=0.2"},
    )

    assert response["Location"] == "/review/next?strategy=llm&score_min=0.2"


def test_undecided_tags_are_left_out(reviewer: Any, run: Any, tags: dict[str, Tag]) -> None:
    signed_in(reviewer).post(
        f"/recipes/{run.recipe_id}/review/",
        {"run": run.pk, f"tag-{tags['italian'].pk}": "accept", f"tag-{tags['mexican'].pk}": ""},
    )

    assert list(Feedback.objects.values_list("tag__slug", "decision")) == [("italian", "accept")]


def test_a_tag_added_by_its_category_and_slug_or_id_is_added(reviewer: Any, run: Any, tags: dict[str, Tag]) -> None:
    extra = TagFactory(category=tags["italian"].category, slug="french", name="French")

    signed_in(reviewer).post(
        f"/recipes/{run.recipe_id}/review/", {"run": run.pk, "add": ["cuisine/greek", str(extra.pk)]}
    )

    assert set(Feedback.objects.values_list("tag__slug", "decision")) == {("greek", "add"), ("french", "add")}


def test_adding_a_suggested_tag_accepts_it(reviewer: Any, run: Any) -> None:
    signed_in(reviewer).post(f"/recipes/{run.recipe_id}/review/", {"run": run.pk, "add": "Italian"})

    assert list(Feedback.objects.values_list("tag__slug", "decision", "score")) == [("italian", "accept", 0.9)]


def test_a_review_without_any_decision_is_refused_with_the_reason_and_stores_nothing(reviewer: Any, run: Any) -> None:
    response = signed_in(reviewer).post(f"/recipes/{run.recipe_id}/review/", {"run": run.pk})

    assert response.status_code == 400
    assert "at least one decision" in response.content.decode()
    assert not Feedback.objects.exists()
    assert not GoldLabel.objects.exists()


@pytest.mark.parametrize(
    ("added", "message"),
    [("cuisine/nothing", "No active tag is called"), ("cuisine/old", "No active tag is called")],
)
def test_an_unknown_or_inactive_tag_to_add_is_refused_and_nothing_is_stored(
    reviewer: Any, run: Any, tags: dict[str, Tag], added: str, message: str
) -> None:
    response = signed_in(reviewer).post(
        f"/recipes/{run.recipe_id}/review/", {"run": run.pk, f"tag-{tags['italian'].pk}": "accept", "add": added}
    )

    assert response.status_code == 400
    assert message in response.content.decode()
    assert f'value="{added}"' in response.content.decode()  # the form keeps what was typed
    assert not Feedback.objects.exists()


def test_a_review_error_from_the_service_is_shown_with_status_400(
    reviewer: Any, run: Any, tags: dict[str, Tag]
) -> None:
    other = waiting_run({tags["greek"]: 0.7}, title="Moussaka")

    # A run of another recipe is not this one's: the accepted tag then has no run that suggested it.
    response = signed_in(reviewer).post(
        f"/recipes/{run.recipe_id}/review/", {"run": other.pk, f"tag-{tags['italian'].pk}": "accept"}
    )

    assert response.status_code == 400
    assert "Nothing was saved" in response.content.decode()
    assert not Feedback.objects.exists()


def test_a_recipe_without_a_run_can_still_get_tags_added(reviewer: Any, tags: dict[str, Tag]) -> None:
    recipe = RecipeFactory(title="Plain rice")
    browser = signed_in(reviewer)
    assert "No run has tagged this recipe yet" in browser.get(f"/recipes/{recipe.pk}/review/").content.decode()

    browser.post(f"/recipes/{recipe.pk}/review/", {"add": "greek"})

    assert list(Feedback.objects.values_list("tag__slug", "decision", "run")) == [("greek", "add", None)]


def test_a_refused_form_shows_tags_added_by_id_as_their_category_and_slug(
    reviewer: Any, run: Any, tags: dict[str, Tag]
) -> None:
    response = signed_in(reviewer).post(
        f"/recipes/{run.recipe_id}/review/", {"run": run.pk, "add": [str(tags["greek"].pk), "cuisine/nothing"]}
    )

    assert response.status_code == 400
    assert 'value="cuisine/greek, cuisine/nothing"' in response.content.decode()


def test_a_review_applies_to_the_run_the_page_showed_even_after_a_newer_one(
    reviewer: Any, run: Any, tags: dict[str, Tag]
) -> None:
    waiting_run({tags["greek"]: 0.8}, recipe=run.recipe)

    signed_in(reviewer).post(
        f"/recipes/{run.recipe_id}/review/", {"run": run.pk, f"tag-{tags['mexican'].pk}": "reject"}
    )

    assert list(Feedback.objects.values_list("run", "tag__slug", "decision", "score")) == [
        (run.pk, "mexican", "reject", 0.55)
    ]


def test_the_page_takes_the_same_queries_for_2_suggested_tags_or_12(reviewer: Any, tags: dict[str, Tag]) -> None:
    cuisine = tags["italian"].category
    browser = signed_in(reviewer)
    few = waiting_run({tags["italian"]: 0.9, tags["mexican"]: 0.5}, title="Few")
    many = waiting_run({TagFactory(category=cuisine, slug=f"extra-{n}"): 0.5 + n / 50 for n in range(12)}, title="Many")
    browser.get(f"/recipes/{few.recipe_id}/review/")
    counts = []

    for run in (few, many):
        with CaptureQueriesContext(connection) as queries:
            assert browser.get(f"/recipes/{run.recipe_id}/review/").status_code == 200
        counts.append(len(queries))

    assert counts[0] == counts[1]
