"""The data migration that makes the built-in prompt version 1 of `tagging-default`, active, and its reverse."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from prompts.rendering import BUILTIN_PROMPT

BEFORE = [("prompts", "0007_prompt_versions")]
AFTER = [("prompts", "0008_default_tagging_prompt")]


@pytest.fixture
def migrator(transactional_db: None) -> Iterator[MigrationExecutor]:
    executor = MigrationExecutor(connection)
    yield executor
    # Leave the schema (and the default prompt) as every other test expects it.
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def apps_at(executor: MigrationExecutor, targets: list[tuple[str, str]]) -> Any:
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_it_makes_the_built_in_prompt_the_active_version_1_and_reverses(migrator: MigrationExecutor) -> None:
    apps_at(migrator, BEFORE)

    after = apps_at(migrator, AFTER)
    versions = list(
        after.get_model("prompts", "PromptVersion")
        .objects.filter(prompt__name="tagging-default")
        .values_list("number", "is_active", "system_template", "user_template")
    )
    activations = after.get_model("prompts", "PromptActivation").objects.filter(prompt__name="tagging-default").count()
    reverted = apps_at(migrator, BEFORE)

    assert versions == [(1, True, BUILTIN_PROMPT.system_template, BUILTIN_PROMPT.user_template)]
    assert activations == 1
    assert not reverted.get_model("prompts", "Prompt").objects.filter(name="tagging-default").exists()
    assert not reverted.get_model("prompts", "PromptVersion").objects.exists()
