"""The data migration that makes the built-in judging prompt version 1 of `judging-default`, active, and its
reverse."""

from __future__ import annotations

from typing import Any

from conftest import apps_at
from prompts.judging import BUILTIN_JUDGE_PROMPT

BEFORE = [("prompts", "0008_default_tagging_prompt")]
AFTER = [("prompts", "0009_default_judging_prompt")]


def test_it_makes_the_built_in_judging_prompt_the_active_version_1_and_reverses(migrator: Any) -> None:
    apps_at(migrator, BEFORE)

    after = apps_at(migrator, AFTER)
    prompt = after.get_model("prompts", "Prompt").objects.get(name="judging-default")
    versions = list(
        after.get_model("prompts", "PromptVersion")
        .objects.filter(prompt=prompt)
        .values_list("number", "is_active", "system_template", "user_template")
    )
    activations = after.get_model("prompts", "PromptActivation").objects.filter(prompt=prompt).count()
    reverted = apps_at(migrator, BEFORE)

    assert prompt.purpose == "judging"
    assert versions == [(1, True, BUILTIN_JUDGE_PROMPT.system_template, BUILTIN_JUDGE_PROMPT.user_template)]
    assert activations == 1
    assert not reverted.get_model("prompts", "Prompt").objects.filter(name="judging-default").exists()
