"""An API key is read only from a variable named AUTOTAGGER_LLM_KEY_...: a source naming any other variable
(OPENAI_API_KEY, or REDIS_URL) now names AUTOTAGGER_LLM_KEY_<THAT NAME> (OPENAI_API_KEY ->
AUTOTAGGER_LLM_KEY_OPENAI_API_KEY), which the deployment must set for the source to work again; it never
reads the old variable. The next migration adds the constraint that keeps it so."""

from __future__ import annotations

import re
from typing import Any

from django.db import migrations

PREFIX = "AUTOTAGGER_LLM_KEY_"
PATTERN = rf"^{PREFIX}[A-Z0-9_]+$"


def prefix_key_env_names(apps: Any, schema_editor: Any) -> None:
    LLMSource = apps.get_model("prompts", "LLMSource")
    for source in LLMSource.objects.exclude(api_key_env="").order_by("id"):
        if re.fullmatch(PATTERN, source.api_key_env):
            continue
        suffix = re.sub(r"[^A-Z0-9_]", "_", source.api_key_env.upper())
        renamed = f"{PREFIX}{suffix}"[:100] if suffix.strip("_") else ""
        LLMSource.objects.filter(pk=source.pk).update(api_key_env=renamed)


class Migration(migrations.Migration):
    dependencies = [("prompts", "0004_llm_source_capabilities_keep_what_staff_set")]

    # Backwards the names stay prefixed: which ones were renamed is not recorded, and the old names are
    # exactly what must not be read again.
    operations = [migrations.RunPython(prefix_key_env_names, migrations.RunPython.noop)]
