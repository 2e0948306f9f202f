"""The ways to a prompt version's page: its admin change page, the playground's version picker and the page of an
evaluation run that used it."""

from __future__ import annotations

from typing import Any

import pytest
from django.test.client import Client

from feedback.tests.prompt_versions import evaluation, versions_of
from prompts.models import PromptVersion

pytestmark = pytest.mark.django_db


def _tagging_default_active() -> PromptVersion:
    return PromptVersion.objects.select_related("prompt").get(prompt__name="tagging-default", is_active=True)


def test_the_admin_change_page_of_a_version_links_to_its_numbers(staff_browser: Client) -> None:
    (version,) = versions_of("trial", 1)

    html = staff_browser.get(f"/admin/prompts/promptversion/{version.pk}/change/").content.decode()

    assert f'<a href="/prompts/versions/{version.pk}/">Numbers of this version</a>' in html


def test_the_playground_links_the_picked_version_and_its_prompts_overview(staff_browser: Client) -> None:
    version = _tagging_default_active()

    html = staff_browser.get(f"/prompts/playground/?version={version.pk}").content.decode()

    assert f'href="/prompts/versions/{version.pk}/" id="version-numbers">Numbers of {version.label}</a>' in html
    assert f'href="/prompts/{version.prompt_id}/versions/">every version side by side</a>' in html


def test_an_evaluation_run_links_the_prompt_version_it_used(staff_browser: Client) -> None:
    (version,) = versions_of("trial", 1)
    run = evaluation(version, f1=0.5, categories={"cuisine": 0.5})
    unknown = evaluation(version, f1=0.5, categories={"cuisine": 0.5})
    unknown.prompt_version = "gone-prompt v3"
    unknown.save()

    linked = staff_browser.get(f"/evaluations/{run.pk}/").content.decode()
    unlinked = staff_browser.get(f"/evaluations/{unknown.pk}/").content.decode()

    assert f'<a href="/prompts/versions/{version.pk}/">trial v1</a>' in linked
    assert "<dd>gone-prompt v3</dd>" in unlinked


def test_staff_who_may_not_see_prompt_versions_get_no_link_from_an_evaluation_run(
    client: Client, django_user_model: Any
) -> None:
    (version,) = versions_of("trial", 1)
    run = evaluation(version, f1=0.5, categories={"cuisine": 0.5})
    client.force_login(django_user_model.objects.create_user(username="evaluator", is_staff=True))

    html = client.get(f"/evaluations/{run.pk}/").content.decode()

    assert "<dd>trial v1</dd>" in html
    assert "/prompts/versions/" not in html
