"""PostgreSQL down or unreachable: every API request answers a JSON 503, pages a short 503 page, and both
recover once the database is back."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from conftest import assert_error
from taxonomy.models import Category

pytestmark = pytest.mark.django_db(transaction=True)


def _closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def database_down() -> Iterator[None]:
    """The default connection pointed at a port where no server answers, as when PostgreSQL is stopped;
    restored (and reconnected) afterwards."""
    saved = {key: connection.settings_dict[key] for key in ("HOST", "PORT", "OPTIONS")}
    connection.close()
    options = {key: value for key, value in saved["OPTIONS"].items() if key != "host"}
    connection.settings_dict.update(
        HOST="127.0.0.1", PORT=str(_closed_port()), OPTIONS={**options, "connect_timeout": 2}
    )
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.update(saved)


@pytest.fixture
def session_client(staff: Any) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(staff)
    return client


@pytest.fixture
def token_api(token_client: APIClient) -> APIClient:
    token_client.raise_request_exception = False
    return token_client


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/api/v1/categories"),
        ("GET", "/api/v1/recipes?tag=x"),
        ("GET", "/api/v1/runs/1"),
        ("POST", "/api/v1/tag"),
        ("DELETE", "/api/v1/recipes/1"),
    ],
)
def test_an_api_request_answers_a_json_503_while_the_database_is_down(
    token_api: APIClient, database_down: None, method: str, url: str
) -> None:
    response = token_api.generic(method, url, '{"title": "Toast", "ingredients": ["bread"]}', "application/json")

    error = assert_error(response, status=503, code="database_unavailable")
    assert response["Content-Type"] == "application/json"
    assert response["Retry-After"] == "5"
    assert "127.0.0.1" not in error["message"]  # no driver details


def test_a_signed_in_api_request_answers_a_json_503_while_the_database_is_down(
    session_client: Client, database_down: None
) -> None:
    response = session_client.get("/api/v1/categories")

    assert_error(response, status=503, code="database_unavailable")


def test_a_page_answers_a_plain_503_page_while_the_database_is_down(
    session_client: Client, database_down: None
) -> None:
    response = session_client.get("/")

    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert b"database cannot be reached" in response.content


def test_the_api_recovers_when_the_database_is_back(token_api: APIClient) -> None:
    Category.objects.create(slug="cuisine", name="Cuisine")
    saved = {key: connection.settings_dict[key] for key in ("HOST", "PORT", "OPTIONS")}
    connection.close()
    connection.settings_dict.update(HOST="127.0.0.1", PORT=str(_closed_port()), OPTIONS={"connect_timeout": 2})

    down = token_api.get("/api/v1/categories")
    connection.close()
    connection.settings_dict.update(saved)
    back = token_api.get("/api/v1/categories")

    assert_error(down, status=503, code="database_unavailable")
    assert back.status_code == 200, back.content
    assert [c["slug"] for c in back.json()] == ["cuisine"]
