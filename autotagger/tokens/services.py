"""Issuing and revoking API tokens. The key is returned once, when issued; only its SHA-512 digest and its
first characters (to tell tokens apart in admin) are stored."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from knox.models import AuthToken

from autotagger.errors import DomainError

# A token that never expires is what this replaces; the longest one can be issued for.
MAX_TOKEN_DAYS = 3650


class InvalidTokenLifetime(DomainError):
    code = "invalid_token_lifetime"


def api_token_create(*, user: Any, days: int | None = None) -> tuple[AuthToken, str]:
    """A new token for `user`, valid for `days` (None: API_TOKEN_TTL_DAYS); the row and the key, which
    nothing can show again."""
    days = int(settings.API_TOKEN_TTL_DAYS) if days is None else days
    if not 1 <= days <= MAX_TOKEN_DAYS:
        raise InvalidTokenLifetime(
            f"A token lives between 1 and {MAX_TOKEN_DAYS} days; {days} was asked.", details={"days": days}
        )
    token, key = AuthToken.objects.create(user=user, expiry=timedelta(days=days))
    return token, key


def api_tokens_revoke(*, tokens: Any) -> int:
    """Revoke `tokens` (a queryset of AuthToken): they stop working at once. The number revoked."""
    deleted, _ = tokens.delete()
    return int(deleted)
