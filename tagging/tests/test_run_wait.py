"""Waiting for a run on the worker ("wait"): bounded by TAGGING_MAX_WAIT_SECONDS, polling less and less often."""

from __future__ import annotations

import time
from typing import Any

import pytest
from rest_framework.test import APIClient

from conftest import assert_error
from tagging.dispatch import run_wait
from tagging.models import RunStatus
from tagging.tests.conftest import TaggingRunFactory

pytestmark = pytest.mark.django_db


def test_a_client_may_not_ask_to_wait_longer_than_fifteen_seconds_by_default(
    token_client: APIClient, taxonomy: dict[str, Any]
) -> None:
    response = token_client.post(
        "/api/v1/tag", {"title": "Toast", "ingredients": ["bread"], "strategy": "llm", "wait": 16}, format="json"
    )

    error = assert_error(response, status=400, code="invalid")
    assert "wait" in error["details"]


def test_waiting_for_a_run_that_does_not_finish_polls_with_backoff_and_stops_at_the_deadline(
    django_assert_max_num_queries: Any,
) -> None:
    run = TaggingRunFactory(status=RunStatus.QUEUED)
    started = time.monotonic()

    with django_assert_max_num_queries(9):  # at 0.1 s intervals this would be 21 queries
        waited = run_wait(run_id=run.pk, seconds=2.0)

    assert waited.status == RunStatus.QUEUED
    assert 1.9 <= time.monotonic() - started < 3.0


def test_waiting_for_a_finished_run_answers_at_once(django_assert_num_queries: Any) -> None:
    run = TaggingRunFactory(status=RunStatus.SUCCEEDED)

    with django_assert_num_queries(1):
        waited = run_wait(run_id=run.pk, seconds=10.0)

    assert waited.status == RunStatus.SUCCEEDED
