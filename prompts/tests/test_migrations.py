"""The capabilities migration keeps what existing sources did: a source that sent strict json_schema still
does, one that sent plain json_object still does, and probes leave both as staff set them."""

from __future__ import annotations

from django.db.migrations.executor import MigrationExecutor

from conftest import apps_at

BEFORE = [("prompts", "0002_llm_source_without_batch_flag")]
AFTER = [("prompts", "0004_llm_source_capabilities_keep_what_staff_set")]


def test_existing_sources_keep_the_mode_they_were_asked_in(migrator: MigrationExecutor) -> None:
    old = apps_at(migrator, BEFORE).get_model("prompts", "LLMSource")
    old.objects.create(name="strict", base_url="http://a/v1", model="m", supports_json_schema=True)
    old.objects.create(name="plain", base_url="http://b/v1", model="m", supports_json_schema=False)

    new = apps_at(migrator, AFTER).get_model("prompts", "LLMSource")

    rows = {
        row.name: (
            row.supports_json_schema,
            row.supports_json_object_schema,
            row.supports_json_object,
            row.capabilities_from_staff,
            row.probed_at,
        )
        for row in new.objects.all()
    }
    assert rows == {"strict": (True, True, True, True, None), "plain": (False, False, True, True, None)}


def test_it_reverses_to_the_one_flag_as_it_was(migrator: MigrationExecutor) -> None:
    old = apps_at(migrator, BEFORE).get_model("prompts", "LLMSource")
    old.objects.create(name="plain", base_url="http://b/v1", model="m", supports_json_schema=False)
    apps_at(migrator, AFTER)

    reverted = apps_at(migrator, BEFORE).get_model("prompts", "LLMSource")

    assert list(reverted.objects.values_list("name", "supports_json_schema")) == [("plain", False)]
