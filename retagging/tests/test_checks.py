"""A re-tagging webhook needs an http(s) URL and a secret: the start-up checks refuse either missing."""

from __future__ import annotations

from typing import Any

from autotagger.tests.test_production_settings import production_env, run
from retagging.checks import retag_webhook_check


def test_no_url_needs_no_secret(settings: Any) -> None:
    settings.RETAG_WEBHOOK_URL = ""
    settings.RETAG_WEBHOOK_SECRET = ""

    assert retag_webhook_check() == []


def test_a_url_without_a_secret_is_an_error(settings: Any) -> None:
    settings.RETAG_WEBHOOK_URL = "https://hooks.example.com/autotagger"
    settings.RETAG_WEBHOOK_SECRET = "  "

    assert [error.id for error in retag_webhook_check()] == ["retagging.E002"]


def test_a_url_that_is_not_http_is_an_error(settings: Any) -> None:
    settings.RETAG_WEBHOOK_URL = "ftp://hooks.example.com/autotagger"
    settings.RETAG_WEBHOOK_SECRET = "secret"

    assert [error.id for error in retag_webhook_check()] == ["retagging.E001"]


def test_production_refuses_to_start_with_a_webhook_url_and_no_secret() -> None:
    env = production_env(RETAG_WEBHOOK_URL="https://hooks.example.com/autotagger", RETAG_WEBHOOK_SECRET=None)

    result = run(["manage.py", "check"], env)

    assert result.returncode != 0
    assert "retagging.E002" in result.stderr


def test_production_starts_with_a_webhook_url_and_its_secret() -> None:
    env = production_env(RETAG_WEBHOOK_URL="https://hooks.example.com/autotagger", RETAG_WEBHOOK_SECRET="s3cret")

    result = run(["manage.py", "check"], env)

    assert result.returncode == 0, result.stderr
