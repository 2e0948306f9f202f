"""prompts.admin: staff manage model sources and read the call ledger."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test.client import Client
from django.urls import reverse
from django.utils import timezone

from prompts.models import LLMCall
from prompts.tests.conftest import LLMCallFactory
from prompts.tests.helpers import db_source
from prompts.tests.openai_server import OpenAIServer

pytestmark = pytest.mark.django_db


# --- Admin ----------------------------------------------------------------------------------------


def test_the_llm_source_admin_pages_render_for_staff(staff_browser: Client, openai_server: OpenAIServer) -> None:
    source = db_source(openai_server, api_key_env="AUTOTAGGER_LLM_KEY_TEST_OPENROUTER")

    pages = [
        staff_browser.get(reverse("admin:prompts_llmsource_changelist")),
        staff_browser.get(reverse("admin:prompts_llmsource_add")),
        staff_browser.get(reverse("admin:prompts_llmsource_change", args=[source.pk])),
    ]

    assert [page.status_code for page in pages] == [200, 200, 200]
    assert "openrouter" in pages[0].content.decode()
    assert "NAME of an environment variable" in pages[1].content.decode()
    assert "AUTOTAGGER_LLM_KEY_TEST_OPENROUTER" in pages[2].content.decode()


def test_the_llm_call_list_shows_totals_per_day_and_source_for_the_filter(staff_browser: Client) -> None:
    today = timezone.localdate()
    for source, tokens, cost in (("default", 100, 0.25), ("default", 300, 0.5), ("openrouter", 1000, 2.0)):
        LLMCallFactory(source=source, input_tokens=tokens, output_tokens=10, cached_tokens=5, cost=cost)
    old = LLMCallFactory(source="default", outcome="timeout", cost=0)
    LLMCall.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=1))
    url = reverse("admin:prompts_llmcall_changelist")

    everything = staff_browser.get(url)
    filtered = staff_browser.get(url, {"source": "default"})

    assert everything.status_code == 200
    assert [
        (row["day"], row["source"], row["calls"], row["input_tokens"], row["output_tokens"], row["cost"])
        for row in everything.context["llm_totals"]
    ] == [
        (today, "default", 2, 400, 20, 0.75),
        (today, "openrouter", 1, 1000, 10, 2.0),
        (today - timedelta(days=1), "default", 1, 0, 0, 0.0),
    ]
    assert everything.context["llm_grand_total"]["calls"] == 4
    assert everything.context["llm_grand_total"]["cost"] == pytest.approx(2.75)
    assert "Totals for the current filter" in everything.content.decode()
    assert "2.7500" in everything.content.decode()
    assert [row["source"] for row in filtered.context["llm_totals"]] == ["default", "default"]
    assert filtered.context["llm_grand_total"]["cost"] == pytest.approx(0.75)


def test_the_llm_call_ledger_is_read_only(staff_browser: Client) -> None:
    call = LLMCallFactory(source="default", outcome="bad_reply", error="not JSON")

    detail = staff_browser.get(reverse("admin:prompts_llmcall_change", args=[call.pk]))
    add = staff_browser.get(reverse("admin:prompts_llmcall_add"))
    delete = staff_browser.post(reverse("admin:prompts_llmcall_delete", args=[call.pk]), {"post": "yes"})

    assert detail.status_code == 200
    assert "not JSON" in detail.content.decode()
    assert add.status_code == 403
    assert delete.status_code == 403
    assert LLMCall.objects.filter(pk=call.pk).exists()
