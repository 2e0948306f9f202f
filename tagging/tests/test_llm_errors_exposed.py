"""What a provider answers stays with staff: its error body is in the LLM call ledger (admin), never in a
run's error or an API response, which carry a stable code and a fixed message; and a source name a client
guesses wrong is refused without naming the others."""

from __future__ import annotations

from typing import Any

import pytest
from django.test.client import Client
from django.urls import reverse
from rest_framework.test import APIClient

from conftest import assert_error
from prompts.gateway import LLMUnavailable
from prompts.models import LLMCall
from prompts.tests.helpers import db_source
from prompts.tests.openai_server import OpenAIServer
from tagging.models import RunStatus, TaggingRun
from tagging.tests.helpers import run_failed

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy")]

# What an attacker's "provider" would echo back: a secret read from where the base URL pointed.
LEAKED = "REDIS_URL=redis://:hunter2@cache:6379/0"


def test_a_providers_500_body_reaches_neither_the_run_nor_the_api_but_stays_in_the_ledger(
    llm_settings: Any, openai_server: OpenAIServer, token_client: APIClient, staff_browser: Client
) -> None:
    llm_settings.LLM_MAX_RETRIES = 0
    openai_server.reply_status(500, LEAKED)
    queued = token_client.post(
        "/api/v1/tag", {"title": "Toast", "ingredients": ["bread"], "strategy": "llm"}, format="json"
    )
    assert queued.status_code == 202, queued.content

    run = run_failed(TaggingRun.objects.get(pk=queued.json()["id"]))
    polled = token_client.get(f"/api/v1/runs/{run.pk}")
    call = LLMCall.objects.get(run_id=run.pk)
    ledger_page = staff_browser.get(reverse("admin:prompts_llmcall_change", args=[call.pk]))

    assert run.status == RunStatus.FAILED
    assert run.error == LLMUnavailable.default_message
    assert polled.status_code == 200
    assert polled.json()["error"] == LLMUnavailable.default_message
    assert "hunter2" not in polled.content.decode()
    assert LEAKED in call.error
    assert "hunter2" in ledger_page.content.decode()


def test_an_unknown_source_is_a_400_that_names_no_other_source(
    llm_settings: Any, openai_server: OpenAIServer, token_client: APIClient
) -> None:
    db_source(openai_server, name="openrouter")
    db_source(openai_server, name="internal-finance", active=False)

    response = token_client.post(
        "/api/v1/tag",
        {"title": "Toast", "ingredients": ["bread"], "strategy": "llm", "source": "antropic"},
        format="json",
    )

    error = assert_error(response, status=400, code="llm_not_configured")
    assert "antropic" in error["message"]
    body = response.content.decode()
    assert "openrouter" not in body
    assert "internal-finance" not in body
    assert "default" not in body
    assert not TaggingRun.objects.exists()
