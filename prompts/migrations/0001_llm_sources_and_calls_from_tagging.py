"""LLMSource and LLMCall move from tagging to prompts, which owns everything about asking a model.

The tables are renamed, not copied, so no row is lost; their named constraints and index follow the new
app's prefix. LLMCall.run, a foreign key to tagging's runs, becomes a plain `run_id`: the ledger keeps the
id of the run it was made for, and outlives a deleted run.
"""

import django.core.validators
from django.db import migrations, models

RENAMED_CONSTRAINTS = {
    "prompts_llmsource": [
        "llm_source_base_url_http",
        "llm_source_model_not_empty",
        "llm_source_timeout_positive",
        "llm_source_concurrency_min_1",
        "llm_source_prices_not_negative",
    ],
    "prompts_llmcall": ["llm_call_cost_not_negative", "llm_call_latency_not_negative", "llm_call_outcome_valid"],
}


def _renames(old: str, new: str) -> list[str]:
    statements = [
        f"ALTER TABLE {old}_llmsource RENAME TO {new}_llmsource",
        f"ALTER TABLE {old}_llmcall RENAME TO {new}_llmcall",
        f"ALTER INDEX {old}_llm_call_day_source RENAME TO {new}_llm_call_day_source",
    ]
    for table, names in RENAMED_CONSTRAINTS.items():
        table = table.replace("prompts_", f"{new}_")
        statements += [f"ALTER TABLE {table} RENAME CONSTRAINT {old}_{name} TO {new}_{name}" for name in names]
    return statements


FORWARD = [
    *_renames("tagging", "prompts"),
    # The foreign key to tagging_taggingrun and the index that came with it.
    """
    DO $$
    DECLARE r record;
    BEGIN
        FOR r IN SELECT conname FROM pg_constraint
                 WHERE conrelid = 'prompts_llmcall'::regclass AND contype = 'f' LOOP
            EXECUTE format('ALTER TABLE prompts_llmcall DROP CONSTRAINT %I', r.conname);
        END LOOP;
        FOR r IN SELECT indexname FROM pg_indexes
                 WHERE tablename = 'prompts_llmcall' AND indexdef LIKE '%(run_id)%' LOOP
            EXECUTE format('DROP INDEX %I', r.indexname);
        END LOOP;
    END $$;
    """,
]

BACKWARD = [
    # Calls of runs deleted since keep no dangling id in a table with a foreign key again.
    "UPDATE prompts_llmcall SET run_id = NULL WHERE run_id NOT IN (SELECT id FROM tagging_taggingrun)",
    *_renames("prompts", "tagging"),
    "CREATE INDEX tagging_llmcall_run_id_idx ON tagging_llmcall (run_id)",
    "ALTER TABLE tagging_llmcall ADD CONSTRAINT tagging_llmcall_run_id_fk FOREIGN KEY (run_id) "
    "REFERENCES tagging_taggingrun (id) DEFERRABLE INITIALLY DEFERRED",
]


def content_types_move(apps, schema_editor, *, old: str = "tagging", new: str = "prompts") -> None:
    """Permissions granted on the models (change_llmsource, ...) keep pointing at them."""
    content_type = apps.get_model("contenttypes", "ContentType")
    for model in ("llmsource", "llmcall"):
        if content_type.objects.filter(app_label=new, model=model).exists():
            content_type.objects.filter(app_label=old, model=model).delete()
        else:
            content_type.objects.filter(app_label=old, model=model).update(app_label=new)


