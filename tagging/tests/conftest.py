"""Fixtures of the tagging app's tests: a real OpenAI-compatible server and the LLM settings pointing at it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tagging.tests.openai_server import OpenAIServer


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    server = OpenAIServer().start()
    yield server
    server.stop()


@pytest.fixture
def llm_settings(settings: Any, openai_server: OpenAIServer) -> Any:
    """The "default" LLM source at the test server, with quick retries and prices that make costs visible."""
    settings.LLM_BASE_URL = openai_server.url
    settings.LLM_MODEL = "test-model"
    settings.LLM_API_KEY = "test-key"
    settings.LLM_DEFAULT_SOURCE = "default"
    settings.LLM_TIMEOUT_SECONDS = 5.0
    settings.LLM_MAX_CONCURRENCY = 4
    settings.LLM_PRICE_INPUT_PER_1K = 0.5
    settings.LLM_PRICE_OUTPUT_PER_1K = 1.5
    settings.LLM_SUPPORTS_JSON_SCHEMA = True
    settings.LLM_SUPPORTS_BATCH = False
    settings.LLM_MAX_RETRIES = 3
    settings.LLM_RETRY_BASE_SECONDS = 0.01
    settings.LLM_RETRY_MAX_SECONDS = 0.05
    settings.LLM_SLOT_WAIT_SECONDS = 2.0
    settings.LLM_DAILY_SPEND_CAP = 0.0
    return settings
