"""Existing sources keep behaving as they did: the one capability staff could set (supports_json_schema) is
kept as set, a source that sent plain json_object still does (not json_object with a schema), and a probe
records what it sees without changing them (capabilities_from_staff) until staff untick it."""

from __future__ import annotations

from typing import Any

from django.db import migrations


def keep_what_staff_set(apps: Any, schema_editor: Any) -> None:
    LLMSource = apps.get_model("prompts", "LLMSource")
    LLMSource.objects.filter(supports_json_schema=False).update(supports_json_object_schema=False)
    LLMSource.objects.update(capabilities_from_staff=True)


def forget_what_staff_set(apps: Any, schema_editor: Any) -> None:
    # supports_json_schema, the only capability the previous schema has, is untouched forwards; the columns
    # set above are dropped by reversing 0003.
    LLMSource = apps.get_model("prompts", "LLMSource")
    LLMSource.objects.update(capabilities_from_staff=False, supports_json_object_schema=True)


class Migration(migrations.Migration):
    dependencies = [("prompts", "0003_llm_source_capabilities")]

    operations = [migrations.RunPython(keep_what_staff_set, forget_what_staff_set)]
