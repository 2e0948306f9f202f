"""Writes to prompt versions: a new version (never a change to one), activation and rollback, each activation
recorded as a PromptActivation."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max

from autotagger.errors import DomainError
from prompts.models import Prompt, PromptActivation, PromptVersion
from prompts.rendering import template_problems


class PromptError(DomainError):
    code = "prompt_invalid"


class PromptTemplateInvalid(PromptError):
    """The templates cannot be saved; `details` lists the problems per field."""

    code = "prompt_template_invalid"


def _newlines(template: str) -> str:
    # Browsers send a textarea's lines ending in CRLF (as HTML requires): kept, every line of a version edited in a
    # form would differ from its parent's in the diff.
    return template.replace("\r\n", "\n").replace("\r", "\n")


@transaction.atomic
def prompt_version_create(
    *,
    prompt: Prompt,
    system_template: str,
    user_template: str,
    notes: str = "",
    author: User | None = None,
    parent: PromptVersion | None = None,
) -> PromptVersion:
    """Save the templates as the prompt's next version (inactive, unless it is the prompt's first: then it is
    activated by `author`), its lines ending in LF whatever a browser sent. Raises PromptTemplateInvalid naming
    what is wrong (see prompts.rendering.template_problems), PromptError for a parent of another prompt."""
    system_template, user_template = _newlines(system_template), _newlines(user_template)
    problems = template_problems(system_template=system_template, user_template=user_template, purpose=prompt.purpose)
    if problems:
        first = next(iter(problems.values()))[0]
        raise PromptTemplateInvalid(f"The templates cannot be saved: {first}", details=problems)
    if parent is not None and parent.prompt_id != prompt.pk:
        raise PromptError(f"Version {parent} is not a version of {prompt.name}.")
    # The lock numbers versions one after another when two people save at once.
    Prompt.objects.select_for_update().get(pk=prompt.pk)
    last = PromptVersion.objects.filter(prompt=prompt).aggregate(last=Max("number"))["last"]
    version = PromptVersion.objects.create(
        prompt=prompt,
        number=(last or 0) + 1,
        system_template=system_template,
        user_template=user_template,
        notes=notes,
        author=author,
        parent=parent,
    )
    if last is None:
        prompt_version_activate(version=version, actor=author)
        version.refresh_from_db()
    return version


@transaction.atomic
def prompt_version_activate(*, version: PromptVersion, actor: User | None, rollback: bool = False) -> PromptActivation:
    """Make `version` its prompt's active version, recording who did it and which version it replaced.
    Raises PromptError when it is already active."""
    prompt = Prompt.objects.select_for_update().get(pk=version.prompt_id)
    previous = PromptVersion.objects.filter(prompt=prompt, is_active=True).first()
    if previous is not None and previous.pk == version.pk:
        raise PromptError(f"{version.label} is already the active version.")
    PromptVersion.objects.filter(prompt=prompt, is_active=True).update(is_active=False)
    PromptVersion.objects.filter(pk=version.pk).update(is_active=True)
    version.is_active = True
    return PromptActivation.objects.create(
        prompt=prompt, version=version, previous=previous, is_rollback=rollback, actor=actor
    )


@transaction.atomic
def prompt_version_rollback(*, prompt: Prompt, actor: User | None) -> PromptActivation:
    """Re-activate the version the latest activation replaced (recorded as an activation too; rolling back
    twice goes back to where it started). Raises PromptError when there is nothing to go back to."""
    Prompt.objects.select_for_update().get(pk=prompt.pk)
    latest = PromptActivation.objects.filter(prompt=prompt).order_by("-created_at", "-id").first()
    if latest is None or latest.previous is None:
        raise PromptError(f"{prompt.name} has no earlier active version to roll back to.")
    return prompt_version_activate(version=latest.previous, actor=actor, rollback=True)


@transaction.atomic
def prompt_draft_save(
    *, parent: PromptVersion, system_template: str, user_template: str, notes: str, author: User | None, activate: bool
) -> PromptVersion:
    """Save the draft as the next version of `parent`'s prompt (its parent: the version it was drafted from),
    and make it the active one when `activate`. Raises PromptTemplateInvalid."""
    version = prompt_version_create(
        prompt=parent.prompt,
        system_template=system_template,
        user_template=user_template,
        notes=notes,
        author=author,
        parent=parent,
    )
    if activate and not version.is_active:
        prompt_version_activate(version=version, actor=author)
    return version
