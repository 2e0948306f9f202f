"""Issue an API token for a user and print its key, the only time it is shown."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from autotagger.errors import DomainError
from autotagger.tokens.services import api_token_create


class Command(BaseCommand):
    help = "Issue an API token for USER and print its key (shown once; only its digest is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--days", type=int, default=None, help="Days the token is valid (API_TOKEN_TTL_DAYS).")

    def handle(self, *args: Any, username: str, days: int | None, **options: Any) -> None:
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: username})
        except User.DoesNotExist:
            raise CommandError(f"There is no user {username!r}.") from None
        try:
            token, key = api_token_create(user=user, days=days)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stderr.write(f"Token {token.token_key}... for {username}, valid until {token.expiry:%Y-%m-%d %H:%M} UTC:")
        self.stdout.write(key)
