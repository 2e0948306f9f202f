"""An LLM source can send neither another secret of the deployment nor its own key where it should not: the
key comes only from AUTOTAGGER_LLM_KEY_... variables, the base URL is https or an allowed host, and both are
refused when saved and again by the gateway before any request."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from prompts.gateway import LLMSourceRefused, llm_source_probe
from prompts.models import LLMCall, LLMSource
from prompts.sources import llm_source_get
from prompts.tests.conftest import LLMSourceFactory
from prompts.tests.helpers import ask, db_source
from prompts.tests.openai_server import OpenAIServer

pytestmark = pytest.mark.django_db

BASE_DIR = Path(__file__).resolve().parents[2]


def unsaved_source(**fields: Any) -> LLMSource:
    return LLMSource(**{"name": "mine", "base_url": "https://api.example.com/v1", "model": "m", **fields})


# --- The key's variable ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["REDIS_URL", "DJANGO_SECRET_KEY", "OPENAI_API_KEY", "AUTOTAGGER_LLM_KEY_lower"])
def test_a_key_variable_without_the_prefix_is_refused_when_saved(name: str) -> None:
    source = unsaved_source(api_key_env=name)

    with pytest.raises(ValidationError) as excinfo:
        source.full_clean()

    assert "api_key_env" in excinfo.value.message_dict
    assert "AUTOTAGGER_LLM_KEY_" in excinfo.value.message_dict["api_key_env"][0]


def test_a_key_variable_with_the_prefix_is_accepted() -> None:
    unsaved_source(api_key_env="AUTOTAGGER_LLM_KEY_OPENAI").full_clean()


def test_the_database_refuses_a_key_variable_without_the_prefix(openai_server: OpenAIServer) -> None:
    source = db_source(openai_server, api_key_env="AUTOTAGGER_LLM_KEY_OPENROUTER")

    with pytest.raises(IntegrityError, match="prompts_llm_source_key_env_prefixed"), transaction.atomic():
        LLMSource.objects.filter(pk=source.pk).update(api_key_env="REDIS_URL")


def test_the_gateway_sends_nothing_for_a_source_whose_key_variable_lacks_the_prefix(
    llm_settings: Any, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@cache:6379/0")
    db_source(openai_server)
    # As if the row had been read from a database without the constraint.
    source = replace(llm_source_get(name="openrouter"), api_key_env="REDIS_URL", api_key=os.environ["REDIS_URL"])
    openai_server.reply_json({"tags": []})

    with pytest.raises(LLMSourceRefused) as excinfo:
        ask(source)

    assert excinfo.value.code == "llm_source_refused"
    assert "hunter2" not in excinfo.value.message
    assert openai_server.requests == []
    assert not LLMCall.objects.exists()


# --- The base URL ---------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://evil.example/v1", "http://10.0.0.5:8080/v1", "ftp://evil.example/v1"])
def test_plain_http_to_a_host_not_allowed_is_refused_when_saved(settings: Any, url: str) -> None:
    settings.LLM_ALLOWED_HOSTS = []  # as in production

    with pytest.raises(ValidationError) as excinfo:
        unsaved_source(base_url=url).full_clean()

    assert "base_url" in excinfo.value.message_dict


def test_a_base_url_with_credentials_is_refused_when_saved() -> None:
    with pytest.raises(ValidationError) as excinfo:
        unsaved_source(base_url="https://user:secret@api.example.com/v1").full_clean()

    assert "credentials" in excinfo.value.message_dict["base_url"][0]


def test_https_is_accepted_for_any_host(settings: Any) -> None:
    settings.LLM_ALLOWED_HOSTS = []

    unsaved_source(base_url="https://api.example.com/v1").full_clean()


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/v1", "http://localhost:11434/v1", "http://[::1]:8080/v1"])
def test_plain_http_to_loopback_is_allowed_in_tests(url: str) -> None:
    unsaved_source(base_url=url).full_clean()


def test_a_host_on_llm_allowed_hosts_may_be_reached_over_plain_http(settings: Any) -> None:
    settings.LLM_ALLOWED_HOSTS = ["ollama"]

    unsaved_source(base_url="http://ollama:11434/v1").full_clean()


def test_the_gateway_sends_nothing_to_a_row_edited_to_a_host_not_allowed(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    db_source(openai_server)  # http://127.0.0.1: allowed when saved in tests
    llm_settings.LLM_ALLOWED_HOSTS = []  # and no longer allowed, as in production
    openai_server.reply_json({"tags": []})

    with pytest.raises(LLMSourceRefused):
        ask(llm_source_get(name="openrouter"))

    assert openai_server.requests == []


def test_the_gateway_sends_nothing_to_a_settings_source_over_plain_http_to_a_host_not_allowed(
    llm_settings: Any, openai_server: OpenAIServer
) -> None:
    llm_settings.LLM_ALLOWED_HOSTS = []
    openai_server.reply_json({"tags": []})

    with pytest.raises(LLMSourceRefused):
        ask(llm_source_get())

    assert openai_server.requests == []


def test_a_probe_of_a_refused_source_sends_nothing_and_says_why(llm_settings: Any, openai_server: OpenAIServer) -> None:
    LLMSourceFactory(base_url="http://evil.example/v1", probed_at=None)

    probe = llm_source_probe(source=llm_source_get(name="openrouter"))

    assert probe.finished is False
    assert probe.summary == f"not probed: {LLMSourceRefused.default_message}"
    assert probe.calls == 0


def test_production_settings_allow_no_plain_http_host_and_read_the_default_key_from_the_prefixed_variable() -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "autotagger.settings.production",
        "DATABASE_URL": "postgres://u:p@127.0.0.1:1/x",
        "REDIS_URL": "redis://:secret@127.0.0.1:1/0",
        "DJANGO_SECRET_KEY": "x" * 50,
        "DJANGO_ALLOWED_HOSTS": "example.com",
        "EMAIL_HOST": "mail.example.com",
        "AUTOTAGGER_LLM_KEY_DEFAULT": "sk-prefixed",
        "LLM_API_KEY": "sk-unprefixed",
    }
    code = "from django.conf import settings; print(settings.LLM_ALLOWED_HOSTS, settings.LLM_API_KEY)"

    result = subprocess.run(
        [sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] sk-prefixed"