def content_types_move_back(apps, schema_editor) -> None:
    content_types_move(apps, schema_editor, old="prompts", new="tagging")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("tagging", "0005_tagging_jobs_and_run_stats"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='LLMCall',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('source', models.CharField(max_length=50)),
                        ('model', models.CharField(max_length=200)),
                        ('prompt_version', models.CharField(blank=True, max_length=100)),
                        ('run_id', models.BigIntegerField(blank=True, null=True)),
                        ('attempt', models.PositiveSmallIntegerField(default=1)),
                        ('input_tokens', models.PositiveIntegerField(default=0)),
                        ('output_tokens', models.PositiveIntegerField(default=0)),
                        ('cached_tokens', models.PositiveIntegerField(default=0)),
                        ('latency_ms', models.FloatField(default=0.0)),
                        ('cost', models.FloatField(default=0.0, help_text="USD, from the source's prices at the time of the call.")),
                        ('outcome', models.CharField(choices=[('ok', 'OK'), ('timeout', 'Timeout'), ('connection', 'Connection error'), ('rate_limited', 'Rate limited (429)'), ('server_error', 'Server error (5xx)'), ('bad_reply', 'Bad reply'), ('refused', 'Refused'), ('client_error', 'Client error (4xx)')], max_length=20)),
                        ('error', models.TextField(blank=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                    ],
                    options={
                        'verbose_name': 'LLM call',
                        'indexes': [models.Index(fields=['created_at', 'source'], name='prompts_llm_call_day_source')],
                        'constraints': [models.CheckConstraint(condition=models.Q(('cost__gte', 0)), name='prompts_llm_call_cost_not_negative'), models.CheckConstraint(condition=models.Q(('latency_ms__gte', 0)), name='prompts_llm_call_latency_not_negative'), models.CheckConstraint(condition=models.Q(('outcome__in', ['ok', 'timeout', 'connection', 'rate_limited', 'server_error', 'bad_reply', 'refused', 'client_error'])), name='prompts_llm_call_outcome_valid')],
                    },
                ),
                migrations.CreateModel(
                    name='LLMSource',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.SlugField(help_text='How code and tagging configs refer to this source. "default" replaces the LLM_* settings.', unique=True)),
                        ('base_url', models.CharField(help_text="The API's base URL, e.g. https://api.openai.com/v1.", max_length=500)),
                        ('model', models.CharField(max_length=200)),
                        ('api_key_env', models.CharField(blank=True, help_text='The NAME of the environment variable that holds the API key (e.g. OPENAI_API_KEY), never the key itself. It must be set in the web and worker processes. Leave blank for an endpoint without a key.', max_length=100, validators=[django.core.validators.RegexValidator('^[A-Za-z_][A-Za-z0-9_]*$', 'Enter the NAME of an environment variable, e.g. OPENAI_API_KEY.')], verbose_name='API key environment variable')),
                        ('timeout_seconds', models.FloatField(default=30.0, help_text='Timeout of one request, in seconds.')),
                        ('max_concurrency', models.PositiveSmallIntegerField(default=4, help_text='Requests in flight at once to this source, across all processes.')),
                        ('price_input_per_1k', models.DecimalField(decimal_places=6, default=0, help_text='USD per 1,000 input (prompt) tokens.', max_digits=12)),
                        ('price_output_per_1k', models.DecimalField(decimal_places=6, default=0, help_text='USD per 1,000 output (completion) tokens.', max_digits=12)),
                        ('supports_json_schema', models.BooleanField(default=True, help_text='Send response_format "json_schema" (strict); otherwise "json_object" and validate the reply.', verbose_name='Supports strict JSON schema')),
                        ('supports_batch', models.BooleanField(default=False, help_text='The provider offers a batch API.')),
                        ('active', models.BooleanField(default=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        'verbose_name': 'LLM source',
                        'constraints': [models.CheckConstraint(condition=models.Q(('base_url__startswith', 'http://'), ('base_url__startswith', 'https://'), _connector='OR'), name='prompts_llm_source_base_url_http'), models.CheckConstraint(condition=models.Q(('model', ''), _negated=True), name='prompts_llm_source_model_not_empty'), models.CheckConstraint(condition=models.Q(('timeout_seconds__gt', 0)), name='prompts_llm_source_timeout_positive'), models.CheckConstraint(condition=models.Q(('max_concurrency__gte', 1)), name='prompts_llm_source_concurrency_min_1'), models.CheckConstraint(condition=models.Q(('price_input_per_1k__gte', 0), ('price_output_per_1k__gte', 0)), name='prompts_llm_source_prices_not_negative')],
                    },
                ),
    
            ],
            database_operations=[migrations.RunSQL(FORWARD, BACKWARD)],
        ),
        migrations.AddIndex(
            model_name="llmcall",
            index=models.Index(fields=["run_id"], name="prompts_llm_call_run"),
        ),
        migrations.RunPython(content_types_move, content_types_move_back),
    ]
