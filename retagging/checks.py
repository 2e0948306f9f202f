"""Start-up checks of the re-tagging notification settings (the web and worker processes run them before
serving, see autotagger.checks)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from autotagger.webhooks import webhook_url_problem


def retag_webhook_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """A webhook URL must be http(s) and come with a secret: an unsigned summary could be forged by anyone who
    knows where it goes."""
    url = str(settings.RETAG_WEBHOOK_URL or "")
    if not url:
        return []
    errors: list[checks.CheckMessage] = []
    problem = webhook_url_problem(url)
    if problem:
        errors.append(checks.Error(f"RETAG_WEBHOOK_URL is refused: {problem}", id="retagging.E001"))
    if not str(settings.RETAG_WEBHOOK_SECRET or "").strip():
        errors.append(
            checks.Error(
                "RETAG_WEBHOOK_URL is set without RETAG_WEBHOOK_SECRET: deliveries would be unsigned.",
                hint="Set RETAG_WEBHOOK_SECRET to a long random value shared with the receiver, or unset "
                "RETAG_WEBHOOK_URL.",
                id="retagging.E002",
            )
        )
    return errors
