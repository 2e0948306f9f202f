"""Who may see and change what: the roles as predicates on a user, and the DRF permission classes built on them.
The API, the pages and the admin all ask here.

- Superusers: everything.
- Staff: the admin, per their model permissions; with a model's view permission they read every object of it
  through the API and the pages, with its change/delete permission they change every one.
- Reviewers: members of the "reviewers" group (created by the tagging migration 0010_reviewers_group with
  view permissions on recipes, runs, jobs and assignments): they read every run, change only what they own,
  and, with staff, are the curators of gold-labelled recipes.
- API clients (any other signed-in user, usually with a token): their own recipes, runs and jobs only. Anyone
  else's are answered 404, as if they did not exist, so that ids reveal nothing.

A gold-labelled recipe is changed or deleted only by curators (staff or reviewers), never by a client, even
its owner: its labels are what the learned tagger is fitted on and scored against. A client's feedback on its own
runs (POST /api/v1/runs/{id}/feedback) is a source of gold labels like a review, but only while no curator has
labelled or reviewed the recipe: from then on it would overrule them, and is refused the same way
(feedback.services.client_feedback).

Feedback (the decisions people made on tags) is read by reviewers and by staff with its view permission.

This module is in the lowest layer: it knows users, groups and permission strings, never an app's models
(an object is read through the `created_by_id` it carries and its `_meta`).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Model
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

User = AbstractBaseUser | AnonymousUser

REVIEWERS_GROUP = "reviewers"

# What the admin's recipe import asks for (feedback.admin), and the API import with it.
IMPORT_PERMISSIONS = (
    "feedback.add_goldlabel",
    "feedback.delete_goldlabel",
    "tagging.add_recipe",
    "tagging.change_recipe",
)
# Also needed to import with `create_taxonomy`: the import then adds the categories and tags it lacks.
TAXONOMY_PERMISSIONS = ("taxonomy.add_category", "taxonomy.add_tag")

RECIPE_VIEW, RECIPE_CHANGE, RECIPE_DELETE = "tagging.view_recipe", "tagging.change_recipe", "tagging.delete_recipe"
RUN_VIEW = "tagging.view_taggingrun"
JOB_VIEW = "tagging.view_taggingjob"
PROMPT_VERSION_VIEW = "prompts.view_promptversion"
PROMPT_VERSION_ADD = "prompts.add_promptversion"
PROMPT_VERSION_CHANGE = "prompts.change_promptversion"
TAG_JUDGEMENT_ADD = "tagging.add_tagjudgement"
FEEDBACK_VIEW = "feedback.view_feedback"


def is_signed_in(user: User | None) -> bool:
    return user is not None and bool(user.is_authenticated) and bool(getattr(user, "is_active", False))


def is_superuser(user: User | None) -> bool:
    return is_signed_in(user) and bool(getattr(user, "is_superuser", False))


def is_staff(user: User | None) -> bool:
    return is_signed_in(user) and bool(getattr(user, "is_staff", False))


def is_reviewer(user: User | None) -> bool:
    """A member of the reviewers group (superusers count as every role). Remembered on the user object, as
    Django remembers its permissions, so that one request asks the database once."""
    if not is_signed_in(user):
        return False
    if is_superuser(user):
        return True
    cached = getattr(user, "_autotagger_is_reviewer", None)
    if cached is None:
        cached = user.groups.filter(name=REVIEWERS_GROUP).exists()  # type: ignore[union-attr]
        user._autotagger_is_reviewer = cached  # type: ignore[union-attr]
    return bool(cached)


def _has_any(user: User | None, *perms: str) -> bool:
    return is_signed_in(user) and any(user.has_perm(perm) for perm in perms)  # type: ignore[union-attr]


def owns(user: User | None, obj: Any) -> bool:
    """Whether `user` created `obj` (any model with a `created_by` foreign key)."""
    return is_signed_in(user) and obj.created_by_id is not None and obj.created_by_id == user.pk  # type: ignore[union-attr]


def can_read_all_recipes(user: User | None) -> bool:
    # The admin lets a change permission read too.
    return _has_any(user, RECIPE_VIEW, RECIPE_CHANGE)


def can_change_all_recipes(user: User | None) -> bool:
    return _has_any(user, RECIPE_CHANGE)


def can_read_all_runs(user: User | None) -> bool:
    return _has_any(user, RUN_VIEW)


def can_read_all_jobs(user: User | None) -> bool:
    return _has_any(user, JOB_VIEW)


def can_try_prompts(user: User | None) -> bool:
    """The prompt playground: staff who may see prompt versions (or add or change them)."""
    return is_staff(user) and _has_any(user, PROMPT_VERSION_VIEW, PROMPT_VERSION_ADD, PROMPT_VERSION_CHANGE)


def can_save_prompt_versions(user: User | None) -> bool:
    return is_staff(user) and _has_any(user, PROMPT_VERSION_ADD)


def can_activate_prompt_versions(user: User | None) -> bool:
    """Saving a version and making it the one the tagger uses (the admin's activate asks for the change permission)."""
    return is_staff(user) and user.has_perms((PROMPT_VERSION_ADD, PROMPT_VERSION_CHANGE))  # type: ignore[union-attr]


def can_ask_judge(user: User | None) -> bool:
    """Asking the LLM judge about a run's tags (the run page, the API, the admin action): adding verdicts."""
    return _has_any(user, TAG_JUDGEMENT_ADD)


def can_change_gold_labelled_recipes(user: User | None) -> bool:
    """Curators: staff and reviewers (who still need to own the recipe or hold the model permission)."""
    return is_staff(user) or is_reviewer(user)


def can_read_all_feedback(user: User | None) -> bool:
    """Every person's decisions on tags: reviewers (to see what the others decided) and staff who may view them."""
    return is_reviewer(user) or (is_staff(user) and _has_any(user, FEEDBACK_VIEW))


def can_import_recipes(user: User | None, *, create_taxonomy: bool = False) -> bool:
    perms = IMPORT_PERMISSIONS + (TAXONOMY_PERMISSIONS if create_taxonomy else ())
    return is_signed_in(user) and user.has_perms(perms)  # type: ignore[union-attr]


def _model_perm(obj: Model, action: str) -> str:
    return f"{obj._meta.app_label}.{action}_{obj._meta.model_name}"


def can_read(user: User | None, obj: Model) -> bool:
    """The owner, or whoever holds the model's view (or change) permission."""
    return owns(user, obj) or _has_any(user, _model_perm(obj, "view"), _model_perm(obj, "change"))


def can_change(user: User | None, obj: Model) -> bool:
    return owns(user, obj) or _has_any(user, _model_perm(obj, "change"))


def can_delete(user: User | None, obj: Model) -> bool:
    return owns(user, obj) or _has_any(user, _model_perm(obj, "delete"))


class IsOwnerOrHasModelPermission(BasePermission):
    """Object level, for an object the view has already found among those the caller may read (others are
    404 before this is asked): reading is allowed; DELETE needs ownership or the model's delete permission,
    any other change (PUT, PATCH, POST to act on it) ownership or its change permission."""

    message = "You may read this object but not change it."

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        if request.method in SAFE_METHODS:
            return can_read(request.user, obj)
        if request.method == "DELETE":
            return can_delete(request.user, obj)
        return can_change(request.user, obj)


class CanImportRecipes(BasePermission):
    """The permissions of the admin's import page (IMPORT_PERMISSIONS); `create_taxonomy` needs more, checked
    once the request's options are read (can_import_recipes)."""

    message = "Importing recipes needs the permissions to add and change recipes and to add and delete gold labels."

    def has_permission(self, request: Request, view: Any) -> bool:
        return can_import_recipes(request.user)


class CanReadAllFeedback(BasePermission):
    message = "Reading feedback needs the reviewers group or staff with the permission to view feedback."

    def has_permission(self, request: Request, view: Any) -> bool:
        return can_read_all_feedback(request.user)
