"""What every page's navigation needs to know about the signed-in user."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from autotagger.permissions import can_change_gold_labelled_recipes


def roles(request: HttpRequest) -> dict[str, Any]:
    # Lazy: a page whose template never asks costs no query (is_reviewer reads the user's groups).
    return {"may_review": lambda: can_change_gold_labelled_recipes(getattr(request, "user", None))}
