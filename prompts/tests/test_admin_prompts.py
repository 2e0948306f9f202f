"""prompts.admin for prompts: editing a version saves a new one, activation and rollback from admin, the diff
between two versions, and who may do what."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test.client import Client
from django.urls import reverse

from prompts.models import DEFAULT_TAGGING_PROMPT, Prompt, PromptActivation, PromptVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def default_v1() -> PromptVersion:
    return PromptVersion.objects.select_related("prompt").get(prompt__name=DEFAULT_TAGGING_PROMPT, number=1)


def staff_with(django_user_model: Any, client: Client, *codenames: str) -> Client:
    user = django_user_model.objects.create_user(username="-".join(codenames) or "plain", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="prompts", codename__in=codenames))
    client.force_login(user)
    return client


def edit(browser: Client, version: PromptVersion, **changes: str) -> Any:
    data = {
        "system_template": version.system_template,
        "user_template": version.user_template,
        "new_notes": "",
        **changes,
    }
    return browser.post(reverse("admin:prompts_promptversion_change", args=[version.pk]), data)


def test_the_prompt_pages_render_with_their_versions(staff_browser: Client, default_v1: PromptVersion) -> None:
    pages = [
        staff_browser.get(reverse("admin:prompts_prompt_changelist")),
        staff_browser.get(reverse("admin:prompts_prompt_change", args=[default_v1.prompt_id])),
        staff_browser.get(reverse("admin:prompts_prompt_add")),
        staff_browser.get(reverse("admin:prompts_promptversion_changelist")),
        staff_browser.get(reverse("admin:prompts_promptversion_change", args=[default_v1.pk])),
    ]

    assert [page.status_code for page in pages] == [200] * 5
    assert "tagging-default" in pages[0].content.decode()
    assert 'value="roll_back"' in pages[0].content.decode()
    assert 'value="activate"' in pages[3].content.decode()
    assert "The built-in prompt builtin-3" in pages[1].content.decode()
    assert "$recipe" in pages[2].content.decode()
    assert "tagging-default v1 is the active version." in pages[4].content.decode()


def test_editing_a_versions_templates_saves_a_new_version_and_leaves_it_as_it_was(
    staff_browser: Client, staff: Any, default_v1: PromptVersion
) -> None:
    response = edit(
        staff_browser,
        default_v1,
        user_template=default_v1.user_template + "\n\nBe brief.",
        new_notes="Shorter answers.",
    )

    new = PromptVersion.objects.get(prompt=default_v1.prompt, number=2)
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:prompts_promptversion_change", args=[new.pk])
    assert (new.parent, new.author, new.notes, new.is_active) == (default_v1, staff, "Shorter answers.", False)
    assert new.user_template.endswith("Be brief.")
    old = PromptVersion.objects.get(pk=default_v1.pk)
    assert (old.user_template, old.is_active) == (default_v1.user_template, True)


def test_an_edit_with_an_unknown_variable_is_refused_naming_it(
    staff_browser: Client, default_v1: PromptVersion
) -> None:
    response = edit(staff_browser, default_v1, user_template=default_v1.user_template + " $max_tags")

    assert response.status_code == 200
    assert "$max_tags" in str(response.context["adminform"].form.errors["user_template"])
    assert PromptVersion.objects.filter(prompt=default_v1.prompt).count() == 1


def test_an_edit_that_drops_the_recipe_is_refused(staff_browser: Client, default_v1: PromptVersion) -> None:
    response = edit(staff_browser, default_v1, user_template="$categories\n\nTag it.")

    assert response.status_code == 200
    assert "must include $recipe" in str(response.context["adminform"].form.errors["user_template"])
    assert PromptVersion.objects.filter(prompt=default_v1.prompt).count() == 1


def test_saving_unchanged_templates_makes_no_version(staff_browser: Client, default_v1: PromptVersion) -> None:
    response = edit(staff_browser, default_v1, new_notes="nothing really")

    assert response.status_code == 302
    assert PromptVersion.objects.filter(prompt=default_v1.prompt).count() == 1


def test_the_activate_button_activates_and_records_who(
    staff_browser: Client, staff: Any, default_v1: PromptVersion
) -> None:
    edit(staff_browser, default_v1, system_template="You tag recipes.")
    new = PromptVersion.objects.get(prompt=default_v1.prompt, number=2)
    page = staff_browser.get(reverse("admin:prompts_promptversion_change", args=[new.pk]))

    response = staff_browser.post(reverse("admin:prompts_promptversion_activate", args=[new.pk]))

    assert 'form="activate-version"' in page.content.decode()
    assert response.status_code == 302
    activation = PromptActivation.objects.filter(prompt=default_v1.prompt).order_by("-id").first()
    assert activation is not None
    assert (activation.version, activation.previous, activation.actor) == (new, default_v1, staff)
    assert list(PromptVersion.objects.filter(prompt=default_v1.prompt, is_active=True)) == [new]


def test_the_activate_and_roll_back_actions(staff_browser: Client, default_v1: PromptVersion) -> None:
    edit(staff_browser, default_v1, system_template="You tag recipes.")
    new = PromptVersion.objects.get(prompt=default_v1.prompt, number=2)

    staff_browser.post(
        reverse("admin:prompts_promptversion_changelist"),
        {"action": "activate", "_selected_action": [new.pk]},
    )
    activated = PromptVersion.objects.get(prompt=default_v1.prompt, is_active=True)
    staff_browser.post(
        reverse("admin:prompts_prompt_changelist"),
        {"action": "roll_back", "_selected_action": [default_v1.prompt_id]},
    )
    rolled_back = PromptVersion.objects.get(prompt=default_v1.prompt, is_active=True)

    assert (activated, rolled_back) == (new, default_v1)
    assert PromptActivation.objects.filter(prompt=default_v1.prompt, is_rollback=True).count() == 1


def test_the_diff_view_shows_the_changed_lines(staff_browser: Client, default_v1: PromptVersion) -> None:
    edit(staff_browser, default_v1, user_template=default_v1.user_template.replace("Answer keys", "Keys to answer"))
    new = PromptVersion.objects.get(prompt=default_v1.prompt, number=2)
    listing = staff_browser.get(reverse("admin:prompts_promptversion_changelist")).content.decode()

    page = staff_browser.get(reverse("admin:prompts_promptversion_diff"), {"old": default_v1.pk, "new": new.pk})

    html = page.content.decode()
    assert page.status_code == 200
    assert f"?old={default_v1.pk}&amp;new={new.pk}" in listing
    assert '<span class="diff-removed">-Answer keys: $keys.</span>' in html
    assert '<span class="diff-added">+Keys to answer: $keys.</span>' in html
    assert "No change." in html  # the system template


def test_the_diff_of_versions_of_different_prompts_is_not_found(
    staff_browser: Client, default_v1: PromptVersion
) -> None:
    staff_browser.post(
        reverse("admin:prompts_prompt_add"),
        {
            "name": "judge",
            "purpose": "judging",
            "description": "",
            "system_template": "Judge.",
            "user_template": "$tags\n\n$recipe",
            "notes": "",
        },
    )
    other = PromptVersion.objects.get(prompt__name="judge")

    page = staff_browser.get(reverse("admin:prompts_promptversion_diff"), {"old": default_v1.pk, "new": other.pk})

    assert page.status_code == 404


def test_adding_a_prompt_saves_its_first_version_active(staff_browser: Client, staff: Any) -> None:
    response = staff_browser.post(
        reverse("admin:prompts_prompt_add"),
        {
            "name": "tagging-terse",
            "purpose": "tagging",
            "description": "Fewer words.",
            "system_template": "Tag recipes, at most $k per category.",
            "user_template": "$categories\n\n$recipe",
            "notes": "First try.",
        },
    )

    assert response.status_code == 302
    version = PromptVersion.objects.get(prompt__name="tagging-terse")
    assert (version.number, version.is_active, version.author, version.notes) == (1, True, staff, "First try.")


def test_adding_a_prompt_with_a_bad_template_is_refused(staff_browser: Client) -> None:
    response = staff_browser.post(
        reverse("admin:prompts_prompt_add"),
        {"name": "bad", "purpose": "tagging", "system_template": "Tag $things.", "user_template": "$categories"},
    )

    errors = response.context["adminform"].form.errors
    assert response.status_code == 200
    assert "$things" in str(errors["system_template"])
    assert "must include $recipe" in str(errors["user_template"])
    assert not Prompt.objects.filter(name="bad").exists()


# --- Who may do what ------------------------------------------------------------------------------


def test_staff_who_may_only_view_see_versions_read_only_and_cannot_save_or_activate(
    django_user_model: Any, client: Client, default_v1: PromptVersion
) -> None:
    browser = staff_with(django_user_model, client, "view_prompt", "view_promptversion")

    page = browser.get(reverse("admin:prompts_promptversion_change", args=[default_v1.pk]))
    saved = edit(browser, default_v1, system_template="Changed.")
    activated = browser.post(reverse("admin:prompts_promptversion_activate", args=[default_v1.pk]))
    added = browser.get(reverse("admin:prompts_prompt_add"))

    assert page.status_code == 200
    assert 'name="system_template"' not in page.content.decode()
    assert saved.status_code == 403
    assert activated.status_code == 403
    assert added.status_code == 403
    assert PromptVersion.objects.filter(prompt=default_v1.prompt).count() == 1


def test_staff_who_may_add_versions_but_not_change_them_cannot_activate(
    django_user_model: Any, client: Client, default_v1: PromptVersion
) -> None:
    browser = staff_with(django_user_model, client, "view_prompt", "view_promptversion", "add_promptversion")
    edit(browser, default_v1, system_template="You tag recipes.")
    new = PromptVersion.objects.get(prompt=default_v1.prompt, number=2)

    page = browser.get(reverse("admin:prompts_promptversion_change", args=[new.pk]))
    activated = browser.post(reverse("admin:prompts_promptversion_activate", args=[new.pk]))
    action = browser.post(
        reverse("admin:prompts_promptversion_changelist"), {"action": "activate", "_selected_action": [new.pk]}
    )
    prompts = browser.get(reverse("admin:prompts_prompt_changelist"))
    versions = browser.get(reverse("admin:prompts_promptversion_changelist"))

    assert 'form="activate-version"' not in page.content.decode()
    assert activated.status_code == 403
    assert action.status_code == 200  # "No action selected": the action is not offered
    assert "roll_back" not in prompts.content.decode()
    assert 'value="activate"' not in versions.content.decode()
    assert list(PromptVersion.objects.filter(prompt=default_v1.prompt, is_active=True)) == [default_v1]


def test_editing_the_judging_prompt_is_checked_against_the_judging_variables(staff_browser: Client) -> None:
    judging = PromptVersion.objects.get(prompt__name="judging-default", number=1)

    refused = edit(staff_browser, judging, user_template="$categories\n\n$recipe")
    saved = edit(staff_browser, judging, user_template=judging.user_template + "\n\nBe strict.")

    errors = str(refused.context["adminform"].form.errors["user_template"])
    assert "Unknown variable(s) for a judging prompt: $categories" in errors
    assert "must include $tags" in errors
    assert saved.status_code == 302
    assert PromptVersion.objects.filter(prompt__name="judging-default").count() == 2
