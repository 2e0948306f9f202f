"""/review/tags: the search the review page asks as a reviewer types a tag to add."""

from __future__ import annotations

from typing import Any

import pytest

from feedback.tests.review_helpers import signed_in
from taxonomy.tests.conftest import CategoryFactory, TagFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def tags(db: None) -> None:
    cuisine = CategoryFactory(slug="cuisine", name="Cuisine")
    TagFactory(category=cuisine, slug="italian", name="Italian", synonyms=["tuscan", "sicilian"])
    TagFactory(category=cuisine, slug="mediterranean", name="Mediterranean")
    TagFactory(category=cuisine, slug="old-italian", name="Old Italian", active=False)
    retired = CategoryFactory(slug="retired", name="Retired", active=False)
    TagFactory(category=retired, slug="italianate", name="Italianate")


def search(user: Any, query: str) -> list[str]:
    response = signed_in(user).get("/review/tags", {"q": query})
    assert response.status_code == 200
    return [f"{tag['category']}/{tag['slug']}" for tag in response.json()["tags"]]


def test_it_finds_active_tags_by_name_first(reviewer: Any, tags: None) -> None:
    assert search(reviewer, "ital") == ["cuisine/italian"]
    assert search(reviewer, "an") == ["cuisine/italian", "cuisine/mediterranean"]


def test_it_finds_a_tag_by_a_synonym(reviewer: Any, tags: None) -> None:
    assert search(reviewer, "Sicil") == ["cuisine/italian"]


def test_an_empty_query_finds_nothing(reviewer: Any, tags: None) -> None:
    assert search(reviewer, "  ") == []


def test_it_answers_with_names_categories_and_synonyms(staff: Any, tags: None) -> None:
    response = signed_in(staff).get("/review/tags", {"q": "tuscan"})

    [tag] = response.json()["tags"]
    assert tag["name"] == "Italian"
    assert tag["category_name"] == "Cuisine"
    assert tag["synonyms"] == ["tuscan", "sicilian"]
