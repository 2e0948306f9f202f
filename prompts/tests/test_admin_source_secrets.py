"""LLM sources in admin: only superusers add, change or delete them (they decide where requests and keys
go); staff with permissions may look; the form refuses a key variable without the prefix and a plain http
host that is not allowed."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test.client import Client
from django.urls import reverse

from prompts.models import LLMSource
from prompts.tests.conftest import LLMSourceFactory
from prompts.tests.test_admin_probe import form_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_with_every_source_permission(django_user_model: Any, client: Client) -> Client:
    user = django_user_model.objects.create_user(username="operator", password="operator-password", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="prompts"))
    client.force_login(user)
    return client


def test_staff_who_are_not_superusers_may_view_sources_but_not_change_them(
    staff_with_every_source_permission: Client,
) -> None:
    source = LLMSourceFactory()
    browser = staff_with_every_source_permission

    listed = browser.get(reverse("admin:prompts_llmsource_changelist"))
    viewed = browser.get(reverse("admin:prompts_llmsource_change", args=[source.pk]))
    changed = browser.post(
        reverse("admin:prompts_llmsource_change", args=[source.pk]),
        form_data(source, base_url="https://attacker.example/v1"),
    )
    added = browser.post(reverse("admin:prompts_llmsource_add"), form_data(name="mine"))
    deleted = browser.post(reverse("admin:prompts_llmsource_delete", args=[source.pk]), {"post": "yes"})

    assert (listed.status_code, viewed.status_code) == (200, 200)
    assert b'name="_save"' not in viewed.content
    assert (changed.status_code, added.status_code, deleted.status_code) == (403, 403, 403)
    assert list(LLMSource.objects.values_list("name", "base_url")) == [("openrouter", source.base_url)]


def test_the_ledger_stays_visible_to_staff_with_the_view_permission(staff_with_every_source_permission: Client) -> None:
    response = staff_with_every_source_permission.get(reverse("admin:prompts_llmcall_changelist"))

    assert response.status_code == 200


def test_a_superuser_cannot_save_a_key_variable_without_the_prefix(staff_browser: Client) -> None:
    response = staff_browser.post(reverse("admin:prompts_llmsource_add"), form_data(api_key_env="REDIS_URL"))

    assert response.status_code == 200
    assert "AUTOTAGGER_LLM_KEY_" in response.context["adminform"].form.errors["api_key_env"][0]
    assert not LLMSource.objects.exists()


def test_a_superuser_cannot_save_plain_http_to_a_host_not_allowed(staff_browser: Client, settings: Any) -> None:
    settings.LLM_ALLOWED_HOSTS = []

    response = staff_browser.post(reverse("admin:prompts_llmsource_add"), form_data(base_url="http://evil.example/v1"))

    assert response.status_code == 200
    assert "LLM_ALLOWED_HOSTS" in response.context["adminform"].form.errors["base_url"][0]
    assert not LLMSource.objects.exists()
