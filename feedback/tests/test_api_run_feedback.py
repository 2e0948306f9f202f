"""POST /api/v1/runs/{id}/feedback: an app's users' decisions on the tags of its own runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from conftest import assert_error
from feedback.models import Feedback, FeedbackChannel, GoldLabel, GoldLabelSource
from feedback.services.reviews import TagDecision, recipe_review_submit
from feedback.tests.conftest import GoldLabelFactory
from tagging.models import RunStatus
from tagging.tests.conftest import RecipeFactory, TagAssignmentFactory, TaggingRunFactory
from taxonomy.models import Category, Tag
from taxonomy.tests.conftest import CategoryFactory, TagFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def tags(cuisine: Category) -> dict[str, Tag]:
    dish = CategoryFactory(slug="dish_type")
    return {tag.slug: tag for tag in cuisine.tags.all()} | {
        "greek": TagFactory(category=cuisine, slug="greek"),
        "pasta": TagFactory(category=dish, slug="pasta"),
    }


@pytest.fixture
def run(tags: dict[str, Tag], api_client_user: Any) -> Any:
    recipe = RecipeFactory(created_by=api_client_user)
    run = TaggingRunFactory(
        recipe=recipe, status=RunStatus.SUCCEEDED, strategy="similarity", created_by=api_client_user
    )
    TagAssignmentFactory(run=run, tag=tags["italian"], score=0.9, rank=1)
    TagAssignmentFactory(run=run, tag=tags["mexican"], score=0.3, rank=2)
    return run


def url(run: Any) -> str:
    return f"/api/v1/runs/{run.pk}/feedback"


DECISIONS = [
    {"category": "cuisine", "tag": "italian", "decision": "accept"},
    {"category": "cuisine", "tag": "mexican", "decision": "reject"},
    {"category": "dish_type", "tag": "pasta", "decision": "add"},
]


def test_it_records_the_decisions_as_api_feedback_and_answers_201_with_them(
    run: Any, token_client: APIClient, api_client_user: Any
) -> None:
    response = token_client.post(url(run), {"decisions": DECISIONS}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["run_id"] == run.pk
    assert body["recipe_id"] == run.recipe_id
    assert [(f["category"], f["tag"], f["decision"], f["score"]) for f in body["feedback"]] == [
        ("cuisine", "italian", "accept", 0.9),
        ("cuisine", "mexican", "reject", 0.3),
        ("dish_type", "pasta", "add", None),
    ]
    assert {(f["channel"], f["reviewer"], f["strategy"]) for f in body["feedback"]} == {("api", "app", "similarity")}
    assert body["gold_labels"] == {"cuisine": ["italian"], "dish_type": ["pasta"]}
    assert Feedback.objects.filter(run=run, channel=FeedbackChannel.API, reviewer=api_client_user).count() == 3


def test_it_makes_the_accepted_and_added_tags_review_gold_labels(run: Any, token_client: APIClient) -> None:
    token_client.post(url(run), {"decisions": DECISIONS}, format="json")

    labels = set(GoldLabel.objects.filter(recipe=run.recipe).values_list("tag__slug", "source", "created_by__username"))
    assert labels == {("italian", GoldLabelSource.REVIEW, "app"), ("pasta", GoldLabelSource.REVIEW, "app")}


def test_it_lets_a_client_correct_its_own_earlier_feedback(run: Any, token_client: APIClient) -> None:
    token_client.post(url(run), {"decisions": DECISIONS[:1]}, format="json")

    response = token_client.post(
        url(run), {"decisions": [{"category": "cuisine", "tag": "italian", "decision": "reject"}]}, format="json"
    )

    assert response.status_code == 201, response.content
    assert response.json()["gold_labels"] == {}


def test_it_answers_404_for_someone_elses_run(
    run: Any, django_user_model: Any, api_client_for: Callable[[Any], APIClient]
) -> None:
    other = api_client_for(django_user_model.objects.create_user(username="other-app"))

    response = other.post(url(run), {"decisions": DECISIONS}, format="json")

    assert_error(response, status=404, code="not_found")
    assert Feedback.objects.count() == 0


def test_it_answers_404_for_a_run_that_does_not_exist(token_client: APIClient) -> None:
    response = token_client.post("/api/v1/runs/999999/feedback", {"decisions": DECISIONS}, format="json")

    assert_error(response, status=404, code="not_found")


def test_it_answers_401_without_credentials(run: Any) -> None:
    response = APIClient().post(url(run), {"decisions": DECISIONS}, format="json")

    assert_error(response, status=401, code="not_authenticated")


def test_it_refuses_a_client_once_curators_have_labelled_the_recipe(
    run: Any, tags: dict[str, Tag], token_client: APIClient, reviewer: Any
) -> None:
    recipe_review_submit(
        recipe=run.recipe,
        run=run,
        decisions=[TagDecision(tag_id=tags["italian"].pk, decision="accept")],
        reviewer=reviewer,
    )

    response = token_client.post(
        url(run), {"decisions": [{"category": "cuisine", "tag": "italian", "decision": "reject"}]}, format="json"
    )

    assert_error(response, status=403, code="recipe_gold_labelled")
    assert GoldLabel.objects.filter(recipe=run.recipe, tag=tags["italian"]).exists()


def test_it_refuses_a_client_on_a_recipe_with_imported_labels(
    run: Any, tags: dict[str, Tag], token_client: APIClient
) -> None:
    GoldLabelFactory(recipe=run.recipe, tag=tags["mexican"], source=GoldLabelSource.IMPORT)

    response = token_client.post(url(run), {"decisions": DECISIONS}, format="json")

    assert_error(response, status=403, code="recipe_gold_labelled")
    assert Feedback.objects.count() == 0
    assert GoldLabel.objects.filter(recipe=run.recipe, tag=tags["mexican"]).exists()


def test_it_lets_a_reviewer_give_feedback_on_a_curated_recipe(
    run: Any, tags: dict[str, Tag], api_client_for: Callable[[Any], APIClient], reviewer: Any
) -> None:
    GoldLabelFactory(recipe=run.recipe, tag=tags["mexican"], source=GoldLabelSource.IMPORT)

    response = api_client_for(reviewer).post(url(run), {"decisions": DECISIONS}, format="json")

    assert response.status_code == 201, response.content
    assert not GoldLabel.objects.filter(recipe=run.recipe, tag=tags["mexican"]).exists()


@pytest.mark.parametrize("status", [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.FAILED])
def test_it_answers_409_for_a_run_that_has_not_succeeded(run: Any, token_client: APIClient, status: str) -> None:
    run.status = status
    run.save(update_fields=["status"])

    response = token_client.post(url(run), {"decisions": DECISIONS}, format="json")

    error = assert_error(response, status=409, code="run_not_succeeded")
    assert error["details"] == {"status": status}


def test_it_names_tags_the_taxonomy_lacks(run: Any, token_client: APIClient) -> None:
    decisions = [
        {"category": "cuisine", "tag": "italian", "decision": "accept"},
        {"category": "cuisine", "tag": "pasta", "decision": "add"},
        {"category": "nowhere", "tag": "greek", "decision": "add"},
    ]

    response = token_client.post(url(run), {"decisions": decisions}, format="json")

    error = assert_error(response, status=400, code="unknown_tag")
    assert error["details"] == {"tags": ["cuisine/pasta", "nowhere/greek"]}
    assert Feedback.objects.count() == 0


def test_it_refuses_accepting_a_tag_the_run_did_not_suggest(run: Any, token_client: APIClient) -> None:
    response = token_client.post(
        url(run), {"decisions": [{"category": "cuisine", "tag": "greek", "decision": "accept"}]}, format="json"
    )

    error = assert_error(response, status=400, code="review_invalid")
    assert "cuisine/greek was not suggested" in error["message"]


def test_it_refuses_two_decisions_on_one_tag(run: Any, token_client: APIClient) -> None:
    decisions = [
        {"category": "cuisine", "tag": "italian", "decision": "accept"},
        {"category": "cuisine", "tag": "italian", "decision": "reject"},
    ]

    response = token_client.post(url(run), {"decisions": decisions}, format="json")

    assert_error(response, status=400, code="review_invalid")
    assert Feedback.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "decisions"),
        ({"decisions": []}, "decisions"),
        ({"decisions": [{"category": "cuisine", "tag": "italian", "decision": "maybe"}]}, "decisions"),
        ({"decisions": [{"category": "cuisine", "tag": 7, "decision": "accept"}]}, "decisions"),
        ({"decisions": [{"tag": "italian", "decision": "accept"}]}, "decisions"),
    ],
)
def test_it_refuses_a_malformed_body_naming_the_field(
    run: Any, token_client: APIClient, body: dict[str, Any], field: str
) -> None:
    response = token_client.post(url(run), body, format="json")

    error = assert_error(response, status=400, code="invalid")
    assert field in error["details"]
