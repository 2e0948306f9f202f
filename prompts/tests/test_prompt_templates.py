"""Prompt templates (prompts.rendering): the sandboxed `string.Template` syntax, what is refused when saving,
and version 1 of the default tagging prompt rendering exactly what the built-in prompt did."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from autotagger.recipe_text import RecipeText
from prompts.models import DEFAULT_TAGGING_PROMPT, PromptVersion
from prompts.rendering import (
    BUILTIN_PROMPT,
    RECIPE_CLOSE,
    RECIPE_OPEN,
    SYSTEM_PROMPT,
    CategoryChoice,
    FewShotExample,
    PromptTemplates,
    _brief_heading,
    _brief_k,
    _category_block,
    _category_line,
    _examples_blocks,
    _recipe_block,
    prompt_messages,
    template_problems,
)
from prompts.selectors import prompt_version_active
from prompts.tests.test_rendering import CATEGORIES, PASTA
from prompts.tests.test_rendering_examples import CARBONARA, TACOS


def builtin_3_messages(
    *, recipe: RecipeText, categories: Sequence[CategoryChoice], examples: Sequence[FewShotExample], brief_tags: bool
) -> tuple[str, str]:
    """prompt_messages as the built-in prompt "builtin-3" assembled it in code, before templates."""
    keys = ", ".join(f'"{c.slug}"' for c in categories)
    shown = _examples_blocks(examples, categories)
    intro = ["Examples of recipes tagged by people, with the tags above:", *shown] if shown else []
    # The listing as it is rendered today (a brief one on one line per category since the hybrid got its own
    # prompt): what is pinned here is that the templates assemble the parts as the code did.
    listing = (
        [
            _brief_heading(categories, k=_brief_k(categories)),
            "\n".join(_category_line(c, k=_brief_k(categories)) for c in categories),
        ]
        if brief_tags
        else ["Allowed tags per category, as `slug — name: description`:", *(_category_block(c) for c in categories)]
    )
    user = "\n\n".join(
        [
            *listing,
            f"Answer keys: {keys}.",
            *intro,
            f"{RECIPE_OPEN}\n{_recipe_block(recipe)}\n{RECIPE_CLOSE}",
            "Tag the recipe above. Answer only the JSON object.",
        ]
    )
    return SYSTEM_PROMPT, user


def templates(*, system: str = "You tag recipes.", user: str = "$categories\n\n$recipe") -> PromptTemplates:
    return PromptTemplates(label="test v1", system_template=system, user_template=user)


# --- Version 1 is the built-in prompt ---------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("brief_tags", [False, True])
@pytest.mark.parametrize("examples", [(), (CARBONARA, TACOS)])
def test_version_1_of_the_default_prompt_renders_exactly_what_the_built_in_prompt_did(
    brief_tags: bool, examples: tuple[FewShotExample, ...]
) -> None:
    active = prompt_version_active()

    rendered = prompt_messages(
        recipe=PASTA, categories=CATEGORIES, examples=examples, brief_tags=brief_tags, templates=active
    )

    assert active.label == f"{DEFAULT_TAGGING_PROMPT} v1"
    assert active.version_id == PromptVersion.objects.get(prompt__name=DEFAULT_TAGGING_PROMPT, number=1).pk
    assert rendered == builtin_3_messages(recipe=PASTA, categories=CATEGORIES, examples=examples, brief_tags=brief_tags)


def test_the_built_in_templates_render_what_the_built_in_prompt_did() -> None:
    rendered = prompt_messages(recipe=PASTA, categories=CATEGORIES, examples=[CARBONARA])

    assert rendered == builtin_3_messages(recipe=PASTA, categories=CATEGORIES, examples=[CARBONARA], brief_tags=False)


# --- Rendering ------------------------------------------------------------------------------------


def test_it_fills_every_variable() -> None:
    chosen = templates(
        system="Pick at most $k per category; $$5 is a price.", user="$keys\n$categories\n$examples\n$recipe"
    )

    system, user = prompt_messages(recipe=PASTA, categories=CATEGORIES, examples=[CARBONARA], templates=chosen)

    assert system == f"Pick at most {max(c.k for c in CATEGORIES)} per category; $5 is a price."
    assert user.startswith('"cuisine", "diet"\nAllowed tags per category')
    assert "<example>\nTitle: Spaghetti carbonara" in user
    assert user.endswith(f"{RECIPE_CLOSE}")


def test_a_recipe_that_spells_a_variable_stays_text() -> None:
    recipe = RecipeText(title="Price $categories ${k}", ingredients=("$recipe",), instructions="Cost: $$5")

    _, user = prompt_messages(recipe=recipe, categories=CATEGORIES, templates=templates())

    assert "Title: Price $categories ${k}" in user
    assert "- $recipe" in user
    assert "Cost: $$5" in user


# --- Validation -----------------------------------------------------------------------------------


def test_the_built_in_templates_are_valid() -> None:
    assert (
        template_problems(system_template=BUILTIN_PROMPT.system_template, user_template=BUILTIN_PROMPT.user_template)
        == {}
    )


def test_an_unknown_variable_is_refused_by_name() -> None:
    problems = template_problems(system_template="Tag with $taxonomy.", user_template="$recipe $recipe_text")

    assert "$taxonomy" in problems["system_template"][0]
    assert "$recipe_text" in problems["user_template"][0]


def test_a_user_template_without_the_recipe_is_refused() -> None:
    problems = template_problems(system_template="You tag recipes.", user_template="$categories\n\nTag it.")

    assert list(problems) == ["user_template"]
    assert problems["user_template"][0].startswith("The user template must include $recipe")
    assert f"fenced between {RECIPE_OPEN} and {RECIPE_CLOSE}" in problems["user_template"][0]


def test_the_recipe_and_examples_are_refused_in_the_system_template() -> None:
    problems = template_problems(system_template="Tag $recipe like $examples.", user_template="$recipe")

    assert list(problems) == ["system_template"]
    assert "$recipe, $examples cannot be in the system template" in problems["system_template"][0]


def test_a_dollar_that_starts_no_variable_is_refused() -> None:
    problems = template_problems(system_template="It costs $5.", user_template="$recipe")

    assert "write $$ for a dollar sign" in problems["system_template"][0]
