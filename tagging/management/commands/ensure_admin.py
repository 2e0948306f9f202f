from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create the superuser AUTOTAGGER_ADMIN_USER if missing, with AUTOTAGGER_ADMIN_PASSWORD or a generated "
        "password printed once. An existing user is left as it is."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        username = settings.AUTOTAGGER_ADMIN_USER
        users = get_user_model().objects
        if users.filter(username=username).exists():
            self.stdout.write(f"Admin user {username!r} already exists; its password is unchanged.")
            return
        password = settings.AUTOTAGGER_ADMIN_PASSWORD
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        users.create_superuser(username=username, email="", password=password)
        if generated:
            self.stdout.write(
                self.style.WARNING(
                    f"Created admin user {username!r} with password: {password}\n"
                    "  (shown once; set AUTOTAGGER_ADMIN_PASSWORD to choose it, or run "
                    f"`python manage.py changepassword {username}`)"
                )
            )
        else:
            self.stdout.write(
                self.style.SUCCESS(f"Created admin user {username!r} (password from AUTOTAGGER_ADMIN_PASSWORD).")
            )
