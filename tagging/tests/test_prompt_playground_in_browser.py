"""The prompt playground in a real browser: staff sign in, edit a draft of the tagging prompt, run it next to the
active version against an OpenAI-compatible server, and save it as the new active version."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from autotagger.tests.browser import expect, sign_in
from prompts.models import LLMSource, PromptActivation, PromptVersion
from prompts.tests.helpers import default_tagging_prompt
from prompts.tests.openai_server import OpenAIServer
from tagging.models import TaggingRun

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("taxonomy")]

URL = "/prompts/playground/"


def test_staff_edit_run_save_and_activate_a_draft(
    page: Any, staff: Any, llm_settings: Any, openai_server: OpenAIServer
) -> None:
    previous = default_tagging_prompt()
    label = f"{previous.prompt.name} v{previous.number + 1}"
    LLMSource.objects.create(name="lab", base_url=openai_server.url, model="lab-model", probed_at=timezone.now())
    openai_server.reply_json({"cuisine": ["italian", "klingon"], "diet": []})  # the draft's reply
    openai_server.reply_json({"cuisine": ["greek"], "diet": ["vegetarian"]})  # the active version's
    sign_in(page, username="staff", password="staff-password", next_url=URL)

    system = page.get_by_label("System template")
    expect(system).to_have_value(previous.system_template)
    system.fill("DRAFT WORDING. " + previous.system_template)
    page.get_by_label("Title", exact=True).fill("Spaghetti carbonara")
    page.get_by_label("Ingredients").fill("spaghetti\neggs\nguanciale\npecorino")
    page.get_by_label("Model source").select_option("lab")
    page.get_by_label("Tags per category (k)").fill("2")
    page.get_by_label("Cuisine", exact=True).check()
    page.get_by_label("Diet", exact=True).check()
    page.get_by_role("button", name="Run side by side").click()

    draft = page.get_by_role("region", name="Draft", exact=True)
    active = page.get_by_role("region", name="Active", exact=True)
    expect(draft.locator("code.tag-slug")).to_have_text(["italian"])
    expect(draft).to_contain_text("1 unknown · 0 over k · 0 duplicates")
    expect(draft.locator("pre.prompt-text").first).to_contain_text("DRAFT WORDING.")
    expect(active.locator("code.tag-slug")).to_have_text(["greek", "vegetarian"])
    expect(active.locator("pre.prompt-text").first).not_to_contain_text("DRAFT WORDING.")
    draft_request, active_request = openai_server.requests
    assert (draft_request["model"], active_request["model"]) == ("lab-model", "lab-model")
    assert draft_request["messages"][0]["content"].startswith("DRAFT WORDING.")
    assert TaggingRun.objects.count() == 0

    page.get_by_label("Notes").fill("Say it shorter")
    page.get_by_role("button", name="Save and activate").click()

    expect(page.get_by_role("status")).to_contain_text(f"{label} saved and activated.")
    saved = PromptVersion.objects.get(prompt=previous.prompt, number=previous.number + 1)
    expect(page.get_by_label("Started from")).to_have_value(str(saved.pk))
    expect(page.get_by_label("System template")).to_have_value("DRAFT WORDING. " + previous.system_template)
    assert (saved.is_active, saved.parent_id, saved.author_id, saved.notes) == (
        True,
        previous.pk,
        staff.pk,
        "Say it shorter",
    )
    assert saved.system_template == "DRAFT WORDING. " + previous.system_template
    assert PromptVersion.objects.filter(prompt=previous.prompt, is_active=True).get().pk == saved.pk
    activation = PromptActivation.objects.order_by("-id").first()
    assert activation is not None
    assert (activation.version_id, activation.previous_id, activation.actor_id) == (saved.pk, previous.pk, staff.pk)
