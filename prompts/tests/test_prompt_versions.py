"""Prompt versions (prompts.services): numbered, immutable, exactly one active per prompt (held by PostgreSQL),
activation recorded and rolled back."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import IntegrityError, transaction

from prompts.models import DEFAULT_TAGGING_PROMPT, Prompt, PromptActivation, PromptVersion
from prompts.selectors import prompt_version_active, prompt_version_diff
from prompts.services import (
    PromptError,
    PromptTemplateInvalid,
    prompt_draft_save,
    prompt_version_activate,
    prompt_version_create,
    prompt_version_rollback,
)
from prompts.tests.conftest import PromptFactory

pytestmark = pytest.mark.django_db

SYSTEM = "You tag recipes with tags from a fixed taxonomy."
USER = "$categories\n\nAnswer keys: $keys.\n\n$examples\n\n$recipe"


def version(
    prompt: Prompt, *, user: str = USER, author: Any = None, parent: PromptVersion | None = None
) -> PromptVersion:
    return prompt_version_create(
        prompt=prompt, system_template=SYSTEM, user_template=user, author=author, parent=parent
    )


def active_numbers(prompt: Prompt) -> list[int]:
    return list(PromptVersion.objects.filter(prompt=prompt, is_active=True).values_list("number", flat=True))


# --- Creating versions ----------------------------------------------------------------------------


def test_versions_are_numbered_in_order_and_only_the_first_is_activated(staff: Any) -> None:
    prompt = PromptFactory()

    first = version(prompt, author=staff)
    second = version(prompt, user=USER + "\n\nAnswer only JSON.", author=staff, parent=first)

    assert (first.number, second.number) == (1, 2)
    assert second.parent == first
    assert second.author == staff
    assert active_numbers(prompt) == [1]
    activation = PromptActivation.objects.get(prompt=prompt)
    assert (activation.version, activation.previous, activation.actor) == (first, None, staff)


def test_lines_a_browser_ended_in_crlf_are_saved_ending_in_newlines() -> None:
    prompt = PromptFactory()
    first = version(prompt)

    second = prompt_version_create(
        prompt=prompt,
        system_template=SYSTEM + "\r\nBe brief.\rReally.",
        user_template=USER.replace("\n", "\r\n"),
        parent=first,
    )

    assert second.system_template == SYSTEM + "\nBe brief.\nReally."
    assert second.user_template == USER
    assert prompt_version_diff(old=first, new=second)["user_template"] == []


def test_a_template_with_an_unknown_variable_is_not_saved() -> None:
    prompt = PromptFactory()

    with pytest.raises(PromptTemplateInvalid) as raised:
        version(prompt, user="$recipe\n\nAt most $max_tags tags.")

    assert "$max_tags" in raised.value.message
    assert "$max_tags" in raised.value.details["user_template"][0]
    assert not PromptVersion.objects.filter(prompt=prompt).exists()


def test_a_template_that_drops_the_recipe_fence_is_not_saved() -> None:
    prompt = PromptFactory()

    with pytest.raises(PromptTemplateInvalid) as raised:
        version(prompt, user="$categories\n\n<recipe>The recipe</recipe>")

    assert "must include $recipe" in raised.value.message
    assert not PromptVersion.objects.filter(prompt=prompt).exists()


def test_a_parent_from_another_prompt_is_refused() -> None:
    other = version(PromptFactory())

    with pytest.raises(PromptError, match="is not a version of"):
        version(PromptFactory(), parent=other)


# --- Invariants held by PostgreSQL ----------------------------------------------------------------


def test_the_database_refuses_a_second_active_version() -> None:
    prompt = PromptFactory()
    version(prompt)
    second = version(prompt, user=USER + " ")

    with pytest.raises(IntegrityError), transaction.atomic():
        PromptVersion.objects.filter(pk=second.pk).update(is_active=True)

    assert active_numbers(prompt) == [1]


@pytest.mark.parametrize(
    "change",
    [{"system_template": "Changed."}, {"user_template": "$recipe"}, {"number": 7}, {"notes": "rewritten"}],
)
def test_the_database_refuses_to_change_a_saved_version(change: dict[str, Any]) -> None:
    saved = version(PromptFactory())

    with pytest.raises(IntegrityError, match="immutable"), transaction.atomic():
        PromptVersion.objects.filter(pk=saved.pk).update(**change)

    saved.refresh_from_db()
    assert (saved.system_template, saved.user_template, saved.number) == (SYSTEM, USER, 1)


def test_saving_a_changed_version_object_is_refused_too() -> None:
    saved = version(PromptFactory())
    saved.user_template = "$recipe"

    with pytest.raises(IntegrityError), transaction.atomic():
        saved.save()


# --- Activation and rollback ----------------------------------------------------------------------


def test_activating_a_version_records_who_and_what_it_replaced(staff: Any) -> None:
    prompt = PromptFactory()
    first = version(prompt)
    second = version(prompt, user=USER + "\n\nBe brief.", parent=first)

    activation = prompt_version_activate(version=second, actor=staff)

    assert active_numbers(prompt) == [2]
    assert (activation.version, activation.previous, activation.actor, activation.is_rollback) == (
        second,
        first,
        staff,
        False,
    )


def test_a_draft_saved_and_activated_becomes_the_active_child_of_its_version(staff: Any) -> None:
    prompt = PromptFactory()
    first = version(prompt)

    draft = prompt_draft_save(
        parent=first,
        system_template=SYSTEM,
        user_template=USER + "\n\nBe brief.",
        notes="n",
        author=staff,
        activate=True,
    )

    assert (draft.number, draft.parent, draft.notes, draft.author) == (2, first, "n", staff)
    assert active_numbers(prompt) == [2]
    activation = PromptActivation.objects.filter(prompt=prompt).order_by("-id").first()
    assert activation is not None
    assert (activation.version, activation.previous, activation.actor) == (draft, first, staff)


def test_a_draft_saved_without_activating_leaves_the_active_version(staff: Any) -> None:
    prompt = PromptFactory()
    first = version(prompt)

    prompt_draft_save(parent=first, system_template=SYSTEM, user_template=USER, notes="", author=staff, activate=False)

    assert active_numbers(prompt) == [1]


def test_activating_the_active_version_is_refused() -> None:
    first = version(PromptFactory())

    with pytest.raises(PromptError, match="already the active version"):
        prompt_version_activate(version=first, actor=None)


def test_a_rollback_reactivates_the_version_the_last_activation_replaced(staff: Any) -> None:
    prompt = PromptFactory()
    first = version(prompt)
    second = version(prompt, user=USER + "\n\nBe brief.")
    third = version(prompt, user=USER + "\n\nBe briefer.")
    prompt_version_activate(version=second, actor=staff)
    prompt_version_activate(version=third, actor=staff)

    rollback = prompt_version_rollback(prompt=prompt, actor=staff)

    assert active_numbers(prompt) == [2]
    assert (rollback.version, rollback.previous, rollback.is_rollback, rollback.actor) == (second, third, True, staff)
    assert [a.version.number for a in PromptActivation.objects.filter(prompt=prompt).order_by("id")] == [1, 2, 3, 2]
    assert first.pk != rollback.version.pk


def test_a_prompt_never_changed_has_nothing_to_roll_back_to() -> None:
    prompt = PromptFactory()
    version(prompt)

    with pytest.raises(PromptError, match="no earlier active version"):
        prompt_version_rollback(prompt=prompt, actor=None)


def test_the_tagger_reads_the_newly_activated_version_of_the_default_prompt(staff: Any) -> None:
    prompt = Prompt.objects.get(name=DEFAULT_TAGGING_PROMPT)
    first = PromptVersion.objects.get(prompt=prompt, number=1)
    second = version(prompt, user=first.user_template + "\n\nUse the fewest tags.", parent=first)

    before = prompt_version_active()
    prompt_version_activate(version=second, actor=staff)
    after = prompt_version_active()

    assert (before.label, before.version_id) == (f"{DEFAULT_TAGGING_PROMPT} v1", first.pk)
    assert (after.label, after.version_id) == (f"{DEFAULT_TAGGING_PROMPT} v2", second.pk)
    assert after.user_template.endswith("Use the fewest tags.")


def test_the_built_in_prompt_is_used_while_the_database_has_no_active_default() -> None:
    PromptVersion.objects.filter(prompt__name=DEFAULT_TAGGING_PROMPT).update(is_active=False)

    active = prompt_version_active()

    assert (active.label, active.version_id) == ("builtin-3", None)


# --- Diff -----------------------------------------------------------------------------------------


def test_the_diff_shows_the_changed_lines_of_each_template() -> None:
    prompt = PromptFactory()
    first = version(prompt)
    second = version(prompt, user=USER.replace("Answer keys", "Keys to answer"))

    diff = prompt_version_diff(old=first, new=second)

    assert diff["system_template"] == []
    assert f"--- {prompt.name} v1" in diff["user_template"]
    assert "-Answer keys: $keys." in diff["user_template"]
    assert "+Keys to answer: $keys." in diff["user_template"]
