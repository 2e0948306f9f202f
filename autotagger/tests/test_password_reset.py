"""Password reset, linked on the login page: the mail goes out through the configured backend (locmem here)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core import mail
from django.test import Client

pytestmark = pytest.mark.django_db


def test_the_login_page_links_the_password_reset(client: Client) -> None:
    response = client.get("/accounts/login/")

    assert 'href="/accounts/password_reset/"' in response.content.decode()


def test_it_mails_a_reset_link_that_sets_a_new_password(client: Client, django_user_model: Any) -> None:
    django_user_model.objects.create_user(username="cook", email="cook@example.com", password="old-password-1")

    response = client.post("/accounts/password_reset/", {"email": "cook@example.com"})

    assert response.status_code == 302
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["cook@example.com"]
    link = re.search(r"https?://testserver(/accounts/reset/\S+/)", message.body)
    assert link is not None, message.body
    # The link redirects once to a URL without the token, then takes the new password.
    form_page = client.get(link.group(1), follow=True)
    assert form_page.status_code == 200
    new_password = "a-much-better-password-42"
    done = client.post(form_page.redirect_chain[-1][0], {"new_password1": new_password, "new_password2": new_password})
    assert done.status_code == 302
    signed_in = client.post("/accounts/login/", {"username": "cook", "password": new_password})
    assert signed_in.status_code == 302
    assert signed_in["Location"] == "/"


def test_it_sends_nothing_for_an_unknown_address_and_says_the_same(client: Client) -> None:
    response = client.post("/accounts/password_reset/", {"email": "nobody@example.com"})

    assert response.status_code == 302
    assert response["Location"] == "/accounts/password_reset/done/"
    assert mail.outbox == []
