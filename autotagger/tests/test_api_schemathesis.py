"""Schemathesis against the real app (WSGI, embedded PostgreSQL, the default taxonomy): every operation of the
OpenAPI document, all checks, 100 generated requests per operation and generation mode, 0 failures.

Two settings narrow what counts as a failure, each because the document cannot say more:
- no NUL characters in generated strings (`allow-x00 = false`): the API refuses NUL anywhere with a 400
  (autotagger/tests/test_api_input.py), which OpenAPI has no way to declare on every string;
- data valid by the schema may still get a 400: slugs of categories that do not exist, recipe ids of no
  recipe, an LLM strategy with no LLM source configured are rules about the data, not the shape;
- invalid data may get a 413 rather than a 400 when it is also over the body size limit.
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
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import negative_data_rejection

pytestmark = pytest.mark.django_db

CONFIG = {
    "seed": 1,
    "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
    "generation": {"max-examples": 100, "allow-x00": False, "deterministic": True},
    "checks": {
        "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "403", "404", "409", "503"]},
        # Schemathesis's defaults and 413: an invalid body over the size limit is refused for its size first.
        "negative_data_rejection": {
            "expected-statuses": ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "429", "5xx"]
        },
    },
    "phases": {"stateful": {"enabled": False}},
}


# Loaded once, at collection: the schema view needs neither the database nor a signed-in user.
schema = schemathesis.openapi.from_wsgi(
    "/api/schema/?format=json", get_wsgi_application(), config=SchemathesisConfig.from_dict(CONFIG)
)


@pytest.fixture
def api(settings: Any, taxonomy: dict[str, Any]) -> Iterator[None]:
    """The app as the generated requests meet it: the default taxonomy, no request limits (thousands of
    requests come from one client within a minute), no LLM source (the llm and hybrid strategies are
    refused, nothing reaches a network), and the test's database connection kept across requests as Django's
    test client keeps it (at the end of a request Django would close a connection inside a transaction)."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": dict.fromkeys(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]),
    }
    settings.LLM_BASE_URL = ""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_operation_answers_as_its_schema_declares(case: Any, api: None, token_client: APIClient) -> None:
    authorization = token_client._credentials["HTTP_AUTHORIZATION"]

    case.call_and_validate(headers={"Authorization": authorization})


@schema.include(operation_id="recipes_import").parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_the_import_answers_a_superuser_as_its_schema_declares(
    case: Any, api: None, token_client: APIClient, api_client_user: Any
) -> None:
    # As a client allowed to import (everyone else gets 403 before the body is read).
    api_client_user.is_staff = api_client_user.is_superuser = True
    api_client_user.save(update_fields=["is_staff", "is_superuser"])
    authorization = token_client._credentials["HTTP_AUTHORIZATION"]
    # The import checks each recipe on its own, by design: a list of recipes where some break the item schema
    # is answered 200 with those in `errors` (the others stored). Any other invalid body must be refused.
    per_recipe = isinstance(case.body, dict) and isinstance(case.body.get("recipes"), list)

    case.call_and_validate(
        headers={"Authorization": authorization}, excluded_checks=[negative_data_rejection] if per_recipe else None
    )


@schema.include(operation_id="feedback_list").parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_the_feedback_list_answers_a_reviewer_as_its_schema_declares(
    case: Any, api: None, reviewer: Any, api_client_for: Any
) -> None:
    # As a client allowed to read feedback (an app's token gets 403 before the query is read).
    authorization = api_client_for(reviewer)._credentials["HTTP_AUTHORIZATION"]

    case.call_and_validate(headers={"Authorization": authorization})


@pytest.fixture
def own_run(api_client_user: Any, taxonomy: dict[str, Any]) -> Any:
    from tagging.models import RunStatus, TagAssignment, TaggingRun
    from tagging.services.recipes import recipe_create
    from taxonomy.models import Tag

    recipe = recipe_create(title="Miso soup", ingredients=["miso", "tofu"], instructions="", created_by=api_client_user)
    run = TaggingRun.objects.create(
        recipe=recipe, strategy="similarity", status=RunStatus.SUCCEEDED, created_by=api_client_user
    )
    TagAssignment.objects.create(
        run=run, tag=Tag.objects.get(category__slug="cuisine", slug="japanese"), score=0.9, rank=1
    )
    return run


@schema.include(operation_id="runs_feedback_create").parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_feedback_on_the_clients_own_run_answers_as_its_schema_declares(
    case: Any, api: None, token_client: APIClient, own_run: Any
) -> None:
    # Generated run ids name no run of the client (404 before the body is read): the body is checked against a
    # run it owns, unless the case is about an invalid path.
    path = case.meta.components.get(ParameterLocation.PATH) if case.meta is not None else None
    if path is None or path.mode.is_positive:
        case.path_parameters = {**(case.path_parameters or {}), "run_id": own_run.pk}
    authorization = token_client._credentials["HTTP_AUTHORIZATION"]

    case.call_and_validate(headers={"Authorization": authorization})
