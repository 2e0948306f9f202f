"""The key-variable migration: a source naming any variable but an AUTOTAGGER_LLM_KEY_... one names the
prefixed variable after it, so it never reads the old one again."""

from __future__ import annotations

from django.db.migrations.executor import MigrationExecutor

from conftest import apps_at

BEFORE = [("prompts", "0004_llm_source_capabilities_keep_what_staff_set")]
AFTER = [("prompts", "0006_llm_source_key_env_constraint")]


def test_it_prefixes_every_key_variable_that_lacks_the_prefix(migrator: MigrationExecutor) -> None:
    old = apps_at(migrator, BEFORE).get_model("prompts", "LLMSource")
    for name, key_env in [
        ("stolen", "REDIS_URL"),
        ("openai", "openai_api_key"),
        ("kept", "AUTOTAGGER_LLM_KEY_OPENROUTER"),
        ("keyless", ""),
    ]:
        old.objects.create(name=name, base_url="https://a.example/v1", model="m", api_key_env=key_env)

    new = apps_at(migrator, AFTER).get_model("prompts", "LLMSource")

    assert dict(new.objects.values_list("name", "api_key_env")) == {
        "stolen": "AUTOTAGGER_LLM_KEY_REDIS_URL",
        "openai": "AUTOTAGGER_LLM_KEY_OPENAI_API_KEY",
        "kept": "AUTOTAGGER_LLM_KEY_OPENROUTER",
        "keyless": "",
    }
