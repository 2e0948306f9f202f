"""The LLM judge's prompt and reply (prompts.judging): rendering, the order of the tags shuffled by a seed,
the reply schema and its validation; the judging prompt versioned like the tagging prompt."""

from __future__ import annotations

import pytest

from prompts.judging import (
    BUILTIN_JUDGE_PROMPT,
    JUDGE_VERDICTS,
    JudgedTag,
    Verdict,
    judge_messages,
    judge_reply_schema,
    judge_reply_validate,
    judge_tags_shuffled,
)
from prompts.models import DEFAULT_JUDGING_PROMPT, PromptPurpose, PromptVersion
from prompts.rendering import RECIPE_CLOSE, RECIPE_OPEN, template_problems
from prompts.selectors import prompt_version_active
from prompts.services import PromptTemplateInvalid, prompt_version_create
from prompts.tests.conftest import PromptFactory
from prompts.tests.test_rendering import PASTA

ITALIAN = JudgedTag(category_slug="cuisine", category_name="Cuisine", slug="italian", name="Italian")
MEXICAN = JudgedTag(category_slug="cuisine", category_name="Cuisine", slug="mexican", name="Mexican")
VEGAN = JudgedTag(category_slug="diet", category_name="Diet", slug="vegan", name="Vegan")
TAGS = [ITALIAN, MEXICAN, VEGAN]


# --- Rendering ------------------------------------------------------------------------------------


def test_the_tags_are_listed_by_key_in_the_order_given_and_the_recipe_is_fenced() -> None:
    system, user = judge_messages(recipe=PASTA, tags=[VEGAN, ITALIAN])

    assert "relevant" in system
    assert "not_relevant" in system
    assert RECIPE_OPEN not in system.replace(f"between {RECIPE_OPEN} and {RECIPE_CLOSE}", "")
    assert "- diet/vegan: Diet / Vegan\n- cuisine/italian: Cuisine / Italian" in user
    assert 'Answer keys: "diet/vegan", "cuisine/italian".' in user
    assert f"{RECIPE_OPEN}\nTitle: {PASTA.title}" in user


def test_the_built_in_judging_templates_are_valid_for_judging_only() -> None:
    builtin = BUILTIN_JUDGE_PROMPT

    judging = template_problems(
        system_template=builtin.system_template, user_template=builtin.user_template, purpose="judging"
    )
    tagging = template_problems(
        system_template=builtin.system_template, user_template=builtin.user_template, purpose="tagging"
    )

    assert judging == {}
    assert "Unknown variable(s) for a tagging prompt: $tags" in tagging["user_template"][0]


def test_a_judging_template_without_the_tags_is_refused() -> None:
    problems = template_problems(system_template="Judge.", user_template="$recipe", purpose="judging")

    assert problems["user_template"] == [
        "The user template must include $tags: the suggested tags, one a line as "
        "`key: category name / tag name`, in an order shuffled per run."
    ]


def test_a_tagging_variable_is_unknown_to_a_judging_prompt() -> None:
    problems = template_problems(system_template="Judge.", user_template="$categories $tags $recipe", purpose="judging")

    assert problems["user_template"][0].startswith("Unknown variable(s) for a judging prompt: $categories.")


def test_the_tags_are_refused_in_the_system_template() -> None:
    problems = template_problems(system_template="Judge $tags.", user_template="$tags $recipe", purpose="judging")

    assert "$tags cannot be in the system template" in problems["system_template"][0]


# --- Shuffling ------------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_order_whatever_the_order_given() -> None:
    assert judge_tags_shuffled(TAGS, seed=7) == judge_tags_shuffled(list(reversed(TAGS)), seed=7)


def test_different_seeds_give_different_orders() -> None:
    many = [JudgedTag(category_slug="c", category_name="C", slug=f"t{i}", name=f"T{i}") for i in range(8)]

    orders = {tuple(t.key for t in judge_tags_shuffled(many, seed=seed)) for seed in range(1, 6)}

    assert len(orders) == 5
    assert all(sorted(order) == sorted(t.key for t in many) for order in orders)


# --- Schema and validation ------------------------------------------------------------------------


def test_the_schema_fixes_the_keys_and_enumerates_the_verdicts() -> None:
    schema = judge_reply_schema(tags=TAGS)

    assert schema["required"] == ["cuisine/italian", "cuisine/mexican", "diet/vegan"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["diet/vegan"]["properties"]["verdict"]["enum"] == list(JUDGE_VERDICTS)


def test_the_reply_keeps_the_verdicts_asked_for_drops_unknown_keys_and_counts_the_missing() -> None:
    reply = {
        "cuisine/italian": {"verdict": "relevant", "reason": "Pasta with   parmesan\nis Italian. " + "x" * 100},
        "cuisine/mexican": {"verdict": "maybe", "reason": "not a verdict"},
        "diet/vegan": "Not_Relevant",
        "diet/keto": {"verdict": "relevant", "reason": "not asked"},
    }

    validated = judge_reply_validate(data=reply, tags=TAGS)

    assert validated.verdicts["diet/vegan"] == Verdict(verdict="not_relevant", reason="")
    assert validated.verdicts["cuisine/italian"].verdict == "relevant"
    assert validated.verdicts["cuisine/italian"].reason.startswith("Pasta with parmesan is Italian.")
    assert len(validated.verdicts["cuisine/italian"].reason) <= 80
    assert (validated.unknown_dropped, validated.missing, validated.missing_keys) == (1, 1, ["cuisine/mexican"])


@pytest.mark.parametrize("reply", [None, [], "relevant", {"cuisine/italian": 3}])
def test_a_reply_that_is_not_an_object_of_verdicts_leaves_every_tag_missing(reply: object) -> None:
    validated = judge_reply_validate(data=reply, tags=[ITALIAN])

    assert (validated.verdicts, validated.missing) == ({}, 1)


# --- The versioned judging prompt -----------------------------------------------------------------


@pytest.mark.django_db
def test_version_1_of_the_default_judging_prompt_is_the_built_in_one_and_active() -> None:
    active = prompt_version_active(purpose=PromptPurpose.JUDGING)

    assert active.label == f"{DEFAULT_JUDGING_PROMPT} v1"
    assert (active.system_template, active.user_template) == (
        BUILTIN_JUDGE_PROMPT.system_template,
        BUILTIN_JUDGE_PROMPT.user_template,
    )
    assert active.version_id == PromptVersion.objects.get(prompt__name=DEFAULT_JUDGING_PROMPT, number=1).pk


@pytest.mark.django_db
def test_the_built_in_judging_prompt_is_used_while_the_database_has_no_active_default() -> None:
    PromptVersion.objects.filter(prompt__name=DEFAULT_JUDGING_PROMPT).update(is_active=False)

    assert prompt_version_active(purpose=PromptPurpose.JUDGING).label == "builtin-judge-1"


@pytest.mark.django_db
def test_a_judging_version_is_validated_with_the_judging_variables() -> None:
    prompt = PromptFactory(name="judge-terse", purpose=PromptPurpose.JUDGING)

    with pytest.raises(PromptTemplateInvalid) as raised:
        prompt_version_create(prompt=prompt, system_template="Judge.", user_template="$categories\n\n$recipe")
    saved = prompt_version_create(prompt=prompt, system_template="Judge.", user_template="$tags\n\n$recipe")

    assert "$categories" in raised.value.message
    assert saved.is_active
