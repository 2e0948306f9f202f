"""LLMSource and LLMCall now belong to prompts (its 0001 renames the tables): tagging forgets them."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("tagging", "0005_tagging_jobs_and_run_stats"),
        ("prompts", "0001_llm_sources_and_calls_from_tagging"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(model_name="llmcall", name="run"),
                migrations.DeleteModel(name="LLMSource"),
                migrations.DeleteModel(name="LLMCall"),
            ],
        ),
    ]
