"""Input that used to end in a 500: NUL characters, deep nesting, lone surrogates, odd charsets."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from conftest import assert_error
from tagging.models import Recipe

pytestmark = pytest.mark.django_db

DEEP = b"[" * 5000 + b"]" * 5000
TOAST = {"title": "Toast", "ingredients": ["bread", "butter"]}


def _post_raw(client: APIClient, url: str, body: bytes, content_type: str = "application/json") -> Any:
    return client.generic("POST", url, body, content_type=content_type)


def test_a_nul_character_in_a_query_parameter_is_refused_naming_the_parameter(token_client: APIClient) -> None:
    response = token_client.get("/api/v1/recipes?tag=a%00b")

    error = assert_error(response, status=400, code="invalid")
    assert "NUL" in error["message"]
    assert "'tag'" in error["message"]


def test_a_nul_character_in_a_header_is_refused(token_client: APIClient) -> None:
    response = token_client.get("/api/v1/recipes", HTTP_X_REQUEST_ID="a\x00b")

    error = assert_error(response, status=400, code="invalid")
    assert "X-Request-Id" in error["message"]


def test_a_nul_character_in_a_page_query_is_a_plain_400_page(staff_browser: Any) -> None:
    response = staff_browser.get("/admin/tagging/recipe/?q=a%00b")

    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")
    assert b"NUL" in response.content


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        pytest.param({**TOAST, "title": "To\u0000ast"}, "$.title", id="title"),
        pytest.param({**TOAST, "ingredients": ["bread", "but\u0000ter"]}, "$.ingredients[1]", id="list item"),
        pytest.param({**TOAST, "categories": ["cui\u0000sine"]}, "$.categories[0]", id="categories"),
    ],
)
def test_a_nul_character_in_a_json_string_is_refused_naming_where(
    token_client: APIClient, payload: dict[str, Any], where: str
) -> None:
    response = token_client.post("/api/v1/recipes", payload, format="json")

    error = assert_error(response, status=400, code="parse_error")
    assert "NUL" in error["message"]
    assert where in error["message"]
    assert not Recipe.objects.exists()


def test_a_nul_character_in_a_json_key_is_refused(token_client: APIClient) -> None:
    response = _post_raw(token_client, "/api/v1/recipes", b'{"title": "Toast", "x\\u0000": 1}')

    error = assert_error(response, status=400, code="parse_error")
    assert "JSON key" in error["message"]


@pytest.mark.parametrize("url", ["/api/v1/tag", "/api/v1/recipes", "/api/v1/recipes/tag", "/api/v1/recipes/import"])
def test_five_thousand_nested_arrays_are_refused_as_too_deep(staff_client: APIClient, url: str) -> None:
    response = _post_raw(staff_client, url, DEEP)

    error = assert_error(response, status=400, code="parse_error")
    assert "nested more than 32 levels" in error["message"]


def test_nesting_just_under_the_recursion_limit_is_refused_by_depth_not_by_recursion(token_client: APIClient) -> None:
    response = _post_raw(token_client, "/api/v1/tag", b'{"title": ' + b"[" * 500 + b"]" * 500 + b"}")

    error = assert_error(response, status=400, code="parse_error")
    assert "nested more than 32 levels deep (at $.title" in error["message"]


def test_nesting_within_the_limit_is_parsed(token_client: APIClient) -> None:
    response = _post_raw(token_client, "/api/v1/recipes", b'{"title": ' + b"[" * 30 + b"]" * 30 + b"}")

    error = assert_error(response, status=400, code="invalid")
    assert "title" in error["details"]


def test_a_lone_surrogate_in_a_json_string_is_refused(token_client: APIClient) -> None:
    response = _post_raw(token_client, "/api/v1/recipes", b'{"title": "To\\ud800ast", "ingredients": ["bread"]}')

    error = assert_error(response, status=400, code="parse_error")
    assert "surrogate" in error["message"]
    assert "$.title" in error["message"]
    assert not Recipe.objects.exists()


def test_a_body_that_is_not_utf8_is_refused(token_client: APIClient) -> None:
    response = _post_raw(token_client, "/api/v1/recipes", '{"title": "Crème brûlée"}'.encode("latin-1"))

    error = assert_error(response, status=400, code="parse_error")
    assert "not UTF-8" in error["message"]


@pytest.mark.parametrize("charset", ["bz2_codec", "utf-16", "latin-1", "no-such-charset"])
@pytest.mark.parametrize("url", ["/api/v1/tag", "/api/v1/recipes", "/api/v1/recipes/import"])
def test_a_json_body_in_another_charset_than_utf8_is_refused_naming_the_charset(
    staff_client: APIClient, url: str, charset: str
) -> None:
    body = json.dumps({"recipes": [{"id": "1", **TOAST}]}) if url.endswith("import") else json.dumps(TOAST)

    response = _post_raw(staff_client, url, body.encode(), content_type=f"application/json; charset={charset}")

    error = assert_error(response, status=415, code="unsupported_charset")
    assert charset in error["message"]
    assert not Recipe.objects.exists()


@pytest.mark.parametrize("charset", ["utf-16", "latin-1"])
def test_a_query_with_an_odd_charset_is_refused_before_it_is_decoded(token_client: APIClient, charset: str) -> None:
    response = token_client.generic("GET", "/api/v1/recipes?tag=x", content_type=f"application/json; charset={charset}")

    assert_error(response, status=415, code="unsupported_charset")


@pytest.mark.parametrize("charset", ["utf-8", "UTF8", "us-ascii"])
def test_a_json_body_declared_utf8_or_ascii_is_accepted(token_client: APIClient, charset: str) -> None:
    body = json.dumps(TOAST).encode()

    response = _post_raw(token_client, "/api/v1/recipes", body, content_type=f"application/json; charset={charset}")

    assert response.status_code == 201, response.content
    assert Recipe.objects.get().title == "Toast"


def test_the_json_import_refuses_a_lone_surrogate_naming_where(staff_client: APIClient) -> None:
    body = b'{"recipes": [{"id": "1", "title": "To\\udc00ast", "ingredients": ["bread"]}]}'

    response = _post_raw(staff_client, "/api/v1/recipes/import", body)

    error = assert_error(response, status=400, code="parse_error")
    assert "$.recipes[0].title" in error["message"]
    assert not Recipe.objects.exists()


def test_an_import_line_with_a_lone_surrogate_or_deep_nesting_is_reported_and_the_others_stored(
    staff_client: APIClient,
) -> None:
    lines = [
        b'{"id": "1", "title": "To\\ud800ast", "ingredients": ["bread"]}',
        b'{"id": "2", "title": "Toast", "ingredients": ["bread", "\\udfff"]}',
        b'{"id": "3", "title": "Deep", "ingredients": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"id": "4", "title": "Jam toast", "ingredients": ["bread", "jam"]}',
    ]

    response = _post_raw(staff_client, "/api/v1/recipes/import", b"\n".join(lines), "application/x-ndjson")

    assert response.status_code == 200, response.content
    report = response.json()
    assert report["created"] == 1
    errors = {error["line"]: error["message"] for error in report["errors"]}
    assert set(errors) == {1, 2, 3}
    assert "surrogate" in errors[1]
    assert "surrogate" in errors[2]
    assert "nested too deeply" in errors[3]
    assert list(Recipe.objects.values_list("title", flat=True)) == ["Jam toast"]


# --- Found by Schemathesis ---------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["active=null", "active=1", "active=true&active=false"])
def test_a_boolean_query_parameter_takes_only_true_or_false_once(token_client: APIClient, query: str) -> None:
    response = token_client.get(f"/api/v1/categories?{query}")

    error = assert_error(response, status=400, code="invalid")
    assert "active" in error["details"]


@pytest.mark.parametrize("query", ["page=", "page=abc", "page=0", "page=1&page=2"])
def test_a_page_that_is_no_page_number_is_refused(token_client: APIClient, query: str) -> None:
    response = token_client.get(f"/api/v1/recipes?{query}")

    error = assert_error(response, status=400, code="invalid")
    assert "page" in error["details"]


def test_a_page_past_the_last_is_a_404(token_client: APIClient) -> None:
    response = token_client.get("/api/v1/recipes?page=2")

    assert_error(response, status=404, code="not_found")


@pytest.mark.parametrize(("field", "value"), [("source", 0), ("categories", [1])])
def test_a_number_where_a_slug_belongs_is_refused(
    token_client: APIClient, taxonomy: dict[str, Any], field: str, value: Any
) -> None:
    response = token_client.post("/api/v1/tag", {**TOAST, field: value}, format="json")

    error = assert_error(response, status=400, code="invalid")
    assert field in error["details"]


@pytest.mark.parametrize("strategy", [{}, [], 1])
def test_a_strategy_that_is_no_string_is_refused_not_a_500(token_client: APIClient, strategy: Any) -> None:
    response = token_client.post("/api/v1/recipes/1/tag", {"strategy": strategy}, format="json")

    assert response.status_code in (400, 404), response.content
    assert response.json()["error"]["code"] in ("invalid", "not_found")


@pytest.mark.parametrize("query", ["labeled=1", "labeled=null", "create_taxonomy=yes", "labeled=true&labeled=false"])
def test_an_import_option_that_is_no_boolean_is_refused_whatever_the_body(staff_client: APIClient, query: str) -> None:
    response = staff_client.post(f"/api/v1/recipes/import?{query}", {"recipes": [{"id": "1", **TOAST}]}, format="json")

    assert_error(response, status=400, code="invalid")
    assert not Recipe.objects.exists()
