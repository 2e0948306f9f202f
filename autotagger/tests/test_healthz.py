"""/healthz: database (with pgvector), broker and embedding model, for load balancers and `make run`."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from pytest_django import Settings

pytestmark = pytest.mark.django_db


def test_it_answers_200_when_the_database_broker_and_embedding_model_are_up(staff_browser: Client) -> None:
    response = staff_browser.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    checks = body["checks"]
    assert checks["database"]["ok"] is True
    assert re.fullmatch(r"\d+\.\d+\.\d+", checks["database"]["pgvector"])
    assert checks["broker"] == {"ok": True}
    assert checks["embedding_model"] == {
        "ok": True,
        "model": settings.EMBEDDING_MODEL,
        "dimensions": settings.EMBEDDING_DIMENSIONS,
    }


def test_it_needs_no_credentials(client: Client) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert "Location" not in response


def test_it_tells_anonymous_callers_only_whether_each_check_passes(client: Client) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": {"ok": True}, "broker": {"ok": True}, "embedding_model": {"ok": True}},
    }


def test_it_hides_the_driver_error_from_anonymous_callers_when_the_broker_is_down(
    client: Client, settings: Settings
) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": {"ok": True}, "broker": {"ok": False}, "embedding_model": {"ok": True}},
    }
    assert b"127.0.0.1" not in response.content


def test_it_hides_the_details_from_signed_in_users_who_are_not_staff(client: Client, reviewer: Any) -> None:
    client.force_login(reviewer)

    response = client.get("/healthz")

    assert response.json()["checks"]["database"] == {"ok": True}


def test_it_answers_503_naming_the_broker_quickly_when_the_broker_is_down(
    staff_browser: Client, settings: Settings
) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    started = time.monotonic()

    response = staff_browser.get("/healthz")

    elapsed = time.monotonic() - started
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["broker"]["ok"] is False
    assert "127.0.0.1:1" in body["checks"]["broker"]["error"]
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["embedding_model"]["ok"] is True
    assert elapsed < 3


def test_it_refuses_other_methods_than_get(client: Client) -> None:
    response = client.post("/healthz")

    assert response.status_code == 405
