"""GET /api/v1/categories and /api/v1/categories/{slug}."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from taxonomy.tests.conftest import CategoryFactory, TagFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_taxonomy() -> None:
    """Three categories created out of position order, one of them inactive, and one inactive tag."""
    course = CategoryFactory(slug="course", name="Course", position=2, default_max_tags=1)
    cuisine = CategoryFactory(slug="cuisine", name="Cuisine", position=1, default_max_tags=2, relevance_threshold=0.75)
    retired = CategoryFactory(slug="retired", name="Retired", position=3, active=False)
    TagFactory(category=cuisine, slug="italian", name="Italian", synonyms=["tuscan"])
    TagFactory(category=cuisine, slug="french", name="French", active=False)
    TagFactory(category=course, slug="dessert", name="Dessert", description="Sweet.")
    TagFactory(category=retired, slug="old", name="Old")


def _slugs(categories: list[dict[str, Any]]) -> list[str]:
    return [c["slug"] for c in categories]


def test_an_anonymous_client_is_refused_with_an_error_object(anonymous: APIClient, small_taxonomy: None) -> None:
    response = anonymous.get("/api/v1/categories")

    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "code": "not_authenticated",
            "message": "Authentication credentials were not provided.",
            "details": {},
        }
    }
    assert response["WWW-Authenticate"] == "Token"


def test_it_lists_the_categories_in_position_order_with_their_tags(
    token_client: APIClient, small_taxonomy: None
) -> None:
    response = token_client.get("/api/v1/categories")

    assert response.status_code == 200
    categories = response.json()
    assert _slugs(categories) == ["cuisine", "course", "retired"]
    cuisine = categories[0]
    assert {k: v for k, v in cuisine.items() if k not in ("id", "tags")} == {
        "slug": "cuisine",
        "name": "Cuisine",
        "description": "",
        "default_max_tags": 2,
        "relevance_threshold": 0.75,
        "active": True,
        "position": 1,
    }
    # Tags come in name order.
    assert [(t["slug"], t["active"]) for t in cuisine["tags"]] == [("french", False), ("italian", True)]
    assert cuisine["tags"][1]["synonyms"] == ["tuscan"]
    assert categories[1]["tags"][0]["description"] == "Sweet."


def test_active_true_hides_inactive_categories_and_tags(token_client: APIClient, small_taxonomy: None) -> None:
    response = token_client.get("/api/v1/categories", {"active": "true"})

    assert response.status_code == 200
    categories = response.json()
    assert _slugs(categories) == ["cuisine", "course"]
    assert [t["slug"] for t in categories[0]["tags"]] == ["italian"]


def test_the_list_does_not_query_once_per_category(
    token_client: APIClient, taxonomy: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    # The token with its user, the user's other tokens (knox drops expired ones), the categories and their
    # tags: four queries however many categories there are.
    with django_assert_max_num_queries(4):
        response = token_client.get("/api/v1/categories")

    assert response.status_code == 200
    categories = response.json()
    assert sorted(_slugs(categories)) == sorted(c["slug"] for c in taxonomy["categories"])
    assert sum(len(c["tags"]) for c in categories) == sum(len(c["tags"]) for c in taxonomy["categories"])


def test_it_returns_one_category_with_its_tags(token_client: APIClient, small_taxonomy: None) -> None:
    response = token_client.get("/api/v1/categories/course")

    assert response.status_code == 200
    course = response.json()
    assert (course["slug"], course["name"], course["default_max_tags"]) == ("course", "Course", 1)
    assert [t["slug"] for t in course["tags"]] == ["dessert"]


def test_an_unknown_category_slug_is_a_404_error_object(token_client: APIClient, small_taxonomy: None) -> None:
    response = token_client.get("/api/v1/categories/no-such-category")

    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "not_found", "message": "No category with slug 'no-such-category'.", "details": {}}
    }


def test_one_category_also_needs_authentication(anonymous: APIClient, small_taxonomy: None) -> None:
    response = anonymous.get("/api/v1/categories/course")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
