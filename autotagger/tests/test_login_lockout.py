"""Sign-in lockout (django-axes): AXES_FAILURE_LIMIT wrong passwords for one username from one address lock
that pair out, even with the right password, until AXES_COOLOFF_TIME has passed."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

LOGIN_PAGES = ["/accounts/login/", "/admin/login/"]


def _sign_in(url: str, password: str, *, address: str = "192.0.2.10", username: str = "staff") -> Any:
    client = Client(REMOTE_ADDR=address)
    response = client.post(url, {"username": username, "password": password})
    response.signed_in = "_auth_user_id" in client.session
    return response


def _fail(url: str, times: int, **kwargs: Any) -> list[int]:
    return [_sign_in(url, "wrong-password", **kwargs).status_code for _ in range(times)]


@pytest.mark.parametrize("url", LOGIN_PAGES)
def test_the_right_password_is_refused_after_too_many_wrong_ones(settings: Any, staff: Any, url: str) -> None:
    failures = _fail(url, settings.AXES_FAILURE_LIMIT)

    response = _sign_in(url, "staff-password")

    assert failures[:-1] == [200] * (settings.AXES_FAILURE_LIMIT - 1)  # the form again, with its error
    assert failures[-1] == 429
    assert response.status_code == 429
    assert not response.signed_in
    assert b"Too many failed log-in attempts" in response.content


def test_wrong_passwords_under_the_limit_do_not_lock_the_account_out(settings: Any, staff: Any) -> None:
    _fail("/accounts/login/", settings.AXES_FAILURE_LIMIT - 1)

    response = _sign_in("/accounts/login/", "staff-password")

    assert response.status_code == 302
    assert response.signed_in


def test_a_lockout_ends_after_the_cool_off_time(settings: Any, staff: Any) -> None:
    settings.AXES_COOLOFF_TIME = timedelta(seconds=2)
    _fail("/accounts/login/", settings.AXES_FAILURE_LIMIT)
    during = _sign_in("/accounts/login/", "staff-password")

    time.sleep(2.2)
    after = _sign_in("/accounts/login/", "staff-password")

    assert during.status_code == 429
    assert after.status_code == 302
    assert after.signed_in


def test_the_lockout_holds_the_username_and_address_together(settings: Any, staff: Any, reviewer: Any) -> None:
    _fail("/accounts/login/", settings.AXES_FAILURE_LIMIT)

    elsewhere = _sign_in("/accounts/login/", "staff-password", address="192.0.2.99")
    other_user = _sign_in("/accounts/login/", "reviewer-password", username="reviewer")

    assert elsewhere.status_code == 302
    assert elsewhere.signed_in
    assert other_user.status_code == 302
    assert other_user.signed_in
