"""prompts.batches: the Files and Batches endpoints, spoken to over real HTTP (the scripted server), with the
gateway's client, error classes, reply checks and ledger."""

from __future__ import annotations

from typing import Any

import pytest
from django.test.client import Client
from django.urls import reverse

from prompts.batches import BatchCall, LLMBatchUnsupported, batch_results, batch_status, batch_submit
from prompts.gateway import ChatResult, LLMBadReply, LLMSpendingCapReached, LLMUnavailable, chat_request
from prompts.models import LLMCall, LLMCallOutcome, LLMSource
from prompts.sources import llm_source_get
from prompts.tests.conftest import LLMSourceFactory
from prompts.tests.helpers import SCHEMA, db_source, free_port
from prompts.tests.openai_server import OpenAIServer
from prompts.tests.test_admin_probe import form_data

pytestmark = pytest.mark.django_db


def body(source: Any, user: str) -> dict[str, Any]:
    request = chat_request(
        source=source,
        system="You tag recipes.",
        user=user,
        schema=SCHEMA,
        schema_name="recipe_tags",
        want_logprobs=True,
    )
    return request.body


def calls(*custom_ids: str) -> dict[str, BatchCall]:
    return {custom_id: BatchCall(run_id=None, prompt_version="tags-v1", mode="json_schema") for custom_id in custom_ids}


def test_a_batch_is_uploaded_as_jsonl_created_polled_and_its_answers_judged_like_live_replies(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    llm_settings.LLM_SUPPORTS_BATCH = True
    source = llm_source_get()
    openai_server.script_batch(in_progress=1, errors={"c": 429})
    openai_server.reply_json({"tags": ["carbonara"]}, usage={"prompt_tokens": 200, "completion_tokens": 10})
    openai_server.reply_text("not json")

    batch_id = batch_submit(
        source=source,
        requests=[("a", body(source, "Carbonara")), ("b", body(source, "Tacos")), ("c", body(source, "Salad"))],
    )
    waiting = batch_status(source=source, batch_id=batch_id)
    done = batch_status(source=source, batch_id=batch_id)
    results = batch_results(source=source, status=done, calls=calls("a", "b", "c"))

    lines = openai_server.batch_lines(batch_id)
    assert [(line["custom_id"], line["method"], line["url"]) for line in lines] == [
        ("a", "POST", "/v1/chat/completions"),
        ("b", "POST", "/v1/chat/completions"),
        ("c", "POST", "/v1/chat/completions"),
    ]
    assert lines[0]["body"]["response_format"]["json_schema"]["strict"] is True
    assert (waiting.status, waiting.finished) == ("in_progress", False)
    assert (done.status, done.finished, done.total, done.completed, done.failed) == ("completed", True, 3, 2, 1)
    assert done.output_file_id
    assert done.error_file_id
    answered = results["a"]
    assert isinstance(answered, ChatResult)
    assert answered.data == {"tags": ["carbonara"]}
    assert answered.constrained
    # (200 x $0.5 + 10 x $1.5) / 1,000 = $0.115 live; half in a batch.
    assert answered.cost == pytest.approx(0.0575)
    assert isinstance(results["b"], LLMBadReply)
    assert results["c"].code == "llm_rate_limited"
    ledger = list(LLMCall.objects.order_by("id").values_list("outcome", "cost", "prompt_version"))
    assert ledger == [
        (LLMCallOutcome.OK, pytest.approx(0.0575), "tags-v1"),
        (LLMCallOutcome.BAD_REPLY, pytest.approx(0.04), "tags-v1"),
        (LLMCallOutcome.RATE_LIMITED, 0.0, "tags-v1"),
    ]
    assert openai_server.requests == []


def test_a_line_for_a_custom_id_not_asked_is_ignored_and_one_with_no_line_is_absent(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    llm_settings.LLM_SUPPORTS_BATCH = True
    source = llm_source_get()
    openai_server.script_batch(missing={"b"})
    openai_server.reply_json({"tags": []})

    batch_id = batch_submit(source=source, requests=[("a", body(source, "Carbonara")), ("b", body(source, "Tacos"))])
    results = batch_results(source=source, status=batch_status(source=source, batch_id=batch_id), calls=calls("b"))

    assert results == {}
    assert not LLMCall.objects.exists()


def test_a_source_without_the_batch_api_is_refused_before_anything_is_sent(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    source = llm_source_get()

    with pytest.raises(LLMBatchUnsupported):
        batch_submit(source=source, requests=[("a", body(source, "Carbonara"))])

    assert openai_server.files == {}


def test_a_provider_out_of_reach_is_the_gateways_unavailable_error(settings: Any) -> None:
    settings.LLM_BATCH_TIMEOUT_SECONDS = 2.0
    row = LLMSourceFactory(supports_batch=True, base_url=f"http://127.0.0.1:{free_port()}/v1")
    source = llm_source_get(name=row.name)

    with pytest.raises(LLMUnavailable):
        batch_submit(source=source, requests=[("a", body(source, "Carbonara"))])
    with pytest.raises(LLMUnavailable):
        batch_status(source=source, batch_id="batch-none")


def test_a_batch_that_could_pass_the_daily_spending_cap_is_refused(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    llm_settings.LLM_SUPPORTS_BATCH = True
    llm_settings.LLM_DAILY_SPEND_CAP = 1.0
    # Each request may answer LLM_MAX_OUTPUT_TOKENS tokens: 4,096 x $1.5 / 1,000 x 0.5 is about $3.
    source = llm_source_get()

    with pytest.raises(LLMSpendingCapReached):
        batch_submit(source=source, requests=[("a", body(source, "Carbonara"))])

    assert openai_server.files == {}


def test_staff_set_the_batch_api_flag_on_a_source(staff_browser: Client, openai_server: OpenAIServer) -> None:
    row = db_source(openai_server, name="local", model="gemma")

    response = staff_browser.post(
        reverse("admin:prompts_llmsource_change", args=[row.pk]), form_data(row, supports_batch=True)
    )

    assert response.status_code == 302
    assert LLMSource.objects.get(pk=row.pk).supports_batch is True
    assert llm_source_get(name="local").supports_batch is True
