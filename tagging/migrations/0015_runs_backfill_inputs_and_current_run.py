from django.db import migrations

# What can be known of runs stored before they recorded their inputs; the rest stays NULL/blank (unknown), which
# tagging.selectors.recipes_stale counts as stale.
BACKFILL = [
    # The prompt version an llm/hybrid run asked with was kept in its stats.
    """
    UPDATE tagging_taggingrun AS run SET prompt_version_id = (run.stats->>'prompt_version_id')::bigint
    WHERE run.prompt_version_id IS NULL
      AND jsonb_typeof(run.stats->'prompt_version_id') = 'number'
      AND EXISTS (SELECT 1 FROM prompts_promptversion AS v WHERE v.id = (run.stats->>'prompt_version_id')::bigint)
    """,
    # So were its source and model.
    """
    UPDATE tagging_taggingrun SET llm_source = LEFT(stats->>'source', 50), llm_model = LEFT(stats->>'llm_model', 200)
    WHERE llm_source = '' AND strategy IN ('llm', 'hybrid')
      AND jsonb_typeof(stats->'source') = 'string' AND jsonb_typeof(stats->'llm_model') = 'string'
    """,
    # A recipe not saved since the run was created still has the content the run read.
    """
    UPDATE tagging_taggingrun AS run SET content_hash = recipe.content_hash
    FROM tagging_recipe AS recipe
    WHERE recipe.id = run.recipe_id AND run.content_hash = '' AND recipe.updated_at <= run.created_at
    """,
    # Until now a recipe's tags were those of its latest succeeded run.
    """
    UPDATE tagging_recipe AS recipe SET current_run_id = latest.id
    FROM (
        SELECT DISTINCT ON (recipe_id) recipe_id, id FROM tagging_taggingrun
        WHERE status = 'succeeded' ORDER BY recipe_id, created_at DESC, id DESC
    ) AS latest
    WHERE latest.recipe_id = recipe.id AND recipe.current_run_id IS NULL
    """,
]


class Migration(migrations.Migration):

    dependencies = [
        ("prompts", "0009_default_judging_prompt"),
        ("tagging", "0014_run_inputs_and_current_run"),
    ]

    operations = [migrations.RunSQL(sql, reverse_sql=migrations.RunSQL.noop) for sql in BACKFILL]
