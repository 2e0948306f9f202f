"""Schemathesis against the real app (WSGI, embedded PostgreSQL, the default taxonomy): every operation of the
OpenAPI document, all checks, 100 generated requests per operation and generation mode, 0 failures.

Two settings narrow what counts as a failure, each because the document cannot say more:
- no NUL characters in generated strings (`allow-x00 = false`): the API refuses NUL anywhere with a 400
  (autotagger/tests/test_api_input.py), which OpenAPI has no way to declare on every string;
- data valid by the schema may still get a 400: slugs of categories that do not exist, recipe ids of no
  recipe, an LLM strategy with no LLM source configured are rules about the data, not the shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.test import APIClient
from schemathesis.config import SchemathesisConfig

pytestmark = pytest.mark.django_db

CONFIG = {
    "seed": 1,
    "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
    "generation": {"max-examples": 100, "allow-x00": False, "deterministic": True},
    "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "403", "404", "409", "503"]}},
    "phases": {"stateful": {"enabled": False}},
}


@pytest.fixture
def wsgi_app() -> Iterator[Any]:
    """The WSGI application, keeping the test's database connection (and transaction) across requests, as
    Django's test client does: at the end of a request Django would close a connection inside a transaction."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema(settings: Any, taxonomy: dict[str, Any], wsgi_app: Any) -> Any:
    # No request limits here: thousands of generated requests come from one client within a minute.
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": dict.fromkeys(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]),
    }
    settings.LLM_BASE_URL = ""  # the llm and hybrid strategies are refused; nothing reaches a network
    return schemathesis.openapi.from_wsgi(
        "/api/schema/?format=json", wsgi_app, config=SchemathesisConfig.from_dict(CONFIG)
    )


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_operation_answers_as_its_schema_declares(case: Any, token_client: APIClient) -> None:
    authorization = token_client._credentials["HTTP_AUTHORIZATION"]

    case.call_and_validate(headers={"Authorization": authorization})
