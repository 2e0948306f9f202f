from __future__ import annotations

import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("prompts", "0005_llm_source_key_env_prefixed")]

    operations = [
        migrations.AlterField(
            model_name="llmsource",
            name="api_key_env",
            field=models.CharField(
                blank=True,
                help_text=(
                    "The NAME of the environment variable that holds the API key (e.g. AUTOTAGGER_LLM_KEY_OPENAI), "
                    "never the key itself; only names starting with AUTOTAGGER_LLM_KEY_ are accepted. It must be "
                    "set in the web and worker processes. Leave blank for an endpoint without a key."
                ),
                max_length=100,
                validators=[
                    django.core.validators.RegexValidator(
                        "^AUTOTAGGER_LLM_KEY_[A-Z0-9_]+$",
                        "Enter the NAME of an environment variable starting with AUTOTAGGER_LLM_KEY_ (capital "
                        "letters, digits, underscores), e.g. AUTOTAGGER_LLM_KEY_OPENAI.",
                    )
                ],
                verbose_name="API key environment variable",
            ),
        ),
        migrations.AlterField(
            model_name="llmsource",
            name="base_url",
            field=models.CharField(
                help_text=(
                    "The API's base URL, e.g. https://api.openai.com/v1: https, or plain http only to a host on "
                    "LLM_ALLOWED_HOSTS (loopback in development)."
                ),
                max_length=500,
            ),
        ),
        migrations.AddConstraint(
            model_name="llmsource",
            constraint=models.CheckConstraint(
                condition=models.Q(("api_key_env", ""), ("api_key_env__regex", "^AUTOTAGGER_LLM_KEY_[A-Z0-9_]+$"), _connector="OR"),
                name="prompts_llm_source_key_env_prefixed",
            ),
        ),
    ]
