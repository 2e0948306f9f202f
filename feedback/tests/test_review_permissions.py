"""Who may use the review pages: reviewers and staff; an API client gets 403, an anonymous visitor the login page."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from feedback.tests.review_helpers import signed_in, waiting_run
from taxonomy.models import Category

pytestmark = pytest.mark.django_db


@pytest.fixture
def pages(cuisine: Category) -> list[str]:
    run = waiting_run({cuisine.tags.get(slug="italian"): 0.8})
    return ["/review/", "/review/next", "/review/tags?q=ita", f"/recipes/{run.recipe_id}/review/"]


def test_it_sends_an_anonymous_visitor_to_the_login_page(client: Client, pages: list[str]) -> None:
    for url in pages:
        response = client.get(url)

        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/?next="), url


def test_it_refuses_an_api_client(api_client_user: Any, pages: list[str]) -> None:
    browser = signed_in(api_client_user)

    for url in pages:
        assert browser.get(url).status_code == 403, url
    assert browser.post("/review/bulk-accept", {"min_score": "0.5"}).status_code == 403
    assert browser.post(pages[-1], {"add": "cuisine/italian"}).status_code == 403


@pytest.mark.parametrize("role", ["reviewer", "staff"])
def test_it_lets_reviewers_and_staff_in(role: str, request: pytest.FixtureRequest, pages: list[str]) -> None:
    browser = signed_in(request.getfixturevalue(role))

    assert browser.get(pages[0]).status_code == 200
    assert browser.get(pages[1]).status_code == 302  # to the leased recipe
    assert browser.get(pages[2]).status_code == 200
    assert browser.get(pages[3]).status_code == 200


def test_it_answers_404_for_an_unknown_recipe(reviewer: Any) -> None:
    response = signed_in(reviewer).get("/recipes/999999/review/")

    assert response.status_code == 404


def test_the_dashboard_and_run_page_link_reviewers_to_the_review_pages(
    reviewer: Any, api_client_user: Any, cuisine: Category
) -> None:
    run = waiting_run({cuisine.tags.get(slug="italian"): 0.8})
    run.recipe.created_by = api_client_user
    run.recipe.save()
    run.created_by = api_client_user
    run.save()
    curator, client_browser = signed_in(reviewer), signed_in(api_client_user)

    assert 'href="/review/"' in curator.get("/").content.decode()
    assert f'href="/recipes/{run.recipe_id}/review/"' in curator.get(f"/runs/{run.pk}/").content.decode()
    assert 'href="/review/"' not in client_browser.get("/").content.decode()
    assert "/review/" not in client_browser.get(f"/runs/{run.pk}/").content.decode()
