"""The prompt playground (/prompts/playground/): a draft of the tagging prompt and the active version run side by
side on one recipe through the llm strategy's exchange with a real OpenAI-compatible server, nothing stored but
the ledger's calls, and the draft saved as a new version (and activated)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test.client import Client
from django.utils import timezone

from prompts.models import DEFAULT_TAGGING_PROMPT, LLMCall, LLMSource, PromptActivation, PromptVersion
from prompts.rendering import RECIPE_OPEN
from prompts.tests.openai_server import OpenAIServer
from tagging.models import Recipe, TagAssignment, TaggingRun
from tagging.tests.conftest import RecipeFactory
from tagging.tests.helpers import user_prompt

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy")]

URL = "/prompts/playground/"


def _tags_shown(side: str) -> list[str]:
    """The tag slugs a side of the page lists as the validated reply (not those its rendered prompt offers)."""
    return re.findall(r'<code class="tag-slug">([^<]+)</code>', side.split("System message")[0])


def _user(django_user_model: Any, name: str, *, is_staff: bool, perms: tuple[str, ...] = ()) -> Any:
    user = django_user_model.objects.create_user(username=name, password="pw", is_staff=is_staff)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="prompts", codename__in=perms))
    return user


def _active() -> PromptVersion:
    return PromptVersion.objects.get(prompt__name=DEFAULT_TAGGING_PROMPT, is_active=True)


def _draft(**fields: Any) -> dict[str, Any]:
    active = _active()
    return {
        "version": active.pk,
        "system_template": "DRAFT WORDING. " + active.system_template,
        "user_template": active.user_template,
        "source": "",  # none needed to save; the runs name one
        "categories": ["cuisine", "diet"],
        "k": 2,
        "title": "Spaghetti carbonara",
        "ingredients": "spaghetti\neggs\nguanciale\npecorino",
        "instructions": "Cook the pasta; toss with eggs and cheese.",
        "action": "run",
        **fields,
    }


def test_an_anonymous_visitor_is_sent_to_the_login_page(client: Client) -> None:
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize(
    ("is_staff", "perms", "status"),
    [
        (False, ("view_promptversion", "add_promptversion"), 403),
        (True, (), 403),
        (True, ("view_promptversion",), 200),
        (True, ("add_promptversion",), 200),
    ],
)
def test_only_staff_who_may_see_prompt_versions_open_it(
    client: Client, django_user_model: Any, is_staff: bool, perms: tuple[str, ...], status: int
) -> None:
    client.force_login(_user(django_user_model, "someone", is_staff=is_staff, perms=perms))
    assert client.get(URL).status_code == status


def test_it_starts_from_the_active_version_of_the_tagging_prompt(staff_browser: Client) -> None:
    page = staff_browser.get(URL).content.decode()
    active = _active()
    assert f'<option value="{active.pk}" selected' in page
    assert "Allowed tags per category" not in page  # the template, not a rendering
    assert "$recipe" in page


def test_it_runs_the_draft_and_the_active_version_side_by_side_and_stores_no_tags(
    llm_settings: Any, openai_server: OpenAIServer, staff_browser: Client
) -> None:
    runs, assignments, recipes = TaggingRun.objects.count(), TagAssignment.objects.count(), Recipe.objects.count()
    openai_server.reply_json(
        {"cuisine": ["italian", "italian", "klingon", "french"], "diet": []},
        usage={"prompt_tokens": 900, "completion_tokens": 30},
    )
    openai_server.reply_json({"cuisine": ["greek"], "diet": ["vegetarian"]})

    response = staff_browser.post(URL, _draft(source="default", k=1))

    assert response.status_code == 200, response.content.decode()[:2000]
    page = response.content.decode()
    draft_request, active_request = openai_server.requests
    assert draft_request["messages"][0]["content"].startswith("DRAFT WORDING.")
    assert not active_request["messages"][0]["content"].startswith("DRAFT WORDING.")
    assert RECIPE_OPEN in user_prompt(draft_request)
    # Both rendered prompts, both replies' tags, what validation dropped, and the usage of each side.
    assert page.count("DRAFT WORDING.") >= 2  # the textarea and the draft's system message
    assert "&lt;recipe&gt;" in page
    draft, active = page.split('id="side-draft"')[1].split('id="side-active"')
    assert _tags_shown(draft) == ["italian"]
    assert "1 unknown · 1 over k · 1 duplicates" in draft
    assert "900 prompt · 30 completion" in draft
    assert _tags_shown(active) == ["greek", "vegetarian"]
    assert "0 unknown · 0 over k · 0 duplicates" in active
    # Nothing stored but the ledger's two calls, which belong to no run and say they were the playground's.
    assert (TaggingRun.objects.count(), TagAssignment.objects.count(), Recipe.objects.count()) == (
        runs,
        assignments,
        recipes,
    )
    calls = list(LLMCall.objects.order_by("id"))
    assert [c.run_id for c in calls] == [None, None]
    assert calls[0].prompt_version == f"draft from {_active().label} (playground)"
    assert calls[1].prompt_version == f"{_active().label} (playground)"


def test_it_runs_on_a_stored_recipe_through_a_source_staff_added(
    llm_settings: Any, openai_server: OpenAIServer, staff_browser: Client
) -> None:
    LLMSource.objects.create(name="lab", base_url=openai_server.url, model="lab-model", probed_at=timezone.now())
    stored = RecipeFactory(title="Miso soup", ingredients=["miso", "tofu"])
    openai_server.reply_json({"cuisine": ["japanese"]}).reply_json({"cuisine": ["japanese"]})

    response = staff_browser.post(
        URL, _draft(source="lab", recipe=stored.pk, title="", ingredients="", instructions="", categories=["cuisine"])
    )

    assert response.status_code == 200
    assert [r["model"] for r in openai_server.requests] == ["lab-model", "lab-model"]
    assert "Miso soup" in user_prompt(openai_server.requests[0])
    assert _tags_shown(response.content.decode().split('id="side-active"')[1]) == ["japanese"]


def test_a_model_failure_is_shown_on_its_side_and_the_other_side_still_runs(
    llm_settings: Any, openai_server: OpenAIServer, staff_browser: Client
) -> None:
    llm_settings.LLM_MAX_RETRIES = 0
    openai_server.reply_status(503).reply_json({"cuisine": ["italian"], "diet": []})

    response = staff_browser.post(URL, _draft(source="default"))

    assert response.status_code == 200
    draft, active = response.content.decode().split('id="side-draft"')[1].split('id="side-active"')
    assert "The model gave no usable reply" in draft
    assert _tags_shown(active) == ["italian"]
    assert TaggingRun.objects.count() == 0


def test_an_invalid_draft_template_is_a_form_error_and_calls_no_model(
    llm_settings: Any, openai_server: OpenAIServer, staff_browser: Client
) -> None:
    response = staff_browser.post(
        URL, _draft(source="default", user_template="Tag this: $recipies", system_template="costs $5")
    )

    assert response.status_code == 400
    page = response.content.decode()
    assert "Unknown variable(s) for a tagging prompt: $recipies" in page
    assert "The user template must include $recipe" in page
    assert "A $ starts no variable name" in page
    assert openai_server.requests == []
    assert LLMCall.objects.count() == 0


def test_a_run_without_a_recipe_says_what_is_missing(llm_settings: Any, staff_browser: Client) -> None:
    response = staff_browser.post(URL, _draft(source="default", title="", ingredients="", instructions=""))

    assert response.status_code == 400
    page = response.content.decode()
    assert "Give a stored recipe&#x27;s id, or a title" in page


def test_save_as_new_version_keeps_the_active_one_and_records_the_parent(staff_browser: Client, staff: Any) -> None:
    active = _active()

    response = staff_browser.post(URL, _draft(action="save", notes="Say it shorter"))

    assert response.status_code == 302
    saved = PromptVersion.objects.get(prompt=active.prompt, number=active.number + 1)
    assert response["Location"] == f"{URL}?version={saved.pk}"
    assert saved.system_template.startswith("DRAFT WORDING.")
    assert (saved.parent_id, saved.author_id, saved.notes, saved.is_active) == (
        active.pk,
        staff.pk,
        "Say it shorter",
        False,
    )
    assert _active().pk == active.pk
    page = staff_browser.get(response["Location"]).content.decode()
    assert f"{saved.label} saved." in page
    assert "DRAFT WORDING." in page  # the form starts from the saved version


def test_save_and_activate_makes_the_draft_the_active_version_and_records_who_did(
    staff_browser: Client, staff: Any
) -> None:
    previous = _active()

    response = staff_browser.post(URL, _draft(action="activate"))

    assert response.status_code == 302
    now = _active()
    assert now.pk != previous.pk
    assert now.parent_id == previous.pk
    activation = PromptActivation.objects.order_by("-id").first()
    assert activation is not None
    assert (activation.version_id, activation.previous_id, activation.actor_id) == (now.pk, previous.pk, staff.pk)


def test_an_invalid_draft_is_never_saved(staff_browser: Client) -> None:
    count = PromptVersion.objects.count()

    response = staff_browser.post(URL, _draft(action="activate", user_template="no recipe here"))

    assert response.status_code == 400
    assert "The user template must include $recipe" in response.content.decode()
    assert PromptVersion.objects.count() == count


@pytest.mark.parametrize(
    ("action", "perms"),
    [("save", ("view_promptversion",)), ("activate", ("view_promptversion", "add_promptversion"))],
)
def test_saving_needs_the_add_permission_and_activating_the_change_permission_too(
    client: Client, django_user_model: Any, action: str, perms: tuple[str, ...]
) -> None:
    client.force_login(_user(django_user_model, "curator", is_staff=True, perms=perms))
    count = PromptVersion.objects.count()

    assert client.post(URL, _draft(action=action)).status_code == 403
    assert PromptVersion.objects.count() == count


def test_staff_with_the_add_and_change_permissions_may_save_and_activate(
    client: Client, django_user_model: Any
) -> None:
    client.force_login(
        _user(django_user_model, "editor", is_staff=True, perms=("add_promptversion", "change_promptversion"))
    )
    page = client.get(URL).content.decode()
    assert 'value="save"' in page
    assert 'value="activate"' in page

    assert client.post(URL, _draft(action="activate")).status_code == 302


def test_a_run_without_any_model_source_says_so(staff_browser: Client) -> None:
    response = staff_browser.post(URL, _draft())

    assert response.status_code == 400
    assert "Choose a model source to run with" in response.content.decode()


def test_the_playground_is_linked_from_the_nav_and_the_prompt_versions_admin(staff_browser: Client) -> None:
    assert f'href="{URL}"' in staff_browser.get("/").content.decode()
    assert f'href="{URL}"' in staff_browser.get("/admin/prompts/promptversion/").content.decode()
    active = _active()
    change = staff_browser.get(f"/admin/prompts/promptversion/{active.pk}/change/").content.decode()
    assert f"{URL}?version={active.pk}" in change


def test_finding_a_stored_recipe_lists_it_with_its_id(staff_browser: Client) -> None:
    stored = RecipeFactory(title="Miso soup", ingredients=["miso"])

    page = staff_browser.get(URL, {"q": "miso"}).content.decode()

    assert f"#{stored.pk} · Miso soup" in page
    assert f"recipe={stored.pk}" in page
