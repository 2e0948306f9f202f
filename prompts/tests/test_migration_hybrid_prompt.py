"""The data migration that gives the hybrid strategy its own prompt, `tagging-hybrid`, whose active version 1 is the
built-in hybrid prompt, and its reverse."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from prompts.rendering import BUILTIN_HYBRID_PROMPT

BEFORE = [("prompts", "0010_llm_source_batch_flag")]
AFTER = [("prompts", "0011_hybrid_tagging_prompt")]


@pytest.fixture
def migrator(transactional_db: None) -> Iterator[MigrationExecutor]:
    executor = MigrationExecutor(connection)
    yield executor
    # Leave the schema (and the default prompts) as every other test expects it.
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def apps_at(executor: MigrationExecutor, targets: list[tuple[str, str]]) -> Any:
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_it_makes_the_built_in_hybrid_prompt_the_active_version_1_and_reverses(migrator: MigrationExecutor) -> None:
    before = apps_at(migrator, BEFORE)
    # As migration 0008 left it (a transactional test before this one may have emptied the table).
    before.get_model("prompts", "Prompt").objects.update_or_create(
        name="tagging-default",
        defaults={"purpose": "tagging", "description": "The prompt the llm and hybrid strategies tag with."},
    )

    after = apps_at(migrator, AFTER)
    versions = list(
        after.get_model("prompts", "PromptVersion")
        .objects.filter(prompt__name="tagging-hybrid")
        .values_list("number", "is_active", "system_template", "user_template")
    )
    purpose = after.get_model("prompts", "Prompt").objects.get(name="tagging-hybrid").purpose
    default_said = after.get_model("prompts", "Prompt").objects.get(name="tagging-default").description
    reverted = apps_at(migrator, BEFORE)

    assert versions == [(1, True, BUILTIN_HYBRID_PROMPT.system_template, BUILTIN_HYBRID_PROMPT.user_template)]
    assert purpose == "tagging"
    assert default_said == "The prompt the llm strategy tags with."
    assert not reverted.get_model("prompts", "Prompt").objects.filter(name="tagging-hybrid").exists()
    assert (
        reverted.get_model("prompts", "Prompt").objects.get(name="tagging-default").description
        == "The prompt the llm and hybrid strategies tag with."
    )
