"""API tokens: stored as a digest with an expiry, refused once expired or revoked, issued by a command and in
admin with the key shown once."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.test.client import Client
from django.urls import reverse
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from autotagger.tokens.services import InvalidTokenLifetime, api_token_create
from conftest import assert_error

pytestmark = pytest.mark.django_db


def client_with(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_a_token_is_stored_as_a_digest_never_as_the_key(api_client_user: Any) -> None:
    token, key = api_token_create(user=api_client_user)

    stored = json.dumps(list(AuthToken.objects.values()), default=str)

    assert len(key) >= 64
    assert key not in stored
    assert token.digest != key
    assert client_with(key).get("/api/v1/categories").status_code == 200


def test_a_token_expires_after_api_token_ttl_days_by_default(settings: Any, api_client_user: Any) -> None:
    settings.API_TOKEN_TTL_DAYS = 3

    token, _ = api_token_create(user=api_client_user)

    assert token.expiry is not None
    assert abs(token.expiry - (timezone.now() + timedelta(days=3))) < timedelta(minutes=1)


def test_a_token_cannot_be_issued_for_no_time(api_client_user: Any) -> None:
    with pytest.raises(InvalidTokenLifetime):
        api_token_create(user=api_client_user, days=0)

    assert not AuthToken.objects.exists()


def test_an_expired_token_is_refused_with_401(api_client_user: Any) -> None:
    token, key = api_token_create(user=api_client_user, days=1)
    AuthToken.objects.filter(pk=token.pk).update(expiry=timezone.now() - timedelta(seconds=1))

    response = client_with(key).get("/api/v1/categories")

    assert_error(response, status=401, code="authentication_failed")


def test_a_token_revoked_in_admin_is_refused_with_401(api_client_user: Any, staff_browser: Client) -> None:
    token, key = api_token_create(user=api_client_user)
    assert client_with(key).get("/api/v1/categories").status_code == 200

    staff_browser.post(reverse("admin:knox_authtoken_changelist"), {"action": "revoke", "_selected_action": [token.pk]})

    assert not AuthToken.objects.exists()
    assert_error(client_with(key).get("/api/v1/categories"), status=401, code="authentication_failed")


def test_a_key_that_is_not_ascii_is_refused_with_401_not_a_crash(api_client_user: Any) -> None:
    api_token_create(user=api_client_user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token caf\u00e9".encode().decode("latin-1"))

    response = client.get("/api/v1/categories")

    assert response.status_code == 401


def test_the_command_prints_the_key_once_and_the_token_works(api_client_user: Any) -> None:
    out, err = io.StringIO(), io.StringIO()

    call_command("token_create", "app", "--days", "7", stdout=out, stderr=err)

    key = out.getvalue().strip()
    token = AuthToken.objects.get()
    assert token.user == api_client_user
    assert abs(token.expiry - (timezone.now() + timedelta(days=7))) < timedelta(minutes=1)
    assert token.token_key in err.getvalue()
    assert key not in err.getvalue()
    assert client_with(key).get("/api/v1/categories").status_code == 200


def test_the_command_names_an_unknown_user() -> None:
    with pytest.raises(CommandError, match="'nobody'"):
        call_command("token_create", "nobody", stdout=io.StringIO(), stderr=io.StringIO())


def test_staff_issue_a_token_in_admin_and_see_its_key_once(api_client_user: Any, staff_browser: Client) -> None:
    response = staff_browser.post(reverse("admin:knox_authtoken_add"), {"user": api_client_user.pk, "days": 30})

    assert response.status_code == 200
    key = response.context["key"]
    token = AuthToken.objects.get()
    assert key in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    assert token.user == api_client_user
    assert abs(token.expiry - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
    assert client_with(key).get("/api/v1/categories").status_code == 200
    listed = staff_browser.get(reverse("admin:knox_authtoken_changelist")).content.decode()
    assert token.token_key in listed
    assert key not in listed


def test_staff_who_are_not_superusers_issue_tokens_only_for_users_without_staff_rights(
    django_user_model: Any, api_client_user: Any, staff: Any, client: Client
) -> None:
    operator = django_user_model.objects.create_user(username="operator", password="operator-pw", is_staff=True)
    operator.user_permissions.set(Permission.objects.filter(content_type__app_label="knox"))
    client.force_login(operator)

    for_superuser = client.post(reverse("admin:knox_authtoken_add"), {"user": staff.pk, "days": 30})
    for_app = client.post(reverse("admin:knox_authtoken_add"), {"user": api_client_user.pk, "days": 30})

    assert "user" in for_superuser.context["adminform"].form.errors
    assert for_app.status_code == 200
    assert list(AuthToken.objects.values_list("user__username", flat=True)) == ["app"]
