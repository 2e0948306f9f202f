"""Unknown URLs under /api/ answer the API's JSON error, as do methods an endpoint does not allow."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from conftest import assert_error

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "url",
    ["/api/", "/api/v1/", "/api/v1/nothing-here", "/api/v2/tag", "/api/v1/recipes/abc", "/api/v1/runs/1/extra"],
)
def test_an_unknown_api_url_answers_a_json_404(token_client: APIClient, url: str) -> None:
    response = token_client.get(url)

    error = assert_error(response, status=404, code="not_found")
    assert response["Content-Type"] == "application/json"
    assert url in error["message"]


def test_an_unknown_api_url_answers_a_json_404_to_anonymous_visitors_too(anonymous: APIClient) -> None:
    response = anonymous.post("/api/v1/nothing-here", {}, format="json")

    assert_error(response, status=404, code="not_found")


def test_an_unknown_api_url_answers_a_json_404_with_debug_on_too(token_client: APIClient, settings: Any) -> None:
    settings.DEBUG = True  # as `make run` serves: Django would show its technical 404 page

    response = token_client.get("/api/v1/nothing-here")

    assert_error(response, status=404, code="not_found")


def test_an_api_url_without_its_final_slash_is_still_redirected(client: Client) -> None:
    response = client.get("/api/docs")

    assert response.status_code == 301
    assert response["Location"] == "/api/docs/"


def test_an_unknown_page_outside_the_api_is_still_an_html_404(client: Client) -> None:
    response = client.get("/no-such-page")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(("method", "url"), [("DELETE", "/api/v1/tag"), ("PUT", "/api/v1/categories")])
def test_a_method_an_endpoint_does_not_allow_answers_a_json_405(token_client: APIClient, method: str, url: str) -> None:
    response = token_client.generic(method, url)

    error = assert_error(response, status=405, code="method_not_allowed")
    assert method in error["message"]
    assert response["Allow"]


def test_an_unexpected_error_under_the_api_is_a_json_500_not_a_page(
    token_client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("taxonomy.api.views.categories_list", broken)
    token_client.raise_request_exception = False

    response = token_client.get("/api/v1/categories")

    error = assert_error(response, status=500, code="server_error")
    assert "a bug" not in error["message"]
    assert response["Content-Type"] == "application/json"
