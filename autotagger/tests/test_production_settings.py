"""The production settings: Django's deployment checks pass, secrets have no defaults, HTTPS behind a proxy.

Each case runs in its own process: a settings module is read once per process.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def production_env(**overrides: str | None) -> dict[str, str]:
    """What a deployment sets; nothing here is connected to (neither check nor the test client needs to)."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "autotagger.settings.production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "autotagger.example.com",
        "DATABASE_URL": "postgres://autotagger:db-password@127.0.0.1:1/autotagger",
        "REDIS_URL": "redis://:redis-password@127.0.0.1:1/0",
        "EMAIL_HOST": "smtp.example.com",
        "AUTOTAGGER_PRELOAD_MODEL": "0",
    }
    for name, value in overrides.items():
        # Unset as empty, so that a developer's .env (read without overriding the environment) cannot fill it.
        env[name] = "" if value is None else value
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_deployment_checks_pass_without_a_warning() -> None:
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], production_env())

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_the_deployment_checks_warn_when_hsts_and_the_https_redirect_are_turned_off() -> None:
    env = production_env(DJANGO_SECURE_HSTS_SECONDS="0", DJANGO_SECURE_SSL_REDIRECT="false")

    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)

    assert result.returncode != 0
    assert "security.W004" in result.stderr
    assert "security.W008" in result.stderr


def test_each_secret_is_required() -> None:
    for name in ("DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL", "EMAIL_HOST"):
        result = run(["manage.py", "check"], production_env(**{name: None}))

        assert result.returncode != 0, name
        assert "ImproperlyConfigured" in result.stderr, name
        assert name in result.stderr, name


def test_a_redis_url_without_a_password_is_refused() -> None:
    result = run(["manage.py", "check"], production_env(REDIS_URL="redis://127.0.0.1:6379/0"))

    assert result.returncode != 0
    assert "REDIS_URL must include the Redis password" in result.stderr


def test_an_explicit_mail_backend_stands_in_for_an_smtp_server() -> None:
    env = production_env(EMAIL_HOST=None, EMAIL_BACKEND="django.core.mail.backends.console.EmailBackend")

    result = run(["manage.py", "check"], env)

    assert result.returncode == 0, result.stderr


# Answers without touching the database: an anonymous API request is refused before any query.
HTTPS_PROBE = """
import django
django.setup()
from django.test import Client
plain = Client().get("/api/v1/categories")
proxied = Client().get("/api/v1/categories", headers={"X-Forwarded-Proto": "https"})
print(plain.status_code, plain.get("Location"))
print(proxied.status_code, proxied.get("Strict-Transport-Security"))
"""
# Served, the health check loads the embedding model (seconds): only the test that needs it asks.
HEALTH_PROBE = """
print(Client().get("/healthz").status_code == 301)
"""


def test_behind_a_proxy_plain_http_is_redirected_and_what_the_proxy_received_over_https_is_served() -> None:
    env = production_env(DJANGO_ALLOWED_HOSTS="testserver", DJANGO_BEHIND_PROXY="true")

    result = run(["-c", HTTPS_PROBE + HEALTH_PROBE], env)

    assert result.returncode == 0, result.stderr
    plain, proxied, health_redirected = result.stdout.strip().splitlines()[-3:]
    assert plain == "301 https://testserver/api/v1/categories"
    assert proxied == "401 max-age=31536000; includeSubDomains; preload"
    # The container health check calls /healthz over plain HTTP.
    assert health_redirected == "False"


def test_without_a_proxy_the_forwarded_header_is_not_trusted() -> None:
    env = production_env(DJANGO_ALLOWED_HOSTS="testserver", DJANGO_BEHIND_PROXY="false")

    result = run(["-c", HTTPS_PROBE], env)

    assert result.returncode == 0, result.stderr
    proxied = result.stdout.strip().splitlines()[-1]
    assert proxied.startswith("301 ")


def test_the_wsgi_application_and_the_celery_app_default_to_the_production_settings() -> None:
    env = production_env()
    del env["DJANGO_SETTINGS_MODULE"]
    probe = (
        "import os, autotagger.wsgi, autotagger.celery\n"
        "from django.conf import settings\n"
        "print(os.environ['DJANGO_SETTINGS_MODULE'], settings.SECURE_SSL_REDIRECT)\n"
    )

    result = run(["-c", probe], env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "autotagger.settings.production True"
