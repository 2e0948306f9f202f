"""Refuse to start a web or worker process on settings that the system checks reject (manage.py runs them
itself); a bad combination of limits should stop a deploy, not kill tasks later."""

from __future__ import annotations

from django.core import checks
from django.core.exceptions import ImproperlyConfigured


def checks_enforce() -> None:
    """Raise ImproperlyConfigured naming every error of Django's system checks (no database queries)."""
    errors = [message for message in checks.run_checks() if message.is_serious()]
    if errors:
        raise ImproperlyConfigured("\n".join(str(error) for error in errors))
