"""The recipe within a token budget (prompt_messages with recipe_max_tokens, the hybrid's
HYBRID_RECIPE_MAX_TOKENS): the title and every ingredient are always shown, the instructions get what is left."""

from __future__ import annotations

from autotagger.recipe_text import RecipeText
from prompts.rendering import CHARS_PER_TOKEN, CategoryChoice, TagChoice, prompt_messages

CUISINE = CategoryChoice(
    slug="cuisine",
    name="Cuisine",
    description="",
    k=1,
    tags=(TagChoice(slug="italian", name="Italian", description=""),),
)
STEPS = " ".join(f"Step {i}: stir the sauce and taste it." for i in range(1, 60))
LASAGNE = RecipeText(
    title="Lasagne with a slow-cooked ragù of beef and pork",
    ingredients=[f"{i} g of ingredient number {i}" for i in range(1, 31)],
    instructions=STEPS,
)


def fenced(user: str) -> str:
    return user.split("<recipe>\n", 1)[1].split("\n</recipe>", 1)[0]


def test_a_budget_never_cuts_the_title_or_an_ingredient() -> None:
    _, user = prompt_messages(recipe=LASAGNE, categories=[CUISINE], recipe_max_tokens=10)

    shown = fenced(user)
    assert shown.startswith(f"Title: {LASAGNE.title}\nIngredients:\n")
    assert [line[2:] for line in shown.splitlines() if line.startswith("- ")] == LASAGNE.ingredients


def test_a_budget_smaller_than_title_and_ingredients_leaves_the_instructions_out() -> None:
    _, user = prompt_messages(recipe=LASAGNE, categories=[CUISINE], recipe_max_tokens=10)

    assert "Instructions:" not in fenced(user)
    assert "Step 1" not in user


def test_the_instructions_get_what_the_budget_leaves_cut_at_a_word() -> None:
    _, whole = prompt_messages(recipe=LASAGNE, categories=[CUISINE])
    _, bounded = prompt_messages(recipe=LASAGNE, categories=[CUISINE], recipe_max_tokens=300)

    shown = fenced(bounded)
    instructions = shown.split("\nInstructions:\n", 1)[1]
    assert len(shown) <= 300 * CHARS_PER_TOKEN
    assert len(shown) > 300 * CHARS_PER_TOKEN - 40
    assert instructions.startswith("Step 1: stir the sauce")
    assert instructions.endswith("…")
    assert STEPS.startswith(instructions[:-1])
    assert STEPS[len(instructions) - 1] == " "
    assert fenced(whole).endswith(STEPS)


def test_a_recipe_within_the_budget_is_shown_whole() -> None:
    short = RecipeText(title="Toast", ingredients=["bread"], instructions="Toast the bread.")

    _, bounded = prompt_messages(recipe=short, categories=[CUISINE], recipe_max_tokens=200)
    _, whole = prompt_messages(recipe=short, categories=[CUISINE])

    assert bounded == whole
