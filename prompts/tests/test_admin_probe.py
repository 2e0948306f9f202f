"""prompts.admin: a source's capabilities are probed when staff add it or point it elsewhere, and from the
"Probe capabilities" action; staff can override them and set the confidence calibration."""

from __future__ import annotations

from typing import Any

import pytest
from django.test.client import Client
from django.urls import reverse

from prompts.models import LLMCall, LLMSource
from prompts.tests.conftest import LLMSourceFactory
from prompts.tests.helpers import db_source
from prompts.tests.openai_server import OpenAIServer
from prompts.tests.test_probe import script_llama_cpp

pytestmark = pytest.mark.django_db


def form_data(source: LLMSource | None = None, **changes: Any) -> dict[str, Any]:
    """The change form's fields as a browser posts them (unticked boxes absent)."""
    values: dict[str, Any] = {
        "name": "local",
        "active": True,
        "base_url": "http://127.0.0.1:9/v1",
        "model": "gemma",
        "api_key_env": "",
        "timeout_seconds": 10,
        "max_concurrency": 2,
        "price_input_per_1k": 0,
        "price_output_per_1k": 0,
        "supports_json_schema": True,
        "supports_json_object_schema": True,
        "supports_json_object": True,
        "supports_tools": False,
        "supports_logprobs": True,
        "capabilities_from_staff": False,
        "confidence_calibration": "[]",
    }
    if source is not None:
        values.update({name: getattr(source, name) for name in values if name != "confidence_calibration"})
        values["confidence_calibration"] = str(source.confidence_calibration).replace("(", "[").replace(")", "]")
    values.update(changes)
    return {name: value for name, value in values.items() if value is not False}


def test_adding_a_source_probes_it_after_the_save_commits(
    staff_browser: Client, openai_server: OpenAIServer, django_capture_on_commit_callbacks: Any
) -> None:
    script_llama_cpp(openai_server)

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_browser.post(
            reverse("admin:prompts_llmsource_add"), form_data(base_url=openai_server.url), follow=True
        )

    assert response.status_code == 200
    row = LLMSource.objects.get(name="local")
    assert row.probed_at is not None
    assert (row.supports_json_schema, row.supports_json_object_schema, row.supports_tools) == (False, True, True)
    assert LLMCall.objects.filter(source="local", prompt_version="probe").count() == 5


def test_editing_a_capability_keeps_it_and_does_not_probe(
    staff_browser: Client, openai_server: OpenAIServer, django_capture_on_commit_callbacks: Any
) -> None:
    row = db_source(openai_server, name="local", supports_json_schema=True)

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_browser.post(
            reverse("admin:prompts_llmsource_change", args=[row.pk]), form_data(row, supports_json_schema=False)
        )

    assert response.status_code == 302
    row.refresh_from_db()
    assert row.supports_json_schema is False
    assert row.capabilities_from_staff is True
    assert openai_server.requests == []


def test_pointing_a_source_at_another_url_probes_it_again(
    staff_browser: Client, openai_server: OpenAIServer, django_capture_on_commit_callbacks: Any
) -> None:
    row = LLMSourceFactory(name="local", base_url="http://127.0.0.1:9/v1")
    script_llama_cpp(openai_server)

    with django_capture_on_commit_callbacks(execute=True):
        staff_browser.post(
            reverse("admin:prompts_llmsource_change", args=[row.pk]), form_data(row, base_url=openai_server.url)
        )

    assert len(openai_server.requests) == 5
    row.refresh_from_db()
    assert row.supports_json_schema is False


def test_the_probe_action_probes_the_selected_sources(staff_browser: Client, openai_server: OpenAIServer) -> None:
    row = db_source(openai_server, name="local")
    script_llama_cpp(openai_server)

    response = staff_browser.post(
        reverse("admin:prompts_llmsource_changelist"),
        {"action": "probe_capabilities", "_selected_action": [row.pk]},
        follow=True,
    )

    row.refresh_from_db()
    assert row.supports_json_schema is False
    assert "json_object+schema: enforced" in row.probe_summary
    assert "Probe of local: json_schema: refused" in response.content.decode()


def test_a_calibration_must_be_pairs_of_numbers_between_zero_and_one(
    staff_browser: Client, openai_server: OpenAIServer
) -> None:
    row = db_source(openai_server, name="local")

    rejected = staff_browser.post(
        reverse("admin:prompts_llmsource_change", args=[row.pk]),
        form_data(row, confidence_calibration="[[0.5, 1.5]]"),
    )
    accepted = staff_browser.post(
        reverse("admin:prompts_llmsource_change", args=[row.pk]),
        form_data(row, confidence_calibration="[[0.5, 0.3], [0.9, 0.7]]"),
    )

    assert rejected.status_code == 200
    assert "is not a [stated, observed] pair of numbers between 0 and 1" in rejected.content.decode()
    assert accepted.status_code == 302
    row.refresh_from_db()
    assert row.confidence_calibration == [[0.5, 0.3], [0.9, 0.7]]
